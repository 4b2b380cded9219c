"""Matplotlib figures of a scenario's results folder (PNG and SVG, written atomically)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ..metrics.run import ReplicateSummary, RunSummary
from ..results import save_figure


def _read_histogram(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Accounts per number of matching images, summed over replicates: (innocent, offending)."""
    tables = []
    for path in sorted((out / "runs").glob("rep-*/match_histogram.csv")):
        with path.open() as fh:
            tables.append([{k: int(v) for k, v in row.items()} for row in csv.DictReader(fh)])
    return histogram_totals(tables)


def histogram_totals(histograms: list[list[dict[str, int]]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-replicate match histograms (rows as in ``match_histogram.csv``) summed: (innocent, offending)."""
    inn: dict[int, int] = {}
    off: dict[int, int] = {}
    for rows in histograms:
        for r in rows:
            k = int(r["matching_images"])
            inn[k] = inn.get(k, 0) + int(r["innocent_accounts"])
            off[k] = off.get(k, 0) + int(r["offending_accounts"])
    top = max(list(inn) + list(off) + [0]) + 1
    return (np.array([inn.get(k, 0) for k in range(top)]), np.array([off.get(k, 0) for k in range(top)]))


def scenario_figures(out: Path, summary: RunSummary, summaries: Sequence[ReplicateSummary]) -> list[Path]:
    """Build the scenario's figures from its results folder and write each as PNG and SVG."""
    written = []
    for stem, fig in build_figures(summary, summaries, _read_histogram(out)).items():
        written += save_figure(fig, out, stem)
        plt.close(fig)
    return written


def build_figures(summary: RunSummary, summaries: Sequence[ReplicateSummary],
                  histogram: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """The scenario's figures as matplotlib figures (for notebooks), keyed by file stem."""
    figures: dict[str, Any] = {}
    title = f"{summary.scenario}: {summary.protocol} on {summary.hasher}"
    threshold = summary.metrics.threshold

    # 1. Matching images per account, innocent vs offending, against the threshold.
    inn, off = histogram
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    k = np.arange(inn.size)
    ax.bar(k - 0.2, np.where(inn > 0, inn, np.nan), 0.4, label="innocent accounts", color="#4c72b0", log=True)
    ax.bar(k + 0.2, np.where(off > 0, off, np.nan), 0.4, label="offending accounts", color="#dd8452", log=True)
    if threshold:
        ax.axvline(threshold - 0.5, color="k", ls="--", lw=1, label=f"threshold t = {threshold}")
    ax.set_xlabel("images matching the database (per account, whole run)")
    ax.set_ylabel("accounts")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    figures["matches_per_account"] = fig

    # 2. Daily funnel.
    days = sorted({d["day"] for s in summaries for d in s.daily})
    keys = [("images", "images sent"), ("known_images", "known images sent"), ("new_flags", "accounts flagged"),
            ("confirmed", "confirmed by review"), ("backlog", "review backlog")]
    keys = [(k, label) for k, label in keys if all(k in d for s in summaries for d in s.daily)]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    width = 0.8 / len(keys)
    for n, (key, label) in enumerate(keys):
        vals = np.array([sum(d[key] for s in summaries for d in s.daily if d["day"] == day) for day in days], float)
        x = np.array(days) + (n - len(keys) / 2 + 0.5) * width
        bars = ax.bar(x, np.where(vals > 0, vals, np.nan), width, label=label)  # a zero has no bar on a log axis
        for xi in x[vals == 0]:
            ax.annotate("0", (xi, 0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=6,
                        color=bars.patches[0].get_facecolor() if bars.patches else "k")
    ax.set_yscale("log")
    ax.set_xlim(min(days) - 0.5, max(days) + 0.5)  # every bar's slot, a zero's included
    ax.set_xlabel("day")
    ax.set_ylabel("images, accounts or cases (all replicates)")
    ax.set_xticks(days)
    ax.set_title("Daily funnel: " + title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    figures["daily_funnel"] = fig

    # 3. Leakage: advantage per ServerView feature against chance.
    from ..metrics.leakage import feature_label

    leak = [r for r in summary.metrics.leakage if r.scope != "all accounts"]
    if leak:
        fig, ax = plt.subplots(figsize=(7.2, 0.32 * len(leak) + 2.0))
        names = [f"{feature_label(r.feature)} ({r.scope})" for r in leak]
        y = np.arange(len(leak))
        significant = np.array([r.p_value <= 0.05 for r in leak])
        adv = np.array([r.advantage for r in leak], dtype=float)
        ax.barh(y[significant], adv[significant], color="#c44e52", label="above chance (p <= 0.05, this feature alone)")
        ax.barh(y[~significant], adv[~significant], color="#bbbbbb", label="not significant")
        ax.scatter(np.array([r.chance_advantage for r in leak], dtype=float), y, color="k", marker="|", s=120,
                   label="chance level: the advantage a feature with no signal reaches on this many accounts")
        ax.set_yticks(y)
        ax.set_yticklabels(names, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("classifier advantage |TPR - FPR| from the ServerView (0 = no information, 1 = perfect)")
        ax.set_title("What the server can infer about offenders it did not flag", fontsize=10)
        ax.legend(fontsize=6, loc="lower right")
        fig.tight_layout()
        figures["leakage"] = fig
    return figures
