"""The one interface every matching protocol implements.

A protocol is an object with

* ``name``, ``summary``, ``spec`` (the file under ``protocols/`` describing it),
* ``Params``: a frozen, validated dataclass (``Params.from_toml(path)``),
* ``LEAKAGE``: a :class:`LeakageProfile`, the spec's "what each party
  learns" lists as data,
* ``server_setup(database, params, rng=None) -> (server, public)``: ``public``
  is the bytes shipped to every device,
* ``client(public, params) -> Scanner`` with ``scan(phash, payload) -> bytes``,

and the server (a :class:`MatchServer`) takes bytes only: ``ingest(account,
voucher)`` and ``reveal(account) -> Reveal``. Every server records what it has
seen in records whose keys are the names in its ``LEAKAGE`` lists
(:meth:`MatchServer.observed`, :meth:`MatchServer.account_view`), so tests
can check that the declared profile covers everything the server holds.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from ..config import from_dict
from ..errors import ConfigError, InvalidPointError, ProtocolError, VoucherError
from ..hashing import HammingIndex, HashArray, PerceptualHash

if TYPE_CHECKING:
    from .ideal import IdealFunctionality


class VoucherReplayError(VoucherError):
    """A voucher was ingested before (byte-identical); replays are refused."""


class VoucherPointError(VoucherError, InvalidPointError):
    """A voucher carries an encoding that is not a point of the prime-order subgroup."""


@dataclass(frozen=True, slots=True)
class Reveal:
    """What the server can decrypt for one account right now.

    ``matches`` are the decrypted payloads (associated data), in ingest order,
    and ``match_indices`` the ingest index of each (0-based, counting every
    voucher accepted for the account). ``over_threshold`` is True when the
    protocol's cryptographic threshold is met; variants without a threshold
    reveal every match as soon as it arrives and report ``threshold=None``
    and ``over_threshold=True``.
    """

    account: str
    vouchers: int
    matches: tuple[bytes, ...]
    match_indices: tuple[int, ...]
    over_threshold: bool
    threshold: int | None

    @property
    def match_count(self) -> int:
        return len(self.matches)


@dataclass(frozen=True)
class LeakageProfile:
    """What each party learns, as names with a description each.

    ``server_voucher`` / ``server_account`` list what the server holds per
    voucher and per account at all times; ``server_voucher_over`` /
    ``server_account_over`` what it holds in addition once the account is over
    the threshold (empty for variants without one). ``client`` lists what a
    device learns from the public parameters and from running the protocol.
    ``descriptions`` explains each name, as the spec does.
    """

    server_voucher: tuple[str, ...]
    server_account: tuple[str, ...]
    server_voucher_over: tuple[str, ...] = ()
    server_account_over: tuple[str, ...] = ()
    client: tuple[str, ...] = ()
    descriptions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "descriptions", MappingProxyType(dict(self.descriptions)))
        names = (
            self.server_voucher + self.server_account + self.server_voucher_over
            + self.server_account_over + self.client
        )
        missing = [n for n in names if n not in self.descriptions]
        if missing:
            raise ValueError(f"LeakageProfile: no description for {missing}")

    def voucher_keys(self, over_threshold: bool) -> frozenset[str]:
        return frozenset(self.server_voucher + (self.server_voucher_over if over_threshold else ()))

    def account_keys(self, over_threshold: bool) -> frozenset[str]:
        return frozenset(self.server_account + (self.server_account_over if over_threshold else ()))


# --- parameters ----------------------------------------------------------------

P = TypeVar("P", bound="ProtocolParams")


@dataclass(frozen=True)
class ProtocolParams:
    """Base of every ``Params`` dataclass: TOML loading, a canonical fingerprint.

    Subclasses validate in ``__post_init__`` and raise :class:`ConfigError`
    naming the key and the accepted range.
    """

    PROTOCOL: ClassVar[str] = ""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "parameters", *, key: str = "",
                     error: type[ConfigError] = ConfigError) -> Self:
        """The parameters of a parsed table (``key``: its dotted key), through the shared loader.

        Types come from the field annotations; unknown keys are refused with the accepted ones listed; a
        range check of ``__post_init__`` reaches the user prefixed with ``source`` and ``key``.
        """
        return from_dict(cls, values, key, error=error, source=source)

    @classmethod
    def from_toml(cls, path: str | Path) -> Self:
        """Read a preset: ``protocol = "<name>"``, optional ``summary``, and a ``[params]`` table."""
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such preset file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        unknown = sorted(set(doc) - {"protocol", "summary", "params"})
        if unknown:
            raise ConfigError(f"{path}: unknown top-level key(s) {unknown}; accepted: protocol, summary, [params]")
        if doc.get("protocol") != cls.PROTOCOL:
            raise ConfigError(
                f"{path}: protocol = {doc.get('protocol')!r}, but these are parameters of {cls.PROTOCOL!r}"
            )
        params = doc.get("params", {})
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: [params] must be a table")
        return cls.from_mapping(params, source=str(path), key="params")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def non_defaults(self) -> dict[str, Any]:
        """The parameters that differ from the defaults (how a scenario writes them back to TOML)."""
        defaults = type(self)().to_dict()
        return {k: v for k, v in self.to_dict().items() if v != defaults[k]}

    def fingerprint(self) -> bytes:
        """SHA-256 of the protocol name and the canonical JSON of every parameter."""
        doc = json.dumps({"protocol": self.PROTOCOL, "params": self.to_dict()}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).digest()


def check_int(name: str, value: object, lo: int, hi: int | None = None, what: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ConfigError(f"{name} = {value} is out of range; accepted: {rng}{what}")


def check_float(name: str, value: object, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ConfigError(f"{name} = {value} is out of range; accepted: {left}{lo}, {hi}{right}")


# --- parties -------------------------------------------------------------------


class Scanner(abc.ABC):
    """The device side: turns one image hash (plus its payload) into one voucher."""

    #: Whether the last :meth:`scan` sent a synthetic voucher instead of a real one. Device-side
    #: knowledge, never sent; simulations read it as ground truth. Variants without synthetic vouchers
    #: leave it False.
    last_was_synthetic: bool = False

    @abc.abstractmethod
    def scan(self, phash: PerceptualHash, payload: bytes = b"") -> bytes:
        """The voucher for one image; its length depends only on the parameters."""


class MatchServer(abc.ABC):
    """The server side: bytes in, :class:`Reveal` out, and a record of everything it saw."""

    @abc.abstractmethod
    def ingest(self, account: str, voucher: bytes) -> Mapping[str, object]:
        """Accept one voucher for ``account`` and return the record of what the server learnt from it.

        The record is the one :meth:`observed` lists (keys from the protocol's
        LEAKAGE). A malformed, foreign or replayed voucher raises
        :class:`VoucherError` and leaves the server's state unchanged.
        """

    @abc.abstractmethod
    def reveal(self, account: str) -> Reveal:
        """What the server can decrypt for ``account`` now."""

    @abc.abstractmethod
    def observed(self, account: str) -> tuple[Mapping[str, object], ...]:
        """One read-only record per accepted voucher; keys are names from the protocol's LEAKAGE."""

    @abc.abstractmethod
    def account_view(self, account: str) -> Mapping[str, object]:
        """The per-account aggregate the server holds; keys are names from the protocol's LEAKAGE."""

    @abc.abstractmethod
    def accounts(self) -> tuple[str, ...]:
        """Accounts with at least one accepted voucher, in first-seen order."""


