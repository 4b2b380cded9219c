"""Hamming-distance distributions of perceptual hashes: transformed copies vs unrelated images.

Runs the ``e2escan hash-eval`` computation on a seeded synthetic corpus with
every built-in hasher (aHash, dHash, pHash, wHash via imagehash; PDQ via
pdqhash) and writes its tables, figures and summary, plus
``reference_thresholds.csv``: what PDQ's recommended match threshold (<= 31,
ThreatExchange pdq/README.md) means on this corpus, and
``extrapolation_check.csv``: thresholds extrapolated from a small random
subsample of the unrelated pairs against those measured on all of them.

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

from e2escan.hashing import empirical_threshold, fit_lower_tail, parse_hasher_specs
from e2escan.hashing.eval_report import write_hash_eval
from e2escan.hashing.evaluation import ALL_TRANSFORMS, HashEvalResult, evaluate_hashers
from e2escan.images import open_corpus, parse_transform_set
from e2escan.results import write_csv

HASHERS = "ahash,dhash,phash,whash,pdq"
IMAGE_SIZE = (256, 256)
QUICK = {"images": 120, "transforms": "quick", "fit_fraction": 0.1}
FULL = {"images": 2000, "transforms": "default", "fit_fraction": 0.01}
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


def _extrapolation_rows(result: HashEvalResult, fraction: float, seed: int) -> list[dict]:
    """Fit the tail on a random ``fraction`` of the unrelated pairs; compare with thresholds measured on all of them.

    This tests the extrapolation on the data at hand: the subsample cannot
    measure the small targets, the full sample can.
    """
    rng = np.random.default_rng([seed, 3])
    rows = []
    for ev in result.per_hasher:
        n_sub = max(2, round(ev.n_unrelated * fraction))
        sub = rng.multivariate_hypergeometric(ev.unrelated_counts, n_sub)
        fit = fit_lower_tail(sub)
        fpr = ev.fpr_curve()
        for target in EXTRAPOLATION_TARGETS:
            measured = empirical_threshold(ev.unrelated_counts, target)
            predicted = fit.threshold(target)
            rows.append({
                "hasher": ev.hasher.spec, "target_fpr": target, "fit_pairs": n_sub, "all_pairs": ev.n_unrelated,
                "predicted_threshold": predicted, "measured_threshold": "" if measured is None else measured,
                "measured_fpr_at_predicted": 0.0 if predicted < 0 else float(fpr[predicted]),
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
    write_csv(out_dir / "extrapolation_check.csv", _extrapolation_rows(result, mode["fit_fraction"], seed))
    write_hash_eval(result, out_dir, command="papers/hamming-distributions/reproduce.py", started=started,
                    config=config)  # fmt: skip
