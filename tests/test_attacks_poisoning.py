"""Database poisoning: the direct computation, the adversary's choice, and agreement with real protocol runs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.attacks.poisoning import (
    EVERYDAY_EDITS,
    EditFamily,
    PoisoningExperiment,
    ProtocolUnderTest,
    Uniform,
    choose_poison,
    make_copies,
    matches_any,
    opened_count_test,
    poisoned_database,
    revealed_probability,
    run_poisoning_experiment,
    run_protocol_poisoning,
)
from e2escan.errors import ConfigError
from e2escan.hashing import HashArray, get_hasher
from e2escan.images import image_rng, synthetic_image
from e2escan.protocols import get_protocol

# --- direct computation ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(q=st.floats(0, 1), m=st.integers(0, 40), t=st.integers(1, 45), s=st.floats(0, 0.9))
def test_revealed_probability_is_the_binomial_tail(q, m, t, s):
    p = q * (1 - s)
    brute = sum(math.comb(m, k) * p**k * (1 - p) ** (m - k) for k in range(t, m + 1))
    assert revealed_probability(q, m, t, s) == pytest.approx(brute, rel=1e-9, abs=1e-12)


def test_no_threshold_means_one_match_reveals():
    assert revealed_probability(0.3, 2, None) == pytest.approx(1 - 0.7**2)


@settings(max_examples=60, deadline=None)
@given(q=st.floats(0, 1), m=st.integers(1, 30), other=st.integers(0, 30), s=st.floats(0, 0.5), alpha=st.floats(0.001, 0.2))
def test_opened_count_test_respects_its_level_and_beats_chance(q, m, other, s, alpha):
    test = opened_count_test(q, m, other, s, alpha)
    assert test.false_positive <= alpha + 1e-12
    # A holder's count dominates a non-holder's stochastically, so detection >= false positives.
    assert test.detection >= test.false_positive - 1e-12


def test_without_synthetic_vouchers_one_opened_voucher_is_proof():
    test = opened_count_test(0.4, 3, 10, 0.0, 0.01)
    assert (test.cut, test.false_positive) == (1, 0.0)
    assert test.detection == pytest.approx(1 - 0.6**3)


def test_opened_count_test_against_simulation():
    rng = np.random.default_rng(3)
    q, m, other, s = 0.5, 4, 12, 0.1
    test = opened_count_test(q, m, other, s, 0.01)
    holders = rng.binomial(m, q + (1 - q) * s, 200_000) + rng.binomial(other, s, 200_000)
    nulls = rng.binomial(m + other, s, 200_000)
    assert np.mean(holders >= test.cut) == pytest.approx(test.detection, abs=0.005)
    assert np.mean(nulls >= test.cut) == pytest.approx(test.false_positive, abs=0.002)


def test_direct_computation_rejects_bad_probabilities():
    with pytest.raises(ConfigError, match="per_copy = 1.5"):
        revealed_probability(1.5, 3, 1)
    with pytest.raises(ConfigError, match="synthetic_probability"):
        opened_count_test(0.5, 3, 1, -0.1, 0.01)


# --- the matching rule and the adversary's choice ------------------------------------------------

hash_sets = st.integers(1, 9).flatmap(
    lambda n: st.lists(st.binary(min_size=2, max_size=2), min_size=n, max_size=n)
).map(lambda rows: HashArray.frombytes(b"".join(rows), 16))


@settings(max_examples=60, deadline=None)
@given(entries=hash_sets, queries=hash_sets, radius=st.integers(0, 8))
def test_matches_any_is_the_brute_force_rule(entries, queries, radius):
    got = matches_any(entries, queries, radius)
    want = [min(e.distance(q) for e in entries) <= radius for q in queries]
    assert got.tolist() == want


def _coverage(chosen: HashArray, candidates: HashArray, radius: int) -> int:
    return int(matches_any(chosen, candidates, radius).sum()) if len(chosen) else 0


@settings(max_examples=40, deadline=None)
@given(candidates=hash_sets, budget=st.integers(0, 3), radius=st.integers(0, 6))
def test_greedy_poison_covers_at_least_1_minus_1_over_e_of_the_best(candidates, budget, radius):
    chosen = choose_poison(candidates, budget, radius)
    assert len(chosen) <= budget
    best = max(
        (_coverage(candidates[np.array(c, dtype=np.int64)], candidates, radius) for c in itertools.combinations(range(len(candidates)), min(budget, len(candidates)))),
        default=0,
    )
    assert _coverage(chosen, candidates, radius) >= (1 - 1 / math.e) * best - 1e-9


def test_exact_greedy_takes_the_most_frequent_hashes_and_stops_when_all_are_covered():
    a, b, c = (HashArray.frombytes(bytes([i, i]), 16) for i in (1, 2, 3))
    candidates = HashArray.concatenate([a, b, b, c, b, c])
    chosen = choose_poison(candidates, 10, 0)
    assert chosen.to_hex() == ["0202", "0303", "0101"]  # by multiplicity, then all covered


def test_poisoned_database_holds_the_poison_and_random_filler():
    poison = HashArray.random(5, 64, np.random.default_rng(1))
    db = poisoned_database(poison, 40, np.random.default_rng(2))
    assert len(db) == 40 and set(poison.to_hex()) <= set(db.to_hex())
    assert db == poisoned_database(poison, 40, np.random.default_rng(2))
    with pytest.raises(ConfigError, match="cannot hold 5"):
        poisoned_database(poison, 4, np.random.default_rng(2))


# --- copies ----------------------------------------------------------------------------------------


def test_copies_are_reproducible_and_forwarded_copies_keep_the_exact_hash():
    hasher = get_hasher("pdq")
    image = synthetic_image(image_rng(7, 0), (128, 128))
    a = make_copies([image], EVERYDAY_EDITS, 30, hasher, np.random.default_rng(5))
    b = make_copies([image], EVERYDAY_EDITS, 30, hasher, np.random.default_rng(5))
    assert a.hashes == b.hashes and a.family == b.family
    original = hasher.hash(image).hex
    forwarded = [h for h, f in zip(a.hashes.to_hex(), a.family) if f == "forwarded"]
    assert forwarded and all(h == original for h in forwarded)


def test_edit_families_are_validated_when_declared():
    with pytest.raises(ConfigError, match="unknown transform 'blurr'"):
        EditFamily("bad", 1.0, (("blurr", {}),))
    with pytest.raises(ConfigError, match="weight must be > 0"):
        EditFamily("bad", 0.0, ())
    with pytest.raises(ConfigError, match="must not exceed"):
        Uniform(2.0, 1.0)
    with pytest.raises(ConfigError, match="database_size must be >= 1"):
        PoisoningExperiment(database_size=0)
    with pytest.raises(ConfigError, match="poison fraction 1.5"):
        PoisoningExperiment(fractions=(1.5,))


# --- agreement with the real protocols ---------------------------------------------------------------

SMALL = {
    "targets": 1, "attacker_copies": 40, "victim_copies": 60, "unrelated_images": 20, "database_size": 200,
    "image_size": 128, "fractions": (0.0, 0.01, 0.05), "copies_held": (3,), "other_images": 5,
    "run_fractions": (0.05,), "run_accounts": 30,
    "protocols": (
        ProtocolUnderTest("plaintext, radius 31", "plaintext", {"radius": 31}),
        ProtocolUnderTest("tpsi-ad t=1", "tpsi-ad", {"threshold": 1, "synthetic_probability": 0.0, "dedup": "none"}),
        ProtocolUnderTest("tpsi-ad t=2 s=0.2", "tpsi-ad",
                          {"threshold": 2, "synthetic_probability": 0.2, "dedup": "none", "synthetic_capacity": 8}),
    ),
}


@pytest.fixture(scope="module")
def small_results():
    return run_poisoning_experiment(PoisoningExperiment(**SMALL), np.random.default_rng(11))


def test_poisoning_measurements_agree_with_a_direct_computation(small_results):
    """Protocol runs vs the binomial: the direct value lies in the 99.9% Wilson interval of the measured rate."""
    rows = small_results.protocol_runs
    assert len(rows) == 3
    for row in rows:
        assert row["holders"] == 30 and row["non_holders"] == 30
        assert row["revealed_agrees"], row
        assert row["opened_test_agrees"], row
        assert row["non_holders_revealed"] == 0  # unrelated images never match the poisoned entries
    assert small_results.per_copy[0]["per_copy_detection"] == 0.0  # nothing poisoned, nothing detected
    rates = {r["poison_fraction"]: r["per_copy_detection"] for r in small_results.per_copy
             if r["edit_family"] == "all" and r["radius"] == 31}
    assert 0 < rates[0.01] <= rates[0.05]


def test_the_threshold_protocol_reveals_exactly_the_accounts_with_t_real_matches():
    """Without synthetic vouchers, tpsi-ad decrypts an account iff at least t of its vouchers match (the oracle)."""
    rng = np.random.default_rng(4)
    database = HashArray.random(30, 64, rng)
    proto = get_protocol("tpsi-ad")
    params = proto.Params(threshold=2, synthetic_probability=0.0, dedup="none", payload_size=16)
    accounts = []
    for k in (0, 1, 2, 3):
        hashes = HashArray.concatenate([database[rng.choice(30, k, replace=False)], HashArray.random(4, 64, rng)])
        accounts.append((hashes, np.r_[np.ones(k, bool), np.zeros(4, bool)]))
    run = run_protocol_poisoning(proto, params, database, accounts, rng)
    assert run.target_matches.tolist() == [0, 1, 2, 3]
    assert run.opened.tolist() == [0, 1, 2, 3]  # below t the server still counts the opened vouchers
    assert run.revealed_target.tolist() == [False, False, True, True]
