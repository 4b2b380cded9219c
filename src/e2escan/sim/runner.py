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

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..errors import ScenarioError
from ..metrics.rates import clustered_proportion, proportion
from ..results import (
    atomic_write_text,
    provenance,
    write_csv,
    write_json,
    write_manifest,
)
from .faithful import run_faithful
from .measure import compute_metrics, cost_metrics
from .scenario import Scenario, validate_components


def scenario_digest(scenario: Scenario) -> str:
    return hashlib.sha256(json.dumps(to_dict(scenario), sort_keys=True).encode()).hexdigest()[:16]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def scenario_to_toml(scenario: Scenario) -> str:
    """Serialise a scenario back to TOML (round-trips through :meth:`Scenario.from_dict`)."""
    data = to_dict(scenario)
    lines = []
    for k, v in data.items():
        if not isinstance(v, dict) and v is not None:
            lines.append(f"{k} = {_toml_value(v)}")
    for section, table in data.items():
        if not isinstance(table, dict):
            continue
        lines.append(f"\n[{section}]")
        nested = {}
        for k, v in table.items():
            if isinstance(v, dict) or isinstance(v, list) and v and isinstance(v[0], dict):
                nested[k] = v
            elif v is None:
                continue  # TOML has no null: an omitted key takes its default (None)
            else:
                lines.append(f"{k} = {_toml_value(v)}")
        for k, v in nested.items():
            if isinstance(v, dict):
                lines.append(f"\n[{section}.{k}]")
                lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
            else:
                for item in v:
                    lines.append(f"\n[[{section}.{k}]]")
                    lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in item.items())
    return "\n".join(lines) + "\n"


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

    summary: dict[str, Any]
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
        metrics, costs, daily = result["metrics"], result["costs"], result["daily"]
        summary = {"replicate": replicate, "engine": scenario.engine, "metrics": metrics, "costs": costs, "daily": daily}
        return ReplicateResult(summary, result["histogram"])
    run = run_faithful(scenario, replicate, cache_dir=cache_dir, progress=progress, protocol=protocol)
    metrics = compute_metrics(run)
    costs = cost_metrics(run)
    rows = metrics.pop("per_account_rows")
    summary = {"replicate": replicate, "engine": scenario.engine, "metrics": metrics, "costs": costs,
               "daily": run.daily}
    return ReplicateResult(summary, match_histogram(rows), rows, [vars(r) for r in run.images], run.relay)


LEAKAGE_COLUMNS = ["feature", "scope", "n", "positives", "advantage", "chance_advantage", "p_value",
                   "mutual_information_bits"]
DAILY_COLUMNS = ["replicate", "day", "messages", "images", "known_images", "new_flags", "reviewed", "confirmed",
                 "backlog"]
IMAGE_COLUMNS = ["uid", "day", "sender", "kind", "transform", "hash_hex", "distance", "oracle_match", "voucher_bytes",
                 "message_id", "attacked", "target", "synthetic"]


def run_replicate(scenario: Scenario, replicate: int, out_dir: Path, progress: Callable[[int], None] | None = None,
                  cache_dir: Any = "default", protocol: Any = None) -> dict[str, Any]:
    """Simulate one replicate and write its folder atomically; returns its summary."""
    started = time.perf_counter()
    tmp = out_dir / "runs" / f".rep-{replicate:03d}.tmp"
    final = out_dir / "runs" / f"rep-{replicate:03d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    result = simulate_replicate(scenario, replicate, progress, cache_dir, protocol)
    summary, metrics = result.summary, result.summary["metrics"]
    if scenario.engine != "statistical":
        write_csv(tmp / "accounts.csv", result.accounts)
        write_csv(tmp / "images.csv", result.images, fieldnames=IMAGE_COLUMNS)
    write_json(tmp / "summary.json", summary)
    write_csv(tmp / "match_histogram.csv", result.histogram)
    write_csv(tmp / "daily.csv", summary["daily"])
    write_csv(tmp / "leakage.csv", metrics["leakage"], fieldnames=LEAKAGE_COLUMNS)
    if metrics.get("leakage_audit"):
        write_csv(tmp / "leakage_audit.csv", metrics["leakage_audit"])
    write_manifest(tmp, command="e2escan run", seed=scenario.seed, config=to_dict(scenario), started=started,
                   extra={"replicate": replicate, "scenario_digest": scenario_digest(scenario)})
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    if result.relay is not None:
        result.relay.close()
    return summary


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
) -> dict[str, Any]:
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
            summaries.append(json.loads(done.read_text()))
            continue
        bar = progress_factory(rep, f"replicate {rep + 1}/{scenario.replicates}") if progress_factory else None
        try:
            summaries.append(run_replicate(scenario, rep, out, bar.update if bar else None, cache_dir, protocol))
        finally:
            if bar:
                bar.close()
    summary = aggregate(scenario, summaries)
    _write_aggregate(out, scenario, summary, summaries, started, figures, command)
    return summary


