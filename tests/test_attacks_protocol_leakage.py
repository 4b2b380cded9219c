"""Protocol-level leakage: counting opened vouchers, side channels in the ServerView, split views."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.attacks.protocol_leakage import (
    audit_digests,
    blinded_cells,
    counting_error,
    differing_cells,
    estimate_true_matches,
    expected_synthetic,
    hashes_implicated,
    minimal_split_view,
    opened_counts_from_view,
    public_digest,
    run_voucher_counting,
    split_view,
    voucher_side_channels,
)
from e2escan.errors import ConfigError
from e2escan.hashing import HashArray
from e2escan.protocols import PROTOCOLS, get_protocol

# --- (a) counting opened vouchers ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 60), s=st.floats(0, 0.95), cap=st.one_of(st.none(), st.integers(0, 70)))
def test_expected_synthetic_is_the_capped_binomial_mean(n, s, cap):
    brute = sum(math.comb(n, k) * s**k * (1 - s) ** (n - k) * (k if cap is None else min(k, cap)) for k in range(n + 1))
    assert expected_synthetic(n, s, cap) == pytest.approx(brute, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 50), opened=st.integers(0, 50), s=st.floats(0, 0.9), cap=st.one_of(st.none(), st.integers(0, 60)))
def test_the_estimate_solves_the_mean_equation(n, opened, s, cap):
    """M solves E[opened | M] = M + (1 - M / n) E[min(Bin(n, s), C)] = opened, clipped to [0, n]."""
    opened = min(opened, n)
    est = estimate_true_matches(opened, n, s, cap)
    mu = expected_synthetic(n, s, cap)
    solution = (opened - mu) / (1 - mu / n) if mu < n else float("nan")
    if math.isnan(solution):
        assert math.isnan(est)
    else:
        assert est == pytest.approx(min(max(solution, 0.0), n), abs=1e-9)
    if s == 0:
        assert est == opened  # no synthetic vouchers: the count is the number of matches


def test_the_estimate_is_unbiased_where_it_is_not_clipped():
    rng = np.random.default_rng(2)
    n, m, s = 40, 20, 0.2
    opened = m + rng.binomial(n - m, s, 100_000)
    est = np.array([estimate_true_matches(int(o), n, s) for o in opened])
    assert est.min() > 0 and est.max() < n  # far from the clipping bounds
    assert est.mean() == pytest.approx(m, abs=0.05)
    assert est.std() == pytest.approx(counting_error(n, m, s), rel=0.02)


def test_estimator_rejects_impossible_counts():
    with pytest.raises(ConfigError, match="opened = 5 must lie in"):
        estimate_true_matches(5, 4, 0.1)
    with pytest.raises(ConfigError, match="synthetic_probability = 1.0"):
        estimate_true_matches(1, 4, 1.0)


COUNTING = {"threshold": 12, "synthetic_capacity": 16, "dedup": "hash", "payload_size": 0}


@pytest.fixture(scope="module")
def counting_runs():
    rng = np.random.default_rng(21)
    matches = rng.integers(0, 12, size=16)  # below the threshold: the server may decrypt nothing
    proto = get_protocol("tpsi-ad")
    runs = {}
    for s in (0.0, 0.05, 0.3):
        runs[s] = run_voucher_counting(proto.Params(synthetic_probability=s, **COUNTING), 40, matches, rng)
    return matches, runs


def test_voucher_counting_error_grows_with_the_synthetic_probability(counting_runs):
    matches, runs = counting_runs
    for run in runs.values():
        assert not run.over_threshold.any()
        assert (run.opened >= run.true_matches).all()  # every real match opens
    # Synthetic vouchers off: the opened count is the number of matches, below the threshold.
    assert runs[0.0].rmse == 0.0 and runs[0.0].exact_share == 1.0
    assert runs[0.0].rmse < runs[0.05].rmse < runs[0.3].rmse
    theory = math.sqrt(np.mean([counting_error(40, int(m), 0.3) ** 2 for m in matches]))
    assert 0.5 * theory <= runs[0.3].rmse <= 1.5 * theory


def test_the_synthetic_capacity_gives_the_count_back_to_the_server():
    """Once s * n passes the capacity, the synthetic count is pinned at the capacity and the estimate is nearly exact."""
    rng = np.random.default_rng(8)
    matches = rng.integers(0, 12, size=12)
    params = get_protocol("tpsi-ad").Params(synthetic_probability=0.6, **{**COUNTING, "synthetic_capacity": 4})
    aware = run_voucher_counting(params, 40, matches, np.random.default_rng(9))
    naive = run_voucher_counting(params, 40, matches, np.random.default_rng(9), use_capacity=False)
    assert (aware.opened == naive.opened).all()
    assert aware.rmse < 1.0
    assert naive.rmse > 5 * aware.rmse


# --- (b) side channels in a simulated run ------------------------------------------------------------


@pytest.fixture(scope="module")
def faithful_run():
    from e2escan.sim.faithful import run_faithful
    from e2escan.sim.scenario import Scenario, resolve_scenario

    scenario = Scenario.load(resolve_scenario("quickstart")).with_overrides(**{
        "population.accounts": 40, "population.offender_share": 0.25, "days": 2, "content.image_size": 64,
        "protocol.params": {"threshold": 3, "synthetic_probability": 0.0},
    })
    return run_faithful(scenario, cache_dir=None)


def test_equal_voucher_sizes_give_chance_level_advantage(faithful_run):
    sizes = {ev.size for ev in faithful_run.relay.view.events("voucher")}
    assert len(sizes) == 1  # the premise: every tpsi-ad voucher of a parameter set has one length
    estimates = {e.feature: e for e in voucher_side_channels(faithful_run, np.random.default_rng(0), permutations=100)}
    length = estimates["voucher_bytes"]
    assert length.positives >= 5 and length.n > length.positives
    assert length.advantage <= length.chance_advantage + 1e-12 and length.p_value >= 0.05
    # Positive control: the declared leakage (opened outer layers, synthetic vouchers off) separates perfectly.
    opened = estimates["opened (declared)"]
    assert opened.advantage == 1.0 and opened.p_value < 0.05


def test_opened_counts_read_from_the_view_are_the_true_match_counts(faithful_run):
    counts = opened_counts_from_view(faithful_run.relay.view)
    truth: dict[str, int] = {}
    sent: dict[str, int] = {}
    for rec in faithful_run.images:
        name = faithful_run.population.ids[rec.sender]
        truth[name] = truth.get(name, 0) + int(rec.oracle_match)
        sent[name] = sent.get(name, 0) + 1
    assert {a: v for a, (v, _) in counts.items()} == sent
    assert {a: o for a, (_, o) in counts.items()} == truth  # synthetic vouchers off: opened == matched
    assert sum(truth.values()) >= 5


# --- (c) split view ------------------------------------------------------------------------------------------

BITS = 32


def _params(name):
    proto = get_protocol(name)
    return proto, (proto.Params(radius=1) if name == "tpsi-ad-ball" else proto.Params())


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_split_view_is_caught_by_comparing_digests_iff_the_public_parameters_carry_the_database(name):
    rng = np.random.default_rng(5)
    proto, params = _params(name)
    database, extra = HashArray.random(8, BITS, rng), HashArray.random(1, BITS, rng)
    view = split_view(proto, database, extra, params)
    ships_table = blinded_cells(proto, params, view.common_public) is not None
    assert ships_table == (name != "plaintext")
    digests = {f"device-{i}": public_digest(view.common_public) for i in range(5)}
    digests["target"] = public_digest(view.targeted_public)
    audit = audit_digests(digests)
    assert audit.detected == ships_table == view.detectable_by_digest
    assert audit.minority == (("target",) if ships_table else ())
    # The attack itself works: the targeted device's copy of the extra image matches on the targeted server.
    client = proto.client(view.targeted_public, params)
    if hasattr(client, "coin_source"):
        client.coin_source = lambda y: 2**64 - 1  # never synthetic, so an opened voucher is a real match
    record = view.targeted_server.ingest("target", client.scan(extra[0], payload=b"p"))
    assert record.get("opened", record.get("is_match")) is True
    if ships_table:
        # Two setups differ in (practically) every cell: the diff does not point at the extra entry.
        diff = differing_cells(proto, params, view.common_public, view.targeted_public)
        cells = max(len(blinded_cells(proto, params, p)[1]) for p in (view.common_public, view.targeted_public))
        assert len(diff) >= 0.95 * cells


@pytest.mark.parametrize("name", ["psi-exact", "tpsi-ad", "tpsi-ad-multiprobe"])
def test_a_minimal_split_view_shows_where_the_table_changed_but_not_what_it_holds(name):
    rng = np.random.default_rng(6)
    proto = get_protocol(name)
    params = proto.Params() if name == "psi-exact" else proto.Params(threshold=1, synthetic_probability=0.0)
    database, extra = HashArray.random(40, BITS, rng), HashArray.random(1, BITS, rng)
    view = minimal_split_view(proto, database, extra, params, rng, cover_cells=20)
    assert view.detectable_by_digest
    layout, layout_cells = blinded_cells(proto, params, view.common_public)
    diff = differing_cells(proto, params, view.common_public, view.targeted_public)
    assert len(diff) == 1 + 20  # the extra entry's cell and the redrawn cover cells, nothing else
    # Every changed cell holds a valid group element: a cover cell and the targeted cell look alike.
    _, targeted_cells = blinded_cells(proto, params, view.targeted_public)
    from e2escan.crypto import group

    assert all(group.is_valid_point(targeted_cells[c]) for c in diff)
    # All a device can do is ask whether one of its hashes could sit in a changed cell: the extra hash
    # can, but so can many unrelated hashes.
    others = HashArray.random(200, BITS, rng)
    assert hashes_implicated(layout, diff, extra).all()
    assert hashes_implicated(layout, diff, others).sum() >= 20
    # The targeted device's voucher for the extra hash matches on the targeted server only.
    for public, server, expected in ((view.targeted_public, view.targeted_server, 1), (view.common_public, view.common_server, 0)):
        account = f"acct-{expected}"
        server.ingest(account, proto.client(public, params).scan(extra[0], payload=b"p"))
        assert len(server.reveal(account).matches) == expected
    assert len(layout_cells) == layout.num_cells
