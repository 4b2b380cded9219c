"""A day of EU-scale messaging through client-side scanning, as a review funnel.

Runs the shipped ``simulator/eu-day.toml`` scenario on the statistical path for
each protocol, threshold and per-image false-match assumption below, and
writes one funnel row per combination: images scanned, vouchers, known images,
matches, accounts over the threshold, true and false flags, review cases and
reviewer hours.

Innocent accounts flagged on one simulated day depend on which popular (viral)
images happen to match in that replicate, so each row also gives the
closed-form expectation over those draws (``t = 1``; ``innocent_flag_expectation``),
the probability of a viral false match on a day and its conditional impact,
and the mean and percentiles over ``REPLICATES`` replicates of the innocent
accounts (drawn exactly as the full run draws them, which makes 1,000 of them
cheap: ``innocent_flag_replicates``). The row's own counts are replicate 0.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from e2escan.results import write_csv, write_json, write_manifest
from e2escan.sim.scenario import Scenario, resolve_scenario
from e2escan.sim.statistical import innocent_flag_replicates, run_statistical

REPLICATES = 1000

# (protocol, params): the protocol's radius and threshold decide matches and flags.
VARIANTS = [
    ("plaintext", {"radius": 31}),
    ("psi-exact", {}),
    ("tpsi-ad", {"threshold": 1}),
    ("tpsi-ad", {"threshold": 3}),
    ("tpsi-ad", {"threshold": 10}),
    ("tpsi-ad", {"threshold": 30}),
]
# Per-image false-match rates: Apple's design assumption and its measurement (Security Threat
# Model Review of Apple's Child Safety Features, August 2021).
FALSE_MATCH_RATES = [1e-6, 3e-8]


def funnel_rows(quick: bool, seed: int) -> list[dict]:
    base = Scenario.load(resolve_scenario("eu-day")).with_overrides(seed=seed)
    if quick:
        base = base.with_overrides(**{"population.accounts": 45_000_000})
    rows = []
    for fmr in FALSE_MATCH_RATES:
        for name, params in VARIANTS:
            s = base.with_overrides(**{"protocol.name": name, "protocol.params": params,
                                       "statistical.false_match_rate": fmr})
            m = run_statistical(s)["metrics"]
            pi, ac, rv = m["per_image"], m["accounts"], m["review"]
            known_matched = pi["known_images"] - pi["false_negative"]["count"]
            rows.append({
                "protocol": name,
                "radius": m["model"]["radius"],
                "threshold": m["threshold"],
                "false_match_rate": fmr,
                "accounts": ac["accounts"],
                "images_scanned": pi["images"],
                "vouchers": pi["images"],
                "known_images": pi["known_images"],
                "known_images_matched": known_matched,
                "false_matches": pi["false_positive"]["count"],
                "accounts_over_threshold": ac["innocent_flagged"]["count"] + ac["offenders_flagged"]["count"],
                "innocent_accounts_flagged": ac["innocent_flagged"]["count"],
                "offenders": ac["offenders"],
                "offenders_flagged": ac["offenders_flagged"]["count"],
                "review_cases": rv["cases_reviewed"],
                "reviewer_hours": round(rv["reviewer_hours"], 1),
                "offenders_confirmed": ac["offenders_detected"]["count"],
                "innocent_accounts_confirmed": ac["innocent_falsely_confirmed"]["count"],
                **_innocent_distribution(s, m["model"]),
            })
    return rows


def _innocent_distribution(s: Scenario, model: dict) -> dict:
    """Closed form and replicate distribution of innocent accounts flagged per day."""
    counts = innocent_flag_replicates(s, REPLICATES)
    expected = model.get("expected_innocent_flagged")
    impact = model.get("viral_day_impact")
    return {
        "innocent_flagged_expected": "" if expected is None else round(expected, 1),
        "viral_day_probability": round(model["viral_day_probability"], 6),
        "viral_day_impact": "" if impact is None else round(impact, 1),
        "replicates": REPLICATES,
        "innocent_flagged_mean": round(float(counts.mean()), 1),
        "innocent_flagged_p2_5": round(float(np.percentile(counts, 2.5)), 1),
        "innocent_flagged_p50": round(float(np.percentile(counts, 50)), 1),
        "innocent_flagged_p97_5": round(float(np.percentile(counts, 97.5)), 1),
        "innocent_flagged_max": int(counts.max()),
        "viral_days": int((counts > 3 * np.median(counts) + 10).sum()),
    }


def reproduce(out_dir: Path, *, quick: bool, seed: int) -> None:
    started = time.perf_counter()
    out_dir = Path(out_dir)
    rows = funnel_rows(quick, seed)
    write_csv(out_dir / "funnel.csv", rows)
    write_json(out_dir / "summary.json", {"rows": rows, "quick": quick, "seed": seed})
    _figure(rows, out_dir)
    write_manifest(out_dir, command="e2escan papers reproduce eu-funnel" + (" --quick" if quick else ""),
                   seed=seed, started=started)


def _figure(rows: list[dict], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from e2escan.results import save_figure

    stages = [("images_scanned", "images scanned"), ("known_images_matched", "known images matched"),
              ("false_matches", "false matches"), ("accounts_over_threshold", "accounts over threshold"),
              ("innocent_accounts_flagged", "innocent accounts flagged"), ("review_cases", "review cases")]
    fig, axes = plt.subplots(1, len(FALSE_MATCH_RATES), figsize=(11, 4), sharey=True)
    for ax, fmr in zip(np.atleast_1d(axes), FALSE_MATCH_RATES):
        sub = [r for r in rows if r["false_match_rate"] == fmr]
        x = np.arange(len(stages))
        width = 0.8 / len(sub)
        for i, r in enumerate(sub):
            label = f"{r['protocol']} t={r['threshold']}" + (f" r={r['radius']}" if r["radius"] else "")
            vals = np.array([r[k] for k, _ in stages], dtype=float)
            xs = x + (i - len(sub) / 2 + 0.5) * width
            bars = ax.bar(xs, np.where(vals > 0, vals, np.nan), width, label=label)  # a zero has no bar on a log axis
            for xi in xs[vals == 0]:
                ax.annotate("0", (xi, 0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=5,
                            color=bars.patches[0].get_facecolor())
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([s for _, s in stages], rotation=30, ha="right", fontsize=7)
        ax.set_title(f"per-image false-match rate {fmr:g}", fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("images, accounts or cases in one day\n(a 0 marks a stage with none)")
    np.atleast_1d(axes)[-1].legend(fontsize=6)
    fig.suptitle("One day of EU-scale messaging through client-side scanning (statistical path)", fontsize=10)
    save_figure(fig, out_dir, "funnel")
    plt.close(fig)
