"""Byte formats of everything the messenger puts on the wire.

Every decoder checks lengths and versions and names the field and byte offset
that was wrong; nothing here trusts the other party. Integers are big-endian.

Formats (version 1)::

    PrekeyBundle   "E2B" 0x01 | identity(32) | spk_id u32 | spk(32) | spk_sig(64)
                   | n_opk u16 | n_opk x (opk_id u32 | opk(32))
    Header         dh(32) | pn u32 | n u32                                  (40 bytes)
    RatchetMessage flags u8 | header_len u16 | header | ciphertext
                   (flags bit 0: header encrypted; then header = nonce(24) | AEAD(header) = 80 bytes)
    Envelope       0x01 | type u8 | body       type 1: RatchetMessage
                                               type 2: PrekeyMessage
    PrekeyMessage  identity(32) | ek(32) | spk_id u32 | opk_id u32 (0xFFFFFFFF: none) | RatchetMessage
    Content        0x01 | flags u8 | body_len u32 | body | [AttachmentPointer]   (flags bit 0: attachment)
    AttachmentPointer blob_id(16) | key(32) | digest(32) | size u64
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import DecodeError

WIRE_VERSION = 1
NO_PREKEY = 0xFFFFFFFF
KEY = 32
SIG = 64
BLOB_ID = 16
HEADER_BYTES = 40
ENCRYPTED_HEADER_BYTES = 24 + HEADER_BYTES + 16

ENVELOPE_MESSAGE = 1
ENVELOPE_PREKEY = 2


class Reader:
    """A cursor over received bytes that raises :class:`DecodeError` naming field and offset."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"{what}: expected bytes, got {type(data).__name__}")
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def take(self, n: int, field: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise DecodeError(
                f"{self.what}: truncated in field '{field}' at byte offset {self.pos} "
                f"(needs {n} bytes, {len(self.data) - self.pos} left)"
            )
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "big")

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "big")

    def u64(self, field: str) -> int:
        return int.from_bytes(self.take(8, field), "big")

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def expect(self, value: bytes, field: str) -> None:
        got = self.take(len(value), field)
        if got != value:
            raise DecodeError(f"{self.what}: field '{field}' at byte offset {self.pos - len(value)} is {got!r}, expected {value!r}")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError(f"{self.what}: {len(self.data) - self.pos} unexpected trailing bytes at offset {self.pos}")


# --- prekey bundles ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OneTimePrekey:
    id: int
    public: bytes


@dataclass(frozen=True, slots=True)
class PrekeyBundle:
    """What a device publishes so that others can start a session without it being online."""

    identity: bytes  # Ed25519 public identity key
    spk_id: int
    spk: bytes  # X25519 signed prekey
    spk_signature: bytes
    one_time_prekeys: tuple[OneTimePrekey, ...] = ()

    def encode(self) -> bytes:
        parts = [
            b"E2B",
            bytes([WIRE_VERSION]),
            self.identity,
            struct.pack(">I", self.spk_id),
            self.spk,
            self.spk_signature,
            struct.pack(">H", len(self.one_time_prekeys)),
        ]
        for opk in self.one_time_prekeys:
            parts.append(struct.pack(">I", opk.id) + opk.public)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> PrekeyBundle:
        r = Reader(data, "prekey bundle")
        r.expect(b"E2B", "magic")
        version = r.u8("version")
        if version != WIRE_VERSION:
            raise DecodeError(f"prekey bundle: version {version} unsupported (expected {WIRE_VERSION})")
        identity = r.take(KEY, "identity")
        spk_id = r.u32("spk_id")
        spk = r.take(KEY, "spk")
        sig = r.take(SIG, "spk_signature")
        n = r.u16("n_opk")
        opks = []
        for i in range(n):
            opk_id = r.u32(f"opk[{i}].id")
            if opk_id == NO_PREKEY:
                raise DecodeError(f"prekey bundle: opk[{i}].id uses the reserved value {NO_PREKEY:#x}")
            opks.append(OneTimePrekey(opk_id, r.take(KEY, f"opk[{i}].public")))
        r.end()
        return cls(identity, spk_id, spk, sig, tuple(opks))


def spk_signed_bytes(spk_id: int, spk: bytes) -> bytes:
    """What the identity key signs for a signed prekey (domain-separated)."""
    return b"e2escan signed prekey v1" + struct.pack(">I", spk_id) + spk


# --- ratchet messages -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    dh: bytes
    pn: int
    n: int

    def encode(self) -> bytes:
        return self.dh + struct.pack(">II", self.pn, self.n)

    @classmethod
    def decode(cls, data: bytes) -> Header:
        r = Reader(data, "ratchet header")
        dh = r.take(KEY, "dh")
        pn = r.u32("pn")
        n = r.u32("n")
        r.end()
        return cls(dh, pn, n)


