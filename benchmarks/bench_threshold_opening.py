"""Cost of opening a tpsi-ad account at its threshold, as the threshold grows.

Two measurements in one run:

1. ``detect_genuine`` (finding the genuine shares among the opened vouchers
   with the detectable hash) against the whole-matrix row reduction it
   replaced (``_detect_genuine_dense``, kept as the tested reference), on the
   same rows: ``t`` genuine rows of a degree ``t - 2`` detectable hash plus
   ``s`` synthetic rows. Both return the same set (checked here too).
2. The whole server path: ingesting ``t + 10`` matching vouchers of one
   account (with synthetic vouchers at the protocol's probability) and
   revealing after each, as the simulator does.

Run: ``.venv/bin/python benchmarks/bench_threshold_opening.py [--thresholds 30,100,200] [--capacity 32]``.
Against an older version (before/after on one machine):
``git worktree add /tmp/old REV && PYTHONPATH=/tmp/old/src .venv/bin/python
benchmarks/bench_threshold_opening.py --server-only``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from e2escan.crypto import group
from e2escan.crypto import shamir as sh
from e2escan.hashing import HashArray
from e2escan.protocols import get_protocol


def _rows(t: int, synthetic: int, width: int) -> list[tuple[bytes, tuple[bytes, ...]]]:
    dh = sh.DetectableHash.random(t - 2, width)
    rows = [(x, dh.evaluate(x)) for x in (group.random_scalar() for _ in range(t))]
    rows += [(group.random_scalar(), tuple(group.random_scalar() for _ in range(width))) for _ in range(synthetic)]
    return rows


def _timed(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def _server_path(t: int, capacity: int) -> tuple[float, float, int]:
    """(seconds to generate the vouchers, seconds to ingest and reveal after each, matches revealed)."""
    n = t + 10
    database = HashArray.random(n, 64, np.random.default_rng(t))
    proto = get_protocol("tpsi-ad")
    params = proto.Params(threshold=t, payload_size=16, synthetic_probability=0.01, synthetic_capacity=capacity)
    server, public = proto.server_setup(database, params)
    client = proto.client(public, params)
    vouchers, gen = _timed(lambda: [client.scan(database[i], payload=b"p") for i in range(n)])
    t0 = time.perf_counter()
    for v in vouchers:
        server.ingest("account", v)
        reveal = server.reveal("account")
    return gen, time.perf_counter() - t0, len(reveal.matches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", default="30,100,200")
    parser.add_argument("--capacity", type=int, default=32, help="synthetic_capacity s (detectable-hash width)")
    parser.add_argument("--dense-up-to", type=int, default=200, help="skip the dense reference above this t")
    parser.add_argument("--server-only", action="store_true",
                        help="only the server path (runs against older versions of the package too)")
    args = parser.parse_args()
    thresholds = [int(x) for x in args.thresholds.split(",")]
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    s = args.capacity
    if not args.server_only:
        _detection(thresholds, s, args.dense_up_to)
    print(f"\n2) server path: t + 10 matching vouchers of one account, synthetic probability 0.01, s = {s}")
    print(f"{'t':>5} {'client vouchers s':>18} {'ingest + reveal s':>18} {'revealed':>9}")
    for t in thresholds:
        gen, server, revealed = _server_path(t, s)
        print(f"{t:5d} {gen:18.2f} {server:18.2f} {revealed:9d}")


def _detection(thresholds: list[int], s: int, dense_up_to: int) -> None:
    print(f"\n1) detect_genuine on t genuine + {s} synthetic rows (width s = {s})")
    print(f"{'t':>5} {'structured s':>13} {'dense s':>9} {'dense / structured':>19}")
    for t in thresholds:
        rows = _rows(t, s, s)
        got, fast = _timed(sh.detect_genuine, rows, t - 2)
        assert got == frozenset(range(t)), "structured detection missed genuine rows"
        if t <= dense_up_to:
            ref, slow = _timed(sh._detect_genuine_dense, rows, t - 2)
            assert ref == got
            print(f"{t:5d} {fast:13.3f} {slow:9.2f} {slow / fast:18.0f}x")
        else:
            print(f"{t:5d} {fast:13.3f} {'-':>9} {'-':>19}")


if __name__ == "__main__":
    main()
