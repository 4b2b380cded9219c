"""HammingIndex returns exactly the brute-force answers, in every mode."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.errors import ConfigError, HashError
from e2escan.hashing import HashArray
from e2escan.hashing.index import HammingIndex, knn_brute_force, radius_brute_force

MODES = ["auto", "scan", "multi"] + (["faiss"] if importlib.util.find_spec("faiss") else [])


def _near_copies(db: HashArray, rng: np.random.Generator, n: int, flip_prob: float) -> HashArray:
    rows = db.data[rng.integers(0, len(db), n)]
    bits = np.unpackbits(rows, axis=1)
    bits ^= (rng.random(bits.shape) < flip_prob).astype(np.uint8)
    return HashArray(np.packbits(bits, axis=1))


def _queries(db: HashArray, rng: np.random.Generator) -> HashArray:
    """Exact copies, near copies at several distances and unrelated hashes."""
    return HashArray.concatenate(
        [
            db[rng.integers(0, len(db), 3)],
            _near_copies(db, rng, 6, 0.03),
            _near_copies(db, rng, 6, 0.12),
            HashArray.random(5, db.bits, rng),
        ]
    )


def _assert_radius_equal(index: HammingIndex, db: HashArray, queries: HashArray, r: int) -> None:
    got = index.radius(queries, r)
    expected = radius_brute_force(db, queries, r)
    assert len(got) == len(expected)
    for j, ref in enumerate(expected):
        np.testing.assert_array_equal(got[j], ref, err_msg=f"mode={index.mode} r={r} query={j}")
        np.testing.assert_array_equal(got.distances(j), db.distances_to(queries[j])[ref])
    np.testing.assert_array_equal(got.counts, [e.size for e in expected])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("bits", "n", "substring_bits"), [(64, 700, None), (256, 400, None), (72, 300, 8), (256, 600, 16), (64, 300, 32)])
def test_radius_matches_brute_force(mode, bits, n, substring_bits):
    rng = np.random.default_rng(bits * 1000 + n)
    db = HashArray.random(n, bits, rng)
    db = HashArray.concatenate([db, db[:5]])  # duplicate hashes must all be reported
    queries = _queries(db, rng)
    index = HammingIndex(db, mode, substring_bits=substring_bits if mode in ("auto", "multi") else None)
    for r in sorted({0, 1, 2, bits // 16, bits // 8, bits // 4, bits // 2, bits - 1, bits, bits + 5}):
        _assert_radius_equal(index, db, queries, r)


@pytest.mark.parametrize("mode", MODES)
def test_knn_matches_brute_force_with_ties(mode):
    rng = np.random.default_rng(3)
    base = HashArray.random(60, 64, rng)
    # Many exact duplicates and near duplicates create distance ties, broken by index.
    db = HashArray.concatenate([base, base[:20], _near_copies(base, rng, 80, 0.02), base[:10]])
    queries = HashArray.concatenate([base[:4], _near_copies(base, rng, 5, 0.05), HashArray.random(4, 64, rng)])
    index = HammingIndex(db, mode)
    for k in [1, 2, 5, 17, len(db)]:
        got_idx, got_dist = index.knn(queries, k)
        ref_idx, ref_dist = knn_brute_force(db, queries, k)
        np.testing.assert_array_equal(got_idx, ref_idx, err_msg=f"mode={mode} k={k}")
        np.testing.assert_array_equal(got_dist, ref_dist)


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from([16, 64, 128]),
    st.integers(1, 120),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["auto", "scan", "multi"]),
    st.integers(0, 130),
)
def test_radius_property(bits, n, seed, mode, r):
    rng = np.random.default_rng(seed)
    # Low-entropy hashes (few distinct byte values) make crowded buckets and many ties.
    db = HashArray(rng.choice(np.array([0, 1, 128, 255], dtype=np.uint8), size=(n, bits // 8)))
    queries = HashArray.concatenate([db[: min(3, n)], HashArray.random(3, bits, rng)])
    index = HammingIndex(db, mode)
    _assert_radius_equal(index, db, queries, r)
    k = int(rng.integers(1, n + 1))
    got = index.knn(queries, k)
    ref = knn_brute_force(db, queries, k)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_auto_routes_crowded_queries_to_scan():
    rng = np.random.default_rng(0)
    db = HashArray.concatenate([HashArray(np.zeros((9000, 32), dtype=np.uint8)), HashArray.random(1000, 256, rng)])
    index = HammingIndex(db, "auto")
    assert index.substring_bits == 16 and index.m == 16
    queries = HashArray.concatenate([db[:1], db[9500:9501]])
    result = index.radius(queries, 31)
    assert result.stats["scan_queries"] == 1 and result.stats["multi_queries"] == 1
    _assert_radius_equal(index, db, queries, 31)
    # A radius so large that probing alone costs more than a scan goes straight to the scan.
    wide = index.radius(queries, 200)
    assert wide.stats["scan_queries"] == 2


def test_single_hash_query_and_empty_inputs():
    rng = np.random.default_rng(1)
    db = HashArray.random(50, 64, rng)
    index = HammingIndex(db)
    assert list(index.radius(db[7], 0)[0]) == [7]
    empty_q = HashArray.from_hashes([], bits=64)
    assert len(index.radius(empty_q, 3)) == 0
    assert index.knn(empty_q, 2)[0].shape == (0, 2)
    empty_db = HammingIndex(HashArray.from_hashes([], bits=64))
    assert empty_db.radius(db[:2], 64).counts.tolist() == [0, 0]


def test_index_argument_errors():
    rng = np.random.default_rng(2)
    db = HashArray.random(20, 64, rng)
    with pytest.raises(ConfigError, match="mode must be one of"):
        HammingIndex(db, "fast")
    with pytest.raises(ConfigError, match="substring_bits must be 8, 16 or 32"):
        HammingIndex(db, substring_bits=12)
    with pytest.raises(ConfigError, match="does not divide"):
        HammingIndex(HashArray.random(4, 72, rng), substring_bits=16)
    index = HammingIndex(db)
    with pytest.raises(HashError, match="256 bits but the index holds 64-bit"):
        index.radius(HashArray.random(1, 256, rng), 3)
    with pytest.raises(ConfigError, match="radius must be an int >= 0"):
        index.radius(db, -1)
    with pytest.raises(ConfigError, match="k must be an int in 1..20"):
        index.knn(db, 21)
    with pytest.raises(ConfigError, match="k must be"):
        index.knn(db, 0)
