"""``tpsi-ad``: threshold PSI with associated data, after the Apple PSI System.

Bhowmick, Boneh, Myers, Talwar, Tarbe, "The Apple PSI System" (2021), §4.
Steps, named as in the paper (spec: ``protocols/tpsi-ad.md``):

* **S-Init** (:func:`~.blinded_table.build_blinded_table`): blinded cuckoo
  table ``L = alpha * G``, ``P_i = alpha * H(T[i])``, random elements in empty
  cells.
* **C-Init** (:class:`TpsiAdScanner`): per account, a random account key
  ``adkey`` (a scalar), a Shamir polynomial ``f`` of degree ``t - 1`` with
  ``f(0) = adkey``, a detectable-hash key (``width = synthetic_capacity``
  polynomials of degree ``t - 2``), a PRF key for share abscissas and a secret
  key for synthetic-voucher decisions.
* **C-Gen-Voucher** (:meth:`TpsiAdScanner.scan`): inner layer ``adct =
  Enc(adkey, payload)`` and the share ``(x, f(x))`` plus detectable-hash values
  at ``x``, all encrypted under a fresh ``rkey``; outer layer, for every cell
  ``w`` that could hold the hash: random ``beta, gamma``, ``Q = beta * H(y) +
  gamma * G``, ``S = beta * P_w + gamma * L``, ``ct = Enc(H'(S), rkey)``. The
  ``(Q, ct)`` pairs are shuffled. With probability ``synthetic_probability`` the
  device instead emits a *synthetic* voucher: one pair is ``Q = gamma * G``,
  ``S = gamma * L`` (so it always opens), the others are random, and the inner
  layer carries a random share, random detectable-hash values and a random
  ``adct``. A synthetic voucher replaces the real one, so a matching image
  sent synthetically is not detected (recall ``1 - synthetic_probability``).
* **S-Process** (:class:`TpsiAdServer`): ``S^ = alpha * Q`` for every pair;
  a pair that opens gives ``rkey`` and the inner layer. Below ``t`` distinct
  genuine shares the server cannot tell real from synthetic openings (both
  shares and detectable-hash values are uniformly random). Once there are
  ``t`` genuine ones, the detectable hash identifies them
  (:class:`~e2escan.crypto.shamir.GenuineDetector`, fed as vouchers open), Shamir reconstruction with
  the consistency check recovers ``adkey``, and every genuine voucher's
  ``adct`` is decrypted; later vouchers are classified by checking their share
  against the recovered polynomial.

Re-sent copies: with ``dedup = "hash"`` (default) the share abscissa ``x`` is a
PRF of the image hash, and the synthetic decision and synthetic values are
too, so every copy of an image carries the same share and counts once toward
``t`` (the paper derives ``x`` from a per-image identifier, so copies with
fresh identifiers each count). ``dedup = "none"`` reproduces the paper's
behaviour (fresh ``x`` per voucher).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..crypto import group, smallfield
from ..crypto.codec import Decoded, FieldSpec, Schema
from ..crypto.shamir import (
    DetectableHash,
    GenuineDetector,
    Share,
    SharingPolynomial,
    evaluate_polynomial,
    interpolate_polynomial,
    reconstruct,
)
from ..errors import (
    AuthenticationError,
    ConfigError,
    DecodeError,
    InvalidPointError,
    ProtocolError,
    SecretSharingError,
    VoucherError,
)
from ..hashing import HashArray, PerceptualHash
from .base import (
    LeakageProfile,
    MatchServer,
    Protocol,
    ProtocolParams,
    Reveal,
    Scanner,
    StatisticalModel,
    VoucherPointError,
    VoucherReplayError,
    WireSizes,
    check_account,
    check_database,
    check_float,
    check_hash,
    check_int,
    check_voucher,
    frozen_record,
    unique_rows,
)
from .blinded_table import BlindedTable, ServerTableState, build_blinded_table
from .ideal import (
    Draw,
    IdealFunctionality,
    ShareRows,
    fresh_fields,
    random_bytes_field,
    random_points_field,
)
from .sealing import (
    KEY_BYTES,
    ONCE_OVERHEAD,
    SEAL_OVERHEAD,
    open_once,
    open_sealed,
    pad_payload,
    seal,
    seal_once,
    unpad_payload,
)

NAME = "tpsi-ad"
SC = group.SCALAR_BYTES
CT_BYTES = KEY_BYTES + ONCE_OVERHEAD
_DEDUP_MODES = ("hash", "none")
#: Fields of the detectable hash: the paper's 64-bit prime field (§4.3) or edwards25519's scalar field.
DHF_FIELDS = ("p64", "scalar")


@dataclass(frozen=True)
class TpsiAdParams(ProtocolParams):
    """Parameters of the threshold variants; see ``protocols/tpsi-ad.md`` for each one's meaning."""

    PROTOCOL: ClassVar[str] = NAME

    threshold: int = 30
    payload_size: int = 256
    cuckoo_hashes: int = 2
    cuckoo_load: float = 0.45
    stash_size: int = 0
    synthetic_probability: float = 0.01
    synthetic_capacity: int = 32
    dedup: str = "hash"
    dhf_field: str = "p64"

    def __post_init__(self) -> None:
        p = self.PROTOCOL
        check_int(f"{p}.threshold", self.threshold, 1, 4096)
        check_int(f"{p}.payload_size", self.payload_size, 0, 2**20)
        check_int(f"{p}.cuckoo_hashes", self.cuckoo_hashes, 2, 8)
        check_float(f"{p}.cuckoo_load", self.cuckoo_load, 0.0, 1.0, lo_open=True)
        check_int(f"{p}.stash_size", self.stash_size, 0, 64)
        check_float(f"{p}.synthetic_probability", self.synthetic_probability, 0.0, 1.0, hi_open=True)
        check_int(f"{p}.synthetic_capacity", self.synthetic_capacity, 0, 4096)
        if self.synthetic_probability > 0 and self.synthetic_capacity == 0:
            raise ConfigError(
                f"{p}.synthetic_capacity = 0 with synthetic_probability = {self.synthetic_probability}: "
                "synthetic vouchers need a capacity >= 1 (the detectable hash tolerates that many)"
            )
        if self.dedup not in _DEDUP_MODES:
            raise ConfigError(f"{p}.dedup = {self.dedup!r}; accepted: {', '.join(_DEDUP_MODES)}")
        if self.dhf_field not in DHF_FIELDS:
            raise ConfigError(f"{p}.dhf_field = {self.dhf_field!r}; accepted: {', '.join(DHF_FIELDS)}")

    # Sizes that follow from the parameters (every voucher of a parameter set has one length).
    def probes(self) -> int:
        return 1

    def pairs(self) -> int:
        return self.probes() * (self.cuckoo_hashes + self.stash_size)

    def adct_bytes(self) -> int:
        return SEAL_OVERHEAD + 4 + self.payload_size

    def dhf_width(self) -> int:
        """Detectable-hash values per voucher: ``synthetic_capacity``, or 0 at ``threshold = 1``.

        At ``t = 1`` a genuine share's value is the account key itself, so the
        server recognises genuine shares by trial decryption and needs no
        detectable hash.
        """
        return self.synthetic_capacity if self.threshold >= 2 else 0

    def dhf_bytes(self) -> int:
        """Bytes of the detectable-hash part of the inner layer.

        ``p64`` (the paper's construction): ``(width + 1) * 8``, the hash's own abscissa ``x0`` and
        ``width`` values in the 64-bit field; ``scalar``: ``width * 32``, values in the scalar field
        evaluated at the share's ``x``. 0 when there is no detectable hash (``threshold = 1``).
        """
        width = self.dhf_width()
        if width == 0:
            return 0
        if self.dhf_field == "p64":
            return (width + 1) * smallfield.ELEMENT_BYTES
        return width * SC

    def inner_bytes(self) -> int:
        return 2 * SC + self.dhf_bytes() + self.adct_bytes()


