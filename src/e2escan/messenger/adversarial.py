"""What a malicious relay can try against the devices, and what the devices do about it.

:class:`AdversarialRelay` is a :class:`Relay` whose operator deviates: it
replays queued envelopes (under the real or another sender name), delivers a
recipient's queue in another order, drops messages, hands out prekey bundles
without a one-time prekey, re-submits a voucher with its pairs reordered, and
(as the scanning server) publishes a table with an invalid cell.
:func:`run_adversarial_relay` plays each attack against real devices and
reports the outcome; ``e2escan demo --adversarial-relay`` prints it.

The relay can always deny service (drop everything) and sees all metadata;
what the devices guarantee is that nothing it does makes them accept a
message twice, accept a message under a name it did not come from, or
decrypt anything for the relay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import E2escanError, ProtocolError, ReplayError, VoucherError
from .device import Device
from .relay import Relay
from .wire import PrekeyBundle


class AdversarialRelay(Relay):
    """A relay whose operator deviates from the protocol (it holds no key, so it acts on what it stores)."""

    strip_one_time_prekeys: bool = False

    def queued_envelopes(self, recipient: str) -> list[tuple[int, str, bytes]]:
        return [tuple(r) for r in self._query_all(
            "SELECT id, sender, envelope FROM queue WHERE recipient = ? ORDER BY id", (recipient,))]

    def replay(self, envelope: bytes, sender: str, recipient: str) -> int:
        """Queue a copy of an envelope it saw, under any sender name."""
        return self.submit(sender, recipient, envelope)

    def drop(self, message_id: int) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM queue WHERE id = ?", (message_id,))

    def reverse_queue(self, recipient: str) -> None:
        """Re-queue a recipient's messages in reverse order."""
        rows = self.queued_envelopes(recipient)
        with self._transaction():
            self._db.execute("DELETE FROM queue WHERE recipient = ?", (recipient,))
            for _, sender, envelope in reversed(rows):
                self._db.execute(
                    "INSERT INTO queue (sender, recipient, envelope, at) VALUES (?, ?, ?, ?)",
                    (sender, recipient, envelope, float(self.clock())),
                )

    def fetch_bundle(self, requester: str, device_id: str) -> bytes:
        bundle = super().fetch_bundle(requester, device_id)
        if not self.strip_one_time_prekeys:
            return bundle
        b = PrekeyBundle.decode(bundle)
        return PrekeyBundle(b.identity, b.spk_id, b.spk, b.spk_signature, ()).encode()


@dataclass(frozen=True)
class AttackOutcome:
    attack: str
    relay_did: str
    devices_did: str
    held: bool  # the devices' guarantee held


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _errors(device: Device, since: int) -> str:
    errs = device.rejected[since:]
    return "; ".join(f"refused: {type(r.error).__name__}" for r in errs) or "nothing refused"


def _replay() -> AttackOutcome:
    relay = AdversarialRelay(clock=_Clock())
    alice, bob = Device.register("alice", relay), Device.register("bob", relay)
    alice.send("bob", b"hello")
    bob.receive()
    bob.send("alice", b"hi")
    alice.receive()
    alice.send("bob", b"pay 10 to carol")
    (_, sender, envelope), = relay.queued_envelopes("bob")
    bob.receive()
    relay.replay(envelope, sender, "bob")
    before = len(bob.rejected)
    got = bob.receive()
    held = not got and isinstance(bob.rejected[-1].error, ReplayError)
    return AttackOutcome("replay", "re-queued a delivered message from alice", _errors(bob, before), held)


def _relabel() -> AttackOutcome:
    relay = AdversarialRelay(clock=_Clock())
    bob = Device.register("bob", relay, one_time_prekeys=0)
    alice, dave = Device.register("alice", relay), Device.register("dave", relay)
    alice.send("bob", b"first message, no one-time prekey")
    (_, _, envelope), = relay.queued_envelopes("bob")
    bob.receive()
    relay.replay(envelope, "dave", "bob")
    before = len(bob.rejected)
    got = bob.receive()
    dave.send("bob", b"the real dave")
    real = [r.body for r in bob.receive()]
    held = not got and real == [b"the real dave"]
    return AttackOutcome(
        "replay under another name", "re-queued alice's first message (no one-time prekey) as from dave",
        f"{_errors(bob, before)}; the real dave's first message then decrypted", held)


def _reorder() -> AttackOutcome:
    relay = AdversarialRelay(clock=_Clock())
    alice, bob = Device.register("alice", relay), Device.register("bob", relay)
    for i in range(3):
        alice.send("bob", b"message %d" % i)
    relay.reverse_queue("bob")
    got = [r.body for r in bob.receive()]
    held = sorted(got) == [b"message 0", b"message 1", b"message 2"] and not bob.rejected
    return AttackOutcome("reordering", "delivered three messages in reverse order",
                         f"decrypted all three, each once, in the order delivered: {[g.decode()[-1] for g in got]}", held)


