"""What the server of a matching protocol learns beyond the protocol's promise, and how a device can check it.

Three attacks by the server (honest-but-curious for the first two, malicious for the third):

* **Counting vouchers** (:func:`estimate_true_matches`, :func:`run_voucher_counting`).
  Below the threshold ``t`` the ``tpsi-ad`` server cannot decrypt anything, but
  it sees which outer layers open: every real match, and every synthetic
  voucher. With synthetic vouchers off the count *is* the number of matches.
  With probability ``s`` the expected count is ``M + s (n - M)`` for ``M``
  matches among ``n`` vouchers, so the server estimates ``M`` with error
  ``sqrt(s (n - M) / (1 - s))`` (S. J. Lewis, "Obfuscated Apples", 2021:
  obfuscation adds noise, it does not remove the signal). The device stops
  sending synthetic vouchers after ``synthetic_capacity`` of them; once an
  account's ``s n`` passes the capacity the noise is capped and the estimate
  becomes nearly exact again. The capacity-aware estimator here shows it.
* **Side channels in the relay's log** (:func:`voucher_side_channels`): voucher,
  envelope and attachment sizes and send times, from the
  :class:`~e2escan.messenger.ServerView` of a simulated run, each scored with
  :func:`e2escan.metrics.leakage.estimate` against whether the image matched.
* **Split view** (:func:`split_view`, :func:`minimal_split_view`,
  :func:`audit_digests`). A malicious server gives one targeted device a
  database with extra entries. Devices that publish a digest of the public
  parameters they received (or an auditor collecting them) see two digests.
  This works for every variant whose public parameters depend on the database
  (the blinded-table variants); ``plaintext`` ships no database, so its digest
  says nothing and a per-user database is undetectable by the device. The
  blinded table hides *which* entries differ: a fresh setup changes every
  cell; a server that reuses its secrets changes only the cells of the extra
  entries, and a device can see which cells changed but not what they hold
  (telling ``alpha * H(y)`` from a random point is DDH), only whether one of
  its own hashes could sit there (:func:`hashes_implicated`).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ..crypto import group
from ..crypto.cuckoo import CuckooLayout, CuckooTable
from ..errors import ConfigError, DecodeError, ProtocolError
from ..hashing import HashArray
from ..metrics.leakage import LeakageEstimate, estimate
from ..metrics.probability import binomial_pmf
from ..protocols.events import decode_event, replay

__all__ = [
    "CountingRun", "DigestAudit", "SplitView", "audit_digests", "blinded_cells", "counting_error", "differing_cells",
    "estimate_true_matches", "expected_synthetic", "hashes_implicated", "minimal_split_view",
    "opened_counts_from_view", "public_digest", "record_opened", "run_voucher_counting", "split_view",
    "voucher_side_channels",
]


# --- (a) counting opened vouchers -------------------------------------------------------


def _check_counts(opened: int, vouchers: int, s: float) -> None:
    if vouchers < 0 or not 0 <= opened <= vouchers:
        raise ConfigError(f"opened = {opened} must lie in [0, vouchers = {vouchers}]")
    if not 0.0 <= s < 1.0:
        raise ConfigError(f"synthetic_probability = {s} must lie in [0, 1)")


def expected_synthetic(vouchers: int, synthetic_probability: float, capacity: int | None = None) -> float:
    """E[min(Bin(vouchers, s), capacity)]: synthetic vouchers an account sends (``None``: no cap)."""
    n, s = int(vouchers), float(synthetic_probability)
    if n < 0 or not 0.0 <= s <= 1.0:
        raise ConfigError(f"expected_synthetic: vouchers = {n} must be >= 0 and synthetic_probability = {s} in [0, 1]")
    if capacity is None or capacity >= n:
        return n * s
    if s in (0.0, 1.0):
        return float(min(round(n * s), capacity))
    k = np.arange(n + 1)
    return float((np.minimum(k, capacity) * binomial_pmf(n, s)).sum())


def estimate_true_matches(
    opened: int, vouchers: int, synthetic_probability: float, synthetic_capacity: int | None = None
) -> float:
    """Method-of-moments estimate of the real matches behind ``opened`` of ``vouchers`` opened vouchers.

    Every image wants a synthetic voucher with probability ``s``; the first
    ``synthetic_capacity`` get one. Images are exchangeable, so the expected
    count is linear in the real matches ``M``:
    ``E[opened] = M + (1 - M / n) mu`` with ``mu = E[min(Bin(n, s), C)]``.
    Solving for ``M`` and clipping to ``[0, n]`` gives the estimate;
    ``synthetic_capacity=None`` is the uncapped ``(opened - s n) / (1 - s)``.
    """
    _check_counts(opened, vouchers, synthetic_probability)
    n = int(vouchers)
    if n == 0:
        return 0.0
    mu = expected_synthetic(n, synthetic_probability, synthetic_capacity)
    slope = 1.0 - mu / n
    if slope <= 0:  # every voucher is synthetic in expectation: the count says nothing
        return float("nan")
    return float(min(max((opened - mu) / slope, 0.0), n))


def counting_error(vouchers: int, true_matches: int, synthetic_probability: float) -> float:
    """Standard deviation of the uncapped estimate: ``sqrt(s (n - M) / (1 - s))`` (before clipping)."""
    s = float(synthetic_probability)
    if not 0.0 <= s < 1.0:
        raise ConfigError(f"synthetic_probability = {s} must lie in [0, 1)")
    return math.sqrt(s * max(vouchers - true_matches, 0) / (1.0 - s))


@dataclass(frozen=True)
class CountingRun:
    """Per account: true matches, vouchers, opened count the server held, and its estimate of the matches."""

    true_matches: np.ndarray
    vouchers: np.ndarray
    opened: np.ndarray
    estimate: np.ndarray
    over_threshold: np.ndarray

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean((self.estimate - self.true_matches) ** 2)))

    @property
    def exact_share(self) -> float:
        """Share of accounts whose rounded estimate equals the true number of matches."""
        return float(np.mean(np.rint(self.estimate) == self.true_matches))


def run_voucher_counting(
    params: Any,
    vouchers: int,
    true_matches: Sequence[int],
    rng: np.random.Generator,
    *,
    protocol: str = "tpsi-ad",
    use_capacity: bool = True,
    bits: int = 64,
) -> CountingRun:
    """Run the real protocol: account ``i`` sends ``vouchers`` images, ``true_matches[i]`` of them in the database.

    Matching images are distinct database hashes, the others distinct random
    hashes, in random order; each account is a fresh device whose
    synthetic-voucher coin is seeded from ``rng``. The opened count is read from
    the server's ``account_view`` (what the server holds) and fed to
    :func:`estimate_true_matches`, with the device's capacity when
    ``use_capacity`` (the server knows the public parameters) or without.
    """
    from ..protocols import get_protocol

    proto = get_protocol(protocol)
    if proto.synthetic_capacity(params) == 0:
        raise ProtocolError(f"run_voucher_counting: protocol {protocol!r} has no synthetic vouchers to count")
    matches = np.asarray(true_matches, dtype=np.int64)
    if matches.ndim != 1 or matches.size == 0 or (matches < 0).any() or (matches > vouchers).any():
        raise ConfigError(f"run_voucher_counting: true_matches must be counts in [0, vouchers = {vouchers}]")
    db_size = max(8, int(matches.max()))
    database = HashArray.random(db_size, bits, rng)
    server, public = proto.server_setup(database, params)
    s = proto.synthetic_probability(params)
    capacity = proto.synthetic_capacity(params) if use_capacity else None
    opened = np.zeros(matches.size, dtype=np.int64)
    over = np.zeros(matches.size, dtype=bool)
    for i, m in enumerate(matches):
        images = HashArray.concatenate(
            [database[rng.choice(db_size, size=int(m), replace=False)], HashArray.random(vouchers - int(m), bits, rng)]
        )
        client = proto.client(public, params)
        proto.seed_client(client, rng, params)
        name = f"account-{i}"
        for j in rng.permutation(vouchers):
            server.ingest(name, client.scan(images[int(j)], payload=b""))
        opened[i] = cast(int, server.account_view(name)["opened_count"])
        over[i] = server.reveal(name).over_threshold
    estimates = np.array([estimate_true_matches(int(o), vouchers, s, capacity) for o in opened])
    return CountingRun(matches, np.full(matches.size, vouchers), opened, estimates, over)


def record_opened(record: Mapping[str, object]) -> bool:
    """Whether a match server's record of one voucher says its outer layer opened.

    Variants without an outer layer record no ``opened``; for them a voucher that matched counts.
    """
    return bool(record.get("opened", record.get("is_match", False)))


def opened_counts_from_view(view: Any) -> dict[str, tuple[int, int]]:
    """Per account ``(vouchers, opened)`` from the match server's records in the ServerView."""
    held = replay(view)
    return {account: (len(records), sum(record_opened(r) for r in records)) for account, records in held.records.items()}


