"""Shamir secret sharing over the scalar field of edwards25519, and a detectable hash.

Field: the integers modulo the group order ``ELL`` of :mod:`e2escan.crypto.group`,
with every operation done by libsodium (``crypto_core_ed25519_scalar_*``), so
a secret shared here is a group scalar and can key group operations directly.

* :class:`SharingPolynomial` is a random polynomial ``f`` of degree ``t - 1``
  with ``f(0) = secret``; a :class:`Share` is ``(x, f(x))`` for a nonzero ``x``.
  Any ``t`` shares with distinct ``x`` determine ``f`` and hence the secret
  (:func:`reconstruct`); any ``t - 1`` are uniformly distributed whatever the
  secret, because for each candidate secret there is exactly one polynomial of
  degree ``t - 1`` through them and that candidate.
* :func:`reconstruct` interpolates from the first ``t`` shares and checks that
  every further share lies on the same polynomial; a share set that does not
  raises :class:`SecretSharingError` naming the first offending share.
  :func:`find_inconsistent` reports every such share.
* :class:`DetectableHash` is the (s, t)-detectable hash function of the Apple
  PSI System (Bhowmick, Boneh, Myers, Talwar, Tarbe, 2021): a secret key of
  ``width`` random polynomials of degree ``degree`` evaluated at ``x``. Given a
  list of rows of which at least ``degree + 2`` are genuine evaluations and at
  most ``width`` are uniformly random, :func:`detect_genuine` finds exactly the
  genuine rows (with overwhelming probability) by linear algebra: the left
  kernel of ``[V | Y]`` (``V`` the Vandermonde rows ``1, x, .., x^degree`` and
  ``Y`` the hash values) is spanned by vectors supported on genuine rows only.
  With at most ``degree + 1`` genuine rows the values are uniformly random, so
  nothing is detectable below that count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import DecodeError, SecretSharingError
from .group import (
    SCALAR_BYTES,
    SCALAR_ONE,
    SCALAR_ZERO,
    _sc_add,
    _sc_inv,
    _sc_mul,
    _sc_sub,
    batch_invert,
    dot_rows,
    polynomial_eval,
    powers,
    random_scalar,
    require_scalar,
)


@dataclass(frozen=True, slots=True)
class Share:
    """One point ``(x, y = f(x))`` of a sharing polynomial; ``x`` is nonzero."""

    x: bytes
    y: bytes

    def __post_init__(self) -> None:
        try:
            require_scalar(self.x, "share x", nonzero=True)
            require_scalar(self.y, "share y")
        except DecodeError as exc:  # callers of this module catch SecretSharingError
            raise SecretSharingError(str(exc)) from exc

    def to_bytes(self) -> bytes:
        return self.x + self.y

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        if len(data) != 2 * SCALAR_BYTES:
            raise SecretSharingError(f"share: expected {2 * SCALAR_BYTES} bytes, got {len(data)}")
        return cls(data[:SCALAR_BYTES], data[SCALAR_BYTES:])


def evaluate_polynomial(coefficients: Sequence[bytes], x: bytes) -> bytes:
    """``sum_i c_i x^i`` by Horner's rule (``coefficients[0]`` is the constant term)."""
    return polynomial_eval(coefficients, x)


class SharingPolynomial:
    """A secret polynomial of degree ``threshold - 1`` whose constant term is the secret."""

    __slots__ = ("_coefficients", "threshold")

    def __init__(self, coefficients: Sequence[bytes]) -> None:
        if not coefficients:
            raise SecretSharingError("a sharing polynomial needs at least the constant term")
        for i, c in enumerate(coefficients):
            require_scalar(c, f"coefficient {i}")
        self._coefficients = tuple(coefficients)
        self.threshold = len(coefficients)

    @classmethod
    def random(cls, secret: bytes, threshold: int) -> SharingPolynomial:
        """Fresh uniformly random coefficients (OS CSPRNG) above the constant term ``secret``."""
        if threshold < 1:
            raise SecretSharingError(f"threshold must be >= 1, got {threshold}")
        require_scalar(secret, "secret")
        return cls([secret] + [random_scalar() for _ in range(threshold - 1)])

    @property
    def secret(self) -> bytes:
        return self._coefficients[0]

    def evaluate(self, x: bytes) -> bytes:
        return evaluate_polynomial(self._coefficients, x)

    def share(self, x: bytes) -> Share:
        require_scalar(x, "share x", nonzero=True)
        return Share(x, self.evaluate(x))

    def __repr__(self) -> str:
        return f"SharingPolynomial(threshold={self.threshold})"


def split(secret: bytes, threshold: int, n: int) -> list[Share]:
    """Share ``secret`` among ``n`` holders at ``x = 1..n``; any ``threshold`` of them reconstruct it."""
    if not 1 <= threshold <= n:
        raise SecretSharingError(f"need 1 <= threshold <= n, got threshold={threshold}, n={n}")
    poly = SharingPolynomial.random(secret, threshold)
    return [poly.share((i).to_bytes(SCALAR_BYTES, "little")) for i in range(1, n + 1)]


