"""Parameter sweeps: running the points of a sweep and writing the sweep folder.

What a sweep file holds, how it is validated and how it expands into points
is :mod:`e2escan.sim.sweep_spec` (its names are re-exported here).

Each point's results live in ``OUT/points/<point_id>/`` (a normal ``e2escan
run`` folder). A folder whose ``manifest.json`` exists is finished (the runner
writes it last); with ``resume=True`` finished points are read back, not
recomputed, and a point killed half-way keeps its finished replicates.

The sweep folder::

    OUT/sweep.toml, OUT/scenario.toml    the sweep as given and its base scenario
    OUT/sweep.csv, OUT/sweep.parquet     one row per finished point, in sweep order:
                                         swept parameters + deterministic metrics
    OUT/costs.csv                        wall-clock costs per point (differ run to run)
    OUT/leakage.csv                      ServerView leakage estimates per point
    OUT/failures.csv                     failed points: parameters and the error
    OUT/sweep_<key>.png/.svg             headline rates against each swept parameter
    OUT/summary.json, OUT/manifest.json
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..metrics.run import RunSummary
from ..report.run_tables import read_run_summary
from ..report.sweep_tables import columns_of, headline_metrics, table_cell, write_parquet
from ..results import (
    atomic_write_text,
    provenance,
    write_csv,
    write_json,
    write_manifest,
)
from .runner import run_scenario, scenario_to_toml
from .scenario import Scenario
from .sweep_spec import Distribution, RandomTable, Sweep, SweepFile, SweepPoint, load_sweep, sweep_from_dict
from .sweep_spec import describe_params as _describe

__all__ = [
    "Distribution", "PointOutcome", "RandomTable", "Sweep", "SweepFile", "SweepPoint", "SweepResult", "dask_client",
    "headline_metrics", "load_sweep", "read_finished_point", "run_point", "run_sweep", "sweep_from_dict",
    "sweep_rows", "write_parquet", "write_sweep_folder",
]

REPLICATION_KEYS = ("seed",)  # pooled, not drawn as separate lines, in the figures
HEADLINE = (
    ("accounts.innocent_flagged", "innocent accounts flagged"),
    ("accounts.offenders_detected", "offenders detected (confirmed)"),
    ("per_image.false_positive", "per-image false positives"),
    ("per_image.false_negative", "per-image false negatives"),
)


# --------------------------------------------------------------------------- running points


def run_point(scenario: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Run one point in this process and write its results folder; failures are returned, not raised.

    Plain data in and out, at module level, so Dask can ship it to worker processes. Returns
    ``{"ok": True, "summary": RunSummary, "wall_time_s": ...}`` as read back from the folder, or
    ``{"ok": False, "error_type": ..., "error": ...}`` (the traceback goes to ``error.txt`` there).
    """
    out = Path(out_dir)
    try:
        # Per-point figures would cost most of a small point; the sweep draws its own.
        run_scenario(Scenario.from_dict(scenario), out, resume=True, cache_dir=None, figures=False)
        finished = read_finished_point(out)
        if finished is None:
            raise RuntimeError(f"{out}: the run returned but left no manifest.json")
        (out / "error.txt").unlink(missing_ok=True)
        return {"ok": True, **finished}
    except Exception as exc:  # noqa: BLE001 - one failing point must not stop the others
        try:
            atomic_write_text(out / "error.txt", traceback.format_exc())
        except OSError:
            pass
        return {"ok": False, "error_type": type(exc).__name__, "error": str(exc) or repr(exc)}


def read_finished_point(folder: Path, digest: str | None = None) -> dict[str, Any] | None:
    """The summary of a finished point folder (of the scenario with ``digest``, if given), or None.

    ``manifest.json`` is the runner's last write, so a folder without it is unfinished; so is one
    whose ``summary.json`` does not read back as a run summary.
    """
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        summary = read_run_summary(folder / "summary.json")
    except (FileNotFoundError, json.JSONDecodeError, ConfigError):
        return None
    if digest is not None and manifest.get("scenario_digest") != digest:
        return None
    return {"summary": summary, "wall_time_s": manifest.get("wall_time_s")}


