"""psi-exact set-intersection throughput against OpenMined PSI on the same set sizes.

OpenMined's protocol (client learns the intersection, ECDH on P-256): server
setup message over its n items, client request over its n items, server
response, client intersection. Ours (server learns, one message per image):
S-Init over the server's n hashes, one voucher per client hash, S-Process of
every voucher, reveal. Both sides intersect two sets of ``n`` items of which
half are shared. Phases are timed separately; the ratio compares totals.
Benchmark-only dependency: ``openmined-psi`` (imported as
``private_set_intersection.python``).

    python benchmarks/bench_psi_openmined.py [--n 10000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from e2escan.hashing import HashArray
from e2escan.protocols import get_protocol


def openmined(server_items: list[str], client_items: list[str], structure: str) -> dict[str, float]:
    import private_set_intersection.python as psi

    ds = getattr(psi.DataStructure, structure)
    client = psi.client.CreateWithNewKey(True)
    server = psi.server.CreateWithNewKey(True)
    t = {}
    t0 = time.perf_counter()
    setup = server.CreateSetupMessage(1e-9, len(client_items), server_items, ds)
    t["server setup"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    request = client.CreateRequest(client_items)
    t["client"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    response = server.ProcessRequest(request)
    t["server process"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = client.GetIntersection(setup, response)
    t["client finish"] = time.perf_counter() - t0
    assert len(found) == len(client_items) // 2, len(found)
    return t


def psi_exact(db: HashArray, queries: HashArray) -> dict[str, float]:
    proto = get_protocol("psi-exact")
    params = proto.Params(payload_size=0)
    t = {}
    t0 = time.perf_counter()
    server, public = proto.server_setup(db, params)
    client = proto.client(public, params)
    t["server setup"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vouchers = [client.scan(q) for q in queries]
    t["client"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for v in vouchers:
        server.ingest("bench", v)
    reveal = server.reveal("bench")
    t["server process"] = time.perf_counter() - t0
    assert len(reveal.matches) == len(queries) // 2
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="items per side")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best total of each is kept")
    args = ap.parse_args()
    n = args.n
    rng = np.random.default_rng(0)
    db = HashArray.random(n, 64, rng)
    queries = HashArray.concatenate([db[: n // 2], HashArray.random(n - n // 2, 64, rng)])
    server_items = db.to_hex()
    client_items = queries.to_hex()

    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):  # alternate so machine-load changes hit every contender
        for name, run in (
            ("openmined-psi (Raw)", lambda: openmined(server_items, client_items, "RAW")),
            ("openmined-psi (GCS)", lambda: openmined(server_items, client_items, "GCS")),
            ("e2escan psi-exact", lambda: psi_exact(db, queries)),
        ):
            t = run()
            if name not in best or sum(t.values()) < sum(best[name].values()):
                best[name] = t

    import nacl

    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | {os.cpu_count()} cpus | "
          f"Python {platform.python_version()} | PyNaCl {nacl.__version__}")
    print(f"{n} items per side, {n // 2} shared; best of {args.rounds} alternating rounds")
    phases = ["server setup", "client", "server process", "client finish"]
    print(f"{'implementation':<22}" + "".join(f"{p:>16}" for p in phases) + f"{'total s':>10}{'us/item':>10}")
    for name, t in best.items():
        total = sum(t.values())
        cells = "".join(f"{t.get(p, 0.0):>16.2f}" for p in phases)
        print(f"{name:<22}{cells}{total:>10.2f}{total / n * 1e6:>10.1f}")
    ours = sum(best["e2escan psi-exact"].values())
    for ref in ("openmined-psi (Raw)", "openmined-psi (GCS)"):
        print(f"ratio psi-exact / {ref}: {ours / sum(best[ref].values()):.2f}")
    _explain()


def _explain() -> None:
    """What the gap is made of, measured now: libsodium re-validates every input point."""
    import nacl.bindings as sodium

    s = sodium.crypto_core_ed25519_scalar_reduce(os.urandom(64))
    p = sodium.crypto_scalarmult_ed25519_base_noclamp(s)
    u = os.urandom(32)

    def per_call(fn, n=300) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n * 1e6

    mult = per_call(lambda: sodium.crypto_scalarmult_ed25519_noclamp(s, p))
    check = per_call(lambda: sodium.crypto_core_ed25519_is_valid_point(p))
    x25519 = per_call(lambda: sodium.crypto_scalarmult(u, p))
    h2g = per_call(lambda: sodium.crypto_core_ed25519_add(
        sodium.crypto_core_ed25519_from_uniform(u), sodium.crypto_core_ed25519_from_uniform(u)))
    print("per item, psi-exact does 5 variable-base multiplications (setup 1, device 1 + 2 cells, server 1) "
          "and 2 hashes to group; OpenMined does 4 multiplications on P-256 and 2 hashes to curve.")
    print(f"libsodium now: ed25519 multiplication {mult:.1f} us, of which its input-point subgroup check alone "
          f"costs {check:.1f} us; an X25519 ladder costs {x25519:.1f} us; hash to group {h2g:.1f} us.")


if __name__ == "__main__":
    main()
