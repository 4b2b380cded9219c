"""Bit counting on packed ``uint8`` arrays.

``np.bitwise_count`` (numpy >= 2.0) maps to the CPU's popcount instruction;
older numpy falls back to a 256-entry lookup table, which gives the same
result more slowly.
"""

from __future__ import annotations

import numpy as np

_POPCOUNT_TABLE = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)

HAS_BITWISE_COUNT: bool = hasattr(np, "bitwise_count")


def popcount_u8(a: np.ndarray) -> np.ndarray:
    """Number of set bits of each element of a ``uint8`` array (same shape, ``uint8``)."""
    # numpy's stubs type a ufunc or fancy-index result on an untyped array as Any; it is an array.
    counts: np.ndarray = np.bitwise_count(a) if HAS_BITWISE_COUNT else _POPCOUNT_TABLE[a]
    return counts


def popcount_rows(a: np.ndarray) -> np.ndarray:
    """Set bits per row of a 2-D ``uint8`` array, as ``int64`` of shape ``(n,)``.

    Rows are viewed as 64-bit words when the width allows, because counting
    one word costs the same as counting one byte.
    """
    if a.ndim != 2:
        raise ValueError(f"popcount_rows expects a 2-D array, got shape {a.shape}")
    counts: np.ndarray
    if a.shape[1] % 8 == 0 and a.shape[1] > 0 and HAS_BITWISE_COUNT:
        words = np.ascontiguousarray(a).view(np.uint64)
        counts = np.bitwise_count(words).sum(axis=1, dtype=np.int64)
    else:
        counts = popcount_u8(a).sum(axis=1, dtype=np.int64)
    return counts