def _drop() -> AttackOutcome:
    relay = AdversarialRelay(clock=_Clock())
    alice, bob = Device.register("alice", relay), Device.register("bob", relay)
    for i in range(3):
        alice.send("bob", b"message %d" % i)
    dropped = relay.queued_envelopes("bob")[1][0]
    relay.drop(dropped)
    got = [r.body for r in bob.receive()]
    gap = len(bob.session_with("alice").skipped)
    held = got == [b"message 0", b"message 2"] and gap == 1
    return AttackOutcome("dropping", "dropped the second of three messages",
                         f"decrypted the other two; the gap shows as {gap} skipped message key (message 1 missing)", held)


def _strip_opk() -> AttackOutcome:
    relay = AdversarialRelay(clock=_Clock())
    relay.strip_one_time_prekeys = True
    alice, bob = Device.register("alice", relay), Device.register("bob", relay)
    alice.send("bob", b"first message")
    (_, sender, envelope), = relay.queued_envelopes("bob")
    got = [r.body for r in bob.receive()]
    relay.replay(envelope, sender, "bob")
    before = len(bob.rejected)
    again = bob.receive()
    held = got == [b"first message"] and not again and isinstance(bob.rejected[-1].error, ReplayError)
    return AttackOutcome("bundle without a one-time prekey",
                         "handed alice bob's bundle without its one-time prekey (X3DH without DH4), then replayed",
                         f"accepted the first message once (X3DH allows it); the replay: {_errors(bob, before)}", held)


def _voucher_reorder() -> AttackOutcome:
    from ..hashing import HashArray
    from ..protocols import get_protocol
    from ..protocols.tpsi_ad import CT_BYTES, TpsiAdParams, voucher_schema

    proto = get_protocol("tpsi-ad")
    params = TpsiAdParams(threshold=3, synthetic_probability=0.0)
    db = HashArray.random(8, 64, np.random.default_rng(0))
    server, public = proto.server_setup(db, params)
    voucher = proto.client(public, params).scan(db[0])
    schema = voucher_schema(params)
    d = dict(schema.decode(voucher))

    def flip(data: bytes, n: int) -> bytes:
        return b"".join(reversed([data[i : i + n] for i in range(0, len(data), n)]))

    d["Q"], d["ct"] = flip(d["Q"], 32), flip(d["ct"], CT_BYTES)
    server.ingest("alice", voucher)
    attack, did = "voucher replay, pairs reordered", "re-submitted alice's voucher, pairs reversed, as mallory's"
    try:
        server.ingest("mallory", schema.encode(d))
    except VoucherError as exc:
        return AttackOutcome(attack, did, f"match server refused: {type(exc).__name__} (replays are keyed on the points Q)",
                             True)
    return AttackOutcome(attack, did, "match server accepted it: it would open and count again", False)


def _invalid_cell() -> AttackOutcome:
    from ..crypto import group
    from ..hashing import HashArray
    from ..protocols import blinded_table, get_protocol
    from ..protocols.tpsi_ad import TpsiAdParams

    proto = get_protocol("tpsi-ad")
    params = TpsiAdParams(threshold=3)
    _, public = proto.server_setup(HashArray.random(8, 64, np.random.default_rng(1)), params)
    schema = blinded_table.public_schema(proto.name, public[:4])
    d = dict(schema.decode(public))
    d["table"] = d["table"][:96] + group.small_order_points()[1] + d["table"][128:]
    attack, did = "invalid table cell", "published a table with a small-order point in cell 3"
    try:
        proto.client(schema.encode(d), params)
    except ProtocolError as exc:
        return AttackOutcome(attack, did, f"device refused the public parameters: {str(exc).split(';')[0]}", True)
    return AttackOutcome(attack, did, "device accepted the table: images hashing to cell 3 would fail (targeted denial)",
                         False)


ATTACKS: tuple[Callable[[], AttackOutcome], ...] = (
    _replay, _relabel, _reorder, _drop, _strip_opk, _voucher_reorder, _invalid_cell,
)


def run_adversarial_relay() -> list[AttackOutcome]:
    """Play every attack against fresh devices; each outcome says whether the devices' guarantee held."""
    out = []
    for attack in ATTACKS:
        try:
            out.append(attack())
        except E2escanError as exc:  # an attack that crashes a device is a failure of the devices, reported
            out.append(AttackOutcome(attack.__name__.strip("_"), "-", f"crashed: {exc}", False))
    return out
