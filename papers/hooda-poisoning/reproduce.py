"""Database poisoning for surveillance: per-copy detection of one circulating image, and surveillance of a place.

Hooda, Labunets, Kohno, Fernandes (arXiv:2212.04107; NDSS 2024) poison a
perceptual-hash database with hashes of a target and report a "surveillance
rate" (its definition is in the body, which we did not read). We measure two
different things, neither of them their rate:

1. Per-copy detection of one circulating image
   (:func:`e2escan.attacks.poisoning.run_poisoning_experiment`): synthetic
   target images circulate as copies made by everyday edits; the adversary
   spends a fraction of a 1,000-entry database on hashes of its own copies; we
   measure the share of victims' copies that match (PDQ, exact or within
   distance 31), then what an account holding copies reveals under each
   protocol and holder model (independent copies, one edit family per holder,
   a 50/50 mixture; each with ``dedup = "none"`` and ``"hash"``), computed and
   simulated, and measured by running the real protocol code on accounts (a
   check of the implementation against the model, not of the model).
   ``edit_mix_sensitivity.csv`` repeats the per-copy measurement and the
   closed-form account numbers under other edit mixes.

2. Surveillance of a place by distinct views
   (:func:`e2escan.attacks.poisoning.run_viewpoint_surveillance`): each
   target is a synthetic 1024 x 1024 scene; the adversary poisons the
   database with the hashes of 1, 5 or 20 views of its own; the surveillance
   rate is the share of victims' other, distinct views of the scene (crops at
   other positions and scales, small rotations, perspective changes, then the
   messenger's JPEG) that match one of them, against the matching radius
   (exact, PDQ <= 31, wider; the same shares of bits for a 64-bit pHash),
   beside the innocent cost: views of other scenes that match.

Quick mode: 2 targets, 100 + 100 copies each, 5 holders and 5 non-holders per
target and protocol; 3 scenes, 10 + 10 views each. Full mode: 12 targets, 300 +
300 copies each, 15 + 15 accounts per target and protocol, protocol runs at 5%
(holder models at 0.2% and 5%); 12 scenes, 20 + 40 views each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from e2escan.attacks.poisoning import (
    EVERYDAY_EDITS,
    PoisoningExperiment,
    ProtocolUnderTest,
    ViewpointExperiment,
    holder_revealed_probability,
    run_poisoning_experiment,
    run_viewpoint_surveillance,
    with_weights,
)
from e2escan.results import save_figure, write_csv, write_json

QUICK = {"targets": 2, "attacker_copies": 100, "victim_copies": 100, "unrelated_images": 60, "run_accounts": 5,
         "run_fractions": (0.05,), "holder_fractions": (0.002, 0.05), "model_holders": 4000}
FULL = {"targets": 12, "attacker_copies": 300, "victim_copies": 300, "unrelated_images": 400, "run_accounts": 15,
        "run_fractions": (0.05,), "holder_fractions": (0.002, 0.05), "model_holders": 4000}
# The (t, m) points the README reports for the holder models.
HOLDER_POINTS = ((3, 3), (30, 40))
# Edit mixes for the sensitivity table: (forwarded share, share of the deterministic re-encodings
# "recompressed" + "downscaled", split equally); the other families share the rest in their default
# proportions. The default mix is (0.25, 0.30).
DETERMINISTIC = ("recompressed", "downscaled")
MIXES = ((0.25, 0.30), (0.0, 0.30), (0.10, 0.30), (0.50, 0.30), (0.25, 0.0), (0.25, 0.15), (0.25, 0.50))
SENSITIVITY_PROTOCOLS = (
    ProtocolUnderTest("plaintext, radius 31", "plaintext", {"radius": 31}),
    ProtocolUnderTest("tpsi-ad", "tpsi-ad", {"threshold": 1, "dedup": "none", "payload_size": 16}),
)
# The paper's headline numbers, read in the abstracts only ([A]): arXiv v1 (2022) and the NDSS 2024 version.
PAPER_POINTS = (
    ("[A] arXiv:2212.04107 abstract: >40% at 5% poisoned", 0.05, 0.40),
    ("[A] NDSS 2024 abstract: >30% at 0.2% poisoned", 0.002, 0.30),
)
FIGURE_COPIES = 3
# Surveillance of a place: scenes, the adversary's views (its largest entry set) and the victims' views per scene.
VIEWS_QUICK = {"scenes": 3, "adversary_views": 10, "victim_views": 10, "entries_per_target": (1, 5, 10)}
VIEWS_FULL = {"scenes": 12, "adversary_views": 20, "victim_views": 40, "entries_per_target": (1, 5, 20)}


def _per_copy_figure(rows: list[dict]) -> Figure:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for radius, style in ((31, "-o"), (0, "-s")):
        pts = sorted((r["poison_fraction"], r["per_copy_detection_rate"]) for r in rows
                     if r["radius"] == radius and r["edit_family"] == "all" and r["poison_fraction"] > 0)
        label = "PDQ within distance 31 (plaintext)" if radius else "exact PDQ (psi-exact, tpsi-ad)"
        ax.plot([100 * f for f, _ in pts], [q for _, q in pts], style, label=label)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("database poisoned (%, log scale; 1,000 entries)")
    ax.set_ylabel("share of the image's circulating copies detected")
    ax.set_title("Per-copy detection of one circulating image (mean over targets);\n"
                 "not the paper's surveillance rate, whose definition we did not read", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _viewpoint_figure(rows: list[dict]) -> Figure:
    """Surveillance rate (solid) and innocent false-match rate (dashed) against the radius, per view model."""
    models = list(dict.fromkeys(r["view_model"] for r in rows))
    hashers = list(dict.fromkeys(r["hasher"] for r in rows))
    entries = sorted({r["entries_per_target"] for r in rows})
    fig = Figure(figsize=(4 * len(models), 3.6 * len(hashers)), layout="constrained")
    axes = fig.subplots(len(hashers), len(models), sharey=True, squeeze=False)
    colours = ("tab:blue", "tab:orange", "tab:red")
    for i, hasher in enumerate(hashers):
        for j, model in enumerate(models):
            ax = axes[i][j]
            for k, colour in zip(entries, colours):
                pts = sorted((r["radius"], r["surveillance_rate"], r["innocent_false_match_rate"]) for r in rows
                             if r["hasher"] == hasher and r["view_model"] == model and r["entries_per_target"] == k)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color=colour, markersize=3,
                        label=f"surveillance, {k} entries")
                ax.plot([p[0] for p in pts], [p[2] for p in pts], "--x", color=colour, markersize=3,
                        label=f"innocent false match, {k} entries")
            for level in (0.3, 0.4):
                ax.axhline(level, color="grey", linewidth=0.6, linestyle=":")
            bits = next(r["bits"] for r in rows if r["hasher"] == hasher)
            ax.set_title(f"{hasher} ({bits} bits), views: {model}", fontsize=8)
            ax.set_xlabel("matching radius (Hamming distance <=)")
            ax.set_ylim(-0.02, 1.02)
        axes[i][0].set_ylabel("share of views matched")
    axes[0][0].legend(fontsize=6, loc="upper left")
    fig.suptitle("Distinct views of one scene: surveillance against matching robustness (pooled over scenes). "
                 "Dotted: the abstracts' 30% and 40%, [A], a rate whose definition we did not read", fontsize=8)
    return fig


def _style(protocol: str, s: float) -> dict:
    colours = {"plaintext, radius 31": "black", "plaintext, exact": "grey", "tpsi-ad t=1": "tab:blue",
               "tpsi-ad t=3": "tab:orange", "tpsi-ad t=30": "tab:red"}
    dashes = {0.0: "-", 0.01: "--", 0.1: ":"}
    return {"color": colours.get(protocol, "tab:green"), "linestyle": dashes.get(s, "-."), "marker": "."}


def _account_figure(rows: list[dict]) -> Figure:
    fig = Figure(figsize=(10, 4.8))
    left, right = fig.subplots(1, 2, sharey=True)
    for ax, key, title in (
        (left, "revealed_probability", "a target copy's payload is decrypted"),
        (right, "opened_test_detection", "opened-voucher count >= cut (1% false positives);\nthe same for every t"),
    ):
        for protocol, s in sorted({(r["protocol"], r["synthetic_probability"]) for r in rows}):
            pts = sorted((r["poison_fraction"], r[key]) for r in rows if r["protocol"] == protocol
                         and r["synthetic_probability"] == s and r["copies_held"] == FIGURE_COPIES and r["poison_fraction"] > 0)
            suffix = "" if protocol.startswith("plaintext") else f", s = {s:g}"
            ax.plot([100 * f for f, _ in pts], [v for _, v in pts], label=protocol + suffix, **_style(protocol, s))
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("database poisoned (%)")
    left.set_ylabel(f"holders of {FIGURE_COPIES} copies detected")
    left.set_ylim(0, 1.02)
    left.legend(fontsize=6, loc="center right", ncol=1)
    fig.suptitle("What the server learns about an account holding the target (direct computation; s: synthetic probability)",
                 fontsize=10)
    return fig


def _holder_figure(rows: list[dict], fraction: float) -> Figure:
    fig = Figure(figsize=(10, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, t in zip(axes, (3, 30)):
        for rho, colour in ((0.0, "tab:blue"), (0.5, "tab:purple"), (1.0, "tab:red")):
            for dedup, style in (("none", "-o"), ("hash", "--s")):
                pts = sorted((r["copies_held"], r["revealed_simulated"]) for r in rows
                             if r["threshold"] == t and r["synthetic_probability"] == 0.0 and r["correlation"] == rho
                             and r["dedup"] == dedup and r["poison_fraction"] == fraction)
                ax.plot([m for m, _ in pts], [v for _, v in pts], style, color=colour,
                        label=f"correlation {rho:g}, dedup = {dedup}")
        ax.set_xscale("log")
        ax.set_title(f"tpsi-ad t = {t}, s = 0", fontsize=9)
        ax.set_xlabel("copies held")
    axes[0].set_ylabel("holders revealed (holder model, simulated)")
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Holder models at {100 * fraction:g}% poisoned (exact PDQ): correlation 0 = independent copies, "
                 "1 = one edit family per holder", fontsize=9)
    return fig


def _mix(forwarded: float, deterministic: float):
    """The edit mix with these forwarded and deterministic shares; the default mix is EVERYDAY_EDITS itself."""
    if (forwarded, deterministic) == MIXES[0]:
        return EVERYDAY_EDITS
    variable = [e for e in EVERYDAY_EDITS if e.name != "forwarded" and e.name not in DETERMINISTIC]
    rest = 1.0 - forwarded - deterministic
    total = sum(e.weight for e in variable)
    weights = {"forwarded": forwarded, **{n: deterministic / len(DETERMINISTIC) for n in DETERMINISTIC},
               **{e.name: rest * e.weight / total for e in variable}}
    return with_weights(EVERYDAY_EDITS, weights)


def _sensitivity(settings: dict, seed: int) -> list[dict]:
    """Per-copy detection and the closed-form holder models (exact PDQ, s = 0, dedup = "none") per edit mix.

    Every mix uses the same seed (the same target images and random draws), so
    rows differ by the mix alone as far as the draws allow.
    """
    rows = []
    fractions = (0.002, 0.05)
    for forwarded, deterministic in MIXES:
        experiment = PoisoningExperiment(**{
            **settings, "edits": _mix(forwarded, deterministic), "fractions": fractions, "holder_fractions": fractions,
            "run_fractions": fractions, "run_accounts": 0, "copies_held": (1,), "correlations": (0.0,),
            "model_holders": 1, "protocols": SENSITIVITY_PROTOCOLS, "unrelated_images": 1,
        })
        results = run_poisoning_experiment(experiment, np.random.default_rng(seed))
        for fraction in fractions:
            row = {"forwarded_weight": forwarded, "deterministic_weight": deterministic,
                   "variable_weight": round(1.0 - forwarded - deterministic, 12), "poison_fraction": fraction}
            for radius, name in ((0, "exact"), (31, "radius31")):
                row[f"per_copy_{name}"] = float(np.mean([p.rate() for p in results.pools[(radius, fraction)]]))
            pools = results.pools[(0, fraction)]
            for t, m in HOLDER_POINTS:
                for rho, model in ((0.0, "independent"), (1.0, "one_family")):
                    row[f"revealed_t{t}_m{m}_{model}"] = float(np.mean(
                        [holder_revealed_probability(p.shares(), p.rates(), m, t, 0.0, rho) for p in pools]))
            rows.append(row)
    return rows


def _holder_summary(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        if r["synthetic_probability"] != 0.0 or (r["threshold"], r["copies_held"]) not in HOLDER_POINTS:
            continue
        key = f"{100 * r['poison_fraction']:g}% t={r['threshold']} m={r['copies_held']} dedup={r['dedup']}"
        out.setdefault(key, {})[f"correlation {r['correlation']:g}"] = {
            "closed_form": r["revealed_closed_form"], "simulated": r["revealed_simulated"],
            "standard_error": r["simulated_standard_error"],
        }
    return out


def reproduce(out_dir: Path, *, quick: bool, seed: int) -> None:
    out_dir = Path(out_dir)
    experiment = PoisoningExperiment(**(QUICK if quick else FULL))
    results = run_poisoning_experiment(experiment, np.random.default_rng(seed))
    write_csv(out_dir / "per_copy.csv", results.per_copy)
    write_csv(out_dir / "detection.csv", results.detection)
    write_csv(out_dir / "protocol_runs.csv", results.protocol_runs)
    write_csv(out_dir / "holders.csv", results.holders)
    write_csv(out_dir / "edit_mix_sensitivity.csv", _sensitivity(QUICK if quick else FULL, seed))
    save_figure(_per_copy_figure(results.per_copy), out_dir, "per_copy_detection")
    save_figure(_account_figure(results.detection), out_dir, "account_detection")
    save_figure(_holder_figure(results.holders, 0.05), out_dir, "holder_models")
    # Its own stream, so the views do not reuse the draws of the circulating-image experiment.
    views = run_viewpoint_surveillance(ViewpointExperiment(**(VIEWS_QUICK if quick else VIEWS_FULL)),
                                       np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))))
    write_csv(out_dir / "viewpoint_surveillance.csv", views)
    save_figure(_viewpoint_figure(views), out_dir, "viewpoint_surveillance")

    def per_copy(radius: int, fraction: float) -> float:
        return next(r["per_copy_detection_rate"] for r in results.per_copy
                    if r["radius"] == radius and r["poison_fraction"] == fraction and r["edit_family"] == "all")

    def surveillance(model: str, hasher: str, k: int) -> dict:
        return {str(r["radius"]): {"surveillance_rate": r["surveillance_rate"],
                                   "innocent_false_match_rate": r["innocent_false_match_rate"]}
                for r in views if r["view_model"] == model and r["hasher"] == hasher and r["entries_per_target"] == k}

    write_json(out_dir / "summary.json", {
        "paper": "hooda-poisoning",
        "mode": "quick" if quick else "full",
        "seed": seed,
        "experiment": {k: v for k, v in (QUICK if quick else FULL).items()},
        "database_size": experiment.database_size,
        "paper_points": [{"claim": t, "poison_fraction": f, "surveillance_rate_above": r,
                          "definition": "[NF]: not read; not the same quantity as either of ours"}
                         for t, f, r in PAPER_POINTS],
        "ours_per_copy_detection_of_one_circulating_image": {
            f"{100 * f:g}%": {"exact": per_copy(0, f), "radius 31": per_copy(31, f)} for _, f, _ in PAPER_POINTS
        },
        "ours_viewpoint_surveillance": {
            "experiment": VIEWS_QUICK if quick else VIEWS_FULL,
            "replicate_unit": "scene (intervals from the between-scene variance)",
            "by_view_model_hasher_entries_radius": {
                f"{m} / {h} / {k} entries": surveillance(m, h, k)
                for m in dict.fromkeys(r["view_model"] for r in views)
                for h in dict.fromkeys(r["hasher"] for r in views)
                for k in sorted({r["entries_per_target"] for r in views})
            },
        },
        "holder_models_at_readme_points": _holder_summary(results.holders),
        "holder_model_simulation_agrees_with_closed_form": all(r["agrees"] for r in results.holders if r["dedup"] == "none"),
        "protocol_runs_agree_with_model": all(r["revealed_agrees"] and r["opened_test_agrees"] is not False
                                              for r in results.protocol_runs),
        "protocol_runs_agreement_checks": "the protocol implementation against the model, not the model",
        "protocol_runs": len(results.protocol_runs),
    })
