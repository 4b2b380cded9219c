"""Choosing a match threshold for a target false-positive rate (FPR).

The FPR of threshold ``t`` is ``F(t) = P(D <= t)`` for the Hamming distance
``D`` between two *unrelated* images. Two estimates are offered:

``empirical_threshold``
    The largest ``t`` whose observed ``F(t)`` is at most the target. Only
    meaningful when the target is at least ``1 / n_pairs``: below that, "no
    false positive observed" is not evidence of an FPR that small, so the
    function returns ``None``.

``TailFit`` (extrapolation)
    A normal model fitted to the *lower tail* of the distribution, the part
    that sets small-FPR thresholds. On the probit scale a normal CDF is a
    straight line, ``Phi^-1(F(t)) = a + b * (t + 0.5)`` (``+ 0.5``: continuity
    correction for integer distances). We fit ``a`` and ``b`` by weighted least
    squares over the tail points with ``min_fraction <= F(t) <= max_fraction``
    (by default ``max_fraction`` is 0.01, widened to 0.03 or 0.1 only if fewer
    than 6 thresholds qualify) and at least ``min_count`` pairs at or below
    ``t``; each point is weighted
    by the inverse of its delta-method variance ``F(1 - F) / (n * phi(z)**2)``.
    The threshold for target ``p`` is the largest integer ``t`` with
    ``Phi(a + b * (t + 0.5)) <= p``.

    The fit assumes the lower tail keeps the curvature of a normal beyond
    the data. For hashes whose bits are nearly independent (distance close to
    Binomial(bits, 1/2)) that holds well (tested). Correlated bits and rare
    structurally similar pairs make real lower tails heavier than normal; a
    fit confined to the far tail follows them better than a fit of the whole
    distribution, but can still place the threshold a few bits too high (too
    permissive) when extrapolating: compare with ``empirical_threshold``
    wherever the sample can measure the target. Extrapolations several
    decades below ``1 / n_pairs`` remain model statements, not measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ..errors import ConfigError

_STD_NORMAL = NormalDist()


def normal_cdf(z: float) -> float:
    """Standard normal CDF via ``erfc``, which keeps its relative precision for very negative ``z``.

    (``NormalDist.cdf`` computes ``(1 + erf(z / sqrt 2)) / 2`` and loses all
    digits below about 1e-16.)
    """
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def cdf_from_counts(counts: np.ndarray) -> tuple[np.ndarray, int]:
    """Empirical ``F(t)`` for ``t = 0..len(counts) - 1`` and the number of pairs."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
        raise ConfigError("distance counts must be a non-empty 1-D array of non-negative integers")
    n = int(counts.sum())
    if n == 0:
        raise ConfigError("distance counts are all zero: no pairs to estimate a false-positive rate from")
    return np.cumsum(counts) / n, n


def empirical_threshold(counts: np.ndarray, target_fpr: float) -> int | None:
    """Largest ``t`` with observed FPR ``<= target_fpr``; ``-1`` if even ``t = 0`` exceeds it.

    ``None`` when the target is below ``1 / n_pairs`` (not resolvable from this sample).
    """
    cdf, n = cdf_from_counts(counts)
    if target_fpr < 1.0 / n:
        return None
    ok = np.flatnonzero(cdf <= target_fpr)
    return int(ok[-1]) if ok.size else -1


@dataclass(frozen=True)
class TailFit:
    """A normal model of the lower tail: ``F(t) ~ Phi(a + b * (t + 0.5))``."""

    a: float
    b: float
    n_pairs: int
    points: int  # tail points used in the fit
    method: str  # "probit-tail" or "moments" (fallback when the tail has < 2 usable points)
    max_distance: int

    @property
    def mean(self) -> float:
        """Mean of the fitted normal (centre of the tail model, not the sample mean)."""
        return -self.a / self.b

    @property
    def sd(self) -> float:
        return 1.0 / self.b

    def fpr(self, t: float) -> float:
        """Model FPR of threshold ``t`` (accurate far into the tail, e.g. 1e-40)."""
        return normal_cdf(self.a + self.b * (t + 0.5))

    def threshold(self, target_fpr: float) -> int:
        """Largest integer ``t`` (``-1`` if none, at most ``max_distance``) with model FPR ``<= target_fpr``."""
        if not 0.0 < target_fpr < 1.0:
            raise ConfigError(f"target FPR must be in (0, 1), got {target_fpr!r}")
        x = (_STD_NORMAL.inv_cdf(target_fpr) - self.a) / self.b
        t = math.floor(x - 0.5 + 1e-9)  # tolerance: a target exactly on a grid point counts as met
        return max(-1, min(t, self.max_distance))


#: Upper ends of the tail window tried in turn; the first leaving enough points is used.
TAIL_WINDOWS: tuple[float, ...] = (0.01, 0.03, 0.1)


def fit_lower_tail(
    counts: np.ndarray,
    *,
    min_fraction: float | None = None,
    max_fraction: float | None = None,
    min_count: int = 10,
    min_points: int = 6,
) -> TailFit:
    """Fit :class:`TailFit` to a histogram of unrelated-pair distances (``counts[d]`` pairs at distance ``d``).

    The window is ``min_fraction <= F(t) <= max_fraction``. ``min_fraction``
    defaults to ``min_count / n_pairs``; ``max_fraction`` defaults to the first
    of :data:`TAIL_WINDOWS` that leaves ``min_points`` thresholds, because the
    farther into the tail the fit stays, the better it follows a tail that is
    heavier than normal (the case for real hashes; see the module docstring).
    Falls back to the sample mean and standard deviation (``method="moments"``)
    when fewer than two tail points qualify, e.g. for a tiny sample.
    """
    cdf, n = cdf_from_counts(counts)
    cum = np.cumsum(np.asarray(counts, dtype=np.int64))
    lo = min_count / n if min_fraction is None else min_fraction
    t = np.arange(cdf.size)
    base = (cdf >= lo) & (cum >= min_count) & (cdf < 1.0)
    windows = TAIL_WINDOWS if max_fraction is None else (max_fraction,)
    use = base & (cdf <= windows[-1])
    for hi in windows:
        if (base & (cdf <= hi)).sum() >= min_points:
            use = base & (cdf <= hi)
            break
    max_distance = cdf.size - 1
    if use.sum() >= 2:
        f = cdf[use]
        z = np.array([_STD_NORMAL.inv_cdf(float(v)) for v in f])
        phi = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        weight = n * phi**2 / (f * (1.0 - f))
        x = t[use] + 0.5
        design = np.column_stack([np.ones_like(x, dtype=float), x.astype(float)])
        sw = np.sqrt(weight)
        (a, b), *_ = np.linalg.lstsq(design * sw[:, None], z * sw, rcond=None)
        if b > 0:
            return TailFit(float(a), float(b), n, int(use.sum()), "probit-tail", max_distance)
    values = np.repeat(t, np.asarray(counts, dtype=np.int64))
    mean, sd = float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0
    sd = max(sd, 0.5)  # a degenerate sample still needs a finite slope
    return TailFit(-mean / sd, 1.0 / sd, n, 0, "moments", max_distance)
