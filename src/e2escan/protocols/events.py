"""What a match server holds, as frozen typed events, encoded and decoded in this module only.

A match server's state is its records (one per accepted voucher, keys from
the protocol's ``LEAKAGE`` voucher lists) and one aggregate per account (keys
from the ``LEAKAGE`` account lists). Every change of that state becomes an
event:

* :class:`MatchEvent`: the whole record of one voucher, as the server holds
  it right after the change (at ingest, and again when crossing the threshold
  adds ``is_match`` and ``payload``). Its ``fields`` are exactly the
  protocol's ``LEAKAGE`` names, the opened inner layers included.
* :class:`AccountEvent`: the account aggregate, whenever it changed.
* :class:`RevealEvent`: payloads the server decrypted for an account that it
  had not decrypted before.

:class:`MatchRecorder` sits between the relay and a :class:`MatchServer`: it
calls the server and returns the events of each call, encoded, so the relay
writes them into its ServerView in the transaction of the call.
:func:`replay` rebuilds, from a ServerView alone, everything the server holds;
a test checks, for every registered protocol, that it equals
``server.observed()`` and ``server.account_view()`` field by field.

Wire format: ``b"E2EV" || version (1 byte) || kind (1 byte) || value``, where
a value is a tagged tree (:func:`encode_value`): ``None``, ``bool``, ``int``,
``bytes``, ``str`` and tuples of values. Mappings are written as tuples of
``(name, value)`` pairs sorted by name, so equal events encode to equal bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeGuard, TypeVar

from ..errors import DecodeError, ProtocolError
from .base import LeakageProfile, MatchServer, Reveal

Value = None | bool | int | bytes | str | tuple["Value", ...]
_T = TypeVar("_T")

MAGIC = b"E2EV"
VERSION = 1
_NONE, _FALSE, _TRUE, _INT, _BYTES, _STR, _TUPLE = range(7)
_MAX_DEPTH = 8
_KINDS = {1: "match", 2: "account", 3: "reveal"}


class EventError(DecodeError):
    """A ServerView event that does not decode, or a record that breaks its protocol's LEAKAGE."""


# --- values ----------------------------------------------------------------------------