# --- (b) side channels in the relay's log --------------------------------------------------------

SECONDS_PER_DAY = 86_400.0


def voucher_side_channels(run: Any, rng: np.random.Generator, permutations: int = 200) -> list[LeakageEstimate]:
    """How well each size or time the relay logged tells vouchers of matching images from the others.

    ``run`` is a :class:`~e2escan.sim.faithful.FaithfulRun`. Features come
    from ``run.relay.view`` only, per voucher: its length, the length of the
    envelope it travelled with, the length of the sender's attachment blob
    uploaded just before, the send time of day, how many earlier blobs had
    exactly the same length (a re-sent file keeps its size), and, as the
    reference the side channels are measured against, whether the match
    server logged the voucher as opened (the protocol's declared leakage). The
    label is the simulation's ground truth (``ImageRecord.oracle_match``),
    which the server does not have.
    """
    label_of = {rec.message_id: rec.oracle_match for rec in run.images}
    envelope: dict[int, int] = {}
    opened: dict[int, int] = {}
    last_blob: dict[str, int] = {}
    blob_sizes: dict[int, int] = defaultdict(int)
    rows: dict[int, list[float]] = {}
    for ev in run.relay.view:
        if ev.kind == "blob_upload":
            last_blob[ev.sender] = ev.size
            blob_sizes[ev.size] += 1
        elif ev.kind == "submit":
            envelope[ev.ref] = ev.size
        elif ev.kind == "match" and ev.ref is not None:
            opened[ev.ref] = int(record_opened(decode_event(ev.data).fields))  # type: ignore[union-attr]
        elif ev.kind == "voucher" and ev.ref in label_of:
            blob = last_blob.get(ev.sender, 0)
            rows[ev.ref] = [ev.size, envelope.get(ev.ref, 0), blob, ev.at % SECONDS_PER_DAY, blob_sizes[blob] - 1]
    if not rows:
        raise ProtocolError("voucher_side_channels: the run's ServerView holds no vouchers of simulated images")
    refs = sorted(rows)
    data = np.array([rows[r] + [opened.get(r, 0)] for r in refs], dtype=float)
    label = np.array([label_of[r] for r in refs], dtype=bool)
    names = ("voucher_bytes", "envelope_bytes", "blob_bytes", "send_second_of_day", "same_size_blobs_before",
             "opened (declared)")
    scope = "vouchers (matching image vs not)"
    return [estimate(name, scope, data[:, k], label, rng, permutations) for k, name in enumerate(names)]


