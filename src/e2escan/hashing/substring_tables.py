"""The substring tables of multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012 / TPAMI 2014).

Each hash is cut into ``m`` disjoint substrings of ``w`` bits. If two hashes
differ in at most ``r`` bits, at least one substring differs in at most
``s = r // m`` bits (pigeonhole). :class:`SubstringTables` keeps, for every
substring position, the database row ids sorted by substring value, and
returns the buckets within ``s`` bits of a query's substrings; the caller
(:class:`~e2escan.hashing.HammingIndex`) verifies those candidates exactly.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from ._popcount import HAS_BITWISE_COUNT, popcount_u8


def substrings(data: np.ndarray, width: int) -> np.ndarray:
    """``(n, m)`` ``uint32`` substring values of ``width`` bits (big-endian, as packed)."""
    n = data.shape[0]
    if width == 8:
        return data.astype(np.uint32)
    dtype = {16: ">u2", 32: ">u4"}[width]
    keys: np.ndarray = np.ascontiguousarray(data).view(dtype).reshape(n, -1).astype(np.uint32)
    return keys


def n_masks(width: int, s: int) -> int:
    """Number of ``width``-bit values with at most ``s`` bits set (probes per substring at radius ``s``)."""
    return sum(math.comb(width, t) for t in range(min(s, width) + 1))


@functools.lru_cache(maxsize=32)
def _flip_masks(width: int, s: int) -> np.ndarray:
    """All ``width``-bit values with at most ``s`` bits set (the probe offsets), popcount-ordered.

    Callers only ask for short lists (see ``SubstringTables.probes``).
    """
    s = min(s, width)
    out: np.ndarray
    if width <= 16:
        values = np.arange(1 << width, dtype=np.uint32)
        pops = popcount_u8(values.view(np.uint8).reshape(-1, 4)).sum(axis=1)
        keep = pops <= s
        out = values[keep][np.argsort(pops[keep], kind="stable")]
    else:
        masks = [0]
        for t in range(1, s + 1):
            masks.extend(sum(1 << b for b in bits) for bits in itertools.combinations(range(width), t))
        out = np.array(masks, dtype=np.uint32)
    out.flags.writeable = False  # cached and shared
    return out


class SubstringTables:
    """For each of ``m`` substrings: row ids sorted by substring value, and where each value's bucket starts.

    Table ``j`` occupies ``ids[j * n:(j + 1) * n]``. Buckets are found either
    by enumerating every value within ``s`` bits of the query's substring
    (``probe``: a dense offsets table for ``w <= 16``, binary search for
    ``w = 32``) or, when that enumeration would be longer than the list of
    distinct values present, by testing each distinct value directly.
    """

    def __init__(self, data: np.ndarray, width: int) -> None:
        self.width = width
        self.m = int(data.shape[1]) * 8 // width
        self.n = n = int(data.shape[0])
        keys = substrings(data, width)
        # Stable sort: within a bucket ids stay ascending (deterministic, cache friendly).
        order = np.argsort(keys, axis=0, kind="stable")
        self.ids = np.ascontiguousarray(order.T).reshape(-1).astype(np.int32)
        sorted_keys = np.take_along_axis(keys, order, axis=0).T  # (m, n)
        self.offsets: np.ndarray | None = None
        self.sorted_keys: np.ndarray | None = None
        if width <= 16:
            size = 1 << width
            offsets = np.empty((self.m, size + 1), dtype=np.int64)
            for j in range(self.m):
                offsets[j, 0] = 0
                np.cumsum(np.bincount(keys[:, j], minlength=size), out=offsets[j, 1:])
                offsets[j] += j * n
            self.offsets = offsets.reshape(-1)
        else:
            self.sorted_keys = np.ascontiguousarray(sorted_keys)
        # Distinct values per table with their bucket start and length.
        self.distinct: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for j in range(self.m):
            col = sorted_keys[j]
            first = np.flatnonzero(np.r_[True, col[1:] != col[:-1]]) if n else np.empty(0, dtype=np.int64)
            lengths = np.diff(np.r_[first, n])
            self.distinct.append((col[first].astype(np.uint32), first.astype(np.int64) + j * n, lengths))

    @property
    def min_distinct(self) -> int:
        """Fewest distinct substring values in any one table."""
        return min(int(d[0].size) for d in self.distinct)

    def probes(self, qkeys: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-empty buckets within ``s`` bits of each query substring.

        Returns flat arrays ``(query row, start in ids, length)``; a row id may
        appear in several buckets (one per substring that matches).
        """
        if n_masks(self.width, s) <= self.min_distinct:
            starts, ends = self._enumerate(qkeys, _flip_masks(self.width, s))
            q = np.broadcast_to(np.arange(qkeys.shape[0])[:, None, None], starts.shape).reshape(-1)
            starts, lengths = starts.reshape(-1), (ends - starts).reshape(-1)
        else:
            q, starts, lengths = self._filter_distinct(qkeys, s)
        keep = lengths > 0
        return q[keep].astype(np.int64), starts[keep], lengths[keep]

    def _enumerate(self, qkeys: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probes = qkeys[:, :, None] ^ masks[None, None, :]
        if self.offsets is not None:
            table_base = np.arange(self.m, dtype=np.int64) * ((1 << self.width) + 1)
            flat = probes.astype(np.int64) + table_base[None, :, None]
            return self.offsets[flat], self.offsets[flat + 1]
        assert self.sorted_keys is not None
        starts = np.empty(probes.shape, dtype=np.int64)
        ends = np.empty(probes.shape, dtype=np.int64)
        for j in range(self.m):
            col = self.sorted_keys[j]
            starts[:, j] = np.searchsorted(col, probes[:, j], side="left") + j * self.n
            ends[:, j] = np.searchsorted(col, probes[:, j], side="right") + j * self.n
        return starts, ends

    def _filter_distinct(self, qkeys: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        qs, starts, lengths = [], [], []
        for j, (values, first, count) in enumerate(self.distinct):
            near = np.bitwise_count(qkeys[:, j, None] ^ values[None, :]) if HAS_BITWISE_COUNT else (
                popcount_u8((qkeys[:, j, None] ^ values[None, :]).view(np.uint8).reshape(qkeys.shape[0], -1, 4)).sum(-1)
            )
            q, u = np.nonzero(near <= s)
            qs.append(q)
            starts.append(first[u])
            lengths.append(count[u])
        return np.concatenate(qs), np.concatenate(starts), np.concatenate(lengths)

    def bucket_members(self, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Row ids held by the buckets ``ids[starts[i]:starts[i] + lengths[i]]``, concatenated in order."""
        members: np.ndarray = self.ids[_expand_ranges(starts, lengths)]
        return members

    def n_probes(self, s: int) -> int:
        """Bucket lookups per query at substring radius ``s``."""
        return self.m * min(n_masks(self.width, s), self.min_distinct)

    @property
    def nbytes(self) -> int:
        """Bytes held by the tables (row ids, offsets or sorted keys, distinct values)."""
        lookup = self.offsets if self.offsets is not None else self.sorted_keys
        assert lookup is not None
        return int(self.ids.nbytes + lookup.nbytes + sum(sum(a.nbytes for a in d) for d in self.distinct))


def _expand_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(starts[i], starts[i] + lengths[i])`` for all ``i`` without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(starts - (ends - lengths), lengths)
    positions: np.ndarray = np.arange(total, dtype=np.int64) + shift
    return positions