def encode_value(value: Any) -> bytes:
    """The canonical bytes of a value tree; :class:`ProtocolError` for a type outside :data:`Value`."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def _encode(value: Any, out: bytearray, depth: int) -> None:
    kind = type(value)
    if kind is bytes:
        out.append(_BYTES)
        out += len(value).to_bytes(4, "big")
        out += value
    elif kind is tuple:
        if depth >= _MAX_DEPTH:
            raise ProtocolError(f"event value nested deeper than {_MAX_DEPTH} levels")
        out.append(_TUPLE)
        out += len(value).to_bytes(4, "big")
        for item in value:
            _encode(item, out, depth + 1)
    elif value is None:
        out.append(_NONE)
    elif kind is bool:
        out.append(_TRUE if value else _FALSE)
    elif kind is int:
        n = (value.bit_length() + 8) // 8  # room for the sign bit
        if n > 255:
            raise ProtocolError(f"event value: integer of {value.bit_length()} bits is too large")
        out.append(_INT)
        out.append(n)
        out += value.to_bytes(n, "big", signed=True)
    elif kind is str:
        data = value.encode("utf-8")
        out.append(_STR)
        out += len(data).to_bytes(4, "big")
        out += data
    elif isinstance(value, (bytearray, memoryview, list)):
        _encode(_as_value(value), out, depth)
    else:
        raise ProtocolError(f"event value: cannot encode a {type(value).__name__} (accepted: None, bool, int, bytes, str, tuple)")


def decode_value(data: bytes) -> Value:
    """Inverse of :func:`encode_value`; :class:`EventError` names the byte offset of any defect."""
    data = bytes(data)
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise EventError(f"event value: {len(data) - end} trailing bytes at byte offset {end}")
    return value


def _truncated(data: bytes, pos: int, n: int, what: str) -> EventError:
    return EventError(f"event value: {what} at byte offset {pos} is truncated (needs {n} bytes, {len(data) - pos} left)")


def _decode(data: bytes, pos: int, depth: int) -> tuple[Value, int]:
    if pos >= len(data):
        raise _truncated(data, pos, 1, "tag")
    tag = data[pos]
    pos += 1
    if tag == _BYTES or tag == _STR or tag == _TUPLE:
        if pos + 4 > len(data):
            raise _truncated(data, pos, 4, "length")
        n = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        if tag == _TUPLE:
            if depth >= _MAX_DEPTH:
                raise EventError(f"event value: nested deeper than {_MAX_DEPTH} levels at byte offset {pos - 5}")
            if n > len(data) - pos:  # every item takes at least one byte
                raise EventError(f"event value: tuple of {n} items at byte offset {pos - 4} exceeds the data")
            items = []
            for _ in range(n):
                item, pos = _decode(data, pos, depth + 1)
                items.append(item)
            return tuple(items), pos
        if pos + n > len(data):
            raise _truncated(data, pos, n, "bytes" if tag == _BYTES else "string")
        raw = data[pos : pos + n]
        if tag == _BYTES:
            return raw, pos + n
        try:
            return raw.decode("utf-8"), pos + n
        except UnicodeDecodeError as exc:
            raise EventError(f"event value: string at byte offset {pos} is not UTF-8") from exc
    if tag == _NONE:
        return None, pos
    if tag == _FALSE or tag == _TRUE:
        return tag == _TRUE, pos
    if tag == _INT:
        if pos >= len(data):
            raise _truncated(data, pos, 1, "integer length")
        n = data[pos]
        if n == 0:
            raise EventError(f"event value: zero-length integer at byte offset {pos}")
        if pos + 1 + n > len(data):
            raise _truncated(data, pos + 1, n, "integer")
        return int.from_bytes(data[pos + 1 : pos + 1 + n], "big", signed=True), pos + 1 + n
    raise EventError(f"event value: unknown tag {tag} at byte offset {pos - 1}")


def _as_value(value: object) -> Value:
    """Records may hold lists, bytearrays or other sequences of values; events hold tuples and bytes.

    :class:`ProtocolError` (the message :func:`encode_value` gives) for a leaf that no event can hold.
    """
    if isinstance(value, (list, tuple)):
        return tuple(_as_value(v) for v in value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if value is None or isinstance(value, (bool, int, bytes, str)):
        return value
    raise ProtocolError(f"event value: cannot encode a {type(value).__name__} (accepted: None, bool, int, bytes, str, tuple)")


def as_fields(record: Mapping[str, object]) -> dict[str, Value]:
    """A server's record (lists, bytearrays allowed) as event fields (tuples and bytes)."""
    return {k: _as_value(v) for k, v in record.items()}


def _pairs(fields: Mapping[str, Value]) -> tuple[tuple[str, Value], ...]:
    return tuple(sorted((k, _as_value(v)) for k, v in fields.items()))


# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchEvent:
    """The record the match server holds for one voucher; ``fields`` keys are the protocol's LEAKAGE names."""

    protocol: str
    account: str
    index: int
    fields: Mapping[str, Value]

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(as_fields(self.fields)))


@dataclass(frozen=True)
class AccountEvent:
    """The per-account aggregate the match server holds; ``fields`` keys are the protocol's LEAKAGE names."""

    protocol: str
    account: str
    fields: Mapping[str, Value]

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(as_fields(self.fields)))


@dataclass(frozen=True)
class RevealEvent:
    """Payloads decrypted for ``account`` that the server had not decrypted before, with their voucher indices."""

    protocol: str
    account: str
    indices: tuple[int, ...]
    payloads: tuple[bytes, ...]


ServerEvent = MatchEvent | AccountEvent | RevealEvent


def encode_event(event: ServerEvent) -> tuple[str, bytes]:
    """``(kind, bytes)``: the ServerView kind and the event's canonical encoding."""
    kind: int
    body: Value
    if isinstance(event, MatchEvent):
        kind, body = 1, (event.protocol, event.account, event.index, _pairs(event.fields))
    elif isinstance(event, AccountEvent):
        kind, body = 2, (event.protocol, event.account, _pairs(event.fields))
    elif isinstance(event, RevealEvent):
        kind, body = 3, (event.protocol, event.account, tuple(event.indices), tuple(event.payloads))
    else:
        raise ProtocolError(f"encode_event: not a server event: {type(event).__name__}")
    return _KINDS[kind], MAGIC + bytes((VERSION, kind)) + encode_value(body)


