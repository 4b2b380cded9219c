"""Radius-query results in CSR form (:class:`RadiusResult`) and how backends assemble them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RadiusResult(Sequence[np.ndarray]):
    """Radius-query results in CSR form; ``result[i]`` is the index array of query ``i``.

    ``offsets`` has ``n_queries + 1`` entries; the matches of query ``i`` are
    ``flat_indices[offsets[i]:offsets[i + 1]]`` (ascending) with distances
    ``flat_distances[...]`` at the same positions. ``stats`` says how many
    queries each backend answered and how many candidates were verified.
    """

    offsets: np.ndarray
    flat_indices: np.ndarray
    flat_distances: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        if not isinstance(i, (int, np.integer)):
            raise TypeError("RadiusResult indices must be integers")
        i = int(i) + (len(self) if i < 0 else 0)
        return self.flat_indices[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def distances(self, i: int) -> np.ndarray:
        """Distances of query ``i``'s matches, aligned with ``result[i]``."""
        i = int(i) + (len(self) if i < 0 else 0)
        return self.flat_distances[self.offsets[i] : self.offsets[i + 1]]

    @property
    def counts(self) -> np.ndarray:
        """Number of matches of each query (``int64``, one entry per query)."""
        return np.diff(self.offsets)


def assemble_radius_result(n_queries: int, n_db: int, qids: np.ndarray, ids: np.ndarray, dists: np.ndarray,
                           *, dedupe: bool, stats: dict[str, Any]) -> RadiusResult:
    """The CSR result of (query id, database index, distance) triples, sorted by (query, index).

    ``dedupe`` drops repeated (query, index) pairs (the multi-index path finds
    a hash once per matching substring); without it the triples must already
    be distinct.
    """
    key = qids.astype(np.int64) * np.int64(n_db) + ids.astype(np.int64)
    if dedupe:
        key, first = np.unique(key, return_index=True)
        dists = dists[first]
    elif key.size > 1 and np.any(key[1:] < key[:-1]):
        order = np.argsort(key, kind="stable")
        key, dists = key[order], dists[order]
    q_sorted = key // np.int64(n_db) if n_db else key
    offsets = np.searchsorted(q_sorted, np.arange(n_queries + 1), side="left").astype(np.int64)
    flat_ids = key - q_sorted * np.int64(n_db)
    return RadiusResult(offsets, flat_ids, dists.astype(np.int64, copy=False), stats)
