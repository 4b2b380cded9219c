"""The poisoned entries: which hashes the adversary adds, the database that holds them, and what they match.

The matching rule is the protocols' plaintext rule: a hash matches when some
database hash lies within Hamming distance ``radius`` of it. Every distance
here is found by :class:`~e2escan.hashing.HammingIndex` (exact; its
brute-force oracle is the specification).
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ...hashing import HammingIndex, HashArray

__all__ = ["choose_poison", "matches_any", "poisoned_database"]


def matches_any(entries: HashArray, queries: HashArray, radius: int) -> np.ndarray:
    """``True`` where a query is within ``radius`` of some entry: the protocols' plaintext matching rule."""
    if len(entries) == 0 or len(queries) == 0:
        return np.zeros(len(queries), dtype=bool)
    if entries.bits != queries.bits:
        raise ConfigError(f"matches_any: entries have {entries.bits} bits, queries {queries.bits}")
    return HammingIndex(entries, threads=1).radius(queries, radius).counts > 0


def choose_poison(candidates: HashArray, budget: int, radius: int) -> HashArray:
    """Greedy maximum coverage: up to ``budget`` candidate hashes covering most candidates within ``radius``.

    Each step takes the candidate whose radius-ball holds the most candidates
    not yet covered (ties: the first in order), so the result is deterministic.
    Stops early once every candidate is covered: further entries would be wasted.
    """
    if budget < 0:
        raise ConfigError(f"choose_poison: budget must be >= 0, got {budget}")
    if radius < 0:
        raise ConfigError(f"choose_poison: radius must be >= 0, got {radius}")
    if budget == 0 or len(candidates) == 0:
        return HashArray(np.zeros((0, candidates.nbytes_per_hash), dtype=np.uint8))
    balls = HammingIndex(candidates, threads=1).radius(candidates, radius)
    cover = np.zeros((len(candidates), len(candidates)), dtype=bool)  # cover[i, j]: j lies in i's ball
    cover[np.repeat(np.arange(len(candidates)), balls.counts), balls.flat_indices] = True
    gain = cover.sum(axis=1)
    uncovered = np.ones(len(candidates), dtype=bool)
    chosen: list[int] = []
    while len(chosen) < budget and uncovered.any():
        best = int(np.argmax(gain))
        chosen.append(best)
        newly = cover[best] & uncovered
        uncovered &= ~newly
        gain -= cover[:, newly].sum(axis=1)
    return candidates[np.array(chosen, dtype=np.int64)]


def poisoned_database(poison: HashArray, size: int, rng: np.random.Generator) -> HashArray:
    """``size`` entries: the poison plus uniformly random stand-ins for the genuine entries, shuffled."""
    if size < len(poison):
        raise ConfigError(f"poisoned_database: size = {size} cannot hold {len(poison)} poisoned entries")
    genuine = HashArray.random(size - len(poison), poison.bits, rng)
    both = HashArray.concatenate([genuine, poison]) if len(poison) else genuine
    return both[rng.permutation(size)]
