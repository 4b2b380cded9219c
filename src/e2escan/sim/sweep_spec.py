"""Sweep files: one base scenario and the fields to vary, parsed and expanded into validated points.

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
hasher parameters), so a typo fails at once; every error is one line naming
the sweep file, the dotted key, the value and what is accepted. Each point's
identity is the digest of its complete scenario.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import from_dict, invalid, load_toml, nonempty, option, show
from ..errors import ConfigError, E2escanError
from ..report.sweep_tables import table_cell
from .runner import scenario_digest
from .scenario import Scenario, resolve_scenario, shipped_scenarios_dir, validate_components

ONE_DISTRIBUTION = "one of {uniform = [low, high]}, {loguniform = [low, high]}, {integers = [low, high]}, {choice = [...]}"


def _folder_name(name: str) -> str | None:
    return "not usable as a folder name" if not name or "/" in name or name.startswith(".") else None


def _plain(value: Any) -> str | None:
    """A ``check``: only what TOML writes plainly (no dates) may be swept."""
    if isinstance(value, Mapping):
        return next((p for p in map(_plain, value.values()) if p), None)
    if isinstance(value, (list, tuple)):
        return next((p for p in map(_plain, value) if p), None)
    return None if isinstance(value, (str, int, float, bool)) else f"holds a {type(value).__name__}"


@dataclass(frozen=True)
class Distribution:
    """How one ``[random]`` key is drawn: exactly one of the four tables."""

    uniform: tuple[float, float] | None = option(None, doc="a number uniform in [low, high)")
    loguniform: tuple[float, float] | None = option(None, doc="a number log-uniform in [low, high), low > 0")
    integers: tuple[int, int] | None = option(None, doc="an integer from low to high, both included")
    choice: tuple[Any, ...] | None = option(None, doc="one of the listed values", check=lambda v: nonempty(v) or _plain(v),
                                            accepts="a non-empty list of strings, numbers, booleans, lists or tables")

    def _given(self) -> list[tuple[str, tuple[Any, ...]]]:
        """(kind, arguments) of every distribution table given (exactly one in a valid file)."""
        tables = (("uniform", self.uniform), ("loguniform", self.loguniform), ("integers", self.integers),
                  ("choice", self.choice))
        return [(kind, args) for kind, args in tables if args is not None]

    def __post_init__(self) -> None:
        if len(self._given()) != 1:
            raise ConfigError(f"exactly one distribution; accepted: {ONE_DISTRIBUTION}")
        if self.kind != "choice":
            low, high = self.args
            if low > high or (low == high and self.kind != "integers"):
                raise ConfigError(invalid(self.kind, list(self.args), "low not below high", "[low, high], low < high"))
            if self.kind == "loguniform" and low <= 0:
                raise ConfigError(invalid(self.kind, list(self.args), "low not positive", "[low, high], 0 < low < high"))

    @property
    def kind(self) -> str:
        return self._given()[0][0]

    @property
    def args(self) -> tuple[Any, ...]:
        return self._given()[0][1]

    def draw(self, rng: np.random.Generator) -> Any:
        a = self.args
        if self.kind == "uniform":
            return float(rng.uniform(a[0], a[1]))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(a[0]), math.log(a[1]))))
        if self.kind == "integers":
            return int(rng.integers(a[0], a[1], endpoint=True))
        return json.loads(json.dumps(a[int(rng.integers(len(a)))]))  # a fresh copy


@dataclass(frozen=True)
class RandomTable:
    """``[random]``: how many draws, the sampler's seed, and a distribution per dotted scenario key."""

    samples: int = option(doc="how many draws", range=(1, None))
    seed: int = option(0, doc="the sampler's seed", range=(0, None),
                       accepts="an integer at least 0, the sampler's seed (to vary the scenario's seed, list its "
                               "values in [grid], e.g. seed = [1, 2, 3])")
    draws: dict[str, Any] = option(default_factory=dict, rest=True, doc="scenario key = distribution")