def decode_event(data: bytes) -> ServerEvent:
    """Inverse of :func:`encode_event`."""
    data = bytes(data)
    if len(data) < 6 or data[:4] != MAGIC:
        raise EventError(f"server event: expected the magic {MAGIC!r} and 2 header bytes, got {data[:6]!r}")
    if data[4] != VERSION:
        raise EventError(f"server event: version {data[4]} (this build reads version {VERSION})")
    kind = data[5]
    if kind not in _KINDS:
        raise EventError(f"server event: unknown kind {kind} at byte offset 5")
    body = decode_value(data[6:])
    if not isinstance(body, tuple):
        raise EventError(f"server event of kind {_KINDS[kind]!r}: malformed body (a {type(body).__name__}, not a tuple)")
    try:
        if kind == 1:
            protocol, account, index, pairs = body
            return MatchEvent(
                _checked("protocol", protocol, str), _checked("account", account, str), _checked("index", index, int),
                _fields(pairs),
            )
        if kind == 2:
            protocol, account, pairs = body
            return AccountEvent(_checked("protocol", protocol, str), _checked("account", account, str), _fields(pairs))
        protocol, account, indices, payloads = body
        protocol, account = _checked("protocol", protocol, str), _checked("account", account, str)
        _checked("indices", indices, tuple)
        _checked("payloads", payloads, tuple)
        if not (_all_of(indices, int) and _all_of(payloads, bytes)):
            raise EventError("server event: reveal indices must be integers and payloads bytes")
        return RevealEvent(protocol, account, indices, payloads)
    except (TypeError, ValueError) as exc:
        raise EventError(f"server event of kind {_KINDS[kind]!r}: malformed body ({exc})") from exc


