"""The prime-order subgroup of edwards25519, through libsodium.

Every group and scalar-field operation forwards to libsodium's
``crypto_core_ed25519_*`` / ``crypto_scalarmult_ed25519_*noclamp`` functions.
What this module adds is the contract around them:

* **Points** are 32-byte compressed encodings. :func:`is_valid_point` accepts
  exactly what libsodium's ``crypto_core_ed25519_is_valid_point`` accepts: a
  canonical encoding of a point on the curve, in the prime-order subgroup, not
  of small order (so the identity is rejected). :func:`scalar_mult` performs
  the same checks on its input point (libsodium refuses to multiply anything
  else), so a point that is multiplied right after it is received needs no
  separate validation; the failure surfaces as :class:`InvalidPointError`
  naming the field.
* **Scalars** are 32-byte little-endian integers reduced modulo the group
  order ``ELL``. Secrets come from the OS CSPRNG (:func:`random_scalar`:
  ``crypto_core_ed25519_scalar_reduce`` of 64 random bytes, retried if zero).
  Field arithmetic (:func:`scalar_add`, :func:`scalar_mul`, ...) is
  libsodium's, so Shamir sharing and the protocols use the same field as the
  group (the receiver's bulk linear algebra in :mod:`e2escan.crypto.shamir`
  computes in the same field on Python integers, checked against these).
* **Hash to group** (:func:`hash_to_group`) follows the structure of RFC 9380's
  ``hash_to_curve``: ``expand_message_xmd`` with SHA-512 and a caller-chosen
  domain-separation tag, two Elligator 2 map evaluations
  (``crypto_core_ed25519_from_uniform``, which also clears the cofactor) and
  their sum, so the output is in the prime-order subgroup and the construction
  is the random-oracle ("RO") variant rather than a single-map encoding.
  libsodium takes the sign of ``x`` from the top bit of its 32-byte input, so
  the outputs are not byte-identical to the RFC 9380 suite
  ``edwards25519_XMD:SHA-512_ELL2_RO_`` (libsodium's ``from_string_ro`` would
  be, but PyNaCl does not bind it); the tests check that libsodium's map is the
  RFC's Elligator 2 map followed by cofactor clearing, using the RFC's own
  vectors.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias

import nacl.bindings as sodium
import nacl.exceptions

from ..errors import CryptoError, DecodeError, InvalidPointError

try:  # The cffi module PyNaCl itself calls; see the fast path below.
    from nacl._sodium import ffi as _sodium_ffi
    from nacl._sodium import lib as _sodium_lib
except ImportError:  # pragma: no cover - PyNaCl always ships it
    _sodium_ffi = _sodium_lib = None

# PyNaCl ships no type information for its cffi module; these state the part of it used here.
#: A cffi pointer to C memory (``unsigned char[32]``) or a bytes object passed as ``unsigned char *``.
_CData: TypeAlias = object


class _CBuffer(Protocol):
    """``ffi.buffer(...)``: slicing copies the C memory out as bytes."""

    def __getitem__(self, index: slice, /) -> bytes: ...


class _SodiumFFI(Protocol):
    """cffi's ``FFI`` object of ``nacl._sodium``."""

    def new(self, cdecl: str, init: bytes = ..., /) -> _CData: ...

    def buffer(self, cdata: _CData, size: int, /) -> _CBuffer: ...

    def memmove(self, dest: _CData, src: bytes, n: int, /) -> None: ...


#: libsodium's ``void f(unsigned char *z, const unsigned char *x, const unsigned char *y)``.
_ScalarBinaryC: TypeAlias = Callable[[_CData, _CData, _CData], None]
#: libsodium's ``void f(unsigned char *z, const unsigned char *x)``.
_ScalarUnaryC: TypeAlias = Callable[[_CData, _CData], None]


class _SodiumLib(Protocol):
    """The libsodium functions of ``nacl._sodium.lib`` called here directly."""

    crypto_core_ed25519_scalar_add: _ScalarBinaryC
    crypto_core_ed25519_scalar_sub: _ScalarBinaryC
    crypto_core_ed25519_scalar_mul: _ScalarBinaryC
    crypto_core_ed25519_scalar_negate: _ScalarUnaryC

    def crypto_core_ed25519_scalar_invert(self, z: _CData, x: _CData, /) -> int: ...