# --- (c) split view ------------------------------------------------------------------------------


def public_digest(public: bytes) -> str:
    """SHA-256 (hex) of the public parameters a device received: what devices publish to compare."""
    return hashlib.sha256(bytes(public)).hexdigest()


@dataclass(frozen=True)
class DigestAudit:
    """Devices grouped by the digest they reported; a split view shows as more than one group."""

    groups: Mapping[str, tuple[str, ...]]

    @property
    def detected(self) -> bool:
        return len(self.groups) > 1

    @property
    def minority(self) -> tuple[str, ...]:
        """Devices outside the largest group (ties: the group of the smallest digest is the majority)."""
        if not self.detected:
            return ()
        majority = max(sorted(self.groups), key=lambda d: len(self.groups[d]))
        return tuple(sorted(dev for d, devs in self.groups.items() if d != majority for dev in devs))


def audit_digests(digests: Mapping[str, str]) -> DigestAudit:
    """Group device ids by the digest of the public parameters they report."""
    groups: dict[str, list[str]] = defaultdict(list)
    for device, digest in digests.items():
        groups[digest].append(device)
    return DigestAudit({d: tuple(sorted(v)) for d, v in groups.items()})


@dataclass
class SplitView:
    """The common setup every device gets, and the targeted one (with ``extra`` entries) one device gets."""

    protocol: Any
    params: Any
    common_server: Any
    common_public: bytes
    targeted_server: Any
    targeted_public: bytes

    @property
    def detectable_by_digest(self) -> bool:
        return public_digest(self.common_public) != public_digest(self.targeted_public)


def split_view(protocol: Any, database: HashArray, extra: HashArray, params: Any) -> SplitView:
    """A malicious server running the protocol's own setup twice: on ``database`` and on ``database + extra``."""
    common_server, common_public = protocol.server_setup(database, params)
    targeted_server, targeted_public = protocol.server_setup(HashArray.concatenate([database, extra]), params)
    return SplitView(protocol, params, common_server, common_public, targeted_server, targeted_public)


def blinded_cells(protocol: Any, params: Any, public: bytes) -> tuple[CuckooLayout, list[bytes]] | None:
    """The cuckoo layout and the table cells of a blinded-table variant's public parameters (``None`` otherwise)."""
    from ..protocols.blinded_table import BlindedTable

    try:
        table = BlindedTable.decode(protocol.name, bytes(public[:4]), bytes(public), params.fingerprint())
    except DecodeError:  # not a blinded table (plaintext ships only a fingerprint and the hash length)
        return None
    cells = [table.entry(i) for i in range(table.layout.num_cells)]
    return table.layout, cells


