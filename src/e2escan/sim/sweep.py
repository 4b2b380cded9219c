"""Parameter sweeps: one base scenario run at many points of its parameter space.

A sweep file (TOML) names a base scenario and the fields to vary::

    name = "threshold"
    scenario = "quickstart"     # a path relative to this file, or a shipped scenario name
    description = "..."         # optional

    [set]                       # optional: fixed overrides applied to every point
    days = 2

    [grid]                      # optional: cartesian product, in the order written
    "protocol.params.threshold" = [2, 3, 5]
    seed = [1, 2, 3]

    [random]                    # optional: `samples` draws, crossed with the grid
    samples = 8
    seed = 0                    # the sampler's seed (not the scenario's)
    "traffic.forward_share" = {uniform = [0.0, 0.5]}

Keys are dotted scenario keys, quoted or not. Distributions: ``uniform`` and
``loguniform`` over ``[low, high]``, ``integers`` over ``[low, high]`` (both
ends included), ``choice`` over a list of values. The random draws come from
one seeded ``numpy.random.Generator`` (sample by sample, keys in file order),
and the same draws are crossed with every grid point, so grid points are
compared on common random numbers.

Every point is validated before any work (scenario fields, protocol and
hasher parameters), so a typo fails at once and the error names the key.

Each point's identity is the digest of its complete scenario, and its results
live in ``OUT/points/<point_id>/`` (a normal ``e2escan run`` folder). A folder
whose ``manifest.json`` exists is finished (the runner writes it last); with
``resume=True`` finished points are read back, not recomputed, and a point
killed half-way keeps its finished replicates.

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

import dataclasses
import itertools
import json
import math
import os
import time
import traceback
import typing
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import load_toml
from ..errors import ConfigError, E2escanError
from ..results import (
    atomic_write_bytes,
    atomic_write_text,
    provenance,
    write_csv,
    write_json,
    write_manifest,
)
from .runner import run_scenario, scenario_digest, scenario_to_toml
from .scenario import Scenario, resolve_scenario, validate_components

SWEEP_KEYS = ("name", "scenario", "description", "set", "grid", "random")
DISTRIBUTIONS = ("uniform", "loguniform", "integers", "choice")
REPLICATION_KEYS = ("seed",)  # pooled, not drawn as separate lines, in the figures
HEADLINE = (
    ("accounts.innocent_flagged", "innocent accounts flagged"),
    ("accounts.offenders_detected", "offenders detected (confirmed)"),
    ("per_image.false_positive", "per-image false positives"),
    ("per_image.false_negative", "per-image false negatives"),
)
PROPORTION_FIELDS = ("rate", "count", "of", "ci_low", "ci_high")


# --------------------------------------------------------------------------- the sweep file


@dataclass(frozen=True)
class Distribution:
    """How one ``[random]`` key is drawn."""

    kind: str
    args: tuple[Any, ...]

    def draw(self, rng: np.random.Generator) -> Any:
        if self.kind == "uniform":
            return float(rng.uniform(self.args[0], self.args[1]))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.args[0]), math.log(self.args[1]))))
        if self.kind == "integers":
            return int(rng.integers(self.args[0], self.args[1], endpoint=True))
        return json.loads(json.dumps(self.args[int(rng.integers(len(self.args)))]))  # a fresh copy


@dataclass(frozen=True)
class SweepPoint:
    """One point: its position in the sweep, its identity, the swept values and the full scenario."""

    index: int
    point_id: str
    params: dict[str, Any]
    scenario: Scenario

    def label(self) -> str:
        return ", ".join(f"{k}={_display(v)}" for k, v in self.params.items())


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: the base scenario, what varies, and every point (already validated)."""

    name: str
    description: str
    scenario_ref: str
    base: Scenario
    fixed: dict[str, Any]
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    random_samples: int
    random_seed: int
    distributions: tuple[tuple[str, Distribution], ...]
    points: tuple[SweepPoint, ...]
    duplicates_merged: int = 0
    source_text: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        """The swept keys: grid keys in file order, then random keys in file order."""
        return tuple(k for k, _ in self.grid) + tuple(k for k, _ in self.distributions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "scenario": self.scenario_ref,
            "set": self.fixed,
            "grid": {k: list(v) for k, v in self.grid},
            "random": {"samples": self.random_samples, "seed": self.random_seed,
                       **{k: {d.kind: list(d.args)} for k, d in self.distributions}} if self.distributions else {},
        }


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> Sweep:
    """Read and validate a sweep file; ``overrides`` (dotted keys) apply to every point, after ``[set]``."""
    path = Path(path)
    try:
        data = load_toml(path)
    except E2escanError as exc:
        raise ConfigError(str(exc)) from None
    return sweep_from_dict(data, base_dir=path.parent, where=str(path), overrides=overrides,
                           source_text=path.read_text(encoding="utf-8"))