_ffi: _SodiumFFI | None = _sodium_ffi
_lib: _SodiumLib | None = _sodium_lib

POINT_BYTES = sodium.crypto_core_ed25519_BYTES  # 32
SCALAR_BYTES = sodium.crypto_core_ed25519_SCALARBYTES  # 32
NONREDUCED_SCALAR_BYTES = sodium.crypto_core_ed25519_NONREDUCEDSCALARBYTES  # 64

#: Order of the prime-order subgroup, 2^252 + 27742317777372353535851937790883648493.
ELL = 2**252 + 27742317777372353535851937790883648493

SCALAR_ZERO = bytes(SCALAR_BYTES)
SCALAR_ONE = (1).to_bytes(SCALAR_BYTES, "little")

#: The standard base point B of edwards25519 (RFC 8032), generator of the subgroup.
GENERATOR = sodium.crypto_scalarmult_ed25519_base_noclamp(SCALAR_ONE)

_SHA512_BLOCK = 128
_SHA512_DIGEST = 64


# --- scalars -----------------------------------------------------------------


def is_canonical_scalar(s: bytes) -> bool:
    """True if ``s`` is 32 bytes encoding an integer below ``ELL`` (a range check, no arithmetic)."""
    if not isinstance(s, bytes) or len(s) != SCALAR_BYTES:
        return False
    return int.from_bytes(s, "little") < ELL


def require_scalar(s: object, field: str, *, nonzero: bool = False) -> bytes:
    """Return ``s`` if it is a canonical scalar (and nonzero if asked), else raise :class:`DecodeError`."""
    if isinstance(s, (bytearray, memoryview)):
        s = bytes(s)
    if not isinstance(s, bytes) or len(s) != SCALAR_BYTES:
        got = f"{len(s)} bytes" if isinstance(s, bytes) else type(s).__name__
        raise DecodeError(f"{field}: expected a {SCALAR_BYTES}-byte scalar, got {got}")
    if not is_canonical_scalar(s):
        raise DecodeError(f"{field}: scalar is not reduced modulo the group order (non-canonical encoding)")
    if nonzero and s == SCALAR_ZERO:
        raise DecodeError(f"{field}: scalar must be nonzero")
    return s


def scalar_reduce(wide: bytes) -> bytes:
    """Reduce 64 bytes (little-endian) modulo ``ELL`` (``crypto_core_ed25519_scalar_reduce``)."""
    if len(wide) != NONREDUCED_SCALAR_BYTES:
        raise CryptoError(f"scalar_reduce: expected {NONREDUCED_SCALAR_BYTES} bytes, got {len(wide)}")
    return sodium.crypto_core_ed25519_scalar_reduce(wide)


def random_scalar() -> bytes:
    """A uniformly random nonzero scalar from the OS CSPRNG.

    Reducing 512 random bits modulo ``ELL`` leaves a bias below 2^-259.
    """
    while True:
        s = sodium.crypto_core_ed25519_scalar_reduce(os.urandom(NONREDUCED_SCALAR_BYTES))
        if s != SCALAR_ZERO:
            return s


def scalar_from_int(n: int) -> bytes:
    """The scalar ``n mod ELL`` (for small constants such as share indices in tests)."""
    return (n % ELL).to_bytes(SCALAR_BYTES, "little")


def scalar_to_int(s: bytes) -> int:
    """The integer a scalar encodes (little-endian)."""
    return int.from_bytes(s, "little")


