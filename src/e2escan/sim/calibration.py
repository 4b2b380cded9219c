"""Calibration of the statistical path from measured hash distances.

A calibration file records, for one hasher, image size and attachment
encoding, the Hamming distance distributions that decide every match:

* ``unrelated``: distances between hashes of unrelated images (all pairs of a
  corpus). ``collision_probability(r)`` is P(distance <= r) for one pair: the
  empirical CDF where at least ``MIN_TAIL_PAIRS`` pairs support it, and below
  that the lower-tail fit of :func:`e2escan.hashing.fit_lower_tail`, the same
  stated extrapolation as ``e2escan hash-eval``. ``tail_model = "normal"`` is
  a central estimate (tracks independent-bit hashes, but is permissive for
  tails heavier than normal: too high a threshold in 24-40% of samples in an
  outside audit); ``tail_model = "exponential"``
  gives an upper estimate instead (it over-states the FPR of any log-concave
  distance distribution, by many decades far below the data, in the
  infinite-sample limit); ``tail_model = "bound"`` (the scenario default) is
  the 95% upper confidence bound of that fit from a bootstrap over the
  calibration's images, which also covers the fit's sampling error.
* ``transforms``: for each transformation chain, distances between the hash of
  an original and of its transformed, encoded and decoded copy.
  ``recall(spec, r)`` is P(distance <= r), empirical.

The file is versioned JSON with its provenance (corpus, seed, package version,
git commit). The statistical path refuses a calibration whose hasher, image
size or encoding differs from the scenario's.
"""

from __future__ import annotations

import functools
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..config import from_dict, invalid, option, show
from ..errors import ScenarioError
from ..hashing import HashArray, TailFit, fit_lower_tail, get_hasher
from ..images import image_rng, synthetic_image
from ..results import provenance, write_json
from .content import chain_for, encode_attachment

CALIBRATION_VERSION = 1
MIN_TAIL_PAIRS = 10


def encode_decode(image: Image.Image, encoding: str) -> Image.Image:
    """The attachment round trip a device's image goes through before it is hashed."""
    return Image.open(io.BytesIO(encode_attachment(image, encoding)))


@functools.lru_cache(maxsize=32)
def _tail_fit(unrelated: tuple[int, ...], model: str) -> TailFit:
    return fit_lower_tail(np.asarray(unrelated, dtype=np.int64), model=model)


@functools.lru_cache(maxsize=16)
def _bootstrap(hashes: tuple[str, ...], radius: int, model: str, level: float, resamples: int,
               seed: int) -> tuple[float, float]:
    """``bootstrap_fpr_bound`` on a calibration's hashes (cached: the statistical path asks once per replicate)."""
    from ..hashing.thresholds import bootstrap_fpr_bound, pairwise_distances

    packed = np.stack([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes])
    return bootstrap_fpr_bound(pairwise_distances(packed), radius, model=model, level=level, resamples=resamples,
                               rng=np.random.default_rng(seed), min_tail_pairs=MIN_TAIL_PAIRS)


@functools.lru_cache(maxsize=64)
def _subset_match_probability(hashes: tuple[str, ...], radius: int, database_size: int) -> tuple[float, int]:
    """Exact average, over the corpus's images and random ``database_size``-subsets of the *other* images, of
    P(the image lies within ``radius`` of the subset); plus the number of pairs within ``radius``.

    With ``k_i`` other images within ``radius`` of image ``i`` and ``m = n - 1``
    others, a random subset of ``D`` misses all of them with probability
    ``C(m - k_i, D) / C(m, D)``. Averaging ``1 -`` that over ``i`` is an unbiased
    U-statistic that keeps the dependence between database entries (images close
    to one entry tend to be close to others), which ``1 - (1 - q)^D`` ignores.
    """
    from ..hashing.thresholds import pairwise_distances

    packed = np.stack([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes])
    n = len(hashes)
    k = (pairwise_distances(packed) <= radius).sum(axis=1) - 1  # minus the image itself
    m = n - 1

    def log_falling(a: int) -> float:  # log of a (a - 1) ... (a - D + 1), the D-subsets' common factor kept
        return math.lgamma(a + 1) - math.lgamma(a - database_size + 1)

    miss = [math.exp(log_falling(m - int(ki)) - log_falling(m)) if m - ki >= database_size else 0.0 for ki in k]
    return float(1.0 - np.mean(miss)), int(k.sum()) // 2


