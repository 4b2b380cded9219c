"""The two worlds of a leakage audit: the real protocol behind a relay, and its ideal functionality.

Both worlds share one ground truth: the same accounts send the same images in
the same order at the same times. In the **real** world every voucher is made
by the protocol's client and submitted through a :class:`~e2escan.messenger.Relay`
with the match server attached, and the audit reads back only the relay's
ServerView (the ``voucher`` events and the match server's typed events). In
the **ideal** world the protocol's :class:`~e2escan.protocols.ideal.IdealFunctionality`
makes the voucher bytes and the server's records from the declared leakage
and fresh randomness; its records go through the same event codec, so both
worlds have the same shapes.

Traffic (seeded): each account sends ``g`` distinct database images
(``g`` uniform in ``0 .. min(t, 4) - 1`` for a threshold ``t``, else in
``0 .. 3``), each either exactly or, with probability 1/2, as a near copy
(one of its first three bits flipped: a match for ``tpsi-ad-ball`` at radius
1 and ``tpsi-ad-multiprobe``'s default probes, a non-match for the exact
variants), two to four images outside the database, and with probability
1/2 a re-sent copy of one of those (under ``dedup = "none"`` only of a
non-member, so that no account reaches ``t``), in random order. Every account
stays below the threshold by the ground truth; an account the real server
opens anyway shows up in the ``counts`` family (``over_threshold``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, ProtocolError, RelayError
from ..hashing import HashArray, PerceptualHash
from ..messenger import Relay, ViewEvent
from ..messenger.x3dh import Identity, create_bundle
from ..protocols.base import Protocol, ProtocolParams
from ..protocols.events import (
    MatchEvent,
    MatchRecorder,
    decode_event,
    encode_event,
    replay,
)
from ..protocols.ideal import Fresh, IdealFunctionality, VoucherTruth

HASH_BITS = 64
DATABASE_SIZE = 64
PAYLOAD_BYTES = 32
ENVELOPE_BYTES = 96
NEAR_BITS = 3  # near copies flip one of these bits: inside tpsi-ad-multiprobe's default probes, radius 1 of the ball
MEAN_VOUCHERS_PER_ACCOUNT = 1.5 + 3.0 + 0.5  # members + non-members + re-sent copy, on average


@dataclass(frozen=True)
class Observed:
    """One voucher as a world shows it to the server: bytes and time from the relay, the server's record."""

    voucher: bytes
    size: int
    at: float
    record: Mapping[str, Any]


@dataclass
class World:
    name: str
    vouchers: dict[str, list[Observed]] = field(default_factory=dict)
    account_fields: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Whether the server could decrypt anything for the account (a broken protocol may cross early).
    over_threshold: dict[str, bool] = field(default_factory=dict)


@dataclass
class Worlds:
    """Real and ideal world on one ground truth, with the ideal functionality that built the second."""

    protocol: Protocol
    params: ProtocolParams
    ideal: IdealFunctionality
    accounts: list[str]
    truths: dict[str, list[VoucherTruth]]
    real: World
    ideal_world: World
    #: Wall time of the real world (setup, scanning, relay and ingest) and of the ideal world.
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def voucher_count(self) -> int:
        return sum(len(v) for v in self.truths.values())


@dataclass(frozen=True)
class _Planned:
    account: str
    image: int
    phash: PerceptualHash
    payload: bytes
    at: float


