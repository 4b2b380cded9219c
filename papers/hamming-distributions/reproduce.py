"""Hamming-distance distributions of perceptual hashes: transformed copies vs unrelated images.

Runs the ``e2escan hash-eval`` computation on a seeded synthetic corpus with
every built-in hasher (aHash, dHash, pHash, wHash via imagehash; PDQ via
pdqhash) and writes its tables, figures and summary, plus
``reference_thresholds.csv``: what PDQ's recommended match threshold (<= 31,
ThreatExchange pdq/README.md) means on this corpus, and
``extrapolation_check.csv``: thresholds extrapolated by both tail models
(exponential, the default, and normal) from small random subsamples of the
unrelated pairs, against those measured on all of them.

Quick mode: 120 images, the ``quick`` transform set, one process (a few
seconds). Full mode: 2,000 images (1,999,000 unrelated pairs, so an FPR of
1e-6 is measurable), the ``default`` transform set, every core; results do
not depend on the number of processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from e2escan.hashing import (
    TAIL_MODELS,
    empirical_threshold,
    fit_lower_tail,
    parse_hasher_specs,
)
from e2escan.hashing.eval_report import write_hash_eval
from e2escan.hashing.evaluation import ALL_TRANSFORMS, HashEvalResult, evaluate_hashers
from e2escan.images import open_corpus, parse_transform_set
from e2escan.results import write_csv

HASHERS = "ahash,dhash,phash,whash,pdq"
IMAGE_SIZE = (256, 256)
QUICK = {"images": 120, "transforms": "quick", "fit_fraction": 0.1, "subsamples": 11}
FULL = {"images": 2000, "transforms": "default", "fit_fraction": 0.01, "subsamples": 25}
EXTRAPOLATION_TARGETS = (1e-3, 1e-4, 1e-5, 1e-6)
# Published starting points to compare with: PDQ's recommended match threshold.
REFERENCE_THRESHOLDS = (("pdq", 31, "ThreatExchange pdq/README.md: distance <= 31 is a match"),)


def _reference_rows(result: HashEvalResult) -> list[dict]:
    rows = []
    by_spec = {ev.hasher.spec: ev for ev in result.per_hasher}
    for spec, threshold, source in REFERENCE_THRESHOLDS:
        ev = by_spec[spec]
        fpr = ev.fpr_curve()[threshold]
        for transform in [ALL_TRANSFORMS] + [t.spec for t in result.transforms]:
            rows.append({
                "hasher": spec, "threshold": threshold, "transform": transform,
                "tpr": round(float(ev.tpr_curve(transform)[threshold]), 6),
                "measured_fpr": float(fpr), "unrelated_pairs": ev.n_unrelated,
                "tail_fit_fpr": float(f"{ev.fit.fpr(threshold):.4g}"), "source": source,
            })  # fmt: skip
    return rows


def _extrapolation_rows(result: HashEvalResult, fraction: float, subsamples: int, seed: int) -> list[dict]:
    """Fit both tail models on random ``fraction``s of the unrelated pairs; compare with thresholds measured on all.

    This tests the extrapolation on the data at hand: a subsample cannot
    measure the small targets, the full sample can. ``subsamples`` independent
    subsamples show the spread of each model's prediction; a prediction is
    *permissive* when it exceeds the threshold measured on all pairs (its true
    FPR is above the target).
    """
    rng = np.random.default_rng([seed, 3])
    rows = []
    for ev in result.per_hasher:
        n_sub = max(2, round(ev.n_unrelated * fraction))
        draws = [rng.multivariate_hypergeometric(ev.unrelated_counts, n_sub) for _ in range(subsamples)]
        fpr = ev.fpr_curve()
        for model in TAIL_MODELS:
            fits = [fit_lower_tail(sub, model=model) for sub in draws]
            for target in EXTRAPOLATION_TARGETS:
                measured = empirical_threshold(ev.unrelated_counts, target)
                predicted = sorted(fit.threshold(target) for fit in fits)
                worst = predicted[-1]
                rows.append({
                    "hasher": ev.hasher.spec, "target_fpr": target, "model": model, "fit_pairs": n_sub,
                    "all_pairs": ev.n_unrelated, "subsamples": subsamples,
                    "measured_threshold": "" if measured is None else measured,
                    "predicted_median": predicted[(len(predicted) - 1) // 2], "predicted_min": predicted[0],
                    "predicted_max": worst,
                    "share_permissive": "" if measured is None else sum(t > measured for t in predicted) / len(predicted),
                    "measured_fpr_at_max": 0.0 if worst < 0 else float(fpr[worst]),
                })  # fmt: skip
    return rows


def reproduce(out_dir: Path, *, quick: bool, seed: int = 0) -> None:
    started = time.perf_counter()
    out_dir = Path(out_dir)
    mode = QUICK if quick else FULL
    corpus = open_corpus(f"synthetic:{mode['images']}", seed=seed, size=IMAGE_SIZE)
    hashers = parse_hasher_specs(HASHERS)
    chains = parse_transform_set(mode["transforms"])
    result = evaluate_hashers(corpus, hashers, chains, seed=seed, workers=1 if quick else os.cpu_count() or 1)
    config = {"mode": "quick" if quick else "full", "corpus": corpus.spec, "image_size": list(IMAGE_SIZE),
              "hashers": [h.spec for h in hashers], "transforms": [c.spec for c in chains]}  # fmt: skip
    write_csv(out_dir / "reference_thresholds.csv", _reference_rows(result))
    write_csv(out_dir / "extrapolation_check.csv", _extrapolation_rows(result, mode["fit_fraction"], mode["subsamples"], seed))
    write_hash_eval(result, out_dir, command="papers/hamming-distributions/reproduce.py", started=started,
                    config=config)  # fmt: skip
