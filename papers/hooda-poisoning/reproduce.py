"""Database poisoning for surveillance: detection of a target image against the fraction of the database poisoned.

Hooda, Labunets, Kohno, Fernandes (arXiv:2212.04107) poison a perceptual-hash
database with hashes of a target and measure how often the target is then
detected. We run the same measurement on our protocols with
:func:`e2escan.attacks.poisoning.run_poisoning_experiment`: synthetic target
images circulate as copies made by everyday edits; the adversary spends a
fraction of a 1,000-entry database on hashes of its own copies; we measure the
share of victims' copies that match (PDQ, exact or within distance 31), then
what an account holding copies reveals under each protocol, computed directly
and, at the fractions of the paper's two headline numbers (quick mode: 5%
only), measured by running the real protocol code on accounts.

Quick mode: 2 targets, 100 + 100 copies each, 5 holders and 5 non-holders per
target and protocol. Full mode: 12 targets, 300 + 300 copies each, 15 + 15
accounts per target and protocol, protocol runs at 0.2% and 5%.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from e2escan.attacks.poisoning import PoisoningExperiment, run_poisoning_experiment
from e2escan.results import save_figure, write_csv, write_json

QUICK = {"targets": 2, "attacker_copies": 100, "victim_copies": 100, "unrelated_images": 60, "run_accounts": 5,
         "run_fractions": (0.05,)}
FULL = {"targets": 12, "attacker_copies": 300, "victim_copies": 300, "unrelated_images": 400, "run_accounts": 15,
        "run_fractions": (0.002, 0.05)}
# The paper's headline numbers (abstracts): arXiv v1 (2022) and the NDSS 2024 version.
PAPER_POINTS = (
    ("arXiv:2212.04107 abstract: >40% at 5% poisoned", 0.05, 0.40),
    ("NDSS 2024 abstract: >30% at 0.2% poisoned", 0.002, 0.30),
)
FIGURE_COPIES = 3


def _per_copy_figure(rows: list[dict]) -> Figure:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for radius, style in ((31, "-o"), (0, "-s")):
        pts = sorted((r["poison_fraction"], r["per_copy_detection"]) for r in rows
                     if r["radius"] == radius and r["edit_family"] == "all" and r["poison_fraction"] > 0)
        label = "PDQ within distance 31 (plaintext)" if radius else "exact PDQ (psi-exact, tpsi-ad)"
        ax.plot([100 * f for f, _ in pts], [q for _, q in pts], style, label=label)
    for text, fraction, rate in PAPER_POINTS:
        ax.plot([100 * fraction], [rate], "k^", markersize=8)
        ax.annotate(text, (100 * fraction, rate), textcoords="offset points", xytext=(5, -12), fontsize=7)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("database poisoned (%, log scale; 1,000 entries)")
    ax.set_ylabel("share of the target's copies detected")
    ax.set_title("Per-copy detection of a poisoned target (mean over targets)")
    ax.legend(fontsize=8, loc="lower right")
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


def reproduce(out_dir: Path, *, quick: bool, seed: int) -> None:
    out_dir = Path(out_dir)
    experiment = PoisoningExperiment(**(QUICK if quick else FULL))
    results = run_poisoning_experiment(experiment, np.random.default_rng(seed))
    write_csv(out_dir / "per_copy.csv", results.per_copy)
    write_csv(out_dir / "detection.csv", results.detection)
    write_csv(out_dir / "protocol_runs.csv", results.protocol_runs)
    save_figure(_per_copy_figure(results.per_copy), out_dir, "per_copy_detection")
    save_figure(_account_figure(results.detection), out_dir, "account_detection")

    def per_copy(radius: int, fraction: float) -> float:
        return next(r["per_copy_detection"] for r in results.per_copy
                    if r["radius"] == radius and r["poison_fraction"] == fraction and r["edit_family"] == "all")

    write_json(out_dir / "summary.json", {
        "paper": "hooda-poisoning",
        "mode": "quick" if quick else "full",
        "seed": seed,
        "experiment": {k: v for k, v in (QUICK if quick else FULL).items()},
        "database_size": experiment.database_size,
        "paper_points": [{"claim": t, "poison_fraction": f, "detection_at_least": r} for t, f, r in PAPER_POINTS],
        "ours_per_copy_detection": {
            f"{100 * f:g}%": {"exact": per_copy(0, f), "radius 31": per_copy(31, f)} for _, f, _ in PAPER_POINTS
        },
        "protocol_runs_agree_with_direct": all(r["revealed_agrees"] and r["opened_test_agrees"] for r in results.protocol_runs),
        "protocol_runs": len(results.protocol_runs),
    })