class PerVoucherMatchServer(MatchServer):
    """Shared bookkeeping of servers without a threshold: each voucher's match result is known at once.

    Subclasses append one record per accepted voucher to ``self._records[account]``
    with at least ``index``, ``is_match`` and ``payload``.
    """

    def __init__(self) -> None:
        self._records: dict[str, list[Mapping[str, object]]] = {}
        self._seen: set[bytes] = set()

    def reveal(self, account: str) -> Reveal:
        records = self._records.get(account, [])
        hits = [r for r in records if r["is_match"]]
        return Reveal(
            account=account,
            vouchers=len(records),
            matches=tuple(r["payload"] for r in hits),  # type: ignore[misc]
            match_indices=tuple(r["index"] for r in hits),  # type: ignore[misc]
            over_threshold=True,
            threshold=None,
        )

    def observed(self, account: str) -> tuple[Mapping[str, object], ...]:
        return tuple(self._records.get(account, ()))

    def account_view(self, account: str) -> Mapping[str, object]:
        records = self._records.get(account, [])
        return frozen_record(vouchers=len(records), matches=sum(bool(r["is_match"]) for r in records))

    def accounts(self) -> tuple[str, ...]:
        return tuple(self._records)


@dataclass(frozen=True)
class WireSizes:
    """Bytes on the wire for one parameter set and database size."""

    table_entries: int  # hashes placed in the blinded table (0 when nothing is shipped)
    table_cells: int  # cells shipped to every device (buckets + stash)
    public_bytes: int  # the public parameters every device downloads
    voucher_bytes: int  # one voucher (every voucher of a parameter set has this length)


