"""The threshold: nothing below t genuine matches, exactly the matches at t, synthetic vouchers on."""

from __future__ import annotations

import numpy as np
import pytest

from e2escan.hashing import HashArray
from e2escan.protocols import get_protocol

BITS = 64


@pytest.fixture(scope="module")
def database() -> HashArray:
    return HashArray.random(60, BITS, np.random.default_rng(99))


def _setup(database: HashArray, **params):
    proto = get_protocol("tpsi-ad")
    p = proto.Params(payload_size=16, **params)
    server, public = proto.server_setup(database, p)
    return server, proto.client(public, p)


def _run_to_threshold(
    database, t: int, p_synthetic: float, capacity: int, n_nonmatching: int, seed: int, dhf_field: str = "p64"
):
    """Interleave non-matching and matching images; check the reveal after every voucher."""
    server, client = _setup(
        database, threshold=t, synthetic_probability=p_synthetic, synthetic_capacity=capacity, dhf_field=dhf_field
    )
    rng = np.random.default_rng(seed)
    others = HashArray.random(n_nonmatching, BITS, rng)
    stream = [("miss", h) for h in others]
    members = [("hit", database[i]) for i in range(len(database))]
    # Non-matching images first, then matching ones interleaved with the rest.
    order = stream[: n_nonmatching // 2] + [x for pair in zip(members, stream[n_nonmatching // 2 :]) for x in pair]
    order += members[len(stream) - n_nonmatching // 2 :]
    real: list[int] = []  # ingest indices of genuine (non-synthetic) matching vouchers
    synthetic = 0
    for index, (kind, h) in enumerate(order):
        server.ingest("acct", client.scan(h, payload=b"p%d" % index))
        synthetic += client.last_was_synthetic
        if kind == "hit" and not client.last_was_synthetic:
            real.append(index)
        reveal = server.reveal("acct")
        if len(real) < t:
            assert not reveal.over_threshold and reveal.matches == (), f"revealed at {len(real)} < {t}"
        else:
            assert reveal.over_threshold
            assert reveal.match_indices == tuple(real)
            assert reveal.matches == tuple(b"p%d" % i for i in real)
            if len(real) == t + 2:
                return server, client, synthetic, index
    raise AssertionError("ran out of images before t + 2 genuine matches")


@pytest.mark.parametrize("dhf_field", ["p64", "scalar"])
def test_threshold_three_with_synthetic_vouchers(database: HashArray, dhf_field: str) -> None:
    server, _client, synthetic, _last = _run_to_threshold(
        database, t=3, p_synthetic=0.5, capacity=60, n_nonmatching=20, seed=1, dhf_field=dhf_field
    )
    assert synthetic >= 3  # the test exercised synthetic vouchers (fails with probability ~2^-20)
    view = server.account_view("acct")
    assert view["matches"] == 5
    assert view["opened_count"] == 5 + synthetic
    # Synthetic vouchers opened but were discarded: none is marked a match.
    assert sum(1 for r in server.observed("acct") if r["opened"] and not r["is_match"]) == synthetic


@pytest.mark.parametrize("dhf_field", ["p64", "scalar"])
def test_threshold_thirty(database: HashArray, dhf_field: str) -> None:
    _, _, synthetic, _ = _run_to_threshold(
        database, t=30, p_synthetic=0.25, capacity=24, n_nonmatching=24, seed=2, dhf_field=dhf_field
    )
    assert synthetic >= 1


def test_resent_copies_count_once_with_hash_dedup(database: HashArray) -> None:
    server, client = _setup(database, threshold=2, synthetic_probability=0.0, synthetic_capacity=4)
    for i in range(3):
        server.ingest("a", client.scan(database[0], payload=b"copy%d" % i))
    assert not server.reveal("a").over_threshold
    assert server.account_view("a")["distinct_opened"] == 1
    server.ingest("a", client.scan(database[1], payload=b"other"))
    reveal = server.reveal("a")
    assert reveal.over_threshold
    assert reveal.matches == (b"copy0", b"copy1", b"copy2", b"other")


@pytest.mark.parametrize("dhf_field", ["p64", "scalar"])
def test_resent_copies_count_separately_without_dedup(database: HashArray, dhf_field: str) -> None:
    server, client = _setup(
        database, threshold=2, synthetic_probability=0.0, synthetic_capacity=4, dedup="none", dhf_field=dhf_field
    )
    server.ingest("a", client.scan(database[0], payload=b"c0"))
    assert not server.reveal("a").over_threshold
    server.ingest("a", client.scan(database[0], payload=b"c1"))
    assert server.reveal("a").matches == (b"c0", b"c1")


def test_synthetic_decision_is_per_image_and_capped(database: HashArray) -> None:
    _server, client = _setup(database, threshold=5, synthetic_probability=0.5, synthetic_capacity=3)
    others = HashArray.random(40, BITS, np.random.default_rng(5))
    decisions = {}
    for h in others:
        client.scan(h)
        decisions[h.data] = client.last_was_synthetic
    # At most `capacity` distinct images are ever sent synthetically ...
    assert sum(decisions.values()) == 3
    # ... and a re-sent image gets the same treatment.
    for h in others[:10]:
        client.scan(h)
        assert client.last_was_synthetic == decisions[h.data]


def test_accounts_are_independent(database: HashArray) -> None:
    proto = get_protocol("tpsi-ad")
    params = proto.Params(threshold=2, synthetic_probability=0.0, synthetic_capacity=2, payload_size=8)
    server, public = proto.server_setup(database, params)
    alice, bob = proto.client(public, params), proto.client(public, params)
    server.ingest("alice", alice.scan(database[0], payload=b"a0"))
    server.ingest("bob", bob.scan(database[1], payload=b"b1"))
    # One match each: neither account is over its threshold, and shares of different accounts never combine.
    assert not server.reveal("alice").over_threshold and not server.reveal("bob").over_threshold
    server.ingest("alice", alice.scan(database[2], payload=b"a2"))
    assert server.reveal("alice").matches == (b"a0", b"a2")
    assert server.reveal("bob").matches == ()
    assert server.accounts() == ("alice", "bob")
    assert server.reveal("nobody").vouchers == 0


def test_inconsistent_share_set_reveals_nothing(database: HashArray) -> None:
    from e2escan.crypto.shamir import SharingPolynomial

    server, client = _setup(database, threshold=3, synthetic_probability=0.0, synthetic_capacity=2)
    honest = client._poly
    for i in range(2):
        server.ingest("a", client.scan(database[i], payload=b"%d" % i))
    # A deviating device sends one share from another polynomial (same detectable hash).
    client._poly = SharingPolynomial.random(honest.secret, 3)
    server.ingest("a", client.scan(database[2], payload=b"2"))
    client._poly = honest
    server.ingest("a", client.scan(database[3], payload=b"3"))
    # Four rows pass detection, but Shamir's consistency check refuses the set: nothing is revealed.
    assert server.account_view("a")["distinct_opened"] == 4
    assert not server.reveal("a").over_threshold


def test_threshold_one_finds_genuine_shares_by_trial_decryption(database: HashArray) -> None:
    server, _, synthetic, _ = _run_to_threshold(database, t=1, p_synthetic=0.5, capacity=40, n_nonmatching=12, seed=4)
    assert synthetic >= 1
    assert server.params.dhf_width() == 0
