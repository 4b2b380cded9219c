"""X3DH and the first message: signatures, agreement, one-time prekeys, replays, identity pinning, rotation.

Every property is checked by a function that returns whether it holds, run
once on the real implementation (it must hold) and once with a deliberately
broken implementation monkeypatched in (it must not), so that no check here
passes vacuously.
"""

from __future__ import annotations

import pytest

from e2escan.crypto import Ed25519KeyPair
from e2escan.errors import AuthenticationError, E2escanError, ReplayError
from e2escan.messenger import Device, Relay, x3dh
from e2escan.messenger import device as device_module
from e2escan.messenger.device import DAY_S, SignedPrekeyPolicy
from e2escan.messenger.wire import PrekeyBundle
from e2escan.messenger.x3dh import Identity, create_bundle, x3dh_initiate, x3dh_respond


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- signatures and agreement ------------------------------------------------------------------


def forged_signature_is_refused() -> bool:
    bob = Identity.generate(1)
    bundle = create_bundle(bob)
    forged = PrekeyBundle(bundle.identity, bundle.spk_id, bundle.spk, bytes(64), bundle.one_time_prekeys[:1])
    try:
        x3dh_initiate(Ed25519KeyPair.generate(), forged)
    except AuthenticationError:
        return True
    return False


def test_a_forged_signed_prekey_signature_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert forged_signature_is_refused()
    monkeypatch.setattr(x3dh, "ed25519_verify", lambda *args, **kwargs: None)  # broken: no verification
    assert not forged_signature_is_refused()