@dataclass(frozen=True)
class Calibration:
    """Measured distance histograms of one hasher, image size and encoding (a calibration file, JSON)."""

    hasher: str = option(doc="the hasher's spec, e.g. 'pdq'")
    bits: int = option(doc="bits of a hash", range=(1, None))
    image_size: int = option(doc="side of the calibration images in pixels", range=(1, None))
    encoding: str = option(doc="the attachment encoding the images went through")
    unrelated: tuple[int, ...] = option(doc="histogram of unrelated-pair distances 0..bits", range=(0, None))
    transforms: dict[str, tuple[int, ...]] = option(doc="per transformation chain, the histogram of original-copy "
                                                        "distances 0..bits")
    corpus: str = option(doc="the images measured, e.g. 'synthetic:200'")
    seed: int = option(doc="the seed of the images and transformations", range=(0, None))
    provenance: dict[str, Any] = option(default_factory=dict, doc="version, commit and cost of the measurement")
    version: int = option(CALIBRATION_VERSION, doc="format version", choices=(CALIBRATION_VERSION,))
    #: The corpus's image hashes (hex), for bounds that resample images; empty in files made before them.
    hashes: tuple[str, ...] = option((), doc="the corpus's image hashes, hex")

    def __post_init__(self) -> None:
        for key, hist in [("unrelated", self.unrelated), *((f"transforms.{k}", v) for k, v in self.transforms.items())]:
            if len(hist) != self.bits + 1:
                raise ScenarioError(invalid(key, hist, f"{len(hist)} entries", f"bits + 1 = {self.bits + 1} counts"))
        digits = self.bits // 4
        bad = next((i for i, h in enumerate(self.hashes) if len(h) != digits or not _is_hex(h)), None)
        if bad is not None:
            raise ScenarioError(invalid(f"hashes[{bad}]", self.hashes[bad], "not a hash of these bits",
                                        f"{digits} hexadecimal digits"))

    # -- probabilities ---------------------------------------------------------

    def tail_fit(self, model: str = "normal") -> TailFit:
        """The lower-tail model of the unrelated-pair distances (cached per histogram and model)."""
        return _tail_fit(tuple(self.unrelated), model)

    def unrelated_moments(self) -> tuple[float, float]:
        """Mean and standard deviation of the unrelated-pair distances."""
        h = np.asarray(self.unrelated, dtype=float)
        d = np.arange(h.size)
        n = h.sum()
        mean = float((h * d).sum() / n)
        var = float((h * (d - mean) ** 2).sum() / n)
        return mean, math.sqrt(max(var, 0.0))

    def collision_probability(self, radius: int, tail_model: str = "normal") -> float:
        """P(distance <= radius) for two unrelated images: empirical, or the tail model below the data.

        ``tail_model = "bound"`` is the 95% upper confidence bound of the
        exponential fit from a bootstrap over the calibration's images
        (:meth:`collision_probability_bound`), used where the data do not reach.
        """
        h = np.asarray(self.unrelated, dtype=float)
        if radius >= h.size - 1:
            return 1.0
        below = h[: radius + 1].sum()
        if below >= MIN_TAIL_PAIRS:
            return float(below / h.sum())
        if tail_model == "bound":
            return self.collision_probability_bound(radius)[1]
        return self.tail_fit(tail_model).fpr(radius)

    def collision_probability_bound(self, radius: int, tail_model: str = "exponential", *, level: float = 0.95,
                                    resamples: int = 200, seed: int = 0) -> tuple[float, float]:
        """``(estimate, upper confidence bound)`` of :meth:`collision_probability`, bootstrapping the corpus's images.

        Needs the per-image hashes (calibrations made by this version keep
        them); see :func:`e2escan.hashing.thresholds.bootstrap_fpr_bound`.
        """
        if not self.hashes:
            raise ScenarioError(
                f"calibration for {self.hasher} ({self.corpus}) keeps no per-image hashes, so no bound over its "
                "images can be computed: make it again with `e2escan calibrate`, or set statistical.tail_model to "
                "'exponential' or 'normal'"
            )
        return _bootstrap(self.hashes, radius, tail_model, level, resamples, seed)

    def recall(self, spec: str, radius: int) -> float:
        key = spec.strip() if spec.strip() not in ("none", "") else "identity"
        if key not in self.transforms:
            raise ScenarioError(
                f"calibration for {self.hasher} has no transform {spec!r}; calibrated: {', '.join(sorted(self.transforms))}"
            )
        h = np.asarray(self.transforms[key], dtype=float)
        return float(h[: radius + 1].sum() / h.sum())

    def false_match_probability(self, radius: int, database_size: int, tail_model: str = "normal") -> float:
        """P(an innocent image lies within ``radius`` of at least one of ``database_size`` hashes).

        Where the corpus's images support it (its hashes are kept, the database
        is smaller than the corpus, and at least ``MIN_TAIL_PAIRS`` pairs lie
        within ``radius``) this is measured directly: every image against random
        ``database_size``-subsets of the others (:func:`_subset_match_probability`),
        so the dependence between database entries is kept. Otherwise it is
        ``1 - (1 - q)^D`` from the pair probability ``q``, which treats the entries
        as independent; on correlated corpora that overstates the rate (about 10%
        on the test suite's aHash corpus at radius 12 with 40 entries).
        """
        if self.hashes and database_size < len(self.hashes) and radius < self.bits:
            direct, pairs = _subset_match_probability(tuple(self.hashes), int(radius), int(database_size))
            if pairs >= MIN_TAIL_PAIRS:
                return direct
        q = self.collision_probability(radius, tail_model)
        if q >= 1.0:
            return 1.0
        return float(-math.expm1(database_size * math.log1p(-q)))

    # -- files -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "hasher": self.hasher,
            "bits": self.bits,
            "image_size": self.image_size,
            "encoding": self.encoding,
            "corpus": self.corpus,
            "seed": self.seed,
            "unrelated": list(self.unrelated),
            "transforms": {k: list(v) for k, v in self.transforms.items()},
            "provenance": self.provenance,
            **({"hashes": list(self.hashes)} if self.hashes else {}),
        }

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration file; every error is one line naming the file, the key and the value."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ScenarioError(f"calibration file {path}: not found") from None
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"calibration file {path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("version") != CALIBRATION_VERSION:
            again = f"accepted: {CALIBRATION_VERSION} (make the file again with `e2escan calibrate`)"
            if not isinstance(data, dict) or "version" not in data:
                raise ScenarioError(f"{path}: version: required key is missing; {again}")
            raise ScenarioError(f"{path}: version = {show(data['version'])}: another format; {again}")
        return from_dict(cls, data, error=ScenarioError, source=str(path))


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def calibrate(
    hasher_name: str,
    hasher_params: dict[str, Any] | None = None,
    *,
    transforms: list[str],
    images: int = 200,
    image_size: int = 128,
    encoding: str = "png",
    seed: int = 0,
    progress: Any = None,
) -> Calibration:
    """Measure the distance distributions on ``images`` synthetic images."""
    started = time.perf_counter()
    hasher = get_hasher(hasher_name, **(hasher_params or {}))
    size = (image_size, image_size)
    originals = [synthetic_image(image_rng(seed, i), size) for i in range(images)]
    base = HashArray.from_hashes(hasher.hash(img) for img in originals)
    bits = base.bits
    unrelated = np.zeros(bits + 1, dtype=np.int64)
    for i in range(len(base) - 1):
        d = base[i + 1 :].distances_to(base[i])
        unrelated += np.bincount(d, minlength=bits + 1)
    per_transform: dict[str, tuple[int, ...]] = {}
    rng = np.random.default_rng(seed + 1)
    for spec in dict.fromkeys(["identity"] + [("identity" if t.strip() in ("none", "") else t.strip()) for t in transforms]):
        chain = chain_for(spec)
        hist = np.zeros(bits + 1, dtype=np.int64)
        for i, img in enumerate(originals):
            out = encode_decode(chain.apply(img, rng).image, encoding)
            hist[hasher.hash(out).distance(base[i])] += 1
            if progress:
                progress(1)
        per_transform[spec] = tuple(int(x) for x in hist)
    return Calibration(
        hasher.spec, bits, image_size, encoding, tuple(int(x) for x in unrelated), per_transform,
        f"synthetic:{images}", seed,
        {**provenance(), "wall_time_s": round(time.perf_counter() - started, 2)},
        hashes=tuple(base[i].hex for i in range(len(base))),
    )
