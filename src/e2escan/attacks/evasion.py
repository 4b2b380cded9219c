"""Detection avoidance: perturb an image until its perceptual hash leaves the match radius.

A scanner flags an image when its hash lies within Hamming distance ``T`` of a
database hash. An attacker holding a database image wants a copy that looks
the same but whose hash is at least ``T + 1`` bits away from the original's,
so :func:`evade` takes ``min_distance = T + 1``. Two methods, after Jain,
Crețu and de Montjoye (USENIX Security 2022), who proposed one black-box
attack for any hash and white-box attacks for DCT-based hashes:

``"blackbox"``
    Natural-evolution-strategies (NES) gradient estimation with antithetic
    Gaussian samples, then a signed-gradient step. The objective is the
    Hamming distance returned by the hasher itself, which is the only thing
    the attacker observes. Perturbations are smooth: a ``grid x grid`` array
    upsampled bilinearly to the image size and added equally to the three
    colour channels (every hash here reads luminance only, and smooth changes
    are what a downsampling hash sees).
``"whitebox"``
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
    model's hash with the library's, and on any difference the attack runs
    the black-box search instead (``EvasionResult.fell_back``).

Common rules (both methods):

* every call of the real hasher counts as one query, and the attack stops
  when ``max_queries`` are spent or the goal is met;
* quality is bounded by SSIM (:func:`e2escan.attacks.quality.ssim`, Wang
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

The search machinery (:class:`HashSearch`) is shared with
:mod:`e2escan.attacks.collision`, which uses it with a different objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from ..errors import ConfigError, ImageError
from ..hashing import AverageHasher, DctHasher, DifferenceHasher, Hasher, PdqHasher, PerceptualHash, WaveletHasher
from ..images.transforms import TransformChain, parse_chain
from .quality import SSIM_WINDOW, SsimReference, as_pixel_array, psnr

__all__ = [
    "GENERIC_GRID",
    "METHODS",
    "PDQ_MIN_QUALITY",
    "BlackBoxParams",
    "DctModel",
    "EvasionResult",
    "HashSearch",
    "check_attack_arguments",
    "check_margin",
    "dct_model",
    "default_grid",
    "evade",
    "model_agrees",
    "parse_encode",
    "run_method",
    "run_nes",
    "run_whitebox",
    "whitebox_supported",
]

Method = Literal["blackbox", "whitebox"]
METHODS: tuple[str, ...] = ("blackbox", "whitebox")

# SSIM projection: at most this many rescaling trials, each aiming slightly inside the bound.
_PROJECTION_STEPS = 8
_PROJECTION_SHRINK = 0.98

#: PDQ's documentation: discard hashes of quality below 50 (ThreatExchange pdq/README.md).
PDQ_MIN_QUALITY = 50
#: A perturbation grid chosen without knowing the hash (same for every hasher): what an attacker who
#: only queries, and does not know the hash's internal resolution, would use.
GENERIC_GRID = 32


@dataclass(frozen=True)
class BlackBoxParams:
    """Tuning of the NES black-box search; the defaults suit 64- to 256-bit hashes on 64-512 px images.

    ``grid``: cells along the longer side of the perturbation grid (upsampled
    to the image); ``None`` matches the hash's own resolution: ``hash_size``
    for the imagehash hashers, 16 (its DCT block) for PDQ. That default makes
    the attack query-only but algorithm-aware (it knows the hash's
    resolution); :data:`GENERIC_GRID` is the choice of an attacker who does not;
    ``samples``: hash queries per gradient estimate (``samples // 2``
    antithetic pairs); ``sigma``: exploration scale and ``step``: signed step,
    both in grey levels on the grid.
    """

    grid: int | None = None
    samples: int = 10
    sigma: float = 12.0
    step: float = 3.0

    def __post_init__(self) -> None:
        if self.grid is not None and (isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 2):
            raise ConfigError(f"BlackBoxParams: grid must be None or an int >= 2, got {self.grid!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 2 or self.samples % 2:
            raise ConfigError(f"BlackBoxParams: samples must be an even int >= 2, got {self.samples!r}")
        for name in ("sigma", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 256:
                raise ConfigError(f"BlackBoxParams: {name} must be a number in (0, 256) grey levels, got {value!r}")


@dataclass(frozen=True, eq=False)
class EvasionResult:
    """Outcome of :func:`evade`.

    ``image`` is the best acceptable image found (SSIM >= ``min_ssim``), or
    the original when nothing better was found; ``distance`` is the Hamming
    distance between ``final_hash`` (its hash) and ``original_hash``;
    ``queries`` counts every hash computation, including the one of the
    original image; ``progress`` lists ``(queries, distance)`` each time the
    best acceptable distance grew, so the attack's success at any smaller
    threshold and budget can be read off one run (:meth:`queries_to_reach`).

    With ``encode``, ``final_hash`` and ``distance`` are those of the image
    after the encoding round trip (what a scanner hashes), and ``image`` is
    the image before it (what the attacker hands to the messenger).
    ``quality`` is PDQ's quality score of that hash (None for other
    hashers); ``success`` requires it to be at least :data:`PDQ_MIN_QUALITY`.
    ``fell_back`` is True when ``method="whitebox"`` found the model's hash
    of the original different from the library's and ran the black-box
    search instead.
    """

    image: Image.Image
    original_hash: PerceptualHash
    final_hash: PerceptualHash
    distance: int
    queries: int
    ssim: float
    psnr: float
    success: bool
    min_distance: int
    min_ssim: float
    method: str
    progress: tuple[tuple[int, int], ...]
    margin: int = 0
    encode: str | None = None
    quality: int | None = None
    fell_back: bool = False

    def queries_to_reach(self, distance: int) -> int | None:
        """Queries spent when the best acceptable image first had at least ``distance`` bits; None if never."""
        for queries, reached in self.progress:
            if reached >= distance:
                return queries
        return None


class _Stop(Exception):
    """Raised inside a search when the goal is met or the query budget is spent."""


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


def _upsample(z: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a small float array to ``(height, width)``."""
    if z.shape == (height, width):
        return z.astype(np.float32)
    small = Image.fromarray(np.ascontiguousarray(z, dtype=np.float32), mode="F")
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))


