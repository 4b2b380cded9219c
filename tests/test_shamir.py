"""Shamir sharing over the edwards25519 scalar field, and the detectable hash."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.crypto import group as g
from e2escan.crypto import shamir as sh
from e2escan.errors import SecretSharingError

SLOW = settings(max_examples=25, deadline=None)


@SLOW
@given(st.integers(1, 6), st.integers(0, 4), st.randoms(use_true_random=False))
def test_any_t_of_n_shares_reconstruct(t: int, extra: int, rnd: random.Random) -> None:
    n = t + extra
    secret = g.random_scalar()
    shares = sh.split(secret, t, n)
    subset = rnd.sample(shares, t)
    assert sh.reconstruct(subset, t) == secret
    # More than t consistent shares reconstruct too (and pass the consistency check).
    assert sh.reconstruct(rnd.sample(shares, n), t) == secret


@SLOW
@given(st.integers(2, 6), st.randoms(use_true_random=False))
def test_t_minus_1_shares_are_consistent_with_every_candidate_secret(t: int, rnd: random.Random) -> None:
    secret = g.random_scalar()
    shares = rnd.sample(sh.split(secret, t, t + 2), t - 1)
    for candidate in (g.random_scalar(), g.SCALAR_ZERO, secret):
        # The polynomial through the t-1 shares and (0, candidate) has degree t-1 ...
        point = sh.Share.__new__(sh.Share)
        object.__setattr__(point, "x", g.SCALAR_ZERO)
        object.__setattr__(point, "y", candidate)
        coefficients = sh.interpolate_polynomial([*shares, point])
        assert len(coefficients) == t
        assert coefficients[0] == candidate
        # ... and passes through every one of the t-1 shares: they cannot rule the candidate out.
        assert all(sh.evaluate_polynomial(coefficients, s.x) == s.y for s in shares)


@SLOW
@given(st.integers(1, 5), st.integers(1, 3), st.data())
def test_wrong_shares_are_detected(t: int, extra: int, data: st.DataObject) -> None:
    shares = sh.split(g.random_scalar(), t, t + extra)
    bad_index = data.draw(st.integers(t, t + extra - 1))
    forged = list(shares)
    forged[bad_index] = sh.Share(shares[bad_index].x, g.scalar_add(shares[bad_index].y, g.SCALAR_ONE))
    assert sh.find_inconsistent(forged, t) == [bad_index]
    with pytest.raises(SecretSharingError, match=f"share {bad_index}"):
        sh.reconstruct(forged, t)


def test_too_few_and_duplicate_shares() -> None:
    shares = sh.split(g.random_scalar(), 3, 5)
    with pytest.raises(SecretSharingError, match="at least 3"):
        sh.reconstruct(shares[:2], 3)
    with pytest.raises(SecretSharingError, match="same x"):
        sh.reconstruct([shares[0], shares[0], shares[1]], 3)
    with pytest.raises(SecretSharingError, match="threshold"):
        sh.split(g.random_scalar(), 4, 3)


def test_share_validation_and_bytes_round_trip() -> None:
    s = sh.split(g.random_scalar(), 2, 2)[0]
    assert sh.Share.from_bytes(s.to_bytes()) == s
    with pytest.raises(SecretSharingError, match="nonzero"):
        sh.Share(g.SCALAR_ZERO, g.SCALAR_ONE)
    with pytest.raises(SecretSharingError, match="non-canonical"):
        sh.Share(g.SCALAR_ONE, g.ELL.to_bytes(32, "little"))


def test_interpolated_polynomial_matches_lagrange_at_every_point() -> None:
    poly = sh.SharingPolynomial.random(g.random_scalar(), 5)
    shares = [poly.share(g.random_scalar()) for _ in range(5)]
    coefficients = sh.interpolate_polynomial(shares)
    assert coefficients[0] == poly.secret
    x = g.random_scalar()
    assert sh.evaluate_polynomial(coefficients, x) == poly.evaluate(x) == sh.interpolate_at(shares, x)


def _rows(dh: sh.DetectableHash, genuine: int, synthetic: int, rnd: random.Random):
    rows = [(x, dh.evaluate(x)) for x in (g.random_scalar() for _ in range(genuine))]
    rows += [(g.random_scalar(), tuple(g.random_scalar() for _ in range(dh.width))) for _ in range(synthetic)]
    order = list(range(len(rows)))
    rnd.shuffle(order)
    shuffled = [rows[i] for i in order]
    genuine_at = frozenset(j for j, i in enumerate(order) if i < genuine)
    return shuffled, genuine_at


@SLOW
@given(st.integers(2, 7), st.integers(1, 6), st.data())
def test_detectable_hash_finds_exactly_the_genuine_rows_at_threshold(t: int, width: int, data: st.DataObject) -> None:
    # Degree t - 2: t genuine rows are detectable, t - 1 are not.
    dh = sh.DetectableHash.random(t - 2, width)
    synthetic = data.draw(st.integers(0, width))
    genuine = data.draw(st.integers(t, t + 3))
    rnd = data.draw(st.randoms(use_true_random=False))
    rows, genuine_at = _rows(dh, genuine, synthetic, rnd)
    assert sh.detect_genuine(rows, t - 2) == genuine_at
    below, _ = _rows(dh, t - 1, synthetic, rnd)
    assert sh.detect_genuine(below, t - 2) == frozenset()


def test_detect_genuine_rejects_duplicate_x() -> None:
    dh = sh.DetectableHash.random(1, 2)
    x = g.random_scalar()
    with pytest.raises(SecretSharingError, match="distinct"):
        sh.detect_genuine([(x, dh.evaluate(x)), (x, dh.evaluate(x))], 1)


def _seeded_scalar(rnd: random.Random, small: bool = False) -> bytes:
    return g.scalar_from_int(rnd.randrange(1, 50) if small else rnd.randrange(1, g.ELL))


@SLOW
@given(st.integers(0, 6), st.integers(1, 5), st.integers(0, 9), st.integers(0, 8), st.booleans(), st.integers(0, 2**32 - 1))
def test_structured_detection_equals_the_dense_row_reduction(
    degree: int, width: int, genuine: int, synthetic: int, small_x: bool, seed: int
) -> None:
    """Any rows, including more random rows than ``width``, rows of a second key, and small x values."""
    rnd = random.Random(seed)
    keys = [[[_seeded_scalar(rnd) for _ in range(degree + 1)] for _ in range(width)] for _ in range(2)]
    xs: set[bytes] = set()
    while len(xs) < genuine + synthetic + 2:
        xs.add(_seeded_scalar(rnd, small_x))
    xs_list = sorted(xs)
    rnd.shuffle(xs_list)
    rows = []
    for i, x in enumerate(xs_list):
        if i < genuine:
            rows.append((x, tuple(sh.evaluate_polynomial(p, x) for p in keys[0])))
        elif i < genuine + 2 and rnd.random() < 0.5:  # rows of another key
            rows.append((x, tuple(sh.evaluate_polynomial(p, x) for p in keys[1])))
        elif i < genuine + synthetic:
            rows.append((x, tuple(_seeded_scalar(rnd) for _ in range(width))))
    rnd.shuffle(rows)
    assert sh.detect_genuine(rows, degree) == sh._detect_genuine_dense(rows, degree)


@given(st.integers(2, 8), st.integers(0, 12), st.integers(0, 2**32 - 1))
def test_vandermonde_left_kernel_basis(k: int, extra: int, seed: int) -> None:
    """The detector's slid kernel vectors annihilate every polynomial of degree k - 2, and only those."""
    rnd = random.Random(seed)
    xs = list({rnd.randrange(1, g.ELL) for _ in range(k + extra)})
    detector = sh.GenuineDetector(k - 2, 0)
    for x in xs:
        detector.add(g.scalar_from_int(x), ())
    basis = detector._basis
    assert len(basis) == len(xs) - k + 1
    for s, weights in enumerate(basis):
        assert all(weights) and len(weights) == k
        for power in range(k - 1):
            assert sum(w * pow(xs[s + a], power, g.ELL) for a, w in enumerate(weights)) % g.ELL == 0
        assert sum(w * pow(xs[s + a], k - 1, g.ELL) for a, w in enumerate(weights)) % g.ELL != 0


