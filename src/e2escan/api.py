"""The Python API for notebooks: ``e2escan.run`` and ``e2escan.load`` return a :class:`Result`.

``run`` simulates in memory and writes nothing unless ``out=`` is given (then
it writes exactly the folder ``e2escan run --out`` writes, with the same
checks). ``load`` reads a results folder back. A result gives its pooled
summary, the per-replicate summaries, pandas tables (pandas is an optional
extra: ``pip install e2escan[notebook]``) and matplotlib figures.
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:  # numpy loads with these; ``import e2escan`` must stay light (pool workers configure first)
    from .metrics.run import PooledMetrics, ReplicateSummary, RunSummary


@dataclass
class Result:
    """A run's pooled summary, its replicates and the tables behind them."""

    scenario: Any  # e2escan.sim.scenario.Scenario
    summary: RunSummary
    replicates: list[ReplicateSummary]
    histograms: list[list[dict[str, int]]]
    accounts: list[list[dict[str, Any]]] = field(default_factory=list)  # per replicate, faithful path only
    out: Path | None = None

    @property
    def metrics(self) -> PooledMetrics:
        """The pooled metrics (``summary.json``'s ``metrics``, typed: ``r.metrics.accounts.offenders_flagged.rate``)."""
        return self.summary.metrics

    def __str__(self) -> str:
        from .report.summary import format_summary

        return format_summary(self.summary)

    def tables(self) -> dict[str, Any]:
        """pandas DataFrames: ``metrics``, ``daily``, ``leakage``, ``costs``, ``histogram`` and (faithful) ``accounts``."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError("Result.tables() needs pandas: pip install 'e2escan[notebook]'") from None
        from .report.run_tables import metrics_rows

        out = {
            "metrics": pd.DataFrame(metrics_rows(self.summary)),
            "daily": pd.DataFrame([{"replicate": s.replicate, **d} for s in self.replicates for d in s.daily]),
            "leakage": pd.DataFrame([r.to_dict() for r in self.metrics.leakage]),
            "costs": pd.DataFrame([{"cost": k, "value": v} for k, v in self.summary.costs.to_dict().items()]),
            "histogram": pd.DataFrame([{"replicate": s.replicate, **row}
                                       for s, rows in zip(self.replicates, self.histograms) for row in rows]),
        }
        if any(self.accounts):
            out["accounts"] = pd.DataFrame([{"replicate": s.replicate, **row}
                                            for s, rows in zip(self.replicates, self.accounts) for row in rows])
        return out

    def figures(self) -> dict[str, Any]:
        """The run's figures as matplotlib figures, keyed by file stem (as written to a results folder)."""
        from .report.figures import build_figures, histogram_totals

        return build_figures(self.summary, self.replicates, histogram_totals(self.histograms))


def _scenario(scenario: Any, overrides: dict[str, Any]):
    from .sim.scenario import Scenario, resolve_scenario

    if isinstance(scenario, Scenario):
        base = scenario
    elif isinstance(scenario, dict):
        base = Scenario.from_dict(scenario)
    else:
        base = Scenario.load(resolve_scenario(None if scenario is None else str(scenario)))
    return base.with_overrides(**overrides) if overrides else base


def run(scenario: Any = "quickstart", *, out: str | Path | None = None, force: bool = False, resume: bool = False,
        cache: bool = False, set: dict[str, Any] | None = None, **overrides: Any) -> Result:  # noqa: A002
    """Simulate ``scenario`` (a shipped name, a TOML path, a dict or a Scenario) and return a :class:`Result`.

    Overrides are dotted keys in ``set={"protocol.params.threshold": 5}`` or
    keyword arguments with ``__`` for the dots (``protocol__params__threshold=5``).
    Nothing is written unless ``out`` is given; ``cache=True`` uses the on-disk
    hash cache.
    """
    from .config import to_dict
    from .outputs import claim_output_dir
    from .sim.runner import aggregate, run_scenario, simulate_replicate
    from .sim.scenario import validate_components

    dotted = {**(set or {}), **{k.replace("__", "."): v for k, v in overrides.items()}}
    s = _scenario(scenario, dotted)
    validate_components(s)
    if out is not None:
        claim_output_dir(out, command="run", identity=to_dict(s), force=force, resume=resume).prepare()
        run_scenario(s, out, resume=resume, cache_dir="default" if cache else None,
                     command="e2escan.run(...) from Python")
        return load(out)
    results = [simulate_replicate(s, r, cache_dir="default" if cache else None) for r in range(s.replicates)]
    for r in results:
        if r.relay is not None:
            r.relay.close()
    summaries = [r.summary for r in results]
    return Result(s, aggregate(s, summaries), summaries, [r.histogram for r in results],
                  [r.accounts for r in results])


def _read_csv(path: Path) -> list[dict[str, Any]]:
    def value(text: str) -> Any:
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return {"True": True, "False": False}.get(text, text)

    with path.open(newline="") as fh:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def load(path: str | Path) -> Result:
    """Read an ``e2escan run`` results folder back into a :class:`Result`."""
    from .report.run_tables import read_replicate_summary, read_run_summary
    from .sim.scenario import Scenario

    folder = Path(path)
    if not (folder / "summary.json").is_file() or not (folder / "scenario.toml").is_file():
        raise ConfigError(f"{folder}: not an `e2escan run` results folder (no summary.json and scenario.toml)")
    try:
        summary = read_run_summary(folder / "summary.json")
        scenario = Scenario.from_dict(tomllib.loads((folder / "scenario.toml").read_text()))
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"{folder}: unreadable results ({exc})") from None
    replicates, histograms, accounts = [], [], []
    for rep in sorted((folder / "runs").glob("rep-*")):
        replicates.append(read_replicate_summary(rep / "summary.json"))
        histograms.append(_read_csv(rep / "match_histogram.csv"))
        accounts.append(_read_csv(rep / "accounts.csv") if (rep / "accounts.csv").is_file() else [])
    return Result(scenario, summary, replicates, histograms, accounts, folder)
