"""Apple's match threshold of 30: how often is an innocent account falsely flagged?

An account holds n innocent photos; each falsely matches the CSAM database
independently with probability p; the account is flagged once f of them
match. The probability is the binomial tail P[Bin(n, p) >= f], computed
exactly in log space by ``e2escan.metrics`` (the Poisson tail
P[Poisson(n p) >= f] beside it for comparison).

Apple's "threshold of 30" has two readings: the account is flagged when 30
photos match (f = 30), or when the matches exceed 30 (f = 31; the PSI
protocol needs t + 1 Shamir shares). Both are computed. Two kinds of
correlated false match are added: an innocent photo held in k copies
(counted once with per-hash deduplication, k times without) and m crafted
colliding images planted by an adversary. Deterministic: the seed is
recorded but nothing is random.
"""

from __future__ import annotations

import functools
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
TARGET = 1e-12  # "one in one trillion" chance of falsely flagging a given account
READINGS = (
    # (label, matches that flag the account)
    ("reach: flagged at 30 matches", THRESHOLD),
    ("exceed: flagged at 31 matches (t + 1 shares)", THRESHOLD + 1),
)
RATES = (
    ("assumed worst case, 1 in 1 million", 1e-6),
    ("measured, 3 in 100 million", 3e-8),
)
MEASURED_FALSE_POSITIVES = 3  # threat model review p. 10: 3 false positives ...
MEASURED_PHOTOS = 100_000_000  # ... among 100 million non-CSAM photographs
STATED_ORDERS_OF_MAGNITUDE = 2  # "a safety margin that is two orders of magnitude stronger"
UPPER_BOUND_CONFIDENCE = 0.95  # one-sided Clopper-Pearson bound on the measured rate
REFERENCE_PHOTOS = (10_000, 100_000, 1_000_000)
LIBRARY_SIZES = tuple(int(m * 10**e) for e in range(3, 10) for m in (1, 3)) + (10**10,)
COPIES = (1, 2, 5, 10)  # copies of one innocent photo (correlated false matches)
DEDUP = ("per hash", "none")
PLANTED = tuple(range(THRESHOLD + 2))  # crafted colliding images planted by an adversary
RATE_DECADES = (-10, -2)  # log10 of the per-image false-match rate
PHOTO_DECADES = (2, 9)  # log10 of the photos per account
HEATMAP_FLOOR = -40.0  # colour scale floor for log10 probabilities (lower values share the end colour)


def _grid(quick: bool) -> tuple[np.ndarray, np.ndarray]:
    per_decade = 2 if quick else 5
    rates = 10.0 ** np.linspace(*RATE_DECADES, (RATE_DECADES[1] - RATE_DECADES[0]) * per_decade + 1)
    photos = np.round(10.0 ** np.linspace(*PHOTO_DECADES, (PHOTO_DECADES[1] - PHOTO_DECADES[0]) * per_decade + 1))
    return rates, photos


@functools.cache
def _largest_safe_table() -> dict[tuple[float, int], int]:
    """Largest safe library for every Apple rate and every match count 1..31, in one vectorised search.

    Keys are (per-image rate, matches that flag); values are photos. "Safe" is
    strict: P[flag] < TARGET (the library search meets P <= TARGET; a library
    whose tail equals TARGET exactly is stepped back by one).
    """
    rates = np.array([rate for _, rate in RATES])[:, None]
    flags = np.arange(1, THRESHOLD + 2)[None, :]
    largest = np.asarray(max_images_for_target(rates, flags, TARGET)).astype(np.int64)
    at_target = np.asarray(log10_false_flag_probability(largest, rates, flags)) >= np.log10(TARGET)
    largest = largest - at_target
    return {
        (float(rates[i, 0]), int(flags[0, j])): int(largest[i, j])
        for i in range(rates.shape[0])
        for j in range(flags.shape[1])
    }


def _largest_safe(rate: float, flag_at: int) -> int:
    """The largest number of photos whose false-flag probability is below TARGET (exact binomial)."""
    return _largest_safe_table()[(rate, flag_at)]