@SLOW
@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_incremental_detection_equals_detection_of_every_prefix(t: int, width: int, seed: int) -> None:
    rnd = random.Random(seed)
    key = [[_seeded_scalar(rnd) for _ in range(t)] for _ in range(width)]
    detector = sh.GenuineDetector(t - 1, width)
    rows = []
    for _ in range(t + width + 4):
        x = _seeded_scalar(rnd)
        values = (tuple(sh.evaluate_polynomial(p, x) for p in key) if rnd.random() < 0.7
                  else tuple(_seeded_scalar(rnd) for _ in range(width)))  # fmt: skip
        rows.append((x, values))
        detector.add(x, values)
        assert detector.genuine() == sh._detect_genuine_dense(rows, t - 1)


@given(st.lists(st.integers(1, 2**256), min_size=1, max_size=12), st.integers(0, 2**256))
def test_integer_field_helpers_agree_with_libsodium(values: list[int], at: int) -> None:
    scalars = [g.scalar_from_int(v) for v in values]
    if any(s == g.SCALAR_ZERO for s in scalars):
        return
    inverses = sh._batch_inverse([g.scalar_to_int(s) for s in scalars])
    assert [g.scalar_from_int(v) for v in inverses] == [g.scalar_invert(s) for s in scalars]
    xs = list(dict.fromkeys(scalars))
    at_s = g.scalar_from_int(at)
    expected = []
    for i, xi in enumerate(xs):
        num = den = g.SCALAR_ONE
        for j, xj in enumerate(xs):
            if i != j:
                num = g.scalar_mul(num, g.scalar_sub(at_s, xj))
                den = g.scalar_mul(den, g.scalar_sub(xi, xj))
        expected.append(g.scalar_mul(num, g.scalar_invert(den)))
    assert sh.lagrange_coefficients(xs, at_s) == expected
