"""False flags by collision: craft innocent-looking images whose hashes match database entries.

An attacker who knows (or guesses) a database hash perturbs an innocent
image until its hash lies within the match radius of that hash, a targeted
second preimage in the sense of Struppek et al. (NeuralHash, FAccT 2022) and
Prokos et al. ("Squint Hard Enough", USENIX Security 2023, PDQ and
PhotoDNA). Sent to a target whose images are scanned, each such image counts
as a match; enough of them push the target's account over the reporting
threshold. :func:`collide` crafts one image; :func:`targeted_flag_probability`
turns a per-image success rate into the probability that a targeted account
is flagged.

:func:`collide` reuses the search of :mod:`e2escan.attacks.search` with the
objective "minus the Hamming distance to the target": the black-box NES
search by default, or the white-box DCT model for pHash and PDQ, where the
desired bits are the target's (falling back to the black-box search when
the model's hash of the innocent image differs from the library's), under
the same rules (:mod:`e2escan.attacks.search`); ``margin`` aims inside the radius.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..hashing import Hasher, PerceptualHash
from ..images.quality import psnr
from ..metrics import false_flag_probability
from ..metrics.probability import binomial_pmf, check_probability
from .evasion import BlackBoxParams, Method, check_attack_arguments, check_margin, parse_encode, run_method
from .search import HashSearch

__all__ = ["CollisionResult", "collide", "targeted_flag_probability"]


@dataclass(frozen=True, eq=False)
class CollisionResult:
    """Outcome of :func:`collide`.

    ``image`` is the best acceptable image found (SSIM with the innocent
    original >= ``min_ssim``), or the original itself; ``distance`` is the
    Hamming distance from its hash (``final_hash``) to ``target`` and
    ``initial_distance`` the original's. ``success`` means ``distance <=
    radius``. ``queries`` counts every hash computation, the original's
    included; ``progress`` lists ``(queries, distance)`` each time the best
    acceptable distance fell (:meth:`queries_to_reach`).

    With ``encode``, ``final_hash``, ``distance`` and ``initial_distance``
    are those after the encoding round trip (what the recipient's scanner
    hashes) and ``image`` is the image before it. ``quality`` is PDQ's
    quality score of ``final_hash`` (None for other hashers); ``success``
    requires it to be at least 50. ``fell_back``: the white-box model
    disagreed with the library on the innocent image and NES ran instead.
    """

    image: Image.Image
    target: PerceptualHash
    final_hash: PerceptualHash
    distance: int
    initial_distance: int
    queries: int
    ssim: float
    psnr: float
    success: bool
    radius: int
    min_ssim: float
    method: str
    progress: tuple[tuple[int, int], ...]
    margin: int = 0
    encode: str | None = None
    quality: int | None = None
    fell_back: bool = False

    def queries_to_reach(self, radius: int) -> int | None:
        """Queries spent when the best acceptable image first came within ``radius`` of the target; None if never."""
        for queries, distance in self.progress:
            if distance <= radius:
                return queries
        return None


def collide(
    image: Any,
    target: PerceptualHash,
    hasher: Hasher,
    *,
    radius: int,
    max_queries: int = 2000,
    min_ssim: float = 0.8,
    rng: np.random.Generator,
    method: Method = "blackbox",
    params: BlackBoxParams | None = None,
    encode: str | None = None,
    margin: int = 0,
) -> CollisionResult:
    """Perturb ``image`` until its hash is within ``radius`` bits of ``target``.

    A scanner that matches at Hamming distance ``<= T`` is fooled with
    ``radius = T``. The search stops at the first usable image (SSIM with
    ``image`` at least ``min_ssim``, pass -1 for no bound; for PDQ, quality
    at least 50) within ``radius - margin`` of the target, or after
    ``max_queries`` hash computations; it succeeds within ``radius``.
    ``method``, ``params`` and ``encode`` are as for
    :func:`~e2escan.attacks.evasion.evade`. Deterministic for a given
    ``rng`` state.
    """
    check_attack_arguments(hasher, max_queries, min_ssim, rng, method, params)
    if not isinstance(target, PerceptualHash):
        raise ConfigError(f"target must be a PerceptualHash, got {type(target).__name__}")
    if target.bits != hasher.bits:
        raise ConfigError(f"target has {target.bits} bits but {hasher.spec} produces {hasher.bits}-bit hashes")
    if isinstance(radius, bool) or not isinstance(radius, int) or not 0 <= radius < hasher.bits:
        raise ConfigError(f"radius must be an int in 0..{hasher.bits - 1} for {hasher.spec}, got {radius!r}")
    margin = check_margin(margin, radius)
    chain = parse_encode(encode)

    search = HashSearch(image, hasher, goal=-(radius - margin), max_queries=max_queries, min_ssim=min_ssim,
                        encode=chain)  # fmt: skip
    search.start(lambda digest: -digest.distance(target))
    initial_distance = -search.best_score
    fell_back = run_method(search, method, target.to_bits(), params, rng)
    return CollisionResult(
        image=Image.fromarray(search.best_pixels, mode="RGB"),
        target=target,
        final_hash=search.best_hash,
        distance=-search.best_score,
        initial_distance=initial_distance,
        queries=search.queries,
        ssim=search.best_ssim,
        psnr=psnr(search.pixels, search.best_pixels),
        success=search.best_usable and -search.best_score <= radius,
        radius=radius,
        min_ssim=float(min_ssim),
        method=method,
        progress=tuple((q, -score) for q, score in search.progress),
        margin=margin,
        encode=None if chain is None else chain.spec,
        quality=search.best_quality,
        fell_back=fell_back,
    )


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def targeted_flag_probability(
    images_sent: int,
    per_image_success: float,
    threshold: int,
    *,
    innocent_images: int = 0,
    innocent_rate: float = 0.0,
) -> float:
    """Probability that a targeted account reaches the match ``threshold``.

    The attacker sends ``images_sent`` crafted images; each independently
    counts as a match with probability ``per_image_success``. The account
    also holds ``innocent_images`` images of its own, each a false match
    with probability ``innocent_rate`` (independently). With ``X ~
    Bin(images_sent, per_image_success)`` crafted matches and ``Y ~
    Bin(innocent_images, innocent_rate)`` innocent ones, the account is
    flagged when ``X + Y >= threshold``:

        P[flag] = sum_j P[X = j] * P[Y >= threshold - j]

    summed exactly over ``j = 0..images_sent``; the innocent tail is
    :func:`e2escan.metrics.false_flag_probability`. Without innocent images
    it reduces to the binomial tail ``P[X >= threshold]``.

    What ``per_image_success`` should be depends on the attacker. One who
    sends every crafted image regardless uses the measured success rate of
    :func:`collide`; one who checks each image against the (public) hash
    first sends only collisions, and the rate is then the share of those
    that still match after the messenger's processing (recompression,
    resizing) and that land in the scanned set.
    """
    k = _check_count("images_sent", images_sent)
    s = check_probability("per_image_success", per_image_success)
    n = _check_count("innocent_images", innocent_images)
    p = check_probability("innocent_rate", innocent_rate)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)):
        raise ConfigError(f"threshold must be an int, got {threshold!r}")
    t = int(threshold)
    if t <= 0:
        return 1.0
    innocent_tail = np.asarray(false_flag_probability(n, p, t - np.arange(k + 1)), dtype=np.float64)
    return float(min(1.0, np.dot(binomial_pmf(k, s), innocent_tail)))
