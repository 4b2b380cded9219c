"""The query-counted search that evasion and collision share (:class:`HashSearch`), and its rules.

:mod:`e2escan.attacks.blackbox` and :mod:`e2escan.attacks.whitebox` propose the
candidates; :mod:`e2escan.attacks.evasion` and :mod:`e2escan.attacks.collision`
choose the objective. The rules every such attack follows:

* every call of the real hasher counts as one query, and the attack stops
  when ``max_queries`` are spent or the goal is met;
* quality is bounded by SSIM (:func:`e2escan.images.quality.ssim`, Wang
  et al. 2004, Gaussian window, averaged over RGB channels): an image is
  acceptable only if its SSIM with the original is at least ``min_ssim``;
  iterates that break the bound are scaled back towards the original until
  they meet it;
* all randomness comes from the ``rng`` passed in, so a seed fixes the result;
* the returned image is always acceptable (the original itself if nothing
  better was found), so ``success`` means the distance goal was met;
* ``encode`` (a transform chain spec such as ``"jpeg:quality=90"``) puts
  the messenger's attachment encoding inside the objective: every candidate
  is encoded, decoded and then hashed (still one query), and success is
  judged on that hash, the one a scanner computes from the attachment;
* ``margin`` makes the search aim ``margin`` bits beyond the goal (evasion:
  distance ``min_distance + margin``; collision: ``radius - margin``), so
  that the result keeps its success under changes the objective does not
  model; success is still judged at the goal itself;
* for PDQ, whose documentation says to discard hashes of quality below 50,
  a candidate counts only if its quality is at least
  :data:`PDQ_MIN_QUALITY`; the quality is reported beside every result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImageError
from ..hashing import Hasher, PerceptualHash
from ..images.quality import SSIM_WINDOW, SsimReference, as_pixel_array
from ..images.transforms import TransformChain

__all__ = ["PDQ_MIN_QUALITY", "HashSearch", "SearchStopped", "upsample"]

# SSIM projection: at most this many rescaling trials, each aiming slightly inside the bound.
_PROJECTION_STEPS = 8
_PROJECTION_SHRINK = 0.98

#: PDQ's documentation: discard hashes of quality below 50 (ThreatExchange pdq/README.md).
PDQ_MIN_QUALITY = 50


class SearchStopped(Exception):
    """Raised inside a search when the goal is met or the query budget is spent; the search methods catch it."""


def _as_rgb_uint8(image: Any) -> np.ndarray:
    arr = as_pixel_array(image)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] != 3:
        raise ImageError(f"expected a greyscale or RGB image, got {arr.shape[2]} channels")
    if min(arr.shape[0], arr.shape[1]) < SSIM_WINDOW:
        raise ImageError(
            f"attacks need images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (the SSIM window), "
            f"got {arr.shape[1]}x{arr.shape[0]}"
        )
    if arr.min() < 0 or arr.max() > 255:
        raise ImageError("pixel values must lie in 0..255")
    return np.rint(arr).astype(np.uint8)


def upsample(z: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a small float array to ``(height, width)``."""
    if z.shape == (height, width):
        return z.astype(np.float32)
    small = Image.fromarray(np.ascontiguousarray(z, dtype=np.float32), mode="F")
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))


