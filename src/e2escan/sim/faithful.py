"""The faithful path: every simulated image goes through the real code.

The sender's :class:`~e2escan.messenger.Device` hashes the attachment on the
device, its protocol client makes a voucher, the message and attachment go
through the Double Ratchet and the relay, the match server ingests the
voucher, reveals go to a review queue and a reviewer model decides.

Randomness: one ``numpy.random.Generator`` per component, spawned from the
replicate's ``SeedSequence`` (population, traffic, content, review, leakage).
Keys, nonces and voucher secrets come from the OS CSPRNG and cannot change
any metric: metrics are functions of the plan, the images and the protocol's
deterministic outcomes (which hashes match, which accounts cross the threshold).
"""

from __future__ import annotations

import io
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ScenarioError
from ..hashing import HashArray, PerceptualHash, get_hasher
from ..hashing.cache import HashCache, default_cache_dir
from ..images import synthetic_image
from ..messenger import Device, Relay
from ..messenger.device import SignedPrekeyPolicy
from ..protocols.events import MatchRecorder
from ..protocols.ideal import VoucherTruth
from .content import ContentSource
from .population import PopulationModel, build_population
from .review import Case, ReviewQueue
from .scenario import Scenario
from .traffic import CRAFTED, POPULAR, ImageRef, PlannedMessage, TrafficPlanner

PAYLOAD_BYTES = 1024  # visual derivative, padded to a fixed size so its length says nothing
COMPONENTS = ("population", "traffic", "content", "review", "leakage", "protocol", "attacks")


