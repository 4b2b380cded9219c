"""Statistical path throughput: simulated account-days per second, and peak memory.

Baseline, measured in the same run: the dense per-account sampling (every
account-day drawn with numpy, which the 'fixed' traffic distribution uses) on
the same scenario. The sparse path samples innocent accounts by Poisson
thinning and only touches those with a false match.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

from e2escan.sim.scenario import Scenario, resolve_scenario
from e2escan.sim.statistical import run_statistical


def timed(s: Scenario) -> float:
    t0 = time.perf_counter()
    run_statistical(s)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=450_000_000)
    ap.add_argument("--dense-accounts", type=int, default=20_000_000, help="the dense baseline is slower; size it down")
    ap.add_argument("--days", type=int, default=1)
    args = ap.parse_args()
    base = Scenario.load(resolve_scenario("eu-day")).with_overrides(days=args.days)
    sparse = base.with_overrides(**{"population.accounts": args.accounts})
    t_sparse = timed(sparse)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    small = base.with_overrides(**{"population.accounts": args.dense_accounts})
    t_small_sparse = timed(small)
    t_dense = timed(small.with_overrides(**{"traffic.distribution": "fixed"}))
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, Python {platform.python_version()}")
    ad = args.accounts * args.days
    print(f"sparse path, {args.accounts:,} accounts x {args.days} day(s): {t_sparse:.2f} s, "
          f"{ad / t_sparse:,.0f} account-days/s, peak RSS {peak:,.0f} MiB")
    ad_small = args.dense_accounts * args.days
    print(f"{args.dense_accounts:,} accounts: sparse {t_small_sparse:.2f} s ({ad_small / t_small_sparse:,.0f} account-days/s), "
          f"dense baseline {t_dense:.2f} s ({ad_small / t_dense:,.0f} account-days/s)")
    print(f"ratio dense / sparse time at {args.dense_accounts:,} accounts: {t_dense / t_small_sparse:.1f}x")


if __name__ == "__main__":
    main()