class HashSearch:
    """Query-counted search for a perturbation of one image that maximises an objective of its hash.

    The state is a greyscale additive perturbation ``delta`` (float, image
    shape, same on every channel). :meth:`evaluate` renders ``original +
    delta`` to uint8, passes it through ``encode`` if given, hashes it (one
    query), scores it with ``objective`` (higher is better) and keeps it as
    the best image if it beats the best score so far, meets the SSIM bound
    (on the unencoded image, the one the attacker controls) and, for PDQ,
    has quality at least :data:`PDQ_MIN_QUALITY` ("usable"). It raises
    :class:`SearchStopped` once a usable best reaches ``goal`` or the budget is
    spent; callers catch it. :meth:`start` hashes the original (the first
    candidate) and must be called before :meth:`evaluate`.
    """

    def __init__(
        self,
        image: Any,
        hasher: Hasher,
        *,
        goal: int,
        max_queries: int,
        min_ssim: float,
        encode: TransformChain | None = None,
    ) -> None:
        self.pixels = _as_rgb_uint8(image)
        self.base = self.pixels.astype(np.float32)
        self.height, self.width = self.pixels.shape[:2]
        self.hasher = hasher
        self.encode = encode
        self.goal = goal
        self.max_queries = max_queries
        self.min_ssim = float(min_ssim)
        self._reference = SsimReference(self.pixels)
        self.queries = 0
        self.progress: list[tuple[int, int]] = []
        self.best_delta = np.zeros((self.height, self.width), dtype=np.float32)
        self.best_pixels = self.pixels
        self.best_ssim = 1.0

    def start(
        self, objective: Callable[[PerceptualHash], int], first: tuple[PerceptualHash, int | None] | None = None
    ) -> None:
        """Score the original image; ``first`` is its (hash, quality) when already queried without ``encode``."""
        self.objective = objective
        self.initial_hash, self.best_quality = self.query(self.pixels) if first is None else first
        self.best_hash = self.initial_hash
        self.best_score = objective(self.best_hash)
        self.best_usable = self.usable(self.best_quality)
        if self.best_usable:
            self.progress.append((self.queries, self.best_score))

    @property
    def done(self) -> bool:
        return (self.best_usable and self.best_score >= self.goal) or self.queries >= self.max_queries

    @staticmethod
    def usable(quality: int | None) -> bool:
        return quality is None or quality >= PDQ_MIN_QUALITY

    def render(self, delta: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(self.base + delta[:, :, None]), 0, 255).astype(np.uint8)

    def scanned(self, pixels: np.ndarray) -> np.ndarray:
        """What the hasher is given for ``pixels``: the encoding round trip of them, or them (no query)."""
        if self.encode is None:
            return pixels
        decoded = self.encode.apply(Image.fromarray(pixels, mode="RGB"), np.random.default_rng(0)).image
        return np.asarray(decoded.convert("RGB"))

    def query_raw(self, pixels: np.ndarray) -> tuple[PerceptualHash, int | None]:
        """Hash ``pixels`` as they are, without ``encode`` (one query)."""
        if self.queries >= self.max_queries:
            raise SearchStopped
        self.queries += 1
        return self.hasher.hash_with_quality(Image.fromarray(pixels, mode="RGB"))

    def query(self, pixels: np.ndarray) -> tuple[PerceptualHash, int | None]:
        """Hash what a scanner would see of ``pixels`` (after ``encode``): one query."""
        return self.query_raw(self.scanned(pixels))

    def acceptable(self, pixels: np.ndarray) -> bool:
        """SSIM with the original meets the bound (decided as exactly as :func:`~e2escan.images.quality.ssim`)."""
        return self._reference.meets(pixels, self.min_ssim)

    def evaluate(self, delta: np.ndarray) -> int:
        """Score ``original + delta`` (one query); keep it if it is the best usable, acceptable image so far.

        SSIM is computed only for images that would beat the best score, so
        exploration samples that do not improve cost no more than their query.
        """
        if self.done:
            raise SearchStopped
        pixels = self.render(delta)
        digest, quality = self.query(pixels)
        score = self.objective(digest)
        better = score > self.best_score or not self.best_usable
        if better and self.usable(quality) and self.acceptable(pixels):
            self.best_score, self.best_hash, self.best_ssim = score, digest, self._reference.ssim(pixels)
            self.best_delta, self.best_pixels, self.best_quality = delta.astype(np.float32), pixels, quality
            self.best_usable = True
            self.progress.append((self.queries, score))
        if self.done:
            raise SearchStopped
        return score

    def project(self, delta: np.ndarray) -> np.ndarray:
        """``delta`` scaled towards zero just enough to meet the SSIM bound (no queries).

        For small perturbations ``1 - SSIM`` grows about quadratically with
        the scale ``s`` of ``original + s * delta``, so each trial rescales by
        ``sqrt((1 - bound) / (1 - SSIM))`` (a little less, to land inside).
        Rounding to integers and clipping make SSIM only roughly quadratic,
        hence several trials; if none meets the bound, the zero perturbation
        (the original image) is returned.
        """
        pixels = self.render(delta)
        if self.acceptable(pixels):
            return delta
        scale = 1.0
        for _ in range(_PROJECTION_STEPS):
            ratio = (1.0 - self.min_ssim) / max(1.0 - self._reference.estimate(pixels), 1e-12)
            scale *= min(0.9, _PROJECTION_SHRINK * math.sqrt(max(ratio, 0.0)))
            pixels = self.render(delta * scale)
            if self.acceptable(pixels):
                return delta * scale
        return np.zeros_like(delta)