def sweep_from_dict(data: dict[str, Any], *, base_dir: str | Path = ".", where: str = "sweep",
                    overrides: dict[str, Any] | None = None, source_text: str = "") -> Sweep:
    """Validate a parsed sweep file (see the module docstring); errors name ``where`` and the key."""
    unknown = sorted(set(data) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                          f"allowed keys: {', '.join(SWEEP_KEYS)}")
    for key in ("name", "scenario"):
        if key not in data:
            raise ConfigError(f"{where}: required key {key!r} is missing")
    name = _string(data, "name", where)
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"{where}: name: {name!r} must be a non-empty word usable as a folder name")
    ref = _string(data, "scenario", where)
    description = _string(data, "description", where) if "description" in data else ""

    fixed = _flatten(_table(data, "set", where), "", lambda v: not isinstance(v, dict))
    for key, value in fixed.items():
        _check_key(key, f"{where}: [set] {key!r}")
        _check_value(value, f"{where}: [set] {key!r}")
    for key, value in (overrides or {}).items():
        _check_key(key, f"--set {key}")
        _check_value(value, f"--set {key}")
        fixed[key] = value
    scenario_path = _resolve_base(ref, Path(base_dir), where)
    try:
        base = Scenario.load(scenario_path)
        if fixed:
            base = base.with_overrides(**fixed)
    except E2escanError as exc:
        with_set = f" with [set] {_describe(fixed)}" if fixed else ""
        raise ConfigError(f"{where}: scenario {ref!r}{with_set}: {exc}") from None

    grid = _parse_grid(_table(data, "grid", where), where)
    samples, seed, distributions = _parse_random(_table(data, "random", where), where)
    swept = [k for k, _ in grid] + [k for k, _ in distributions]
    for key in swept:
        if key in fixed:
            raise ConfigError(f"{where}: {key!r} is both fixed (in [set] or --set) and swept; keep one")
    for a, b in itertools.permutations(swept + list(fixed), 2):
        if b.startswith(a + "."):
            raise ConfigError(f"{where}: {a!r} and {b!r} overlap; set the whole table or the one field, not both")
    if not swept:
        raise ConfigError(f"{where}: nothing to sweep; add a [grid] table of lists or a [random] table of "
                          "distributions")

    points, merged = _enumerate_points(base, grid, samples, seed, distributions, where)
    return Sweep(name=name, description=description, scenario_ref=ref, base=base, fixed=fixed, grid=grid,
                 random_samples=samples, random_seed=seed, distributions=distributions, points=points,
                 duplicates_merged=merged, source_text=source_text)


def _string(data: dict[str, Any], key: str, where: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key}: expected a string, got {type(value).__name__} {value!r}")
    return value


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key}: expected a table ([{key}]), got {type(value).__name__} {value!r}")
    return value


