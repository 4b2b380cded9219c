"""Sweep throughput on 1 vs 2 Dask workers, against the same points run in this process.

The sweep varies only the scenario seed of a shrunken quick start (real messenger, PDQ, tpsi-ad), so
every point costs about the same. Three measurements of the same points:

* ``in-process``: ``run_sweep(workers=0)``, points one after another here (the baseline: pure work
  plus the sweep folder);
* ``1 worker`` and ``2 workers``: a LocalCluster of that many single-threaded worker processes.

Cluster start-up and each worker's first imports are timed separately (one warm-up point per worker,
outside the sweep), so the throughput figures are steady-state; the start-up and warm-up columns say
what a short sweep pays on top. Target: 2 workers near 2x of 1 worker, which needs 2 idle cores: the
load average beside the machine, and the workers' CPU share (CPU seconds they got over wall seconds
times workers), say whether other processes were competing.

Run: ``.venv/bin/python benchmarks/bench_sweep.py [--points 8] [--accounts 40] [--days 2]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import dask

from e2escan.sim.scenario import Scenario
from e2escan.sim.sweep import Sweep, run_point, run_sweep, sweep_from_dict


def build_sweep(points: int, accounts: int, days: int) -> Sweep:
    data = {
        "name": "bench-sweep",
        "scenario": "quickstart",
        "set": {"population": {"accounts": accounts, "mean_contacts": 6}, "days": days},
        "grid": {"seed": list(range(1, points + 1))},
    }
    return sweep_from_dict(data, where="bench_sweep")


def warm_up_point(sweep: Sweep, seed: int) -> dict:
    """A point outside the sweep (another seed): pays imports and first-call costs."""
    return sweep.points[0].scenario.with_overrides(seed=seed).to_dict()


def timed_sweep(sweep: Sweep, out: Path, **kwargs) -> tuple[float, float]:
    """(s from the first point dispatched to the last one finished, s for the whole call incl. the folder)."""
    marks: list[float] = []
    t0 = time.perf_counter()
    result = run_sweep(sweep, out, on_start=lambda total, done: marks.append(time.perf_counter()),
                       on_point=lambda outcome: marks.append(time.perf_counter()), **kwargs)
    total = time.perf_counter() - t0
    if result.failures or result.computed != len(sweep.points):
        raise SystemExit(f"benchmark sweep failed: {result.failures}")
    return marks[-1] - marks[0], total


def on_cluster(sweep: Sweep, workers: int, scratch: Path) -> tuple[float, float, tuple[float, float], float]:
    """(start-up s, warm-up s, timed_sweep, CPU s the workers got during the sweep) on a new LocalCluster."""
    from dask.distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    started = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        futures = [client.submit(run_point, warm_up_point(sweep, 10_000 + i), str(scratch / f"warm-{workers}-{i}"),
                                 pure=False, workers=[address])
                   for i, address in enumerate(client.scheduler_info()["workers"])]
        assert all(f.result()["ok"] for f in futures), [f.result() for f in futures]
        warmed = time.perf_counter() - t0
        cpu_before = client.run(time.process_time)
        elapsed = timed_sweep(sweep, scratch / f"dask-{workers}", client=client)
        cpu = sum(client.run(time.process_time).values()) - sum(cpu_before.values())
    finally:
        client.close()
        cluster.close()
    return started, warmed, elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8, help="points in the sweep (seeds)")
    parser.add_argument("--accounts", type=int, default=40, help="population.accounts of each point")
    parser.add_argument("--days", type=int, default=2, help="days of each point")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    sweep = build_sweep(args.points, args.accounts, args.days)
    base: Scenario = sweep.points[0].scenario
    scratch = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        run_point(warm_up_point(sweep, 20_000), str(scratch / "warm-here"))
        t_here = timed_sweep(sweep, scratch / "here", workers=0)
        start1, warm1, t1, cpu1 = on_cluster(sweep, 1, scratch)
        start2, warm2, t2, cpu2 = on_cluster(sweep, 2, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    n = len(sweep.points)
    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, dask {dask.__version__}; 1-min load average {load_before:.2f} "
          f"before, {os.getloadavg()[0]:.2f} after (above 0 means other processes shared the CPUs)")
    print(f"sweep: {n} points (seeds 1..{n}) of quickstart with {base.population.accounts} accounts, "
          f"{base.days} days, {base.protocol.name} on {base.hasher.name}")
    print("points s: first point dispatched to last point finished; total s: the whole run_sweep call, with the "
          "sweep folder (tables, figures) written after the points")
    print(f"{'run':<12} {'points s':>8} {'s/point':>8} {'points/min':>10} {'total s':>8} {'start-up s':>10} "
          f"{'warm-up s':>9} {'worker CPU share':>16}")
    for label, (t, total), start, warm, share in (
            ("in-process", t_here, None, None, None),
            ("1 worker", t1, start1, warm1, cpu1 / t1[1]),
            ("2 workers", t2, start2, warm2, cpu2 / (2 * t2[1]))):
        extra = "" if start is None else f" {start:>10.2f} {warm:>9.2f} {share:>16.0%}"
        print(f"{label:<12} {t:>8.2f} {t / n:>8.2f} {60 * n / t:>10.1f} {total:>8.2f}{extra}")
    print(f"speed-up 2 workers vs 1 worker: {t1[0] / t2[0]:.2f}x on the points (parallel efficiency "
          f"{t1[0] / t2[0] / 2:.0%}), {t1[1] / t2[1]:.2f}x on the total")
    print(f"1 worker vs in-process: {t_here[0] / t1[0]:.2f}x on the points "
          f"(Dask overhead per point: {(t1[0] - t_here[0]) / n * 1000:+.0f} ms)")


if __name__ == "__main__":
    main()
