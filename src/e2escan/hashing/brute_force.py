"""The brute-force Hamming search: the specification every :class:`~e2escan.hashing.HammingIndex` backend must equal.

Deliberately the plainest possible code (one full distance row per query);
tests compare the index against it, and nothing on a fast path calls it.
"""

from __future__ import annotations

import numpy as np

from .types import HashArray


def radius_brute_force(db: HashArray, queries: HashArray, r: int) -> list[np.ndarray]:
    """Indices (ascending) of all ``db`` hashes within Hamming distance ``r`` of each query."""
    return [np.flatnonzero(db.distances_to(q) <= r) for q in queries]


def knn_brute_force(db: HashArray, queries: HashArray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest ``db`` hashes of each query, ordered by (distance, index)."""
    idx = np.empty((len(queries), k), dtype=np.int64)
    dist = np.empty((len(queries), k), dtype=np.int64)
    for i, q in enumerate(queries):
        d = db.distances_to(q)
        order = np.lexsort((np.arange(d.size), d))[:k]
        idx[i], dist[i] = order, d[order]
    return idx, dist