def differing_cells(protocol: Any, params: Any, public_a: bytes, public_b: bytes) -> np.ndarray | None:
    """Indices of the table cells that differ (cells beyond the shorter table count as differing).

    ``None`` when either side is not a blinded table. Two independent setups
    differ in practically every cell, whatever the databases.
    """
    a = blinded_cells(protocol, params, public_a)
    b = blinded_cells(protocol, params, public_b)
    if a is None or b is None:
        return None
    common = min(len(a[1]), len(b[1]))
    same_layout = a[0] == b[0]
    diff = [i for i in range(common) if not same_layout or a[1][i] != b[1][i]]
    return np.array(diff + list(range(common, max(len(a[1]), len(b[1])))), dtype=np.int64)


def hashes_implicated(layout: CuckooLayout, cells: np.ndarray, hashes: HashArray) -> np.ndarray:
    """``True`` for each hash one of whose candidate cells is in ``cells``: all a device can infer from a diff."""
    changed = {int(c) for c in cells}
    return np.array([bool(changed.intersection(layout.candidate_cells(h.data))) for h in hashes], dtype=bool)


def minimal_split_view(
    protocol: Any,
    database: HashArray,
    extra: HashArray,
    params: Any,
    rng: np.random.Generator,
    *,
    cover_cells: int = 0,
) -> SplitView:
    """The stealthiest split view: one S-Init, and the targeted table differs only where it must.

    The server plans ahead: it draws cuckoo seeds until every extra hash ``y``
    has a free candidate cell of its own in the common table, keeps ``alpha``,
    the nonce and the layout for the targeted table, writes ``alpha * H(y)``
    into that cell and, to blur the diff, redraws ``cover_cells`` further empty
    cells (chosen with ``rng``). Supported for the variants whose table holds the
    database itself (``Protocol.table_server``: ``psi-exact``, ``tpsi-ad``,
    ``tpsi-ad-multiprobe``); others raise :class:`ProtocolError` before any work.
    """
    from ..protocols.base import unique_rows
    from ..protocols.blinded_table import BlindedTable, ServerTableState

    protocol.check_params(params)
    items = unique_rows(database)
    present = set(items)
    extra_items = [row for row in unique_rows(extra) if row not in present]
    cuckoo, slots = _table_with_room(items, extra_items, params)
    alpha, nonce = group.random_scalar(), os.urandom(16)
    shell = BlindedTable(protocol.name, params.fingerprint(), nonce, database.bits, cuckoo.layout, group.scalar_mult_base(alpha), b"")
    dst = shell.h2g_dst
    common = [group.random_point() if idx is None else group.scalar_mult(alpha, group.hash_to_group(items[idx], dst))
              for idx in cuckoo.cells]
    targeted = list(common)
    cells = list(cuckoo.cells)
    for n, (item, free) in enumerate(zip(extra_items, slots)):
        cells[free] = len(items) + n
        targeted[free] = group.scalar_mult(alpha, group.hash_to_group(item, dst))
    empty = [c for c, idx in enumerate(cells) if idx is None]
    if cover_cells > len(empty):
        raise ConfigError(f"minimal_split_view: cover_cells = {cover_cells} exceeds the {len(empty)} empty cells")
    for c in rng.choice(len(empty), size=cover_cells, replace=False) if cover_cells else ():
        targeted[empty[int(c)]] = group.random_point()
    views = []
    for table, table_cells, all_items in ((common, list(cuckoo.cells), items), (targeted, cells, items + extra_items)):
        public = BlindedTable(protocol.name, shell.fingerprint, nonce, database.bits, cuckoo.layout, shell.L, b"".join(table))
        state = ServerTableState(alpha, public, CuckooTable(cuckoo.layout, all_items, table_cells, 1))
        views.append(protocol.table_server(state, params))
    (common_server, common_public), (targeted_server, targeted_public) = views
    return SplitView(protocol, params, common_server, common_public, targeted_server, targeted_public)


def _table_with_room(items: list[bytes], extra: list[bytes], params: Any, attempts: int = 64) -> tuple[CuckooTable, list[int]]:
    """A cuckoo table of ``items`` in which each extra item has its own free candidate cell."""
    for _ in range(attempts):
        table = CuckooTable.build(items, num_hashes=params.cuckoo_hashes, load=params.cuckoo_load, stash_size=params.stash_size)
        taken: set[int] = set()
        slots = []
        for item in extra:
            free = next((c for c in table.layout.candidate_cells(item) if table.cells[c] is None and c not in taken), None)
            if free is None:
                break
            taken.add(free)
            slots.append(free)
        else:
            return table, slots
    raise ProtocolError(
        f"minimal_split_view: no cuckoo seed in {attempts} attempts leaves a free cell for each of the "
        f"{len(extra)} extra hashes; lower cuckoo_load or add fewer entries"
    )
