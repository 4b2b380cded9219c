"""Perceptual hashing: packed hash types, hashers, Hamming search, threshold selection.

The hash evaluation (``e2escan hash-eval``) lives in :mod:`e2escan.hashing.evaluation`
and :mod:`e2escan.hashing.eval_report`; they import :mod:`e2escan.images` and
matplotlib, so they are not imported here.

Bit order everywhere: ``np.packbits`` order (bit 0 is the most significant
bit of byte 0); see :mod:`e2escan.hashing.types`.
"""

from __future__ import annotations

from .batch import hash_many
from .hashers import (
    BUILT_IN_HASHERS,
    HASHER_ENTRY_POINT_GROUP,
    HASHERS,
    AverageHasher,
    BlockMeanHasher,
    ColorHasher,
    DctHasher,
    DifferenceHasher,
    Hasher,
    PdqHasher,
    WaveletHasher,
    get_hasher,
    hasher_origin,
    parse_hasher_specs,
    register,
    unregister,
)
from .index import HammingIndex, RadiusResult, knn_brute_force, radius_brute_force
from .thresholds import TAIL_MODELS, TailFit, empirical_threshold, fit_lower_tail
from .types import HashArray, PerceptualHash

__all__ = [
    "BUILT_IN_HASHERS",
    "HASHER_ENTRY_POINT_GROUP",
    "HASHERS",
    "TAIL_MODELS",
    "AverageHasher",
    "BlockMeanHasher",
    "ColorHasher",
    "DctHasher",
    "DifferenceHasher",
    "HammingIndex",
    "HashArray",
    "Hasher",
    "PdqHasher",
    "PerceptualHash",
    "RadiusResult",
    "TailFit",
    "WaveletHasher",
    "empirical_threshold",
    "fit_lower_tail",
    "get_hasher",
    "hasher_origin",
    "register",
    "unregister",
    "hash_many",
    "knn_brute_force",
    "parse_hasher_specs",
    "radius_brute_force",
]