if _ffi is not None and _lib is not None:
    # PyNaCl's public wrappers re-check types and lengths on every call, which
    # triples the cost of one scalar operation. Shamir interpolation and the
    # detectable-hash linear algebra make O(n^2)-O(n^3) of them on scalars
    # whose lengths were already checked at the boundary, so they call the same
    # libsodium functions through PyNaCl's cffi module. The public functions
    # below check lengths first; the tests compare both paths.
    def _binary(ffi: _SodiumFFI, fn: _ScalarBinaryC) -> Callable[[bytes, bytes], bytes]:
        def op(a: bytes, b: bytes) -> bytes:
            out = ffi.new("unsigned char[32]")
            fn(out, a, b)
            return ffi.buffer(out, 32)[:]

        return op

    def _unary(ffi: _SodiumFFI, fn: _ScalarUnaryC) -> Callable[[bytes], bytes]:
        def op(a: bytes) -> bytes:
            out = ffi.new("unsigned char[32]")
            fn(out, a)
            return ffi.buffer(out, 32)[:]

        return op

    def _inverse(ffi: _SodiumFFI, lib: _SodiumLib) -> Callable[[bytes], bytes]:
        def op(a: bytes) -> bytes:
            out = ffi.new("unsigned char[32]")
            if lib.crypto_core_ed25519_scalar_invert(out, a) != 0:
                raise CryptoError("scalar_invert: zero has no inverse")
            return ffi.buffer(out, 32)[:]

        return op

    _sc_add = _binary(_ffi, _lib.crypto_core_ed25519_scalar_add)
    _sc_sub = _binary(_ffi, _lib.crypto_core_ed25519_scalar_sub)
    _sc_mul = _binary(_ffi, _lib.crypto_core_ed25519_scalar_mul)
    _sc_neg = _unary(_ffi, _lib.crypto_core_ed25519_scalar_negate)
    _sc_inv = _inverse(_ffi, _lib)

else:  # pragma: no cover
    _sc_add = sodium.crypto_core_ed25519_scalar_add
    _sc_sub = sodium.crypto_core_ed25519_scalar_sub
    _sc_mul = sodium.crypto_core_ed25519_scalar_mul
    _sc_neg = sodium.crypto_core_ed25519_scalar_negate

    def _sc_inv(a: bytes) -> bytes:
        if a == SCALAR_ZERO:
            raise CryptoError("scalar_invert: zero has no inverse")
        return sodium.crypto_core_ed25519_scalar_invert(a)


def polynomial_eval(coefficients: Sequence[bytes], x: bytes) -> bytes:
    """``sum_i c_i x^i mod ELL`` (constant term first), by Horner's rule in libsodium."""
    if not coefficients:
        return SCALAR_ZERO
    if _ffi is None or _lib is None:  # pragma: no cover
        value = coefficients[-1]
        for c in reversed(coefficients[:-1]):
            value = _sc_add(_sc_mul(value, x), c)
        return value
    # In-place accumulation in C buffers: no Python bytes object per operation.
    mul, add = _lib.crypto_core_ed25519_scalar_mul, _lib.crypto_core_ed25519_scalar_add
    acc = _ffi.new("unsigned char[32]", coefficients[-1])
    tmp = _ffi.new("unsigned char[32]")
    for c in reversed(coefficients[:-1]):
        mul(tmp, acc, x)
        add(acc, tmp, c)
    return _ffi.buffer(acc, 32)[:]


def powers(x: bytes, degree: int) -> list[bytes]:
    """``[1, x, x^2, ..., x^degree]``."""
    out = [SCALAR_ONE]
    for _ in range(degree):
        out.append(_sc_mul(out[-1], x))
    return out


def dot_rows(rows: Sequence[Sequence[bytes]], vector: Sequence[bytes]) -> list[bytes]:
    """``[sum_k row[k] * vector[k] for row in rows]`` mod ``ELL``."""
    if _ffi is None or _lib is None:  # pragma: no cover
        sums = []
        for row in rows:
            total = SCALAR_ZERO
            for a, b in zip(row, vector, strict=True):
                total = _sc_add(total, _sc_mul(a, b))
            sums.append(total)
        return sums
    mul, add = _lib.crypto_core_ed25519_scalar_mul, _lib.crypto_core_ed25519_scalar_add
    acc = _ffi.new("unsigned char[32]")
    tmp = _ffi.new("unsigned char[32]")
    out = []
    for row in rows:
        if len(row) != len(vector):
            raise CryptoError(f"dot_rows: row of {len(row)} scalars against a vector of {len(vector)}")
        _ffi.memmove(acc, SCALAR_ZERO, 32)
        for a, b in zip(row, vector):
            mul(tmp, a, b)
            add(acc, acc, tmp)
        out.append(_ffi.buffer(acc, 32)[:])
    return out


