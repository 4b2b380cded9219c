"""Double Ratchet: delivery in any order, replays, tampering, forward secrecy, post-compromise recovery."""

import pytest
from hypothesis import given, settings, target
from hypothesis import strategies as st

from e2escan.crypto import X25519KeyPair, aead_open, random_bytes
from e2escan.errors import (
    AuthenticationError,
    E2escanError,
    ReplayError,
    TooManySkippedError,
)
from e2escan.messenger import RatchetLimits, Session
from e2escan.messenger.ratchet import ZERO_NONCE, kdf_ck
from e2escan.messenger.wire import Header, RatchetMessage

WIDE = RatchetLimits(max_skip=1000, max_keys_per_chain=1000, max_receiver_chains=1000)


def pair(header_encryption=False, limits=None):
    sk = random_bytes(32)
    ad = random_bytes(64)
    bob_spk = X25519KeyPair.generate()
    hk = (random_bytes(32), random_bytes(32)) if header_encryption else (None, None)
    alice = Session.ratchet_init_alice(sk, bob_spk.public, ad, shared_hka=hk[0], shared_nhkb=hk[1], limits=limits)
    bob = Session.ratchet_init_bob(sk, bob_spk, ad, shared_hka=hk[0], shared_nhkb=hk[1], limits=limits)
    return alice, bob


def wire(msg: RatchetMessage) -> bytes:
    return msg.encode()


def unwire(data: bytes) -> RatchetMessage:
    return RatchetMessage.decode(data)


actions = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from("AB")),
        st.tuples(st.just("deliver"), st.sampled_from("AB"), st.integers(0, 50)),
        st.tuples(st.just("replay"), st.sampled_from("AB"), st.integers(0, 50)),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(actions, st.booleans(), st.randoms(use_true_random=False))
def test_any_interleaving_reordering_and_duplication_decrypts_each_message_once(script, he, rnd):
    alice, bob = pair(he, WIDE)
    sessions = {"A": alice, "B": bob}
    other = {"A": "B", "B": "A"}
    in_flight = {"A": [], "B": []}  # messages addressed to A / to B
    delivered = {"A": [], "B": []}
    sent = {"A": [], "B": []}  # plaintexts addressed to A / to B
    got = {"A": [], "B": []}

    def deliver(to, data):
        got[to].append(sessions[to].ratchet_decrypt(unwire(data)))
        delivered[to].append(data)

    counter = 0
    for action in script:
        if action[0] == "send":
            s = action[1]
            if s == "B" and not bob.received_any:
                continue  # Bob has no sending chain until Alice's first message arrives
            counter += 1
            pt = f"{s}{counter}".encode()
            in_flight[other[s]].append(wire(sessions[s].ratchet_encrypt(pt)))
            sent[other[s]].append(pt)
        elif action[0] == "deliver":
            to = action[1]
            if in_flight[to]:
                deliver(to, in_flight[to].pop(action[2] % len(in_flight[to])))
        else:
            to = action[1]
            if delivered[to]:
                with pytest.raises(ReplayError):
                    sessions[to].ratchet_decrypt(unwire(delivered[to][action[2] % len(delivered[to])]))
    for to in "AB":
        rnd.shuffle(in_flight[to])
        for data in in_flight[to]:
            deliver(to, data)
    target(float(len(got["A"]) + len(got["B"])), label="messages decrypted")
    for to in "AB":
        assert sorted(got[to]) == sorted(sent[to])
        assert len(set(got[to])) == len(got[to])


def conversation(alice, bob, n=6):
    """Alice sends n messages, Bob answers once, Alice sends one more; returns the wire messages."""
    msgs = [wire(alice.ratchet_encrypt(f"a{i}".encode())) for i in range(n)]
    return msgs


@settings(max_examples=40, deadline=None)
@given(st.booleans(), st.integers(0, 5), st.data())
def test_any_flipped_bit_is_rejected_and_sessions_stay_usable(he, which, data):
    alice, bob = pair(he)
    msgs = [alice.ratchet_encrypt(f"m{i}".encode()) for i in range(6)]
    encoded = wire(msgs[which])
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1))
    tampered = bytearray(encoded)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(E2escanError) as info:
        bob.ratchet_decrypt(unwire(bytes(tampered)))
    assert str(info.value)  # a message that says what was wrong
    # Nothing changed: every genuine message still decrypts, in order, and the reply path works.
    assert [bob.ratchet_decrypt(m) for m in msgs] == [f"m{i}".encode() for i in range(6)]
    reply = bob.ratchet_encrypt(b"reply")
    assert alice.ratchet_decrypt(reply) == b"reply"
    assert bob.ratchet_decrypt(alice.ratchet_encrypt(b"again")) == b"again"


