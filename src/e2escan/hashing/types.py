"""Packed perceptual hashes: one hash (:class:`PerceptualHash`) and a batch (:class:`HashArray`).

Bit order (the contract every other module relies on): a hash of ``bits``
bits is stored in ``bits // 8`` bytes in ``np.packbits`` order, i.e.
big-endian within each byte. Bit ``i`` of the hash is bit ``7 - i % 8`` of
byte ``i // 8``, so bit 0 is the most significant bit of byte 0 and the hex
string reads the bits left to right.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from ..errors import HashError
from ._popcount import popcount_rows

_HEX_RE = re.compile(r"\A[0-9a-fA-F]*\Z")


def _check_bits(bits: object, where: str) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise HashError(f"{where}: bits must be an int, got {type(bits).__name__}")
    bits = int(bits)
    if bits <= 0 or bits % 8:
        raise HashError(f"{where}: bits must be a positive multiple of 8, got {bits}")
    return bits


def _bits_to_packed(bits_array: object, where: str) -> np.ndarray:
    """Validate a 0/1 (or bool) array whose last axis is the bit axis and pack it."""
    arr = np.asarray(bits_array)
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.integer):
            raise HashError(f"{where}: bits must be bool or 0/1 integers, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise HashError(f"{where}: bit values must be 0 or 1, found values outside {{0, 1}}")
    if arr.ndim == 0 or arr.shape[-1] == 0 or arr.shape[-1] % 8:
        width = arr.shape[-1] if arr.ndim else 0
        raise HashError(f"{where}: number of bits must be a positive multiple of 8, got {width}")
    return np.packbits(arr.astype(np.uint8, copy=False), axis=-1)


@dataclass(frozen=True, slots=True)
class PerceptualHash:
    """One perceptual hash of ``bits`` bits packed into ``data`` (``bits // 8`` bytes).

    Instances are immutable and hashable, so they can key dicts and sets.
    Construction raises :class:`~e2escan.errors.HashError` when ``bits`` is not a
    positive multiple of 8 or ``len(data) != bits // 8``.
    """

    bits: int
    data: bytes

    def __post_init__(self) -> None:
        bits = _check_bits(self.bits, "PerceptualHash")
        data = self.data
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise HashError(f"PerceptualHash: data must be bytes, got {type(data).__name__}")
        if len(data) != bits // 8:
            raise HashError(
                f"PerceptualHash: data has {len(data)} bytes but bits={bits} needs {bits // 8}"
            )
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "data", data)

    # -- conversions -----------------------------------------------------------------

    @property
    def hex(self) -> str:
        """Lower-case hex of the packed bytes (``bits // 4`` characters)."""
        return self.data.hex()

    @classmethod
    def from_hex(cls, s: str) -> PerceptualHash:
        """Parse the hex form written by :attr:`hex` (case-insensitive, even length)."""
        if not isinstance(s, str):
            raise HashError(f"PerceptualHash.from_hex: expected str, got {type(s).__name__}")
        if not s or len(s) % 2 or not _HEX_RE.match(s):
            raise HashError(
                f"PerceptualHash.from_hex: {s[:80]!r} is not a non-empty, even-length hex string"
            )
        data = bytes.fromhex(s)
        return cls(len(data) * 8, data)

    @classmethod
    def from_bits(cls, bits: object) -> PerceptualHash:
        """Pack a 1-D bool or 0/1 array; element ``i`` becomes bit ``i`` (MSB first)."""
        arr = np.asarray(bits)
        if arr.ndim != 1:
            raise HashError(f"PerceptualHash.from_bits: expected a 1-D array, got shape {arr.shape}")
        packed = _bits_to_packed(arr, "PerceptualHash.from_bits")
        return cls(arr.shape[0], packed.tobytes())

    def to_bits(self) -> np.ndarray:
        """The bits as a ``uint8`` array of 0/1 of length :attr:`bits` (inverse of :meth:`from_bits`)."""
        return np.unpackbits(np.frombuffer(self.data, dtype=np.uint8))

    def __bytes__(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        return f"PerceptualHash(bits={self.bits}, hex={self.hex!r})"

    # -- metric ------------------------------------------------------------------------

    def distance(self, other: PerceptualHash) -> int:
        """Hamming distance (number of differing bits); raises ``HashError`` on a length mismatch."""
        if not isinstance(other, PerceptualHash):
            raise HashError(f"distance: expected a PerceptualHash, got {type(other).__name__}")
        if other.bits != self.bits:
            raise HashError(f"distance: cannot compare a {self.bits}-bit hash with a {other.bits}-bit hash")
        x = int.from_bytes(self.data, "big") ^ int.from_bytes(other.data, "big")
        return x.bit_count()


class HashArray:
    """A batch of ``n`` hashes of equal length, stored as an ``(n, bits // 8)`` ``uint8`` array.

    ``data`` is C-contiguous and read-only through this object (a read-only view
    of the array passed in; a copy is made only if it was not C-contiguous).
    Equality compares length and content. Same bit order as :class:`PerceptualHash`.
    """

    __slots__ = ("_data",)
    __hash__ = None  # type: ignore[assignment]  # content equality on a (viewed) mutable buffer

    def __init__(self, data: np.ndarray) -> None:
        arr = np.asarray(data)
        if arr.dtype != np.uint8:
            raise HashError(f"HashArray: data must have dtype uint8, got {arr.dtype}")
        if arr.ndim != 2:
            raise HashError(f"HashArray: data must be 2-D (n, bits // 8), got shape {arr.shape}")
        if arr.shape[1] == 0:
            raise HashError("HashArray: each hash needs at least one byte, got width 0")
        view = np.ascontiguousarray(arr).view()
        view.flags.writeable = False
        self._data = view

    # -- basic protocol ----------------------------------------------------------------

    @property
    def data(self) -> np.ndarray:
        return self._data

    @property
    def bits(self) -> int:
        return int(self._data.shape[1]) * 8

    @property
    def nbytes_per_hash(self) -> int:
        return int(self._data.shape[1])

    def __len__(self) -> int:
        return int(self._data.shape[0])

    @overload
    def __getitem__(self, index: int) -> PerceptualHash: ...
    @overload
    def __getitem__(self, index: slice | Sequence[int] | np.ndarray) -> HashArray: ...

    def __getitem__(
        self, index: int | np.integer[Any] | slice | Sequence[int] | np.ndarray
    ) -> PerceptualHash | HashArray:
        """An integer gives a :class:`PerceptualHash`; a slice, index array or mask gives a ``HashArray``."""
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            n = len(self)
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"HashArray index {i} out of range for {n} hashes")
            return PerceptualHash(self.bits, self._data[i].tobytes())
        if isinstance(index, slice):
            return HashArray(self._data[index])
        idx = np.asarray(index)
        if idx.dtype == np.bool_ or np.issubdtype(idx.dtype, np.integer):
            if idx.ndim != 1:
                raise IndexError(f"HashArray index arrays must be 1-D, got shape {idx.shape}")
            return HashArray(self._data[idx])
        raise TypeError(f"HashArray indices must be int, slice, int array or bool mask, not {type(index).__name__}")

    def __iter__(self) -> Iterator[PerceptualHash]:
        bits = self.bits
        for row in self._data:
            yield PerceptualHash(bits, row.tobytes())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashArray):
            return NotImplemented
        return self._data.shape == other._data.shape and bool(np.array_equal(self._data, other._data))

    def __repr__(self) -> str:
        return f"HashArray(n={len(self)}, bits={self.bits})"

    # -- constructors ------------------------------------------------------------------

    @classmethod
    def from_hashes(cls, hashes: Iterable[PerceptualHash], *, bits: int | None = None) -> HashArray:
        """Stack hashes of one length. ``bits`` is needed only to build an empty array."""
        rows: list[bytes] = []
        width = None if bits is None else _check_bits(bits, "HashArray.from_hashes")
        for i, h in enumerate(hashes):
            if not isinstance(h, PerceptualHash):
                raise HashError(f"HashArray.from_hashes: item {i} is a {type(h).__name__}, not a PerceptualHash")
            if width is None:
                width = h.bits
            elif h.bits != width:
                raise HashError(f"HashArray.from_hashes: item {i} has {h.bits} bits, expected {width}")
            rows.append(h.data)
        if width is None:
            raise HashError("HashArray.from_hashes: no hashes given; pass bits= to build an empty array")
        buf = np.frombuffer(b"".join(rows), dtype=np.uint8)
        return cls(buf.reshape(len(rows), width // 8).copy())

    @classmethod
    def from_hex(cls, hexes: Iterable[str], *, bits: int | None = None) -> HashArray:
        """Parse hex strings of equal length (see :meth:`PerceptualHash.from_hex`)."""
        return cls.from_hashes((PerceptualHash.from_hex(s) for s in hexes), bits=bits)

    @classmethod
    def from_bits(cls, bits: object) -> HashArray:
        """Pack an ``(n, bits)`` bool or 0/1 array row by row (MSB first)."""
        arr = np.asarray(bits)
        if arr.ndim != 2:
            raise HashError(f"HashArray.from_bits: expected a 2-D array, got shape {arr.shape}")
        return cls(_bits_to_packed(arr, "HashArray.from_bits"))

    @classmethod
    def random(cls, n: int, bits: int, rng: np.random.Generator) -> HashArray:
        """``n`` uniformly random hashes of ``bits`` bits drawn from ``rng``."""
        bits = _check_bits(bits, "HashArray.random")
        if int(n) < 0:
            raise HashError(f"HashArray.random: n must be >= 0, got {n}")
        return cls(rng.integers(0, 256, size=(int(n), bits // 8), dtype=np.uint8))

    @classmethod
    def frombytes(cls, raw: bytes, bits: int) -> HashArray:
        """Inverse of :meth:`tobytes`: ``len(raw)`` must be a multiple of ``bits // 8``."""
        bits = _check_bits(bits, "HashArray.frombytes")
        width = bits // 8
        if len(raw) % width:
            raise HashError(
                f"HashArray.frombytes: {len(raw)} bytes is not a multiple of the hash size {width} bytes"
            )
        return cls(np.frombuffer(bytes(raw), dtype=np.uint8).reshape(-1, width).copy())

    @classmethod
    def concatenate(cls, arrays: Sequence[HashArray]) -> HashArray:
        """Join batches of the same hash length, in order."""
        if not arrays:
            raise HashError("HashArray.concatenate: need at least one HashArray")
        bits = arrays[0].bits
        for i, a in enumerate(arrays):
            if a.bits != bits:
                raise HashError(f"HashArray.concatenate: array {i} has {a.bits} bits, expected {bits}")
        return cls(np.concatenate([a.data for a in arrays], axis=0))

    # -- conversions -------------------------------------------------------------------

    def tobytes(self) -> bytes:
        """All hashes concatenated, ``len(self) * bits // 8`` bytes."""
        return self._data.tobytes()

    def to_hex(self) -> list[str]:
        return [row.tobytes().hex() for row in self._data]

    def to_bits(self) -> np.ndarray:
        """``(n, bits)`` ``uint8`` array of 0/1."""
        return np.unpackbits(self._data, axis=1)

    # -- metric ------------------------------------------------------------------------

    def distances_to(self, h: PerceptualHash) -> np.ndarray:
        """Hamming distance of every hash in the batch to ``h`` (``int64``, shape ``(n,)``)."""
        if not isinstance(h, PerceptualHash):
            raise HashError(f"distances_to: expected a PerceptualHash, got {type(h).__name__}")
        if h.bits != self.bits:
            raise HashError(f"distances_to: query has {h.bits} bits, the array holds {self.bits}-bit hashes")
        q = np.frombuffer(h.data, dtype=np.uint8)
        return popcount_rows(np.bitwise_xor(self._data, q))