def _checked(name: str, value: Value, kind: type[_T]) -> _T:
    """``value`` if it is a ``kind`` (never a bool), else :class:`EventError` naming the field."""
    if isinstance(value, bool) or not isinstance(value, kind):
        raise EventError(f"server event: {name} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _all_of(items: Value, kind: type[_T]) -> TypeGuard[tuple[_T, ...]]:
    """Whether ``items`` is a tuple whose every item is a ``kind``."""
    return isinstance(items, tuple) and all(isinstance(i, kind) for i in items)


def _fields(pairs: Value) -> dict[str, Value]:
    if not isinstance(pairs, tuple):
        raise EventError("server event: fields must be (name, value) pairs")
    fields: dict[str, Value] = {}
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise EventError("server event: fields must be (name, value) pairs")
        fields[pair[0]] = pair[1]
    return fields


def check_fields(event: MatchEvent | AccountEvent, leakage: LeakageProfile) -> None:
    """:class:`EventError` unless the event's field names are exactly a LEAKAGE list (below or over the threshold)."""
    keys = frozenset(event.fields)
    if isinstance(event, MatchEvent):
        allowed, what = (leakage.voucher_keys(False), leakage.voucher_keys(True)), "voucher"
    else:
        allowed, what = (leakage.account_keys(False), leakage.account_keys(True)), "account"
    if keys not in allowed:
        want = allowed[1] if keys - allowed[0] else allowed[0]
        raise EventError(
            f"{event.protocol}: a {what} record holds {sorted(keys)}; its records lack {sorted(want - keys)} that "
            f"LEAKAGE names, and hold {sorted(keys - allowed[1])} that LEAKAGE does not declare "
            f"(declared: {sorted(allowed[0])} below the threshold, {sorted(allowed[1])} over it)"
        )


# --- recording -------------------------------------------------------------------------


@dataclass
class MatchRecorder:
    """Runs a match server and turns each state change into encoded events for the relay's ServerView.

    ``ingest`` and ``reveal`` return ``(result, [(kind, bytes), ...])``; the
    relay writes the events in the transaction of the request. Every record
    is checked against ``leakage``: a server that holds a field its protocol
    does not declare is refused with :class:`EventError` naming the field.
    ``ingest_seconds`` collects the wall time of each ``server.ingest`` call.
    """

    server: MatchServer
    protocol: str
    leakage: LeakageProfile
    ingest_seconds: list[float] = field(default_factory=list)
    _records: dict[str, list[Mapping[str, Value]]] = field(default_factory=dict)
    _views: dict[str, Mapping[str, Value]] = field(default_factory=dict)
    _revealed: dict[str, set[int]] = field(default_factory=dict)

    def ingest(self, account: str, voucher: bytes) -> tuple[Mapping[str, object], list[tuple[str, bytes]]]:
        t0 = time.perf_counter()
        record = self.server.ingest(account, voucher)
        self.ingest_seconds.append(time.perf_counter() - t0)
        logged = self._records.setdefault(account, [])
        event = MatchEvent(self.protocol, account, len(logged), as_fields(record))
        check_fields(event, self.leakage)
        logged.append(event.fields)
        return record, [encode_event(event), *self._account_change(account)]

    def reveal(self, account: str) -> tuple[Reveal, list[tuple[str, bytes]]]:
        reveal = self.server.reveal(account)
        encoded = [encode_event(e) for e in self._record_changes(account)]
        encoded += self._account_change(account)
        seen = self._revealed.setdefault(account, set())
        fresh = [(i, p) for i, p in zip(reveal.match_indices, reveal.matches) if i not in seen]
        if fresh:
            seen.update(i for i, _ in fresh)
            encoded.append(encode_event(RevealEvent(self.protocol, account, tuple(i for i, _ in fresh), tuple(p for _, p in fresh))))
        return reveal, encoded

    def _record_changes(self, account: str) -> Iterator[MatchEvent]:
        logged = self._records.setdefault(account, [])
        for i, record in enumerate(self.server.observed(account)):
            event = MatchEvent(self.protocol, account, i, as_fields(record))
            if i < len(logged) and logged[i] == event.fields:
                continue
            check_fields(event, self.leakage)
            if i < len(logged):
                logged[i] = event.fields
            else:
                logged.append(event.fields)
            yield event

    def _account_change(self, account: str) -> list[tuple[str, bytes]]:
        event = AccountEvent(self.protocol, account, as_fields(self.server.account_view(account)))
        if self._views.get(account) == event.fields:
            return []
        check_fields(event, self.leakage)
        self._views[account] = event.fields
        return [encode_event(event)]


# --- reading a ServerView back ----------------------------------------------------------


@dataclass
class ServerHoldings:
    """Everything a match server holds, rebuilt from its events: records and aggregate per account."""

    records: dict[str, list[Mapping[str, Value]]] = field(default_factory=dict)
    accounts: dict[str, Mapping[str, Value]] = field(default_factory=dict)
    reveals: dict[str, list[RevealEvent]] = field(default_factory=dict)
    #: message id (the relay's ``ref``) of each account's records, by index, where the view has one.
    refs: dict[str, dict[int, int]] = field(default_factory=dict)

    def apply(self, event: ServerEvent, ref: int | None = None) -> None:
        if isinstance(event, MatchEvent):
            records = self.records.setdefault(event.account, [])
            if event.index == len(records):
                records.append(event.fields)
                if ref is not None:
                    self.refs.setdefault(event.account, {})[event.index] = ref
            elif event.index < len(records):
                records[event.index] = event.fields
            else:
                raise EventError(
                    f"{event.protocol}: record {event.index} of account {event.account!r} arrives before record {len(records)}"
                )
        elif isinstance(event, AccountEvent):
            self.accounts[event.account] = event.fields
        else:
            self.reveals.setdefault(event.account, []).append(event)


def server_events(view: Any) -> Iterator[tuple[Any, ServerEvent]]:
    """``(view event, decoded server event)`` for every match-server event of a ServerView, in order."""
    for ev in view:
        if ev.kind in ("match", "account", "reveal"):
            yield ev, decode_event(ev.data)


def replay(view: Any) -> ServerHoldings:
    """What the match server holds, from the ServerView alone (every ``match``/``account``/``reveal`` event)."""
    held = ServerHoldings()
    for ev, event in server_events(view):
        held.apply(event, ev.ref if isinstance(event, MatchEvent) else None)
    return held


def replay_events(events: Iterable[ServerEvent]) -> ServerHoldings:
    held = ServerHoldings()
    for event in events:
        held.apply(event)
    return held
