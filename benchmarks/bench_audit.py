"""The leakage audit's cost per 1,000 vouchers, as a ratio to producing and ingesting those vouchers.

Baseline (measured in the same process, on the same traffic plan): the
protocol work the audit audits, i.e. ``client.scan`` for every voucher and
``server.ingest`` for every voucher, straight, with no relay and no events.
Audit cost: what the audit adds on top of that work, i.e. the relay and the
event log of the real world (``real_world_s`` minus the baseline), the ideal world
and the five distinguisher families (sign-flip permutations included). The
target is a ratio of at most 1.

    python benchmarks/bench_audit.py [--vouchers 4000] [--permutations 1999] [--protocols tpsi-ad psi-exact]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from e2escan.audit import _params_for, audit_protocol, resolve_protocol
from e2escan.audit.worlds import DATABASE_SIZE, HASH_BITS, plan_traffic
from e2escan.hashing import HashArray


def protocol_work(proto, params, accounts: int, seed: int) -> tuple[float, int]:
    """Seconds to scan and ingest the audit's traffic plan directly (setup excluded), and the voucher count."""
    rng = np.random.default_rng(seed)
    database = HashArray.random(DATABASE_SIZE, HASH_BITS, rng)
    plans = plan_traffic(proto, params, accounts, database, rng)
    server, public = proto.server_setup(database, params)
    count = 0
    t0 = time.perf_counter()
    for plan in plans:
        client = proto.client(public, params)
        for item in plan:
            server.ingest(item.account, client.scan(item.phash, payload=item.payload))
            count += 1
        server.reveal(plan[0].account)
    return time.perf_counter() - t0, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vouchers", type=int, default=4000)
    ap.add_argument("--permutations", type=int, default=1999)
    ap.add_argument("--synthetic-probability", type=float, default=0.5)
    ap.add_argument("--protocols", nargs="+", default=["plaintext", "psi-exact", "tpsi-ad", "tpsi-ad-multiprobe"])
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"{'protocol':<20} {'vouchers':>8} {'work s/1k':>10} {'relay+log':>10} {'ideal':>8} {'distinguish':>12} "
          f"{'audit s/1k':>11} {'ratio':>6}")
    for name in args.protocols:
        proto = resolve_protocol(name)
        params = _params_for(proto, args.synthetic_probability, {})
        report = audit_protocol(proto, vouchers=args.vouchers, synthetic_probability=args.synthetic_probability,
                                permutations=args.permutations)
        work, count = protocol_work(proto, params, report.accounts, seed=1)
        s = report.seconds
        # The real world's setup is excluded from both sides: time the setup alone and subtract it.
        t0 = time.perf_counter()
        proto.server_setup(HashArray.random(DATABASE_SIZE, HASH_BITS, np.random.default_rng(2)), params)
        setup = time.perf_counter() - t0
        relay_extra = max(0.0, s["real_world_s"] - setup - work * report.vouchers / count)
        audit = relay_extra + s["ideal_world_s"] + s["distinguishers_s"]
        k = report.vouchers / 1000
        print(f"{name:<20} {report.vouchers:>8} {work / (count / 1000):>10.3f} {relay_extra / k:>10.3f} "
              f"{s['ideal_world_s'] / k:>8.3f} {s['distinguishers_s'] / k:>12.3f} {audit / k:>11.3f} "
              f"{audit / (work * report.vouchers / count):>6.2f}")


if __name__ == "__main__":
    main()
