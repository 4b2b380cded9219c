"""Account-level false-flag probabilities against exact and high-precision oracles."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.errors import ConfigError
from e2escan.metrics import (
    false_flag_probability,
    log10_false_flag_probability,
    log10_poisson_false_flag_probability,
    max_images_for_target,
    poisson_false_flag_probability,
    required_threshold,
)

LN10 = math.log(10)


# --- oracles -----------------------------------------------------------------


def exact_binomial_tail(n: int, p: float, t: int) -> Fraction:
    """P[Bin(n, p) >= t] in rational arithmetic, for the binary value of p."""
    pf = Fraction(p)
    qf = 1 - pf
    return sum((math.comb(n, k) * pf**k * qf ** (n - k) for k in range(max(t, 0), n + 1)), Fraction(0))


def ln_fraction(x: Fraction) -> float:
    """Natural log of a positive rational far outside the double range, to double precision."""
    shift = x.numerator.bit_length() - x.denominator.bit_length()
    return math.log(float(x / Fraction(2) ** shift)) + shift * math.log(2)


# Bernoulli numbers B_2 .. B_20 for Stirling's series of log Gamma.
_BERNOULLI = [
    Fraction(1, 6), Fraction(-1, 30), Fraction(1, 42), Fraction(-1, 30), Fraction(5, 66),
    Fraction(-691, 2730), Fraction(7, 6), Fraction(-3617, 510), Fraction(43867, 798), Fraction(-174611, 330),
]
_PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")


def decimal_log_factorial(x: int) -> Decimal:
    """ln(x!) in the current decimal context: exact below 2000, Stirling's series (10 terms) above."""
    if x < 2000:
        return Decimal(math.factorial(x)).ln()
    dx = Decimal(x)
    total = (dx + Decimal("0.5")) * dx.ln() - dx + (2 * _PI).ln() / 2
    for k, b in enumerate(_BERNOULLI, start=1):
        total += Decimal(b.numerator) / Decimal(b.denominator) / (2 * k * (2 * k - 1) * dx ** (2 * k - 1))
    return total


def decimal_binomial_pmf(n: int, p: Decimal, k: int) -> Decimal:
    log_comb = decimal_log_factorial(n) - decimal_log_factorial(k) - decimal_log_factorial(n - k)
    log_pmf = log_comb + (k * p.ln() if k else 0) + ((n - k) * (1 - p).ln() if n - k else 0)
    return log_pmf.exp()


def decimal_binomial_tail(n: int, p: float, t: int, digits: int = 50) -> Decimal:
    """P[Bin(n, p) >= t] to about ``digits`` significant digits, for counts too large for fractions."""
    with localcontext() as ctx:
        ctx.prec = digits + 10
        ctx.Emin = -(10**8)
        pd = Decimal(p)  # the exact binary value
        odds = pd / (1 - pd)
        stop = Decimal(10) ** -(digits + 5)
        if t > n * p:
            term, total, k = decimal_binomial_pmf(n, pd, t), Decimal(0), t
            while k <= n:
                total += term
                if term < total * stop:
                    break
                term = term * (n - k) / (k + 1) * odds
                k += 1
            return +total
        # Lower tail below the mean, then the complement (no cancellation at this precision).
        k = t - 1
        term, total = decimal_binomial_pmf(n, pd, k), Decimal(0)
        while k >= 0:
            total += term
            if term < total * stop:
                break
            term = term * k / (n - k + 1) / odds
            k -= 1
        return 1 - total


def decimal_poisson_tail(lam: Fraction, t: int, digits: int = 50) -> Decimal:
    """P[Poisson(lam) >= t] to ``digits`` significant digits."""
    with localcontext() as ctx:
        ctx.prec = digits + 10
        ctx.Emin = -(10**8)
        ld = Decimal(lam.numerator) / Decimal(lam.denominator)
        if t > ld:
            term = (t * ld.ln() - ld - decimal_log_factorial(t)).exp()
            total, k = Decimal(0), t
            while True:
                total += term
                if term < total * Decimal(10) ** -(digits + 5):
                    return +total
                k += 1
                term = term * ld / k
        k = t - 1
        term = ((k * ld.ln() if k else 0) - ld - decimal_log_factorial(k)).exp()
        total = Decimal(0)
        while k >= 0:
            total += term
            if term < total * Decimal(10) ** -(digits + 5):
                break
            term = term * k / ld
            k -= 1
        return 1 - total


def ln_decimal(x: Decimal) -> float:
    with localcontext() as ctx:
        ctx.prec = 40
        return float(x.ln())