def check_attack_arguments(
    hasher: Hasher,
    max_queries: int,
    min_ssim: float,
    rng: np.random.Generator,
    method: str,
    params: BlackBoxParams | None,
) -> None:
    """Validate the arguments shared by :func:`evade` and :func:`~e2escan.attacks.collision.collide`."""
    if not isinstance(hasher, Hasher):
        raise ConfigError(f"hasher must be an e2escan Hasher (see get_hasher), got {type(hasher).__name__}")
    if isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 1:
        raise ConfigError(f"max_queries must be an int >= 1, got {max_queries!r}")
    if isinstance(min_ssim, bool) or not isinstance(min_ssim, (int, float)) or not -1.0 <= min_ssim <= 1.0:
        raise ConfigError(f"min_ssim must be a number in [-1, 1] (-1: no bound), got {min_ssim!r}")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if params is not None and not isinstance(params, BlackBoxParams):
        raise ConfigError(f"params must be a BlackBoxParams or None, got {type(params).__name__}")
    if method == "whitebox" and not whitebox_supported(hasher):
        raise ConfigError(
            f"method 'whitebox' models DCT hashes only (phash, pdq), not {hasher.spec!r}; use method='blackbox'"
        )


def check_margin(margin: Any, largest: int) -> int:
    """``margin`` as an int in ``0..largest``; ConfigError naming the parameter otherwise."""
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or not 0 <= margin <= largest:
        raise ConfigError(f"margin must be an int in 0..{largest} here, got {margin!r}")
    return int(margin)


def parse_encode(encode: Any) -> TransformChain | None:
    """The ``encode`` option: None, or a transform chain spec such as ``"jpeg:quality=90"``."""
    if encode is None:
        return None
    if not isinstance(encode, str) or not encode.strip():
        raise ConfigError(f"encode must be a transform spec such as 'jpeg:quality=90', or None, got {encode!r}")
    try:
        return parse_chain(encode)
    except ConfigError as exc:
        raise ConfigError(f"encode: {exc}") from None


def _hash_and_quality(hasher: Hasher, image: Image.Image) -> tuple[PerceptualHash, int | None]:
    """The hash, and PDQ's quality score computed with it (None for hashers without one)."""
    return hasher.hash_with_quality(image)


