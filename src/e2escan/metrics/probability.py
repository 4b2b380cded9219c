"""Small probability helpers shared by the attacks and metrics: one home for each.

* :func:`check_probability`: validate a probability parameter (one error line naming it).
* :func:`log_binomial_pmf` and :func:`binomial_pmf`: ``Bin(n, p)`` through ``lgamma``,
  with the edge cases ``p = 0`` and ``p = 1`` exact. Relative error about ``1e-13``
  for ``n`` up to ``10^5``; the account-level tails, where ``1e-12``-scale
  probabilities matter, use the saddle-point form in :mod:`.flagging` instead.
* :func:`binomial_cdf`, :func:`clopper_pearson` (the exact interval) and :func:`separation_power`
  (how surely an interval of ``n`` trials tells two rates apart).
* :data:`Z_999`: the two-sided 99.9% standard-normal quantile, for Wilson intervals.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError

#: Two-sided 99.9% quantile of the standard normal distribution (Phi^-1(0.9995)).
Z_999 = 3.2905


def check_probability(name: str, value: Any) -> float:
    """``value`` as a float if it is a number in ``[0, 1]``; :class:`ConfigError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def log_binomial_pmf(k: int, n: int, p: float) -> float:
    """``log P[Bin(n, p) = k]`` for integers ``0 <= k <= n`` (``-inf`` where the probability is 0)."""
    if p == 0.0:
        return 0.0 if k == 0 else -math.inf
    if p == 1.0:
        return 0.0 if k == n else -math.inf
    log_choose = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return log_choose + k * math.log(p) + (n - k) * math.log1p(-p)


def binomial_pmf(n: int, p: float) -> np.ndarray:
    """``P[Bin(n, p) = k]`` for ``k = 0 .. n``, as an array of length ``n + 1``."""
    k = np.arange(n + 1)
    if p <= 0.0:
        return (k == 0).astype(float)
    if p >= 1.0:
        return (k == n).astype(float)
    log = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
    return np.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P[Bin(n, p) <= k]``."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return float(min(1.0, binomial_pmf(n, p)[: k + 1].sum()))


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion, by bisection on the binomial CDF.

    Conditions only on the number of trials, which must be independent draws of the same rate. Each
    bound is found to 2^-60 by 60 bisection steps; each tail holds at most ``(1 - level) / 2``.
    """
    if not 0 <= successes <= trials:
        raise ConfigError(f"clopper_pearson: need 0 <= successes <= trials, got {successes} of {trials}")
    tail = (1 - level) / 2

    def solve(predicate: Any) -> float:  # smallest p in [0, 1] with predicate(p) true (predicate monotone in p)
        low, high = 0.0, 1.0
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (low, mid) if predicate(mid) else (mid, high)
        return high

    lower = 0.0 if successes == 0 else solve(lambda q: 1 - binomial_cdf(successes - 1, trials, q) >= tail)
    upper = 1.0 if successes == trials else solve(lambda q: binomial_cdf(successes, trials, q) <= tail)
    return lower, upper


def separation_power(trials: int, high: float, low: float, level: float = 0.95) -> dict[str, float]:
    """Chance that the Clopper-Pearson interval of ``trials`` trials excludes one rate when the other is true.

    ``excludes_high_if_low``: P[upper bound < ``high``] when the true rate is ``low``;
    ``excludes_low_if_high``: P[lower bound > ``low``] when it is ``high``. Exact sums over the binomial
    outcomes: the upper bound is below ``p0`` exactly when ``P[X <= k | p0] < (1 - level) / 2``.
    """
    tail = (1 - level) / 2
    pmf_low, pmf_high = binomial_pmf(trials, low), binomial_pmf(trials, high)
    below_high = [k for k in range(trials + 1) if binomial_cdf(k, trials, high) < tail]
    above_low = [k for k in range(trials + 1) if 1 - binomial_cdf(k - 1, trials, low) < tail]
    return {
        "excludes_high_if_low": float(pmf_low[below_high].sum()) if below_high else 0.0,
        "excludes_low_if_high": float(pmf_high[above_low].sum()) if above_low else 0.0,
    }


def mcnemar_exact(only_a: int, discordant: int) -> float:
    """McNemar's exact test: two-sided binomial test of ``only_a`` of ``discordant`` discordant pairs at 1/2.

    Conditions on the number of discordant pairs; the p-value sums every outcome no more likely than the one seen.
    """
    if discordant == 0:
        return 1.0
    probs = binomial_pmf(discordant, 0.5)
    return min(1.0, float(probs[probs <= probs[only_a] * (1 + 1e-9)].sum()))


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Fisher's exact two-sided test of ``k1 / n1`` against ``k2 / n2`` (tables no more likely than the one seen).

    Conditions on both margins (the trials of each side and the total successes); treats every unit as independent.
    """
    k, n = k1 + k2, n1 + n2
    if n1 == 0 or n2 == 0 or k == 0 or k == n:
        return 1.0

    def log_p(x: int) -> float:  # hypergeometric: x successes on side 1 given the margins
        return (math.lgamma(n1 + 1) - math.lgamma(x + 1) - math.lgamma(n1 - x + 1)
                + math.lgamma(n2 + 1) - math.lgamma(k - x + 1) - math.lgamma(n2 - k + x + 1)
                - math.lgamma(n + 1) + math.lgamma(k + 1) + math.lgamma(n - k + 1))

    observed = log_p(k1)
    support = range(max(0, k - n2), min(k, n1) + 1)
    return min(1.0, sum(math.exp(log_p(x)) for x in support if log_p(x) <= observed + 1e-9))