def _flatten(table: dict[str, Any], prefix: str, is_leaf: Callable[[Any], bool]) -> dict[str, Any]:
    """Unquoted dotted TOML keys arrive as nested tables; turn them back into dotted keys."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if is_leaf(value):
            out[dotted] = value
        else:
            out.update(_flatten(value, dotted, is_leaf))
    return out


def _check_key(key: str, where: str) -> None:
    """``key`` must name a scenario field (any name is allowed inside a parameter table)."""
    cls: Any = Scenario
    parts = key.split(".")
    for i, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(cls)}
        here = ".".join(parts[: i + 1])
        if part not in names:
            scope = f"fields of {'.'.join(parts[:i])}" if i else "top-level fields"
            raise ConfigError(f"{where}: {here!r} is not a scenario field; {scope}: {', '.join(sorted(names))}")
        tp = typing.get_type_hints(cls)[part]
        if dataclasses.is_dataclass(tp):
            cls = tp
        elif typing.get_origin(tp) is dict:
            return  # protocol.params.* and hasher.params.* are checked by the protocol and hasher
        elif i < len(parts) - 1:
            raise ConfigError(f"{where}: {here!r} is a value, not a table; sweep {here!r} itself")


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_value(v, f"{where}.{k}")
    elif isinstance(value, list):
        for v in value:
            _check_value(v, where)
    elif not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"{where}: {value!r} is a {type(value).__name__}; use strings, numbers, booleans, "
                          "lists or tables")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _display(value: Any) -> Any:
    return _canonical(value) if isinstance(value, (list, dict)) else value


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_canonical(v)}" for k, v in params.items()) or "(none)"


def _resolve_base(ref: str, base_dir: Path, where: str) -> Path:
    for candidate in (base_dir / ref, base_dir / f"{ref}.toml"):
        if candidate.is_file():
            return candidate
    try:
        return resolve_scenario(ref)
    except E2escanError as exc:
        raise ConfigError(f"{where}: scenario: {exc} (paths are relative to the sweep file)") from None


def _parse_grid(table: dict[str, Any], where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    grid = []
    for key, values in _flatten(table, "", lambda v: not isinstance(v, dict)).items():
        at = f"{where}: [grid] {key!r}"
        _check_key(key, at)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{at}: expected a non-empty list of values, e.g. [2, 3, 5]; got {values!r}")
        _check_value(values, at)
        seen = set()
        for v in values:
            if _canonical(v) in seen:
                raise ConfigError(f"{at}: the value {_canonical(v)} is listed twice")
            seen.add(_canonical(v))
        grid.append((key, tuple(values)))
    return tuple(grid)


def _is_distribution(value: Any) -> bool:
    """A table of tables is a step of an unquoted dotted key; anything else is meant as a distribution."""
    return not isinstance(value, dict) or not value or any(not isinstance(v, dict) for v in value.values())


def _parse_random(table: dict[str, Any], where: str) -> tuple[int, int, tuple[tuple[str, Distribution], ...]]:
    if not table:
        return 0, 0, ()
    table = dict(table)
    samples = table.pop("samples", None)
    seed = table.pop("seed", 0)
    if isinstance(seed, dict):
        raise ConfigError(f"{where}: [random] seed is the sampler's seed (an integer); to vary the scenario's "
                          "seed, list its values in [grid], e.g. seed = [1, 2, 3]")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"{where}: [random] samples: expected a positive integer (how many draws), got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}: [random] seed: expected a non-negative integer, got {seed!r}")
    distributions = []
    for key, spec in _flatten(table, "", _is_distribution).items():
        at = f"{where}: [random] {key!r}"
        _check_key(key, at)
        distributions.append((key, _parse_distribution(spec, at)))
    if not distributions:
        raise ConfigError(f"{where}: [random] has no keys to draw; add e.g. "
                          '"traffic.forward_share" = {uniform = [0.0, 0.5]}')
    return samples, seed, tuple(distributions)


def _parse_distribution(spec: Any, at: str) -> Distribution:
    accepted = "{uniform = [a, b]}, {loguniform = [a, b]}, {integers = [a, b]} or {choice = [...]}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{at}: expected one distribution, {accepted}; got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{at}: unknown distribution {kind!r}; use {accepted}")
    if not isinstance(args, list):
        raise ConfigError(f"{at}: {kind}: expected a list, got {args!r}")
    if kind == "choice":
        if not args:
            raise ConfigError(f"{at}: choice: needs at least one value")
        _check_value(args, at)
        return Distribution(kind, tuple(args))
    if len(args) != 2:
        raise ConfigError(f"{at}: {kind}: expected [low, high], got {args!r}")
    number = int if kind == "integers" else (int, float)
    if any(isinstance(a, bool) or not isinstance(a, number) for a in args):
        what = "integers" if kind == "integers" else "numbers"
        raise ConfigError(f"{at}: {kind}: bounds must be {what}, got {args!r}")
    low, high = args
    if kind == "integers" and low > high or kind != "integers" and not low < high:
        raise ConfigError(f"{at}: {kind}: low {low!r} must be below high {high!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{at}: loguniform: bounds must be positive, got {args!r}")
    return Distribution(kind, (low, high))


def _enumerate_points(base: Scenario, grid, samples: int, seed: int, distributions,
                      where: str) -> tuple[tuple[SweepPoint, ...], int]:
    grid_points = [dict(zip([k for k, _ in grid], combo)) for combo in itertools.product(*[v for _, v in grid])]
    draws: list[dict[str, Any]] = [{}]
    if distributions:
        rng = np.random.default_rng(seed)
        draws = [{key: dist.draw(rng) for key, dist in distributions} for _ in range(samples)]
    points: list[SweepPoint] = []
    seen: set[str] = set()
    merged = 0
    for g, r in itertools.product(grid_points, draws):
        params = {**g, **r}
        try:
            scenario = base.with_overrides(**params)
            validate_components(scenario)  # protocol and hasher accept their parameters
        except E2escanError as exc:
            raise ConfigError(f"{where}: point {_describe(params)}: {exc}") from None
        point_id = scenario_digest(scenario)
        if point_id in seen:  # random draws may repeat (choice, integers); the point runs once
            merged += 1
            continue
        seen.add(point_id)
        points.append(SweepPoint(len(points), point_id, params, scenario))
    return tuple(points), merged


# --------------------------------------------------------------------------- running points


def run_point(scenario: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Run one point in this process and write its results folder; failures are returned, not raised.

    Plain data in and out, at module level, so Dask can ship it to worker processes. Returns
    ``{"ok": True, "summary": ..., "wall_time_s": ...}`` as read back from the folder, or
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

    ``manifest.json`` is the runner's last write, so a folder without it is unfinished.
    """
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
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
    summary: dict[str, Any] | None = None
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