@dataclass(frozen=True, slots=True)
class RatchetMessage:
    header: bytes  # plain (40 bytes) or encrypted (80 bytes)
    ciphertext: bytes
    header_encrypted: bool

    def encode(self) -> bytes:
        flags = 1 if self.header_encrypted else 0
        return bytes([flags]) + struct.pack(">H", len(self.header)) + self.header + self.ciphertext

    @classmethod
    def decode(cls, data: bytes, what: str = "ratchet message") -> RatchetMessage:
        r = Reader(data, what)
        flags = r.u8("flags")
        if flags & ~1:
            raise DecodeError(f"{what}: unknown flag bits {flags:#04x} at byte offset 0")
        encrypted = bool(flags & 1)
        expected = ENCRYPTED_HEADER_BYTES if encrypted else HEADER_BYTES
        length = r.u16("header_len")
        if length != expected:
            raise DecodeError(f"{what}: header_len {length} at byte offset 1, expected {expected}")
        header = r.take(length, "header")
        ciphertext = r.rest()
        if len(ciphertext) < 16:
            raise DecodeError(f"{what}: ciphertext of {len(ciphertext)} bytes is shorter than its 16-byte tag")
        return cls(header, ciphertext, encrypted)


@dataclass(frozen=True, slots=True)
class PrekeyMessage:
    """The first messages of a session carry the X3DH initiation data."""

    identity: bytes
    ephemeral: bytes
    spk_id: int
    opk_id: int | None
    message: RatchetMessage

    def encode_body(self) -> bytes:
        opk = NO_PREKEY if self.opk_id is None else self.opk_id
        return self.identity + self.ephemeral + struct.pack(">II", self.spk_id, opk) + self.message.encode()

    @classmethod
    def decode_body(cls, data: bytes) -> PrekeyMessage:
        r = Reader(data, "prekey message")
        identity = r.take(KEY, "identity")
        ephemeral = r.take(KEY, "ephemeral")
        spk_id = r.u32("spk_id")
        opk = r.u32("opk_id")
        message = RatchetMessage.decode(r.rest(), "prekey message: ratchet message")
        return cls(identity, ephemeral, spk_id, None if opk == NO_PREKEY else opk, message)


def encode_envelope(kind: int, body: bytes) -> bytes:
    return bytes([WIRE_VERSION, kind]) + body


def decode_envelope(data: bytes) -> tuple[int, bytes]:
    r = Reader(data, "envelope")
    version = r.u8("version")
    if version != WIRE_VERSION:
        raise DecodeError(f"envelope: version {version} at byte offset 0 unsupported (expected {WIRE_VERSION})")
    kind = r.u8("type")
    if kind not in (ENVELOPE_MESSAGE, ENVELOPE_PREKEY):
        raise DecodeError(f"envelope: type {kind} at byte offset 1 unknown (expected 1 or 2)")
    return kind, r.rest()


# --- decrypted content ------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class AttachmentPointer:
    """How a message references an attachment: where it is, how to decrypt and check it."""

    blob_id: bytes
    key: bytes
    digest: bytes
    size: int

    def encode(self) -> bytes:
        return self.blob_id + self.key + self.digest + struct.pack(">Q", self.size)

    def __repr__(self) -> str:
        return f"AttachmentPointer(blob_id={self.blob_id.hex()}, size={self.size})"


@dataclass(frozen=True, slots=True)
class Content:
    body: bytes
    attachment: AttachmentPointer | None = None

    def encode(self) -> bytes:
        flags = 1 if self.attachment else 0
        out = bytes([WIRE_VERSION, flags]) + struct.pack(">I", len(self.body)) + self.body
        if self.attachment:
            out += self.attachment.encode()
        return out

    @classmethod
    def decode(cls, data: bytes) -> Content:
        r = Reader(data, "message content")
        version = r.u8("version")
        if version != WIRE_VERSION:
            raise DecodeError(f"message content: version {version} unsupported")
        flags = r.u8("flags")
        if flags & ~1:
            raise DecodeError(f"message content: unknown flag bits {flags:#04x} at byte offset 1")
        body = r.take(r.u32("body_len"), "body")
        pointer = None
        if flags & 1:
            pointer = AttachmentPointer(
                r.take(BLOB_ID, "attachment.blob_id"),
                r.take(KEY, "attachment.key"),
                r.take(KEY, "attachment.digest"),
                r.u64("attachment.size"),
            )
        r.end()
        return cls(body, pointer)
