"""FPR thresholds: the empirical estimate and the lower-tail extrapolation on known distributions."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.errors import ConfigError
from e2escan.hashing import empirical_threshold, fit_lower_tail

TARGETS = (1e-3, 1e-6, 1e-9)


def _binomial_quantile(p: float, n: int = 256) -> int:
    """Largest t with P(Binomial(n, 1/2) <= t) <= p, exactly (integer arithmetic)."""
    cum, best = 0, -1
    for t in range(n + 1):
        cum += math.comb(n, t)
        if cum <= p * 2**n:
            best = t
        else:
            return best
    return best


def test_tail_fit_recovers_a_rounded_normal():
    rng = np.random.default_rng(0)
    mean, sd = 100.0, 8.0
    counts = np.bincount(np.rint(rng.normal(mean, sd, 200_000)).astype(int), minlength=257)
    fit = fit_lower_tail(counts)
    assert fit.method == "probit-tail" and fit.points >= 10
    assert abs(fit.mean - mean) < 1.0 and abs(fit.sd - sd) < 0.5
    for p in TARGETS:
        # Rounding to integers: P(D <= t) = Phi((t + 0.5 - mean) / sd).
        truth = math.floor(mean + sd * NormalDist().inv_cdf(p) - 0.5)
        assert abs(fit.threshold(p) - truth) <= 1, p


def test_tail_fit_on_binomial_distances_of_independent_bits():
    """Distances of random 256-bit hashes are Binomial(256, 1/2); the fit must track its exact quantiles."""
    rng = np.random.default_rng(1)
    counts = np.bincount(rng.binomial(256, 0.5, 200_000), minlength=257)
    fit = fit_lower_tail(counts)
    for p in TARGETS:
        assert abs(fit.threshold(p) - _binomial_quantile(p)) <= 1, p
    assert fit.threshold(1e-3) == _binomial_quantile(1e-3)


def test_model_fpr_matches_threshold():
    rng = np.random.default_rng(2)
    fit = fit_lower_tail(np.bincount(rng.binomial(64, 0.5, 50_000), minlength=65))
    for p in TARGETS:
        t = fit.threshold(p)
        if t >= 0:
            assert fit.fpr(t) <= p * (1 + 1e-9)
        assert fit.fpr(t + 1) > p


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2_000, 30_000), st.floats(0.25, 0.5))
def test_thresholds_are_monotone_in_the_target(seed, n, prob):
    rng = np.random.default_rng(seed)
    counts = np.bincount(rng.binomial(256, prob, n), minlength=257)
    fit = fit_lower_tail(counts)
    fitted = [fit.threshold(p) for p in (1e-1, 1e-3, 1e-6, 1e-9, 1e-12)]
    assert fitted == sorted(fitted, reverse=True)
    measured = [empirical_threshold(counts, p) for p in (1e-1, 1e-2, 1e-3)]
    assert all(m is not None for m in measured)
    assert measured == sorted(measured, reverse=True)


def test_model_fpr_is_accurate_deep_in_the_tail():
    from e2escan.hashing.thresholds import TailFit

    fit = TailFit(a=-128.5 / 8.0, b=1 / 8.0, n_pairs=1, points=2, method="probit-tail", max_distance=256)
    # Phi(-12) = 1.7764821120776e-33 (tabulated); naive 1 + erf cancellation would give 0.
    assert math.isclose(fit.fpr(32.0), 1.7764821120776e-33, rel_tol=1e-9)
    assert fit.threshold(1e-30) < 40


def test_empirical_threshold():
    counts = np.zeros(65, dtype=np.int64)
    counts[[10, 20, 30]] = [1, 9, 990]  # F(10) = 0.001, F(20) = 0.01
    assert empirical_threshold(counts, 0.001) == 19
    assert empirical_threshold(counts, 0.0099) == 19
    assert empirical_threshold(counts, 0.01) == 29
    assert empirical_threshold(counts, 0.0005) is None  # below 1 / 1000 pairs: not measurable
    counts[0] = 10
    assert empirical_threshold(counts, 0.001) == -1  # even t = 0 has too many false positives


def test_tiny_samples_fall_back_to_moments_and_bad_input_is_rejected():
    counts = np.zeros(65, dtype=np.int64)
    counts[[30, 32, 34]] = [1, 2, 1]
    fit = fit_lower_tail(counts)
    assert fit.method == "moments" and abs(fit.mean - 32) < 1e-9
    with pytest.raises(ConfigError, match="all zero"):
        fit_lower_tail(np.zeros(10))
    with pytest.raises(ConfigError, match="non-negative"):
        fit_lower_tail(np.array([1, -1]))
    with pytest.raises(ConfigError, match=r"\(0, 1\)"):
        fit.threshold(0.0)