@dataclass(frozen=True)
class SweepFile:
    """A sweep file as written (see the module docstring)."""

    name: str = option(doc="the sweep's name, used for its results folder", check=_folder_name,
                       accepts="a non-empty word usable as a folder name")
    scenario: str = option(doc="the base scenario: a path relative to the sweep file, or a shipped scenario name")
    description: str = option("", doc="what the sweep asks")
    set: dict[str, Any] = option(default_factory=dict, doc="fixed overrides of the base scenario", check=_plain)
    grid: dict[str, Any] = option(default_factory=dict, doc="scenario key = list of values", check=_plain)
    random: RandomTable | None = option(None, doc="random draws, crossed with the grid")


@dataclass(frozen=True)
class SweepPoint:
    """One point: its position in the sweep, its identity, the swept values and the full scenario."""

    index: int
    point_id: str
    params: dict[str, Any]
    scenario: Scenario

    def label(self) -> str:
        return ", ".join(f"{k}={table_cell(v)}" for k, v in self.params.items())


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
    return sweep_from_dict(load_toml(path), base_dir=path.parent, where=str(path), overrides=overrides,
                           source_text=path.read_text(encoding="utf-8"))


def sweep_from_dict(data: dict[str, Any], *, base_dir: str | Path = ".", where: str = "sweep",
                    overrides: dict[str, Any] | None = None, source_text: str = "") -> Sweep:
    """Validate a parsed sweep file; every error is one line starting with ``where`` (the file)."""
    def fail(message: str) -> typing.NoReturn:
        raise ConfigError(f"{where}: {message}")

    spec = from_dict(SweepFile, data, source=where)
    fixed = _flatten(spec.set, lambda v: not isinstance(v, dict))
    for key, value in fixed.items():
        _check_key(key, f"set.{key}", value, fail)
    for key, value in (overrides or {}).items():
        _check_key(key, f"--set {key}", value, fail)
        fixed[key] = value
    base_path = _resolve_base(spec.scenario, Path(base_dir), fail)
    try:
        base = Scenario.load(base_path)
        base = base.with_overrides(**fixed) if fixed else base
    except E2escanError as exc:
        fail(f"scenario = {show(spec.scenario)}{' with [set] ' + describe_params(fixed) if fixed else ''}: {exc}")

    grid = []
    for key, values in _flatten(spec.grid, lambda v: not isinstance(v, dict)).items():
        _check_key(key, f"grid.{key}", values, fail)
        texts = [canonical(v) for v in values] if isinstance(values, list) else []
        twice = next((t for i, t in enumerate(texts) if t in texts[:i]), None)
        if not texts or twice:
            problem = f"{twice} listed twice" if twice else "not a non-empty list"
            fail(invalid(f"grid.{key}", values, problem, "a non-empty list of distinct values, e.g. [2, 3, 5]"))
        grid.append((key, tuple(values)))
    table = spec.random or RandomTable(samples=0)
    distributions = []
    for key, value in _flatten(table.draws, _is_distribution).items():
        _check_key(key, f"random.{key}", value, fail)
        if not isinstance(value, dict) or len(value) != 1:
            fail(invalid(f"random.{key}", value, "not one distribution", ONE_DISTRIBUTION))
        distributions.append((key, from_dict(Distribution, value, f"random.{key}", source=where)))
    if spec.random is not None and not distributions:
        fail(invalid("random", data.get("random"), "no keys to draw",
                     'dotted scenario keys with a distribution, e.g. "traffic.forward_share" = {uniform = [0.0, 0.5]}'))

    swept = [k for k, _ in grid] + [k for k, _ in distributions]
    for key in swept:
        if key in fixed:
            fail(invalid(key, fixed[key], "both fixed (in [set] or --set) and swept", "a key fixed or swept, not both"))
    for a, b in itertools.permutations(swept + list(fixed), 2):
        if b.startswith(a + "."):
            fail(f"{a} and {b}: overlap; accepted: the whole table or the one field, not both")
    if not swept:
        fail("nothing to sweep; accepted: a [grid] table of lists or a [random] table of distributions")
    points, merged = _points(base, grid, table.samples, table.seed, distributions, fail)
    return Sweep(name=spec.name, description=spec.description, scenario_ref=spec.scenario, base=base, fixed=fixed,
                 grid=tuple(grid), random_samples=table.samples, random_seed=table.seed,
                 distributions=tuple(distributions), points=points, duplicates_merged=merged, source_text=source_text)