class HashSearch:
    """Query-counted search for a perturbation of one image that maximises an objective of its hash.

    The state is a greyscale additive perturbation ``delta`` (float, image
    shape, same on every channel). :meth:`evaluate` renders ``original +
    delta`` to uint8, passes it through ``encode`` if given, hashes it (one
    query), scores it with ``objective`` (higher is better) and keeps it as
    the best image if it beats the best score so far, meets the SSIM bound
    (on the unencoded image, the one the attacker controls) and, for PDQ,
    has quality at least :data:`PDQ_MIN_QUALITY` ("usable"). It raises
    :class:`_Stop` once a usable best reaches ``goal`` or the budget is
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
            raise _Stop
        self.queries += 1
        return _hash_and_quality(self.hasher, Image.fromarray(pixels, mode="RGB"))

    def query(self, pixels: np.ndarray) -> tuple[PerceptualHash, int | None]:
        """Hash what a scanner would see of ``pixels`` (after ``encode``): one query."""
        return self.query_raw(self.scanned(pixels))

    def acceptable(self, pixels: np.ndarray) -> bool:
        """SSIM with the original meets the bound (decided as exactly as :func:`~e2escan.attacks.quality.ssim`)."""
        return self._reference.meets(pixels, self.min_ssim)

    def evaluate(self, delta: np.ndarray) -> int:
        """Score ``original + delta`` (one query); keep it if it is the best usable, acceptable image so far.

        SSIM is computed only for images that would beat the best score, so
        exploration samples that do not improve cost no more than their query.
        """
        if self.done:
            raise _Stop
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
            raise _Stop
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


# --- black box: NES -------------------------------------------------------------------


def default_grid(hasher: Hasher) -> int:
    """The perturbation grid matching a hash's resolution (see :class:`BlackBoxParams`); 16 for other hashers."""
    if isinstance(hasher, PdqHasher):
        return _PDQ_COEFFS
    if isinstance(hasher, (AverageHasher, DifferenceHasher, DctHasher, WaveletHasher)) and hasher.hash_size >= 2:
        return hasher.hash_size
    return 16


def _grid_shape(search: HashSearch, grid: int | None) -> tuple[int, int]:
    """Grid cells along each axis: ``grid`` along the longer side, proportionally along the other."""
    if grid is None:
        grid = default_grid(search.hasher)
    longer = max(search.height, search.width)
    gh = max(2, min(search.height, round(grid * search.height / longer)))
    gw = max(2, min(search.width, round(grid * search.width / longer)))
    return gh, gw