def aggregate(scenario: Scenario, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool counts over replicates (proportions recomputed from pooled counts)."""
    def pooled(section: str, key: str) -> dict:
        # Units of one replicate share its database and viral draws: the interval uses the variance
        # between replicates (one replicate: Wilson, labelled as conditional on that replicate).
        return clustered_proportion([s["metrics"][section][key]["count"] for s in summaries],
                                    [s["metrics"][section][key]["of"] for s in summaries])

    def total(section: str, key: str) -> int | float:
        return sum(s["metrics"][section][key] for s in summaries)

    m0 = summaries[0]["metrics"]
    metrics = {
        "per_image": {
            "images": total("per_image", "images"),
            "known_images": total("per_image", "known_images"),
            "innocent_images": total("per_image", "innocent_images"),
            "false_positive": pooled("per_image", "false_positive"),
            "false_negative": pooled("per_image", "false_negative"),
        },
        "accounts": {
            "accounts": total("accounts", "accounts"),
            "offenders": total("accounts", "offenders"),
            "innocent_flagged": pooled("accounts", "innocent_flagged"),
            "innocent_falsely_confirmed": pooled("accounts", "innocent_falsely_confirmed"),
            "offenders_flagged": pooled("accounts", "offenders_flagged"),
            "offenders_detected": pooled("accounts", "offenders_detected"),
            # Weighted by the detections behind each replicate's mean: the mean over every detected offender.
            "days_to_detection_mean": _weighted_mean(
                [(s["metrics"]["accounts"]["days_to_detection_mean"], s["metrics"]["accounts"].get("days_to_detection_n", 1))
                 for s in summaries]),
            "days_to_detection_n": sum(s["metrics"]["accounts"].get("days_to_detection_n", 0) for s in summaries),
            "accounts_per_replicate": summaries[0]["metrics"]["accounts"]["accounts"],
            "max_matches_innocent_account": max(s["metrics"]["accounts"]["max_matches_innocent_account"] for s in summaries),
            "mean_images_per_account": _mean([s["metrics"]["accounts"]["mean_images_per_account"] for s in summaries]),
        },
        "review": {k: total("review", k) for k in m0["review"]},
        "threshold": m0["threshold"],
        "database_size": m0["database_size"],
        "leakage": _leakage_summary(summaries),
        "leakage_audit": _audit_summary(summaries),
        "leakage_test": [s["metrics"].get("leakage_test") for s in summaries],
        **({"model": m0["model"]} if "model" in m0 else {}),
        **({"attacks": _attacks_summary(summaries)} if m0.get("attacks") else {}),
    }
    costs = {k: _mean([s["costs"][k] for s in summaries]) if isinstance(summaries[0]["costs"][k], (int, float)) else summaries[0]["costs"][k]
             for k in summaries[0]["costs"]}
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "seed": scenario.seed,
        "replicates": len(summaries),
        "hasher": scenario.hasher.name,
        "protocol": scenario.protocol.name,
        "protocol_params": scenario.protocol.params.to_dict(),
        "engine": scenario.engine,
        "metrics": metrics,
        "costs": costs,
        **{f"provenance_{k}": v for k, v in provenance().items() if k in ("version", "git_commit")},
    }


def _attacks_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Attack outcomes pooled over replicates (proportions from pooled counts)."""
    out: dict[str, Any] = {}
    for attack, entries in summaries[0]["metrics"]["attacks"].items():
        pooled = {}
        for key, value in entries.items():
            if isinstance(value, dict) and {"count", "of"} <= set(value):
                k = sum(s["metrics"]["attacks"][attack][key]["count"] for s in summaries)
                n = sum(s["metrics"]["attacks"][attack][key]["of"] for s in summaries)
                pooled[key] = proportion(k, n).as_dict()
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                pooled[key] = sum(s["metrics"]["attacks"][attack][key] for s in summaries)
            else:
                pooled[key] = value
        out[attack] = pooled
    return out


def _weighted_mean(pairs: list[tuple[float | None, int]]) -> float | None:
    pairs = [(x, w) for x, w in pairs if x is not None and w]
    total = sum(w for _, w in pairs)
    return sum(x * w for x, w in pairs) / total if total else None


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _audit_summary(summaries: list[dict]) -> list[dict]:
    """Per battery family, the replicate whose strongest feature came closest to a leak (smallest p-value)."""
    rows: dict[str, dict] = {}
    for s in summaries:
        for r in s["metrics"].get("leakage_audit") or []:
            if r["family"] not in rows or r["p_value"] < rows[r["family"]]["p_value"]:
                rows[r["family"]] = {**r, "replicates": len(summaries)}
    return list(rows.values())


def _leakage_summary(summaries: list[dict]) -> list[dict]:
    rows: dict[tuple, list] = {}
    for s in summaries:
        for r in s["metrics"]["leakage"]:
            rows.setdefault((r["feature"], r["scope"]), []).append(r)
    out = []
    for (feature, scope), rs in rows.items():
        out.append({
            "feature": feature,
            "scope": scope,
            "advantage": _mean([r["advantage"] for r in rs]),
            "chance_advantage": _mean([r["chance_advantage"] for r in rs]),
            "p_value": max(r["p_value"] for r in rs),
            "mutual_information_bits": _mean([r["mutual_information_bits"] for r in rs]),
        })
    return out


def metrics_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """A tidy table of headline metrics: metric, value, count, of, ci_low, ci_high."""
    m = summary["metrics"]
    rows = []

    def add(name, entry):
        if isinstance(entry, dict):
            rows.append({"metric": name, "value": entry["rate"], "count": entry["count"], "of": entry["of"],
                         "ci_low": entry["ci_low"], "ci_high": entry["ci_high"]})
        else:
            rows.append({"metric": name, "value": entry, "count": "", "of": "", "ci_low": "", "ci_high": ""})

    for section in ("per_image", "accounts", "review"):
        for key in sorted(m[section]):  # sorted: a resumed run (read back from sorted JSON) writes the same table
            add(f"{section}.{key}", m[section][key])
    return rows


def _write_aggregate(out: Path, scenario: Scenario, summary: dict, summaries: list[dict], started: float,
                     figures: bool = True, command: str = "e2escan run") -> None:
    from ..report.figures import scenario_figures

    write_json(out / "summary.json", summary)
    write_csv(out / "metrics.csv", metrics_rows(summary))
    daily = [{"replicate": s["replicate"], **d} for s in summaries for d in s["daily"]]
    # Replicates read back on --resume come from sorted JSON: fix the column order so the table is the same.
    keys = list(dict.fromkeys(k for row in daily for k in row))
    order = [k for k in DAILY_COLUMNS if k in keys] + sorted(k for k in keys if k not in DAILY_COLUMNS)
    write_csv(out / "daily.csv", daily, fieldnames=order)
    leak = summary["metrics"]["leakage"]
    keys = list(dict.fromkeys(k for row in leak for k in row))
    write_csv(out / "leakage.csv", leak,
              fieldnames=[k for k in LEAKAGE_COLUMNS if k in keys] + sorted(k for k in keys if k not in LEAKAGE_COLUMNS))
    write_csv(out / "costs.csv", [{"cost": k, "value": summary["costs"][k]} for k in sorted(summary["costs"])])
    if figures:
        scenario_figures(out, summary, summaries)
    write_manifest(out, command=command, seed=scenario.seed, config=to_dict(scenario), started=started,
                   extra={"replicates": len(summaries), "scenario_digest": scenario_digest(scenario)})