def _key_material(obj, seen=None) -> set[bytes]:
    """Every 32-byte value reachable from a captured session (state, skipped keys, anything else it keeps)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return set()
    seen.add(id(obj))
    if isinstance(obj, (bytes, bytearray)):
        return {bytes(obj)} if len(obj) == 32 else set()
    out: set[bytes] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out |= _key_material(k, seen) | _key_material(v, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            out |= _key_material(v, seen)
    else:
        for name in getattr(obj, "__slots__", ()):
            out |= _key_material(getattr(obj, name, None), seen)
        for v in getattr(obj, "__dict__", {}).values():
            out |= _key_material(v, seen)
    return out


def _decryptable_from(captured: Session, messages: list[RatchetMessage], steps: int = 12) -> list[int]:
    """Indices of ``messages`` that some key derivable from ``captured`` opens.

    Every 32-byte value in the captured state is tried as a message key, and as
    a chain key from which ``steps`` message keys are derived with KDF_CK; the
    replay bookkeeping is bypassed entirely (the AEAD is called directly).
    """
    candidates = set()
    for value in _key_material(captured):
        candidates.add(value)
        ck = value
        for _ in range(steps):
            ck, mk = kdf_ck(ck)
            candidates.add(mk)
    opened = []
    for i, m in enumerate(messages):
        for mk in candidates:
            try:
                aead_open(mk, ZERO_NONCE, m.ciphertext, captured.ad + m.header, "probe")
            except AuthenticationError:
                continue
            opened.append(i)
            break
    return opened


def _exchange(he):
    """Three turns of three messages; also Bob's state captured just before the last message."""
    alice, bob = pair(he)
    msgs = []
    before_last = None
    for turn in range(3):
        for i in range(3):
            m = alice.ratchet_encrypt(f"a{turn}{i}".encode())
            msgs.append(m)
            if turn == 2 and i == 2:
                before_last = bob.snapshot()
            bob.ratchet_decrypt(m)
        alice.ratchet_decrypt(bob.ratchet_encrypt(b"ack"))
    return alice, bob, msgs, before_last


@pytest.mark.parametrize("he", [False, True])
def test_forward_secrecy_state_after_n_cannot_decrypt_earlier(he):
    _, bob, msgs, before_last = _exchange(he)
    assert _decryptable_from(bob.snapshot(), msgs) == []
    # The probe is not vacuous: a state captured before the last message opens exactly that message.
    assert _decryptable_from(before_last, msgs) == [len(msgs) - 1]


@pytest.mark.parametrize("he", [False, True])
def test_forward_secrecy_check_catches_a_ratchet_that_keeps_its_keys(he, monkeypatch):
    """Broken on purpose: a session that keeps every receiving message key it used."""
    real_open = Session._open

    def keeping_open(self, mk, message):
        self.__dict__.setdefault("kept", []).append(mk)
        return real_open(self, mk, message)

    monkeypatch.setattr(Session, "_open", keeping_open)
    _, bob, msgs, _ = _exchange(he)
    assert len(_decryptable_from(bob.snapshot(), msgs)) == len(msgs)


@pytest.mark.parametrize("he", [False, True])
def test_post_compromise_recovery_after_round_trip(he):
    alice, bob = pair(he)
    bob.ratchet_decrypt(alice.ratchet_encrypt(b"hello"))
    alice.ratchet_decrypt(bob.ratchet_encrypt(b"hi"))
    attacker = bob.snapshot()  # the attacker copies Bob's whole state
    m1 = alice.ratchet_encrypt(b"still readable by the attacker")
    assert attacker.ratchet_decrypt(m1) == b"still readable by the attacker"
    bob.ratchet_decrypt(m1)
    alice.ratchet_decrypt(bob.ratchet_encrypt(b"fresh ratchet key"))  # Bob's new key, unknown to the attacker
    m2 = alice.ratchet_encrypt(b"secret after healing")
    assert bob.ratchet_decrypt(m2) == b"secret after healing"
    with pytest.raises(E2escanError):
        attacker.ratchet_decrypt(m2)