def voucher_schema(params: TpsiAdParams) -> Schema:
    pairs = params.pairs()
    return Schema(
        f"{params.PROTOCOL} voucher",
        b"E2TV",
        1,
        (
            FieldSpec("Q", group.POINT_BYTES * pairs),
            FieldSpec("ct", CT_BYTES * pairs),
            FieldSpec("rct", params.inner_bytes() + ONCE_OVERHEAD),
        ),
        error=VoucherError,
    )


DESCRIPTIONS = {
    "index": "position of the voucher among the account's vouchers",
    "length": "voucher length in bytes (the same for every voucher of a parameter set)",
    "opened": "whether the outer layer opened: a real match or a synthetic voucher (indistinguishable below t)",
    "opened_pairs": "how many (Q, ct) pairs opened (0 or 1, except multiprobe; see its spec)",
    "inner_layer": "for opened vouchers: share (x, f(x)), detectable-hash values and the payload ciphertext; "
    "uniformly random below t whether real or synthetic; x repeats for re-sent copies (dedup = hash)",
    "is_match": "over the threshold: whether the voucher is a genuine match (synthetic ones are told apart)",
    "payload": "over the threshold: the decrypted payload of genuine matches (None otherwise)",
    "vouchers": "number of vouchers received for the account",
    "opened_count": "number of vouchers whose outer layer opened (real matches plus synthetic)",
    "distinct_opened": "number of distinct share abscissas among opened vouchers",
    "matches": "over the threshold: number of genuine matching vouchers",
    "account_key": "over the threshold: the account key adkey (decrypts every genuine payload)",
    "table_size": "number of cells of the blinded table (an upper bound on the database size)",
    "hash_bits": "length of the database's hashes",
    "cuckoo_layout": "the public cuckoo hash functions (which cells a hash would occupy)",
}

