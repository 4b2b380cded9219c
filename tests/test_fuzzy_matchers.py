"""The fuzzy variants' plaintext matchers and opening counts (HammingIndex) equal their brute-force oracles."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.errors import ProtocolError
from e2escan.hashing import HashArray, PerceptualHash, radius_brute_force
from e2escan.protocols import get_protocol, multiprobe_matches


def _flip(h: PerceptualHash, positions: np.ndarray) -> PerceptualHash:
    bits = h.to_bits().copy()
    bits[positions] ^= 1
    return PerceptualHash.from_bits(bits)


def _database_and_queries(seed: int, n: int, bits: int, positions: list[int]) -> tuple[HashArray, list[PerceptualHash]]:
    """A database with duplicates and near pairs; queries edited inside the probed bits, outside them, or unrelated."""
    rng = np.random.default_rng(seed)
    db = HashArray.random(n, bits, rng)
    near = [_flip(db[int(i)], rng.choice(bits, 1)) for i in rng.integers(0, n, 3)]
    db = HashArray.concatenate([db, db[: min(3, n)], HashArray.from_hashes(near)])
    queries: list[PerceptualHash] = []
    for i in rng.integers(0, len(db), 12):
        h = db[int(i)]
        inside = rng.choice(positions, rng.integers(0, len(positions) + 1), replace=False) if positions else []
        queries.append(_flip(h, np.asarray(inside, dtype=np.int64)))
        queries.append(_flip(h, rng.choice(bits, rng.integers(1, 4), replace=False)))
    queries.extend(HashArray.random(4, bits, rng))
    return db, queries


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    bits=st.sampled_from([8, 16, 64, 256]),
    probe_bits=st.integers(0, 6),
    shuffle_order=st.booleans(),
)
def test_multiprobe_matcher_and_openings_equal_the_oracle(seed, n, bits, probe_bits, shuffle_order) -> None:
    probe_bits = min(probe_bits, bits)
    order = tuple(int(b) for b in np.random.default_rng(seed + 1).permutation(bits)) if shuffle_order else ()
    positions = list((order or tuple(range(bits)))[:probe_bits])
    db, queries = _database_and_queries(seed, n, bits, positions)
    proto = get_protocol("tpsi-ad-multiprobe")
    params = proto.Params(probe_bits=probe_bits, probe_order=order)
    matcher = proto.plaintext_matcher(db, params)
    openings = proto.expected_openings(db, params)
    members = {row.tobytes() for row in db.data}
    masks = [np.packbits(np.isin(np.arange(bits), subset).astype(np.uint8))
             for w in range(len(positions) + 1) for subset in combinations(positions, w)]
    for h in queries:
        match, nearest = matcher(h)
        assert match == multiprobe_matches(db, h.data, positions)
        assert nearest == int(db.distances_to(h).min())
        base = np.frombuffer(h.data, dtype=np.uint8)
        opened = sum((base ^ m).tobytes() in members for m in masks)  # distinct probes that are database hashes
        assert openings(h, match) == (opened if match else 0)
        assert (opened > 0) == match


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), radius=st.integers(0, 3))
def test_ball_matcher_equals_the_brute_force_radius_search(seed, n, radius) -> None:
    db, queries = _database_and_queries(seed, n, 64, [0, 1, 2])
    proto = get_protocol("tpsi-ad-ball")
    matcher = proto.plaintext_matcher(db, proto.Params(radius=radius))
    within = radius_brute_force(db, HashArray.from_hashes(queries), radius)
    for h, hits in zip(queries, within, strict=True):
        assert matcher(h) == (hits.size > 0, int(db.distances_to(h).min()))


def test_multiprobe_matcher_names_a_probe_order_outside_the_hash() -> None:
    proto = get_protocol("tpsi-ad-multiprobe")
    db = HashArray.random(4, 64, np.random.default_rng(0))
    with pytest.raises(ProtocolError, match="probe_order names bit 70 of a 64-bit hash"):
        proto.plaintext_matcher(db, proto.Params(probe_bits=2, probe_order=(3, 70)))
