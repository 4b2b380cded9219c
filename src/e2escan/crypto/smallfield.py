"""The 64-bit prime field of the Apple PSI System's detectable hash (§4.3).

Bhowmick, Boneh, Myers, Talwar, Tarbe, "The Apple PSI System" (2021), §4.3:
"let l be a 64-bit prime"; the (s, t)-detectable hash is
``DHF(k, x0) = (x0, p_1(x0), .., p_s(x0))`` in ``F_l^(s+1)`` for a key of ``s``
secret polynomials ``p_i`` of degree at most ``t - 1`` (the paper's ``t``: ``t + 1``
matches are needed, so it is this project's ``threshold - 1``; the polynomials
here have degree ``threshold - 2``). Every value is 8 bytes instead of a 32-byte
scalar of edwards25519's group order, so a voucher's detectable-hash part is
``(s + 1) * 8`` bytes (264 at ``s = 32``) instead of ``s * 32`` (1,024).

Why 64 bits are enough (the paper's argument, with its numbers):

* weak t-wise independence holds for *distinct* ``x0``; ``x0`` is a PRF output
  (or OS-random), so among ``m`` opened vouchers of one account a collision has
  probability at most ``m^2 / 2^65`` (about ``2^-45`` at ``m = 2^10``);
* the detection algorithm fails with probability about ``(s + t) / l``
  (random columns dependent by chance), about ``2^-58`` at ``s = 32, t = 30``.

``P64 = 2^64 - 59`` is the largest prime below ``2^64`` (tests check its
primality with a deterministic Miller-Rabin). Elements are encoded as 8 bytes,
little-endian, and a receiver rejects any encoding ``>= P64``
(:func:`require_element`). Random elements come from the OS CSPRNG
(:func:`random_element`); PRF-derived ones reduce 128 bits modulo ``P64``
(:func:`element_from_bytes`: statistical distance from uniform below ``2^-64``).
The arithmetic is exact on Python integers; like the Shamir routines it is not
constant time and is used by the device only to evaluate its own polynomials.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from ..errors import DecodeError, SecretSharingError

#: The field's prime: the largest prime below 2^64.
P64 = 2**64 - 59
#: Bytes of one encoded element.
ELEMENT_BYTES = 8
#: Bytes :func:`element_from_bytes` needs (so the reduction's bias is below 2^-64).
PRF_BYTES = 16


def random_element() -> int:
    """A uniformly random element of ``F_P64`` from the OS CSPRNG."""
    return secrets.randbelow(P64)


def element_from_bytes(data: bytes) -> int:
    """``int(data) mod P64`` for a PRF output of at least :data:`PRF_BYTES` bytes (bias below 2^-64)."""
    if len(data) < PRF_BYTES:
        raise SecretSharingError(f"need at least {PRF_BYTES} PRF bytes for a uniform field element, got {len(data)}")
    return int.from_bytes(data, "little") % P64


def encode(value: int) -> bytes:
    """The 8-byte little-endian encoding of an element (``0 <= value < P64``)."""
    if not 0 <= value < P64:
        raise SecretSharingError(f"not an element of F_(2^64-59): {value}")
    return value.to_bytes(ELEMENT_BYTES, "little")


def require_element(data: bytes, what: str) -> int:
    """Decode a received element; :class:`DecodeError` naming ``what`` unless it is 8 bytes below ``P64``."""
    if len(data) != ELEMENT_BYTES:
        raise DecodeError(f"{what}: expected {ELEMENT_BYTES} bytes, got {len(data)}")
    value = int.from_bytes(data, "little")
    if value >= P64:
        raise DecodeError(f"{what}: {value} is not below the field prime 2^64 - 59 (non-canonical encoding)")
    return value


class DetectableHash64:
    """The key of the paper's detectable hash over ``F_P64``: ``width`` secret polynomials of degree ``degree``.

    :meth:`evaluate` gives ``(x0, p_1(x0), .., p_width(x0))``; the server detects genuine
    rows with :class:`~e2escan.crypto.shamir.GenuineDetector` at ``modulus = P64``, the row
    being ``(x0, (p_1(x0), ..))``.
    """

    __slots__ = ("_polys", "degree", "width")

    def __init__(self, polynomials: Sequence[Sequence[int]]) -> None:
        if not polynomials:
            raise SecretSharingError("a detectable hash needs width >= 1 polynomials")
        degree = len(polynomials[0]) - 1
        if degree < 0 or any(len(p) != degree + 1 for p in polynomials):
            raise SecretSharingError("all detectable-hash polynomials must have the same degree >= 0")
        if any(not 0 <= c < P64 for p in polynomials for c in p):
            raise SecretSharingError("detectable-hash coefficients must be elements of F_(2^64-59)")
        self._polys = tuple(tuple(p) for p in polynomials)
        self.degree = degree
        self.width = len(polynomials)

    @classmethod
    def random(cls, degree: int, width: int) -> DetectableHash64:
        """Fresh uniformly random coefficients from the OS CSPRNG."""
        if degree < 0 or width < 1:
            raise SecretSharingError(f"need degree >= 0 and width >= 1, got degree={degree}, width={width}")
        return cls([[random_element() for _ in range(degree + 1)] for _ in range(width)])

    def evaluate(self, x0: int) -> tuple[int, ...]:
        """``(x0, p_1(x0), .., p_width(x0))``, the paper's ``DHF(k, x0)``."""
        if not 0 <= x0 < P64:
            raise SecretSharingError(f"not an element of F_(2^64-59): {x0}")
        powers = [1] * (self.degree + 1)
        for i in range(1, self.degree + 1):
            powers[i] = powers[i - 1] * x0 % P64
        return (x0, *(sum(c * w for c, w in zip(p, powers, strict=True)) % P64 for p in self._polys))

    def __repr__(self) -> str:
        return f"DetectableHash64(degree={self.degree}, width={self.width})"