def _clopper_pearson_upper(events: int, trials: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound on a binomial rate: P[Bin(trials, p) <= events] = 1 - confidence.

    Returns a probability per trial. Bisection on log p against the library's
    exact tail P[Bin(trials, p) >= events + 1], which increases with p.
    """
    lo, hi = np.log(events / trials), np.log(min(1.0, 100.0 * (events + 1) / trials))
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if false_flag_probability(trials, float(np.exp(mid)), events + 1) < confidence:
            lo = mid
        else:
            hi = mid
    return float(np.exp(hi))


def _rate_margin_rows() -> list[dict]:
    assumed, measured = RATES[0][1], RATES[1][1]
    upper = _clopper_pearson_upper(MEASURED_FALSE_POSITIVES, MEASURED_PHOTOS, UPPER_BOUND_CONFIDENCE)
    rows = []
    for basis, rate in (
        ("measured point estimate, 3 in 100 million", measured),
        (f"one-sided {UPPER_BOUND_CONFIDENCE:.0%} Clopper-Pearson upper bound on the measured rate", upper),
    ):
        rows.append(
            {
                "compared_with": basis,
                "measured_rate": rate,
                "assumed_rate": assumed,
                "margin_ratio": assumed / rate,
                "margin_orders_of_magnitude": float(np.log10(assumed / rate)),
                "stated_orders_of_magnitude": STATED_ORDERS_OF_MAGNITUDE,
                "ratio_if_two_orders": float(10**STATED_ORDERS_OF_MAGNITUDE),
            }
        )
    return rows


def _design_point_rows() -> list[dict]:
    rows = []
    for reading, flag_at in READINGS:
        for basis, rate in RATES:
            largest = _largest_safe(rate, flag_at)
            largest_poisson = int(max_images_for_target(rate, flag_at, TARGET, model="poisson"))
            scenarios = [
                ("largest library meeting the target", largest),
                ("one photo more", largest + 1),
                ("largest library meeting the target under the Poisson approximation", largest_poisson),
            ] + [("fixed size", n) for n in REFERENCE_PHOTOS]
            for scenario, photos in scenarios:
                log10_binomial = log10_false_flag_probability(photos, rate, flag_at)
                rows.append(
                    {
                        "reading": reading,
                        "flag_at_matches": flag_at,
                        "rate_basis": basis,
                        "per_image_rate": rate,
                        "scenario": scenario,
                        "photos": photos,
                        "photos_per_day_if_a_year": round(photos / 365, 1),
                        "target": TARGET,
                        "false_flag_binomial": false_flag_probability(photos, rate, flag_at),
                        "log10_false_flag_binomial": log10_binomial,
                        "log10_false_flag_poisson": log10_poisson_false_flag_probability(photos, rate, flag_at),
                        "meets_target": bool(log10_binomial < np.log10(TARGET)),
                        "matches_needed_for_target": required_threshold(photos, rate, TARGET),
                    }
                )
    return rows


def _largest_safe_rows() -> list[dict]:
    rows = []
    for reading, flag_at in READINGS:
        for basis, rate in RATES:
            largest = _largest_safe(rate, flag_at)
            largest_poisson = int(max_images_for_target(rate, flag_at, TARGET, model="poisson"))
            rows.append(
                {
                    "reading": reading,
                    "flag_at_matches": flag_at,
                    "rate_basis": basis,
                    "per_image_rate": rate,
                    "largest_safe_library": largest,
                    # the smallest library for which one match fewer would not meet the target: if Apple's
                    # threshold was the smallest meeting it, Apple's assumed library lies in this range
                    "smallest_library_needing_this_many": _largest_safe(rate, flag_at - 1) + 1,
                    "photos_per_day_if_a_year": round(largest / 365, 1),
                    "log10_false_flag_at_largest": log10_false_flag_probability(largest, rate, flag_at),
                    "log10_false_flag_one_more": log10_false_flag_probability(largest + 1, rate, flag_at),
                    "largest_safe_library_poisson": largest_poisson,
                    "poisson_minus_binomial": largest_poisson - largest,
                }
            )
    return rows


def _threshold_vs_library_rows() -> list[dict]:
    rows = []
    for basis, rate in RATES:
        for photos in LIBRARY_SIZES:
            needed = int(required_threshold(photos, rate, TARGET))
            rows.append(
                {
                    "rate_basis": basis,
                    "per_image_rate": rate,
                    "photos": photos,
                    "matches_needed_to_flag": needed,
                    "apple_threshold_reach_reading": needed,
                    "apple_threshold_exceed_reading": needed - 1,
                    "log10_false_flag_at_30_matches": log10_false_flag_probability(photos, rate, THRESHOLD),
                    "log10_false_flag_at_31_matches": log10_false_flag_probability(photos, rate, THRESHOLD + 1),
                }
            )
    return rows


def _duplicate_rows() -> list[dict]:
    """Innocent photos held in k copies: how the false-flag probability and the largest safe library move.

    Two models. "every photo in k copies": the library is D distinct photos,
    each stored k times (n = k D photos); a distinct photo that falsely
    matches brings k matches without deduplication, one with per-hash
    deduplication. "one colliding photo in k copies": the account is known to
    hold one photo that collides, stored k times, beside n - k independent
    photos (a conditional probability: given that collision).
    """
    rows = []
    for reading, flag_at in READINGS:
        for basis, rate in RATES:
            independent_largest = _largest_safe(rate, flag_at)
            for copies in COPIES:
                for dedup in DEDUP:
                    counted = 1 if dedup == "per hash" else copies
                    # every photo in k copies: D distinct photos, a match counts `counted` times
                    distinct_needed = -(-flag_at // counted)
                    every = {
                        "model": "every photo in k copies",
                        "largest_safe_library": copies * _largest_safe(rate, distinct_needed),
                        "log10_false_flag_at_reference": log10_false_flag_probability(
                            independent_largest // copies, rate, distinct_needed
                        ),
                    }
                    # one colliding photo in k copies: the other n - k photos must supply the rest
                    rest_needed = flag_at - counted
                    one = {
                        "model": "one colliding photo in k copies (given that collision)",
                        "largest_safe_library": copies + _largest_safe(rate, rest_needed),
                        "log10_false_flag_at_reference": log10_false_flag_probability(
                            independent_largest - copies, rate, rest_needed
                        ),
                    }
                    for model in (every, one):
                        rows.append(
                            {
                                "model": model["model"],
                                "copies": copies,
                                "dedup": dedup,
                                "reading": reading,
                                "flag_at_matches": flag_at,
                                "per_image_rate": rate,
                                "rate_basis": basis,
                                "largest_safe_library": model["largest_safe_library"],
                                "largest_safe_library_independent": independent_largest,
                                "library_ratio_to_independent": model["largest_safe_library"] / independent_largest,
                                "reference_photos": independent_largest,
                                "log10_false_flag_at_reference": model["log10_false_flag_at_reference"],
                            }
                        )
    return rows


def _planted_rows() -> list[dict]:
    """An adversary plants m crafted colliding images; the n innocent photos must supply the other matches."""
    rows = []
    for reading, flag_at in READINGS:
        for basis, rate in RATES:
            sizes = [("fixed size", n) for n in REFERENCE_PHOTOS] + [
                ("largest safe library", _largest_safe(rate, flag_at))
            ]
            for size_basis, photos in sizes:
                for planted in PLANTED:
                    natural_needed = flag_at - planted
                    rows.append(
                        {
                            "reading": reading,
                            "flag_at_matches": flag_at,
                            "per_image_rate": rate,
                            "rate_basis": basis,
                            "size_basis": size_basis,
                            "innocent_photos": photos,
                            "planted_collisions": planted,
                            "natural_matches_needed": max(natural_needed, 0),
                            "false_flag": false_flag_probability(photos, rate, natural_needed),
                            "log10_false_flag": log10_false_flag_probability(photos, rate, natural_needed),
                        }
                    )
    return rows


PLANTED_LEVELS = (1e-12, 1e-6, 0.01, 0.5)  # flag probabilities whose crossing point is reported


def _planted_needed_rows(planted: list[dict]) -> list[dict]:
    """For each account, the fewest planted collisions that lift P[flag] to each of PLANTED_LEVELS."""
    rows = []
    keys = sorted({(r["flag_at_matches"], r["per_image_rate"], r["innocent_photos"]) for r in planted})
    for flag_at, rate, photos in keys:
        curve = [r for r in planted if (r["flag_at_matches"], r["per_image_rate"], r["innocent_photos"]) == (flag_at, rate, photos)]
        row = {"flag_at_matches": flag_at, "per_image_rate": rate, "innocent_photos": photos}
        for level in PLANTED_LEVELS:
            row[f"planted_for_p_at_least_{level:g}"] = min(
                r["planted_collisions"] for r in curve if r["log10_false_flag"] >= np.log10(level)
            )
        rows.append(row)
    return rows


def _axes_edges(values: np.ndarray) -> np.ndarray:
    logs = np.log10(values)
    step = logs[1] - logs[0]
    return np.concatenate([logs - step / 2, [logs[-1] + step / 2]])


def _mark_apple_rates(ax, largest: dict[float, int], flag_at: int) -> None:
    """Apple's two per-image rates as vertical lines, with the largest library meeting the target."""
    for (basis, rate), style, text_y in zip(RATES, ("-", "--"), (0.16, 0.04)):
        ax.axvline(np.log10(rate), color="black", linestyle=style, linewidth=0.8)
        ax.plot([np.log10(rate)], [np.log10(largest[rate])], marker="o", color="black")
        ax.annotate(
            f"p = {rate:g} ({basis}): flagging at {flag_at} matches meets {TARGET:g}\n"
            f"up to {largest[rate]:,} photos",
            xy=(np.log10(rate), np.log10(largest[rate])),
            xytext=(0.03, text_y),
            textcoords="axes fraction",
            fontsize=7,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85},
            arrowprops={"arrowstyle": "->", "linestyle": style, "color": "black"},
        )


