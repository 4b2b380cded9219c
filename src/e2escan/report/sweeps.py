"""Figures of a sweep's table: headline rates against each swept parameter (PNG and SVG)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ..metrics.rates import proportion
from ..results import save_figure


def _leaves(table: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """``(dotted.key, value)`` for every non-table value of a nested table."""
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tick_label(value: Any, width: int | None = 24) -> str:
    """A category on an axis or in a legend: tables (stored as JSON) flattened to ``key=value`` words."""
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        parsed = value
    if isinstance(parsed, dict):
        text = " ".join(f"{k}={v}" for k, v in _leaves(parsed, ""))
    else:
        text = str(value)
    return textwrap.fill(text, width) if width else text


def sweep_figures(
    out: Path,
    name: str,
    keys: Sequence[str],
    rows: Sequence[dict[str, Any]],
    headline: Sequence[tuple[str, str]],
    replication_keys: Sequence[str] = ("seed",),
) -> list[Path]:
    """For each swept parameter (``keys``), the ``headline`` rates (metric, title) against it (PNG + SVG).

    Rows that differ only in a replication key (the scenario seed) are pooled: counts are summed
    and the Wilson interval recomputed. Each combination of the other swept values is one line
    when there are at most six of them; otherwise every point is drawn on its own, unjoined.
    """
    written: list[Path] = []
    if not rows:
        return written
    for key in keys:
        if key in replication_keys:
            continue
        values = [r[key] for r in rows]
        distinct = list(dict.fromkeys(values))
        if len(distinct) < 2:
            continue
        numeric = all(_is_number(v) for v in distinct)
        position = (lambda v: v) if numeric else {v: i for i, v in enumerate(distinct)}.__getitem__
        others = [k for k in keys if k != key and k not in replication_keys]
        groups: dict[tuple, dict[Any, list[dict[str, Any]]]] = {}
        for r in rows:
            groups.setdefault(tuple(r[k] for k in others), {}).setdefault(r[key], []).append(r)
        metrics = [(m, title) for m, title in headline if all(f"{m}.count" in r for r in rows)]
        if not metrics:
            continue
        joined = len(groups) <= 6

        fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex=True)
        for ax, (metric, title) in zip(axes.flat, metrics):
            for n, (g, by_x) in enumerate(groups.items()):
                xs = sorted(by_x, key=position) if numeric else [v for v in distinct if v in by_x]
                pooled = [proportion(sum(r[f"{metric}.count"] for r in by_x[x]),
                                     sum(r[f"{metric}.of"] for r in by_x[x])) for x in xs]
                rate = np.array([p.rate for p in pooled])
                lo = np.nan_to_num(rate - np.array([p.low for p in pooled]))
                hi = np.nan_to_num(np.array([p.high for p in pooled]) - rate)
                label = ", ".join(f"{k.rsplit('.', 1)[-1]}: {_tick_label(v, None)}" for k, v in zip(others, g))
                style = {"ls": "-" if numeric else "none", "label": label} if joined else {
                    "ls": "none", "color": "C0", "alpha": 0.5}
                dodge = 0 if numeric or not joined else 0.1 * (n - (len(groups) - 1) / 2)  # keep ties visible
                ax.errorbar([position(x) + dodge for x in xs], rate, yerr=[lo, hi], marker="o", ms=4, capsize=2, lw=1,
                            **style)
            ax.set_title(title, fontsize=9)
            low, high = ax.get_ylim()  # autoscaled: small rates stay readable
            positive = [y for line in ax.get_lines() for y in np.asarray(line.get_ydata(), float) if y > 0]
            if positive and max(positive) / min(positive) >= 100:  # spans decades: log scale, zeros kept at 0
                ax.set_yscale("symlog", linthresh=min(positive))
                ax.set_ylim(0, min(max(high, max(positive)) * 2, 1.05))
                ax.set_title(f"{title} (log scale above {min(positive):.1g})", fontsize=9)
            else:
                ax.set_ylim(max(low, -0.05 * high), min(high, 1.05))
            ax.grid(alpha=0.3)
        for ax in axes[1]:
            ax.set_xlabel(key)
            if numeric and min(distinct) > 0 and max(distinct) / min(distinct) >= 100:
                ax.set_xscale("log")
            elif numeric and all(isinstance(v, int) for v in distinct):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not numeric:
                ax.set_xticks(range(len(distinct)), [_tick_label(v) for v in distinct], fontsize=7)
        for ax in axes[:, 0]:
            ax.set_ylabel("rate (95% Wilson CI)")
        pooled_note = " (pooled over seeds)" if any(k in replication_keys for k in keys) else ""
        if not joined:
            pooled_note += f"; one dot per value of {', '.join(others)}"
        fig.suptitle(f"sweep {name}: rates against {key}{pooled_note}", fontsize=10)
        if joined and others:
            fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                       ncol=min(3, len(groups)), fontsize=7, frameon=False)
        fig.tight_layout()
        written += save_figure(fig, out, "sweep_" + key.replace(".", "_"))
        plt.close(fig)
    return written
