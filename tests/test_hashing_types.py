"""Packed hash types: bit order, codecs and the Hamming metric."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.errors import HashError
from e2escan.hashing import HashArray, PerceptualHash

BIT_LENGTHS = st.sampled_from([8, 16, 64, 72, 144, 256])


@st.composite
def bit_vectors(draw, bits=None):
    n = draw(BIT_LENGTHS) if bits is None else bits
    return np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.uint8)


@st.composite
def hash_triples(draw):
    n = draw(BIT_LENGTHS)
    return tuple(PerceptualHash.from_bits(draw(bit_vectors(n))) for _ in range(3))


@settings(max_examples=60, deadline=None)
@given(bit_vectors())
def test_bits_roundtrip_and_packbits_order(vec):
    h = PerceptualHash.from_bits(vec)
    assert h.bits == vec.size
    assert h.data == np.packbits(vec).tobytes()
    np.testing.assert_array_equal(h.to_bits(), vec)
    assert PerceptualHash.from_hex(h.hex) == h
    assert bytes(h) == h.data
    # The hex reads the bits left to right: bit 0 is the most significant.
    assert int(h.hex, 16) == int("".join(map(str, vec)), 2)


@pytest.mark.parametrize("i", [0, 1, 7, 8, 63])
def test_single_bit_position(i):
    vec = np.zeros(64, dtype=np.uint8)
    vec[i] = 1
    h = PerceptualHash.from_bits(vec)
    assert h.data[i // 8] == 1 << (7 - i % 8)
    assert sum(h.data) == h.data[i // 8]


@settings(max_examples=60, deadline=None)
@given(hash_triples())
def test_distance_is_a_metric(triple):
    a, b, c = triple
    assert a.distance(a) == 0
    assert a.distance(b) == b.distance(a)
    assert a.distance(c) <= a.distance(b) + b.distance(c)
    assert a.distance(b) == int(np.count_nonzero(a.to_bits() != b.to_bits()))
    assert (a.distance(b) == 0) == (a == b)


def test_distance_length_mismatch_raises():
    with pytest.raises(HashError, match="64-bit .* 256-bit"):
        PerceptualHash(64, bytes(8)).distance(PerceptualHash(256, bytes(32)))


@pytest.mark.parametrize(
    ("bits", "data", "match"),
    [
        (64, bytes(7), "7 bytes but bits=64 needs 8"),
        (0, b"", "positive multiple of 8"),
        (12, bytes(2), "positive multiple of 8"),
        (64, "00" * 8, "data must be bytes"),
    ],
)
def test_construction_validates(bits, data, match):
    with pytest.raises(HashError, match=match):
        PerceptualHash(bits, data)


@pytest.mark.parametrize("text", ["", "abc", "zz", "0x00", "00 11"])
def test_from_hex_rejects(text):
    with pytest.raises(HashError, match="hex"):
        PerceptualHash.from_hex(text)


def test_from_bits_rejects_non_binary():
    with pytest.raises(HashError, match="0 or 1"):
        PerceptualHash.from_bits(np.array([0, 2] * 4))
    with pytest.raises(HashError, match="multiple of 8"):
        PerceptualHash.from_bits(np.zeros(10, dtype=bool))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 20), BIT_LENGTHS, st.integers(0, 2**32 - 1))
def test_hasharray_codecs(n, bits, seed):
    rng = np.random.default_rng(seed)
    arr = HashArray.random(n, bits, rng)
    assert len(arr) == n and arr.bits == bits
    assert arr.data.flags.c_contiguous and arr.data.dtype == np.uint8
    assert HashArray.frombytes(arr.tobytes(), bits) == arr
    assert HashArray.from_hex(arr.to_hex(), bits=bits) == arr
    assert HashArray.from_hashes(list(arr), bits=bits) == arr
    assert HashArray.from_bits(arr.to_bits()) == arr
    if n:
        q = arr[n // 2]
        expected = [h.distance(q) for h in arr]
        np.testing.assert_array_equal(arr.distances_to(q), expected)
        assert arr[-1] == list(arr)[-1]
        assert arr[1:] == HashArray.from_hashes(list(arr)[1:], bits=bits)


def test_hasharray_validation_and_indexing():
    rng = np.random.default_rng(1)
    arr = HashArray.random(5, 64, rng)
    with pytest.raises(HashError, match="uint8"):
        HashArray(arr.data.astype(np.int16))
    with pytest.raises(HashError, match="2-D"):
        HashArray(arr.data.ravel())
    with pytest.raises(HashError, match="multiple of the hash size"):
        HashArray.frombytes(b"\x00" * 9, 64)
    with pytest.raises(HashError, match="item 1 has 256 bits"):
        HashArray.from_hashes([arr[0], PerceptualHash(256, bytes(32))])
    with pytest.raises(HashError, match="pass bits="):
        HashArray.from_hashes([])
    with pytest.raises(IndexError):
        arr[5]
    with pytest.raises(HashError, match="query has 256 bits"):
        arr.distances_to(PerceptualHash(256, bytes(32)))
    assert arr[[4, 0]] == HashArray.from_hashes([arr[4], arr[0]])
    assert arr[np.array([True, False, False, False, True])] == arr[[0, 4]]
    assert not arr.data.flags.writeable
    assert arr != HashArray.random(5, 64, rng)
    assert HashArray.concatenate([arr[:2], arr[2:]]) == arr
    empty = HashArray.from_hashes([], bits=256)
    assert len(empty) == 0 and empty.bits == 256
