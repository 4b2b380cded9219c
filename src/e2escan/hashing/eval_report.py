"""Writing a :class:`~e2escan.hashing.evaluation.HashEvalResult` as a results folder.

Files: ``distances.csv`` (histograms), ``roc.csv``, ``thresholds.csv``,
``unrelated.csv``, ``summary.json`` (with provenance), ``manifest.json`` and
the figures ``distances`` and ``roc`` as PNG and SVG. Every file is written
atomically by :mod:`e2escan.results`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..results import provenance, save_figure, write_csv, write_json, write_manifest
from .evaluation import ALL_TRANSFORMS, HasherEvaluation, HashEvalResult

FIGURE_FPR = 1e-6  # the threshold marked on the figures


def write_hash_eval(
    result: HashEvalResult,
    out_dir: str | os.PathLike[str],
    *,
    command: str,
    started: float | None = None,
    config: Mapping[str, Any] | None = None,
    figures: bool = True,
) -> dict[str, Path]:
    """Write every output file of a hash evaluation into ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "distances.csv": write_csv(out / "distances.csv", result.distance_rows(),
                                   ["hasher", "bits", "pairs", "transform", "distance", "count", "fraction"]),
        "roc.csv": write_csv(out / "roc.csv", result.roc_rows(), ["hasher", "bits", "transform", "threshold", "tpr", "fpr"]),
        "thresholds.csv": write_csv(out / "thresholds.csv", result.threshold_rows(),
                                    ["hasher", "bits", "target_fpr", "method", "threshold", "transform", "tpr", "measured_fpr"]),
        "unrelated.csv": write_csv(out / "unrelated.csv", result.unrelated_rows()),
    }  # fmt: skip
    summary = {**result.summary(), "provenance": provenance()}
    paths["summary.json"] = write_json(out / "summary.json", summary)
    if figures:
        for stem, fig in (("distances", distances_figure(result)), ("roc", roc_figure(result))):
            for p in save_figure(fig, out, stem):
                paths[p.name] = p
            _close(fig)
    paths["manifest.json"] = write_manifest(out, command=command, seed=result.seed, config=config, started=started)
    return paths


def _close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _horizontal() -> dict[str, Any]:
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _box_stats(counts: np.ndarray, bits: int, label: str) -> dict[str, Any]:
    """Box-plot statistics (5/25/50/75/95 percentiles, normalised by ``bits``) from a histogram."""
    cdf = np.cumsum(counts) / max(1, counts.sum())

    def q(p: float) -> float:
        return float(np.searchsorted(cdf, p)) / bits

    return {"label": label, "whislo": q(0.05), "q1": q(0.25), "med": q(0.5), "q3": q(0.75), "whishi": q(0.95), "fliers": []}


def distances_figure(result: HashEvalResult) -> Any:
    """One panel per hasher: distance / bits for each transformation and for unrelated pairs."""
    plt = _pyplot()
    labels = ["unrelated"] + [t.spec for t in result.transforms]
    height = 1.2 + 0.28 * len(labels)
    fig, axes = plt.subplots(1, len(result.per_hasher), figsize=(3.2 * len(result.per_hasher) + 1.6, height),
                             sharey=True, squeeze=False)  # fmt: skip
    for ax, ev in zip(axes[0], result.per_hasher):
        stats = [_box_stats(ev.unrelated_counts, ev.bits, "unrelated")]
        stats += [_box_stats(ev.matched_counts(t.spec), ev.bits, t.spec) for t in result.transforms]
        boxes = ax.bxp(stats[::-1], showfliers=False, patch_artist=True, widths=0.6, **_horizontal())
        for i, patch in enumerate(boxes["boxes"][::-1]):
            patch.set_facecolor("0.75" if i == 0 else "#7fb3d5")
        t = ev.fit.threshold(FIGURE_FPR)
        if t >= 0:  # dashed line: the tail-fit threshold for FIGURE_FPR (named in the title)
            ax.axvline(t / ev.bits, color="#c0392b", linestyle="--", linewidth=1)
        where = f"t = {t}" if t >= 0 else "none"
        ax.set_title(f"{ev.hasher.spec} ({ev.bits} bits)\nthreshold for FPR {FIGURE_FPR:g} (exponential tail fit): {where}", fontsize=8)
        ax.set_xlim(0, 0.75)
        ax.set_xlabel("normalised Hamming distance (distance / bits)")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"Distances of transformed copies vs unrelated pairs ({result.corpus}, {result.n_images} images); "
        "boxes 25-75%, whiskers 5-95%",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def _roc_points(ev: HasherEvaluation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Measured FPR, pooled TPR and tail-fit FPR at thresholds ``0..bits``."""
    model = np.array([ev.fit.fpr(t) for t in range(ev.bits + 1)])
    return ev.fpr_curve(), ev.tpr_curve(ALL_TRANSFORMS), model


def roc_figure(result: HashEvalResult) -> Any:
    """TPR (all transformations pooled) against FPR: measured (solid) and tail-fit extrapolation (dashed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    floor = 1e-13
    for ev in result.per_hasher:
        fpr, tpr, model = _roc_points(ev)
        measured = fpr > 0
        (line,) = ax.plot(fpr[measured], tpr[measured], marker=".", markersize=3, label=f"{ev.hasher.spec}")
        # Below the smallest measurable FPR (1 / pairs), show the model FPR instead.
        extrap = (~measured) | (fpr < 1.0 / max(1, ev.n_unrelated))
        extrap &= model >= floor
        if extrap.any():
            ax.plot(model[extrap], tpr[extrap], linestyle="--", color=line.get_color(), linewidth=1)
    ax.axvline(FIGURE_FPR, color="0.5", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (unrelated pairs)")
    ax.set_ylabel("true-positive rate (transformed copies, pooled)")
    ax.set_title(f"ROC on {result.corpus} ({result.n_images} images); dashed: exponential tail-fit FPR (conservative)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