LEAKAGE = LeakageProfile(
    server_voucher=("index", "length", "opened", "opened_pairs", "inner_layer"),
    server_account=("vouchers", "opened_count", "distinct_opened"),
    server_voucher_over=("is_match", "payload"),
    server_account_over=("matches", "account_key"),
    client=("table_size", "hash_bits", "cuckoo_layout"),
    descriptions=DESCRIPTIONS,
)


def ideal_functionality(params: TpsiAdParams) -> IdealFunctionality:
    """Below the threshold, the server's view as ``LEAKAGE`` declares it (spec: "What each party learns").

    * the voucher: the schema's framing, ``Q`` uniformly random points, ``ct``
      and ``rct`` uniformly random bytes of their lengths;
    * ``opened`` iff the image is a member or the voucher is synthetic;
      ``opened_pairs`` 1 for a synthetic voucher, else the pairs a real
      voucher of the image opens (0 or 1; multiprobe: the members among its probes);
    * ``inner_layer`` of an opened voucher: ``x`` and share uniformly random
      scalars; the detectable-hash part uniformly random elements of its
      field (``p64``: ``x0`` and ``width`` values in the 64-bit field;
      ``scalar``: ``width`` scalars); all the same for every voucher of one
      hash under ``dedup = "hash"`` (declared linkage) and fresh per voucher
      otherwise; ``adct`` fresh random bytes for every voucher;
    * account counts from those records.
    """
    schema = voucher_schema(params)
    pairs = params.pairs()
    sizes = {"Q": group.POINT_BYTES * pairs, "ct": CT_BYTES * pairs, "rct": params.inner_bytes() + ONCE_OVERHEAD}
    width = params.dhf_width()
    per_hash = params.dedup == "hash"
    p64 = params.dhf_field == "p64"

    def link(d: Draw, what: str) -> tuple | None:
        return (d.truth.account, d.truth.hash, what) if per_hash else None

    def opened(d: Draw) -> bool:
        return d.truth.synthetic or d.truth.member

    def inner(d: Draw) -> tuple | None:
        if not opened(d):
            return None
        x, y = d.fresh.scalar(link(d, "x")), d.fresh.scalar(link(d, "y"))
        if p64:
            dhf = tuple(d.fresh.element64(link(d, f"dhf{i}")) for i in range(width + 1)) if width else ()
        else:
            dhf = tuple(d.fresh.scalar(link(d, f"dhf{i}")) for i in range(width))
        return (x, y, dhf, d.fresh.bytes(params.adct_bytes()))

    return IdealFunctionality(
        voucher=fresh_fields(schema, {"Q": random_points_field, "ct": random_bytes_field, "rct": random_bytes_field}, sizes),
        record={
            "index": lambda d: d.truth.index,
            "length": lambda d: len(d.voucher),
            "opened": opened,
            "opened_pairs": lambda d: 1 if d.truth.synthetic else d.truth.openings,
            "inner_layer": inner,
        },
        account={
            "vouchers": lambda records, truths: len(records),
            "opened_count": lambda records, truths: sum(bool(r["opened"]) for r in records),
            "distinct_opened": lambda records, truths: len(
                {r["inner_layer"][0] for r in records if r["inner_layer"] is not None}
            ),
        },
        share_rows=lambda record: share_rows(params, record),
        schema=schema,
        component_names={"record.inner_layer": ("x", "share", "dhf", "adct")},
    )


def share_rows(params: TpsiAdParams, record: Mapping[str, Any]) -> tuple[ShareRows, ...]:
    """The polynomial evaluations an opened record carries, per field (for the audit's relation search).

    The Shamir share ``(x, y)`` over the scalar field; the detectable hash over the same field at
    ``x`` (``scalar``) or over the 64-bit field at its own abscissa ``x0`` (``p64``).
    """
    layer = record.get("inner_layer")
    if layer is None:
        return ()
    x, y, dhf, _ = layer
    xi = int.from_bytes(x, "little")
    values = [int.from_bytes(v, "little") for v in dhf]
    if params.dhf_field == "scalar" or not values:
        names = ("share", *(f"dhf{i}" for i in range(len(values))))
        return (ShareRows(group.ELL, xi, (int.from_bytes(y, "little"), *values), names),)
    return (
        ShareRows(group.ELL, xi, (int.from_bytes(y, "little"),), ("share",)),
        ShareRows(smallfield.P64, values[0], tuple(values[1:]), tuple(f"dhf{i}" for i in range(len(values) - 1))),
    )

# --- C-Init / C-Gen-Voucher ----------------------------------------------------


def _prf_scalar(key: bytes, data: bytes, person: bytes) -> bytes:
    s = group.scalar_reduce(hashlib.blake2b(data, digest_size=64, key=key, person=person).digest())
    if s == group.SCALAR_ZERO:  # probability 2^-252
        raise SecretSharingError("PRF output reduced to zero")
    return s


