"""Choosing a match threshold for a target false-positive rate (FPR).

The FPR of threshold ``t`` is ``F(t) = P(D <= t)`` for the Hamming distance
``D`` between two *unrelated* images. Two estimates are offered:

``empirical_threshold``
    The largest ``t`` whose observed ``F(t)`` is at most the target. Only
    meaningful when the target is at least ``1 / n_pairs``: below that, "no
    false positive observed" is not evidence of an FPR that small, so the
    function returns ``None``.

``TailFit`` (extrapolation)
    A model of the *lower tail* of the distribution, the part that sets
    small-FPR thresholds, fitted by weighted least squares over the tail points
    with ``min_fraction <= F(t) <= max_fraction`` (by default ``max_fraction``
    is 0.01, widened to 0.03 or 0.1 only if fewer than 6 thresholds qualify)
    and at least ``min_count`` pairs at or below ``t``. ``x = t + 0.5`` is the
    continuity-corrected distance. Two models:

    ``exponential`` (the default): ``log F(t) = a + b * x``, each point
    weighted by the inverse of the delta-method variance of ``log F``,
    ``(1 - F) / (n * F)``. This is a *conservative* extrapolation for every
    distance distribution whose CDF is log-concave, which includes the
    binomial of independent hash bits, the normal, and every distribution
    with a log-concave probability mass function: a chord of a concave
    function lies above the function outside the chord's interval, so below
    the fitted window the model over-states the FPR and the threshold it
    returns is at most the true one (tested on exact binomial and normal
    distributions). This holds **in the infinite-sample limit**, where the
    fitted points are the true CDF; fitted on a finite sample, the chord
    itself is noisy and the returned threshold exceeds the true one in some
    samples. :func:`bootstrap_fpr_bound` gives an upper confidence bound that
    includes that sampling error (a bootstrap over images, not pairs). The price is caution: on near-binomial hashes it gives
    up bits two decades out (pHash on the hamming-distributions corpus, fitted
    on 1% of the pairs: median 3 instead of the 11 measured on all of them at
    1e-6; ``extrapolation_check.csv``).

    ``normal``: ``Phi^-1(F(t)) = a + b * x``, weighted by
    ``n * phi(z)**2 / (F (1 - F))``: a central estimate that is exact for a
    normal tail and tracks the binomial of independent bits to within one
    bit, but is *permissive* when the real tail is heavier than normal, as
    it is for hashes with correlated bits and for corpora with structurally
    similar pairs (PDQ on the same corpus: median 85 where 81 is measured at
    1e-6, too high in 84% of the subsamples, up to five times the target FPR;
    ``extrapolation_check.csv``).

    The threshold for target ``p`` is the largest integer ``t`` whose model
    FPR is at most ``p``. Compare with ``empirical_threshold`` wherever the
    sample can measure the target; extrapolations several decades below
    ``1 / n_pairs`` remain model statements, not measurements, and no model
    of the bulk foresees an isolated near-duplicate pair far below it.
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


#: Tail models :func:`fit_lower_tail` accepts; the first is the default.
TAIL_MODELS: tuple[str, ...] = ("exponential", "normal")


def _check_model(model: str) -> None:
    if model not in TAIL_MODELS:
        raise ConfigError(f"unknown tail model {model!r}; known: {', '.join(TAIL_MODELS)}")


@dataclass(frozen=True)
class TailFit:
    """A model of the lower tail, ``F(t) ~ G(a + b * (t + 0.5))``.

    ``G`` is ``exp`` for ``model="exponential"`` and the standard normal CDF
    ``Phi`` for ``model="normal"`` (see the module docstring for what each
    promises).
    """

    a: float
    b: float
    n_pairs: int
    points: int  # tail points used in the fit
    method: str  # "log-tail", "probit-tail", or "moments" (normal fallback when the tail has < 2 usable points)
    max_distance: int
    model: str = "normal"

    def __post_init__(self) -> None:
        _check_model(self.model)
        if not self.b > 0:
            raise ConfigError(f"tail slope must be positive, got {self.b!r}")

    @property
    def mean(self) -> float:
        """Mean of the fitted normal (centre of the tail model, not the sample mean); normal model only."""
        self._require_normal("mean")
        return -self.a / self.b

    @property
    def sd(self) -> float:
        """Standard deviation of the fitted normal; normal model only."""
        self._require_normal("sd")
        return 1.0 / self.b

    def _require_normal(self, what: str) -> None:
        if self.model != "normal":
            raise ConfigError(f"{what} is defined for the normal tail model only (this fit is {self.model})")

    @property
    def bits_per_decade(self) -> float | None:
        """Exponential model: how many bits lower the threshold moves per factor 10 of FPR."""
        return math.log(10.0) / self.b if self.model == "exponential" else None

    def fpr(self, t: float) -> float:
        """Model FPR of threshold ``t`` (accurate far into the tail, e.g. 1e-40)."""
        u = self.a + self.b * (t + 0.5)
        if self.model == "exponential":
            return math.exp(min(u, 0.0))
        return normal_cdf(u)

    def threshold(self, target_fpr: float) -> int:
        """Largest integer ``t`` (``-1`` if none, at most ``max_distance``) with model FPR ``<= target_fpr``."""
        if not 0.0 < target_fpr < 1.0:
            raise ConfigError(f"target FPR must be in (0, 1), got {target_fpr!r}")
        u = math.log(target_fpr) if self.model == "exponential" else _STD_NORMAL.inv_cdf(target_fpr)
        x = (u - self.a) / self.b
        t = math.floor(x - 0.5 + 1e-9)  # tolerance: a target exactly on a grid point counts as met
        return max(-1, min(t, self.max_distance))

    def describe(self) -> dict[str, object]:
        """The fit as plain data (for summaries)."""
        out: dict[str, object] = {"model": self.model, "method": self.method, "a": self.a, "b": self.b,
                                  "points": self.points, "n_pairs": self.n_pairs}  # fmt: skip
        if self.model == "normal":
            out.update(mean=self.mean, sd=self.sd)
        else:
            out["bits_per_decade"] = self.bits_per_decade
        return out


#: Upper ends of the tail window tried in turn; the first leaving enough points is used.
TAIL_WINDOWS: tuple[float, ...] = (0.01, 0.03, 0.1)


def fit_lower_tail(
    counts: np.ndarray,
    *,
    min_fraction: float | None = None,
    max_fraction: float | None = None,
    min_count: int = 10,
    min_points: int = 6,
    model: str = TAIL_MODELS[0],
) -> TailFit:
    """Fit :class:`TailFit` to a histogram of unrelated-pair distances (``counts[d]`` pairs at distance ``d``).

    ``model`` is ``"exponential"`` (conservative for log-concave tails; the
    default) or ``"normal"`` (a central estimate); see the module docstring.

    The window is ``min_fraction <= F(t) <= max_fraction``. ``min_fraction``
    defaults to ``min_count / n_pairs``; ``max_fraction`` defaults to the first
    of :data:`TAIL_WINDOWS` that leaves ``min_points`` thresholds, because the
    farther into the tail the fit stays, the better it follows a tail that is
    heavier than normal (the case for real hashes; see the module docstring).
    Falls back to a normal with the sample mean and standard deviation
    (``method="moments"``, ``model="normal"`` whatever was asked) when fewer
    than two tail points qualify, e.g. for a tiny sample.
    """
    _check_model(model)  # before any work, and also when the moments fallback is taken
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
        if model == "exponential":
            y = np.log(f)
            weight = n * f / (1.0 - f)  # 1 / Var(log F_hat) by the delta method
        else:
            y = np.array([_STD_NORMAL.inv_cdf(float(v)) for v in f])
            phi = np.exp(-0.5 * y * y) / math.sqrt(2 * math.pi)
            weight = n * phi**2 / (f * (1.0 - f))  # 1 / Var(Phi^-1(F_hat))
        x = t[use] + 0.5
        design = np.column_stack([np.ones_like(x, dtype=float), x.astype(float)])
        sw = np.sqrt(weight)
        (a, b), *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
        if b > 0:
            method = "log-tail" if model == "exponential" else "probit-tail"
            return TailFit(float(a), float(b), n, int(use.sum()), method, max_distance, model)
    values = np.repeat(t, np.asarray(counts, dtype=np.int64))
    mean, sd = float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0
    sd = max(sd, 0.5)  # a degenerate sample still needs a finite slope
    return TailFit(-mean / sd, 1.0 / sd, n, 0, "moments", max_distance, "normal")


def pairwise_distances(packed: np.ndarray) -> np.ndarray:
    """All Hamming distances between the rows of a packed ``(m, bytes)`` uint8 array (an ``m x m`` int matrix)."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1).astype(np.float32)
    ones = bits.sum(axis=1)
    distances: np.ndarray = np.rint(ones[:, None] + ones[None, :] - 2.0 * (bits @ bits.T)).astype(np.int64)
    return distances