def _check2(a: bytes, b: bytes, op: str) -> None:
    if len(a) != SCALAR_BYTES or len(b) != SCALAR_BYTES:
        raise CryptoError(f"{op}: scalars are {SCALAR_BYTES} bytes, got {len(a)} and {len(b)}")


def scalar_add(a: bytes, b: bytes) -> bytes:
    """``a + b mod ELL``."""
    _check2(a, b, "scalar_add")
    return _sc_add(a, b)


def scalar_sub(a: bytes, b: bytes) -> bytes:
    """``a - b mod ELL``."""
    _check2(a, b, "scalar_sub")
    return _sc_sub(a, b)


def scalar_mul(a: bytes, b: bytes) -> bytes:
    """``a * b mod ELL``."""
    _check2(a, b, "scalar_mul")
    return _sc_mul(a, b)


def scalar_neg(a: bytes) -> bytes:
    """``-a mod ELL``."""
    if len(a) != SCALAR_BYTES:
        raise CryptoError(f"scalar_neg: scalars are {SCALAR_BYTES} bytes, got {len(a)}")
    return _sc_neg(a)


def scalar_invert(a: bytes) -> bytes:
    """``a^-1 mod ELL``; raises :class:`CryptoError` for zero."""
    if len(a) != SCALAR_BYTES:
        raise CryptoError(f"scalar_invert: scalars are {SCALAR_BYTES} bytes, got {len(a)}")
    if a == SCALAR_ZERO:
        raise CryptoError("scalar_invert: zero has no inverse")
    return _sc_inv(a)


# --- points ------------------------------------------------------------------


def is_valid_point(p: object) -> bool:
    """libsodium's check: canonical, on the curve, in the prime-order subgroup, not of small order."""
    if not isinstance(p, bytes) or len(p) != POINT_BYTES:
        return False
    return bool(sodium.crypto_core_ed25519_is_valid_point(p))


def require_point(p: object, field: str) -> bytes:
    """Return ``p`` if :func:`is_valid_point`, else raise :class:`InvalidPointError` naming ``field``."""
    if isinstance(p, (bytearray, memoryview)):
        p = bytes(p)
    if not isinstance(p, bytes) or len(p) != POINT_BYTES:
        got = f"{len(p)} bytes" if isinstance(p, bytes) else type(p).__name__
        raise InvalidPointError(f"{field}: expected a {POINT_BYTES}-byte point encoding, got {got}")
    if not sodium.crypto_core_ed25519_is_valid_point(p):
        raise InvalidPointError(
            f"{field}: not a point of the prime-order subgroup of edwards25519 "
            "(non-canonical, off the curve, small order or outside the subgroup)"
        )
    return p


def scalar_mult(s: bytes, p: bytes, field: str = "point") -> bytes:
    """``s * P`` for a nonzero scalar ``s``.

    libsodium validates ``P`` exactly like :func:`is_valid_point` before
    multiplying; an invalid ``P`` raises :class:`InvalidPointError` naming
    ``field``.
    """
    if len(p) != POINT_BYTES:
        raise InvalidPointError(f"{field}: expected a {POINT_BYTES}-byte point encoding, got {len(p)} bytes")
    try:
        return sodium.crypto_scalarmult_ed25519_noclamp(s, p)
    except nacl.exceptions.RuntimeError as exc:
        if s == SCALAR_ZERO:
            raise CryptoError("scalar_mult: the scalar is zero") from exc
        raise InvalidPointError(
            f"{field}: not a point of the prime-order subgroup of edwards25519 "
            "(non-canonical, off the curve, small order or outside the subgroup)"
        ) from exc


def scalar_mult_base(s: bytes) -> bytes:
    """``s * B`` for a nonzero scalar ``s``."""
    try:
        return sodium.crypto_scalarmult_ed25519_base_noclamp(s)
    except nacl.exceptions.RuntimeError as exc:
        raise CryptoError("scalar_mult_base: the scalar is zero") from exc