@dataclass(frozen=True)
class PointOutcome:
    """What became of one point in this invocation."""

    point: SweepPoint
    ok: bool
    reused: bool
    summary: RunSummary | None = None
    wall_time_s: float | None = None
    error_type: str = ""
    error: str = ""


@dataclass(frozen=True)
class SweepResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    computed: int
    reused: int
    figures: list[Path] = field(default_factory=list)


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client on ``scheduler`` (an address), or on a new LocalCluster of ``workers`` processes."""
    import logging

    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"scheduler {scheduler!r}: cannot connect ({exc}); expected an address like "
                              "tcp://host:8786 of a running dask scheduler") from None
        with client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def run_sweep(
    sweep: Sweep,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    resume: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_point: Callable[[PointOutcome], None] | None = None,
) -> SweepResult:
    """Run every unfinished point and write the sweep folder.

    Points run on ``client`` if given, else on ``scheduler`` (a Dask address), else on a new
    LocalCluster of ``workers`` processes (default: one per CPU); ``workers=0`` runs them one after
    another in this process. With a remote scheduler every worker must see ``out_dir`` at the same
    path. ``on_start(total, already_finished)`` and ``on_point(outcome)`` report progress.
    """
    out = Path(out_dir).resolve()
    points_dir = out / "points"
    if not resume and points_dir.is_dir() and any(points_dir.iterdir()):
        raise ConfigError(f"{out_dir}: already holds sweep points; resume to keep the finished ones, "
                          "or choose another output folder")
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if sweep.source_text:
        atomic_write_text(out / "sweep.toml", sweep.source_text)
    atomic_write_text(out / "scenario.toml", scenario_to_toml(sweep.base))

    outcomes: dict[str, PointOutcome] = {}
    todo = []
    for p in sweep.points:
        finished = read_finished_point(points_dir / p.point_id, p.point_id) if resume else None
        if finished is None:
            todo.append(p)
        else:
            outcomes[p.point_id] = PointOutcome(p, True, True, finished["summary"], finished["wall_time_s"])
    if on_start:
        on_start(len(sweep.points), len(outcomes))

    def record(point: SweepPoint, result: dict[str, Any]) -> None:
        outcome = PointOutcome(point, result["ok"], False, result.get("summary"), result.get("wall_time_s"),
                               result.get("error_type", ""), result.get("error", ""))
        outcomes[point.point_id] = outcome
        if on_point:
            on_point(outcome)

    if todo and client is None and scheduler is None and workers == 0:
        for p in todo:
            record(p, run_point(p.scenario.to_dict(), str(points_dir / p.point_id)))
    elif todo and client is not None:
        _run_on_dask(client, todo, points_dir, record)
    elif todo:
        with dask_client(workers, scheduler) as own:
            _run_on_dask(own, todo, points_dir, record)

    ordered = [outcomes[p.point_id] for p in sweep.points]
    return write_sweep_folder(out, sweep, ordered, started, computed=len(todo))


def _run_on_dask(client: Any, todo: Sequence[SweepPoint], points_dir: Path,
                 record: Callable[[SweepPoint, dict[str, Any]], None]) -> None:
    from dask.distributed import as_completed

    run = uuid.uuid4().hex[:8]  # task keys must be unique on a shared scheduler, even for a rerun
    futures = {
        client.submit(run_point, p.scenario.to_dict(), str(points_dir / p.point_id), pure=False,
                      key=f"e2escan-point-{p.point_id}-{run}"): p
        for p in todo
    }
    try:
        for future in as_completed(futures):
            point = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. the worker died (KilledWorker)
                result = {"ok": False, "error_type": type(exc).__name__, "error": str(exc) or repr(exc)}
            record(point, result)
            future.release()
    finally:
        client.cancel(list(futures))


# --------------------------------------------------------------------------- the sweep folder


def sweep_rows(sweep: Sweep, outcomes: Sequence[PointOutcome]) -> list[dict[str, Any]]:
    """One row per finished point, in sweep order: point, point_id, swept values, headline metrics."""
    rows = []
    for o in outcomes:
        if not o.ok or o.summary is None:
            continue
        metrics = headline_metrics(o.summary)
        clash = set(metrics) & set(sweep.keys)
        metrics = {(f"metric.{k}" if k in clash else k): v for k, v in metrics.items()}
        rows.append({"point": o.point.index, "point_id": o.point.point_id,
                     **{k: table_cell(v) for k, v in o.point.params.items()}, **metrics})
    return rows


def write_sweep_folder(out: Path, sweep: Sweep, outcomes: Sequence[PointOutcome], started: float,
                       computed: int) -> SweepResult:
    """Write the tables, figures, summary and manifest of a sweep from its point outcomes (sweep order)."""
    def ident(o: PointOutcome) -> dict[str, Any]:
        return {"point": o.point.index, "point_id": o.point.point_id,
                **{k: table_cell(v) for k, v in o.point.params.items()}}

    head = ["point", "point_id", *sweep.keys]
    rows = sweep_rows(sweep, outcomes)
    columns = columns_of(head, rows)
    write_csv(out / "sweep.csv", rows, fieldnames=columns)
    write_parquet(out / "sweep.parquet", rows, columns)

    ok = [(o, o.summary) for o in outcomes if o.ok and o.summary is not None]
    costs = [{**ident(o), "wall_time_s": o.wall_time_s, **dict(sorted(s.costs.numbers().items()))} for o, s in ok]
    write_csv(out / "costs.csv", costs, fieldnames=columns_of([*head, "wall_time_s"], costs))
    leakage = [{**ident(o), **dict(sorted(r.to_dict().items()))} for o, s in ok for r in s.metrics.leakage]
    write_csv(out / "leakage.csv", leakage, fieldnames=columns_of(head, leakage))
    failures = [{**ident(o), "error_type": o.error_type, "error": o.error} for o in outcomes if not o.ok]
    write_csv(out / "failures.csv", failures, fieldnames=head + ["error_type", "error"])

    from ..report.sweeps import sweep_figures  # matplotlib only where figures are drawn

    figures = sweep_figures(out, sweep.name, sweep.keys, rows, HEADLINE, REPLICATION_KEYS)
    summary = {
        "sweep": sweep.name,
        "description": sweep.description,
        "scenario": sweep.scenario_ref,
        "base_scenario": sweep.base.name,
        "swept": list(sweep.keys),
        "points": len(outcomes),
        "finished": len(ok),
        "failed": len(failures),
        "computed_this_run": computed,
        "reused": sum(o.reused for o in outcomes),
        "duplicate_draws_merged": sweep.duplicates_merged,
        "failures": [{"point_id": o.point.point_id, "params": _describe(o.point.params), "error": o.error}
                     for o in outcomes if not o.ok],
        "tables": ["sweep.csv", "sweep.parquet", "costs.csv", "leakage.csv", "failures.csv"],
        "figures": sorted({p.name for p in figures}),
        **{f"provenance_{k}": v for k, v in provenance().items() if k in ("version", "git_commit")},
    }
    write_json(out / "summary.json", summary)
    write_manifest(out, command="e2escan sweep",
                   seed={"random.seed": sweep.random_seed, "scenario.seed": sweep.base.seed},
                   config={"sweep": sweep.to_dict(), "base_scenario": sweep.base.to_dict()}, started=started,
                   extra={"points": len(outcomes), "failed": len(failures)})
    return SweepResult(out, rows, failures, computed, summary["reused"], figures)
