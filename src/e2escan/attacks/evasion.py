"""Detection avoidance: perturb an image until its perceptual hash leaves the match radius.

A scanner flags an image when its hash lies within Hamming distance ``T`` of a
database hash. An attacker holding a database image wants a copy that looks
the same but whose hash is at least ``T + 1`` bits away from the original's,
so :func:`evade` takes ``min_distance = T + 1``. Two methods, after Jain,
Crețu and de Montjoye (USENIX Security 2022), who proposed one black-box
attack for any hash and white-box attacks for DCT-based hashes:

``"blackbox"`` (:mod:`e2escan.attacks.blackbox`)
    NES gradient estimates of the distance the hasher itself returns, on a
    smooth perturbation grid; any hash.
``"whitebox"`` (:mod:`e2escan.attacks.whitebox`)
    For pHash and PDQ: pushes the DCT coefficients nearest their median
    across it; when the model's hash of the original differs from the
    library's, it runs the black-box search instead (``EvasionResult.fell_back``).

Both follow the rules of every search-based attack (:mod:`e2escan.attacks.search`):
queries are counted, the returned image meets the SSIM bound, ``encode`` and
``margin`` move the objective, PDQ hashes of quality below
:data:`PDQ_MIN_QUALITY` do not count, and a seed fixes the result. The search
machinery is shared with :mod:`e2escan.attacks.collision`; its names stay
importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..hashing import Hasher, PerceptualHash
from ..images.quality import psnr
from ..images.transforms import TransformChain, parse_chain
from .blackbox import GENERIC_GRID, BlackBoxParams, default_grid, run_nes
from .search import PDQ_MIN_QUALITY, HashSearch
from .whitebox import DctModel, dct_model, model_agrees, run_whitebox, unsupported_whitebox, whitebox_supported

__all__ = [
    "GENERIC_GRID", "METHODS", "PDQ_MIN_QUALITY", "BlackBoxParams", "DctModel", "EvasionResult", "HashSearch",
    "check_attack_arguments", "check_margin", "dct_model", "default_grid", "evade", "model_agrees", "parse_encode",
    "run_method", "run_nes", "run_whitebox", "whitebox_supported",
]

Method = Literal["blackbox", "whitebox"]
METHODS: tuple[str, ...] = ("blackbox", "whitebox")


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


# --- arguments shared with collide -----------------------------------------------------


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
        raise unsupported_whitebox(hasher)


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


# --- running a method, and the entry point ---------------------------------------------------------------


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