def _false_flag_heatmap(rates, photos, log10_p, largest) -> Figure:
    fig = Figure(figsize=(7.5, 5.5))
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(
        _axes_edges(rates), _axes_edges(photos), log10_p.T, vmin=HEATMAP_FLOOR, vmax=0.0, cmap="viridis"
    )
    mesh.set_rasterized(True)  # keeps the SVG small; axes and labels stay vector
    bar = fig.colorbar(mesh, ax=ax, extend="min")
    bar.set_label(f"log10 P[innocent account flagged]  (floor {HEATMAP_FLOOR:g})")
    contours = ax.contour(np.log10(rates), np.log10(photos), log10_p.T, levels=[-24, -12, -6], colors="white", linewidths=0.8)
    ax.clabel(contours, fmt={-24: "1e-24", -12: "1e-12 (Apple's target)", -6: "1e-6"}, fontsize=7)
    _mark_apple_rates(ax, largest, THRESHOLD)
    ax.set_xlabel("log10 per-image false-match rate p")
    ax.set_ylabel("log10 photos in the account n")
    ax.set_title(f"False-flag probability when {THRESHOLD} matches flag (exact binomial tail)")
    return fig


def _required_threshold_heatmap(rates, photos, needed, largest) -> Figure:
    fig = Figure(figsize=(7.5, 5.5))
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(
        _axes_edges(rates), _axes_edges(photos), needed.T, norm=LogNorm(vmin=1, vmax=needed.max()), cmap="magma"
    )
    mesh.set_rasterized(True)
    bar = fig.colorbar(mesh, ax=ax)
    bar.set_label(f"fewest matches that may flag, for P[flag] <= {TARGET:g}")
    levels = [THRESHOLD, THRESHOLD + 1]
    contours = ax.contour(np.log10(rates), np.log10(photos), needed.T, levels=levels, colors="cyan", linewidths=1.0)
    ax.clabel(contours, fmt={level: f"{level} matches" for level in levels}, fontsize=7)
    _mark_apple_rates(ax, largest, THRESHOLD)
    ax.set_xlabel("log10 per-image false-match rate p")
    ax.set_ylabel("log10 photos in the account n")
    ax.set_title(f"Matches needed to flag for a {TARGET:g} false-flag probability per account")
    return fig


