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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ScenarioError
from ..hashing import HashArray, PerceptualHash, get_hasher
from ..messenger import Device, Relay
from .content import ContentSource
from .hashcache import HashCache, default_cache_dir
from .population import build_population
from .review import Case, ReviewQueue
from .scenario import Scenario
from .traffic import ImageRef, PlannedMessage, TrafficPlanner

PAYLOAD_BYTES = 1024  # visual derivative, padded to a fixed size so its length says nothing
COMPONENTS = ("population", "traffic", "content", "review", "leakage")


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
    population: object
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
    leakage_rng: np.random.Generator
    database_size: int
    hasher_spec: str
    protocol_name: str


def spawn_streams(scenario: Scenario, replicate: int) -> dict[str, np.random.Generator]:
    root = np.random.SeedSequence(scenario.seed)
    replicate_seq = root.spawn(replicate + 1)[replicate]
    return {name: np.random.default_rng(seq) for name, seq in zip(COMPONENTS, replicate_seq.spawn(len(COMPONENTS)))}


def make_payload(uid: int, image_bytes: bytes) -> bytes:
    """The 'visual derivative': a 32x32 greyscale thumbnail, prefixed by the image uid, padded.

    The uid stands for what a human reviewer would recognise when looking at
    the derivative; the simulator uses it to decide whether the reviewer saw a
    known image.
    """
    img = Image.open(io.BytesIO(image_bytes)).convert("L")
    img.thumbnail((32, 32))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=50)
    thumb = buf.getvalue()[: PAYLOAD_BYTES - 10]
    body = struct.pack(">QH", uid, len(thumb)) + thumb
    return body + bytes(PAYLOAD_BYTES - len(body))


def payload_uid(payload: bytes) -> int:
    return struct.unpack(">Q", payload[:8])[0]


class _Scanner:
    """The device-side scanner: decode the attachment, hash it, make a voucher."""

    def __init__(self, hasher, client, cache: HashCache, costs: CostSample, measure_first: int) -> None:
        self.hasher = hasher
        self.client = client
        self.cache = cache
        self.costs = costs
        self.measure_first = measure_first
        self.current: ImageRef | None = None
        self.last_hash: PerceptualHash | None = None
        self.last_voucher_len = 0

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
        payload = make_payload(ref.uid, attachment)
        t0 = time.perf_counter()
        voucher = self.client.scan(h, payload=payload)
        self.costs.scan_s.append(time.perf_counter() - t0)
        self.last_hash = h
        self.last_voucher_len = len(voucher)
        return voucher


def run_faithful(
    scenario: Scenario,
    replicate: int = 0,
    *,
    cache_dir: str | None | object = "default",
    progress: Callable[[int], None] | None = None,
    protocol: Any = None,
) -> FaithfulRun:
    """Simulate one replicate. ``protocol`` replaces the registered protocol module (for variants under test)."""
    streams = spawn_streams(scenario, replicate)
    pop = build_population(scenario.population, streams["population"])
    planner = TrafficPlanner(scenario, pop, streams["traffic"])
    try:
        hasher = get_hasher(scenario.hasher.name, **scenario.hasher.params)
    except TypeError as exc:
        raise ScenarioError(f"hasher.params: {exc}") from None
    content = ContentSource(scenario.content, scenario.traffic, streams["content"])
    database = HashArray.from_hashes(hasher.hash(img) for img in content.known_images())

    if protocol is None:
        from ..protocols import get_protocol

        protocol = get_protocol(scenario.protocol.name)
    proto = protocol
    try:
        params = proto.Params(**scenario.protocol.params)
    except TypeError as exc:
        raise ScenarioError(f"protocol.params: {exc}") from None
    server, public = proto.server_setup(database, params)
    client = proto.client(public, params)
    matcher = proto.plaintext_matcher(database, params)
    threshold = getattr(params, "threshold", None)

    if cache_dir == "default":
        cache_path = default_cache_dir() / "hashes.sqlite"
    else:
        cache_path = None if cache_dir is None else f"{cache_dir}/hashes.sqlite"
    cache = HashCache(cache_path, hasher.spec)
    costs = CostSample()
    scanner = _Scanner(hasher, client, cache, costs, measure_first=50)

    clock = SimulatedClock()
    relay = Relay(clock=clock)
    ingest_log: dict[int, int] = {}

    def on_voucher(sender: str, voucher: bytes, message_id: int) -> None:
        t0 = time.perf_counter()
        learnt = server.ingest(sender, voucher)
        costs.ingest_s.append(time.perf_counter() - t0)
        if learnt is not None:
            relay.record("match", sender, learnt if isinstance(learnt, bytes) else repr(learnt).encode(), message_id)

    relay.on_voucher.append(on_voucher)
    devices = [
        Device.register(pop.ids[i], relay, header_encryption=scenario.messenger.header_encryption, scanner=scanner)
        for i in range(len(pop))
    ]
    index_of = {name: i for i, name in enumerate(pop.ids)}
    review = ReviewQueue(scenario.review, streams["review"])
    images: list[ImageRecord] = []
    known_uids: set[int] = set()
    flags: dict[int, int] = {}
    revealed: dict[int, set[int]] = defaultdict(set)
    daily = []

    for day in range(scenario.days):
        touched: set[int] = set()
        plan = planner.day(day)
        day_images = 0
        for msg in plan:
            clock.now = msg.at
            _send(msg, devices, content, scanner, images, known_uids, matcher, costs, relay, touched)
            day_images += msg.image is not None
            if progress:
                progress(1)
        clock.now = (day + 1) * 86_400.0 - 1
        for d in devices:
            d.receive()
        new_flags = 0
        for acct in sorted(touched):
            reveal = server.reveal(pop.ids[acct])
            if not reveal.over_threshold:
                continue
            uids = {payload_uid(p) for p in reveal.matches}
            fresh = uids - revealed[acct]
            if not fresh:
                continue
            relay.record("reveal", pop.ids[acct], b"".join(sorted(reveal.matches)))
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
    del index_of
    cache.close()
    return FaithfulRun(
        scenario, replicate, pop, relay, images, flags, dict(revealed), review.decisions, daily, costs,
        review.backlog, cache.hits, threshold, streams["leakage"], len(database), hasher.spec, scenario.protocol.name,
    )


def _send(msg: PlannedMessage, devices, content, scanner, images, known_uids, matcher, costs, relay, touched) -> None:
    sender = devices[msg.sender]
    body = f"message from {sender.device_id} at {msg.at:.0f}".encode()
    recipients = [devices[r].device_id for r in msg.recipients]
    if msg.image is None:
        ids = sender.send_group(recipients, body)
        return
    ref = msg.image
    attachment = content.render(ref)
    scanner.current = ref
    ids = sender.send_group(recipients, body, attachment)
    scanner.current = None
    h = scanner.last_hash
    match, distance = matcher(h)
    images.append(
        ImageRecord(ref.uid, msg.day, msg.sender, ref.kind, ref.transform, h.hex, distance, match, scanner.last_voucher_len, ids[0])
    )
    if ref.known:
        known_uids.add(ref.uid)
    touched.add(msg.sender)
    costs.voucher_bytes.append(scanner.last_voucher_len)
    costs.attachment_bytes.append(len(attachment))