def assert_close_log(got_log10: float, expected_ln: float, what: str) -> None:
    """Relative error of the probability within 1e-13 * max(1, |ln P|) (plus a few ulps)."""
    got_ln = got_log10 * LN10
    tolerance = 4e-15 * max(1.0, abs(expected_ln)) + 1e-15
    assert abs(got_ln - expected_ln) <= tolerance, f"{what}: ln P {got_ln!r} != {expected_ln!r}"


# --- exact comparisons -------------------------------------------------------

SMALL_CASES = [
    (n, p, t)
    for n in (1, 2, 7, 30, 100, 250)
    for p in (1e-12, 1e-6, 3e-8, 1e-3, 0.05, 0.3, 0.5, 0.77, 0.999)
    for t in sorted({-1, 0, 1, 2, n // 3, n // 2, (2 * n) // 3, n - 1, n, n + 1})
]


@pytest.mark.parametrize("n,p,t", SMALL_CASES)
def test_binomial_tail_matches_exact_rational_sum(n, p, t):
    exact = exact_binomial_tail(n, p, t)
    got = log10_false_flag_probability(n, p, t)
    if exact == 0:
        assert got == -math.inf
        assert false_flag_probability(n, p, t) == 0.0
        return
    assert_close_log(got, ln_fraction(exact), f"n={n} p={p} t={t}")
    if exact > Fraction(1, 10**300):
        direct = false_flag_probability(n, p, t)
        assert direct == pytest.approx(float(exact), rel=1e-11, abs=0)


def _random_cases(count: int, seed: int):
    import random

    rng = random.Random(seed)
    cases = [(161, 0.44197801596285163, 92), (321, 0.41765044307265065, 178)]  # the worst cases seen
    while len(cases) < count:
        n = rng.randint(1, 400)
        p = min(10 ** rng.uniform(-14, 0) if rng.random() < 0.8 else rng.uniform(0.001, 0.999), 0.999999)
        cases.append((n, p, rng.randint(1, n)))
    return cases


@pytest.mark.slow
def test_documented_error_bound_holds_on_random_cases():
    """The docstring's bound, 2e-14 * max(1, |ln P|), on seeded random cases against exact rational sums.

    The same check at the bound it replaced ("a few 1e-15", taken as 4e-15) fails on the worst cases.
    """
    worst = 0.0
    for n, p, t in _random_cases(60, 7):
        exact = exact_binomial_tail(n, p, t)
        if exact == 0:
            continue
        expected_ln = ln_fraction(exact)
        err = abs(log10_false_flag_probability(n, p, t) * LN10 - expected_ln) / max(1.0, abs(expected_ln))
        worst = max(worst, err)
    assert worst <= 2e-14
    assert worst > 4e-15  # the old docstring's bound is too tight


def test_exact_cases_reach_far_tails():
    """The exact comparison above covers 1e-100 and far beyond, not just easy values."""
    logs = [log10_false_flag_probability(n, p, t) for n, p, t in SMALL_CASES]
    finite = [x for x in logs if np.isfinite(x)]
    assert any(-150 < x < -90 for x in finite)
    assert min(finite) < -1000


@pytest.mark.parametrize(
    "n,p,t",
    [
        (10**6, 1e-6, 30),
        (5_773_005, 1e-6, 30),
        (10**8, 3e-8, 30),
        (10**7, 1e-3, 10_000),  # exactly at the mean
        (10**7, 1e-3, 10_500),  # five standard deviations up
        (10**7, 1e-3, 9_500),  # five standard deviations down
        (10**8, 0.5, 50_000_000),
        (10**6, 0.3, 600_000),  # tail near 1e-100000
        (123_456_789, 2.5e-9, 1),
        (10**9, 1e-12, 3),
    ],
)
def test_binomial_tail_matches_high_precision_for_large_counts(n, p, t):
    expected = decimal_binomial_tail(n, p, t)
    assert_close_log(log10_false_flag_probability(n, p, t), ln_decimal(expected), f"n={n} p={p} t={t}")


@pytest.mark.parametrize(
    "lam,t",
    [
        (Fraction(1, 1000), 1),
        (Fraction(1, 1000), 30),
        (Fraction(5), 30),
        (Fraction(5), 2),
        (Fraction(30), 30),
        (Fraction(1000), 900),
        (Fraction(1000), 1100),
        (Fraction(100000), 101000),
        (Fraction(3, 100), 200),
    ],
)
def test_poisson_tail_matches_high_precision(lam, t):
    # A power-of-two account size makes images * rate exact, so only the tail itself is tested.
    images = 2**20
    rate = float(lam / images)
    lam_exact = Fraction(images) * Fraction(rate)
    expected = decimal_poisson_tail(lam_exact, t)
    got = log10_poisson_false_flag_probability(images, rate, t)
    assert_close_log(got, ln_decimal(expected), f"lam={lam} t={t}")


# --- edge cases and validation --------------------------------------------------


def test_edge_cases():
    assert false_flag_probability(10, 0.3, 0) == 1.0
    assert false_flag_probability(10, 0.3, -5) == 1.0
    assert false_flag_probability(10, 0.3, 11) == 0.0
    assert false_flag_probability(0, 0.3, 1) == 0.0
    assert false_flag_probability(0, 0.3, 0) == 1.0
    assert false_flag_probability(10, 0.0, 1) == 0.0
    assert false_flag_probability(10, 1.0, 10) == 1.0
    assert false_flag_probability(10, 1.0, 11) == 0.0
    assert false_flag_probability(10, 0.5, 10) == 0.5**10
    assert false_flag_probability(10, 0.25, 1) == pytest.approx(1 - 0.75**10, rel=1e-15)
    assert log10_false_flag_probability(10, 0.0, 1) == -math.inf
    assert poisson_false_flag_probability(10, 0.0, 1) == 0.0
    assert poisson_false_flag_probability(10, 0.5, 0) == 1.0
    assert poisson_false_flag_probability(10, 1.0, 11) > 0.0
    assert poisson_false_flag_probability(1, 0.5, 1) == pytest.approx(-math.expm1(-0.5), rel=1e-15)


def test_returns_python_floats_for_scalars_and_arrays_otherwise():
    assert isinstance(false_flag_probability(10, 0.1, 2), float)
    assert isinstance(required_threshold(10, 0.1, 1e-3), int)
    out = false_flag_probability(np.array([[10], [20], [30]]), np.array([0.1, 0.2, 0.3, 0.4]), 3)
    assert out.shape == (3, 4)
    for i, n in enumerate((10, 20, 30)):
        for j, p in enumerate((0.1, 0.2, 0.3, 0.4)):
            assert out[i, j] == false_flag_probability(n, p, 3)


def test_far_tails_stay_finite_in_log10():
    value = log10_false_flag_probability(1000, 1e-9, 500)
    assert -5000 < value < -1000
    assert false_flag_probability(1000, 1e-9, 500) == 0.0  # underflows, as documented


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"images": -1, "per_image_rate": 0.1, "threshold": 1}, "images"),
        ({"images": 2.5, "per_image_rate": 0.1, "threshold": 1}, "images"),
        ({"images": 2**60, "per_image_rate": 0.1, "threshold": 1}, "images"),
        ({"images": 10, "per_image_rate": 1.5, "threshold": 1}, "per_image_rate"),
        ({"images": 10, "per_image_rate": float("nan"), "threshold": 1}, "per_image_rate"),
        ({"images": 10, "per_image_rate": 0.1, "threshold": 1.5}, "threshold"),
        ({"images": 10, "per_image_rate": "x", "threshold": 1}, "per_image_rate"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        false_flag_probability(**kwargs)


def test_invalid_model_and_target():
    with pytest.raises(ConfigError, match="model"):
        required_threshold(10, 0.1, 1e-3, model="normal")
    with pytest.raises(ConfigError, match="target"):
        required_threshold(10, 0.1, 2.0)
    with pytest.raises(ConfigError, match="target"):
        required_threshold(10, 0.1, 0.0, model="poisson")
    with pytest.raises(ConfigError, match="threshold"):
        max_images_for_target(0.1, 0, 1e-3)


# --- inverse problems ----------------------------------------------------------


def _slack(log10_target: float) -> float:
    """Rounding allowance when a tail value ties with the target (documented as either way)."""
    return 1e-13 * max(1.0, abs(log10_target))


@pytest.mark.parametrize("model", ["binomial", "poisson"])
def test_required_threshold_is_the_smallest_meeting_the_target(model):
    log_tail = log10_false_flag_probability if model == "binomial" else log10_poisson_false_flag_probability
    for n in (1, 10, 1000, 10**6, 10**8):
        for p in (1e-9, 1e-6, 1e-3, 0.2, 0.9):
            for target in (0.9, 0.5, 1e-3, 1e-12, 1e-200):
                t = required_threshold(n, p, target, model=model)
                goal = math.log10(target)
                assert log_tail(n, p, t) <= goal + _slack(goal), (n, p, target, t)
                if t > 0:
                    assert log_tail(n, p, t - 1) > goal - _slack(goal), (n, p, target, t)


def test_required_threshold_edges_and_broadcasting():
    assert required_threshold(100, 0.1, 1.0) == 0
    assert required_threshold(100, 0.1, 0.0) == 101
    assert required_threshold(100, 0.0, 1e-12) == 1
    grid = required_threshold(np.array([[10**4], [10**6]]), np.array([1e-6, 1e-4]), 1e-12)
    assert grid.shape == (2, 2) and grid.dtype == np.int64
    assert grid[1, 1] == required_threshold(10**6, 1e-4, 1e-12)


@pytest.mark.parametrize("model", ["binomial", "poisson"])
def test_max_images_is_the_largest_meeting_the_target(model):
    log_tail = log10_false_flag_probability if model == "binomial" else log10_poisson_false_flag_probability
    for p in (1e-6, 3e-8, 1e-3, 0.5):
        for t in (1, 2, 30):
            for target in (1e-2, 1e-12):
                n = max_images_for_target(p, t, target, model=model)
                assert n == int(n)
                goal = math.log10(target)
                assert log_tail(int(n), p, t) <= goal + _slack(goal)
                assert log_tail(int(n) + 1, p, t) > goal - _slack(goal)


def test_max_images_unbounded_cases():
    assert max_images_for_target(0.0, 30, 1e-12) == math.inf
    assert max_images_for_target(1e-6, 30, 1.0) == math.inf
    assert max_images_for_target(1e-15, 200, 1e-12) == math.inf  # beyond 2**53 images
    assert max_images_for_target(1.0, 30, 1e-12) == 29


# --- properties -----------------------------------------------------------------

counts = st.integers(min_value=0, max_value=10**7)
rates = st.one_of(
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    st.floats(min_value=1e-12, max_value=1e-3).map(float),
)
thresholds = st.integers(min_value=-2, max_value=10**5)
REL = 1e-11  # allowed non-monotonicity from rounding


def at_most(b: float, a: float) -> bool:
    """b <= a up to rounding, for log10 probabilities (possibly -inf)."""
    if a == -math.inf:
        return b == -math.inf
    return b <= a + REL * max(1.0, abs(a))


@settings(max_examples=150, deadline=None)
@given(counts, rates, thresholds)
def test_probability_is_within_unit_interval(n, p, t):
    for fn in (false_flag_probability, poisson_false_flag_probability):
        value = fn(n, p, t)
        assert 0.0 <= value <= 1.0


@settings(max_examples=100, deadline=None)
@given(counts, rates, rates, thresholds)
def test_monotone_in_rate(n, p1, p2, t):
    lo, hi = sorted((p1, p2))
    for fn in (log10_false_flag_probability, log10_poisson_false_flag_probability):
        a, b = fn(n, lo, t), fn(n, hi, t)
        assert at_most(a, b)


@settings(max_examples=100, deadline=None)
@given(counts, counts, rates, thresholds)
def test_monotone_in_images(n1, n2, p, t):
    lo, hi = sorted((n1, n2))
    for fn in (log10_false_flag_probability, log10_poisson_false_flag_probability):
        a, b = fn(lo, p, t), fn(hi, p, t)
        assert at_most(a, b)


@settings(max_examples=100, deadline=None)
@given(counts, rates, thresholds, st.integers(min_value=0, max_value=1000))
def test_decreasing_in_threshold(n, p, t, step):
    for fn in (log10_false_flag_probability, log10_poisson_false_flag_probability):
        a, b = fn(n, p, t), fn(n, p, t + step)
        assert at_most(b, a)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=10**8),
    st.floats(min_value=1e-10, max_value=1e-4),
    st.integers(min_value=0, max_value=60),
)
def test_poisson_close_to_binomial_for_small_rates(n, p, t):
    # Le Cam: the total variation distance between Bin(n, p) and Poisson(np) is at most n p^2.
    gap = abs(false_flag_probability(n, p, t) - poisson_false_flag_probability(n, p, t))
    assert gap <= n * p * p + 1e-15


def test_poisson_approximation_at_apple_design_point():
    binomial = false_flag_probability(10**6, 1e-6, 30)
    poisson = poisson_false_flag_probability(10**6, 1e-6, 30)
    assert poisson >= binomial
    assert poisson / binomial - 1 < 1e-3