def seeded_coin(rng: Any, per_hash: bool) -> Callable[[bytes], int]:
    """A reproducible stand-in for a device's secret synthetic-voucher coin (for ``coin_source``).

    Simulation only: ``rng`` is a seeded ``numpy.random.Generator``. With
    ``per_hash`` the coin is a keyed hash of the image hash, so copies share
    their decision as with ``dedup = "hash"``; otherwise every call differs.
    """
    key = rng.bytes(32)
    counter = [0]

    def coin(y: bytes) -> int:
        counter[0] += 1
        data = y if per_hash else y + counter[0].to_bytes(8, "big")
        return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "big")

    return coin


class TpsiAdScanner(Scanner):
    """One device (account): C-Init at construction, C-Gen-Voucher in :meth:`scan`."""

    def __init__(self, protocol: str, magic: bytes, public: bytes, params: TpsiAdParams) -> None:
        self.params = params
        self.table = BlindedTable.decode(protocol, magic, public, params.fingerprint())
        self._schema = voucher_schema(params)
        self._ctx = self.table.context
        t, s = params.threshold, params.dhf_width()
        # C-Init.
        account_scalar = group.random_scalar()
        self._poly = SharingPolynomial.random(account_scalar, t)
        self._adkey = _account_aead_key(account_scalar)
        self._dhf: DetectableHash | None = None
        self._dhf64: smallfield.DetectableHash64 | None = None
        if s and params.dhf_field == "p64":
            self._dhf64 = smallfield.DetectableHash64.random(t - 2, s)
        elif s:
            self._dhf = DetectableHash.random(t - 2, s)
        self._fkey = os.urandom(32)
        self._skey = os.urandom(32)
        self._synthetic_tags: set[bytes] = set()
        self._synthetic_sent = 0
        #: Whether the last :meth:`scan` produced a synthetic voucher (device-side knowledge, never sent).
        self.last_was_synthetic = False
        #: Simulation hook: a function ``y -> 64-bit int`` replacing the secret synthetic-voucher coin, so
        #: that a simulator can make the *decision* reproducible from its seeded generator. The voucher's
        #: keys, shares and blinding stay OS-random. Never set it on a real device.
        self.coin_source: Callable[[bytes], int] | None = None

    @property
    def synthetic_sent(self) -> int:
        """Synthetic vouchers emitted so far (re-sent copies included)."""
        return self._synthetic_sent

    # Hooks for the fuzzy variants ------------------------------------------------
    def _probes(self, y: bytes, hints: Mapping[str, Any]) -> list[bytes]:
        if hints:
            raise ProtocolError(f"{self.params.PROTOCOL}.scan: unexpected keyword(s) {sorted(hints)}")
        return [y]

    # ------------------------------------------------------------------------------
    def scan(self, phash: PerceptualHash, payload: bytes = b"", **hints: Any) -> bytes:
        """C-Gen-Voucher for one image. The voucher's length depends only on the parameters."""
        y = check_hash(phash, self.table.bits, f"{self.params.PROTOCOL}.scan")
        padded = pad_payload(payload, self.params.payload_size)
        probes = self._probes(y, hints)
        x, synthetic, dummy_seed = self._decide(y)
        self.last_was_synthetic = synthetic
        if synthetic:
            self._synthetic_sent += 1
            return self._synthetic_voucher(x, dummy_seed)
        return self._real_voucher(x, padded, probes)

    def _decide(self, y: bytes) -> tuple[bytes, bool, bytes | None]:
        p = self.params
        if p.dedup == "hash":
            x = _prf_scalar(self._fkey, y, b"e2escan-x")
            coin = int.from_bytes(hashlib.blake2b(y, digest_size=8, key=self._skey, person=b"e2escan-coin").digest())
            seed = hashlib.blake2b(y, digest_size=32, key=self._skey, person=b"e2escan-dummy").digest()
        else:
            x = group.random_scalar()
            coin = secrets.randbits(64)
            seed = None
        if self.coin_source is not None:
            coin = self.coin_source(y)
        wants = coin < p.synthetic_probability * 2**64
        allowed = x in self._synthetic_tags or len(self._synthetic_tags) < p.synthetic_capacity
        synthetic = wants and allowed
        if synthetic:
            self._synthetic_tags.add(x)
        return x, synthetic, seed

    def _real_voucher(self, x: bytes, padded: bytes, probes: Sequence[bytes]) -> bytes:
        t = self.table
        inner = x + self._poly.evaluate(x) + self._dhf_values(x) + seal(self._adkey, padded, self._ctx)
        rkey = os.urandom(KEY_BYTES)
        rct = seal_once(rkey, inner, self._ctx)
        pairs = []
        for probe in probes:
            h = group.hash_to_group(probe, t.h2g_dst)
            seen: set[int] = set()
            for cell in t.layout.candidate_cells(probe):
                if cell in seen:
                    # Two cuckoo functions chose the same bucket: a second opening pair would
                    # set this voucher apart from a synthetic one (which opens exactly once).
                    pairs.append(self._dummy_pair(rkey))
                    continue
                seen.add(cell)
                beta, gamma = group.random_scalar(), group.random_scalar()
                q = group.point_add(group.scalar_mult(beta, h, "H(y)"), group.scalar_mult_base(gamma))
                s = group.point_add(
                    group.scalar_mult(beta, t.entry(cell), f"{t.protocol} public table cell {cell}"),
                    group.scalar_mult(gamma, t.L, "L"),
                )
                pairs.append((q, seal_once(t.key_from_element(s), rkey, self._ctx)))
        return self._encode(pairs, rct)

    def _dhf_values(self, x: bytes) -> bytes:
        """The genuine detectable-hash part of the inner layer for the share abscissa ``x``.

        ``p64``: the paper's ``DHF(hkey, x0)`` at its own abscissa ``x0``, a PRF of ``x``
        (so re-sent copies repeat it, as they repeat ``x``; ``x`` is itself a PRF of the
        image hash or OS-random); ``scalar``: the polynomials evaluated at ``x``.
        """
        if self._dhf64 is not None:
            x0 = smallfield.element_from_bytes(
                hashlib.blake2b(x, digest_size=smallfield.PRF_BYTES, key=self._fkey, person=b"e2escan-x0").digest()
            )
            return b"".join(smallfield.encode(v) for v in self._dhf64.evaluate(x0))
        if self._dhf is not None:
            return b"".join(self._dhf.evaluate(x))
        return b""

    def _synthetic_values(self, seed: bytes | None) -> bytes:
        """A synthetic voucher's share value and detectable-hash part: uniformly random in their fields.

        With ``seed`` (``dedup = "hash"``) they are a PRF of it, so copies of one image repeat them.
        """
        p = self.params
        if seed is None:
            share = group.random_scalar()
        else:
            share = _prf_scalar(seed, (0).to_bytes(4, "big"), b"e2escan-dvalue")
        width = p.dhf_width()
        if width and p.dhf_field == "p64":
            if seed is None:
                elements = [smallfield.random_element() for _ in range(width + 1)]
            else:
                elements = [
                    smallfield.element_from_bytes(
                        hashlib.blake2b(i.to_bytes(4, "big"), digest_size=smallfield.PRF_BYTES, key=seed,
                                        person=b"e2escan-d64").digest()
                    )
                    for i in range(width + 1)
                ]
            return share + b"".join(smallfield.encode(v) for v in elements)
        if seed is None:
            values = [group.random_scalar() for _ in range(width)]
        else:
            values = [_prf_scalar(seed, i.to_bytes(4, "big"), b"e2escan-dvalue") for i in range(1, width + 1)]
        return share + b"".join(values)

    def _synthetic_voucher(self, x: bytes, seed: bytes | None) -> bytes:
        t, p = self.table, self.params
        inner = x + self._synthetic_values(seed) + os.urandom(p.adct_bytes())
        rkey = os.urandom(KEY_BYTES)
        rct = seal_once(rkey, inner, self._ctx)
        gamma = group.random_scalar()
        # S = gamma * L = alpha * Q: this pair opens for the server; the others never do.
        opener = (group.scalar_mult_base(gamma), seal_once(t.key_from_element(group.scalar_mult(gamma, t.L, "L")), rkey, self._ctx))
        pairs = [opener] + [self._dummy_pair(rkey) for _ in range(p.pairs() - 1)]
        return self._encode(pairs, rct)

    def _dummy_pair(self, rkey: bytes) -> tuple[bytes, bytes]:
        """A uniformly random Q and a ciphertext under a random key: never opens."""
        return group.random_point(), seal_once(os.urandom(KEY_BYTES), rkey, self._ctx)

    def _encode(self, pairs: list[tuple[bytes, bytes]], rct: bytes) -> bytes:
        secrets.SystemRandom().shuffle(pairs)
        return self._schema.encode({"Q": b"".join(q for q, _ in pairs), "ct": b"".join(c for _, c in pairs), "rct": rct})