def _cell(value: Any) -> Any:
    return _canonical(value) if isinstance(value, (list, dict)) else value


def headline_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The deterministic metrics of a point's summary, flattened to ``section.metric[.field]`` columns."""
    m = summary["metrics"]
    row: dict[str, Any] = {"replicates": summary["replicates"]}
    for section in ("per_image", "accounts", "review"):
        for key, entry in m[section].items():
            if isinstance(entry, dict):
                row.update({f"{section}.{key}.{f}": entry[f] for f in PROPORTION_FIELDS})
            else:
                row[f"{section}.{key}"] = entry
    row["threshold"] = m["threshold"]
    row["database_size"] = m["database_size"]
    return row


def sweep_rows(sweep: Sweep, outcomes: Sequence[PointOutcome]) -> list[dict[str, Any]]:
    """One row per finished point, in sweep order: point, point_id, swept values, headline metrics."""
    rows = []
    for o in outcomes:
        if not o.ok:
            continue
        metrics = headline_metrics(o.summary or {})
        clash = set(metrics) & set(sweep.keys)
        metrics = {(f"metric.{k}" if k in clash else k): v for k, v in metrics.items()}
        rows.append({"point": o.point.index, "point_id": o.point.point_id,
                     **{k: _cell(v) for k, v in o.point.params.items()}, **metrics})
    return rows


def _columns(head: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[str]:
    """``head``, then every other key of ``rows`` in first-seen order."""
    return list(dict.fromkeys([*head, *(c for r in rows for c in r)]))


def write_sweep_folder(out: Path, sweep: Sweep, outcomes: Sequence[PointOutcome], started: float,
                       computed: int) -> SweepResult:
    """Write the tables, figures, summary and manifest of a sweep from its point outcomes (sweep order)."""
    def ident(o: PointOutcome) -> dict[str, Any]:
        return {"point": o.point.index, "point_id": o.point.point_id,
                **{k: _cell(v) for k, v in o.point.params.items()}}

    head = ["point", "point_id", *sweep.keys]
    rows = sweep_rows(sweep, outcomes)
    columns = _columns(head, rows)
    write_csv(out / "sweep.csv", rows, fieldnames=columns)
    write_parquet(out / "sweep.parquet", rows, columns)

    ok = [o for o in outcomes if o.ok]
    costs = [{**ident(o), "wall_time_s": o.wall_time_s,
              **{k: v for k, v in (o.summary or {}).get("costs", {}).items() if not isinstance(v, str)}}
             for o in ok]
    write_csv(out / "costs.csv", costs, fieldnames=_columns([*head, "wall_time_s"], costs))
    leakage = [{**ident(o), **r} for o in ok for r in (o.summary or {})["metrics"]["leakage"]]
    write_csv(out / "leakage.csv", leakage, fieldnames=_columns(head, leakage))
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


def write_parquet(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` as a Parquet table; each column gets one Arrow type (mixed columns become text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: _arrow_column([r.get(c) for r in rows]) for c in columns})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _arrow_column(values: list[Any]) -> Any:
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if not present:
        return pa.array(values, type=pa.null())
    if all(isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.bool_())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.int64())
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    return pa.array([None if v is None else (v if isinstance(v, str) else _canonical(v)) for v in values],
                    type=pa.string())


# --------------------------------------------------------------------------- figures