class SimulatedClock:
    """The relay's clock: the engine sets ``now`` to each event's simulated time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ImageRecord:
    uid: int
    day: int
    sender: int
    kind: str
    transform: str
    hash_hex: str
    distance: int  # Hamming distance to the nearest database hash
    oracle_match: bool  # does the protocol's plaintext matcher count this image as a match?
    voucher_bytes: int
    message_id: int
    attacked: bool = False  # perturbed by the evasion attack before sending
    target: bool = False  # the poisoning adversary's target image
    synthetic: bool = False  # the device sent a synthetic voucher instead of a real one (device-side truth)


@dataclass
class CostSample:
    hash_s: list[float] = field(default_factory=list)
    scan_s: list[float] = field(default_factory=list)
    ingest_s: list[float] = field(default_factory=list)
    voucher_bytes: list[int] = field(default_factory=list)
    attachment_bytes: list[int] = field(default_factory=list)
    blob_bytes: list[int] = field(default_factory=list)
    content_bytes: list[int] = field(default_factory=list)
    envelope_bytes: list[int] = field(default_factory=list)


@dataclass
class FaithfulRun:
    """Everything a run produced; metrics read from here and from ``relay.view``."""

    scenario: Scenario
    replicate: int
    population: PopulationModel
    relay: Relay
    images: list[ImageRecord]
    flags: dict[int, int]  # account -> first day over the threshold
    revealed: dict[int, set[int]]  # account -> revealed image uids
    decisions: list
    daily: list[dict]
    costs: CostSample
    review_backlog: int
    hash_cache_hits: int
    threshold: int | None
    wall: dict[str, float]  # seconds spent in setup and in the simulated days
    leakage_rng: np.random.Generator
    database_size: int
    poison_entries: int = 0
    protocol: Any = None  # the protocol object and its parameters (for the leakage battery's ideal world)
    params: Any = None
    #: Ground truth of every voucher, per account id, in the order the match server received them.
    voucher_truths: dict[str, list[VoucherTruth]] = field(default_factory=dict)
    hash_bits: int = 0


def spawn_streams(scenario: Scenario, replicate: int) -> dict[str, np.random.Generator]:
    """The component generators of one replicate (child ``replicate`` of the scenario's seed)."""
    return _component_streams(np.random.SeedSequence(scenario.seed).spawn(replicate + 1)[replicate])


def replicate_streams(scenario: Scenario, replicates: int) -> Iterator[dict[str, np.random.Generator]]:
    """``spawn_streams(scenario, r)`` for ``r = 0 .. replicates - 1``, spawning the children once."""
    for child in np.random.SeedSequence(scenario.seed).spawn(replicates):
        yield _component_streams(child)


def _component_streams(seq: np.random.SeedSequence) -> dict[str, np.random.Generator]:
    return {name: np.random.default_rng(child) for name, child in zip(COMPONENTS, seq.spawn(len(COMPONENTS)))}


def make_payload(uid: int, image_bytes: bytes, size: int = 256) -> bytes:
    """The 'visual derivative': a 12x12 greyscale thumbnail prefixed by the image uid, padded to ``size``.

    The uid stands for what a human reviewer would recognise when looking at
    the derivative; the simulator uses it to decide whether the reviewer saw a
    known image. Padding to a fixed size keeps the payload's length from
    saying anything.
    """
    img = Image.open(io.BytesIO(image_bytes)).convert("L").resize((12, 12))
    body = struct.pack(">Q", uid) + img.tobytes()
    if len(body) > size:
        raise ScenarioError(f"protocol.params.payload_size: {size} bytes cannot hold the {len(body)}-byte derivative")
    return body + bytes(size - len(body))


def payload_uid(payload: bytes) -> int:
    return struct.unpack(">Q", payload[:8])[0]


class _Scanner:
    """The device-side scanner: decode the attachment, hash it, make a voucher.

    One per device (each device runs the protocol's C-Init with its own keys);
    the engine sets ``current`` (the image being sent) before each send.
    """

    def __init__(self, hasher, client, cache: HashCache, costs: CostSample, measure_first: int,
                 payload_size: int) -> None:
        self.hasher = hasher
        self.client = client
        self.cache = cache
        self.costs = costs
        self.measure_first = measure_first
        self.payload_size = payload_size
        self.current: ImageRef | None = None
        self.last_hash: PerceptualHash | None = None
        self.last_voucher_len = 0
        self.last_payload = b""
        self.vouchers_sent = 0

    def __call__(self, attachment: bytes) -> bytes:
        ref = self.current
        assert ref is not None
        digest = self.cache.digest(attachment)
        cached = self.cache.get(digest)
        measure = len(self.costs.hash_s) < self.measure_first
        if cached is None or measure:
            t0 = time.perf_counter()
            h = self.hasher.hash(Image.open(io.BytesIO(attachment)))
            self.costs.hash_s.append(time.perf_counter() - t0)
            if cached is not None and cached != h.data:
                raise RuntimeError("hash cache disagrees with a fresh hash: delete the cache directory")
            if cached is None:
                self.cache.put(digest, h.data)
        else:
            h = PerceptualHash(self.hasher.bits, cached)
        payload = make_payload(ref.uid, attachment, self.payload_size)
        t0 = time.perf_counter()
        voucher = self.client.scan(h, payload=payload)
        self.costs.scan_s.append(time.perf_counter() - t0)
        self.last_hash = h
        self.last_voucher_len = len(voucher)
        self.last_payload = payload
        self.vouchers_sent += 1
        return voucher


def run_faithful(
    scenario: Scenario,
    replicate: int = 0,
    *,
    cache_dir: str | Path | None = "default",
    progress: Callable[[int], None] | None = None,
    protocol: Any = None,
) -> FaithfulRun:
    """Simulate one replicate. ``protocol`` replaces the registered protocol module (for variants under test)."""
    t_start = time.perf_counter()
    streams = spawn_streams(scenario, replicate)
    pop = build_population(scenario.population, streams["population"])
    planner = TrafficPlanner(scenario, pop, streams["traffic"])
    try:
        hasher = get_hasher(scenario.hasher.name, **scenario.hasher.params)
    except TypeError as exc:
        raise ScenarioError(f"hasher.params: {exc}") from None
    content = ContentSource(scenario.content, scenario.traffic, streams["content"])
    database = HashArray.from_hashes(hasher.hash(img) for img in content.known_images())
    poison_entries = 0
    if scenario.attacks.poisoning is not None:
        poison = poison_hashes(scenario, content, hasher, streams["attacks"])
        poison_entries = len(poison)
        database = HashArray(np.concatenate([database.data, poison.data]))

    if protocol is None:
        from ..protocols import get_protocol

        protocol = get_protocol(scenario.protocol.name)
    proto = protocol
    params = scenario.protocol.params
    server, public = proto.server_setup(database, params)
    matcher = proto.plaintext_matcher(database, params)
    openings = proto.expected_openings(database, params)
    threshold = proto.threshold(params)

    if cache_dir == "default":
        cache_path: Path | None = default_cache_dir() / "hashes.sqlite"
    else:
        cache_path = None if cache_dir is None else Path(cache_dir) / "hashes.sqlite"
    cache = HashCache(cache_path, hasher.spec)
    costs = CostSample()
    payload_size = proto.payload_size(params)

    clock = SimulatedClock()
    relay = Relay(clock=clock)

    # The match server sits behind the relay: what it learns enters the ServerView as typed events.
    recorder = MatchRecorder(server, proto.name, proto.LEAKAGE, costs.ingest_s)
    relay.attach_match_server(recorder)
    scanners = [
        _Scanner(hasher, proto.client(public, params), cache, costs, 50, payload_size) for _ in range(len(pop))
    ]
    for sc in scanners:
        proto.seed_client(sc.client, streams["protocol"], params)  # reproducible device coins, if it has any
    spk_policy = SignedPrekeyPolicy(scenario.messenger.spk_rotation_days * 86_400.0,
                                    scenario.messenger.spk_grace_days * 86_400.0)
    devices = [
        Device.register(pop.ids[i], relay, header_encryption=scenario.messenger.header_encryption, scanner=scanners[i],
                        spk_policy=spk_policy)
        for i in range(len(pop))
    ]
    review = ReviewQueue(scenario.review, streams["review"])
    attack = _AttackContext(scenario, hasher, streams["attacks"], database)
    crafted_messages = attack.craft(scenario, pop, planner, database, proto.match_radius(params))
    images: list[ImageRecord] = []
    truths: dict[str, list[VoucherTruth]] = {}
    known_uids: set[int] = set()
    flags: dict[int, int] = {}
    revealed: dict[int, set[int]] = defaultdict(set)
    daily = []

    t_days = time.perf_counter()
    for day in range(scenario.days):
        touched: set[int] = set()
        plan = planner.day(day)
        if day == 0 and crafted_messages:
            plan = sorted(plan + crafted_messages, key=lambda m: m.at)
        day_images = 0
        for msg in plan:
            clock.now = msg.at
            _send(msg, devices, content, scanners[msg.sender], images, known_uids, matcher, costs, relay, touched,
                  attack, openings, truths)
            day_images += msg.image is not None
            if progress:
                progress(1)
        clock.now = (day + 1) * 86_400.0 - 1
        for d in devices:
            d.receive()
        new_flags = 0
        for acct in sorted(touched):
            reveal = relay.reveal(pop.ids[acct])
            if not reveal.over_threshold:
                continue
            uids = {payload_uid(p) for p in reveal.matches}
            fresh = uids - revealed[acct]
            if not fresh:
                continue
            revealed[acct] |= fresh
            if acct not in flags:
                flags[acct] = day
                new_flags += 1
            review.submit(Case(acct, day, tuple(sorted(fresh))))
        decided = review.work_day(day, known_uids)
        daily.append(
            {
                "day": day,
                "messages": len(plan),
                "images": day_images,
                "known_images": sum(1 for m in plan if m.image is not None and m.image.known),
                "new_flags": new_flags,
                "reviewed": len(decided),
                "confirmed": sum(d.confirmed for d in decided),
                "backlog": review.backlog,
            }
        )
        for d in devices:
            if d.rejected:
                raise RuntimeError(f"device {d.device_id} rejected a message: {d.rejected[0].error}")
    cache.close()
    return FaithfulRun(
        scenario, replicate, pop, relay, images, flags, dict(revealed), review.decisions, daily, costs,
        review.backlog, cache.hits, threshold,
        {"setup_s": t_days - t_start, "days_s": time.perf_counter() - t_days}, streams["leakage"], len(database),
        poison_entries, proto, params, truths, hasher.bits,
    )


class _AttackContext:
    """Applies the scenario's content attacks to images about to be sent.

    Attackers optimise through the scenario's attachment encoding (JPEG at
    quality 90, the round trip :meth:`ContentSource.encode` performs; PNG is
    lossless, so nothing), so an attack's success is judged on the hash the
    scanner computes. An evading offender moves away from the database entry
    of the known image (the hash of the original), not from the hash of the
    transformed copy it is about to send.
    """

    #: Scenario ``content.encoding`` -> the attack's ``encode`` spec (same bytes as ContentSource.encode).
    ENCODE_SPECS = {"jpeg": "jpeg:quality=90", "png": None}

    def __init__(self, scenario: Scenario, hasher, rng: np.random.Generator, database: HashArray) -> None:
        self.evasion = scenario.attacks.evasion
        self.target = scenario.attacks.poisoning.target if scenario.attacks.poisoning else None
        self.hasher = hasher
        self.rng = rng
        self.database = database
        self.encode = self.ENCODE_SPECS[scenario.content.encoding]

    def apply(self, ref: ImageRef, content: ContentSource) -> tuple[bytes, bool]:
        if ref.kind == CRAFTED:
            return content.encode(self.crafted[ref.index]), True
        ev = self.evasion
        if ev is None or not ref.known or self.rng.random() >= ev.share:
            return content.render(ref), False
        from ..attacks.evasion import evade

        result = evade(content.render_image(ref), self.hasher, min_distance=ev.min_distance, max_queries=ev.max_queries,
                       min_ssim=ev.min_ssim, rng=self.rng, method=ev.method, encode=self.encode,
                       original_hash=self.database[ref.index])
        return content.encode(result.image), True

    def craft(self, scenario: Scenario, pop, planner: TrafficPlanner, database: HashArray, radius: int) -> list[PlannedMessage]:
        """Day-0 forwards of crafted collision images by the target accounts (empty without the attack)."""
        cfg = scenario.attacks.collision
        self.crafted: list[Image.Image] = []
        self.crafted_success: list[bool] = []
        if cfg is None:
            return []
        from ..attacks.collision import collide

        rng = self.rng
        innocent = np.flatnonzero(~pop.offender)
        targets = rng.choice(innocent, size=min(cfg.targets, innocent.size), replace=False)
        size = (scenario.content.image_size, scenario.content.image_size)
        messages = []
        for target in sorted(int(t) for t in targets):
            for _ in range(cfg.images):
                base = synthetic_image(rng, size)
                aim = database[int(rng.integers(len(database)))]
                result = collide(base, aim, self.hasher, radius=radius, max_queries=cfg.max_queries,
                                 min_ssim=cfg.min_ssim, rng=rng, method=cfg.method, encode=self.encode)
                index = len(self.crafted)
                self.crafted.append(result.image)
                self.crafted_success.append(bool(result.success))
                contacts = pop.contacts[target]
                ref = ImageRef(planner.next_uid, CRAFTED, index, "none", int(rng.integers(2**63)))
                planner.next_uid += 1
                at = float(rng.uniform(0.0, 86_400.0))
                messages.append(PlannedMessage(0, at, target, (int(contacts[rng.integers(contacts.size)]),), ref))
        return messages

    def is_target(self, ref: ImageRef) -> bool:
        return self.target is not None and ref.kind == POPULAR and ref.index == self.target


def poison_hashes(scenario: Scenario, content: ContentSource, hasher, rng: np.random.Generator) -> HashArray:
    """The adversary's entries: hashes of the target image as it circulates (the scenario's edits).

    ``fraction`` is the adversary's share of the final database, so
    ``n = round(f * D / (1 - f))`` entries join ``D`` genuine ones (at least 1).
    The first is the untouched target; the rest are edited copies drawn from the
    scenario's transformation mix, each encoded as attachments are.
    """
    from .calibration import encode_decode
    from .content import chain_for

    cfg = scenario.attacks.poisoning
    if cfg is None:
        raise ScenarioError("attacks.poisoning: not set; poison entries are drawn only for a poisoning scenario")
    d = scenario.content.database_size
    n = max(1, round(cfg.fraction * d / (1 - cfg.fraction)))
    target = content.popular_image(cfg.target)
    weights = np.array([t.weight for t in scenario.content.transforms], dtype=float)
    specs = [t.spec for t in scenario.content.transforms]
    hashes = [hasher.hash(encode_decode(target, scenario.content.encoding))]
    while len(hashes) < n:
        spec = specs[int(rng.choice(len(specs), p=weights / weights.sum()))]
        edited = chain_for(spec).apply(target, rng).image
        hashes.append(hasher.hash(encode_decode(edited, scenario.content.encoding)))
    return HashArray.from_hashes(hashes)


def _send(msg: PlannedMessage, devices, content, scanner, images, known_uids, matcher, costs, relay, touched,
          attack: _AttackContext, openings, truths: dict[str, list[VoucherTruth]]) -> None:
    sender = devices[msg.sender]
    body = f"message from {sender.device_id} at {msg.at:.0f}".encode()
    recipients = [devices[r].device_id for r in msg.recipients]
    if msg.image is None:
        ids = sender.send_group(recipients, body)
        return
    ref = msg.image
    attachment, attacked = attack.apply(ref, content)
    scanner.current = ref
    ids = sender.send_group(recipients, body, attachment)
    scanner.current = None
    h = scanner.last_hash
    match, distance = matcher(h)
    synthetic = bool(scanner.client.last_was_synthetic)
    images.append(
        ImageRecord(ref.uid, msg.day, msg.sender, ref.kind, ref.transform, h.hex, distance, match,
                    scanner.last_voucher_len, ids[0], attacked, attack.is_target(ref), synthetic)
    )
    account = truths.setdefault(sender.device_id, [])
    account.append(VoucherTruth(sender.device_id, len(account), ref.uid, h.data, scanner.last_payload, bool(match),
                                int(distance), synthetic, int(openings(h, bool(match)))))
    if ref.known:
        known_uids.add(ref.uid)
    touched.add(msg.sender)
    costs.voucher_bytes.append(scanner.last_voucher_len)
    costs.attachment_bytes.append(len(attachment))