def point_add(p: bytes, q: bytes) -> bytes:
    """``P + Q`` (libsodium rejects encodings that are not on the curve)."""
    try:
        return sodium.crypto_core_ed25519_add(p, q)
    except nacl.exceptions.RuntimeError as exc:
        raise InvalidPointError("point_add: an operand is not a valid curve point") from exc


def point_sub(p: bytes, q: bytes) -> bytes:
    """``P - Q``."""
    try:
        return sodium.crypto_core_ed25519_sub(p, q)
    except nacl.exceptions.RuntimeError as exc:
        raise InvalidPointError("point_sub: an operand is not a valid curve point") from exc


def random_point() -> bytes:
    """A uniformly random element of the prime-order subgroup (``r * B`` for a random nonzero ``r``)."""
    return scalar_mult_base(random_scalar())


# --- hashing into the group and the field ------------------------------------


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 ``expand_message_xmd`` with SHA-512.

    ``dst`` must be 1..255 bytes (callers with longer tags hash them first, as
    §5.3.3 describes); ``length`` at most 255 * 64 bytes.
    """
    if not 1 <= len(dst) <= 255:
        raise CryptoError(f"expand_message_xmd: the DST must be 1..255 bytes, got {len(dst)}")
    ell = -(-length // _SHA512_DIGEST)
    if length <= 0 or ell > 255 or length > 65535:
        raise CryptoError(f"expand_message_xmd: cannot expand to {length} bytes (1..{255 * _SHA512_DIGEST})")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(
        bytes(_SHA512_BLOCK) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime
    ).digest()
    blocks = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, blocks[-1], strict=True))
        blocks.append(hashlib.sha512(mixed + bytes([i]) + dst_prime).digest())
    return b"".join(blocks)[:length]


def hash_to_group(msg: bytes, dst: bytes) -> bytes:
    """Hash ``msg`` to an element of the prime-order subgroup, domain-separated by ``dst``.

    ``from_uniform(u0) + from_uniform(u1)`` with ``u0 || u1`` the 64-byte
    ``expand_message_xmd`` output (see the module docstring). Each map output
    is already in the prime-order subgroup, so the sum is too; it is the
    identity with probability about 2^-252.
    """
    uniform = expand_message_xmd(msg, dst, 2 * POINT_BYTES)
    p0 = sodium.crypto_core_ed25519_from_uniform(uniform[:POINT_BYTES])
    p1 = sodium.crypto_core_ed25519_from_uniform(uniform[POINT_BYTES:])
    return sodium.crypto_core_ed25519_add(p0, p1)


def hash_to_scalar(msg: bytes, dst: bytes) -> bytes:
    """Hash ``msg`` to a nonzero scalar: 64 bytes of ``expand_message_xmd`` reduced mod ``ELL``.

    The same construction as RFC 9497's ``HashToScalar`` for the
    ristretto255 suite. A zero result (probability 2^-252) raises
    :class:`CryptoError` rather than returning a scalar callers would misuse.
    """
    s = sodium.crypto_core_ed25519_scalar_reduce(expand_message_xmd(msg, dst, NONREDUCED_SCALAR_BYTES))
    if s == SCALAR_ZERO:
        raise CryptoError("hash_to_scalar: the hash reduced to zero")
    return s


def small_order_points() -> tuple[bytes, ...]:
    """Canonical encodings of the eight points of small order (torsion subgroup), for negative tests."""
    # The 8-torsion points: identity (0, 1), (0, -1), and the points of order 4 and 8.
    p = 2**255 - 19
    encodings = [
        (1).to_bytes(32, "little"),  # identity
        (p - 1).to_bytes(32, "little"),  # (0, -1), order 2
        (0).to_bytes(32, "little"),  # (+-sqrt(-1), 0), order 4
        (0 | 1 << 255).to_bytes(32, "little"),
    ]
    # Order-8 points have y = +-sqrt((1 - sqrt(d+1)) ...); their canonical encodings are well known:
    y8 = 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7
    encodings += [
        y8.to_bytes(32, "little"),
        (y8 | 1 << 255).to_bytes(32, "little"),
        (p - y8).to_bytes(32, "little"),
        ((p - y8) | 1 << 255).to_bytes(32, "little"),
    ]
    return tuple(encodings)
