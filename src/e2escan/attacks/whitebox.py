"""The white-box search for DCT hashes (Jain, Crețu and de Montjoye, USENIX Security 2022).

For pHash and PDQ, whose bits compare low-frequency DCT coefficients
with their median. The attacker recomputes the coefficients, picks the
bits closest to the median (half above it, half below, so that the
median stays put), solves for the minimum-norm change of the hash's
thumbnail that pushes exactly those coefficients across the median, and
upsamples it to pixel space. Each step is checked with the real hasher.
The model reproduces the library's bits exactly only when no feature
ties with the median: on structured images (mirror symmetry, stripes,
checkerboards) many coefficients are equal to the median in exact
arithmetic and floating-point noise decides their bits differently in
the model and in the library. The first query therefore compares the
model's hash with the library's (:func:`model_agrees`), and on any difference
the attack runs the black-box search instead (``EvasionResult.fell_back``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..hashing import DctHasher, Hasher, PdqHasher
from .search import HashSearch, SearchStopped, upsample

__all__ = ["PDQ_COEFFICIENTS", "DctModel", "dct_model", "model_agrees", "run_whitebox", "unsupported_whitebox",
           "whitebox_supported"]

@dataclass(frozen=True)
class DctModel:
    """A DCT hash written out as the attacker's model: linear features of a thumbnail, median threshold.

    ``features(pixels) = rows @ thumbnail(pixels) @ cols.T`` (flattened,
    row-major); model bit ``i`` is set when feature ``i`` exceeds the median
    of all features, and it is bit ``bit_index[i]`` of the real hash (in
    :meth:`PerceptualHash.to_bits` order). The prediction is bit-exact only
    when no feature ties with the median; tied features are decided by
    floating-point noise, differently here and in the library (see
    :func:`model_agrees`).
    """

    rows: np.ndarray  # (n, thumb_size)
    cols: np.ndarray  # (n, thumb_size)
    thumbnail: Callable[[np.ndarray], np.ndarray]  # RGB uint8 (H, W, 3) -> (thumb_size, thumb_size) float
    bit_index: np.ndarray  # (n * n,)

    def features(self, pixels: np.ndarray) -> np.ndarray:
        return (self.rows @ self.thumbnail(pixels) @ self.cols.T).ravel()

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        """The model's prediction of the real hash's bits (``to_bits`` order)."""
        features = self.features(pixels)
        predicted = np.empty(features.size, dtype=np.uint8)
        predicted[self.bit_index] = features > np.median(features)
        return predicted

    def thumb_change(self, feature_change: np.ndarray) -> np.ndarray:
        """Minimum-norm thumbnail change producing ``feature_change`` (the basis rows are orthogonal)."""
        n = self.rows.shape[0]
        change = feature_change.reshape(n, n)
        row_w = 1.0 / np.sum(self.rows**2, axis=1)
        col_w = 1.0 / np.sum(self.cols**2, axis=1)
        return self.rows.T @ (row_w[:, None] * change * col_w[None, :]) @ self.cols


def _phash_model(hasher: DctHasher) -> DctModel:
    """imagehash ``phash``: greyscale ('L'), Lanczos thumbnail, unnormalised DCT-II, top-left block."""
    size = hasher.hash_size * hasher.highfreq_factor
    k = np.arange(hasher.hash_size)[:, None]
    m = np.arange(size)[None, :]
    basis = 2.0 * np.cos(np.pi * k * (2 * m + 1) / (2 * size))  # scipy.fftpack.dct type II, unnormalised

    def thumbnail(pixels: np.ndarray) -> np.ndarray:
        grey = Image.fromarray(pixels, mode="RGB").convert("L")
        return np.asarray(grey.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float64)

    return DctModel(basis, basis, thumbnail, np.arange(hasher.bits))


_PDQ_SIDE = 64
#: PDQ keeps the 16 x 16 lowest-frequency DCT coefficients (without the DC row and column).
PDQ_COEFFICIENTS = 16
_PDQ_LUMA = np.array([0.299, 0.587, 0.114])


def _pdq_box_mean(x: np.ndarray, window: int, axis: int) -> np.ndarray:
    """PDQ's 1-D box filter: output ``o`` is the mean of inputs ``o - (w - h) .. o + h - 1`` (clipped), ``h = (w + 2) // 2``."""
    n = x.shape[axis]
    half = (window + 2) // 2
    lo = np.clip(np.arange(n) - (window - half), 0, n - 1)
    hi = np.clip(np.arange(n) + half - 1, 0, n - 1)
    cumulative = np.cumsum(x, axis=axis)
    cumulative = np.concatenate([np.zeros_like(np.take(cumulative, [0], axis=axis)), cumulative], axis=axis)
    sums = np.take(cumulative, hi + 1, axis=axis) - np.take(cumulative, lo, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = n
    return sums / (hi - lo + 1).astype(np.float64).reshape(shape)


def _pdq_thumbnail(pixels: np.ndarray) -> np.ndarray:
    """PDQ's 64x64 luminance thumbnail: two passes of a Jarosz (box) filter, then decimation at cell centres.

    Written from the description in ThreatExchange's pdq documentation and
    checked bit for bit against the ``pdqhash`` package by the tests.
    """
    luma = pixels.astype(np.float64) @ _PDQ_LUMA
    height, width = luma.shape
    along_rows = (width + 2 * _PDQ_SIDE - 1) // (2 * _PDQ_SIDE)
    along_cols = (height + 2 * _PDQ_SIDE - 1) // (2 * _PDQ_SIDE)
    for _ in range(2):
        luma = _pdq_box_mean(luma, along_rows, axis=1)
        luma = _pdq_box_mean(luma, along_cols, axis=0)
    rows = ((np.arange(_PDQ_SIDE) + 0.5) * height / _PDQ_SIDE).astype(np.int64)
    cols = ((np.arange(_PDQ_SIDE) + 0.5) * width / _PDQ_SIDE).astype(np.int64)
    return luma[np.ix_(rows, cols)]


def _pdq_model() -> DctModel:
    """PDQ: the 16x16 DCT block without the DC row and column, median threshold.

    PDQ sets bit ``16 i + j`` of its ``Hash256`` for coefficient ``(i, j)``;
    ``pdqhash`` (and so :class:`~e2escan.hashing.PdqHasher`) lists the bits
    from the last, so model bit ``k`` is real bit ``255 - k``.
    """
    i = np.arange(1, PDQ_COEFFICIENTS + 1)[:, None]
    j = np.arange(_PDQ_SIDE)[None, :]
    basis = np.sqrt(2.0 / _PDQ_SIDE) * np.cos(np.pi / (2 * _PDQ_SIDE) * i * (2 * j + 1))
    bits = PDQ_COEFFICIENTS * PDQ_COEFFICIENTS
    return DctModel(basis, basis, _pdq_thumbnail, np.arange(bits)[::-1].copy())


def model_agrees(model: DctModel, search: HashSearch) -> bool:
    """The model's bits for the original equal the library's hash from the search's first query.

    The model is bit-exact only when no feature ties with the median; on a
    tie, floating-point noise decides differently in the model and in the
    library, and pushing model features then moves the wrong bits.
    """
    return bool(np.array_equal(model.bits(search.scanned(search.pixels)), search.initial_hash.to_bits()))


def whitebox_supported(hasher: Hasher) -> bool:
    """True for the hashers the white-box method models (pHash and PDQ)."""
    return isinstance(hasher, (DctHasher, PdqHasher))


def unsupported_whitebox(hasher: Hasher) -> ConfigError:
    """The error for asking the white-box method to model any other hasher."""
    return ConfigError(f"method 'whitebox' models DCT hashes only (phash, pdq), not {hasher.spec!r}; use method='blackbox'")


def dct_model(hasher: Hasher) -> DctModel:
    """The white-box model of a pHash or PDQ hasher; ConfigError for any other hasher."""
    if isinstance(hasher, DctHasher):
        return _phash_model(hasher)
    if isinstance(hasher, PdqHasher):
        return _pdq_model()
    raise unsupported_whitebox(hasher)


# Overshoot past the median, as a share of the median absolute deviation of the features.
_WHITEBOX_OVERSHOOT = 0.15
_WHITEBOX_GROWTH = 1.5
_WHITEBOX_MAX_OVERSHOOT = 4.0
# Rounds in a row without progress after which the white-box attack gives up (the SSIM bound binds).
_WHITEBOX_MAX_STALLS = 6


def run_whitebox(search: HashSearch, model: DctModel, desired_bits: np.ndarray) -> None:
    """Push model features across the median towards ``desired_bits`` until the search's goal is met.

    ``desired_bits`` is in real-hash (``to_bits``) order: the complement of
    the original hash for evasion, the target hash for a collision. The
    features are read from what the hasher sees (the best image after the
    search's ``encode`` round trip, which costs the attacker no query). The
    search's score must count bits equal to ``desired_bits`` up to a
    constant (distance from the original; minus the distance to the target),
    so ``goal - score`` is the number of bits still missing.

    Each round: recompute the features of the best image so far; among the
    features whose bit is not yet as desired, take the ``k`` nearest the
    median, balanced between those that must rise and those that must fall
    (so that the median stays put; with half of the bits always set, they
    change in pairs); move each past the median by an
    overshoot; back-project the minimum-norm thumbnail change to pixels by
    bilinear upsampling; project into the SSIM bound; query. ``k`` starts at
    the number of missing bits; a round that gains nothing grows ``k`` and
    the overshoot (the model is exact before rounding, but rounding, clipping
    and the projection undo part of a step), and after several such rounds
    in a row the attack stops, leaving the rest of the budget unspent.
    """
    want = desired_bits[model.bit_index].astype(bool)  # model order
    direction = np.where(want, 1.0, -1.0)
    extra, stalls = 0, 0
    overshoot = _WHITEBOX_OVERSHOOT
    try:
        while stalls < _WHITEBOX_MAX_STALLS:
            features = model.features(search.scanned(search.best_pixels))
            median = np.median(features)
            margin = (features - median) * direction  # > 0: the bit is as desired
            # A median threshold sets exactly half of the bits, so bits change in pairs (one rising, one
            # falling): push an even number of them, at least two.
            missing = max(1, search.goal - search.best_score)
            k = min(features.size // 2, 2 * math.ceil((missing + extra) / 2))
            spread = float(np.median(np.abs(features - median))) or 1.0
            chosen = _balanced_nearest(margin, want, k)
            change = np.zeros_like(features)
            change[chosen] = (overshoot * spread - margin[chosen]) * direction[chosen]
            pixel_change = upsample(model.thumb_change(change), search.height, search.width)
            before = search.best_score
            search.evaluate(search.project(search.best_delta + pixel_change))
            if search.best_score > before:
                extra, stalls, overshoot = 0, 0, _WHITEBOX_OVERSHOOT
            else:
                extra += max(1, k // 2)
                stalls += 1
                overshoot = min(overshoot * _WHITEBOX_GROWTH, _WHITEBOX_MAX_OVERSHOOT)
    except SearchStopped:
        return


def _balanced_nearest(margin: np.ndarray, want: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` features not yet as desired (margin <= 0) nearest the median, half rising, half falling."""
    pending = margin <= 0
    rising = np.flatnonzero(pending & want)
    falling = np.flatnonzero(pending & ~want)
    rising = rising[np.argsort(-margin[rising], kind="stable")]
    falling = falling[np.argsort(-margin[falling], kind="stable")]
    take_rising = min(rising.size, k - k // 2)
    take_falling = min(falling.size, k - take_rising)
    take_rising = min(rising.size, k - take_falling)
    return np.concatenate([rising[:take_rising], falling[:take_falling]])