@pytest.mark.parametrize("with_opk", [True, False])
@pytest.mark.parametrize("he", [False, True])
def test_both_sides_derive_the_same_key_and_ad(with_opk: bool, he: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    def agree() -> bool:
        alice, bob = Ed25519KeyPair.generate(), Identity.generate(1)
        full = create_bundle(bob)
        bundle = PrekeyBundle(full.identity, full.spk_id, full.spk, full.spk_signature,
                              full.one_time_prekeys[:1] if with_opk else ())
        sent, ek, opk_id = x3dh_initiate(alice, bundle, he)
        got = x3dh_respond(bob, alice.public, ek.public, bundle.spk_id, opk_id, he)
        assert sent.ad == alice.public + bob.identity.public
        return (sent.sk, sent.ad, sent.header_keys) == (got.sk, got.ad, got.header_keys)

    assert agree()
    real_kdf = x3dh._kdf
    # Broken: the responder leaves out the last DH output (DH4 with a one-time prekey, DH3 without).
    calls = []

    def lopsided_kdf(dhs, header_encryption):
        calls.append(len(dhs))
        return real_kdf(dhs[:-1] if len(calls) % 2 == 0 else dhs, header_encryption)

    monkeypatch.setattr(x3dh, "_kdf", lopsided_kdf)
    assert not agree()


# --- one-time prekeys ---------------------------------------------------------------------------


def one_time_prekeys_are_single_use() -> bool:
    """Two first contacts get different one-time prekeys, both decrypt, and both keys are gone afterwards."""
    relay = Relay(clock=Clock())
    bob = Device.register("bob", relay, one_time_prekeys=3)
    alice, carol = Device.register("alice", relay), Device.register("carol", relay)
    alice.send("bob", b"hi from alice")
    carol.send("bob", b"hi from carol")
    handed = [PrekeyBundle.decode(ev.data).one_time_prekeys for ev in relay.view.events("bundle")]
    ids = [opks[0].id for opks in handed if opks]
    received = {r.sender for r in bob.receive()}
    return (
        len(ids) == 2 and ids[0] != ids[1]
        and received == {"alice", "carol"}
        and not set(ids) & set(bob.identity.one_time_prekeys)
        and relay.prekey_count("bob") >= 1  # the third key is still on offer (refills come later)
    )


def test_a_one_time_prekey_is_handed_out_once_and_consumed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert one_time_prekeys_are_single_use()
    # Broken: a relay that hands out the same one-time prekey to everyone (never deletes it).
    real = Relay.fetch_bundle

    def sticky(self, requester, device_id):
        with self._lock:
            saved = self._db.execute("SELECT device, id, public FROM prekeys WHERE device = ?", (device_id,)).fetchall()
        bundle = real(self, requester, device_id)
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO prekeys VALUES (?, ?, ?)", saved)
        return bundle

    monkeypatch.setattr(Relay, "fetch_bundle", sticky)
    assert not one_time_prekeys_are_single_use()


# --- the relay replays a first message under another name ----------------------------------------


def _old_open_prekey_message(self, sender, pm):
    """The first-message path before the fix: sessions and pins by the relay's name, no replay memory."""
    self._check_identity_old(sender, pm.identity)
    for peer in self.sessions.get(sender, ()):
        if peer.ephemeral == pm.ephemeral:
            return peer.session.ratchet_decrypt(pm.message)
    result = x3dh_respond(self.identity, pm.identity, pm.ephemeral, pm.spk_id, pm.opk_id, pm.message.header_encrypted)
    session = device_module.Session.ratchet_init_bob(result.sk, self.identity.spk, result.ad)
    plaintext = session.ratchet_decrypt(pm.message)
    self.known_identities[sender] = pm.identity
    self._store(sender, device_module._PeerSession(session, pm.ephemeral))
    return plaintext


def _check_identity_old(self, peer, identity):
    known = self.known_identities.get(peer)
    if known is not None and known != identity:
        raise AuthenticationError(f"identity key of {peer!r} changed")


def relabelled_replay_is_refused() -> bool:
    """Alice's first message (no one-time prekey) re-queued by the relay as Dave's; then the real Dave writes."""
    relay = Relay(clock=Clock())
    bob = Device.register("bob", relay, one_time_prekeys=0)  # no one-time prekeys left: DH4 is absent
    alice, dave = Device.register("alice", relay), Device.register("dave", relay)
    alice.send("bob", b"from alice")
    envelope = relay._query_one("SELECT envelope FROM queue WHERE sender = 'alice'")[0]
    assert [r.body for r in bob.receive()] == [b"from alice"]
    relay.submit("dave", "bob", envelope)  # the relay replays Alice's envelope under Dave's name
    replayed = bob.receive()
    if replayed or not bob.rejected:
        return False  # the replay decrypted as Dave's
    dave.send("bob", b"really dave")
    genuine = bob.receive()
    return [r.body for r in genuine] == [b"really dave"] and bob.known_identities["dave"] == dave.identity.identity.public


def test_a_first_message_replayed_under_another_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert relabelled_replay_is_refused()
    monkeypatch.setattr(Device, "_open_prekey_message", _old_open_prekey_message)
    monkeypatch.setattr(Device, "_check_identity_old", _check_identity_old, raising=False)
    assert not relabelled_replay_is_refused()


def test_a_first_message_replayed_under_the_same_name_is_refused() -> None:
    relay = Relay(clock=Clock())
    bob = Device.register("bob", relay, one_time_prekeys=0)
    alice = Device.register("alice", relay)
    alice.send("bob", b"once")
    envelope = relay._query_one("SELECT envelope FROM queue WHERE sender = 'alice'")[0]
    bob.receive()
    relay.submit("alice", "bob", envelope)
    assert bob.receive() == [] and isinstance(bob.rejected[-1].error, ReplayError)
    alice.send("bob", b"twice")  # the session still works
    assert [r.body for r in bob.receive()] == [b"twice"]


def initiation_replay_after_session_loss_is_refused() -> bool:
    """Bob lost his session state (e.g. restored from a backup): only the (IK_A, EK_A) memory is left."""
    relay = Relay(clock=Clock())
    bob = Device.register("bob", relay, one_time_prekeys=0)
    alice = Device.register("alice", relay)
    alice.send("bob", b"one")
    first = relay._query_one("SELECT envelope FROM queue WHERE sender = 'alice'")[0]
    bob.receive()
    bob.sessions.clear()
    relay.submit("alice", "bob", first)
    return bob.receive() == [] and "replays an X3DH initiation" in str(bob.rejected[-1].error)


def test_a_new_initiation_replayed_after_the_session_moved_on_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert initiation_replay_after_session_loss_is_refused()
    # Broken on purpose: the pre-fix first-message path, with no memory of accepted initiations.
    monkeypatch.setattr(Device, "_open_prekey_message", _old_open_prekey_message)
    monkeypatch.setattr(Device, "_check_identity_old", _check_identity_old, raising=False)
    assert not initiation_replay_after_session_loss_is_refused()


# --- identity keys ------------------------------------------------------------------------------


def identity_change_is_refused() -> bool:
    relay = Relay(clock=Clock())
    alice = Device.register("alice", relay)
    Device.register("bob", relay)
    alice.send("bob", b"first contact")
    # The relay swaps Bob's bundle for one with another identity key, and Alice starts a new session.
    impostor = create_bundle(Identity.generate(1)).encode()
    relay._db.execute("DELETE FROM devices WHERE id = 'bob'")
    relay._db.execute("DELETE FROM prekeys WHERE device = 'bob'")
    relay.register("bob", impostor)
    alice.sessions.clear()
    try:
        alice.send("bob", b"to the impostor?")
    except AuthenticationError:
        return True
    return False


def test_an_identity_key_change_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert identity_change_is_refused()
    monkeypatch.setattr(Device, "_check_identity", lambda self, peer, identity: None)  # broken: no pinning
    assert not identity_change_is_refused()


# --- signed-prekey rotation -----------------------------------------------------------------------


def rotation_keeps_in_flight_messages_for_the_grace_time() -> bool:
    clock = Clock()
    relay = Relay(clock=clock)
    policy = SignedPrekeyPolicy(period_s=7 * DAY_S, grace_s=2 * DAY_S)
    bob = Device.register("bob", relay, one_time_prekeys=0, spk_policy=policy)
    alice, carol = Device.register("alice", relay), Device.register("carol", relay)
    clock.now = 6.5 * DAY_S
    alice.send("bob", b"sent under spk 1")  # fetched the bundle before the rotation
    clock.now = 7.5 * DAY_S
    bob.maintain_signed_prekey()
    if bob.identity.spk_id != 2 or PrekeyBundle.decode(relay.fetch_bundle("carol", "bob")).spk_id != 2:
        return False
    if [r.body for r in bob.receive()] != [b"sent under spk 1"]:
        return False  # in flight across the rotation, inside the grace time: accepted
    clock.now = 9.6 * DAY_S  # spk 1 expired at 9.5 days
    carol.send("bob", b"new session under spk 2")
    late = x3dh_respond  # a first message naming spk 1 now: refused
    bob.maintain_signed_prekey()
    try:
        late(bob.identity, alice.identity.identity.public, bytes(32), 1, None, False, clock.now)
    except AuthenticationError:
        pass
    else:
        return False
    return [r.body for r in bob.receive()] == [b"new session under spk 2"] and 1 not in bob.seen_initiations


def test_the_signed_prekey_rotates_with_a_grace_window(monkeypatch: pytest.MonkeyPatch) -> None:
    assert rotation_keeps_in_flight_messages_for_the_grace_time()
    real = Identity.rotate_signed_prekey
    # Broken: rotation that drops the old key at once (no grace window).
    monkeypatch.setattr(Identity, "rotate_signed_prekey", lambda self, now, grace_s: real(self, now, 0.0))
    assert not rotation_keeps_in_flight_messages_for_the_grace_time()


def test_simulated_devices_rotate_in_simulated_days() -> None:
    clock = Clock()
    relay = Relay(clock=clock)
    bob = Device.register("bob", relay, spk_policy=SignedPrekeyPolicy(period_s=3 * DAY_S, grace_s=DAY_S))
    ids = []
    for day in range(10):
        clock.now = (day + 1) * DAY_S - 1
        bob.receive()
        ids.append(bob.identity.spk_id)
    assert ids == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    assert set(bob.identity.retired_spks) == {3}  # spk 2 retired at day 6 and dropped a day later
    assert len(list(relay.view.events("spk"))) == 3


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="period_s"):
        SignedPrekeyPolicy(period_s=0)
    with pytest.raises(E2escanError):
        Relay(clock=Clock()).update_signed_prekey("nobody", 2, bytes(32), bytes(64))
