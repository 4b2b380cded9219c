"""Cuckoo hash tables with ``k >= 2`` hash functions and a stash.

Each item may sit in one of ``k`` buckets chosen by keyed hashes of the item,
or in a small stash; a bucket holds one item. The :class:`CuckooLayout` (bucket
count, ``k``, stash size and the public seed keying the hash functions) is all
a lookup needs, so a server can publish it and a client can compute an item's
candidate positions without seeing the table (Pagh and Rodler 2004; the stash
is that of Kirsch, Mitzenmacher and Wieder 2009).

Insertion is the random walk: place an item in a free candidate bucket if
there is one, otherwise evict a random occupant and reinsert it, up to
``max_kicks`` evictions, after which the homeless item goes to the stash. If
the stash overflows, the table is rebuilt with a fresh seed. With ``k = 2`` a
load factor below 0.5 succeeds with high probability; with ``k = 3`` below
about 0.9.

The bucket hash is keyed BLAKE2b, truncated to 64 bits per function and
reduced modulo the bucket count (bias below ``num_buckets / 2^64``).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError

_PERSON = b"e2escan-cuckoo"
SEED_BYTES = 16


@dataclass(frozen=True, slots=True)
class CuckooLayout:
    """Everything needed to compute where an item may be: public, shipped to clients."""

    num_buckets: int
    num_hashes: int
    stash_size: int
    seed: bytes

    def __post_init__(self) -> None:
        if self.num_buckets < 1:
            raise ConfigError(f"cuckoo num_buckets must be >= 1, got {self.num_buckets}")
        if not 2 <= self.num_hashes <= 8:
            raise ConfigError(f"cuckoo num_hashes must be in 2..8, got {self.num_hashes}")
        if self.stash_size < 0:
            raise ConfigError(f"cuckoo stash_size must be >= 0, got {self.stash_size}")
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_BYTES:
            raise ConfigError(f"cuckoo seed must be {SEED_BYTES} bytes")

    @property
    def num_cells(self) -> int:
        """Buckets plus stash slots: the number of entries a blinded table carries."""
        return self.num_buckets + self.stash_size

    def positions(self, item: bytes) -> tuple[int, ...]:
        """The ``num_hashes`` candidate bucket indices of ``item`` (may repeat)."""
        digest = hashlib.blake2b(item, digest_size=8 * self.num_hashes, key=self.seed, person=_PERSON).digest()
        m = self.num_buckets
        return tuple(int.from_bytes(digest[8 * j : 8 * j + 8], "little") % m for j in range(self.num_hashes))

    def candidate_cells(self, item: bytes) -> tuple[int, ...]:
        """Cell indices to probe for ``item``: its buckets, then every stash slot."""
        return self.positions(item) + tuple(range(self.num_buckets, self.num_cells))


class CuckooTable:
    """A built table: ``cells[i]`` is the index (into the inserted items) stored there, or ``None``.

    Cells ``0 .. num_buckets - 1`` are buckets; the last ``stash_size`` cells
    are the stash.
    """

    __slots__ = ("attempts", "cells", "items", "layout")

    def __init__(self, layout: CuckooLayout, items: Sequence[bytes], cells: list[int | None], attempts: int) -> None:
        self.layout = layout
        self.items = items
        self.cells = cells
        self.attempts = attempts

    @classmethod
    def build(
        cls,
        items: Sequence[bytes],
        *,
        num_hashes: int = 2,
        load: float = 0.45,
        stash_size: int = 4,
        seed: bytes | None = None,
        max_kicks: int = 500,
        max_attempts: int = 16,
    ) -> CuckooTable:
        """Insert distinct ``items`` into ``ceil(len(items) / load)`` buckets.

        ``seed`` keys the hash functions (random from the OS when omitted). A
        failed build (stash overflow) retries with a seed derived from the
        previous one; after ``max_attempts`` failures raises :class:`ConfigError`.
        """
        if not 0.0 < load <= 1.0:
            raise ConfigError(f"cuckoo load factor must be in (0, 1], got {load}")
        if len(set(items)) != len(items):
            raise ConfigError("cuckoo table items must be distinct (deduplicate the database first)")
        num_buckets = max(1, math.ceil(len(items) / load))
        seed = os.urandom(SEED_BYTES) if seed is None else seed
        for attempt in range(1, max_attempts + 1):
            layout = CuckooLayout(num_buckets, num_hashes, stash_size, seed)
            cells = _insert_all(layout, items, max_kicks)
            if cells is not None:
                return cls(layout, items, cells, attempt)
            seed = hashlib.blake2b(seed, digest_size=SEED_BYTES, person=b"e2escan-reseed").digest()
        raise ConfigError(
            f"cuckoo table: could not place {len(items)} items in {num_buckets} buckets with "
            f"{num_hashes} hash functions and a stash of {stash_size} after {max_attempts} attempts; "
            "lower the load factor or enlarge the stash"
        )

    @property
    def load_factor(self) -> float:
        """Items per bucket (stash items included), the quantity the build was sized for."""
        return len(self.items) / self.layout.num_buckets

    @property
    def stash_used(self) -> int:
        return sum(c is not None for c in self.cells[self.layout.num_buckets :])

    def find(self, item: bytes) -> int | None:
        """The cell holding ``item``, or ``None`` (probes only the item's candidate cells)."""
        for cell in self.layout.candidate_cells(item):
            idx = self.cells[cell]
            if idx is not None and self.items[idx] == item:
                return cell
        return None

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        lay = self.layout
        return (
            f"CuckooTable(items={len(self.items)}, buckets={lay.num_buckets}, hashes={lay.num_hashes}, "
            f"stash={self.stash_used}/{lay.stash_size}, load={self.load_factor:.3f})"
        )


def _insert_all(layout: CuckooLayout, items: Sequence[bytes], max_kicks: int) -> list[int | None] | None:
    # The eviction choices only affect where items land, never correctness, so a
    # seeded non-cryptographic PRNG keeps builds reproducible for a given seed.
    walk = random.Random(layout.seed)
    nb = layout.num_buckets
    buckets: list[int | None] = [None] * nb
    positions = [layout.positions(it) for it in items]
    stash: list[int] = []
    for start in range(len(items)):
        current = start
        came_from = -1  # the bucket the current item was just evicted from
        for _ in range(max_kicks + 1):
            cand = positions[current]
            free = next((b for b in cand if buckets[b] is None), None)
            if free is not None:
                buckets[free] = current
                current = -1
                break
            # Never evict straight back into the bucket we came from: with two functions
            # that would undo the last move half of the time and lengthen walks enormously.
            options = [b for b in cand if b != came_from] or list(cand)
            victim_bucket = options[walk.randrange(len(options))]
            buckets[victim_bucket], current = current, buckets[victim_bucket]  # type: ignore[assignment]
            came_from = victim_bucket
        if current != -1:
            if len(stash) == layout.stash_size:
                return None
            stash.append(current)
    cells: list[int | None] = buckets + [None] * layout.stash_size
    for j, idx in enumerate(stash):
        cells[nb + j] = idx
    return cells
