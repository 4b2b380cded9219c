"""Fuzzy threshold variants: exact matching on pHash/PDQ misses most edited copies.

* ``tpsi-ad-ball`` (server side): the database is expanded to every hash
  within Hamming distance ``radius`` of a database hash before S-Init, so a
  device hash matches iff it is within ``radius`` of the database, exactly as
  the plaintext matcher with the same radius. The blinded table grows by the
  ball size ``sum_{i <= r} C(bits, i)`` per database hash (65x for 64-bit
  hashes at r = 1, 2,081x at r = 2; 257x for 256-bit PDQ at r = 1).
* ``tpsi-ad-multiprobe`` (client side): the device vouches in one voucher for
  its hash and every hash obtained by flipping a subset of its ``probe_bits``
  least stable bits (``2^probe_bits`` probes). It matches iff some database
  hash differs from the device hash only within those bits. Which bits are
  least stable comes from an optional per-image hint
  (``scan(..., reliability=array)``: one number per bit, smaller = less
  stable, e.g. the distance of a DCT coefficient from the median for pHash);
  without a hint the device uses ``probe_order`` from the parameters, a fixed
  bit order (default: bits 0, 1, 2, ...).

Both reuse the ``tpsi-ad`` voucher, server and threshold machinery; specs:
``protocols/tpsi-ad-ball.md`` and ``protocols/tpsi-ad-multiprobe.md``.

Every search of the database in the clear goes through
:class:`~e2escan.hashing.HammingIndex`: the ball's plaintext matcher is the
base one (nearest database hash); the multi-probe matcher and opening count
take the index's hashes within ``probe_bits`` of the query and keep those that
differ only in the probed bits. :func:`multiprobe_matches` is the brute-force
oracle the tests hold them to. (The ball's server needs no search: its table
is the enumerated ball, :func:`expand_ball`.)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import numpy as np

from ..errors import ConfigError, ProtocolError
from ..hashing import HammingIndex, HashArray, PerceptualHash
from .base import (
    LeakageProfile,
    ProtocolParams,
    StatisticalModel,
    check_database,
    check_int,
)
from .tpsi_ad import DESCRIPTIONS, TpsiAdParams, TpsiAdProtocol, TpsiAdScanner

BALL = "tpsi-ad-ball"
MULTIPROBE = "tpsi-ad-multiprobe"


def ball_size(bits: int, radius: int) -> int:
    """Number of hashes within Hamming distance ``radius`` of one ``bits``-bit hash."""
    return sum(math.comb(bits, i) for i in range(radius + 1))


def _flip_masks(bits: int, positions: list[int] | range, max_weight: int) -> np.ndarray:
    """XOR masks (packed bytes) for every subset of ``positions`` of size <= ``max_weight``."""
    masks = []
    for w in range(max_weight + 1):
        for combo in itertools.combinations(positions, w):
            m = np.zeros(bits, dtype=np.uint8)
            m[list(combo)] = 1
            masks.append(np.packbits(m))
    return np.stack(masks)


def expand_ball(database: HashArray, radius: int, *, chunk: int = 4096) -> list[bytes]:
    """Every distinct hash within ``radius`` of a database hash (the database itself first)."""
    masks = _flip_masks(database.bits, range(database.bits), radius)
    seen: dict[bytes, None] = {}
    for row in database.data:
        seen.setdefault(row.tobytes(), None)
    data = database.data
    for start in range(0, len(data), chunk):
        block = (data[start : start + chunk, None, :] ^ masks[None, :, :]).reshape(-1, data.shape[1])
        for row in np.unique(block, axis=0):
            seen.setdefault(row.tobytes(), None)
    return list(seen)


# --- tpsi-ad-ball --------------------------------------------------------------------


@dataclass(frozen=True)
class TpsiAdBallParams(TpsiAdParams):
    """``tpsi-ad`` parameters plus ``radius``, the Hamming radius the database is expanded to."""

    PROTOCOL: ClassVar[str] = BALL

    radius: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(f"{BALL}.radius", self.radius, 0, 8)


class TpsiAdBallProtocol(TpsiAdProtocol):
    name = BALL
    summary = "tpsi-ad on the database expanded to a Hamming ball of radius r (server-side fuzziness)"
    Params = TpsiAdBallParams
    LEAKAGE = LeakageProfile(
        server_voucher=TpsiAdProtocol.LEAKAGE.server_voucher,
        server_account=TpsiAdProtocol.LEAKAGE.server_account,
        server_voucher_over=TpsiAdProtocol.LEAKAGE.server_voucher_over,
        server_account_over=TpsiAdProtocol.LEAKAGE.server_account_over,
        client=("table_size", "hash_bits", "cuckoo_layout", "radius"),
        descriptions={
            **DESCRIPTIONS,
            "table_size": "number of cells of the blinded table: about ball_size(bits, r) times the database size",
            "radius": "the expansion radius (a parameter, public)",
        },
    )
    PUBLIC_MAGIC = b"E2TB"

    def _database_items(self, database: HashArray, params: TpsiAdParams) -> list[bytes]:
        assert isinstance(params, TpsiAdBallParams)
        return expand_ball(database, params.radius)

    def table_server(self, state: Any, params: ProtocolParams) -> NoReturn:
        raise ProtocolError(f"{self.name}: its table holds the Hamming ball, not the database itself")

    def match_radius(self, params: ProtocolParams) -> int:
        assert isinstance(params, TpsiAdBallParams)
        return params.radius

    def table_entries(self, params: ProtocolParams, database_hashes: int, bits: int) -> int:
        """``n * ball_size(bits, r)``: exact when no two database hashes are within ``2r`` of each other."""
        assert isinstance(params, TpsiAdBallParams)
        return database_hashes * ball_size(bits, params.radius)


# --- tpsi-ad-multiprobe ----------------------------------------------------------------


@dataclass(frozen=True)
class TpsiAdMultiprobeParams(TpsiAdParams):
    """``tpsi-ad`` parameters plus ``probe_bits`` (k, giving 2^k probes) and the fallback ``probe_order``."""

    PROTOCOL: ClassVar[str] = MULTIPROBE

    probe_bits: int = 3
    probe_order: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(f"{MULTIPROBE}.probe_bits", self.probe_bits, 0, 10)
        order = tuple(self.probe_order)
        object.__setattr__(self, "probe_order", order)
        if any(isinstance(b, bool) or not isinstance(b, int) or b < 0 for b in order):
            raise ConfigError(f"{MULTIPROBE}.probe_order must list non-negative bit indices, got {order!r}")
        if len(set(order)) != len(order):
            raise ConfigError(f"{MULTIPROBE}.probe_order lists a bit twice: {order!r}")
        if order and len(order) < self.probe_bits:
            raise ConfigError(
                f"{MULTIPROBE}.probe_order has {len(order)} bits but probe_bits = {self.probe_bits}; "
                "list at least probe_bits bits or leave it empty"
            )

    def probes(self) -> int:
        """Probes per voucher: ``2 ** probe_bits``."""
        return 1 << self.probe_bits


class TpsiAdMultiprobeScanner(TpsiAdScanner):
    def probe_positions(self, reliability: Any = None) -> list[int]:
        """The ``probe_bits`` bit positions flipped for this image (least stable first)."""
        p = self.params
        assert isinstance(p, TpsiAdMultiprobeParams)
        bits = self.table.bits
        if reliability is not None:
            r = np.asarray(reliability, dtype=float)
            if r.shape != (bits,):
                raise ProtocolError(f"{MULTIPROBE}.scan: reliability must have shape ({bits},), got {r.shape}")
            if not np.all(np.isfinite(r)):
                raise ProtocolError(f"{MULTIPROBE}.scan: reliability contains NaN or infinity")
            return [int(i) for i in np.argsort(r, kind="stable")[: p.probe_bits]]
        order = p.probe_order or tuple(range(bits))
        if max(order, default=0) >= bits:
            raise ProtocolError(f"{MULTIPROBE}: probe_order names bit {max(order)} of a {bits}-bit hash")
        return list(order[: p.probe_bits])

    def _probes(self, y: bytes, hints: Mapping[str, Any]) -> list[bytes]:
        unknown = set(hints) - {"reliability"}
        if unknown:
            raise ProtocolError(f"{MULTIPROBE}.scan: unexpected keyword(s) {sorted(unknown)}; accepted: reliability")
        positions = self.probe_positions(hints.get("reliability"))
        masks = _flip_masks(self.table.bits, positions, len(positions))
        base = np.frombuffer(y, dtype=np.uint8)
        return [(base ^ m).tobytes() for m in masks]


class TpsiAdMultiprobeProtocol(TpsiAdProtocol):
    name = MULTIPROBE
    summary = "tpsi-ad where the device also vouches for its hash with its k least stable bits flipped"
    Params = TpsiAdMultiprobeParams
    LEAKAGE = LeakageProfile(
        server_voucher=TpsiAdProtocol.LEAKAGE.server_voucher,
        server_account=TpsiAdProtocol.LEAKAGE.server_account,
        server_voucher_over=TpsiAdProtocol.LEAKAGE.server_voucher_over,
        server_account_over=TpsiAdProtocol.LEAKAGE.server_account_over,
        client=TpsiAdProtocol.LEAKAGE.client,
        descriptions={
            **DESCRIPTIONS,
            "opened_pairs": "how many (Q, ct) pairs opened: 1 for a synthetic voucher, and for a real one the "
            "number of database hashes among its probes, so a count above 1 marks a real match",
        },
    )
    PUBLIC_MAGIC = b"E2TM"

    def client(self, public: bytes, params: Any) -> TpsiAdMultiprobeScanner:
        self.check_params(params)
        return TpsiAdMultiprobeScanner(self.name, self.PUBLIC_MAGIC, public, params)

    def statistical_model(self, params: ProtocolParams) -> StatisticalModel:
        return StatisticalModel(unsupported=f"{self.name} matches on probe sets, not within a radius; the "
                                            "statistical path models radius-based matching: use engine = 'faithful'")

    def expected_openings(self, database: HashArray, params: Any) -> Callable[[PerceptualHash, bool], int]:
        """Pairs a real voucher opens: how many of its probes are database hashes (fixed ``probe_order``, no hint)."""
        self.check_params(params)
        assert isinstance(params, TpsiAdMultiprobeParams)
        index = HammingIndex(database, threads=1)
        positions = _fixed_probe_positions(database.bits, params)
        outside = _outside_mask(database.bits, positions)

        def openings(h: PerceptualHash, matched: bool) -> int:
            if not matched:
                return 0
            return len(np.unique(_confined_matches(index, h, len(positions), outside), axis=0))

        return openings

    def plaintext_matcher(self, database: HashArray, params: Any) -> Callable[[PerceptualHash], tuple[bool, int]]:
        """Match iff a database hash differs only within the probed bits of the fixed ``probe_order``.

        Images scanned with a per-image ``reliability`` hint probe other bits;
        for those, call :func:`multiprobe_matches` with the positions
        :meth:`TpsiAdMultiprobeScanner.probe_positions` returns.
        """
        self.check_params(params)
        assert isinstance(params, TpsiAdMultiprobeParams)
        index = HammingIndex(check_database(database, f"{self.name}.plaintext_matcher"), threads=1)
        positions = _fixed_probe_positions(database.bits, params)
        outside = _outside_mask(database.bits, positions)

        def match(h: PerceptualHash) -> tuple[bool, int]:
            nearest = int(index.knn(h, 1)[1][0, 0])
            return len(_confined_matches(index, h, len(positions), outside)) > 0, nearest

        return match


def _fixed_probe_positions(bits: int, params: TpsiAdMultiprobeParams) -> list[int]:
    """Bits a device without a hint flips: the first ``probe_bits`` of ``probe_order`` (default 0, 1, 2, ...)."""
    order = params.probe_order or tuple(range(bits))
    positions = list(order[: params.probe_bits])
    if max(positions, default=0) >= bits:
        raise ProtocolError(f"{MULTIPROBE}: probe_order names bit {max(positions)} of a {bits}-bit hash")
    return positions


def _outside_mask(bits: int, positions: list[int]) -> np.ndarray:
    """Packed mask with a 1 at every bit not in ``positions`` (the bits a probe never flips)."""
    outside = np.ones(bits, dtype=np.uint8)
    outside[positions] = 0
    return np.packbits(outside)


def _confined_matches(index: HammingIndex, h: PerceptualHash, radius: int, outside: np.ndarray) -> np.ndarray:
    """Database rows (packed, duplicates kept) that differ from ``h`` only in bits where ``outside`` is 0.

    Such a row is within ``radius`` (the number of probed bits) of ``h``, so
    the index's radius query returns every one of them; the mask then drops
    the near hashes that differ somewhere else.
    """
    rows = index.db.data[index.radius(h, radius)[0]]
    differ = rows ^ np.frombuffer(h.data, dtype=np.uint8)
    confined: np.ndarray = rows[~np.any(differ & outside, axis=1)]
    return confined


def multiprobe_matches(database: HashArray, query: bytes, positions: list[int]) -> bool:
    """The oracle: some database hash differs from ``query`` only within ``positions`` (brute force, for tests)."""
    bits = database.bits
    xor: np.ndarray = np.bitwise_xor(database.data, np.frombuffer(query, dtype=np.uint8))
    diff = np.unpackbits(xor, axis=1)
    outside = np.ones(bits, dtype=bool)
    outside[positions] = False
    return bool(np.any(~diff[:, outside].any(axis=1)))
