"""Shamir secret sharing over the scalar field of edwards25519, and a detectable hash.

Field: the integers modulo the group order ``ELL`` of :mod:`e2escan.crypto.group`,
so a secret shared here is a group scalar and can key group operations
directly. Sharing (the dealer's polynomial, the detectable-hash key and their
evaluations) uses libsodium's ``crypto_core_ed25519_scalar_*``. The receiver's
bulk linear algebra (Lagrange coefficients, interpolation of the whole
polynomial, the row reduction behind :func:`detect_genuine`) makes
``O(t^2)`` to ``O(t^2 n)`` field operations; through libsodium each one is a
foreign call plus a Python bytes object, which made a threshold of 200 take
38 s to open, so these routines compute on Python integers modulo ``ELL``
instead (exact arithmetic in the same field; tests check them against the
libsodium operations). Like all Python code they are not constant time; they
run on the receiving server, on values it holds.

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

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import DecodeError, SecretSharingError
from .group import (
    ELL,
    SCALAR_BYTES,
    SCALAR_ZERO,
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


def _int(s: bytes) -> int:
    return int.from_bytes(s, "little")


def _scalar(n: int) -> bytes:
    return n.to_bytes(SCALAR_BYTES, "little")


def _batch_inverse(values: Sequence[int], modulus: int = ELL) -> list[int]:
    """Inverses mod ``modulus`` (a prime) of nonzero ``values`` with one modular inversion (Montgomery's trick)."""
    prefix = [1] * (len(values) + 1)
    for i, v in enumerate(values):
        prefix[i + 1] = prefix[i] * v % modulus
    inv = pow(prefix[-1], -1, modulus)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inv * prefix[i] % modulus
        inv = inv * values[i] % modulus
    return out


def _lagrange_ints(xs: Sequence[int], at: int) -> list[int]:
    k = len(xs)
    numerators, denominators = [], []
    for i in range(k):
        num = den = 1
        xi = xs[i]
        for j in range(k):
            if i != j:
                num = num * (at - xs[j]) % ELL
                den = den * (xi - xs[j]) % ELL
        numerators.append(num)
        denominators.append(den)
    return [n * d % ELL for n, d in zip(numerators, _batch_inverse(denominators), strict=True)]


def lagrange_coefficients(xs: Sequence[bytes], at: bytes = SCALAR_ZERO) -> list[bytes]:
    """``l_i(at)`` for the Lagrange basis of the distinct points ``xs``."""
    return [_scalar(c) for c in _lagrange_ints([_int(x) for x in xs], _int(at))]


def interpolate_at(shares: Sequence[Share], at: bytes = SCALAR_ZERO) -> bytes:
    """The value at ``at`` of the unique polynomial of degree ``len(shares) - 1`` through ``shares``."""
    if not shares:
        raise SecretSharingError("cannot interpolate from zero shares")
    _distinct(shares)
    coeffs = _lagrange_ints([_int(s.x) for s in shares], _int(at))
    return _scalar(sum(c * _int(s.y) for c, s in zip(coeffs, shares, strict=True)) % ELL)


def interpolate_polynomial(shares: Sequence[Share]) -> list[bytes]:
    """Coefficients (constant term first) of the polynomial of degree ``len(shares) - 1`` through ``shares``."""
    if not shares:
        raise SecretSharingError("cannot interpolate from zero shares")
    _distinct(shares)
    k = len(shares)
    xs = [_int(s.x) for s in shares]
    # Product polynomial prod_j (X - x_j), coefficients constant-first.
    full = [1]
    for xj in xs:
        nxt = [0] * (len(full) + 1)
        for d, c in enumerate(full):
            nxt[d + 1] = (nxt[d + 1] + c) % ELL
            nxt[d] = (nxt[d] - c * xj) % ELL
        full = nxt
    quotients, denominators = [], []
    for i in range(k):
        # Divide prod (X - x_i') by (X - x_i) synthetically; the quotient's value at x_i is the denominator.
        q = [0] * k
        q[k - 1] = full[k]
        for d in range(k - 1, 0, -1):
            q[d - 1] = (full[d] + xs[i] * q[d]) % ELL
        quotients.append(q)
        value = 0
        for c in reversed(q):
            value = (value * xs[i] + c) % ELL
        denominators.append(value)
    result = [0] * k
    for share, q, inv in zip(shares, quotients, _batch_inverse(denominators), strict=True):
        scale = _int(share.y) * inv % ELL
        for d in range(k):
            result[d] += scale * q[d]
    return [_scalar(c % ELL) for c in result]


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


class GenuineDetector:
    """:func:`detect_genuine` for rows that arrive one at a time (a server's opened vouchers).

    The left kernel of ``[V | Y]`` is ``{mu B : mu (B Y) = 0}`` for a basis
    ``B`` of the left kernel of the Vandermonde part ``V`` (rows
    ``1, x, .., x^degree``). ``B`` is explicit: vector ``s`` is supported on
    the ``k = degree + 2`` consecutive rows ``s .. s + k - 1`` with weights
    ``w_i = 1 / prod_{j != i} (x_i - x_j)`` (the coefficients of the divided
    difference of order ``k - 1``, which annihilates every polynomial of
    degree ``k - 2``); the vectors are independent (each adds a new last row)
    and there are ``n - k + 1`` of them, the kernel's dimension. So only the
    ``(n - k + 1) x width`` matrix ``B Y`` is row-reduced.

    Each appended row adds one kernel vector, slid from the previous one
    (``w_i <- w_i (x_i - x_s) / (x_i - x_{s+k})`` on the shared rows, one batch
    inversion) and its row of ``B Y``: ``O(k (1 + width))`` field operations per
    row. :meth:`genuine` then costs ``O(width^2 (n - k))`` plus the support
    computation, instead of ``O((degree + width)^2 n)`` for eliminating the
    whole matrix (:func:`_detect_genuine_dense`, the tested reference).
    """

    def __init__(self, degree: int, width: int, modulus: int = ELL) -> None:
        if degree < 0 or width < 0:
            raise SecretSharingError(f"need degree >= 0 and width >= 0, got degree={degree}, width={width}")
        if modulus < 2:
            raise SecretSharingError(f"need a prime modulus, got {modulus}")
        self.degree, self.width, self.k = degree, width, degree + 2
        #: The prime field the rows live in: ``ELL`` (scalars) or a 64-bit prime (:mod:`.smallfield`).
        self.modulus = modulus
        self._xs: list[int] = []
        self._seen: set[int] = set()
        self._window_ys: deque[list[int]] = deque(maxlen=self.k)  # values of the last k rows
        self._basis: list[list[int]] = []  # _basis[s][a]: weight of row s + a in kernel vector s
        self._by: list[list[int]] = []  # _by[s]: kernel vector s times Y

    def seen(self, x: bytes) -> bool:
        """Whether a row with abscissa ``x`` was added (a repeated ``x`` cannot be added)."""
        return _int(x) in self._seen

    def add(self, x: bytes, values: Sequence[bytes]) -> None:
        """Append the row ``(x, values)`` (little-endian field elements below the modulus); ``x`` must be new."""
        xi, ys = _int(x), [_int(v) for v in values]  # each value converted once
        if xi >= self.modulus or any(y >= self.modulus for y in ys):
            raise SecretSharingError("detect_genuine: every value must be a field element below the modulus")
        if xi in self._seen:
            raise SecretSharingError("detect_genuine: rows must have distinct x")
        if len(ys) != self.width:
            raise SecretSharingError("detect_genuine: every row must have the same number of values")
        self._xs.append(xi)
        self._seen.add(xi)
        self._window_ys.append(ys)
        n, k, mod = len(self._xs), self.k, self.modulus
        if n < k:
            return
        xs, s = self._xs, n - k  # the new window covers rows s .. n - 1
        if s == 0:
            window = xs[:k]
            products = []
            for i, x_i in enumerate(window):
                prod = 1
                for j, x_j in enumerate(window):
                    if i != j:
                        prod = prod * (x_i - x_j) % mod
                products.append(prod)
            weights = _batch_inverse(products, mod)
        else:
            prev, x_out, x_new = self._basis[-1], xs[s - 1], xs[n - 1]
            shared = xs[s : n - 1]
            # Inverses of (x_i - x_new) for the shared rows, and the product for the new row, at once.
            new_product = 1
            for x_j in shared:
                new_product = new_product * (x_new - x_j) % mod
            inverses = _batch_inverse([(x_i - x_new) % mod for x_i in shared] + [new_product], mod)
            weights = [prev[a + 1] * (x_i - x_out) % mod * inverses[a] % mod for a, x_i in enumerate(shared)]
            weights.append(inverses[-1])
        self._basis.append(weights)
        window_ys = self._window_ys  # exactly the rows s .. n - 1 of the new window
        self._by.append([sum(w * window_ys[a][c] for a, w in enumerate(weights)) % mod for c in range(self.width)])

    def genuine(self) -> frozenset[int]:
        """Indices (in arrival order) of the rows that are genuine; see :func:`detect_genuine`."""
        n, windows, mod = len(self._xs), len(self._basis), self.modulus
        if windows == 0:
            return frozenset()  # V has full row rank: no dependency at all
        by_t = [[self._by[s][c] for s in range(windows)] for c in range(self.width)]  # (B Y)^T, reduced in place
        pivots = _row_reduce(by_t, windows, mod)
        pivot_cols = {c for _, c in pivots}
        support: set[int] = set()
        for f in (c for c in range(windows) if c not in pivot_cols):
            # Kernel vector of (B Y)^T with mu_f = 1: mu_c = -row[f] for each pivot (row, c).
            mu = {f: 1}
            for r, c in pivots:
                if by_t[r][f]:
                    mu[c] = -by_t[r][f] % mod
            combined = [0] * n
            for s, coefficient in mu.items():
                for a, weight in enumerate(self._basis[s]):
                    combined[s + a] += coefficient * weight
            support.update(i for i, v in enumerate(combined) if v % mod)
        return frozenset(support)


def detect_genuine(rows: Sequence[tuple[bytes, Sequence[bytes]]], degree: int, modulus: int = ELL) -> frozenset[int]:
    """Indices of the rows ``(x, values)`` that are genuine detectable-hash outputs.

    Requires distinct ``x``. Returns the union of the supports of the left
    kernel of ``[V | Y]`` (``V`` the Vandermonde rows ``1, x, .., x^degree``,
    ``Y`` the values); when at least ``degree + 2`` rows are genuine and at
    most ``len(values)`` are random, that union is exactly the genuine rows
    (except with probability about ``n / ELL``). Returns the empty set when no
    linear dependency exists, which is the case, with the same probability,
    whenever at most ``degree + 1`` rows are genuine. The union of supports
    does not depend on the kernel basis; :class:`GenuineDetector` describes
    the method (and takes rows one at a time).
    """
    if not rows:
        return frozenset()
    detector = GenuineDetector(degree, len(rows[0][1]), modulus)
    for x, values in rows:
        detector.add(x, values)
    return detector.genuine()


def _detect_genuine_dense(rows: Sequence[tuple[bytes, Sequence[bytes]]], degree: int, modulus: int = ELL) -> frozenset[int]:
    """:func:`detect_genuine` by row-reducing the whole ``[V | Y]^T``: ``O((degree + width)^2 n)``.

    The reference the structured method is tested against; not used by the protocols.
    """
    n = len(rows)
    if n == 0:
        return frozenset()
    width = len(rows[0][1])
    # A^T has one row per column of [V | Y] and one column per candidate row.
    m = degree + 1 + width
    matrix = [[0] * n for _ in range(m)]
    for j, (x, values) in enumerate(rows):
        xi, power = _int(x), 1
        for i in range(degree + 1):
            matrix[i][j] = power
            power = power * xi % modulus
        for i, v in enumerate(values):
            matrix[degree + 1 + i][j] = _int(v)
    pivots = _row_reduce(matrix, n, modulus)
    pivot_cols = {c for _, c in pivots}
    free = [c for c in range(n) if c not in pivot_cols]
    if not free:
        return frozenset()
    support = set(free)
    for r, c in pivots:
        row = matrix[r]
        if any(row[f] for f in free):
            support.add(c)
    return frozenset(support)


def _row_reduce(matrix: list[list[int]], ncols: int, modulus: int = ELL) -> list[tuple[int, int]]:
    """Reduced row echelon form mod the prime ``modulus`` in place; returns the (row, column) pivots."""
    pivots: list[tuple[int, int]] = []
    r = 0
    nrows = len(matrix)
    for c in range(ncols):
        if r == nrows:
            break
        p = next((i for i in range(r, nrows) if matrix[i][c]), None)
        if p is None:
            continue
        matrix[r], matrix[p] = matrix[p], matrix[r]
        inv = pow(matrix[r][c], -1, modulus)
        pivot_row = [v * inv % modulus for v in matrix[r]]
        matrix[r] = pivot_row
        nonzero = [k for k in range(c, ncols) if pivot_row[k]]
        for i in range(nrows):
            if i == r:
                continue
            row = matrix[i]
            factor = row[c]
            if not factor:
                continue
            for k in nonzero:
                row[k] = (row[k] - factor * pivot_row[k]) % modulus
        pivots.append((r, c))
        r += 1
    return pivots
