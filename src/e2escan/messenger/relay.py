"""The relay server: registers devices, stores prekey bundles, queues messages and blobs.

The relay holds no key that decrypts anything. Everything it observes is
appended to its :class:`ServerView`, in the same SQLite transaction as the
state change, so the view and the relay's state never disagree. A request is
acknowledged (the method returns) only after its transaction committed; with a
file path, SQLite's WAL journal with ``synchronous=FULL`` makes an
acknowledged request survive a killed process.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from ..crypto import random_bytes
from ..errors import DecodeError, RelayError
from .wire import BLOB_ID, OneTimePrekey, PrekeyBundle

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, identity BLOB NOT NULL, spk_id INTEGER NOT NULL,
    spk BLOB NOT NULL, spk_signature BLOB NOT NULL, registered_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS prekeys (
    device TEXT NOT NULL, id INTEGER NOT NULL, public BLOB NOT NULL, PRIMARY KEY (device, id));
CREATE TABLE IF NOT EXISTS blobs (
    id BLOB PRIMARY KEY, data BLOB NOT NULL, uploaded_by TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL, recipient TEXT NOT NULL,
    envelope BLOB NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS queue_recipient ON queue (recipient, id);
CREATE TABLE IF NOT EXISTS view (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, at REAL NOT NULL,
    sender TEXT, recipient TEXT, size INTEGER NOT NULL, data BLOB, ref INTEGER);
"""

EVENT_KINDS = (
    "register",  # a device published its bundle (data: the bundle)
    "prekeys",  # a device uploaded more one-time prekeys (data: the keys)
    "spk",  # a device replaced its signed prekey (data: spk_id u32 || spk || signature)
    "bundle",  # someone fetched a device's bundle (sender: who asked; data: the bundle handed out)
    "blob_upload",  # data: the encrypted blob (stored once, in the blob store; ref: its row)
    "blob_download",  # ref: none; data: blob id
    "submit",  # a message was queued (data: the envelope, ref: message id)
    "voucher",  # a scanning voucher arrived with a message (data: the voucher, ref: message id)
    "deliver",  # a queued message was handed to its recipient (ref: message id)
    "ack",  # the recipient acknowledged (ref: message id); the relay deletes the message
    "match",  # the match server's record of one voucher (data: an encoded MatchEvent; ref: message id at ingest)
    "account",  # the match server's aggregate of an account changed (data: an encoded AccountEvent)
    "reveal",  # the match server decrypted new payloads of an account (sender: the account; data: a RevealEvent)
)
SERVER_SIDE_KINDS = ("match", "account", "reveal")


class MatchParty(Protocol):
    """What the relay needs of a match server: each call returns its result and the encoded events it caused.

    :class:`e2escan.protocols.events.MatchRecorder` is the implementation; the
    relay does not read the events, it stores them.
    """

    def ingest(self, account: str, voucher: bytes) -> tuple[object, list[tuple[str, bytes]]]: ...

    def reveal(self, account: str) -> tuple[Any, list[tuple[str, bytes]]]: ...


@dataclass(frozen=True, slots=True)
class ViewEvent:
    """One thing the relay observed."""

    seq: int
    kind: str
    at: float
    sender: str | None
    recipient: str | None
    size: int
    data: bytes | None
    ref: int | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A queued message as handed to its recipient."""

    message_id: int
    sender: str
    envelope: bytes
    at: float


class ServerView:
    """The append-only log of everything the relay saw: the only input of leakage metrics."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def __iter__(self) -> Iterator[ViewEvent]:
        return self.events()

    def __len__(self) -> int:
        return self._relay._query_int("SELECT COUNT(*) FROM view")

    def events(self, kind: str | None = None) -> Iterator[ViewEvent]:
        if kind is not None and kind not in EVENT_KINDS:
            raise RelayError(f"unknown ServerView event kind {kind!r}; known: {', '.join(EVENT_KINDS)}")
        # An uploaded blob's bytes live once, in the blob store; its view event points at them.
        sql = (
            "SELECT v.seq, v.kind, v.at, v.sender, v.recipient, v.size, COALESCE(v.data, b.data), v.ref FROM view v "
            "LEFT JOIN blobs b ON v.kind = 'blob_upload' AND b.rowid = v.ref"
        )
        args: tuple[str, ...] = ()
        if kind is not None:
            sql += " WHERE v.kind = ?"
            args = (kind,)
        for row in self._relay._query_all(sql + " ORDER BY v.seq", args):
            yield ViewEvent(*row)

    def total_bytes(self) -> int:
        return self._relay._query_int("SELECT COALESCE(SUM(size), 0) FROM view")


