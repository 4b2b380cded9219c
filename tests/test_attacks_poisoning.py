"""Database poisoning: the direct computation, the adversary's choice, the holder models, and real protocol runs.

Agreement between real protocol runs and the model checks the protocol
implementation; the holder-model tests check the model's sampler against its
closed forms, and that the closed forms tell correlated holders apart from
independent ones.""" 

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.attacks import poisoning
from e2escan.attacks.poisoning import (
    EVERYDAY_EDITS,
    EditFamily,
    HolderPool,
    PoisoningExperiment,
    ProtocolUnderTest,
    Uniform,
    check_holder_model,
    choose_poison,
    draw_holder_copies,
    holder_revealed_probability,
    make_copies,
    matches_any,
    opened_count_test,
    poisoned_database,
    revealed_probability,
    run_poisoning_experiment,
    run_protocol_poisoning,
    simulate_revealed,
    with_weights,
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
    with pytest.raises(ConfigError, match="per_copy must be a probability in \\[0, 1\\], got 1.5"):
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
    "run_fractions": (0.05,), "run_accounts": 20,
    "holder_fractions": (0.05,), "model_holders": 2000,
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


def test_poisoning_measurements_agree_with_the_model(small_results):
    """Protocol runs vs the model (closed form, or the holder model simulated for dedup = "hash"): the model
    value lies in the 99.9% Wilson interval of the measured rate. This checks the protocol implementation; both
    sides draw holders' copies the same way, so it says nothing about whether the holder model is realistic."""
    rows = small_results.protocol_runs
    # plaintext: 2 holder models; each tpsi-ad configuration: 2 dedup modes x 2 holder models
    assert len(rows) == 2 + 2 * 4
    assert {(r["dedup"], r["correlation"]) for r in rows} == {(d, c) for d in ("none", "hash") for c in (0.0, 1.0)}
    for row in rows:
        assert row["holders"] == 20 and row["non_holders"] == 20
        assert row["revealed_agrees"], row
        assert row["opened_test_agrees"] is not False, row
        assert row["non_holders_revealed"] == 0  # unrelated images never match the poisoned entries
    assert small_results.per_copy[0]["per_copy_detection_rate"] == 0.0  # nothing poisoned, nothing detected
    rates = {r["poison_fraction"]: r["per_copy_detection_rate"] for r in small_results.per_copy
             if r["edit_family"] == "all" and r["radius"] == 31}
    assert 0 < rates[0.01] <= rates[0.05]
    assert small_results.holders and all(r["agrees"] for r in small_results.holders if r["dedup"] == "none")


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


# --- holder models ------------------------------------------------------------------------------------

NAMES = ("forwarded", "recompressed", "cropped", "rotated")


def _pool(sizes=(200, 100, 400, 300), rotated_hits=30) -> HolderPool:
    """Two deterministic families (one hash each, always matched) and two varied ones (a distinct hash per
    copy): cropped never matched, rotated matched ``rotated_hits`` times out of its copies."""
    family = np.repeat(np.arange(4), sizes)
    hit = np.r_[np.ones(sizes[0] + sizes[1], bool), np.zeros(sizes[2], bool),
                np.arange(sizes[3]) < rotated_hits]
    hash_id = np.r_[np.zeros(sizes[0], np.int64), np.ones(sizes[1], np.int64), 2 + np.arange(sizes[2] + sizes[3])]
    return HolderPool(NAMES, family, hit, hash_id)


def test_one_family_holders_reveal_far_more_than_the_binomial_at_t30():
    """At t = 30, m = 40 the binomial (independent copies) says almost nobody is revealed; holders whose
    copies all share one edit family are revealed whenever that family is deterministic (30% here).
    Tolerance: 4 binomial standard errors at the closed-form value, 20,000 holders."""
    pool = _pool()
    binomial = revealed_probability(pool.rate(), 40, 30)
    one = check_holder_model(pool, 40, 30, 0.0, 1.0, 20_000, np.random.default_rng(1))
    assert binomial < 1e-6
    assert one.closed_form == pytest.approx(0.3 + 0.3 * revealed_probability(0.1, 40, 30), rel=1e-12)
    assert one.agrees, one
    assert one.standard_error < 0.004 and one.simulated > 0.27 > 1e5 * binomial
    independent = check_holder_model(pool, 40, 30, 0.0, 0.0, 20_000, np.random.default_rng(2))
    assert independent.closed_form == pytest.approx(binomial, rel=1e-12, abs=1e-300)
    assert independent.agrees, independent
    half = check_holder_model(pool, 40, 30, 0.0, 0.5, 20_000, np.random.default_rng(3))
    assert half.closed_form == pytest.approx((one.closed_form + independent.closed_form) / 2)
    assert half.agrees, half


def test_the_check_fails_when_the_correlated_sampler_draws_independently(monkeypatch):
    """A deliberately broken sampler (every holder's copies drawn independently, whatever the correlation) is
    caught by the same check that passes above."""
    real = poisoning.draw_holder_copies

    def independent_only(family, holders, copies, correlation, rng):
        return real(family, holders, copies, 0.0, rng)

    monkeypatch.setattr(poisoning.holders, "draw_holder_copies", independent_only)  # where the sampler is called
    broken = check_holder_model(_pool(), 40, 30, 0.0, 1.0, 20_000, np.random.default_rng(1))
    assert not broken.agrees and broken.simulated < 0.01 < broken.closed_form
    assert check_holder_model(_pool(), 3, 3, 0.0, 1.0, 20_000, np.random.default_rng(1)).agrees is False


@settings(max_examples=60, deadline=None)
@given(rotated_hits=st.integers(0, 300), m=st.integers(1, 40), t=st.integers(1, 40), s=st.floats(0, 0.5),
       rho=st.floats(0, 1))
def test_the_mixture_lies_between_independent_and_one_family(rotated_hits, m, t, s, rho):
    pool = _pool(rotated_hits=rotated_hits)
    ends = [holder_revealed_probability(pool.shares(), pool.rates(), m, t, s, c) for c in (0.0, 1.0)]
    mixed = holder_revealed_probability(pool.shares(), pool.rates(), m, t, s, rho)
    assert min(ends) - 1e-12 <= mixed <= max(ends) + 1e-12
    assert ends[0] == pytest.approx(revealed_probability(pool.rate(), m, t, s), rel=1e-12, abs=1e-300)
    if t == 1:  # 1 - (1 - q)^m is concave in q: at t = 1 independent copies reveal more, not less
        assert ends[0] >= ends[1] - 1e-12


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_dedup_counts_equal_hashes_once_like_a_brute_force_count(rho):
    pool, m, holders = _pool(), 12, 3000
    idx = draw_holder_copies(pool.family, holders, m, rho, np.random.default_rng(9))
    distinct = np.array([len({int(pool.hash_id[i]) for i in row if pool.hit[i]}) for row in idx])
    got = simulate_revealed(pool, m, (1, 2, 5), 0.0, rho, "hash", holders, np.random.default_rng(9))
    assert got.tolist() == [float(np.mean(distinct >= t)) for t in (1, 2, 5)]
    if rho == 1.0:  # a deterministic family's copies are one hash: with dedup they never reach t = 2 alone
        none = simulate_revealed(pool, m, (2,), 0.0, rho, "none", holders, np.random.default_rng(9))[0]
        assert got[1] < 0.15 and none > 0.35  # 0.3 P[Bin(12, 0.1) >= 2] against 0.3 + that


def test_real_tpsi_ad_with_one_family_holders_at_t30():
    """One file kept 30 times (a deterministic family: all copies one hash) or 30 cropped copies (never
    matched), half the holders each. Real tpsi-ad, dedup = "none": the forwarded holders are all revealed
    (far above the binomial, 1e-9); dedup = "hash": the 30 equal hashes count once and nobody is."""
    rng = np.random.default_rng(21)
    kept = HashArray.random(1, 64, rng)
    pool_hashes = HashArray.concatenate([kept[np.zeros(50, np.int64)], HashArray.random(50, 64, rng)])
    pool = HolderPool(("forwarded", "cropped"), np.repeat([0, 1], 50), np.arange(100) < 50,
                      np.r_[np.zeros(50, np.int64), 1 + np.arange(50)])
    database = HashArray.concatenate([kept, HashArray.random(20, 64, rng)])
    proto = get_protocol("tpsi-ad")
    held = draw_holder_copies(pool.family, 24, 30, 1.0, rng)
    accounts = [(pool_hashes[row], np.ones(30, bool)) for row in held]
    expected = holder_revealed_probability(pool.shares(), pool.rates(), 30, 30, 0.0, 1.0)
    assert expected == 0.5 and revealed_probability(pool.rate(), 30, 30) < 1e-8
    forwarded_holders = (pool.family[held] == 0).all(axis=1)
    for dedup, want in (("none", forwarded_holders), ("hash", np.zeros(24, bool))):
        params = proto.Params(threshold=30, synthetic_probability=0.0, dedup=dedup, payload_size=16)
        run = run_protocol_poisoning(proto, params, database, accounts, rng)
        assert run.revealed_target.tolist() == want.tolist(), dedup
    assert 0 < forwarded_holders.sum() < 24


def test_edit_weights_are_a_parameter():
    hasher = get_hasher("pdq")
    image = synthetic_image(image_rng(7, 0), (96, 96))
    edits = with_weights(EVERYDAY_EDITS, {"forwarded": 0.0, "recompressed": 2.0})
    assert [e.name for e in edits] == [e.name for e in EVERYDAY_EDITS if e.name != "forwarded"]
    copies = make_copies([image], edits, 40, hasher, np.random.default_rng(1))
    assert "forwarded" not in copies.family and copies.family.count("recompressed") > 10
    assert with_weights(EVERYDAY_EDITS, {}) == EVERYDAY_EDITS


def test_holder_model_parameters_are_validated():
    pool = _pool()
    with pytest.raises(ConfigError, match="unknown edit family 'forwarde'"):
        with_weights(EVERYDAY_EDITS, {"forwarde": 0.5})
    with pytest.raises(ConfigError, match="weight of 'cropped' must be"):
        with_weights(EVERYDAY_EDITS, {"cropped": -1.0})
    with pytest.raises(ConfigError, match="correlation = 1.5"):
        draw_holder_copies(pool.family, 3, 3, 1.5, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="dedup = 'sha'"):
        simulate_revealed(pool, 3, (1,), 0.0, 0.0, "sha", 10, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="correlations entry -0.1"):
        PoisoningExperiment(correlations=(-0.1,))
    with pytest.raises(ConfigError, match="run_dedup"):
        PoisoningExperiment(run_dedup=("exact",))
    with pytest.raises(ConfigError, match="shares must be one weight per family"):
        holder_revealed_probability([0.5, 0.2], [0.1, 0.1], 3, 1)


# --- surveillance of a place: distinct views of one scene ------------------------------------------

VIEWS_SMALL = {"scenes": 3, "scene_size": 384, "capture_size": 64, "adversary_views": 4, "victim_views": 5,
               "entries_per_target": (1, 4), "radii": (("phash", (0, 12, 20, 64)),)}


@pytest.fixture(scope="module")
def viewpoint_rows():
    return poisoning.run_viewpoint_surveillance(poisoning.ViewpointExperiment(**VIEWS_SMALL), np.random.default_rng(2))


def _views_oracle(experiment, rng):
    """The same measurement, spelled out: rebuild the views from the same streams and test each with matches_any."""
    from e2escan.images.scenes import render_view, synthetic_scene

    hasher = get_hasher("phash")
    scene_rng, *model_rngs = rng.spawn(1 + len(experiment.view_models))
    seed = int(scene_rng.integers(0, 2**63))
    scenes = [synthetic_scene(image_rng(seed, i), experiment.scene_size) for i in range(experiment.scenes)]
    out = {}
    for (name, model), model_rng in zip(experiment.view_models, model_rngs):
        streams = model_rng.spawn(2)
        taken = []
        for count, stream in zip((experiment.adversary_views, experiment.victim_views), streams):
            per_scene = []
            for sc in scenes:
                hashes = []
                for _ in range(count):
                    view = render_view(sc, model.draw(stream, experiment.scene_size), experiment.capture_size)
                    hashes.append(hasher.hash(poisoning.EditFamily("e", 1.0, experiment.encoding).draw(stream)
                                              .apply(view, stream).image))
                per_scene.append(HashArray.from_hashes(hashes))
            taken.append(per_scene)
        own, views = taken
        for k in experiment.entries_per_target:
            for radius in experiment.radii[0][1]:
                hits = sum(int(matches_any(own[s][np.arange(k)], views[s], radius).sum()) for s in range(experiment.scenes))
                false = sum(int(matches_any(own[s][np.arange(k)], views[v], radius).sum())
                            for s in range(experiment.scenes) for v in range(experiment.scenes) if v != s)
                out[(name, k, radius)] = (hits, false)
    return out


def test_viewpoint_surveillance_agrees_with_the_brute_force_oracle(viewpoint_rows):
    experiment = poisoning.ViewpointExperiment(**VIEWS_SMALL)
    oracle = _views_oracle(experiment, np.random.default_rng(2))
    assert len(viewpoint_rows) == len(oracle) == 3 * 2 * 4
    for row in viewpoint_rows:
        hits, false = oracle[(row["view_model"], row["entries_per_target"], row["radius"])]
        assert row["surveillance_rate"] == pytest.approx(hits / (3 * 5))
        assert row["innocent_false_matches"] == false
        assert row["innocent_false_match_rate"] == pytest.approx(false / (3 * 2 * 5))


def test_viewpoint_rates_grow_with_radius_and_entries_and_saturate(viewpoint_rows):
    """Nested entry sets and nested balls: more entries or a wider radius never catch fewer views."""
    by = {(r["view_model"], r["entries_per_target"], r["radius"]): r for r in viewpoint_rows}
    for (model, k, radius), row in by.items():
        assert row["surveillance_ci95_low"] <= row["surveillance_rate"] <= row["surveillance_ci95_high"]
        for key in ("surveillance_rate", "innocent_false_match_rate"):
            if (model, 4, radius) in by:
                assert by[(model, 1, radius)][key] <= by[(model, 4, radius)][key]
            wider = [r for r in (0, 12, 20, 64) if r > radius]
            if wider:
                assert row[key] <= by[(model, k, wider[0])][key]
        if radius == 64:  # every 64-bit hash is within 64 of every other: everything matches
            assert row["surveillance_rate"] == 1.0 and row["innocent_false_match_rate"] == 1.0
        if radius == 0:  # distinct views never share an exact hash here
            assert row["surveillance_rate"] == 0.0
    assert by[("same spot", 4, 20)]["surveillance_rate"] > by[("same spot", 4, 20)]["innocent_false_match_rate"]


def test_bad_viewpoint_experiments_are_refused():
    with pytest.raises(ConfigError, match="scenes"):
        poisoning.ViewpointExperiment(scenes=1)
    with pytest.raises(ConfigError, match="entries_per_target"):
        poisoning.ViewpointExperiment(adversary_views=5, entries_per_target=(1, 6))
    with pytest.raises(ConfigError, match="radii"):
        poisoning.ViewpointExperiment(radii=(("pdq", (-1,)),))


def test_a_between_scene_interval_of_zero_width_is_replaced_by_wilson():
    same = poisoning._scene_proportion([2, 2, 2], 10)
    assert same["rate"] == pytest.approx(0.2) and same["ci_low"] < 0.2 < same["ci_high"]
    assert same["ci_method"].startswith("Wilson")
    varied = poisoning._scene_proportion([1, 2, 3], 10)
    assert varied["ci_method"].startswith("between-replicate") and varied["ci_low"] < 0.2 < varied["ci_high"]
