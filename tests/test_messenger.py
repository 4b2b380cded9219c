"""Devices and the relay: sessions, attachments, tampering on the relay, persistence, the ServerView."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.crypto import random_bytes
from e2escan.errors import AuthenticationError, DecodeError, RelayError
from e2escan.messenger import Device, Relay
from e2escan.messenger.demo import find_plaintext_in_view, run_demo
from e2escan.messenger.wire import (
    AttachmentPointer,
    Content,
    Header,
    PrekeyBundle,
    PrekeyMessage,
    RatchetMessage,
)


@pytest.fixture
def trio():
    relay = Relay()
    return relay, Device.register("alice", relay), Device.register("bob", relay), Device.register("carol", relay)


def test_public_surface_conversation_with_attachment(trio):
    relay, alice, bob, _ = trio
    alice.send("bob", b"hello", attachment=b"...jpeg bytes...")
    (msg,) = bob.receive()
    assert (msg.sender, msg.body, msg.attachment) == ("alice", b"hello", b"...jpeg bytes...")
    bob.send("alice", b"hi")
    assert [m.body for m in alice.receive()] == [b"hi"]
    assert relay.queued() == 0
    kinds = {ev.kind for ev in relay.view}
    assert {"register", "bundle", "blob_upload", "submit", "deliver", "blob_download", "ack"} <= kinds


def test_group_fan_out_uploads_attachment_once(trio):
    relay, alice, bob, carol = trio
    alice.send_group(["bob", "carol"], b"to both", attachment=b"photo")
    assert [m.attachment for m in bob.receive()] == [b"photo"]
    assert [m.attachment for m in carol.receive()] == [b"photo"]
    assert len(list(relay.view.events("blob_upload"))) == 1
    assert len(list(relay.view.events("submit"))) == 2


def test_prekey_messages_until_reply_and_one_time_prekey_consumed(trio):
    relay, alice, bob, _ = trio
    before = relay.prekey_count("bob")
    alice.send("bob", b"1")
    alice.send("bob", b"2")
    assert relay.prekey_count("bob") == before - 1
    envelopes = [ev.data for ev in relay.view.events("submit")]
    assert all(e[1] == 2 for e in envelopes)  # both carry the X3DH initiation
    assert [m.body for m in bob.receive()] == [b"1", b"2"]
    bob.send("alice", b"r")
    alice.receive()
    alice.send("bob", b"3")
    assert list(relay.view.events("submit"))[-1].data[1] == 1  # a plain ratchet message now


def test_out_of_order_prekey_messages(trio):
    relay, alice, bob, _ = trio
    for i in range(4):
        alice.send("bob", f"{i}".encode())
    deliveries = relay.fetch("bob")
    for d in reversed(deliveries):
        body, _ = bob.open_envelope(d.sender, d.envelope)
        assert body == f"{deliveries.index(d)}".encode()


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["envelope", "blob"]), st.integers(0, 10**6), st.booleans())
def test_flipped_bit_on_the_relay_is_rejected_and_sessions_stay_usable(target, position, he):
    relay = Relay()
    alice = Device.register("alice", relay, header_encryption=he)
    bob = Device.register("bob", relay, header_encryption=he)
    alice.send("bob", b"first")
    bob.receive()
    bob.send("alice", b"reply")
    alice.receive()
    alice.send("bob", b"tampered in transit", attachment=b"attachment bytes " * 4)
    db = relay._db
    if target == "envelope":
        (mid, env) = db.execute("SELECT id, envelope FROM queue").fetchone()
        db.execute("UPDATE queue SET envelope = ? WHERE id = ?", (_flip(env, position % (len(env) * 8)), mid))
    else:
        (bid, blob) = db.execute("SELECT id, data FROM blobs ORDER BY at DESC LIMIT 1").fetchone()
        db.execute("UPDATE blobs SET data = ? WHERE id = ?", (_flip(blob, position % (len(blob) * 8)), bid))
    assert bob.receive() == []
    (rejected,) = bob.rejected
    assert rejected.sender == "alice" and str(rejected.error)
    # Both sessions still work in both directions.
    alice.send("bob", b"next")
    assert [m.body for m in bob.receive()] == [b"next"]
    bob.send("alice", b"back")
    assert [m.body for m in alice.receive()] == [b"back"]


def test_identity_change_is_detected():
    relay = Relay()
    alice = Device.register("alice", relay)
    bob = Device.register("bob", relay)
    alice.send("bob", b"x")
    bob.receive()
    mallory = Device.register("mallory", relay)
    # Mallory replays her own X3DH initiation to Bob under Alice's name.
    env = mallory._encrypt_for("bob", Content(b"evil").encode())
    with pytest.raises(AuthenticationError, match="identity key of 'alice' changed"):
        bob.open_envelope("alice", env)


def test_relay_rejects_unknown_devices_and_bad_bundles():
    relay = Relay()
    with pytest.raises(RelayError, match="unknown device 'ghost'"):
        relay.submit("ghost", "ghost", b"x")
    with pytest.raises(DecodeError, match="prekey bundle"):
        relay.register("alice", b"E2B\x01" + bytes(10))
    Device.register("alice", relay)
    with pytest.raises(RelayError, match="already registered"):
        Device.register("alice", relay)
    with pytest.raises(RelayError, match="no blob"):
        relay.get_blob("alice", bytes(16))


def test_no_plaintext_in_server_view_or_sqlite_file(tmp_path):
    path = tmp_path / "relay.sqlite"
    relay = Relay(path)
    devices = [Device.register(n, relay) for n in ("a", "b", "c")]
    plaintexts = []
    for i in range(12):
        s, r = devices[i % 3], devices[(i + 1) % 3]
        body = b"secret message " + random_bytes(24).hex().encode()
        att = b"attachment content " + random_bytes(300)
        plaintexts += [body, att]
        s.send(r.device_id, body, attachment=att)
        r.receive()
    assert find_plaintext_in_view(list(relay.view), plaintexts) == []
    relay.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for p in plaintexts:
        assert p not in raw
        assert p[-24:] not in raw


def test_demo_reports_no_leak(tmp_path):
    result = run_demo(tmp_path / "demo.sqlite")
    assert result.plaintext_leaks == []
    assert sum(len(v) for v in result.received.values()) == len(result.sent)


def test_restarted_relay_resumes(tmp_path):
    path = tmp_path / "relay.sqlite"
    relay = Relay(path)
    alice = Device.register("alice", relay)
    bob = Device.register("bob", relay)
    alice.send("bob", b"before restart", attachment=b"blob")
    events = len(relay.view)
    relay.close()
    relay = Relay(path)
    bob.relay = relay
    alice.relay = relay
    assert len(relay.view) == events
    (m,) = bob.receive()
    assert (m.body, m.attachment) == (b"before restart", b"blob")
    bob.send("alice", b"after restart")
    assert [m.body for m in alice.receive()] == [b"after restart"]


SENDER = textwrap.dedent(
    """
    import sys
    from e2escan.messenger import Device, Relay
    relay = Relay(sys.argv[1])
    alice = Device.register("alice", relay)
    i = 0
    while True:
        mid = alice.send("bob", b"message %d" % i, attachment=(b"att %d" % i) if i % 3 == 0 else None)
        print(i, mid, flush=True)   # printed only after the relay acknowledged
        i += 1
    """
)


def test_relay_killed_with_sigkill_loses_nothing_acknowledged(tmp_path):
    path = tmp_path / "relay.sqlite"
    relay = Relay(path)
    bob = Device.register("bob", relay)
    relay.close()
    proc = subprocess.Popen([sys.executable, "-c", SENDER, str(path)], stdout=subprocess.PIPE, text=True)
    acked = []
    deadline = time.time() + 60
    while len(acked) < 25 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(int(line.split()[0]))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(acked) >= 25, "the sender subprocess did not start"
    relay = Relay(path)
    bob.relay = relay
    received = bob.receive()
    bodies = [m.body for m in received]
    for i in acked:
        assert b"message %d" % i in bodies
    assert bob.rejected == []
    for m in received:
        i = int(m.body.split()[1])
        assert m.attachment == ((b"att %d" % i) if i % 3 == 0 else None)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.one_of(st.none(), st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32), st.integers(0, 2**64 - 1))), st.data())
def test_content_codec_round_trip_and_truncation(body, att, data):
    content = Content(body, AttachmentPointer(*att) if att else None)
    enc = content.encode()
    assert Content.decode(enc) == content
    cut = data.draw(st.integers(0, len(enc) - 1))
    with pytest.raises(DecodeError):
        Content.decode(enc[:cut])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3), st.data())
def test_bundle_codec_round_trip_truncation_and_length_field(n_opk, data):
    from e2escan.messenger.wire import OneTimePrekey

    opks = tuple(OneTimePrekey(i + 1, random_bytes(32)) for i in range(n_opk))
    bundle = PrekeyBundle(random_bytes(32), 7, random_bytes(32), random_bytes(64), opks)
    enc = bundle.encode()
    assert PrekeyBundle.decode(enc) == bundle
    cut = data.draw(st.integers(0, len(enc) - 1))
    with pytest.raises(DecodeError, match="prekey bundle"):
        PrekeyBundle.decode(enc[:cut])
    # The count field (offset 4 + 32 + 4 + 32 + 64 = 136) claiming a different number of keys.
    bad = bytearray(enc)
    bad[137] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecodeError):
        PrekeyBundle.decode(bytes(bad))


@given(st.binary(max_size=200))
def test_decoders_never_crash_on_garbage(blob):
    for decode in (PrekeyBundle.decode, Content.decode, Header.decode, RatchetMessage.decode, PrekeyMessage.decode_body):
        try:
            decode(blob)
        except DecodeError:
            pass


@given(st.integers(0, 10**7))
def test_attachment_padding_buckets(n):
    from e2escan.messenger.attachments import padded_size

    p = padded_size(n)
    assert p >= n and p >= 541
    assert n <= 541 or p <= n * 1.05 + 1


def test_padded_attachment_sizes_hide_exact_lengths():
    relay = Relay()
    alice, bob = Device.register("alice", relay), Device.register("bob", relay)
    for size in (1000, 1010, 1020):  # the same bucket
        alice.send("bob", b"x", attachment=random_bytes(size))
    assert [len(m.attachment) for m in bob.receive()] == [1000, 1010, 1020]
    assert len({ev.size for ev in relay.view.events("blob_upload")}) == 1
