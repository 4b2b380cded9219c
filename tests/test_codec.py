"""The wire codec: round trips, and every truncation and length flip is rejected with field and offset."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.crypto.codec import (
    FIELD_HEADER_BYTES,
    HEADER_BYTES,
    FieldSpec,
    Schema,
    read_u32,
    u32,
)
from e2escan.errors import DecodeError, VoucherError

SCHEMA = Schema(
    "test message",
    b"E2TT",
    3,
    (
        FieldSpec("count", 4),
        FieldSpec("points", lambda f: 32 * read_u32(f["count"])),
        FieldSpec("tag", 16),
        FieldSpec("payload", None),
    ),
    error=VoucherError,
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, bytes]:
    count = draw(st.integers(0, 5))
    return {
        "count": u32(count),
        "points": draw(st.binary(min_size=32 * count, max_size=32 * count)),
        "tag": draw(st.binary(min_size=16, max_size=16)),
        "payload": draw(st.binary(max_size=64)),
    }


def _length_field_offsets(encoded: bytes) -> list[int]:
    """Byte offsets of the body-length field and of every field's length field."""
    offsets = list(range(5, 9))
    pos = HEADER_BYTES
    while pos < len(encoded):
        offsets += list(range(pos + 1, pos + 5))
        pos += FIELD_HEADER_BYTES + read_u32(encoded[pos + 1 : pos + 5])
    return offsets


@settings(max_examples=80, deadline=None)
@given(messages())
def test_round_trip_and_offsets(values: dict[str, bytes]) -> None:
    encoded = SCHEMA.encode(values)
    decoded = SCHEMA.decode(encoded)
    assert dict(decoded) == values
    for name, value in values.items():
        off = decoded.offsets[name]
        assert encoded[off : off + len(value)] == value
    assert len(encoded) == SCHEMA.overhead() + sum(len(v) for v in values.values())


@settings(max_examples=40, deadline=None)
@given(messages())
def test_every_truncation_is_rejected(values: dict[str, bytes]) -> None:
    encoded = SCHEMA.encode(values)
    for cut in range(len(encoded)):
        with pytest.raises(VoucherError, match=r"test message: .*byte offset \d+"):
            SCHEMA.decode(encoded[:cut])


@settings(max_examples=40, deadline=None)
@given(messages(), st.integers(0, 7))
def test_every_flipped_length_bit_is_rejected(values: dict[str, bytes], bit: int) -> None:
    encoded = SCHEMA.encode(values)
    for off in _length_field_offsets(encoded):
        corrupted = bytearray(encoded)
        corrupted[off] ^= 1 << bit
        with pytest.raises(VoucherError) as info:
            SCHEMA.decode(bytes(corrupted))
        # The message names the length field's byte offset (or the body length's).
        match = re.search(r"length at byte offset (\d+)", str(info.value))
        assert match, str(info.value)
        assert int(match.group(1)) <= off


@settings(max_examples=40, deadline=None)
@given(messages(), st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(values: dict[str, bytes], junk: bytes) -> None:
    encoded = SCHEMA.encode(values)
    with pytest.raises(VoucherError, match="body length"):
        SCHEMA.decode(encoded + junk)


def test_header_errors_name_what_is_wrong() -> None:
    good = SCHEMA.encode({"count": u32(0), "points": b"", "tag": b"t" * 16, "payload": b"p"})
    with pytest.raises(VoucherError, match="magic at byte offset 0"):
        SCHEMA.decode(b"XXXX" + good[4:])
    with pytest.raises(VoucherError, match="version at byte offset 4 is 9"):
        SCHEMA.decode(good[:4] + b"\x09" + good[5:])
    wrong_tag = bytearray(good)
    wrong_tag[HEADER_BYTES] = 7
    with pytest.raises(VoucherError, match="tag 7, expected 1"):
        SCHEMA.decode(bytes(wrong_tag))
    with pytest.raises(VoucherError, match="expected bytes"):
        SCHEMA.decode("text")  # type: ignore[arg-type]
    assert issubclass(VoucherError, DecodeError)


def test_encode_checks_lengths_and_names() -> None:
    with pytest.raises(VoucherError, match="'tag' is 3 bytes, the schema requires 16"):
        SCHEMA.encode({"count": u32(0), "points": b"", "tag": b"abc", "payload": b""})
    with pytest.raises(VoucherError, match="missing field 'payload'"):
        SCHEMA.encode({"count": u32(0), "points": b"", "tag": b"t" * 16})
    with pytest.raises(VoucherError, match="unknown field"):
        SCHEMA.encode({"count": u32(0), "points": b"", "tag": b"t" * 16, "payload": b"", "x": b""})


def test_schema_rejects_open_size_before_last_field() -> None:
    with pytest.raises(ValueError, match="last field"):
        Schema("bad", b"BAD!", 1, (FieldSpec("a", None), FieldSpec("b", 1)))
