"""Apple's match threshold of 30: how often is an innocent account falsely flagged?

An account uploads n innocent images a year; each falsely matches the CSAM
database independently with probability p; the account is flagged once t
images match. The probability is the binomial tail P[Bin(n, p) >= t] (the
Poisson tail P[Poisson(n p) >= t] beside it for comparison). Deterministic:
the seed is recorded but nothing is random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from e2escan.metrics import (
    false_flag_probability,
    log10_false_flag_probability,
    log10_poisson_false_flag_probability,
    max_images_for_target,
    required_threshold,
)
from e2escan.results import save_figure, write_csv, write_json

THRESHOLD = 30  # Apple's initial match threshold
TARGET = 1e-12  # "one in one trillion" accounts falsely flagged per year
RATES = (
    ("assumed worst case, 1 in 1 million", 1e-6),
    ("measured, 3 in 100 million", 3e-8),
)
REFERENCE_IMAGES_PER_YEAR = (10_000, 100_000, 1_000_000)
RATE_DECADES = (-10, -2)  # log10 of the per-image false-match rate
IMAGE_DECADES = (2, 9)  # log10 of the images per account per year
HEATMAP_FLOOR = -40.0  # colour scale floor for log10 probabilities (lower values share the end colour)


def _grid(quick: bool) -> tuple[np.ndarray, np.ndarray]:
    per_decade = 2 if quick else 5
    rates = 10.0 ** np.linspace(*RATE_DECADES, (RATE_DECADES[1] - RATE_DECADES[0]) * per_decade + 1)
    images = np.round(10.0 ** np.linspace(*IMAGE_DECADES, (IMAGE_DECADES[1] - IMAGE_DECADES[0]) * per_decade + 1))
    return rates, images


def _design_point_rows() -> list[dict]:
    rows = []
    for basis, rate in RATES:
        largest = int(max_images_for_target(rate, THRESHOLD, TARGET))
        largest_poisson = int(max_images_for_target(rate, THRESHOLD, TARGET, model="poisson"))
        scenarios = [
            ("largest account meeting the target", largest),
            ("one image more", largest + 1),
            ("largest account meeting the target under the Poisson approximation", largest_poisson),
        ] + [("fixed size", n) for n in REFERENCE_IMAGES_PER_YEAR]
        for scenario, images in scenarios:
            log10_binomial = log10_false_flag_probability(images, rate, THRESHOLD)
            rows.append(
                {
                    "rate_basis": basis,
                    "per_image_rate": rate,
                    "scenario": scenario,
                    "images_per_year": images,
                    "images_per_day": round(images / 365, 1),
                    "threshold": THRESHOLD,
                    "target": TARGET,
                    "false_flag_binomial": false_flag_probability(images, rate, THRESHOLD),
                    "log10_false_flag_binomial": log10_binomial,
                    "log10_false_flag_poisson": log10_poisson_false_flag_probability(images, rate, THRESHOLD),
                    "meets_target": bool(log10_binomial <= np.log10(TARGET)),
                    "required_threshold_binomial": required_threshold(images, rate, TARGET),
                }
            )
    return rows


def _axes_edges(values: np.ndarray) -> np.ndarray:
    logs = np.log10(values)
    step = logs[1] - logs[0]
    return np.concatenate([logs - step / 2, [logs[-1] + step / 2]])


def _mark_apple_rates(ax, design: list[dict]) -> None:
    """Apple's two per-image rates as vertical lines, with the largest account meeting the target."""
    for (basis, rate), style, text_y in zip(RATES, ("-", "--"), (0.16, 0.04)):
        largest = next(
            r["images_per_year"]
            for r in design
            if r["per_image_rate"] == rate and r["scenario"] == "largest account meeting the target"
        )
        ax.axvline(np.log10(rate), color="black", linestyle=style, linewidth=0.8)
        ax.plot([np.log10(rate)], [np.log10(largest)], marker="o", color="black")
        ax.annotate(
            f"p = {rate:g} ({basis}): t = {THRESHOLD} meets {TARGET:g}\nup to {largest:,} images per year",
            xy=(np.log10(rate), np.log10(largest)),
            xytext=(0.03, text_y),
            textcoords="axes fraction",
            fontsize=7,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85},
            arrowprops={"arrowstyle": "->", "linestyle": style, "color": "black"},
        )


def _false_flag_heatmap(rates, images, log10_p, design) -> Figure:
    fig = Figure(figsize=(7.5, 5.5))
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(
        _axes_edges(rates), _axes_edges(images), log10_p.T, vmin=HEATMAP_FLOOR, vmax=0.0, cmap="viridis"
    )
    mesh.set_rasterized(True)  # keeps the SVG small; axes and labels stay vector
    bar = fig.colorbar(mesh, ax=ax, extend="min")
    bar.set_label(f"log10 P[innocent account flagged in a year]  (floor {HEATMAP_FLOOR:g})")
    contours = ax.contour(np.log10(rates), np.log10(images), log10_p.T, levels=[-24, -12, -6], colors="white", linewidths=0.8)
    ax.clabel(contours, fmt={-24: "1e-24", -12: "1e-12 (Apple's target)", -6: "1e-6"}, fontsize=7)
    _mark_apple_rates(ax, design)
    ax.set_xlabel("log10 per-image false-match rate p")
    ax.set_ylabel("log10 images per account per year n")
    ax.set_title(f"False-flag probability at threshold t = {THRESHOLD} (exact binomial tail)")
    return fig