def bootstrap_fpr_bound(
    distances: np.ndarray,
    radius: int,
    *,
    model: str = TAIL_MODELS[0],
    level: float = 0.95,
    resamples: int = 200,
    rng: np.random.Generator,
    min_tail_pairs: int = 10,
) -> tuple[float, float]:
    """``(point estimate, upper bound)`` of the unrelated-pair FPR at ``radius``, from a bootstrap over *images*.

    ``distances`` is the ``m x m`` matrix of :func:`pairwise_distances` for
    ``m`` images. Pairs that share an image are dependent, so resampling pairs
    understates the uncertainty; here the images are resampled with
    replacement, every pair of two *different* original images among the
    resample is kept, and the FPR is estimated as on the full sample: the
    empirical CDF where at least ``min_tail_pairs`` pairs support it, the
    lower-tail fit (``model``) below. The bound is the ``level`` quantile of
    the ``resamples`` estimates; it covers sampling error in the corpus, not
    the choice of corpus or of tail model.
    """
    _check_model(model)
    if not 0.5 <= level < 1.0:
        raise ConfigError(f"level = {level} must lie in [0.5, 1)")
    d = np.asarray(distances, dtype=np.int64)
    m = int(d.shape[0])
    bits = int(d.max(initial=0))
    iu = np.triu_indices(m, 1)

    def estimate(idx: np.ndarray) -> float:
        a, b = idx[iu[0]], idx[iu[1]]
        keep = a != b  # a pair of one image with its own copy is not a pair of unrelated images
        counts = np.bincount(d[a[keep], b[keep]], minlength=bits + 2).astype(np.int64)
        below = counts[: radius + 1].sum()
        if below >= min_tail_pairs:
            return float(below / counts.sum())
        return fit_lower_tail(counts, model=model).fpr(radius)

    point = estimate(np.arange(m))
    boot = np.array([estimate(rng.integers(0, m, m)) for _ in range(resamples)])
    return point, float(np.quantile(boot, level))
