"""Hamming-distance distributions of perceptual hashes: transformed copies vs unrelated images.

Runs the ``e2escan hash-eval`` computation on a seeded synthetic corpus with
every built-in hasher (aHash, dHash, pHash, wHash and colorhash via imagehash;
PDQ via pdqhash; the block-mean-value hash) and writes its tables, figures and
summary, plus
``reference_thresholds.csv``: what PDQ's recommended match threshold (<= 31,
ThreatExchange pdq/README.md) means on this corpus, and
``extrapolation_check.csv``: thresholds extrapolated by both tail models
(exponential, the default, and normal) from small random subsamples of the
unrelated pairs, against those measured on all of them.

McKeown & Buchanan's summary shape (``summary_shape.csv``): per corpus and
hash, the normalised distance between unrelated images (inter-image) and
between each image and its variant (intra-image, per transform): mean, sd and
percentiles. PDQ hashes of quality <= 49 are discarded before any PDQ distance
is computed, as ThreatExchange's pdq/README.md advises; ``pdq_quality.csv``
counts them per corpus and image set.

Quick mode: 120 images, the ``quick`` transform set, one process (a few
seconds). Full mode: 2,000 images (1,999,000 unrelated pairs, so an FPR of
1e-6 is measurable), the ``default`` transform set, every core; results do
not depend on the number of processes. Full mode also runs the photographs
bundled with scikit-image (``e2escan.images.SKIMAGE_PHOTOS``; the optional
``photos`` extra) and writes their hash-eval outputs into ``photos/``; it
stops at once with one line naming the extra if scikit-image is missing.
"""

from __future__ import annotations

import dataclasses
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
from e2escan.hashing.evaluation import (
    ALL_TRANSFORMS,
    HasherEvaluation,
    HashEvalResult,
    evaluate_hashers,
)
from e2escan.images import open_corpus, parse_transform_set
from e2escan.results import write_csv

HASHERS = "ahash,dhash,phash,whash,pdq,colorhash,blockmean"
PDQ_MIN_QUALITY = 50  # ThreatExchange pdq/README.md: discard hashes of quality <= 49
PHOTOS = "skimage"  # the photographs bundled with scikit-image (full mode only)
# McKeown & Buchanan's variants that we could identify, by the first step of our transform chains.
MCKEOWN_VARIANTS = {"flip": "mirrored", "crop": "cropped"}
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
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


def _percentiles(counts: np.ndarray) -> list[int]:
    """Distances at :data:`PERCENTILES` of a histogram: the smallest ``d`` with ``F(d) >= p`` (inverted CDF)."""
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    return [int(np.searchsorted(cumulative * 100, p * n, side="left")) for p in PERCENTILES]


def _shape_row(corpus: str, ev: HasherEvaluation, comparison: str, variant: str, counts: np.ndarray) -> dict:
    """One row of ``summary_shape.csv``: distances of one pair set, normalised by the hash length."""
    n = int(counts.sum())
    values = np.arange(counts.size)
    row = {"corpus": corpus, "hasher": ev.hasher.spec, "bits": ev.bits, "comparison": comparison,
           "variant": variant, "mckeown_variant": MCKEOWN_VARIANTS.get(variant.split(":")[0].split("|")[0], ""),
           "pairs": n}  # fmt: skip
    if n == 0:  # every pair discarded by the quality filter
        return {**row, "mean": "", "sd": "", **{f"p{p}": "" for p in PERCENTILES}, "min": "", "max": ""}
    mean = float((values * counts).sum() / n)
    sd = float(np.sqrt(((values - mean) ** 2 * counts).sum() / max(1, n - 1)))
    nonzero = np.flatnonzero(counts)
    return {
        **row, "mean": round(mean / ev.bits, 6), "sd": round(sd / ev.bits, 6),
        **{f"p{p}": round(d / ev.bits, 6) for p, d in zip(PERCENTILES, _percentiles(counts))},
        "min": round(int(nonzero[0]) / ev.bits, 6), "max": round(int(nonzero[-1]) / ev.bits, 6),
    }  # fmt: skip


def _summary_shape_rows(label: str, result: HashEvalResult) -> list[dict]:
    """McKeown & Buchanan's summary shape: inter-image distances per hash, intra-image distances per variant."""
    rows = []
    for ev in result.per_hasher:
        rows.append(_shape_row(label, ev, "inter-image", "-", ev.unrelated_counts))
        rows += [_shape_row(label, ev, "intra-image", t.spec, ev.matched_counts(t.spec)) for t in result.transforms]
    return rows


def _quality_rows(label: str, result: HashEvalResult) -> list[dict]:
    """Per image set, how many PDQ hashes the quality filter discarded."""
    rows = []
    for ev in result.per_hasher:
        for image_set, discarded in ev.discarded.items():
            rows.append({"corpus": label, "hasher": ev.hasher.spec, "min_quality": ev.min_quality,
                         "image_set": image_set, "images": result.n_images, "discarded": discarded,
                         "share_discarded": round(discarded / result.n_images, 6)})  # fmt: skip
    return rows


def _evaluate(corpus_spec: str, quick: bool, seed: int) -> tuple[HashEvalResult, dict]:
    mode = QUICK if quick else FULL
    corpus = open_corpus(corpus_spec, seed=seed, size=IMAGE_SIZE)
    hashers = parse_hasher_specs(HASHERS)
    chains = parse_transform_set(mode["transforms"])
    result = evaluate_hashers(corpus, hashers, chains, seed=seed, workers=1 if quick else os.cpu_count() or 1,
                              min_quality=PDQ_MIN_QUALITY)  # fmt: skip
    note = f"PDQ hashes of quality below {PDQ_MIN_QUALITY} (<= {PDQ_MIN_QUALITY - 1}) discarded, per ThreatExchange pdq/README.md"
    result = dataclasses.replace(result, extra={**result.extra, "quality_filter": note})
    config = {"mode": "quick" if quick else "full", "corpus": corpus.spec, "image_size": list(IMAGE_SIZE),
              "hashers": [h.spec for h in hashers], "transforms": [c.spec for c in chains],
              "pdq_min_quality": PDQ_MIN_QUALITY}  # fmt: skip
    return result, config


def reproduce(out_dir: Path, *, quick: bool, seed: int = 0) -> None:
    started = time.perf_counter()
    out_dir = Path(out_dir)
    mode = QUICK if quick else FULL
    if not quick:
        open_corpus(PHOTOS)  # fail now, not after the synthetic run, when scikit-image is missing
    result, config = _evaluate(f"synthetic:{mode['images']}", quick, seed)
    results = [("synthetic", result)]
    write_csv(out_dir / "reference_thresholds.csv", _reference_rows(result))
    write_csv(out_dir / "extrapolation_check.csv", _extrapolation_rows(result, mode["fit_fraction"], mode["subsamples"], seed))
    command = "papers/hamming-distributions/reproduce.py"
    write_hash_eval(result, out_dir, command=command, started=started, config=config)
    if not quick:
        photos, photo_config = _evaluate(PHOTOS, quick, seed)
        write_hash_eval(photos, out_dir / "photos", command=command, started=started, config=photo_config)
        results.append(("photos", photos))
    write_csv(out_dir / "summary_shape.csv", [row for label, r in results for row in _summary_shape_rows(label, r)])
    write_csv(out_dir / "pdq_quality.csv", [row for label, r in results for row in _quality_rows(label, r)])
