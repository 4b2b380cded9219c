"""``e2escan sweep SWEEP.toml``: run a scenario over a grid or random sample of its fields."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .run import parse_override

if TYPE_CHECKING:
    from ..sim.sweep import PointOutcome

SHOWN_ROWS = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a scenario over a grid or random sample of its fields, in parallel on Dask",
        description="Run every point of a sweep file (see simulator/sweeps/README.md) on a Dask cluster and "
                    "collect one tidy table (sweep.csv, sweep.parquet), costs, failures and summary figures.",
    )
    p.add_argument("sweep", help="a sweep file (TOML)")
    p.add_argument("--out", metavar="DIR", help="results folder (default: results/sweeps/<sweep name>-<digest>); a "
                   "folder holding other results is refused unless --force")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local Dask cluster (default: one per CPU); "
                        "0 runs points one after another in this process, without Dask")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="use the running Dask scheduler at ADDRESS (e.g. tcp://host:8786) instead of a local "
                        "cluster; every worker must see --out at the same path")
    p.add_argument("--resume", action="store_true",
                   help="keep the finished points already in --out and run only the rest")
    p.add_argument("--force", action="store_true", help="clear a --out folder that holds other results first")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a field of the base scenario for every point, e.g. --set days=1 "
                        "(value parsed as TOML; applied after the sweep file's [set])")
    p.add_argument("--dry-run", action="store_true", help="validate the sweep and list its points, run nothing")
    p.add_argument("--json", action="store_true", help="print the sweep summary as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..progress import progress_bar
    from ..report import format_table
    from ..sim.sweep import load_sweep, run_sweep

    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers {args.workers}: must be 0 (in this process) or a positive number of workers")
    if args.scheduler and args.workers is not None:
        raise ConfigError("--workers and --scheduler exclude each other: the scheduler's cluster has its own workers")
    sweep = load_sweep(args.sweep, overrides=dict(parse_override(t) for t in args.set))
    import hashlib

    from ..config import to_dict
    from ..outputs import claim_output_dir

    identity = {"base": to_dict(sweep.base), "points": sorted(p.point_id for p in sweep.points)}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    out = Path(args.out) if args.out else Path("results") / "sweeps" / f"{sweep.name}-{digest}"
    merged = f", {sweep.duplicates_merged} repeated random draws merged" if sweep.duplicates_merged else ""
    print(f"e2escan sweep: {sweep.name}: {len(sweep.points)} points over {', '.join(sweep.keys)} "
          f"(base scenario {sweep.scenario_ref}{merged})", file=sys.stderr)
    if args.dry_run:
        print(format_table([(p.index, p.point_id, *(_short(p.params[k]) for k in sweep.keys)) for p in sweep.points],
                           ["point", "point_id", *sweep.keys]))
        return 0

    claim_output_dir(out, command="sweep", identity=identity, force=args.force, resume=args.resume).prepare()
    bar: Any = None  # the progress bar, made once the number of points to run is known

    def on_start(total: int, finished: int) -> None:
        nonlocal bar
        if finished:
            print(f"resuming: {finished} of {total} points already finished in {out}/", file=sys.stderr)
        bar = progress_bar(total, f"sweep {sweep.name}", "points", initial=finished)

    def on_point(outcome: PointOutcome) -> None:
        if not outcome.ok:
            bar.write(f"point {outcome.point.point_id} failed ({outcome.point.label()}): "
                      f"{outcome.error_type}: {outcome.error}", file=sys.stderr)
        bar.update(1)

    try:
        result = run_sweep(sweep, out, workers=args.workers, scheduler=args.scheduler, resume=args.resume,
                           on_start=on_start, on_point=on_point)
    finally:
        if bar is not None:
            bar.close()

    from ..report.html import write_report

    write_report(result.out_dir)
    if args.json:
        print((result.out_dir / "summary.json").read_text(), end="")
    else:
        print(_table(sweep.keys, result.rows))
        print(f"\nresults: {out}/ (sweep.csv, sweep.parquet, costs.csv, leakage.csv, failures.csv, figures, "
              f"summary.json, manifest.json); {result.computed} points computed, {result.reused} reused")
    if result.failures:
        print(f"e2escan sweep: {len(result.failures)} point(s) failed; see {out}/failures.csv", file=sys.stderr)
        for f in result.failures:
            params = {k: f[k] for k in sweep.keys}
            print(f"  {f['point_id']} {json.dumps(params)}: {f['error']}", file=sys.stderr)
        return 1
    return 0


def _short(value: object) -> object:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else value
    return text[:40] + "..." if isinstance(text, str) and len(text) > 43 else text


def _ci(row: dict, metric: str) -> str:
    rate, of = row[f"{metric}.rate"], row[f"{metric}.of"]
    if not of or (isinstance(rate, float) and math.isnan(rate)):
        return "-"
    return f"{rate:.3g} [{row[f'{metric}.ci_low']:.2g}, {row[f'{metric}.ci_high']:.2g}]"


def _table(keys: tuple[str, ...], rows: list[dict]) -> str:
    from ..report import format_table

    shown = rows[:SHOWN_ROWS]
    body = [(*(_short(r[k]) for k in keys), _ci(r, "accounts.innocent_flagged"), _ci(r, "accounts.offenders_detected"),
             _ci(r, "per_image.false_negative")) for r in shown]
    more = f" (first {SHOWN_ROWS} of {len(rows)} points; all in sweep.csv)" if len(rows) > SHOWN_ROWS else ""
    return format_table(body, [*keys, "innocent flagged", "offenders detected", "per-image FN"],
                        f"headline rates per point [95% Wilson CI]{more}")