@dataclass(frozen=True)
class StatisticalModel:
    """What the statistical path needs to model a protocol, or why it cannot.

    ``radius``: Hamming radius of a match; ``threshold``: distinct matches an
    account needs (1: every match is revealed); ``copies_once``: re-sent copies
    of one hash count once toward the threshold; ``synthetic_probability`` and
    ``synthetic_capacity``: synthetic cover (a voucher that opens but never
    counts); ``reveals_each_match``: the server learns every voucher's match
    result (plaintext, psi-exact), a ServerView feature of the leakage sample.
    ``unsupported``: a reason the statistical path must refuse the variant.
    """

    radius: int = 0
    threshold: int = 1
    copies_once: bool = False
    synthetic_probability: float = 0.0
    synthetic_capacity: int = 0
    reveals_each_match: bool = False
    unsupported: str | None = None


class Protocol(abc.ABC):
    """A matching protocol: parameters, leakage profile, setup, client and server."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[ProtocolParams]]
    LEAKAGE: ClassVar[LeakageProfile]

    @property
    def spec(self) -> str:
        """Path of the specification, relative to the repository root."""
        return f"protocols/{self.name}.md"

    @abc.abstractmethod
    def server_setup(
        self, database: HashArray, params: ProtocolParams, rng: Any = None
    ) -> tuple[MatchServer, bytes]:
        """Build the server state and the public bytes for ``database``.

        ``rng`` (a ``numpy.random.Generator``) is accepted for interface
        uniformity; every variant draws its setup randomness (keys, blinding,
        cuckoo seeds) from the OS CSPRNG because all of it is secret or must be
        unpredictable.
        """

    @abc.abstractmethod
    def client(self, public: bytes, params: ProtocolParams) -> Scanner:
        """A fresh device (account) for the public parameters ``public``."""

    def match_radius(self, params: ProtocolParams) -> int:
        """Hamming radius within which this protocol matches (0: exact)."""
        return 0

    def threshold(self, params: ProtocolParams) -> int | None:
        """Distinct matches an account needs before the server learns anything (``None``: no threshold)."""
        return None

    def counts_copies_once(self, params: ProtocolParams) -> bool:
        """Whether re-sent copies of one hash count once toward the threshold (tpsi-ad's ``dedup = "hash"``)."""
        return False

    def synthetic_probability(self, params: ProtocolParams) -> float:
        """Probability that a voucher is synthetic cover (opens, never counts toward the threshold); 0: none."""
        return 0.0

    def synthetic_capacity(self, params: ProtocolParams) -> int:
        """Most synthetic vouchers one device sends (0: the protocol has no synthetic cover)."""
        return 0

    def payload_size(self, params: ProtocolParams) -> int:
        """Bytes of associated data a voucher carries (the simulator pads its payload to this)."""
        return 256

    def statistical_model(self, params: ProtocolParams) -> StatisticalModel:
        """How the statistical path models this protocol.

        The default refuses: a new variant is not silently modelled as
        another. A variant that matches within a radius with a threshold
        overrides this (see the built-ins).
        """
        return StatisticalModel(unsupported=f"{self.name} declares no statistical model "
                                            "(override Protocol.statistical_model); use engine = 'faithful'")

    def wire_sizes(self, params: ProtocolParams, database_hashes: int, bits: int = 64,
                   payload_bytes: int | None = None) -> WireSizes:
        """Exact sizes for ``params`` and a database of ``database_hashes`` distinct hashes (from the schemas).

        ``payload_bytes`` matters only where vouchers are not padded (plaintext).
        """
        raise ProtocolError(f"{self.name}: declares no wire sizes (override Protocol.wire_sizes)")

    def seed_client(self, client: Scanner, rng: Any, params: ProtocolParams) -> None:
        """Simulation only: make the device's secret random decisions reproducible from ``rng`` (a seeded
        ``numpy.random.Generator``). Default: nothing to seed."""
        return

    def ideal_functionality(self, params: ProtocolParams, hash_bits: int) -> IdealFunctionality:
        """The protocol's ``LEAKAGE`` as an ideal world (:mod:`e2escan.protocols.ideal`), for the leakage audit."""
        raise ProtocolError(
            f"{self.name}: declares no ideal functionality; the leakage audit needs one "
            "(see e2escan.protocols.ideal and the tpsi-ad module for an example)"
        )

    def expected_openings(
        self, database: HashArray, params: ProtocolParams
    ) -> Callable[[PerceptualHash, bool], int]:
        """``(h, matched) -> `` how many parts of a real voucher for ``h`` open at the server (audit ground truth).

        ``matched`` is :meth:`plaintext_matcher`'s verdict, which the caller
        already has. Default: 1 for a match, else 0 (no second database scan).
        """
        return lambda h, matched: int(matched)

    def plaintext_matcher(
        self, database: HashArray, params: ProtocolParams
    ) -> Callable[[PerceptualHash], tuple[bool, int]]:
        """The slow oracle: what this protocol counts as a match, computed on hashes in the clear.

        Returns a function ``h -> (match, distance to the nearest database
        hash)``. Tests check every variant's reveals against it; the simulator
        uses it to label images. It ignores synthetic vouchers (which lose a
        matching image with probability ``synthetic_probability``).
        """
        self.check_params(params)
        radius = self.match_radius(params)
        index = HammingIndex(check_database(database, f"{self.name}.plaintext_matcher"), threads=1)

        def match(h: PerceptualHash) -> tuple[bool, int]:
            d = int(index.knn(h, 1)[1][0, 0])
            return d <= radius, d

        return match

    def check_params(self, params: ProtocolParams) -> None:
        """:class:`ProtocolError` unless ``params`` are this protocol's ``Params``."""
        if not isinstance(params, self.Params):
            raise ProtocolError(
                f"{self.name}: expected {self.Params.__qualname__}, got {type(params).__qualname__}"
            )


    def table_server(self, state: Any, params: ProtocolParams) -> tuple[MatchServer, bytes]:
        """A server and its public bytes for a blinded table ``state`` built outside :meth:`server_setup`.

        For variants whose public parameters are a blinded table of the database itself (so an
        auditor or a malicious-server experiment can build a table of its own, e.g.
        :func:`e2escan.attacks.protocol_leakage.minimal_split_view`). ``state`` is a
        :class:`~e2escan.protocols.blinded_table.ServerTableState`. Others refuse.
        """
        raise ProtocolError(f"{self.name}: its public parameters are not a blinded table of the database itself")

    def __repr__(self) -> str:
        return f"<protocol {self.name}: {self.summary}>"


def check_account(account: object) -> str:
    if not isinstance(account, str) or not account:
        raise ProtocolError(f"account must be a non-empty str, got {account!r}")
    return account


def check_database(database: object, where: str) -> HashArray:
    if not isinstance(database, HashArray):
        raise ProtocolError(f"{where}: database must be a HashArray, got {type(database).__name__}")
    if len(database) == 0:
        raise ProtocolError(f"{where}: the database is empty")
    return database


def unique_rows(database: HashArray) -> list[bytes]:
    """Distinct hashes in first-seen order (the protocols' server sets are sets)."""
    seen: dict[bytes, None] = {}
    for row in database.data:
        seen.setdefault(row.tobytes(), None)
    return list(seen)


def check_hash(phash: object, bits: int, where: str) -> bytes:
    if not isinstance(phash, PerceptualHash):
        raise ProtocolError(f"{where}: expected a PerceptualHash, got {type(phash).__name__}")
    if phash.bits != bits:
        raise ProtocolError(f"{where}: the database holds {bits}-bit hashes, got a {phash.bits}-bit hash")
    return phash.data


def frozen_record(**values: object) -> Mapping[str, object]:
    return MappingProxyType(values)


def check_voucher(voucher: object, protocol: str) -> bytes:
    """The voucher as ``bytes``; :class:`VoucherError` for anything else."""
    if not isinstance(voucher, (bytes, bytearray)):
        raise VoucherError(f"{protocol} voucher: expected bytes, got {type(voucher).__name__}")
    return bytes(voucher)


def voucher_digest(voucher: object, protocol: str) -> bytes:
    """SHA-256 of a voucher, the key of a byte-level replay check (type-checks the voucher first)."""
    return hashlib.sha256(check_voucher(voucher, protocol)).digest()
