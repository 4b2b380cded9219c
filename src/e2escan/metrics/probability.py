"""Small probability helpers shared by the attacks and metrics: one home for each.

* :func:`check_probability`: validate a probability parameter (one error line naming it).
* :func:`log_binomial_pmf` and :func:`binomial_pmf`: ``Bin(n, p)`` through ``lgamma``,
  with the edge cases ``p = 0`` and ``p = 1`` exact. Relative error about ``1e-13``
  for ``n`` up to ``10^5``; the account-level tails, where ``1e-12``-scale
  probabilities matter, use the saddle-point form in :mod:`.flagging` instead.
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