def _distinct(shares: Sequence[Share]) -> None:
    seen: dict[bytes, int] = {}
    for i, s in enumerate(shares):
        if s.x in seen:
            raise SecretSharingError(f"shares {seen[s.x]} and {i} have the same x; x values must be distinct")
        seen[s.x] = i


def lagrange_coefficients(xs: Sequence[bytes], at: bytes = SCALAR_ZERO) -> list[bytes]:
    """``l_i(at)`` for the Lagrange basis of the distinct points ``xs``."""
    k = len(xs)
    numerators = []
    denominators = []
    for i in range(k):
        num = SCALAR_ONE
        den = SCALAR_ONE
        for j in range(k):
            if i == j:
                continue
            num = _sc_mul(num, _sc_sub(at, xs[j]))
            den = _sc_mul(den, _sc_sub(xs[i], xs[j]))
        numerators.append(num)
        denominators.append(den)
    inverses = batch_invert(denominators)
    return [_sc_mul(n, d) for n, d in zip(numerators, inverses, strict=True)]


def interpolate_at(shares: Sequence[Share], at: bytes = SCALAR_ZERO) -> bytes:
    """The value at ``at`` of the unique polynomial of degree ``len(shares) - 1`` through ``shares``."""
    if not shares:
        raise SecretSharingError("cannot interpolate from zero shares")
    _distinct(shares)
    coeffs = lagrange_coefficients([s.x for s in shares], at)
    acc = SCALAR_ZERO
    for c, s in zip(coeffs, shares, strict=True):
        acc = _sc_add(acc, _sc_mul(c, s.y))
    return acc


def interpolate_polynomial(shares: Sequence[Share]) -> list[bytes]:
    """Coefficients (constant term first) of the polynomial of degree ``len(shares) - 1`` through ``shares``."""
    if not shares:
        raise SecretSharingError("cannot interpolate from zero shares")
    _distinct(shares)
    k = len(shares)
    xs = [s.x for s in shares]
    # Product polynomial prod_j (X - x_j), coefficients constant-first.
    full = [SCALAR_ONE]
    for xj in xs:
        nxt = [SCALAR_ZERO] * (len(full) + 1)
        for d, c in enumerate(full):
            nxt[d + 1] = _sc_add(nxt[d + 1], c)
            nxt[d] = _sc_sub(nxt[d], _sc_mul(c, xj))
        full = nxt
    result = [SCALAR_ZERO] * k
    denominators = []
    quotients = []
    for i in range(k):
        # Divide prod (X - x_j) by (X - x_i) synthetically.
        q = [SCALAR_ZERO] * k
        q[k - 1] = full[k]
        for d in range(k - 1, 0, -1):
            q[d - 1] = _sc_add(full[d], _sc_mul(xs[i], q[d]))
        quotients.append(q)
        denominators.append(evaluate_polynomial(q, xs[i]))
    inverses = batch_invert(denominators)
    for i in range(k):
        scale = _sc_mul(shares[i].y, inverses[i])
        for d in range(k):
            result[d] = _sc_add(result[d], _sc_mul(scale, quotients[i][d]))
    return result


def find_inconsistent(shares: Sequence[Share], threshold: int) -> list[int]:
    """Indices of shares (after the first ``threshold``) that are off the polynomial those define.

    Empty when all shares lie on one polynomial of degree ``threshold - 1``.
    """
    if len(shares) < threshold:
        raise SecretSharingError(f"need at least {threshold} shares, got {len(shares)}")
    _distinct(shares)
    base = list(shares[:threshold])
    if len(shares) == threshold:
        return []
    coefficients = interpolate_polynomial(base)
    return [
        threshold + i
        for i, s in enumerate(shares[threshold:])
        if evaluate_polynomial(coefficients, s.x) != s.y
    ]


def reconstruct(shares: Sequence[Share], threshold: int) -> bytes:
    """The secret from at least ``threshold`` shares with distinct ``x``.

    Interpolates through the first ``threshold`` shares and checks every
    further share lies on that polynomial; raises :class:`SecretSharingError`
    if there are too few shares or any is inconsistent. With exactly
    ``threshold`` shares no check is possible: any ``threshold`` points lie on
    some polynomial of degree ``threshold - 1``.
    """
    if threshold < 1:
        raise SecretSharingError(f"threshold must be >= 1, got {threshold}")
    if len(shares) < threshold:
        raise SecretSharingError(
            f"need at least {threshold} shares to reconstruct, got {len(shares)}"
        )
    bad = find_inconsistent(shares, threshold)
    if bad:
        raise SecretSharingError(
            f"share {bad[0]} is not on the polynomial through the first {threshold} shares "
            f"({len(bad)} inconsistent share(s): {bad[:10]})"
        )
    return interpolate_at(list(shares[:threshold]))


