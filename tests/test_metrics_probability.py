"""The shared probability helpers (one home for the binomial pmf and for probability checks)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.errors import ConfigError
from e2escan.metrics.probability import Z_999, binomial_pmf, check_probability, log_binomial_pmf


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
