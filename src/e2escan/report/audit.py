"""The leakage audit's table and figure (``e2escan audit``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ..results import save_figure
from .tables import format_table

HEADERS = ("protocol", "p_syn", "vouchers", "family", "features", "strongest feature", "adv", "chance", "95% CI",
           "p-value", "verdict")


def audit_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per (protocol, synthetic probability, family)."""
    body = [
        (
            r["protocol"],
            "-" if r["synthetic_probability"] is None else f"{r['synthetic_probability']:g}",
            r["vouchers"],
            r["family"],
            r["features"],
            (r["strongest_feature"] or "-") if r["statistic"] > 0 else "(no feature differs)",
            f"{r['advantage']:.3f}",
            f"{r['chance_advantage']:.3f}",
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
            f"{r['p_value']:.3g}",
            r["verdict"],
        )
        for r in rows
    ]
    return format_table(body, HEADERS, "Leakage audit: real world against the ideal world built from LEAKAGE")


def audit_figure(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Advantage of each family's strongest feature (with its 95% CI) against its chance level, per audit."""
    audits = sorted({(r["protocol"], r["synthetic_probability"]) for r in rows}, key=lambda k: (k[0], k[1] or 0.0))
    families = list(dict.fromkeys(r["family"] for r in rows))
    fig, axes = plt.subplots(1, len(audits), figsize=(2.6 * len(audits) + 1.2, 3.6), sharey=True, squeeze=False)
    for ax, (protocol, p) in zip(axes[0], audits):
        mine = {r["family"]: r for r in rows if r["protocol"] == protocol and r["synthetic_probability"] == p}
        y = np.arange(len(families))
        adv = np.array([mine[f]["advantage"] if f in mine else np.nan for f in families])
        lo = np.array([mine[f]["ci_low"] if f in mine else np.nan for f in families])
        hi = np.array([mine[f]["ci_high"] if f in mine else np.nan for f in families])
        chance = np.array([mine[f]["chance_advantage"] if f in mine else np.nan for f in families])
        leak = [f in mine and mine[f]["verdict"] == "LEAK" for f in families]
        ax.errorbar(adv, y, xerr=[adv - lo, hi - adv], fmt="none", ecolor="0.5", capsize=2)
        ax.scatter(adv, y, c=["tab:red" if k else "tab:blue" for k in leak], zorder=3, label="real vs ideal")
        ax.scatter(chance, y, marker="|", s=120, c="k", zorder=4, label="chance (swapped worlds)")
        ax.set_xlim(0, 1)
        ax.set_title(f"{protocol}" + ("" if p is None else f"\np = {p:g}"), fontsize=9)
        ax.set_xlabel("advantage")
    axes[0][0].set_yticks(np.arange(len(families)), families)
    axes[0][0].legend(loc="lower right", fontsize=7)
    fig.suptitle("Strongest distinguisher per family (red: undeclared leak)", fontsize=10)
    fig.tight_layout()
    paths = save_figure(fig, out_dir, "audit")
    plt.close(fig)
    return paths