# --- detectable hash ---------------------------------------------------------


class DetectableHash:
    """The keyed (width, degree+2)-detectable hash ``x -> (p_1(x), .., p_width(x))``.

    The key is ``width`` secret polynomials of degree ``degree``. Genuine
    outputs at distinct ``x`` are evaluations of those polynomials; a
    synthetic output is ``width`` uniformly random scalars. See the module
    docstring for what :func:`detect_genuine` can tell apart.
    """

    __slots__ = ("_polys", "degree", "width")

    def __init__(self, polynomials: Sequence[Sequence[bytes]]) -> None:
        if not polynomials:
            raise SecretSharingError("a detectable hash needs width >= 1 polynomials")
        degree = len(polynomials[0]) - 1
        if degree < 0 or any(len(p) != degree + 1 for p in polynomials):
            raise SecretSharingError("all detectable-hash polynomials must have the same degree >= 0")
        self._polys = tuple(tuple(p) for p in polynomials)
        self.degree = degree
        self.width = len(polynomials)

    @classmethod
    def random(cls, degree: int, width: int) -> DetectableHash:
        if degree < 0 or width < 1:
            raise SecretSharingError(f"need degree >= 0 and width >= 1, got degree={degree}, width={width}")
        return cls([[random_scalar() for _ in range(degree + 1)] for _ in range(width)])

    def evaluate(self, x: bytes) -> tuple[bytes, ...]:
        # Powers of x once, then one inner product per polynomial.
        return tuple(dot_rows(self._polys, powers(x, self.degree)))

    def __repr__(self) -> str:
        return f"DetectableHash(degree={self.degree}, width={self.width})"


def _vandermonde_row(x: bytes, degree: int) -> list[bytes]:
    row = [SCALAR_ONE]
    for _ in range(degree):
        row.append(_sc_mul(row[-1], x))
    return row


def detect_genuine(rows: Sequence[tuple[bytes, Sequence[bytes]]], degree: int) -> frozenset[int]:
    """Indices of the rows ``(x, values)`` that are genuine detectable-hash outputs.

    Requires distinct ``x``. Returns the union of the supports of a basis of
    the left kernel of ``[V | Y]``; when at least ``degree + 2`` rows are
    genuine and at most ``len(values)`` are random, that union is exactly the
    genuine rows (except with probability about ``n / ELL``). Returns the empty
    set when no linear dependency exists, which is the case, with the same
    probability, whenever at most ``degree + 1`` rows are genuine.
    """
    n = len(rows)
    if n == 0:
        return frozenset()
    width = len(rows[0][1])
    xs = [r[0] for r in rows]
    if len(set(xs)) != n:
        raise SecretSharingError("detect_genuine: rows must have distinct x")
    if any(len(r[1]) != width for r in rows):
        raise SecretSharingError("detect_genuine: every row must have the same number of values")
    # A^T has one row per column of [V | Y] and one column per candidate row.
    columns = [_vandermonde_row(x, degree) + list(values) for x, values in rows]
    m = degree + 1 + width
    matrix = [[columns[j][i] for j in range(n)] for i in range(m)]
    pivots = _row_reduce(matrix, n)
    pivot_cols = {c for _, c in pivots}
    free = [c for c in range(n) if c not in pivot_cols]
    if not free:
        return frozenset()
    support = set(free)
    for r, c in pivots:
        row = matrix[r]
        if any(row[f] != SCALAR_ZERO for f in free):
            support.add(c)
    return frozenset(support)


def _row_reduce(matrix: list[list[bytes]], ncols: int) -> list[tuple[int, int]]:
    """Reduced row echelon form in place; returns the (row, column) pivots."""
    pivots: list[tuple[int, int]] = []
    r = 0
    nrows = len(matrix)
    for c in range(ncols):
        if r == nrows:
            break
        p = next((i for i in range(r, nrows) if matrix[i][c] != SCALAR_ZERO), None)
        if p is None:
            continue
        matrix[r], matrix[p] = matrix[p], matrix[r]
        inv = _sc_inv(matrix[r][c])
        pivot_row = [_sc_mul(v, inv) if v != SCALAR_ZERO else v for v in matrix[r]]
        matrix[r] = pivot_row
        for i in range(nrows):
            if i == r:
                continue
            factor = matrix[i][c]
            if factor == SCALAR_ZERO:
                continue
            row = matrix[i]
            for k in range(c, ncols):
                pv = pivot_row[k]
                if pv != SCALAR_ZERO:
                    row[k] = _sc_sub(row[k], _sc_mul(factor, pv))
        pivots.append((r, c))
        r += 1
    return pivots
