"""FPR thresholds: the empirical estimate and the lower-tail extrapolation on known distributions."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.errors import ConfigError
from e2escan.hashing import TAIL_MODELS, empirical_threshold, fit_lower_tail
from e2escan.hashing.thresholds import normal_cdf

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
    fit = fit_lower_tail(counts, model="normal")
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
    fit = fit_lower_tail(counts, model="normal")
    for p in TARGETS:
        assert abs(fit.threshold(p) - _binomial_quantile(p)) <= 1, p
    assert fit.threshold(1e-3) == _binomial_quantile(1e-3)


@pytest.mark.parametrize("model", TAIL_MODELS)
def test_model_fpr_matches_threshold(model):
    rng = np.random.default_rng(2)
    fit = fit_lower_tail(np.bincount(rng.binomial(64, 0.5, 50_000), minlength=65), model=model)
    assert fit.model == model
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
    for model in TAIL_MODELS:
        fit = fit_lower_tail(counts, model=model)
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
    fit = fit_lower_tail(counts)  # the exponential model asked for, but two tail points are too few
    assert fit.method == "moments" and fit.model == "normal" and abs(fit.mean - 32) < 1e-9
    with pytest.raises(ConfigError, match="all zero"):
        fit_lower_tail(np.zeros(10))
    with pytest.raises(ConfigError, match="non-negative"):
        fit_lower_tail(np.array([1, -1]))
    with pytest.raises(ConfigError, match=r"\(0, 1\)"):
        fit.threshold(0.0)
    with pytest.raises(ConfigError, match="unknown tail model 'gumbel'"):
        fit_lower_tail(np.bincount(np.arange(100) % 40), model="gumbel")


def _exact_histogram(pmf: list[float], pairs: float = 2e6) -> np.ndarray:
    """Expected pair counts of a sample of ``pairs`` pairs: no sampling noise, and a tail window
    (F >= 10 / pairs) that ends at 5e-6, so smaller targets are extrapolations."""
    return np.array([round(p * pairs) for p in pmf], dtype=np.int64)


@pytest.mark.parametrize("bits", [64, 256])
def test_exponential_tail_is_conservative_on_exact_binomial_distances(bits):
    """The binomial CDF is log-concave, so below the fitted window the log-linear extrapolation never exceeds
    the exact threshold. (Inside the window a chord lies below a concave function: there, use the measured
    threshold.)"""
    counts = _exact_histogram([math.comb(bits, t) / 2**bits for t in range(bits + 1)])
    fit = fit_lower_tail(counts)
    assert fit.model == "exponential" and fit.method == "log-tail"
    normal = fit_lower_tail(counts, model="normal")
    for p in (1e-6, 1e-9, 1e-12, 1e-15):
        exact = _binomial_quantile(p, bits)
        assert fit.threshold(p) <= exact, p
        assert fit.fpr(exact) >= p  # the model over-states the FPR below the window
        assert abs(normal.threshold(p) - exact) <= 2, p  # the central estimate tracks it
    # Within the fitted window both models are within a bit of the truth.
    assert abs(fit.threshold(1e-3) - _binomial_quantile(1e-3, bits)) <= 1
    assert normal.threshold(1e-3) == _binomial_quantile(1e-3, bits)


def test_exponential_tail_is_conservative_on_an_exact_rounded_normal():
    mean, sd = 100.0, 8.0
    pmf = [normal_cdf((t + 0.5 - mean) / sd) - normal_cdf((t - 0.5 - mean) / sd) for t in range(257)]
    fit = fit_lower_tail(_exact_histogram(pmf))
    for p in (1e-6, 1e-9, 1e-12):
        truth = math.floor(mean + sd * NormalDist().inv_cdf(p) - 0.5)
        assert fit.threshold(p) <= truth, p


def test_exponential_tail_follows_a_tail_heavier_than_normal_that_the_normal_fit_misses():
    """A discretised logistic (mean 128, sd 8) has an exponential lower tail: log-concave but heavier than
    normal. The exponential model is exact to a bit there; the normal model is permissive by many bits."""
    mean, scale = 128.0, 8.0 * math.sqrt(3) / math.pi
    cdf_at = [1.0 / (1.0 + math.exp(-(t + 0.5 - mean) / scale)) for t in range(257)]
    pmf = np.diff(cdf_at, prepend=0.0)
    counts = _exact_histogram(list(pmf))
    exp_fit, normal_fit = fit_lower_tail(counts), fit_lower_tail(counts, model="normal")
    for p in (1e-6, 1e-9, 1e-12):
        truth = int(np.flatnonzero(np.asarray(cdf_at) <= p)[-1])
        assert truth - 1 <= exp_fit.threshold(p) <= truth, p
        assert normal_fit.threshold(p) >= truth + 5, p


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([64, 256]))
def test_exponential_tail_on_sampled_binomial_errs_at_most_one_bit_permissive(seed, bits):
    """With 20,000 sampled pairs, sampling noise may cost a bit, never more, for targets below the fitted
    window (F >= 10 / 20,000 = 5e-4). Inside the window a chord lies below a concave log-CDF, so there
    the fit can be permissive: the measured threshold is the one to use."""
    rng = np.random.default_rng(seed)
    fit = fit_lower_tail(np.bincount(rng.binomial(bits, 0.5, 20_000), minlength=bits + 1))
    for p in (1e-5, 1e-6, 1e-9, 1e-12):
        assert fit.threshold(p) <= _binomial_quantile(p, bits) + 1, p


def test_fit_descriptions():
    counts = _exact_histogram([math.comb(64, t) / 2**64 for t in range(65)], pairs=1e9)
    exp_fit, normal_fit = fit_lower_tail(counts), fit_lower_tail(counts, model="normal")
    assert exp_fit.describe()["bits_per_decade"] == pytest.approx(math.log(10) / exp_fit.b)
    assert normal_fit.describe()["sd"] == pytest.approx(normal_fit.sd)
    with pytest.raises(ConfigError, match="normal tail model only"):
        _ = exp_fit.mean


def test_bootstrap_bound_over_images_covers_the_true_fpr_below_the_data():
    """Hashes of independent fair bits: distances are Binomial(64, 1/2), so the true FPR is known exactly.

    150 images give 11,175 pairs; at radius 16 (true FPR 3.0e-5, about 0.3 pairs expected) the estimate is
    an extrapolation. Over 40 corpora the normal tail fit's point estimate is at or above the truth in
    about half of them; its 95% bootstrap bound over images must be at or above the truth in at least 80%.
    """
    import math

    from e2escan.hashing.thresholds import bootstrap_fpr_bound, pairwise_distances

    true = sum(math.comb(64, k) for k in range(17)) / 2**64
    rng = np.random.default_rng(2026)
    point_ok = bound_ok = 0
    for _ in range(40):
        packed = rng.integers(0, 256, size=(150, 8), dtype=np.uint8)
        point, bound = bootstrap_fpr_bound(pairwise_distances(packed), 16, model="normal", resamples=100, rng=rng)
        assert bound >= point * 0.999 or bound >= true
        point_ok += point >= true
        bound_ok += bound >= true
    assert bound_ok >= 32 and bound_ok > point_ok, (point_ok, bound_ok)


def test_pairwise_distances_match_the_scalar_hamming_distance():
    from e2escan.hashing import HashArray
    from e2escan.hashing.thresholds import pairwise_distances

    arr = HashArray.random(12, 64, np.random.default_rng(0))
    d = pairwise_distances(arr.data)
    for i in range(12):
        assert list(d[i]) == list(arr.distances_to(arr[i]))