def _required_threshold_heatmap(rates, images, thresholds, design) -> Figure:
    fig = Figure(figsize=(7.5, 5.5))
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(
        _axes_edges(rates), _axes_edges(images), thresholds.T, norm=LogNorm(vmin=1, vmax=thresholds.max()), cmap="magma"
    )
    mesh.set_rasterized(True)
    bar = fig.colorbar(mesh, ax=ax)
    bar.set_label(f"smallest threshold t with P[flag] <= {TARGET:g}")
    contours = ax.contour(np.log10(rates), np.log10(images), thresholds.T, levels=[THRESHOLD], colors="cyan", linewidths=1.0)
    ax.clabel(contours, fmt={THRESHOLD: f"t = {THRESHOLD}"}, fontsize=7)
    _mark_apple_rates(ax, design)
    ax.set_xlabel("log10 per-image false-match rate p")
    ax.set_ylabel("log10 images per account per year n")
    ax.set_title(f"Threshold needed for a {TARGET:g} false-flag probability per account-year")
    return fig


def _design_point_curves(quick: bool) -> Figure:
    images = np.round(10.0 ** np.linspace(3, 9, 25 if quick else 121))
    fig = Figure(figsize=(7, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for (basis, rate), color in zip(RATES, ("tab:red", "tab:blue")):
        binomial = log10_false_flag_probability(images, rate, THRESHOLD)
        poisson = log10_poisson_false_flag_probability(images, rate, THRESHOLD)
        top.plot(np.log10(images), binomial, color=color, label=f"binomial, p = {rate:g} ({basis})")
        top.plot(np.log10(images), poisson, color=color, linestyle=":", label=f"Poisson, p = {rate:g}")
        bottom.plot(np.log10(images), poisson - binomial, color=color, label=f"p = {rate:g}")
    top.axhline(np.log10(TARGET), color="black", linewidth=0.8, linestyle="--", label=f"target {TARGET:g}")
    top.set_ylim(-60, 1)
    top.set_ylabel("log10 P[flagged in a year]")
    top.set_title(f"Apple's design point: threshold t = {THRESHOLD}")
    top.legend(fontsize=7, loc="lower right")
    bottom.set_ylabel("log10 (Poisson / binomial)")
    bottom.set_xlabel("log10 images per account per year n")
    bottom.legend(fontsize=7)
    return fig


def reproduce(out_dir: Path, *, quick: bool, seed: int) -> None:
    out_dir = Path(out_dir)
    rates, images = _grid(quick)
    grid_p, grid_n = np.meshgrid(rates, images, indexing="ij")
    log10_binomial = log10_false_flag_probability(grid_n, grid_p, THRESHOLD)
    log10_poisson = log10_poisson_false_flag_probability(grid_n, grid_p, THRESHOLD)
    thresholds = required_threshold(grid_n, grid_p, TARGET)
    thresholds_poisson = required_threshold(grid_n, grid_p, TARGET, model="poisson")
    design = _design_point_rows()

    write_csv(out_dir / "design_point.csv", design)
    write_csv(
        out_dir / "false_flag_grid.csv",
        (
            {
                "per_image_rate": float(grid_p[i, j]),
                "images_per_year": int(grid_n[i, j]),
                "threshold": THRESHOLD,
                "log10_false_flag_binomial": float(log10_binomial[i, j]),
                "log10_false_flag_poisson": float(log10_poisson[i, j]),
                "log10_poisson_over_binomial": float(log10_poisson[i, j] - log10_binomial[i, j]),
            }
            for i in range(rates.size)
            for j in range(images.size)
        ),
    )
    write_csv(
        out_dir / "required_threshold.csv",
        (
            {
                "per_image_rate": float(grid_p[i, j]),
                "images_per_year": int(grid_n[i, j]),
                "target": TARGET,
                "required_threshold_binomial": int(thresholds[i, j]),
                "required_threshold_poisson": int(thresholds_poisson[i, j]),
            }
            for i in range(rates.size)
            for j in range(images.size)
        ),
    )
    save_figure(_false_flag_heatmap(rates, images, log10_binomial, design), out_dir, "false_flag_heatmap")
    save_figure(_required_threshold_heatmap(rates, images, thresholds, design), out_dir, "required_threshold_heatmap")
    save_figure(_design_point_curves(quick), out_dir, "design_point_curves")

    largest = {
        r["rate_basis"]: r["images_per_year"]
        for r in design
        if r["scenario"] == "largest account meeting the target"
    }
    largest_poisson = {
        r["rate_basis"]: r["images_per_year"]
        for r in design
        if r["scenario"].endswith("under the Poisson approximation")
    }
    write_json(
        out_dir / "summary.json",
        {
            "paper": "apple-threshold",
            "mode": "quick" if quick else "full",
            "seed": seed,
            "seed_used": False,
            "threshold": THRESHOLD,
            "target": TARGET,
            "largest_account_meeting_target_images_per_year": largest,
            "largest_account_meeting_target_images_per_year_poisson": largest_poisson,
            "grid": {
                "per_image_rate": [float(rates[0]), float(rates[-1]), int(rates.size)],
                "images_per_year": [int(images[0]), int(images[-1]), int(images.size)],
            },
            "required_threshold_range": [int(thresholds.min()), int(thresholds.max())],
            "max_log10_poisson_over_binomial": float(np.max(log10_poisson - log10_binomial)),
        },
    )
