"""How well perceptual hashes separate copies from unrelated images (``e2escan hash-eval``).

For every image of a corpus and every transformation chain, the image and its
transformed copy are hashed by every hasher. That gives, per hasher:

* the Hamming-distance distribution of (image, transformed copy) pairs, per
  transformation: the *true positives* a matcher should catch;
* the distribution over *unrelated* pairs (two different originals; every
  pair, or a seeded uniform sample when there are more than
  ``max_unrelated_pairs``): the false positives it should not flag;
* TPR and FPR at every threshold, and the thresholds that meet target FPRs,
  measured (:func:`~e2escan.hashing.thresholds.empirical_threshold`) and
  extrapolated with lower-tail fits (:class:`~e2escan.hashing.thresholds.TailFit`): the
  conservative exponential model, and the normal model as a central estimate.

Randomness: transformation ``t`` of image ``i`` draws from
``default_rng([seed, 1, i, t])``; unrelated-pair sampling from
``default_rng([seed, 2])``. Results depend only on the corpus, the hashers,
the transformations and the seed, never on ``workers``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, ImageError
from ..images.corpus import Corpus, SkippedFile
from ..images.transforms import TransformChain
from ._parallel import imap_ordered, resolve_workers
from ._popcount import popcount_rows
from .hashers import Hasher
from .thresholds import TailFit, empirical_threshold, fit_lower_tail

#: FPR targets reported by default: two that a large sample can measure, and
#: extrapolations to the scale of a messaging platform (billions of images a day).
DEFAULT_TARGET_FPRS: tuple[float, ...] = (1e-3, 1e-6, 1e-9, 1e-12)

ALL_TRANSFORMS = "all"  # label of the pooled (all transformations) true-positive distribution


@dataclass(frozen=True)
class HasherEvaluation:
    """Distances measured for one hasher."""

    hasher: Hasher
    matched: dict[str, np.ndarray]  # transform spec -> distance of each image to its copy
    unrelated_counts: np.ndarray  # histogram over 0..bits
    fit: TailFit  # the default (conservative, exponential) tail model
    fit_normal: TailFit  # the normal tail model: a central estimate, permissive for heavy tails
    min_quality: int | None = None  # hashes with a quality score below this were discarded (None: no filter)
    # image set ("original" or a transform spec) -> hashes discarded for low quality (empty: no filter applied)
    discarded: dict[str, int] = field(default_factory=dict)

    @property
    def bits(self) -> int:
        return self.hasher.bits

    @property
    def n_unrelated(self) -> int:
        return int(self.unrelated_counts.sum())

    def matched_counts(self, transform: str) -> np.ndarray:
        d = self.pooled_matched() if transform == ALL_TRANSFORMS else self.matched[transform]
        return np.bincount(d, minlength=self.bits + 1)

    def pooled_matched(self) -> np.ndarray:
        return np.concatenate(list(self.matched.values())) if self.matched else np.empty(0, dtype=np.int64)

    def fpr_curve(self) -> np.ndarray:
        """Empirical FPR at thresholds ``0..bits``."""
        return np.cumsum(self.unrelated_counts) / max(1, self.n_unrelated)

    def tpr_curve(self, transform: str) -> np.ndarray:
        """Empirical TPR at thresholds ``0..bits`` for one transform (or ``"all"``)."""
        counts = self.matched_counts(transform)
        return np.cumsum(counts) / max(1, int(counts.sum()))

    def unrelated_stats(self) -> dict[str, float]:
        values = np.arange(self.bits + 1)
        n = self.n_unrelated
        mean = float((values * self.unrelated_counts).sum() / n)
        var = float(((values - mean) ** 2 * self.unrelated_counts).sum() / max(1, n - 1))
        nonzero = np.flatnonzero(self.unrelated_counts)
        return {
            "pairs": n,
            "mean": mean,
            "sd": math.sqrt(var),
            "min": int(nonzero[0]),
            "max": int(nonzero[-1]),
            "binomial_mean": self.bits / 2,
            "binomial_sd": math.sqrt(self.bits) / 2,
        }


@dataclass(frozen=True)
class HashEvalResult:
    """Everything ``hash-eval`` measured; see :func:`evaluate_hashers`."""

    corpus: str
    n_images: int
    skipped: list[SkippedFile]
    transforms: list[TransformChain]
    seed: int
    per_hasher: list[HasherEvaluation]
    target_fprs: tuple[float, ...] = DEFAULT_TARGET_FPRS
    pairs_sampled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    # -- tidy tables -----------------------------------------------------------------------

    def distance_rows(self) -> list[dict[str, Any]]:
        """``distances.csv``: histogram rows (only non-zero counts) per hasher and pair kind."""
        rows = []
        for ev in self.per_hasher:
            groups = [("unrelated", "-", ev.unrelated_counts)]
            groups += [("transformed", t.spec, ev.matched_counts(t.spec)) for t in self.transforms]
            for kind, transform, counts in groups:
                total = int(counts.sum())
                for d in np.flatnonzero(counts):
                    rows.append({
                        "hasher": ev.hasher.spec, "bits": ev.bits, "pairs": kind, "transform": transform,
                        "distance": int(d), "count": int(counts[d]), "fraction": round(counts[d] / total, 8),
                    })  # fmt: skip
        return rows

    def roc_rows(self) -> list[dict[str, Any]]:
        """``roc.csv``: TPR (per transform and pooled) and FPR at every threshold 0..bits."""
        rows = []
        for ev in self.per_hasher:
            fpr = ev.fpr_curve()
            for transform in [ALL_TRANSFORMS] + [t.spec for t in self.transforms]:
                tpr = ev.tpr_curve(transform)
                for t in range(ev.bits + 1):
                    rows.append({
                        "hasher": ev.hasher.spec, "bits": ev.bits, "transform": transform, "threshold": t,
                        "tpr": round(float(tpr[t]), 8), "fpr": round(float(fpr[t]), 10),
                    })  # fmt: skip
        return rows

    def threshold_rows(self) -> list[dict[str, Any]]:
        """``thresholds.csv``: threshold per target FPR (measured and tail-fit) and the TPR it gives."""
        rows = []
        for ev in self.per_hasher:
            fpr = ev.fpr_curve()
            for target in self.target_fprs:
                for method, t in (("empirical", empirical_threshold(ev.unrelated_counts, target)),
                                  ("tail-fit", ev.fit.threshold(target)),
                                  ("tail-fit-normal", ev.fit_normal.threshold(target))):
                    for transform in [ALL_TRANSFORMS] + [c.spec for c in self.transforms]:
                        tpr = ev.tpr_curve(transform)
                        rows.append({
                            "hasher": ev.hasher.spec, "bits": ev.bits, "target_fpr": target, "method": method,
                            "threshold": "" if t is None else t, "transform": transform,
                            "tpr": "" if t is None else (0.0 if t < 0 else round(float(tpr[t]), 6)),
                            "measured_fpr": "" if t is None else (0.0 if t < 0 else round(float(fpr[t]), 10)),
                        })  # fmt: skip
        return rows

    def unrelated_rows(self) -> list[dict[str, Any]]:
        """``unrelated.csv``: per hasher, the unrelated-pair distance statistics and the tail fit."""
        rows = []
        for ev in self.per_hasher:
            st = ev.unrelated_stats()
            rows.append({
                "hasher": ev.hasher.spec, "bits": ev.bits, "pairs": st["pairs"],
                "mean": round(st["mean"], 4), "sd": round(st["sd"], 4),
                "mean_over_bits": round(st["mean"] / ev.bits, 5), "sd_over_binomial_sd": round(st["sd"] / st["binomial_sd"], 4),
                "min": st["min"], "fit_model": ev.fit.model, "fit_method": ev.fit.method, "fit_points": ev.fit.points,
                "fit_bits_per_decade": "" if ev.fit.bits_per_decade is None else round(ev.fit.bits_per_decade, 4),
                "normal_fit_method": ev.fit_normal.method, "normal_fit_mean": round(ev.fit_normal.mean, 4),
                "normal_fit_sd": round(ev.fit_normal.sd, 4),
            })  # fmt: skip
        return rows

    def table(self, target_fpr: float = 1e-6) -> tuple[list[str], list[list[Any]]]:
        """Headers and rows of the short end-of-run table (one row per hasher)."""
        headers = ["hasher", "bits", "unrelated mean+-sd", f"t@{target_fpr:g} (fit)", "(normal fit)", "TPR all",
                   "weakest transform", "its TPR"]  # fmt: skip
        rows = []
        for ev in self.per_hasher:
            st = ev.unrelated_stats()
            t = ev.fit.threshold(target_fpr)
            t_normal = ev.fit_normal.threshold(target_fpr)
            tpr_all = float(ev.tpr_curve(ALL_TRANSFORMS)[t]) if t >= 0 else 0.0
            per = {c.spec: (float(ev.tpr_curve(c.spec)[t]) if t >= 0 else 0.0) for c in self.transforms}
            weakest = min(per, key=per.__getitem__) if per else "-"
            rows.append([
                ev.hasher.spec, ev.bits, f"{st['mean']:.1f} +- {st['sd']:.1f}", t if t >= 0 else "none",
                t_normal if t_normal >= 0 else "none", round(tpr_all, 3),
                weakest, round(per.get(weakest, 0.0), 3),
            ])  # fmt: skip
        return headers, rows

    def notes(self, target_fpr: float = 1e-6, min_pairs: int = 100) -> list[str]:
        """Plain-language notes for the table: what "none" means, and thresholds resting on few pairs."""
        out = []
        for ev in self.per_hasher:
            t = ev.fit.threshold(target_fpr)
            if t < 0:
                out.append(f"{ev.hasher.spec}: 'none' = even an exact match (distance 0) has a fitted false-positive "
                           f"rate above {target_fpr:g}, so no threshold meets it")
                continue
            support = int(ev.unrelated_counts[: t + 1].sum())
            if support < min_pairs:
                out.append(f"{ev.hasher.spec}: warning: t = {t} rests on {support} unrelated pair(s) at or below it "
                           f"(fewer than {min_pairs}); the threshold is an extrapolation of the tail fit, not a "
                           "measurement: use more images (--max-unrelated-pairs, a larger corpus)")
        return out

    def summary(self) -> dict[str, Any]:
        hashers = []
        for ev in self.per_hasher:
            pooled = ev.pooled_matched()
            per_transform = {
                t.spec: {
                    "mean": float(ev.matched[t.spec].mean()) if ev.matched[t.spec].size else None,
                    "median": float(np.median(ev.matched[t.spec])) if ev.matched[t.spec].size else None,
                    "p95": float(np.percentile(ev.matched[t.spec], 95)) if ev.matched[t.spec].size else None,
                }
                for t in self.transforms
            }
            thresholds = {}
            for target in self.target_fprs:
                emp = empirical_threshold(ev.unrelated_counts, target)
                fit = ev.fit.threshold(target)
                normal = ev.fit_normal.threshold(target)
                tpr = ev.tpr_curve(ALL_TRANSFORMS)
                thresholds[f"{target:g}"] = {
                    "empirical": emp,
                    "tail_fit": fit,
                    "tpr_all_at_tail_fit": None if fit < 0 or not pooled.size else float(tpr[fit]),
                    "tail_fit_normal": normal,
                    "tpr_all_at_tail_fit_normal": None if normal < 0 or not pooled.size else float(tpr[normal]),
                }
            hashers.append({
                "spec": ev.hasher.spec, "name": ev.hasher.name, "params": ev.hasher.params(), "bits": ev.bits,
                "unrelated": ev.unrelated_stats(),
                "tail_fit": ev.fit.describe(),
                "tail_fit_normal": ev.fit_normal.describe(),
                "transformed": per_transform,
                "thresholds": thresholds,
                **({"quality_filter": {"min_quality": ev.min_quality, "discarded": dict(ev.discarded)}}
                   if ev.discarded else {}),
            })  # fmt: skip
        return {
            "corpus": self.corpus,
            "images": self.n_images,
            "skipped": [{"name": s.name, "reason": s.reason} for s in self.skipped],
            "transforms": [
                {"spec": t.spec, "steps": [{"name": s.name, "params": dict(s.params)} for s in t.steps]}
                for t in self.transforms
            ],
            "seed": self.seed,
            "unrelated_pairs_sampled": self.pairs_sampled,
            "target_fprs": list(self.target_fprs),
            "fpr_extrapolation": (
                "tail_fit: exponential model, log F(t) linear in t + 0.5, fitted by weighted least squares to the "
                "empirical CDF of unrelated-pair distances over its lower tail (F <= 0.01, widened to 0.03 or 0.1 if "
                "fewer than 6 points; >= 10 pairs); conservative (over-states the FPR) for every log-concave "
                "distance distribution. tail_fit_normal: a normal model fitted to the probit of the same points, a "
                "central estimate that is permissive when the tail is heavier than normal. See "
                "e2escan.hashing.thresholds"
            ),
            "hashers": hashers,
            **self.extra,
        }


# -- computation -------------------------------------------------------------------------------


def transform_rng(seed: int, image_index: int, transform_index: int) -> np.random.Generator:
    """Generator for transformation ``transform_index`` of image ``image_index``."""
    return np.random.default_rng([seed, 1, image_index, transform_index])


_NO_QUALITY = -1  # quality recorded for hashers that have no quality score


#: One image's worker result: its index, per hasher ``(packed hashes, quality scores)`` or ``None``, and the
#: load error or ``None``.
_ImageHashes = tuple[int, list[tuple[np.ndarray, np.ndarray]] | None, str | None]


def _hash_images(
    corpus: Corpus, hashers: Sequence[Hasher], chains: Sequence[TransformChain], seed: int, indices: Sequence[int]
) -> list[_ImageHashes]:
    """Worker: for each image index and hasher, the packed hashes ``(1 + len(chains), bits // 8)`` and their
    quality scores ``(1 + len(chains),)`` (``-1`` where the hasher has none), or the load error."""
    out: list[_ImageHashes] = []
    for i in indices:
        try:
            original = corpus.load(i)
        except ImageError as exc:
            out.append((i, None, str(exc)))
            continue
        images = [original] + [c.apply(original, transform_rng(seed, i, t)).image for t, c in enumerate(chains)]
        hashes = []
        for h in hashers:
            pairs = [h.hash_packed_with_quality(im) for im in images]
            quality = np.array([_NO_QUALITY if q is None else q for _, q in pairs], dtype=np.int64)
            hashes.append((np.stack([packed for packed, _ in pairs]), quality))
        out.append((i, hashes, None))
    return out


def _pair_distances(data: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    out = np.empty(first.size, dtype=np.int64)
    step = 1 << 18
    for lo in range(0, first.size, step):
        hi = min(first.size, lo + step)
        out[lo:hi] = popcount_rows(np.bitwise_xor(data[first[lo:hi]], data[second[lo:hi]]))
    return out


def unrelated_pairs(n: int, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
    """Every pair ``i < j`` of ``n`` items, or ``max_pairs`` pairs drawn uniformly (with replacement) if more."""
    total = n * (n - 1) // 2
    if total <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        return i.astype(np.int64), j.astype(np.int64), False
    first = rng.integers(0, n, size=max_pairs)
    second = rng.integers(0, n - 1, size=max_pairs)
    second += second >= first  # uniform over j != i
    return first, second, True


def evaluate_hashers(
    corpus: Corpus,
    hashers: Sequence[Hasher],
    chains: Sequence[TransformChain],
    *,
    seed: int = 0,
    workers: int | None = 1,
    max_unrelated_pairs: int = 2_000_000,
    target_fprs: Sequence[float] = DEFAULT_TARGET_FPRS,
    progress: bool | None = False,
    chunksize: int = 8,
    min_quality: int | None = None,
) -> HashEvalResult:
    """Hash every image and its transformed copies and measure the distance distributions.

    Unreadable corpus files are skipped and listed in ``result.skipped``.
    ``min_quality``: for hashers with a quality score (PDQ's 0..100), hashes
    scoring below it are discarded before any distance is computed: an
    (original, copy) pair counts only if both hashes pass, an unrelated pair
    only if both originals pass. PDQ's documentation discards quality <= 49,
    i.e. ``min_quality=50``. The counts discarded are in each
    :class:`HasherEvaluation`'s ``discarded``. Hashers without a score are
    never filtered; ``None`` (the default) filters nothing.
    ``progress``: ``True`` shows a tqdm bar on stderr, ``None`` only when
    stderr is a terminal, ``False`` never.
    Raises :class:`ConfigError` when fewer than two images remain.
    """
    if not hashers:
        raise ConfigError("hash evaluation needs at least one hasher")
    if max_unrelated_pairs < 1:
        raise ConfigError(f"max_unrelated_pairs must be >= 1, got {max_unrelated_pairs}")
    if min_quality is not None and (isinstance(min_quality, bool) or not isinstance(min_quality, int)):
        raise ConfigError(f"min_quality must be an int or None, got {min_quality!r}")
    for what, labels in (("hasher", [h.spec for h in hashers]), ("transform", [c.spec for c in chains])):
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ConfigError(f"{what} {', '.join(dupes)} listed more than once; each label must be unique")
    n_workers = resolve_workers(workers)
    n = len(corpus)
    if n_workers > 1:  # enough tasks to keep every worker busy on small corpora
        chunksize = max(1, min(chunksize, n // (2 * n_workers)))
    tasks = ((corpus, list(hashers), list(chains), seed, list(range(lo, min(n, lo + chunksize))))
             for lo in range(0, n, chunksize))  # fmt: skip
    per_hasher: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in hashers]
    skipped: list[SkippedFile] = []
    bar = _progress_bar(n, progress)
    try:
        for chunk in imap_ordered(_hash_images, tasks, n_workers):
            for i, hashes, error in chunk:
                if hashes is None:
                    skipped.append(SkippedFile(corpus.name(i), error or "unreadable"))
                else:
                    for h, arr in enumerate(hashes):
                        per_hasher[h].append(arr)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    kept = len(per_hasher[0])
    if kept < 2:
        raise ConfigError(
            f"corpus {corpus.spec!r} yielded {kept} usable image(s) ({len(skipped)} skipped); at least 2 are needed"
        )
    rng = np.random.default_rng([seed, 2])
    first, second, sampled = unrelated_pairs(kept, max_unrelated_pairs, rng)
    evaluations = []
    for hasher, stacks in zip(hashers, per_hasher):
        all_hashes = np.stack([packed for packed, _ in stacks])  # (images, 1 + transforms, bytes)
        quality = np.stack([q for _, q in stacks])  # (images, 1 + transforms)
        scored = quality != _NO_QUALITY
        usable = ~scored | (quality >= min_quality) if min_quality is not None else np.ones_like(scored)
        discarded = {}
        if min_quality is not None and scored.any():
            labels = ["original"] + [c.spec for c in chains]
            discarded = {label: int((~usable[:, k]).sum()) for k, label in enumerate(labels)}
        originals = np.ascontiguousarray(all_hashes[:, 0])
        matched = {}
        for t, chain in enumerate(chains):
            copies = np.ascontiguousarray(all_hashes[:, t + 1])
            keep = usable[:, 0] & usable[:, t + 1]
            matched[chain.spec] = popcount_rows(np.bitwise_xor(originals[keep], copies[keep]))
        pair_kept = usable[first, 0] & usable[second, 0]
        if not pair_kept.any():
            raise ConfigError(
                f"{hasher.spec}: no unrelated pair left after discarding hashes of quality below {min_quality} "
                f"({discarded.get('original', 0)} of {kept} originals discarded); lower min_quality or use other images"
            )
        distances = _pair_distances(originals, first[pair_kept], second[pair_kept])
        unrelated = np.bincount(distances, minlength=hasher.bits + 1)
        fits = (fit_lower_tail(unrelated, model="exponential"), fit_lower_tail(unrelated, model="normal"))
        evaluations.append(HasherEvaluation(hasher, matched, unrelated, *fits, min_quality=min_quality,
                                            discarded=discarded))  # fmt: skip
    return HashEvalResult(
        corpus=corpus.spec, n_images=kept, skipped=skipped, transforms=list(chains), seed=seed,
        per_hasher=evaluations, target_fprs=tuple(target_fprs), pairs_sampled=sampled,
    )  # fmt: skip


def _progress_bar(total: int, enabled: bool | None) -> Any:
    if enabled is False:
        return None
    if enabled is None:  # a bar on a terminal, a line every few seconds in a log
        from ..progress import progress_bar

        return progress_bar(total, "hashing images", "images", leave=False)
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="hashing images", file=sys.stderr, mininterval=0.5, leave=False)
