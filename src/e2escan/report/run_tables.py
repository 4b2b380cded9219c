"""The tables of a results folder: what ``e2escan run`` writes beside its figures, and reads back on ``--resume``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..metrics.run import ReplicateSummary, RunSummary
from ..results import write_csv, write_json

LEAKAGE_COLUMNS = ["feature", "scope", "n", "positives", "advantage", "chance_advantage", "p_value",
                   "mutual_information_bits"]
DAILY_COLUMNS = ["replicate", "day", "messages", "images", "known_images", "new_flags", "reviewed", "confirmed",
                 "backlog"]
IMAGE_COLUMNS = ["uid", "day", "sender", "kind", "transform", "hash_hex", "distance", "oracle_match", "voucher_bytes",
                 "message_id", "attacked", "target", "synthetic"]


def _ordered(rows: Sequence[dict[str, Any]], first: list[str]) -> list[str]:
    """``first`` (those present), then any other key sorted: a resumed run (read back from sorted JSON) writes the same."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return [k for k in first if k in keys] + sorted(k for k in keys if k not in first)


def write_replicate_tables(folder: Path, summary: ReplicateSummary, histogram: list[dict[str, int]],
                           accounts: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    """One replicate's folder: summary.json, the match histogram, daily counts, leakage, and (faithful) accounts, images."""
    metrics = summary.metrics
    if summary.engine != "statistical":
        write_csv(folder / "accounts.csv", accounts)
        write_csv(folder / "images.csv", images, fieldnames=IMAGE_COLUMNS)
    write_json(folder / "summary.json", summary.to_dict())
    write_csv(folder / "match_histogram.csv", histogram)
    write_csv(folder / "daily.csv", list(summary.daily))
    write_csv(folder / "leakage.csv", [r.as_dict() for r in metrics.leakage], fieldnames=LEAKAGE_COLUMNS)
    if metrics.leakage_audit:
        write_csv(folder / "leakage_audit.csv", list(metrics.leakage_audit))


def read_replicate_summary(path: Path) -> ReplicateSummary:
    """A finished replicate's ``summary.json``; :class:`ConfigError` naming the file and key if it is not one."""
    try:
        return ReplicateSummary.from_dict(json.loads(path.read_text()), str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a replicate summary ({exc})") from None


def read_run_summary(path: Path) -> RunSummary:
    """A results folder's pooled ``summary.json``; :class:`ConfigError` naming the file and key if it is not one."""
    try:
        return RunSummary.from_dict(json.loads(path.read_text()), str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a run summary ({exc})") from None


def headline_entries(summary: RunSummary) -> list[tuple[str, Any]]:
    """``(section.metric, value)`` of the per-image, account and review sections (sorted within each, as a run
    read back from sorted JSON would give them); a rate's value is its dict (``count``, ``of``, ``rate``, ...)."""
    m = summary.metrics
    out = []
    for section, values in (("per_image", m.per_image), ("accounts", m.accounts), ("review", m.review)):
        table = values.to_dict()
        out += [(f"{section}.{key}", table[key]) for key in sorted(table)]
    return out


def metrics_rows(summary: RunSummary) -> list[dict[str, Any]]:
    """A tidy table of headline metrics: metric, value, count, of, ci_low, ci_high."""
    blank = {"count": "", "of": "", "ci_low": "", "ci_high": ""}
    return [{"metric": name, "value": entry["rate"], **{k: entry[k] for k in blank}} if isinstance(entry, dict)
            else {"metric": name, "value": entry, **blank} for name, entry in headline_entries(summary)]


def write_run_tables(out: Path, summary: RunSummary, summaries: Sequence[ReplicateSummary]) -> None:
    """The aggregate folder's summary.json, metrics.csv, daily.csv (every replicate), leakage.csv and costs.csv."""
    write_json(out / "summary.json", summary.to_dict())
    write_csv(out / "metrics.csv", metrics_rows(summary))
    daily = [{"replicate": s.replicate, **d} for s in summaries for d in s.daily]
    write_csv(out / "daily.csv", daily, fieldnames=_ordered(daily, DAILY_COLUMNS))
    leak = [r.to_dict() for r in summary.metrics.leakage]
    write_csv(out / "leakage.csv", leak, fieldnames=_ordered(leak, LEAKAGE_COLUMNS))
    costs = summary.costs.to_dict()
    write_csv(out / "costs.csv", [{"cost": k, "value": costs[k]} for k in sorted(costs)])
