"""Cuckoo tables: every item is found at one of its candidate cells; load factor as sized."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.crypto.cuckoo import CuckooLayout, CuckooTable
from e2escan.errors import ConfigError

items_strategy = st.lists(st.binary(min_size=1, max_size=12), min_size=0, max_size=300, unique=True)


@settings(max_examples=60, deadline=None)
@given(items_strategy, st.sampled_from([(2, 0.45), (3, 0.8), (4, 0.9)]), st.binary(min_size=16, max_size=16))
def test_every_inserted_item_is_found_in_a_candidate_cell(items, hashes_load, seed) -> None:
    k, load = hashes_load
    table = CuckooTable.build(items, num_hashes=k, load=load, stash_size=4, seed=seed)
    lay = table.layout
    assert lay.num_buckets == max(1, math.ceil(len(items) / load))
    assert table.load_factor == pytest.approx(len(items) / lay.num_buckets)
    placed = [c for c in table.cells if c is not None]
    assert sorted(placed) == list(range(len(items)))  # each item stored exactly once
    for i, item in enumerate(items):
        cell = table.find(item)
        assert cell is not None and table.cells[cell] == i
        assert cell in lay.candidate_cells(item)
    assert table.find(b"\xff" * 13) is None  # longer than any generated item


def test_positions_depend_on_the_seed_and_are_reproducible() -> None:
    a = CuckooLayout(1000, 2, 0, b"\x00" * 16)
    b = CuckooLayout(1000, 2, 0, b"\x01" * 16)
    assert a.positions(b"item") == a.positions(b"item")
    assert a.positions(b"item") != b.positions(b"item")
    items = [i.to_bytes(4, "big") for i in range(500)]
    t1 = CuckooTable.build(items, seed=b"\x07" * 16)
    t2 = CuckooTable.build(items, seed=b"\x07" * 16)
    assert t1.cells == t2.cells


def test_overfull_table_fails_with_a_clear_message() -> None:
    items = [i.to_bytes(4, "big") for i in range(200)]
    with pytest.raises(ConfigError, match="lower the load factor"):
        CuckooTable.build(items, num_hashes=2, load=1.0, stash_size=0, max_kicks=20, max_attempts=2)


def test_invalid_parameters() -> None:
    with pytest.raises(ConfigError, match="load factor"):
        CuckooTable.build([b"a"], load=0.0)
    with pytest.raises(ConfigError, match="distinct"):
        CuckooTable.build([b"a", b"a"])
    with pytest.raises(ConfigError, match="num_hashes"):
        CuckooLayout(10, 1, 0, b"\x00" * 16)


def test_large_table_load_factor_is_reported() -> None:
    # No stash and the default 500 kicks: the build must succeed at the first attempt.
    items = [i.to_bytes(4, "big") for i in range(100_000)]
    table = CuckooTable.build(items, num_hashes=2, load=0.45, stash_size=0, seed=b"\x01" * 16, max_attempts=1)
    assert 0.449 < table.load_factor <= 0.45
    assert table.stash_used <= table.layout.stash_size
    assert "load=0.450" in repr(table)