def _flatten(table: Mapping[str, Any], is_leaf: Callable[[Any], bool], prefix: str = "") -> dict[str, Any]:
    """Unquoted dotted TOML keys arrive as nested tables; turn them back into dotted keys."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        out.update({dotted: value} if is_leaf(value) else _flatten(value, is_leaf, dotted))
    return out


def _is_distribution(value: Any) -> bool:
    """A table of tables is a step of an unquoted dotted key; anything else is meant as a distribution."""
    return not isinstance(value, dict) or not value or any(not isinstance(v, dict) for v in value.values())


def _check_key(key: str, at: str, value: Any, fail: Callable[[str], typing.NoReturn]) -> None:
    """``key`` must name a scenario field (a parameter table's keys are checked with each point)."""
    cls: Any = Scenario
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            scope = f"fields of {'.'.join(parts[:i])}" if i else "top-level fields"
            fail(invalid(at, value, f"{part} is not a scenario field", f"{scope}: {', '.join(sorted(fields))}"))
        tp = typing.get_type_hints(cls)[part]
        if fields[part].metadata.get("type_from") or typing.get_origin(tp) is dict:
            return
        if dataclasses.is_dataclass(tp):
            cls = tp
        elif i < len(parts) - 1:
            here = ".".join(parts[: i + 1])
            fail(invalid(at, value, f"{here} is a value, not a table", f"{here} itself"))


def _resolve_base(ref: str, base_dir: Path, fail: Callable[[str], typing.NoReturn]) -> Path:
    for candidate in (base_dir / ref, base_dir / f"{ref}.toml"):
        if candidate.is_file():
            return candidate
    try:
        return resolve_scenario(ref)
    except E2escanError:
        shipped = ", ".join(sorted(p.stem for p in shipped_scenarios_dir().glob("*.toml")))
        fail(invalid("scenario", ref, "no such file next to the sweep file, and no shipped scenario of that name",
                     f"a path relative to the sweep file, or one of {shipped}"))


def _points(base: Scenario, grid: list[tuple[str, tuple[Any, ...]]], samples: int, seed: int,
            distributions: list[tuple[str, Distribution]],
            fail: Callable[[str], typing.NoReturn]) -> tuple[tuple[SweepPoint, ...], int]:
    """Every point (grid x draws, in order), validated; repeated draws of one scenario run once."""
    grid_points = [dict(zip([k for k, _ in grid], combo)) for combo in itertools.product(*[v for _, v in grid])]
    draws: list[dict[str, Any]] = [{}]
    if distributions:
        rng = np.random.default_rng(seed)
        draws = [{key: dist.draw(rng) for key, dist in distributions} for _ in range(samples)]
    points: list[SweepPoint] = []
    seen: set[str] = set()
    for g, r in itertools.product(grid_points, draws):
        params = {**g, **r}
        try:
            scenario = base.with_overrides(**params)
            validate_components(scenario)  # protocol and hasher accept their parameters
        except E2escanError as exc:
            fail(f"point {describe_params(params)}: {exc}")
        point_id = scenario_digest(scenario)
        if point_id not in seen:
            seen.add(point_id)
            points.append(SweepPoint(len(points), point_id, params, scenario))
    return tuple(points), len(grid_points) * len(draws) - len(points)


def canonical(value: Any) -> str:
    """``value`` as canonical JSON (sorted keys): how swept values are compared and written in cells."""
    return json.dumps(value, sort_keys=True)


def describe_params(params: dict[str, Any]) -> str:
    """``key=value, ...`` of a point's swept values (lists and tables as JSON)."""
    return ", ".join(f"{k}={canonical(v)}" for k, v in params.items()) or "(none)"
