"""tpsi-ad with the detectable hash over the paper's 64-bit field against the scalar field, in one run.

For each ``dhf_field`` ("p64", the default, and "scalar") at the preset (``t = 30``,
``s = 32``, 256-byte payloads): device time per voucher (C-Gen-Voucher of matching
and non-matching images), and the server time to ingest ``t + 5`` matching vouchers
of one account and reveal after each (S-Process plus detection and reconstruction).
The two fields alternate in rounds so that machine load affects both alike; the
script prints medians over rounds and the ratio p64 / scalar.

Run: ``.venv/bin/python benchmarks/bench_dhf_field.py [--rounds 5] [--vouchers 40]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from e2escan.hashing import HashArray
from e2escan.protocols import get_protocol

FIELDS = ("p64", "scalar")


def _round(field: str, db: HashArray, others: HashArray, vouchers: int, t: int) -> tuple[float, float, int]:
    proto = get_protocol("tpsi-ad")
    params = proto.Params(threshold=t, synthetic_capacity=32, synthetic_probability=0.0, dhf_field=field)
    server, public = proto.server_setup(db, params)
    client = proto.client(public, params)
    queries = [db[i % len(db)] if i % 2 else others[i] for i in range(vouchers)]
    t0 = time.perf_counter()
    made = [client.scan(q, payload=b"x" * 256) for q in queries]
    device_ms = (time.perf_counter() - t0) / vouchers * 1e3
    size = len(made[0])
    account = proto.client(public, params)
    matching = [account.scan(db[i], payload=b"m%d" % i) for i in range(t + 5)]
    t0 = time.perf_counter()
    for v in matching:
        server.ingest("acct", v)
        server.reveal("acct")
    server_ms = (time.perf_counter() - t0) * 1e3
    assert server.reveal("acct").over_threshold
    return device_ms, server_ms, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--vouchers", type=int, default=40)
    ap.add_argument("--threshold", type=int, default=30)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    db = HashArray.random(200, 64, rng)
    others = HashArray.random(args.vouchers, 64, rng)
    device: dict[str, list[float]] = {f: [] for f in FIELDS}
    server: dict[str, list[float]] = {f: [] for f in FIELDS}
    sizes: dict[str, int] = {}
    for _ in range(args.rounds):
        for field in FIELDS:
            d, s, n = _round(field, db, others, args.vouchers, args.threshold)
            device[field].append(d)
            server[field].append(s)
            sizes[field] = n
    print(f"t = {args.threshold}, s = 32, {args.rounds} rounds, {args.vouchers} vouchers per round; medians")
    print(f"{'dhf_field':<9} {'voucher B':>9} {'device ms/voucher':>18} {'server ms, t+5 matches':>23}")
    for field in FIELDS:
        print(f"{field:<9} {sizes[field]:>9} {statistics.median(device[field]):>18.3f} "
              f"{statistics.median(server[field]):>23.1f}")
    ratio_d = [a / b for a, b in zip(device["p64"], device["scalar"])]
    ratio_s = [a / b for a, b in zip(server["p64"], server["scalar"])]
    print(f"p64 / scalar: device {statistics.median(ratio_d):.2f}x (rounds {min(ratio_d):.2f}-{max(ratio_d):.2f}), "
          f"server {statistics.median(ratio_s):.2f}x (rounds {min(ratio_s):.2f}-{max(ratio_s):.2f})")


if __name__ == "__main__":
    main()
