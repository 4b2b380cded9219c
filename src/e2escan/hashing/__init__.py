"""Perceptual hashing: packed hash types, hashers, Hamming search.

Bit order everywhere: ``np.packbits`` order (bit 0 is the most significant
bit of byte 0); see :mod:`e2escan.hashing.types`.
"""

from __future__ import annotations

from .batch import hash_many
from .hashers import (
    HASHERS,
    AverageHasher,
    DctHasher,
    DifferenceHasher,
    Hasher,
    PdqHasher,
    WaveletHasher,
    get_hasher,
    parse_hasher_specs,
)
from .types import HashArray, PerceptualHash

__all__ = [
    "HASHERS",
    "AverageHasher",
    "DctHasher",
    "DifferenceHasher",
    "HashArray",
    "Hasher",
    "PdqHasher",
    "PerceptualHash",
    "WaveletHasher",
    "get_hasher",
    "hash_many",
    "parse_hasher_specs",
]
