"""The shared probability helpers (one home for the binomial pmf and for probability checks)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.errors import ConfigError
from e2escan.metrics.probability import (
    Z_999,
    binomial_pmf,
    check_probability,
    clopper_pearson,
    log_binomial_pmf,
    separation_power,
)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), p=st.floats(0.0, 1.0))
def test_pmf_is_a_distribution_and_agrees_with_its_log(n: int, p: float) -> None:
    pmf = binomial_pmf(n, p)
    assert pmf.shape == (n + 1,) and (pmf >= 0).all()
    assert math.isclose(pmf.sum(), 1.0, rel_tol=1e-9)
    for k in {0, n // 2, n}:
        assert math.isclose(pmf[k], math.exp(log_binomial_pmf(k, n, p)), rel_tol=1e-9, abs_tol=1e-300)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(0, 60), num=st.integers(1, 99))
def test_pmf_matches_exact_rational_values(n: int, k: int, num: int) -> None:
    k = min(k, n)
    p = Fraction(num, 100)
    exact = math.comb(n, k) * p**k * (1 - p) ** (n - k)
    assert math.isclose(math.exp(log_binomial_pmf(k, n, float(p))), float(exact), rel_tol=1e-10)


def test_edge_probabilities_are_exact() -> None:
    assert binomial_pmf(5, 0.0).tolist() == [1, 0, 0, 0, 0, 0]
    assert binomial_pmf(5, 1.0).tolist() == [0, 0, 0, 0, 0, 1]
    assert log_binomial_pmf(0, 7, 0.0) == 0.0 and log_binomial_pmf(1, 7, 0.0) == -math.inf


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_check_probability_names_the_parameter(bad: object) -> None:
    with pytest.raises(ConfigError, match="^rate must be a probability in \\[0, 1\\]"):
        check_probability("rate", bad)


def test_check_probability_returns_a_float_and_z_is_the_999_quantile() -> None:
    assert check_probability("rate", np.float32(0.25)) == 0.25 and check_probability("rate", 1) == 1.0
    # Phi(Z_999) = 0.9995 to the precision given.
    assert abs(0.5 * math.erfc(-Z_999 / math.sqrt(2)) - 0.9995) < 1e-6


def test_clopper_pearson_known_values_and_edges() -> None:
    # 492 of 500: the beta quantiles Beta(0.025; 492, 9) and Beta(0.975; 493, 8).
    low, high = clopper_pearson(492, 500)
    assert low == pytest.approx(0.9687179983101469, abs=1e-12) and high == pytest.approx(0.9930676787975165, abs=1e-12)
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0
    # 0 of n: upper bound 1 - (alpha/2)^(1/n).
    assert clopper_pearson(0, 20)[1] == pytest.approx(1 - 0.025 ** (1 / 20), abs=1e-12)
    with pytest.raises(ConfigError):
        clopper_pearson(5, 3)


@pytest.mark.parametrize("n", [5, 17, 40])
def test_clopper_pearson_covers_at_least_its_level(n: int) -> None:
    """Exact coverage over every outcome, at rates across (0, 1): never below 95% (the method is conservative)."""
    intervals = [clopper_pearson(k, n) for k in range(n + 1)]
    for p in np.linspace(0.01, 0.99, 37):
        pmf = binomial_pmf(n, float(p))
        coverage = sum(pmf[k] for k, (lo, hi) in enumerate(intervals) if lo <= p <= hi)
        assert coverage >= 0.95 - 1e-9, (n, p, coverage)


def test_separation_power_matches_a_direct_sum_and_grows_with_n() -> None:
    small, large = separation_power(100, 0.999, 0.95), separation_power(500, 0.999, 0.95)
    assert large["excludes_high_if_low"] > small["excludes_high_if_low"]
    # Direct: P[upper CP bound < 0.999] when p = 0.95, over every outcome of 100 trials.
    pmf = binomial_pmf(100, 0.95)
    direct = sum(pmf[k] for k in range(101) if clopper_pearson(k, 100)[1] < 0.999)
    assert small["excludes_high_if_low"] == pytest.approx(direct, abs=1e-9)


def test_mcnemar_exact_matches_the_binomial_test_and_is_symmetric() -> None:
    from e2escan.metrics.probability import mcnemar_exact

    # 1 of 10 discordant pairs: P = 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024.
    assert mcnemar_exact(1, 10) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 10) == pytest.approx(mcnemar_exact(1, 10))
    assert mcnemar_exact(5, 10) == pytest.approx(1.0) and mcnemar_exact(0, 0) == 1.0


def test_fisher_exact_matches_a_hand_computed_table() -> None:
    from e2escan.metrics.probability import fisher_exact

    # The tea-tasting table [[3, 1], [1, 3]]: two-sided p = 34 / 70 (Fisher 1935).
    assert fisher_exact(3, 4, 1, 4) == pytest.approx(34 / 70)
    assert fisher_exact(1, 4, 3, 4) == pytest.approx(34 / 70)
    assert fisher_exact(0, 5, 0, 5) == 1.0 and fisher_exact(2, 0, 1, 3) == 1.0
    # A broken test that drops the less likely tail would give 17/70 here: the check above catches it.
    assert fisher_exact(4, 4, 0, 4) == pytest.approx(2 / 70)