def _forged_two_chain_skip(limits: RatchetLimits) -> tuple[Session, RatchetMessage]:
    """A message whose header makes the receiver skip 8 keys of its old chain and 8 of the new one."""
    alice, bob = pair(limits=limits)
    first = [alice.ratchet_encrypt(f"{i}".encode()) for i in range(9)]
    bob.ratchet_decrypt(first[0])
    alice.ratchet_decrypt(bob.ratchet_encrypt(b"reply"))  # Alice ratchets: her next chain starts, PN = 9
    second = [alice.ratchet_encrypt(f"n{i}".encode()) for i in range(9)]
    return bob, second[8]


def test_max_skip_bounds_the_total_over_both_chains():
    bob, message = _forged_two_chain_skip(RatchetLimits(max_skip=10))
    with pytest.raises(TooManySkippedError, match="16 message keys in all"):
        bob.ratchet_decrypt(message)
    assert len(bob.skipped) == 0  # nothing was stored
    bob, message = _forged_two_chain_skip(RatchetLimits(max_skip=16))
    assert bob.ratchet_decrypt(message) == b"n8"  # exactly max_skip in all is allowed


def test_the_total_skip_check_catches_a_per_chain_limit(monkeypatch):
    """Broken on purpose: the limit applied to each chain separately (the old behaviour) lets 16 > 10 through."""
    monkeypatch.setattr(Session, "_check_skip_total", lambda self, s, header, new_chain: None)
    bob, message = _forged_two_chain_skip(RatchetLimits(max_skip=10))
    assert bob.ratchet_decrypt(message) == b"n8"


def test_max_skip_is_enforced_without_state_change():
    alice, bob = pair(limits=RatchetLimits(max_skip=10))
    msgs = [alice.ratchet_encrypt(f"{i}".encode()) for i in range(13)]
    with pytest.raises(TooManySkippedError, match="MAX_SKIP"):
        bob.ratchet_decrypt(msgs[11])
    assert bob.ratchet_decrypt(msgs[10]) == b"10"  # exactly MAX_SKIP keys skipped is allowed
    assert len(bob.skipped) == 10


def test_a_header_naming_the_peers_signed_prekey_before_any_reply_is_refused():
    """Until Bob first replies, Alice's receiving ratchet key is Bob's signed prekey, which is public, and she
    has no receiving chain: a message whose header names that key is forged, refused with AuthenticationError
    (not a TypeError a device would not catch), and the session stays usable."""
    sk, ad, bob_spk = random_bytes(32), random_bytes(64), X25519KeyPair.generate()
    alice = Session.ratchet_init_alice(sk, bob_spk.public, ad)
    bob = Session.ratchet_init_bob(sk, bob_spk, ad)
    forged = RatchetMessage(Header(bob_spk.public, 0, 0).encode(), random_bytes(40), False)
    with pytest.raises(AuthenticationError, match="no receiving chain"):
        alice.ratchet_decrypt(forged)
    assert bob.ratchet_decrypt(alice.ratchet_encrypt(b"hello")) == b"hello"
    assert alice.ratchet_decrypt(bob.ratchet_encrypt(b"reply")) == b"reply"


def test_stored_skipped_keys_are_capped_oldest_first():
    alice, bob = pair(limits=RatchetLimits(max_skip=100, max_keys_per_chain=5))
    msgs = [alice.ratchet_encrypt(f"{i}".encode()) for i in range(10)]
    bob.ratchet_decrypt(msgs[9])  # skips 0..8, keeps only 4..8
    assert len(bob.skipped) == 5
    for i in range(4):
        with pytest.raises(ReplayError, match="evicted"):
            bob.ratchet_decrypt(msgs[i])
    assert [bob.ratchet_decrypt(msgs[i]) for i in range(4, 9)] == [f"{i}".encode() for i in range(4, 9)]


def test_libsignal_default_limits():
    limits = RatchetLimits()
    assert (limits.max_skip, limits.max_keys_per_chain, limits.max_receiver_chains) == (25_000, 2_000, 5)