def run_nes(search: HashSearch, params: BlackBoxParams, rng: np.random.Generator) -> None:
    """Signed-gradient ascent on ``search.objective`` with NES gradient estimates, until the search stops.

    Each round spends ``params.samples`` queries on antithetic samples
    ``z +- sigma u`` (u standard normal on the grid), estimates the gradient as
    ``sum (f(z + sigma u) - f(z - sigma u)) u``, moves every grid cell by
    ``step`` in the direction of the estimate's sign, projects back into the
    SSIM bound and spends one query on the new iterate. Samples that happen
    to score best are kept too (:meth:`HashSearch.evaluate`). When every
    sample ties (a plateau of the integer objective), ``sigma`` doubles for
    the next round, up to 8 times its initial value.
    """
    gh, gw = _grid_shape(search, params.grid)
    z = np.zeros((gh, gw), dtype=np.float64)
    sigma = params.sigma
    up = lambda grid_values: _upsample(grid_values, search.height, search.width)
    try:
        while True:
            noise = rng.standard_normal((params.samples // 2, gh, gw))
            diffs = np.empty(noise.shape[0])
            for i, u in enumerate(noise):
                diffs[i] = search.evaluate(up(z + sigma * u)) - search.evaluate(up(z - sigma * u))
            if not diffs.any():
                sigma = min(2.0 * sigma, 8.0 * params.sigma)
                continue
            sigma = params.sigma
            gradient = np.tensordot(diffs, noise, axes=1)
            z = z + params.step * np.sign(gradient)
            delta = search.project(up(z))
            # keep z consistent with the projection (projection is a uniform scaling)
            scale = _scale_between(delta, up(z))
            z = z * scale
            search.evaluate(delta)
    except _Stop:
        return


def _scale_between(scaled: np.ndarray, full: np.ndarray) -> float:
    norm = float(np.vdot(full, full))
    return 1.0 if norm == 0.0 else float(np.vdot(scaled, full)) / norm


# --- white box: DCT hashes ------------------------------------------------------------


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
_PDQ_COEFFS = 16
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
    i = np.arange(1, _PDQ_COEFFS + 1)[:, None]
    j = np.arange(_PDQ_SIDE)[None, :]
    basis = np.sqrt(2.0 / _PDQ_SIDE) * np.cos(np.pi / (2 * _PDQ_SIDE) * i * (2 * j + 1))
    bits = _PDQ_COEFFS * _PDQ_COEFFS
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


def dct_model(hasher: Hasher) -> DctModel:
    """The white-box model of a pHash or PDQ hasher; ConfigError for any other hasher."""
    if isinstance(hasher, DctHasher):
        return _phash_model(hasher)
    if isinstance(hasher, PdqHasher):
        return _pdq_model()
    raise ConfigError(
        f"method 'whitebox' models DCT hashes only (phash, pdq), not {hasher.spec!r}; use method='blackbox'"
    )


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
            pixel_change = _upsample(model.thumb_change(change), search.height, search.width)
            before = search.best_score
            search.evaluate(search.project(search.best_delta + pixel_change))
            if search.best_score > before:
                extra, stalls, overshoot = 0, 0, _WHITEBOX_OVERSHOOT
            else:
                extra += max(1, k // 2)
                stalls += 1
                overshoot = min(overshoot * _WHITEBOX_GROWTH, _WHITEBOX_MAX_OVERSHOOT)
    except _Stop:
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


# --- public entry point ---------------------------------------------------------------


def run_method(
    search: HashSearch,
    method: str,
    desired_bits: np.ndarray,
    params: BlackBoxParams | None,
    rng: np.random.Generator,
) -> bool:
    """Run ``method`` on a started search until it stops; True when the white-box model fell back to NES.

    ``desired_bits`` (``to_bits`` order) steers the white-box attack; the
    black-box search needs only the search's objective.
    """
    if search.done:
        return False
    fell_back = False
    if method == "whitebox":
        model = dct_model(search.hasher)
        if model_agrees(model, search):
            run_whitebox(search, model, desired_bits)
            return False
        fell_back = True
    run_nes(search, BlackBoxParams() if params is None else params, rng)
    return fell_back


def evade(
    image: Any,
    hasher: Hasher,
    *,
    min_distance: int,
    max_queries: int = 1000,
    min_ssim: float = 0.9,
    rng: np.random.Generator,
    method: Method = "blackbox",
    params: BlackBoxParams | None = None,
    encode: str | None = None,
    margin: int = 0,
    original_hash: PerceptualHash | None = None,
) -> EvasionResult:
    """Perturb ``image`` until its hash is at least ``min_distance`` bits from the original's.

    To evade a scanner that matches at Hamming distance ``<= T``, pass
    ``min_distance = T + 1``. The search stops at the first usable image
    (SSIM with the original ``>= min_ssim``; for PDQ, quality at least
    :data:`PDQ_MIN_QUALITY`) at least ``min_distance + margin`` bits away,
    or after ``max_queries`` hash computations; it succeeds if it got at
    least ``min_distance`` bits away. ``image`` is a PIL image or a uint8
    array (greyscale or RGB).

    ``original_hash`` is the hash to move away from (a database entry);
    by default the hash of ``image`` itself, which costs the first query.
    ``encode`` (a transform chain spec, for instance the messenger's
    ``"jpeg:quality=90"``) is applied to every candidate before it is hashed
    (applied with a fixed generator, so a random step is the same draw for
    every candidate), and distance and success are those after it; without
    ``original_hash``, the original is hashed once unencoded (the reference)
    and once encoded (the starting point), two queries. ``params`` tunes the
    black-box search, which ``method="whitebox"`` (pHash and PDQ only; see
    :func:`whitebox_supported`) also uses when its model disagrees with the
    library on the original. Deterministic for a given ``rng`` state.
    """
    check_attack_arguments(hasher, max_queries, min_ssim, rng, method, params)
    if isinstance(min_distance, bool) or not isinstance(min_distance, int) or not 1 <= min_distance <= hasher.bits:
        raise ConfigError(f"min_distance must be an int in 1..{hasher.bits} for {hasher.spec}, got {min_distance!r}")
    margin = check_margin(margin, hasher.bits - min_distance)
    chain = parse_encode(encode)
    if original_hash is not None and (not isinstance(original_hash, PerceptualHash) or original_hash.bits != hasher.bits):
        raise ConfigError(f"original_hash must be a {hasher.bits}-bit PerceptualHash of {hasher.spec} or None, "
                          f"got {original_hash!r}")  # fmt: skip

    if chain is not None and original_hash is None and max_queries < 2:
        raise ConfigError(f"max_queries must be >= 2 with encode and no original_hash (the original is hashed "
                          f"unencoded and encoded), got {max_queries}")  # fmt: skip
    search = HashSearch(image, hasher, goal=min_distance + margin, max_queries=max_queries, min_ssim=min_ssim,
                        encode=chain)  # fmt: skip
    first = None
    if original_hash is None or chain is None:
        first = search.query_raw(search.pixels)
        reference = first[0] if original_hash is None else original_hash
        if chain is not None:
            first = None  # the starting point is the encoded original, still to be hashed
    else:
        reference = original_hash
    search.start(lambda digest: digest.distance(reference), first)
    fell_back = run_method(search, method, 1 - reference.to_bits(), params, rng)
    usable = search.best_usable
    return EvasionResult(
        image=Image.fromarray(search.best_pixels, mode="RGB"),
        original_hash=reference,
        final_hash=search.best_hash,
        distance=search.best_score,
        queries=search.queries,
        ssim=search.best_ssim,
        psnr=psnr(search.pixels, search.best_pixels),
        success=usable and search.best_score >= min_distance,
        min_distance=min_distance,
        min_ssim=float(min_ssim),
        method=method,
        progress=tuple(search.progress),
        margin=margin,
        encode=None if chain is None else chain.spec,
        quality=search.best_quality,
        fell_back=fell_back,
    )
