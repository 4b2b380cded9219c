"""The ServerView holds everything the match server holds: typed events, one codec, replay equals the server.

"If something is not in the ServerView, the server could not have learnt it"
(README): for every registered protocol, the records and account aggregates
rebuilt from the relay's log alone equal ``server.observed()`` and
``server.account_view()`` field by field, below and over the threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.errors import DecodeError, RelayError
from e2escan.hashing import HashArray
from e2escan.messenger import Device, Relay
from e2escan.protocols import PROTOCOLS, get_protocol
from e2escan.protocols.events import (
    AccountEvent,
    EventError,
    MatchEvent,
    MatchRecorder,
    RevealEvent,
    decode_event,
    decode_value,
    encode_event,
    encode_value,
    replay,
)

BITS = 64
THRESHOLDED = {"threshold": 3, "synthetic_probability": 0.3, "synthetic_capacity": 6, "payload_size": 32}

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**600), max_value=2**600) | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5).map(tuple),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_value_codec_round_trips(value) -> None:
    assert decode_value(encode_value(value)) == value


@settings(max_examples=200, deadline=None)
@given(values, st.data())
def test_truncated_values_are_refused_with_an_offset(value, data) -> None:
    raw = encode_value(value)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(EventError, match="byte offset"):
        decode_value(raw[:cut])


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=10), st.integers(0, 10**6), st.dictionaries(st.text(max_size=8), values, max_size=6))
def test_events_round_trip(account: str, index: int, fields: dict) -> None:
    for event in (
        MatchEvent("p", account, index, fields),
        AccountEvent("p", account, fields),
        RevealEvent("p", account, (index,), (b"payload",)),
    ):
        kind, raw = encode_event(event)
        assert kind in ("match", "account", "reveal")
        assert decode_event(raw) == event


@pytest.mark.parametrize("raw", [b"", b"E2EV", b"XXXX\x01\x01\x00", b"E2EV\x02\x01\x00", b"E2EV\x01\x09\x00", b"E2EV\x01\x01\x00"])
def test_malformed_events_get_one_clear_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_event(raw)


def _relay_with(name: str, params: dict):
    proto = get_protocol(name)
    rng = np.random.default_rng(5)
    db = HashArray.random(12, BITS, rng)
    p = proto.Params(**params)
    server, public = proto.server_setup(db, p)
    relay = Relay()
    recorder = MatchRecorder(server, proto.name, proto.LEAKAGE)
    relay.attach_match_server(recorder)
    alice, bob = Device.register("alice", relay), Device.register("bob", relay)
    client = proto.client(public, p)
    # Non-members, a re-sent copy, then members until (and beyond) the threshold, revealing as the simulator does.
    images = [*HashArray.random(4, BITS, rng), *db]
    images.insert(2, images[0])
    for i, h in enumerate(images):
        relay.submit("alice", "bob", b"envelope %d" % i, client.scan(h, payload=b"%d" % i))
        relay.reveal("alice")
    del alice, bob
    return proto, server, relay


def _assert_view_equals_server(proto, server, relay) -> None:
    held = replay(relay.view)
    assert set(held.records) == set(server.accounts())
    for account in server.accounts():
        observed = server.observed(account)
        assert len(held.records[account]) == len(observed)
        for logged, record in zip(held.records[account], observed):
            assert set(logged) == set(record)
            for key in record:
                expected = record[key]
                if isinstance(expected, list):
                    expected = tuple(expected)
                assert logged[key] == expected, (proto.name, account, key)
        assert dict(held.accounts[account]) == dict(server.account_view(account))


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_decoded_server_view_equals_what_the_server_holds(name: str) -> None:
    params = {} if name in ("plaintext", "psi-exact") else THRESHOLDED
    proto, server, relay = _relay_with(name, params)
    if name not in ("plaintext", "psi-exact"):
        assert server.reveal("alice").over_threshold  # the over-threshold updates are exercised too
        assert any(len(r) > len(proto.LEAKAGE.voucher_keys(False)) for r in replay(relay.view).records["alice"])
    _assert_view_equals_server(proto, server, relay)


def test_the_equality_check_fails_when_the_recorder_drops_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken on purpose: a recorder that never logs the threshold's updates must fail the check above."""
    monkeypatch.setattr(MatchRecorder, "_record_changes", lambda self, account: iter(()))
    proto, server, relay = _relay_with("tpsi-ad", THRESHOLDED)
    with pytest.raises(AssertionError):
        _assert_view_equals_server(proto, server, relay)


def test_a_record_with_an_undeclared_field_is_refused_and_nothing_is_queued() -> None:
    proto = get_protocol("psi-exact")
    db = HashArray.random(4, BITS, np.random.default_rng(1))
    server, public = proto.server_setup(db, proto.Params())
    real_ingest = server.ingest
    server.ingest = lambda account, voucher: {**real_ingest(account, voucher), "hash": b"leaked"}  # type: ignore[method-assign]
    relay = Relay()
    relay.attach_match_server(MatchRecorder(server, proto.name, proto.LEAKAGE))
    Device.register("alice", relay), Device.register("bob", relay)
    before = len(relay.view)
    with pytest.raises(EventError, match="hash"):
        relay.submit("alice", "bob", b"env", proto.client(public, proto.Params()).scan(db[0]))
    assert len(relay.view) == before and relay.queued() == 0


def test_a_refused_voucher_leaves_the_view_and_the_queue_unchanged() -> None:
    proto = get_protocol("tpsi-ad")
    db = HashArray.random(4, BITS, np.random.default_rng(2))
    server, _public = proto.server_setup(db, proto.Params(threshold=2))
    relay = Relay()
    relay.attach_match_server(MatchRecorder(server, proto.name, proto.LEAKAGE))
    Device.register("alice", relay), Device.register("bob", relay)
    before = len(relay.view)
    with pytest.raises(DecodeError):
        relay.submit("alice", "bob", b"env", b"E2TV not a voucher")
    assert len(relay.view) == before and relay.queued() == 0 and server.accounts() == ()
    with pytest.raises(RelayError, match="already attached"):
        relay.attach_match_server(MatchRecorder(server, proto.name, proto.LEAKAGE))