def _flip(h: PerceptualHash, bit: int) -> PerceptualHash:
    data = bytearray(h.data)
    data[bit // 8] ^= 0x80 >> (bit % 8)
    return PerceptualHash(h.bits, bytes(data))


def plan_traffic(protocol: Protocol, params: ProtocolParams, accounts: int, database: HashArray,
                 rng: np.random.Generator) -> list[list[_Planned]]:
    t = protocol.threshold(params)
    # A re-sent copy of a member counts again toward t unless copies count once: then only non-members.
    resend_members = t is None or protocol.counts_copies_once(params)
    cap = min(t, 4) if t is not None else 4
    plans = []
    next_image = len(database)
    clock = 0.0
    for a in range(accounts):
        name = f"account-{a:05d}"
        members = rng.choice(len(database), size=int(rng.integers(0, cap)), replace=False)
        images: list[tuple[int, PerceptualHash]] = []
        for i in members:
            if rng.random() < 0.5:
                images.append((int(i), database[int(i)]))
            else:  # a near copy: one of the first three bits flipped (a match for the fuzzy variants only)
                images.append((next_image, _flip(database[int(i)], int(rng.integers(0, NEAR_BITS)))))
                next_image += 1
        for h in HashArray.random(int(rng.integers(2, 5)), database.bits, rng):
            images.append((next_image, h))
            next_image += 1
        if rng.random() < 0.5:
            pool = images if resend_members else images[len(members):]
            images.append(pool[int(rng.integers(len(pool)))])
        plan = []
        for k in rng.permutation(len(images)):
            clock += float(rng.exponential(60.0))
            image, h = images[int(k)]
            plan.append(_Planned(name, image, h, rng.bytes(PAYLOAD_BYTES), clock))
        plans.append(plan)
    return plans


def build_worlds(protocol: Protocol, params: ProtocolParams, accounts: int, rng: np.random.Generator) -> Worlds:
    """Run the real protocol and its ideal functionality on one seeded traffic plan."""
    ideal = protocol.ideal_functionality(params, HASH_BITS)
    ideal.check(protocol.LEAKAGE, protocol.name)
    traffic_rng, database_rng, fresh_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(int(rng.integers(2**63))).spawn(3))
    database = HashArray.random(DATABASE_SIZE, HASH_BITS, database_rng)
    plans = plan_traffic(protocol, params, accounts, database, traffic_rng)
    matcher = protocol.plaintext_matcher(database, params)
    openings = protocol.expected_openings(database, params)

    # Real world: the protocol's client and server, through a relay.
    t_start = time.perf_counter()
    server, public = protocol.server_setup(database, params)
    clock = [0.0]
    relay = Relay(clock=lambda: clock[0])
    relay.attach_match_server(MatchRecorder(server, protocol.name, protocol.LEAKAGE))
    bundle = create_bundle(Identity.generate(0)).encode()
    relay.register("peer", bundle)
    envelope = bytes(ENVELOPE_BYTES)
    truths: dict[str, list[VoucherTruth]] = {}
    names = []
    over: dict[str, bool] = {}
    for plan in plans:
        name = plan[0].account
        names.append(name)
        relay.register(name, bundle)
        client = protocol.client(public, params)
        truths[name] = []
        for index, item in enumerate(plan):
            clock[0] = item.at
            voucher = client.scan(item.phash, payload=item.payload)
            relay.submit(name, "peer", envelope, voucher)
            member, distance = matcher(item.phash)
            truths[name].append(VoucherTruth(name, index, item.image, item.phash.data, item.payload, bool(member),
                                             int(distance), client.last_was_synthetic, openings(item.phash, bool(member))))
        over[name] = bool(relay.reveal(name).over_threshold) and protocol.threshold(params) is not None
    real = read_real_world(relay, names)
    real.over_threshold.update(over)
    t_real = time.perf_counter()
    worlds = build_ideal_world(protocol, params, ideal, names, truths, real, fresh_rng)
    worlds.seconds.update({"real_world_s": t_real - t_start, "ideal_world_s": time.perf_counter() - t_real})
    return worlds


def build_ideal_world(protocol: Protocol, params: ProtocolParams, ideal: IdealFunctionality, accounts: Sequence[str],
                      truths: Mapping[str, Sequence[VoucherTruth]], real: World, rng: np.random.Generator) -> Worlds:
    """The ideal world on the real world's truths (same accounts, same order, same arrival times)."""
    fresh = Fresh(rng)
    ideal_world = World("ideal")
    for name in accounts:
        if len(truths[name]) != len(real.vouchers[name]):
            raise ConfigError(
                f"audit: account {name} has {len(truths[name])} vouchers in the ground truth but "
                f"{len(real.vouchers[name])} records in the ServerView"
            )
        observed, records = [], []
        for truth, real_obs in zip(truths[name], real.vouchers[name]):
            voucher, ideal_record = ideal.run_voucher(truth, fresh)
            record = _through_codec(protocol.name, name, truth.index, ideal_record)
            records.append(record)
            observed.append(Observed(voucher, len(voucher), real_obs.at, record))
        ideal_world.vouchers[name] = observed
        ideal_world.account_fields[name] = ideal.run_account(records, truths[name])
        ideal_world.over_threshold[name] = False  # the ideal functionality describes the view below t
    return Worlds(protocol, params, ideal, list(accounts), {a: list(truths[a]) for a in accounts}, real, ideal_world)


def _through_codec(protocol: str, account: str, index: int, record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The record as it would read back from a ServerView (tuples, bytes), so both worlds share one shape."""
    event = decode_event(encode_event(MatchEvent(protocol, account, index, record))[1])
    if not isinstance(event, MatchEvent):  # encode_event kept the kind, so decode_event returns it
        raise ProtocolError(f"audit: a match event of {protocol} decoded as a {type(event).__name__}")
    return event.fields


def read_real_world(relay: Relay, accounts: Sequence[str]) -> World:
    """The real world from the ServerView alone: voucher events, and the match server's replayed records."""
    held = replay(relay.view)
    by_ref = {ev.ref: ev for ev in relay.view.events("voucher")}
    world = World("real")
    for name in accounts:
        records = held.records.get(name, [])
        refs = held.refs.get(name, {})
        world.vouchers[name] = [_observed(by_ref[refs[i]], record) for i, record in enumerate(records)]
        world.account_fields[name] = held.accounts.get(name, {})
    return world


def _observed(event: ViewEvent, record: Mapping[str, Any]) -> Observed:
    """The voucher of a ``voucher`` event of the ServerView, with the server's record of it."""
    if event.data is None:  # the relay logs every voucher event with its bytes
        raise RelayError(f"ServerView event {event.seq}: a voucher event without the voucher's bytes")
    return Observed(event.data, event.size, event.at, record)


def resolve_params(protocol: Protocol, overrides: Mapping[str, Any]) -> ProtocolParams:
    """The protocol's defaults with ``overrides`` (unknown keys are a :class:`ConfigError` naming the accepted ones)."""
    return protocol.Params.from_mapping(dict(overrides), source=f"audit parameters of {protocol.name}")