def _design_point_curves(quick: bool) -> Figure:
    photos = np.round(10.0 ** np.linspace(3, 9, 25 if quick else 121))
    fig = Figure(figsize=(7, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for (basis, rate), color in zip(RATES, ("tab:red", "tab:blue")):
        for (_reading, flag_at), style in zip(READINGS, ("-", "--")):
            binomial = log10_false_flag_probability(photos, rate, flag_at)
            top.plot(np.log10(photos), binomial, color=color, linestyle=style,
                     label=f"p = {rate:g} ({basis}), flagged at {flag_at}")
        binomial = log10_false_flag_probability(photos, rate, THRESHOLD)
        poisson = log10_poisson_false_flag_probability(photos, rate, THRESHOLD)
        top.plot(np.log10(photos), poisson, color=color, linestyle=":", label=f"Poisson, p = {rate:g}, flagged at {THRESHOLD}")
        bottom.plot(np.log10(photos), poisson - binomial, color=color, label=f"p = {rate:g}, flagged at {THRESHOLD}")
    top.axhline(np.log10(TARGET), color="black", linewidth=0.8, linestyle="-.", label=f"target {TARGET:g}")
    top.set_ylim(-60, 1)
    top.set_ylabel("log10 P[innocent account flagged]")
    top.set_title(f"Apple's design point: threshold {THRESHOLD}, read as 30 or 31 matches")
    top.legend(fontsize=6, loc="lower right")
    bottom.set_ylabel("log10 (Poisson / binomial)")
    bottom.set_xlabel("log10 photos in the account n")
    bottom.legend(fontsize=7)
    return fig


def _correlated_figure(planted: list[dict], threshold_rows: list[dict]) -> Figure:
    fig = Figure(figsize=(11, 4.8))
    left, right = fig.subplots(1, 2)
    for (basis, rate), color in zip(RATES, ("tab:red", "tab:blue")):
        for (_reading, flag_at), style in zip(READINGS, ("-", "--")):
            for size_basis, marker in (("largest safe library", "o"), ("fixed size", "")):
                rows = [
                    r for r in planted
                    if r["per_image_rate"] == rate and r["flag_at_matches"] == flag_at and r["size_basis"] == size_basis
                    and (size_basis != "fixed size" or r["innocent_photos"] == REFERENCE_PHOTOS[1])
                ]
                label = f"p = {rate:g}, {rows[0]['innocent_photos']:,} photos, flagged at {flag_at}"
                left.plot([r["planted_collisions"] for r in rows], [max(r["log10_false_flag"], -60) for r in rows],
                          color=color, linestyle=style, marker=marker, markersize=2.5, label=label)
        sizes = [r["photos"] for r in threshold_rows if r["per_image_rate"] == rate]
        needed = [r["matches_needed_to_flag"] for r in threshold_rows if r["per_image_rate"] == rate]
        right.step(np.log10(sizes), needed, where="post", color=color, label=f"p = {rate:g} ({basis})")
    left.axhline(np.log10(TARGET), color="black", linewidth=0.8, linestyle="-.", label=f"target {TARGET:g}")
    left.set_xlabel("crafted colliding images planted, m")
    left.set_ylabel("log10 P[account flagged]  (floor -60)")
    left.set_title("Engineered collisions: the innocent photos supply the rest")
    left.legend(fontsize=6, loc="lower right")
    for level, style in ((THRESHOLD, "-"), (THRESHOLD + 1, "--")):
        right.axhline(level, color="grey", linewidth=0.8, linestyle=style)
    right.set_yscale("log")
    right.set_xlabel("log10 photos in the account n")
    right.set_ylabel(f"fewest matches that may flag, for P <= {TARGET:g}")
    right.set_title("Threshold against library size (reach reading; exceed = one less)")
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def reproduce(out_dir: Path, *, quick: bool, seed: int) -> None:
    out_dir = Path(out_dir)
    rates, photos = _grid(quick)
    grid_p, grid_n = np.meshgrid(rates, photos, indexing="ij")
    log10_binomial = log10_false_flag_probability(grid_n, grid_p, THRESHOLD)
    log10_binomial_31 = log10_false_flag_probability(grid_n, grid_p, THRESHOLD + 1)
    log10_poisson = log10_poisson_false_flag_probability(grid_n, grid_p, THRESHOLD)
    needed = required_threshold(grid_n, grid_p, TARGET)
    needed_poisson = required_threshold(grid_n, grid_p, TARGET, model="poisson")
    design = _design_point_rows()
    largest_rows = _largest_safe_rows()
    margin = _rate_margin_rows()
    threshold_rows = _threshold_vs_library_rows()
    duplicates = _duplicate_rows()
    planted = _planted_rows()

    write_csv(out_dir / "design_point.csv", design)
    write_csv(out_dir / "largest_safe_library.csv", largest_rows)
    write_csv(out_dir / "rate_margin.csv", margin)
    write_csv(out_dir / "threshold_vs_library.csv", threshold_rows)
    write_csv(out_dir / "duplicate_copies.csv", duplicates)
    write_csv(out_dir / "planted_collisions.csv", planted)
    write_csv(out_dir / "planted_collisions_needed.csv", _planted_needed_rows(planted))
    write_csv(
        out_dir / "false_flag_grid.csv",
        (
            {
                "per_image_rate": float(grid_p[i, j]),
                "photos": int(grid_n[i, j]),
                "log10_false_flag_at_30_binomial": float(log10_binomial[i, j]),
                "log10_false_flag_at_31_binomial": float(log10_binomial_31[i, j]),
                "log10_false_flag_at_30_poisson": float(log10_poisson[i, j]),
                "log10_poisson_over_binomial_at_30": float(log10_poisson[i, j] - log10_binomial[i, j]),
            }
            for i in range(rates.size)
            for j in range(photos.size)
        ),
    )
    write_csv(
        out_dir / "required_threshold.csv",
        (
            {
                "per_image_rate": float(grid_p[i, j]),
                "photos": int(grid_n[i, j]),
                "target": TARGET,
                "matches_needed_binomial": int(needed[i, j]),
                "matches_needed_poisson": int(needed_poisson[i, j]),
                "apple_threshold_exceed_reading_binomial": int(needed[i, j]) - 1,
            }
            for i in range(rates.size)
            for j in range(photos.size)
        ),
    )
    largest_at_30 = {r["per_image_rate"]: r["largest_safe_library"] for r in largest_rows if r["flag_at_matches"] == THRESHOLD}
    save_figure(_false_flag_heatmap(rates, photos, log10_binomial, largest_at_30), out_dir, "false_flag_heatmap")
    save_figure(_required_threshold_heatmap(rates, photos, needed, largest_at_30), out_dir, "required_threshold_heatmap")
    save_figure(_design_point_curves(quick), out_dir, "design_point_curves")
    save_figure(_correlated_figure(planted, threshold_rows), out_dir, "correlated_matches")

    write_json(
        out_dir / "summary.json",
        {
            "paper": "apple-threshold",
            "mode": "quick" if quick else "full",
            "seed": seed,
            "seed_used": False,
            "threshold": THRESHOLD,
            "target": TARGET,
            "largest_safe_library": {
                f"flagged at {r['flag_at_matches']}, p = {r['per_image_rate']:g}": r["largest_safe_library"]
                for r in largest_rows
            },
            "largest_safe_library_poisson": {
                f"flagged at {r['flag_at_matches']}, p = {r['per_image_rate']:g}": r["largest_safe_library_poisson"]
                for r in largest_rows
            },
            "margin_ratio_assumed_over_measured": margin[0]["margin_ratio"],
            "grid": {
                "per_image_rate": [float(rates[0]), float(rates[-1]), int(rates.size)],
                "photos": [int(photos[0]), int(photos[-1]), int(photos.size)],
            },
            "matches_needed_range": [int(needed.min()), int(needed.max())],
            "max_log10_poisson_over_binomial": float(np.max(log10_poisson - log10_binomial)),
        },
    )
