"""Messages per second through the messenger, as ratios to the raw operations the path needs.

Three measurements in one process, on the same messages:

* ``raw``: exactly the primitive calls a message needs once a session exists
  (sender: two HMAC-SHA-256 for KDF_CK and one XChaCha20-Poly1305 seal;
  recipient: the same with an open; plus, per ratchet turn, the X25519 and HKDF
  calls of a DH ratchet step), called directly on libsodium / cryptography.
* ``session``: Session.ratchet_encrypt -> wire encode -> decode -> ratchet_decrypt.
* ``full``: Device.send -> Relay (in-memory SQLite, ServerView logging) ->
  Device.receive, against ``raw`` plus the same SQLite statements executed directly.

Conversations alternate direction every ``--burst`` messages so DH ratchet
steps happen at a realistic rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import time

import nacl.bindings as sodium
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from e2escan.crypto import X25519KeyPair, random_bytes
from e2escan.messenger import Device, Relay
from e2escan.messenger.ratchet import Session
from e2escan.messenger.relay import _SCHEMA
from e2escan.messenger.wire import RatchetMessage


def _hmac(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def raw_path(n: int, burst: int, body: bytes) -> float:
    """The primitive calls of n messages, nothing else."""
    ck = random_bytes(32)
    rk = random_bytes(32)
    nonce = bytes(24)
    ad = random_bytes(64)
    t0 = time.perf_counter()
    for i in range(n):
        if i % burst == 0:  # a DH ratchet step on the receiving side plus a new sending key
            priv = random_bytes(32)
            pub = sodium.crypto_scalarmult_base(priv)
            for _ in range(2):
                out = sodium.crypto_scalarmult(priv, pub)
                rk = HKDF(hashes.SHA256(), 64, rk, b"info").derive(out)[:32]
        ck, mk = _hmac(ck, b"\x02"), _hmac(ck, b"\x01")
        header = pub + i.to_bytes(8, "big")
        ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(body, ad + header, nonce, mk)
        _hmac(ck, b"\x02"), _hmac(ck, b"\x01")  # the recipient's KDF_CK
        sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, ad + header, nonce, mk)
    return time.perf_counter() - t0


def session_path(n: int, burst: int, body: bytes) -> float:
    sk, ad, spk = random_bytes(32), random_bytes(64), X25519KeyPair.generate()
    a = Session.ratchet_init_alice(sk, spk.public, ad)
    b = Session.ratchet_init_bob(sk, spk, ad)
    t0 = time.perf_counter()
    for i in range(n):
        s, r = (a, b) if (i // burst) % 2 == 0 or not b.received_any else (b, a)
        r.ratchet_decrypt(RatchetMessage.decode(s.ratchet_encrypt(body).encode()))
    return time.perf_counter() - t0


def raw_sqlite(n: int, body_len: int) -> float:
    """The SQL statements the relay issues per message, executed directly."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(_SCHEMA)
    db.execute("INSERT INTO devices VALUES ('a', x'00', 1, x'00', x'00', 0)")
    db.execute("INSERT INTO devices VALUES ('b', x'00', 1, x'00', x'00', 0)")
    env = random_bytes(body_len)
    t0 = time.perf_counter()
    for _ in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("SELECT 1 FROM devices WHERE id = ?", ("a",)).fetchone()
        db.execute("SELECT 1 FROM devices WHERE id = ?", ("b",)).fetchone()
        mid = db.execute("INSERT INTO queue (sender, recipient, envelope, at) VALUES (?,?,?,?)", ("a", "b", env, 0.0)).lastrowid
        db.execute("INSERT INTO view (kind, at, sender, recipient, size, data, ref) VALUES (?,?,?,?,?,?,?)", ("submit", 0.0, "a", "b", len(env), env, mid))
        db.execute("COMMIT")
        db.execute("BEGIN IMMEDIATE")
        db.execute("SELECT 1 FROM devices WHERE id = ?", ("b",)).fetchone()
        rows = db.execute("SELECT id, sender, envelope, at FROM queue WHERE recipient = ? ORDER BY id", ("b",)).fetchall()
        db.execute("INSERT INTO view (kind, at, sender, recipient, size, data, ref) VALUES (?,?,?,?,?,?,?)", ("deliver", 0.0, "a", "b", len(env), None, mid))
        db.execute("COMMIT")
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM queue WHERE id = ? AND recipient = ?", (rows[0][0], "b"))
        db.execute("INSERT INTO view (kind, at, sender, recipient, size, data, ref) VALUES (?,?,?,?,?,?,?)", ("ack", 0.0, None, "b", 0, None, mid))
        db.execute("COMMIT")
        db.execute("SELECT COUNT(*) FROM prekeys WHERE device = ?", ("b",)).fetchone()
    return time.perf_counter() - t0


def full_path(n: int, burst: int, body: bytes) -> float:
    relay = Relay()
    a = Device.register("a", relay)
    b = Device.register("b", relay)
    a.send("b", b"warm-up")
    b.receive()
    t0 = time.perf_counter()
    for i in range(n):
        s, r = (a, b) if (i // burst) % 2 == 0 else (b, a)
        s.send(r.device_id, body)
        r.receive()
    return time.perf_counter() - t0


def best(fn, repeats: int, *args) -> float:
    return min(fn(*args) for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--burst", type=int, default=5, help="messages per turn before the direction changes")
    ap.add_argument("--body", type=int, default=100, help="plaintext bytes per message")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    body = random_bytes(args.body)
    n = args.messages
    raw = best(raw_path, args.repeats, n, args.burst, body)
    sess = best(session_path, args.repeats, n, args.burst, body)
    sql = best(raw_sqlite, args.repeats, n, args.body + 70)
    full = best(full_path, args.repeats, n, args.burst, body)
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"Python {platform.python_version()}")
    print(f"{n} messages of {args.body} B, direction change every {args.burst}; best of {args.repeats}")
    rows = [
        ("raw libsodium/cryptography ops", raw),
        ("session (ratchet + wire codec)", sess),
        ("raw ops + relay's SQL statements", raw + sql),
        ("full path (Device -> Relay -> Device)", full),
    ]
    for name, t in rows:
        print(f"  {name:40s} {n / t:10,.0f} msg/s  {t / n * 1e6:8.1f} us/msg")
    print(f"ratio session / raw ops:              {sess / raw:5.2f}x")
    print(f"ratio full path / (raw ops + raw SQL): {full / (raw + sql):5.2f}x")
    print(f"ratio full path / raw ops alone:       {full / raw:5.2f}x")


if __name__ == "__main__":
    main()