class Relay:
    """A store-and-forward server that sees only ciphertext and metadata.

    ``path``: SQLite file (``None``: in memory). ``clock``: returns the
    timestamp recorded with each event (the simulator passes simulated time).
    ``on_voucher``: callbacks ``(sender, voucher, message_id)`` fed every
    voucher that arrives with a message, after it is stored. A match server is
    plugged in with :meth:`attach_match_server`: it then ingests every voucher
    inside the transaction that stores the message, and what it learnt enters
    the ServerView in that same transaction.
    """

    def __init__(self, path: str | Path | None = None, clock: Callable[[], float] | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.clock = clock or time.time
        self._lock = threading.RLock()
        self._db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None, check_same_thread=False)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.view = ServerView(self)
        self.on_voucher: list[Callable[[str, bytes, int], None]] = []
        self._match: MatchParty | None = None

    def attach_match_server(self, party: MatchParty) -> None:
        """Route every voucher through ``party`` and log its events; one match server per relay."""
        if self._match is not None:
            raise RelayError("a match server is already attached to this relay")
        self._match = party

    def close(self) -> None:
        self._db.close()

    # -- plumbing --------------------------------------------------------------

    # Rows are tuples of SQLite values whose column types the query fixes (sqlite3 types them as Any).

    def _query_one(self, sql: str, args: tuple[object, ...] = ()) -> tuple[Any, ...]:
        """The first row of the query's result (:class:`RelayError` if it has none)."""
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(sql, args).fetchone()
        if row is None:
            raise RelayError(f"the relay's query returned no row: {sql}")
        return row

    def _query_all(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _query_int(self, sql: str, args: tuple[object, ...] = ()) -> int:
        """The integer in the first column of a COUNT or SUM query's row."""
        return int(self._query_one(sql, args)[0])

    def _log(self, kind: str, sender: str | None, recipient: str | None, data: bytes | None, ref: int | None = None, size: int | None = None) -> None:
        if size is None:
            if data is None:
                raise RelayError(f"{kind} event: give its size when it carries no data")
            size = len(data)
        self._db.execute(
            "INSERT INTO view (kind, at, sender, recipient, size, data, ref) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, float(self.clock()), sender, recipient, size, data, ref),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _require_device(self, device_id: str) -> None:
        if self._db.execute("SELECT 1 FROM devices WHERE id = ?", (device_id,)).fetchone() is None:
            raise RelayError(f"unknown device {device_id!r}: it must register first")

    # -- devices and prekeys ---------------------------------------------------

    def register(self, device_id: str, bundle: bytes) -> None:
        """Publish a device's prekey bundle (identity, signed prekey, one-time prekeys)."""
        if not isinstance(device_id, str) or not device_id:
            raise RelayError(f"device id must be a non-empty string, got {device_id!r}")
        parsed = PrekeyBundle.decode(bundle)
        with self._transaction():
            if self._db.execute("SELECT 1 FROM devices WHERE id = ?", (device_id,)).fetchone():
                raise RelayError(f"device id {device_id!r} is already registered")
            self._db.execute(
                "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?)",
                (device_id, parsed.identity, parsed.spk_id, parsed.spk, parsed.spk_signature, float(self.clock())),
            )
            self._store_prekeys(device_id, parsed.one_time_prekeys)
            self._log("register", device_id, None, bundle)

    def update_signed_prekey(self, device_id: str, spk_id: int, spk: bytes, signature: bytes) -> None:
        """Replace a device's signed prekey in the bundle it hands out (its identity key stays)."""
        if len(spk) != 32 or len(signature) != 64:
            raise DecodeError(f"signed prekey: expected a 32-byte key and a 64-byte signature, got {len(spk)} and {len(signature)}")
        with self._transaction():
            self._require_device(device_id)
            self._db.execute(
                "UPDATE devices SET spk_id = ?, spk = ?, spk_signature = ? WHERE id = ?",
                (int(spk_id), bytes(spk), bytes(signature), device_id),
            )
            self._log("spk", device_id, None, int(spk_id).to_bytes(4, "big") + bytes(spk) + bytes(signature))

    def upload_prekeys(self, device_id: str, prekeys: tuple[OneTimePrekey, ...]) -> None:
        with self._transaction():
            self._require_device(device_id)
            self._store_prekeys(device_id, prekeys)
            self._log("prekeys", device_id, None, b"".join(p.id.to_bytes(4, "big") + p.public for p in prekeys))

    def _store_prekeys(self, device_id: str, prekeys: tuple[OneTimePrekey, ...]) -> None:
        for p in prekeys:
            if len(p.public) != 32:
                raise DecodeError(f"one-time prekey {p.id}: expected 32 bytes, got {len(p.public)}")
        self._db.executemany(
            "INSERT OR REPLACE INTO prekeys VALUES (?, ?, ?)", [(device_id, p.id, p.public) for p in prekeys]
        )

    def prekey_count(self, device_id: str) -> int:
        return self._query_int("SELECT COUNT(*) FROM prekeys WHERE device = ?", (device_id,))

    def fetch_bundle(self, requester: str, device_id: str) -> bytes:
        """Hand out a bundle with at most one one-time prekey, which is deleted (X3DH 3.2)."""
        with self._transaction():
            row = self._db.execute(
                "SELECT identity, spk_id, spk, spk_signature FROM devices WHERE id = ?", (device_id,)
            ).fetchone()
            if row is None:
                raise RelayError(f"no prekey bundle for unknown device {device_id!r}")
            opk = self._db.execute(
                "SELECT id, public FROM prekeys WHERE device = ? ORDER BY id LIMIT 1", (device_id,)
            ).fetchone()
            opks: tuple[OneTimePrekey, ...] = ()
            if opk is not None:
                self._db.execute("DELETE FROM prekeys WHERE device = ? AND id = ?", (device_id, opk[0]))
                opks = (OneTimePrekey(opk[0], opk[1]),)
            bundle = PrekeyBundle(row[0], row[1], row[2], row[3], opks).encode()
            self._log("bundle", requester, device_id, bundle)
        return bundle

    # -- blobs -------------------------------------------------------------------

    def put_blob(self, uploader: str, blob: bytes) -> bytes:
        """Store an encrypted attachment; returns its random 16-byte id."""
        blob_id = random_bytes(BLOB_ID)
        with self._transaction():
            self._require_device(uploader)
            cur = self._db.execute(
                "INSERT INTO blobs VALUES (?, ?, ?, ?)", (blob_id, bytes(blob), uploader, float(self.clock()))
            )
            self._log("blob_upload", uploader, None, None, ref=_inserted_row(cur), size=len(blob))
        return blob_id

    def get_blob(self, requester: str, blob_id: bytes) -> bytes:
        with self._transaction():
            row = self._db.execute("SELECT data FROM blobs WHERE id = ?", (bytes(blob_id),)).fetchone()
            if row is None:
                raise RelayError(f"no blob with id {bytes(blob_id).hex()}")
            self._log("blob_download", requester, None, bytes(blob_id), size=len(row[0]))
        return bytes(row[0])

    # -- messages ----------------------------------------------------------------

    def submit(self, sender: str, recipient: str, envelope: bytes, voucher: bytes | None = None) -> int:
        """Queue an envelope; the returned message id is the acknowledgement (durable once returned)."""
        with self._transaction():
            self._require_device(sender)
            self._require_device(recipient)
            cur = self._db.execute(
                "INSERT INTO queue (sender, recipient, envelope, at) VALUES (?, ?, ?, ?)",
                (sender, recipient, bytes(envelope), float(self.clock())),
            )
            message_id = _inserted_row(cur)
            self._log("submit", sender, recipient, bytes(envelope), message_id)
            if voucher is not None:
                self._log("voucher", sender, recipient, bytes(voucher), message_id)
                if self._match is not None:
                    # A voucher the match server refuses raises here: the message is not queued either.
                    _, events = self._match.ingest(sender, bytes(voucher))
                    for kind, data in events:
                        self._log(kind, sender, None, data, message_id)
        if voucher is not None:
            for callback in self.on_voucher:
                callback(sender, bytes(voucher), message_id)
        return message_id

    def fetch(self, recipient: str, limit: int | None = None) -> list[Delivery]:
        """Queued messages for ``recipient``, oldest first; they stay queued until acknowledged."""
        with self._transaction():
            self._require_device(recipient)
            sql = "SELECT id, sender, envelope, at FROM queue WHERE recipient = ? ORDER BY id"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            rows = self._db.execute(sql, (recipient,)).fetchall()
            for row in rows:
                self._log("deliver", row[1], recipient, None, row[0], size=len(row[2]))
        return [Delivery(*row) for row in rows]

    def ack(self, recipient: str, message_id: int) -> None:
        with self._transaction():
            cur = self._db.execute("DELETE FROM queue WHERE id = ? AND recipient = ?", (message_id, recipient))
            if cur.rowcount == 0:
                raise RelayError(f"no queued message {message_id} for {recipient!r}")
            self._log("ack", None, recipient, None, message_id, size=0)

    def reveal(self, account: str) -> Any:
        """Ask the attached match server what it can decrypt for ``account``; its events enter the view."""
        if self._match is None:
            raise RelayError("reveal(): no match server is attached to this relay")
        with self._transaction():
            result, events = self._match.reveal(account)
            for kind, data in events:
                self._log(kind, account, None, data)
        return result

    def queued(self, recipient: str | None = None) -> int:
        if recipient is None:
            return self._query_int("SELECT COUNT(*) FROM queue")
        return self._query_int("SELECT COUNT(*) FROM queue WHERE recipient = ?", (recipient,))

    def devices(self) -> list[str]:
        return [r[0] for r in self._query_all("SELECT id FROM devices ORDER BY registered_at, id")]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the relay's lock; ROLLBACK on any exception."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def __enter__(self) -> None:
        self.relay._lock.acquire()
        self.relay._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.relay._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.relay._lock.release()


def _inserted_row(cursor: sqlite3.Cursor) -> int:
    """The rowid an INSERT on ``cursor`` just gave its row."""
    if cursor.lastrowid is None:
        raise RelayError("the relay's database reported no rowid for a row it inserted")
    return cursor.lastrowid
