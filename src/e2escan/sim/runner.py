"""Run a scenario: replicates written atomically one by one, then the aggregate results folder.

Layout of a results folder::

    OUT/scenario.toml            the scenario as run (after --seed overrides)
    OUT/runs/rep-000/            one complete replicate: summary.json, accounts.csv,
                                 images.csv, daily.csv, leakage.csv, manifest.json
    OUT/summary.json             metrics pooled over replicates, costs, provenance
    OUT/metrics.csv daily.csv leakage.csv costs.csv
    OUT/*.png *.svg              figures
    OUT/manifest.json

A replicate is written to a temporary directory and renamed when complete, so
a killed run leaves earlier replicates untouched and ``resume=True`` skips them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import to_dict, to_toml
from ..errors import ScenarioError
from ..metrics.leakage import LeakageEstimate
from ..metrics.rates import clustered_proportion, proportion
from ..metrics.run import (
    Attacks,
    Costs,
    PerImage,
    PooledAccounts,
    PooledLeakage,
    PooledMetrics,
    Rate,
    ReplicateSummary,
    Review,
    RunMetrics,
    RunSummary,
)
from ..report.figures import scenario_figures
from ..report.run_tables import read_replicate_summary, write_replicate_tables, write_run_tables
from ..results import atomic_write_text, provenance, write_manifest
from .faithful import run_faithful
from .measure import account_rows, compute_metrics, cost_metrics
from .scenario import Scenario, validate_components


def scenario_digest(scenario: Scenario) -> str:
    return hashlib.sha256(json.dumps(to_dict(scenario), sort_keys=True).encode()).hexdigest()[:16]


def scenario_to_toml(scenario: Scenario) -> str:
    """Serialise a scenario back to TOML (round-trips through :meth:`Scenario.from_dict`)."""
    return to_toml(to_dict(scenario))


def match_histogram(rows: list[dict[str, Any]]) -> list[dict[str, int]]:
    """Accounts by number of matching images, innocent and offending (faithful path rows)."""
    top = max((r["matching_images"] for r in rows), default=0) + 1
    inn = [0] * top
    off = [0] * top
    for r in rows:
        (off if r["offender"] else inn)[r["matching_images"]] += 1
    return [{"matching_images": k, "innocent_accounts": inn[k], "offending_accounts": off[k]} for k in range(top)]


@dataclass
class ReplicateResult:
    """One simulated replicate in memory: its summary and the tables a results folder holds."""

    summary: ReplicateSummary
    histogram: list[dict[str, int]]
    accounts: list[dict[str, Any]] = field(default_factory=list)  # faithful path only
    images: list[dict[str, Any]] = field(default_factory=list)  # faithful path only
    relay: Any = None  # the faithful path's relay (closed by the caller)


def simulate_replicate(scenario: Scenario, replicate: int, progress: Callable[[int], None] | None = None,
                       cache_dir: Any = "default", protocol: Any = None) -> ReplicateResult:
    """Simulate one replicate without writing anything."""
    if scenario.engine == "statistical":
        from .statistical import run_statistical

        result = run_statistical(scenario, replicate, progress)
        summary = ReplicateSummary(replicate, scenario.engine, result.metrics, result.costs, result.daily)
        return ReplicateResult(summary, result.histogram)
    run = run_faithful(scenario, replicate, cache_dir=cache_dir, progress=progress, protocol=protocol)
    summary = ReplicateSummary(replicate, scenario.engine, compute_metrics(run), cost_metrics(run), tuple(run.daily))
    rows = account_rows(run)
    return ReplicateResult(summary, match_histogram(rows), rows, [vars(r) for r in run.images], run.relay)


def run_replicate(scenario: Scenario, replicate: int, out_dir: Path, progress: Callable[[int], None] | None = None,
                  cache_dir: Any = "default", protocol: Any = None) -> ReplicateSummary:
    """Simulate one replicate and write its folder atomically; returns its summary."""
    started = time.perf_counter()
    tmp = out_dir / "runs" / f".rep-{replicate:03d}.tmp"
    final = out_dir / "runs" / f"rep-{replicate:03d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    result = simulate_replicate(scenario, replicate, progress, cache_dir, protocol)
    write_replicate_tables(tmp, result.summary, result.histogram, result.accounts, result.images)
    write_manifest(tmp, command="e2escan run", seed=scenario.seed, config=to_dict(scenario), started=started,
                   extra={"replicate": replicate, "scenario_digest": scenario_digest(scenario)})
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    if result.relay is not None:
        result.relay.close()
    return result.summary


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress_factory: Callable[[int, str], Any] | None = None,
    cache_dir: Any = "default",
    protocol: Any = None,
    figures: bool = True,
    command: str = "e2escan run",
) -> RunSummary:
    """Run every replicate (skipping finished ones when resuming) and write the aggregate folder.

    ``command`` is recorded in the manifests (the CLI passes its whole command line, ``--set`` included).
    """
    out = Path(out_dir)
    started = time.perf_counter()
    if protocol is None:
        validate_components(scenario)
    digest = scenario_digest(scenario)
    marker = out / "scenario.toml"
    if resume and marker.exists():
        previous = Scenario.from_dict(__import__("tomllib").loads(marker.read_text()))
        if scenario_digest(previous) != digest:
            raise ScenarioError(f"{out}: holds results of a different scenario; choose another --out or drop --resume")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, scenario_to_toml(scenario))
    summaries = []
    for rep in range(scenario.replicates):
        done = out / "runs" / f"rep-{rep:03d}" / "summary.json"
        if resume and done.exists():
            summaries.append(read_replicate_summary(done))
            continue
        bar = progress_factory(rep, f"replicate {rep + 1}/{scenario.replicates}") if progress_factory else None
        try:
            summaries.append(run_replicate(scenario, rep, out, bar.update if bar else None, cache_dir, protocol))
        finally:
            if bar:
                bar.close()
    summary = aggregate(scenario, summaries)
    write_run_tables(out, summary, summaries)
    if figures:
        scenario_figures(out, summary, summaries)
    write_manifest(out, command=command, seed=scenario.seed, config=to_dict(scenario), started=started,
                   extra={"replicates": len(summaries), "scenario_digest": scenario_digest(scenario)})
    return summary


def aggregate(scenario: Scenario, summaries: Sequence[ReplicateSummary]) -> RunSummary:
    """Pool counts over replicates (proportions recomputed from pooled counts)."""
    ms = [s.metrics for s in summaries]
    m0 = ms[0]

    def pooled(rates: list[Rate]) -> Rate:
        # Units of one replicate share its database and viral draws: the interval uses the variance
        # between replicates (one replicate: Wilson, labelled as conditional on that replicate).
        return Rate.from_dict(clustered_proportion([r.count for r in rates], [r.of for r in rates]))

    per_image = PerImage(
        images=sum(m.per_image.images for m in ms),
        known_images=sum(m.per_image.known_images for m in ms),
        innocent_images=sum(m.per_image.innocent_images for m in ms),
        false_positive=pooled([m.per_image.false_positive for m in ms]),
        false_negative=pooled([m.per_image.false_negative for m in ms]),
    )
    accounts = PooledAccounts(
        accounts=sum(m.accounts.accounts for m in ms),
        offenders=sum(m.accounts.offenders for m in ms),
        innocent_flagged=pooled([m.accounts.innocent_flagged for m in ms]),
        innocent_falsely_confirmed=pooled([m.accounts.innocent_falsely_confirmed for m in ms]),
        offenders_flagged=pooled([m.accounts.offenders_flagged for m in ms]),
        offenders_detected=pooled([m.accounts.offenders_detected for m in ms]),
        # Weighted by the detections behind each replicate's mean: the mean over every detected offender.
        days_to_detection_mean=_weighted_mean([(m.accounts.days_to_detection_mean, m.accounts.days_to_detection_n)
                                               for m in ms]),
        days_to_detection_n=sum(m.accounts.days_to_detection_n for m in ms),
        accounts_per_replicate=m0.accounts.accounts,
        max_matches_innocent_account=max(m.accounts.max_matches_innocent_account for m in ms),
        mean_images_per_account=_mean([m.accounts.mean_images_per_account for m in ms]),
    )
    reviews = [m.review.to_dict() for m in ms]
    review = Review(**{k: sum(r[k] for r in reviews) for k in reviews[0]})
    metrics = PooledMetrics(
        per_image=per_image,
        accounts=accounts,
        review=review,
        threshold=m0.threshold,
        database_size=m0.database_size,
        leakage=_leakage_summary(ms),
        leakage_audit=_audit_summary(ms),
        leakage_test=tuple(m.leakage_test for m in ms),
        model=m0.model,
        attacks=_attacks_summary(ms) if m0.attacks else None,
    )
    each = [s.costs.to_dict() for s in summaries]
    costs = Costs.from_dict({k: _mean([c[k] for c in each]) if isinstance(v, (int, float)) else v
                             for k, v in each[0].items()})
    prov = provenance()
    return RunSummary(
        scenario=scenario.name,
        description=scenario.description,
        seed=scenario.seed,
        replicates=len(summaries),
        hasher=scenario.hasher.name,
        protocol=scenario.protocol.name,
        protocol_params=scenario.protocol.params.to_dict(),
        protocol_params_set=scenario.protocol.params.non_defaults(),
        engine=scenario.engine,
        metrics=metrics,
        costs=costs,
        provenance_version=prov.get("version"),
        provenance_git_commit=prov.get("git_commit"),
    )


def _attacks_summary(ms: Sequence[RunMetrics]) -> Attacks:
    """Attack outcomes pooled over replicates: counts summed, rates from pooled counts (Wilson), and what is the
    same in every replicate (an attack's settings, the database's size and poisoned entries) as run."""
    def rate(rates: list[Rate]) -> Rate:
        return Rate.of_proportion(proportion(sum(r.count for r in rates), sum(r.of for r in rates)))

    ev = [a.evasion for m in ms if (a := m.attacks) and a.evasion]
    co = [a.collision for m in ms if (a := m.attacks) and a.collision]
    po = [a.poisoning for m in ms if (a := m.attacks) and a.poisoning]
    return Attacks(
        evasion=dataclasses.replace(ev[0], images_attacked=sum(e.images_attacked for e in ev),
                                    evaded=rate([e.evaded for e in ev])) if ev else None,
        collision=dataclasses.replace(co[0], crafted_images_sent=sum(c.crafted_images_sent for c in co),
                                      crafted_images_matching=rate([c.crafted_images_matching for c in co]),
                                      targets_flagged=rate([c.targets_flagged for c in co])) if co else None,
        poisoning=dataclasses.replace(po[0], target_images_sent=sum(p.target_images_sent for p in po),
                                      target_images_matching=rate([p.target_images_matching for p in po]),
                                      holders_revealed=rate([p.holders_revealed for p in po])) if po else None,
    )


def _weighted_mean(pairs: list[tuple[float | None, int]]) -> float | None:
    kept = [(x, w) for x, w in pairs if x is not None and w]
    total = sum(w for _, w in kept)
    return sum(x * w for x, w in kept) / total if total else None


def _mean(xs: Sequence[float | None]) -> float | None:
    kept = [x for x in xs if x is not None]
    return sum(kept) / len(kept) if kept else None


def _audit_summary(ms: Sequence[RunMetrics]) -> tuple[dict[str, Any], ...]:
    """Per battery family, the replicate whose strongest feature came closest to a leak (smallest p-value)."""
    rows: dict[str, dict[str, Any]] = {}
    for m in ms:
        for r in m.leakage_audit or ():
            if r["family"] not in rows or r["p_value"] < rows[r["family"]]["p_value"]:
                rows[r["family"]] = {**r, "replicates": len(ms)}
    return tuple(rows.values())


def _leakage_summary(ms: Sequence[RunMetrics]) -> tuple[PooledLeakage, ...]:
    rows: dict[tuple[str, str], list[LeakageEstimate]] = {}
    for m in ms:
        for r in m.leakage:
            rows.setdefault((r.feature, r.scope), []).append(r)
    return tuple(
        PooledLeakage(
            feature=feature,
            scope=scope,
            advantage=_mean([r.advantage for r in rs]),
            chance_advantage=_mean([r.chance_advantage for r in rs]),
            p_value=max(r.p_value for r in rs),
            mutual_information_bits=_mean([r.mutual_information_bits for r in rs]),
        )
        for (feature, scope), rs in rows.items()
    )
