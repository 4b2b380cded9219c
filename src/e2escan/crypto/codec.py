"""A versioned, length-checked binary format for vouchers and public parameters.

Layout of one message::

    magic (4 bytes) | version (u8) | body length (u32, big-endian) | field_1 | ... | field_n
    field_i = tag (u8, equal to i) | length (u32, big-endian) | value

A :class:`Schema` fixes the magic, the version and the ordered fields. Every
field's length is known to the decoder before it reads it: a fixed size, a
size computed from fields decoded earlier (a table of ``count`` points), or,
for the last field only, "the rest of the body". So the decoder can reject,
with the field name and byte offset:

* any truncation (the body length no longer matches the bytes that follow),
* any change to the body length or to a field's length (it no longer equals
  the length the schema expects),
* a wrong magic, version or tag, and trailing bytes.

Decoding only checks the format; what the values mean (valid points, canonical
scalars) is checked by the caller, which can name the offset through
:attr:`Decoded.offsets`. Errors are raised as ``schema.error`` (a subclass of
:class:`~e2escan.errors.DecodeError`, e.g. ``VoucherError`` for vouchers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from ..errors import DecodeError

HEADER_BYTES = 9  # magic 4 + version 1 + body length 4
FIELD_HEADER_BYTES = 5  # tag 1 + length 4
MAX_LENGTH = 2**32 - 1

SizeRule = int | Callable[[Mapping[str, bytes]], int] | None


def u32(n: int) -> bytes:
    """``n`` as 4 big-endian bytes (for count fields)."""
    if not 0 <= n <= MAX_LENGTH:
        raise DecodeError(f"u32: {n} does not fit in 32 bits")
    return n.to_bytes(4, "big")


def read_u32(b: bytes) -> int:
    return int.from_bytes(b, "big")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field: ``size`` is an exact byte count, a function of earlier fields, or ``None`` (rest of body; last field only)."""

    name: str
    size: SizeRule


class Decoded(Mapping[str, bytes]):
    """Field values by name, with :attr:`offsets` giving where each value starts in the message."""

    __slots__ = ("_values", "offsets")

    def __init__(self, values: dict[str, bytes], offsets: dict[str, int]) -> None:
        self._values = values
        self.offsets = offsets

    def __getitem__(self, key: str) -> bytes:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class Schema:
    """A message type: ``name`` appears in every error; ``error`` is the exception class raised."""

    name: str
    magic: bytes
    version: int
    fields: tuple[FieldSpec, ...]
    error: type[DecodeError] = field(default=DecodeError)

    def __post_init__(self) -> None:
        if len(self.magic) != 4:
            raise ValueError(f"{self.name}: magic must be 4 bytes")
        if not 0 <= self.version <= 255:
            raise ValueError(f"{self.name}: version must fit in a byte")
        if not 1 <= len(self.fields) <= 255:
            raise ValueError(f"{self.name}: 1..255 fields")
        for spec in self.fields[:-1]:
            if spec.size is None:
                raise ValueError(f"{self.name}: only the last field may have an open size")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate field names")

    # -- encoding -----------------------------------------------------------------

    def encode(self, values: Mapping[str, bytes]) -> bytes:
        """Serialise ``values`` (exactly the schema's fields), checking each length against the schema."""
        unknown = set(values) - {f.name for f in self.fields}
        if unknown:
            raise self.error(f"{self.name}: unknown field(s) {sorted(unknown)}")
        parts: list[bytes] = []
        seen: dict[str, bytes] = {}
        for tag, spec in enumerate(self.fields, start=1):
            if spec.name not in values:
                raise self.error(f"{self.name}: missing field {spec.name!r}")
            value = bytes(values[spec.name])
            expected = self._expected(spec, seen, None)
            if expected is not None and len(value) != expected:
                raise self.error(
                    f"{self.name}: field {spec.name!r} is {len(value)} bytes, the schema requires {expected}"
                )
            if len(value) > MAX_LENGTH:
                raise self.error(f"{self.name}: field {spec.name!r} is too long ({len(value)} bytes)")
            parts.append(bytes([tag]) + u32(len(value)) + value)
            seen[spec.name] = value
        body = b"".join(parts)
        return self.magic + bytes([self.version]) + u32(len(body)) + body

    # -- decoding -----------------------------------------------------------------

    def decode(self, data: bytes) -> Decoded:
        """Parse ``data``; raises ``self.error`` naming the field and byte offset of the first problem."""
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise self.error(f"{self.name}: expected bytes, got {type(data).__name__}")
        n = len(data)
        if n < HEADER_BYTES:
            raise self.error(
                f"{self.name}: header truncated at byte offset {n}: a message starts with {HEADER_BYTES} header bytes"
            )
        if data[:4] != self.magic:
            raise self.error(
                f"{self.name}: magic at byte offset 0 is {data[:4]!r}, expected {self.magic!r} "
                "(not this kind of message)"
            )
        if data[4] != self.version:
            raise self.error(
                f"{self.name}: version at byte offset 4 is {data[4]}, this decoder reads version {self.version}"
            )
        body_len = read_u32(data[5:9])
        if body_len != n - HEADER_BYTES:
            raise self.error(
                f"{self.name}: body length at byte offset 5 declares {body_len} bytes but "
                f"{n - HEADER_BYTES} follow (truncated or corrupted message)"
            )
        values: dict[str, bytes] = {}
        offsets: dict[str, int] = {}
        pos = HEADER_BYTES
        for tag, spec in enumerate(self.fields, start=1):
            if pos + FIELD_HEADER_BYTES > n:
                raise self.error(
                    f"{self.name}: field {spec.name!r} header at byte offset {pos} is truncated "
                    f"({n - pos} of {FIELD_HEADER_BYTES} bytes)"
                )
            if data[pos] != tag:
                raise self.error(
                    f"{self.name}: field {spec.name!r} at byte offset {pos} has tag {data[pos]}, expected {tag}"
                )
            declared = read_u32(data[pos + 1 : pos + 5])
            start = pos + FIELD_HEADER_BYTES
            expected = self._expected(spec, values, n - start)
            if declared != expected:
                raise self.error(
                    f"{self.name}: field {spec.name!r} length at byte offset {pos + 1} declares "
                    f"{declared} bytes, expected {expected}"
                )
            if start + declared > n:
                raise self.error(
                    f"{self.name}: field {spec.name!r} at byte offset {start} is truncated "
                    f"({n - start} of {declared} bytes)"
                )
            values[spec.name] = data[start : start + declared]
            offsets[spec.name] = start
            pos = start + declared
        if pos != n:
            raise self.error(f"{self.name}: {n - pos} trailing byte(s) at byte offset {pos}")
        return Decoded(values, offsets)

    def _expected(self, spec: FieldSpec, earlier: Mapping[str, bytes], rest: int | None) -> int | None:
        if spec.size is None:
            return rest
        if isinstance(spec.size, int):
            return spec.size
        try:
            return int(spec.size(earlier))
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            raise self.error(f"{self.name}: cannot size field {spec.name!r} from earlier fields: {exc}") from exc

    def overhead(self) -> int:
        """Bytes of framing (header plus field headers) in every message of this schema."""
        return HEADER_BYTES + FIELD_HEADER_BYTES * len(self.fields)