def _account_aead_key(account_scalar: bytes) -> bytes:
    return hashlib.blake2b(account_scalar, digest_size=32, person=b"e2escan-adkey").digest()


# --- S-Process -------------------------------------------------------------------


@dataclass
class _Inner:
    x: bytes
    y: bytes
    dhf: tuple[bytes, ...]
    adct: bytes


@dataclass
class _Account:
    records: list[dict[str, object]] = field(default_factory=list)
    rows: dict[bytes, tuple[bytes, tuple[bytes, ...]]] = field(default_factory=dict)
    coefficients: list[bytes] | None = None
    adkey: bytes | None = None
    classified: int = 0
    failed_at_rows: int = -1
    detector: GenuineDetector | None = None  # the opened rows, in arrival order, for the detectable hash
    detector_shares: list[bytes] = field(default_factory=list)  # the share x of each detector row, in order


class TpsiAdServer(MatchServer):
    """S-Process. Holds ``alpha`` and, per account, what the vouchers let it open."""

    def __init__(self, state: ServerTableState, params: TpsiAdParams) -> None:
        self.params = params
        self._alpha = state.alpha
        self._public = state.public
        self._ctx = state.public.context
        self._schema = voucher_schema(params)
        self._accounts: dict[str, _Account] = {}
        self._seen: set[bytes] = set()
        self.database_size = len(state.cuckoo)

    # -- ingest --------------------------------------------------------------------
    def _points(self, d: Decoded) -> list[bytes]:
        """The voucher's points ``Q``; a replay is any voucher that repeats one (in any pair order, any account).

        Every ``Q`` is a fresh uniformly random point (a real pair's ``beta * H(y) + gamma * G``, a synthetic
        opener's ``gamma * G``, a dummy's random point), so an honest device repeats one with probability
        about 2^-252. Keying on the points rather than the voucher's bytes refuses a voucher whose pairs were
        reordered, which would otherwise open again and count again.
        """
        qs = d["Q"]
        points = [qs[32 * j : 32 * j + 32] for j in range(len(qs) // 32)]
        if len(set(points)) != len(points):
            raise VoucherError(f"{self.params.PROTOCOL} voucher field 'Q': the same point appears twice")
        if any(q in self._seen for q in points):
            raise VoucherReplayError(
                f"{self.params.PROTOCOL} voucher: a point Q of this voucher was ingested before (a replay, "
                "possibly with its pairs reordered)"
            )
        return points

    def _open(self, d: Decoded) -> tuple[int, _Inner | None]:
        p = self.params
        qs, cts, q_off = d["Q"], d["ct"], d.offsets["Q"]
        rkey = None
        opened = 0
        for j in range(p.pairs()):
            try:
                z = group.scalar_mult(
                    self._alpha,
                    qs[32 * j : 32 * j + 32],
                    f"{p.PROTOCOL} voucher field 'Q' entry {j} at byte offset {q_off + 32 * j}",
                )
            except InvalidPointError as exc:
                raise VoucherPointError(str(exc)) from exc
            try:
                key = open_once(self._public.key_from_element(z), cts[CT_BYTES * j : CT_BYTES * (j + 1)], self._ctx)
            except AuthenticationError:
                continue
            opened += 1
            rkey = rkey or key
        if rkey is None:
            return 0, None
        rct_off = d.offsets["rct"]
        try:
            inner = open_once(rkey, d["rct"], self._ctx, "rct")
        except (AuthenticationError, DecodeError) as exc:
            raise VoucherError(
                f"{p.PROTOCOL} voucher field 'rct' at byte offset {rct_off}: does not open under the key "
                "carried by 'ct' (inconsistent voucher)"
            ) from exc
        return opened, self._parse_inner(inner)

    def _parse_inner(self, inner: bytes) -> _Inner:
        """Split and validate the inner layer: every scalar below ``ELL``, every 64-bit element below ``P64``."""
        p = self.params
        p64 = p.dhf_field == "p64" and p.dhf_width() > 0
        size = smallfield.ELEMENT_BYTES if p64 else SC
        n_dhf = p.dhf_width() + 1 if p64 else p.dhf_width()
        start = 2 * SC
        dhf = tuple(inner[start + size * i : start + size * (i + 1)] for i in range(n_dhf))
        x, y = inner[:SC], inner[SC : 2 * SC]
        bound = smallfield.P64 if p64 else group.ELL
        rest = inner[start + size * n_dhf :]
        # Fast path: one range check per value; the slow path below names the first bad field.
        if (
            x != group.SCALAR_ZERO
            and int.from_bytes(x, "little") < group.ELL
            and int.from_bytes(y, "little") < group.ELL
            and all(int.from_bytes(v, "little") < bound for v in dhf)
        ):
            return _Inner(x, y, dhf, rest)
        where = f"{p.PROTOCOL} voucher inner layer"
        try:
            group.require_scalar(x, f"{where}: share x (inner byte offset 0)", nonzero=True)
            group.require_scalar(y, f"{where}: share y (inner byte offset {SC})")
            for i, v in enumerate(dhf):
                what = f"{where}: detectable-hash value {i} (inner byte offset {start + size * i})"
                if p64:
                    smallfield.require_element(v, what)
                else:
                    group.require_scalar(v, what)
        except DecodeError as exc:
            raise VoucherError(str(exc)) from exc
        raise AssertionError("unreachable: the fast path accepts every valid inner layer")  # pragma: no cover

    def ingest(self, account: str, voucher: bytes) -> Mapping[str, object]:
        """S-Process for one voucher; a malformed, foreign or replayed voucher changes nothing."""
        check_account(account)
        decoded = self._schema.decode(check_voucher(voucher, self.params.PROTOCOL))
        points = self._points(decoded)
        opened_pairs, inner = self._open(decoded)
        # Everything is validated; only now is state changed.
        acc = self._accounts.setdefault(account, _Account())
        acc.records.append(
            {
                "index": len(acc.records),
                "length": len(voucher),
                "opened": inner is not None,
                "opened_pairs": opened_pairs,
                "inner_layer": inner,
            }
        )
        if inner is not None and inner.x not in acc.rows:
            if self.params.dhf_width() and acc.adkey is None:  # after the key is recovered it is not needed
                self._detect_row(acc, inner)
            acc.rows[inner.x] = (inner.y, inner.dhf)
        self._seen.update(points)
        return self._export(acc.records[-1])

    def _detect_row(self, acc: _Account, inner: _Inner) -> None:
        """Feed the detectable hash the row of a newly opened share (values already validated).

        ``p64``: the row is ``(x0, values)`` at the hash's own abscissa. A repeated ``x0`` under a
        new share ``x`` (probability about ``m^2 / 2^65`` for an honest device; otherwise a
        malformed device) cannot join the detector, so that share is never counted as genuine.
        """
        p = self.params
        p64 = p.dhf_field == "p64"
        if acc.detector is None:
            acc.detector = GenuineDetector(p.threshold - 2, p.dhf_width(), smallfield.P64 if p64 else group.ELL)
        row_x, values = (inner.dhf[0], inner.dhf[1:]) if p64 else (inner.x, inner.dhf)
        if acc.detector.seen(row_x):
            return
        acc.detector.add(row_x, values)
        acc.detector_shares.append(inner.x)

    # -- threshold -----------------------------------------------------------------
    def _try_recover(self, acc: _Account) -> None:
        t = self.params.threshold
        if acc.adkey is not None or len(acc.rows) < t or len(acc.rows) == acc.failed_at_rows:
            return
        xs = list(acc.rows)
        if t == 1:
            self._recover_single(acc)
            return
        if acc.detector is not None:
            genuine = [acc.detector_shares[i] for i in sorted(acc.detector.genuine())]
        else:
            genuine = xs
        if len(genuine) < t:
            acc.failed_at_rows = len(acc.rows)
            return
        shares = [Share(x, acc.rows[x][0]) for x in genuine]
        try:
            secret = reconstruct(shares, t)
        except SecretSharingError:
            acc.failed_at_rows = len(acc.rows)
            return
        adkey = _account_aead_key(secret)
        # Confirm the key: the payload ciphertexts of the shares used must open under it. With
        # exactly t shares nothing else could reveal a wrongly detected set.
        used = set(genuine[:t])
        for rec in acc.records:
            inner = rec["inner_layer"]
            if isinstance(inner, _Inner) and inner.x in used:
                used.discard(inner.x)
                try:
                    open_sealed(adkey, inner.adct, self._ctx, "adct")
                except (AuthenticationError, DecodeError):
                    acc.failed_at_rows = len(acc.rows)
                    return
        acc.coefficients = interpolate_polynomial(shares[:t])
        acc.adkey = adkey
        acc.detector = None
        acc.detector_shares = []

    def _recover_single(self, acc: _Account) -> None:
        """``t = 1``: the genuine shares' value is the account key; find one by trial decryption."""
        for rec in acc.records:
            inner = rec["inner_layer"]
            if not isinstance(inner, _Inner):
                continue
            adkey = _account_aead_key(inner.y)
            try:
                open_sealed(adkey, inner.adct, self._ctx, "adct")
            except (AuthenticationError, DecodeError):
                continue
            acc.coefficients, acc.adkey = [inner.y], adkey
            return
        acc.failed_at_rows = len(acc.rows)

    def _classify(self, acc: _Account) -> None:
        assert acc.coefficients is not None and acc.adkey is not None
        for rec in acc.records[acc.classified :]:
            inner = rec["inner_layer"]
            payload = None
            if isinstance(inner, _Inner) and evaluate_polynomial(acc.coefficients, inner.x) == inner.y:
                try:
                    padded = open_sealed(acc.adkey, inner.adct, self._ctx, "adct")
                    payload = unpad_payload(padded, self.params.payload_size)
                except (AuthenticationError, DecodeError):
                    payload = None  # a genuine share with a bad payload ciphertext: not revealed
            rec["is_match"] = payload is not None
            rec["payload"] = payload
        acc.classified = len(acc.records)

    def reveal(self, account: str) -> Reveal:
        acc = self._accounts.get(account)
        if acc is None:
            return Reveal(account, 0, (), (), False, self.params.threshold)
        self._try_recover(acc)
        if acc.adkey is None:
            return Reveal(account, len(acc.records), (), (), False, self.params.threshold)
        self._classify(acc)
        hits = [r for r in acc.records if r["is_match"]]
        return Reveal(
            account=account,
            vouchers=len(acc.records),
            matches=tuple(r["payload"] for r in hits),  # type: ignore[misc]
            match_indices=tuple(r["index"] for r in hits),  # type: ignore[misc]
            over_threshold=True,
            threshold=self.params.threshold,
        )

    # -- what the server holds -----------------------------------------------------
    def observed(self, account: str) -> tuple[Mapping[str, object], ...]:
        acc = self._accounts.get(account)
        if acc is None:
            return ()
        return tuple(self._export(rec) for rec in acc.records)

    @staticmethod
    def _export(rec: dict[str, object]) -> Mapping[str, object]:
        inner = rec["inner_layer"]
        exported = dict(rec)
        if isinstance(inner, _Inner):
            exported["inner_layer"] = (inner.x, inner.y, inner.dhf, inner.adct)
        return frozen_record(**exported)

    def account_view(self, account: str) -> Mapping[str, object]:
        acc = self._accounts.get(account)
        if acc is None:
            return frozen_record(vouchers=0, opened_count=0, distinct_opened=0)
        view: dict[str, object] = {
            "vouchers": len(acc.records),
            "opened_count": sum(bool(r["opened"]) for r in acc.records),
            "distinct_opened": len(acc.rows),
        }
        if acc.adkey is not None:
            self._classify(acc)
            view["matches"] = sum(bool(r["is_match"]) for r in acc.records)
            view["account_key"] = acc.adkey
        return frozen_record(**view)

    def accounts(self) -> tuple[str, ...]:
        return tuple(self._accounts)


class TpsiAdProtocol(Protocol):
    name = NAME
    summary = "threshold PSI with associated data (Apple PSI): nothing below t matches, payloads at t"
    Params = TpsiAdParams
    LEAKAGE = LEAKAGE
    PUBLIC_MAGIC = b"E2TP"

    def _database_items(self, database: HashArray, params: TpsiAdParams) -> list[bytes]:
        return unique_rows(database)

    def match_radius(self, params: ProtocolParams) -> int:
        return 0  # exact matching; the ball variant overrides this

    def payload_size(self, params: ProtocolParams) -> int:
        assert isinstance(params, TpsiAdParams)
        return params.payload_size

    def synthetic_probability(self, params: ProtocolParams) -> float:
        assert isinstance(params, TpsiAdParams)
        return params.synthetic_probability

    def synthetic_capacity(self, params: ProtocolParams) -> int:
        assert isinstance(params, TpsiAdParams)
        return params.synthetic_capacity

    def statistical_model(self, params: ProtocolParams) -> StatisticalModel:
        self._check_params(params)
        assert isinstance(params, TpsiAdParams)
        return StatisticalModel(radius=self.match_radius(params), threshold=params.threshold,
                                copies_once=self.counts_copies_once(params),
                                synthetic_probability=params.synthetic_probability,
                                synthetic_capacity=params.synthetic_capacity)

    def table_entries(self, params: ProtocolParams, database_hashes: int, bits: int) -> int:
        """Hashes placed in the blinded table for a database of ``database_hashes`` distinct hashes."""
        return database_hashes

    def wire_sizes(self, params: ProtocolParams, database_hashes: int, bits: int = 64,
                   payload_bytes: int | None = None) -> WireSizes:
        from .blinded_table import wire_sizes

        assert isinstance(params, TpsiAdParams)
        return wire_sizes(self.table_entries(params, database_hashes, bits), params.cuckoo_load, params.stash_size,
                          voucher_schema(params))

    def seed_client(self, client: Scanner, rng: Any, params: ProtocolParams) -> None:
        """Replace the device's OS coin for synthetic-voucher decisions with a seeded one (simulation only)."""
        assert isinstance(client, TpsiAdScanner) and isinstance(params, TpsiAdParams)
        client.coin_source = seeded_coin(rng, params.dedup == "hash")

    def threshold(self, params: ProtocolParams) -> int | None:
        self._check_params(params)
        assert isinstance(params, TpsiAdParams)
        return params.threshold

    def counts_copies_once(self, params: ProtocolParams) -> bool:
        self._check_params(params)
        assert isinstance(params, TpsiAdParams)
        return params.dedup == "hash"

    def ideal_functionality(self, params: ProtocolParams, hash_bits: int) -> IdealFunctionality:
        self._check_params(params)
        assert isinstance(params, TpsiAdParams)
        return ideal_functionality(params)

    def server_setup(
        self, database: HashArray, params: ProtocolParams, rng: Any = None, *, progress: bool = False
    ) -> tuple[TpsiAdServer, bytes]:
        self._check_params(params)
        assert isinstance(params, TpsiAdParams)
        check_database(database, f"{self.name}.server_setup")
        state = build_blinded_table(
            self.name,
            params.fingerprint(),
            self._database_items(database, params),
            database.bits,
            num_hashes=params.cuckoo_hashes,
            load=params.cuckoo_load,
            stash_size=params.stash_size,
            progress=progress,
        )
        return TpsiAdServer(state, params), state.public.encode(self.PUBLIC_MAGIC)

    def table_server(self, state: Any, params: ProtocolParams) -> tuple[TpsiAdServer, bytes]:
        self.check_params(params)
        assert isinstance(params, TpsiAdParams)
        return TpsiAdServer(state, params), state.public.encode(self.PUBLIC_MAGIC)

    def client(self, public: bytes, params: ProtocolParams) -> TpsiAdScanner:
        self._check_params(params)
        assert isinstance(params, TpsiAdParams)
        return TpsiAdScanner(self.name, self.PUBLIC_MAGIC, public, params)
