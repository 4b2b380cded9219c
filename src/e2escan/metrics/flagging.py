"""Account-level false flags: how likely an innocent account is to cross the match threshold.

An account uploads ``images`` innocent images (per year, say). Each one falsely
matches the database independently with probability ``per_image_rate``; the
account is flagged once at least ``threshold`` images match. The probability
of a false flag is then the binomial upper tail ``P[Bin(n, p) >= t]``, and the
Poisson tail ``P[Poisson(n p) >= t]`` is its usual approximation.

These tails are needed far out (Apple's design target was 1e-12 per account
per year; heat maps span hundreds of decades), where ``1 - cdf`` is useless.
Every tail here is summed directly, term by term, on the side of the mode
where the terms shrink, starting from a point probability computed with
Loader's saddle-point formula (C. Loader, "Fast and accurate computation of
binomial probabilities", 2000), which keeps a relative error near machine
precision even for very large ``n``. The sum stops once a geometric bound on
the remainder is below 2**-56 of the partial sum. On the other side of the
mode the complement is summed instead; there the tail exceeds one half, so
``1 - lower`` loses nothing. Work is in natural logarithms throughout, so the
``log10_*`` variants stay finite far below the smallest double (1e-1000 is
fine).

The arguments broadcast like numpy ufuncs. Counts (``images``, ``threshold``)
must be integer-valued; ``images`` must not exceed 2**53.

Cost: proportional to the number of terms summed, which is small except when
``threshold`` lies within a few standard deviations of a very large mean
(about ``10 * sqrt(n p)`` terms there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "false_flag_probability",
    "log10_false_flag_probability",
    "log10_poisson_false_flag_probability",
    "max_images_for_target",
    "poisson_false_flag_probability",
    "required_threshold",
]

MODELS = ("binomial", "poisson")

_LN10 = math.log(10.0)
_LOG_2PI = math.log(2.0 * math.pi)
_MAX_COUNT = 2.0**53  # counts above this are not exact in a double
_REMAINDER_RTOL = 2.0**-56  # stop summing once the rest is below this share of the sum
_BLOCK_CELLS = 1 << 21  # cap on (elements x terms) evaluated per summation round


# --- point probabilities ---------------------------------------------------


def _stirling_error_exact(x: int) -> float:
    """log(x!) - log(sqrt(2 pi x) (x/e)^x) to double precision, via 40-digit decimals."""
    pi = Decimal("3.14159265358979323846264338327950288419716939937510")
    with localcontext() as ctx:
        ctx.prec = 40
        dx = Decimal(x)
        value = Decimal(math.factorial(x)).ln() - (dx + Decimal("0.5")) * dx.ln() + dx - (2 * pi).ln() / 2
    return float(value)


# Index 0 is never used (k = 0 and k = n are handled exactly); kept so that
# the table can be indexed by the count itself.
_STIRLING_ERROR_TABLE = np.array([0.0] + [_stirling_error_exact(i) for i in range(1, 16)])


def _stirling_error(x: np.ndarray) -> np.ndarray:
    """Stirling's series remainder for integer-valued ``x >= 1``."""
    out = np.empty_like(x)
    small = x <= 15
    out[small] = _STIRLING_ERROR_TABLE[x[small].astype(np.int64)]
    big = x[~small]
    inv2 = 1.0 / (big * big)
    # Terms 1/12 - 1/(360 x^2) + 1/(1260 x^4) - 1/(1680 x^6) + 1/(1188 x^8); the
    # first omitted term is below 2e-16 for x > 15.
    out[~small] = (
        1.0 / 12 - (1.0 / 360 - (1.0 / 1260 - (1.0 / 1680 - inv2 / 1188) * inv2) * inv2) * inv2
    ) / big
    return out


def _deviance(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x log(x/m) + m - x`` for ``x, m > 0``, without cancellation when ``x`` is near ``m``."""
    out = np.empty(np.broadcast(x, m).shape)
    d = x - m
    near = np.abs(d) < 0.1 * (x + m)
    xf, mf = x[~near], m[~near]
    out[~near] = xf * (np.log(xf) - np.log(mf)) + mf - xf
    # Series in v = (x - m)/(x + m), |v| < 0.1: each term is 100 times smaller.
    xn, dn = x[near], d[near]
    v = dn / (xn + m[near])
    total = dn * v
    term = 2.0 * xn * v
    v2 = v * v
    for j in range(1, 12):
        term = term * v2
        total = total + term / (2 * j + 1)
    out[near] = total
    return out


def _log_binomial_pmf(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """log P[Bin(n, p) = k] for ``0 < p < 1`` and integer ``0 <= k <= n`` (same shapes)."""
    out = np.empty(k.shape)
    at_n = k == n
    out[at_n] = n[at_n] * np.log(p[at_n])
    at_0 = k == 0
    out[at_0] = n[at_0] * np.log1p(-p[at_0])
    inner = ~(at_n | at_0)
    ki, ni, pi = k[inner], n[inner], p[inner]
    rest = ni - ki
    out[inner] = (
        _stirling_error(ni)
        - _stirling_error(ki)
        - _stirling_error(rest)
        - _deviance(ki, ni * pi)
        - _deviance(rest, ni * (1.0 - pi))
        + 0.5 * (np.log(ni) - np.log(ki) - np.log(rest) - _LOG_2PI)
    )
    return out


def _log_poisson_pmf(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """log P[Poisson(lam) = k] for ``lam > 0`` and integer ``k >= 0`` (same shapes)."""
    out = np.empty(k.shape)
    at_0 = k == 0
    out[at_0] = -lam[at_0]
    ki = k[~at_0]
    out[~at_0] = -_stirling_error(ki) - _deviance(ki, lam[~at_0]) - 0.5 * (np.log(ki) + _LOG_2PI)
    return out


# --- tail summation --------------------------------------------------------

# ratio(k, idx) -> f(k) / f(k - step) for the elements ``idx`` (k is 2-D: elements x terms)
_Ratio = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _log_walk_sum(
    log_first: np.ndarray, start: np.ndarray, step: int, limit: np.ndarray, ratio: _Ratio
) -> np.ndarray:
    """log of ``sum_j f(start + j*step)`` over ``j >= 0`` while the index stays within ``limit``.

    ``f(start) = exp(log_first)``; later terms follow from ``ratio``. The ratios
    must be below one and non-increasing along the walk (true on the far side
    of the mode), which makes ``last * r / (1 - r)`` a bound on the remainder.
    """
    size = log_first.size
    total = np.ones(size)  # the sum, in units of the first term
    last = np.ones(size)
    walked = np.zeros(size)
    active = np.arange(size)
    block = 8
    while active.size:
        offsets = walked[active, None] + np.arange(1, block + 1)
        ks = start[active, None] + step * offsets
        outside = (ks - limit[active, None]) * step > 0
        r = np.where(outside, 0.0, ratio(np.where(outside, start[active, None], ks), active))
        terms = last[active, None] * np.cumprod(r, axis=1)
        total[active] += terms.sum(axis=1)
        last[active] = terms[:, -1]
        walked[active] += block
        k_next = ks[:, -1:] + step
        outside_next = (k_next - limit[active, None]) * step > 0
        r_next = np.where(outside_next, 0.0, ratio(np.where(outside_next, start[active, None], k_next), active))[:, 0]
        r_next = np.minimum(r_next, 1.0 - 2.0**-52)
        remainder = last[active] * r_next / (1.0 - r_next)
        done = (remainder <= _REMAINDER_RTOL * total[active]) | (last[active] == 0.0)
        active = active[~done]
        if active.size:
            block = int(min(block * 2, max(8, _BLOCK_CELLS // active.size)))
    return log_first + np.log(total)


def _log_complement(log_lower: np.ndarray) -> np.ndarray:
    """log(1 - exp(log_lower)) for a lower tail known to be below one half."""
    return np.log1p(-np.exp(log_lower))


def _binomial_log_sf(n: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log P[Bin(n, p) >= t] on validated, broadcast float arrays."""
    out = np.empty(n.shape)
    certain = (t <= 0) | ((p == 1.0) & (t <= n))
    impossible = ~certain & ((t > n) | (p == 0.0))
    out[certain] = 0.0
    out[impossible] = -np.inf
    todo = ~(certain | impossible)
    nr, pr, tr = n[todo], p[todo], t[todo]
    result = np.empty(nr.shape)

    # t above the mean: the terms from t upwards shrink; sum them.
    up = tr > nr * pr
    nu, pu, tu = nr[up], pr[up], tr[up]
    odds = pu / (1.0 - pu)

    def ratio_up(k: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return (nu[idx, None] - k + 1.0) / k * odds[idx, None]

    result[up] = _log_walk_sum(_log_binomial_pmf(tu, nu, pu), tu, +1, nu, ratio_up)

    # t at or below the mean: P[X <= t-1] < 1/2 (t-1 lies below the median); sum it downwards.
    nd, pd, td = nr[~up], pr[~up], tr[~up]
    inverse_odds = (1.0 - pd) / pd

    def ratio_down(k: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return (k + 1.0) / (nd[idx, None] - k) * inverse_odds[idx, None]

    first = td - 1.0
    log_lower = _log_walk_sum(_log_binomial_pmf(first, nd, pd), first, -1, np.zeros_like(first), ratio_down)
    result[~up] = _log_complement(log_lower)
    out[todo] = result
    return out


def _poisson_log_sf(lam: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log P[Poisson(lam) >= t] on validated, broadcast float arrays."""
    out = np.empty(lam.shape)
    certain = t <= 0
    impossible = ~certain & (lam == 0.0)
    out[certain] = 0.0
    out[impossible] = -np.inf
    todo = ~(certain | impossible)
    lr, tr = lam[todo], t[todo]
    result = np.empty(lr.shape)

    up = tr > lr
    lu, tu = lr[up], tr[up]

    def ratio_up(k: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return lu[idx, None] / k

    result[up] = _log_walk_sum(_log_poisson_pmf(tu, lu), tu, +1, np.full_like(tu, np.inf), ratio_up)

    # t <= lam: t-1 lies below the median (at least lam - ln 2), so the lower tail is below 1/2.
    ld, td = lr[~up], tr[~up]

    def ratio_down(k: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return (k + 1.0) / ld[idx, None]

    first = td - 1.0
    log_lower = _log_walk_sum(_log_poisson_pmf(first, ld), first, -1, np.zeros_like(first), ratio_down)
    result[~up] = _log_complement(log_lower)
    out[todo] = result
    return out


# --- argument handling -----------------------------------------------------


def _float_array(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number or an array of numbers, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return arr


def _integer_array(name: str, value: Any, *, minimum: float | None) -> np.ndarray:
    arr = _float_array(name, value)
    if np.any(arr != np.floor(arr)):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if minimum is not None and np.any(arr < minimum):
        raise ConfigError(f"{name} must be at least {minimum:g}, got {value!r}")
    if np.any(np.abs(arr) > _MAX_COUNT):
        raise ConfigError(f"{name} must be at most 2**53 in magnitude, got {value!r}")
    return arr


def _probability_array(name: str, value: Any) -> np.ndarray:
    arr = _float_array(name, value)
    if np.any((arr < 0.0) | (arr > 1.0)):
        raise ConfigError(f"{name} must lie in [0, 1], got {value!r}")
    return arr


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {model!r}")


def _log_sf(model: str, n: np.ndarray, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    if model == "binomial":
        return _binomial_log_sf(n, p, t)
    return _poisson_log_sf(n * p, t)


class _Broadcast:
    """Arguments broadcast together and flattened; ``restore`` gives results their shape back."""

    def __init__(self, *arrays: np.ndarray) -> None:
        full = np.broadcast_arrays(*arrays)
        self.shape = full[0].shape
        self.flat = [np.array(a, dtype=np.float64).ravel() for a in full]

    def restore(self, values: np.ndarray) -> Any:
        values = values.reshape(self.shape)
        return values.item() if values.ndim == 0 else values


def _counts_rate_threshold(images: Any, per_image_rate: Any, threshold: Any) -> _Broadcast:
    return _Broadcast(
        _integer_array("images", images, minimum=0),
        _probability_array("per_image_rate", per_image_rate),
        _integer_array("threshold", threshold, minimum=None),
    )


# --- public API ------------------------------------------------------------


def log10_false_flag_probability(images: Any, per_image_rate: Any, threshold: Any) -> Any:
    """log10 of :func:`false_flag_probability`; finite far below 1e-308 (``-inf`` when impossible)."""
    args = _counts_rate_threshold(images, per_image_rate, threshold)
    return args.restore(_binomial_log_sf(*args.flat) / _LN10)


def false_flag_probability(images: Any, per_image_rate: Any, threshold: Any) -> Any:
    """P[Bin(images, per_image_rate) >= threshold]: an innocent account reaches the threshold.

    Exact binomial upper tail (independent images), with a relative error below
    ``2e-14 * max(1, |ln P|)``: the worst of 9,000 seeded random cases against
    exact rational sums (``n <= 400``) was ``1.4e-14 * max(1, |ln P|)``, in the
    body of the distribution (``n = 161, p = 0.44, t = 92``); in far tails it is
    nearer ``4e-15 * |ln P|`` (``tests/test_flagging.py``). Edge cases: ``threshold <= 0`` gives 1,
    ``threshold > images`` gives 0, ``per_image_rate`` 0 gives 0 and 1 gives 1
    (for ``1 <= threshold <= images``). Results below about 1e-308 underflow to
    0; use :func:`log10_false_flag_probability` for those. A float for scalar
    arguments, else an array of the broadcast shape.
    """
    args = _counts_rate_threshold(images, per_image_rate, threshold)
    return args.restore(np.exp(_binomial_log_sf(*args.flat)))


def log10_poisson_false_flag_probability(images: Any, per_image_rate: Any, threshold: Any) -> Any:
    """log10 of :func:`poisson_false_flag_probability`; finite far below 1e-308."""
    args = _counts_rate_threshold(images, per_image_rate, threshold)
    n, p, t = args.flat
    return args.restore(_poisson_log_sf(n * p, t) / _LN10)


def poisson_false_flag_probability(images: Any, per_image_rate: Any, threshold: Any) -> Any:
    """P[Poisson(images * per_image_rate) >= threshold], the usual approximation of the binomial tail.

    Close to :func:`false_flag_probability` when the rate is small; in the far
    tail it is slightly larger (more conservative). Same accuracy and edge
    cases as the binomial version, except that a rate of 1 is not special.
    """
    args = _counts_rate_threshold(images, per_image_rate, threshold)
    n, p, t = args.flat
    return args.restore(np.exp(_poisson_log_sf(n * p, t)))


def _log_target(target: np.ndarray) -> np.ndarray:
    out = np.full(target.shape, -np.inf)
    positive = target > 0
    out[positive] = np.log(target[positive])
    return out


def required_threshold(images: Any, per_image_rate: Any, target: Any, *, model: str = "binomial") -> Any:
    """The smallest threshold ``t >= 0`` whose false-flag probability is at most ``target``.

    ``target`` lies in [0, 1]; ``model`` is ``"binomial"`` (exact) or
    ``"poisson"``. Under the binomial model ``t = images + 1`` always
    qualifies; under the Poisson model a zero ``target`` is rejected unless the
    mean is zero. An ``int`` for scalar arguments, else an ``int64`` array.
    A target within rounding (relative 1e-14) of a tail value may resolve
    either way.
    """
    _check_model(model)
    args = _Broadcast(
        _integer_array("images", images, minimum=0),
        _probability_array("per_image_rate", per_image_rate),
        _probability_array("target", target),
    )
    n, p, goal = args.flat
    log_goal = _log_target(goal)
    mean = n * p
    if model == "poisson" and np.any((goal == 0) & (mean > 0)):
        raise ConfigError("target must be above 0 under the Poisson model (its tail is never zero)")

    # Invariant: the tail at lo exceeds the target, the tail at hi meets it.
    lo = np.zeros(n.shape)
    below_half = goal < 0.5
    # At or below the mean the tail exceeds one half, so the floor of the mean qualifies as lo.
    lo[below_half] = np.floor(mean[below_half])
    if model == "binomial":
        hi = n + 1.0  # the tail is zero there
    else:
        hi = lo + 1.0
        pending = np.flatnonzero(_poisson_log_sf(mean, hi) > log_goal)
        while pending.size:
            lo[pending] = hi[pending]
            hi[pending] = 2.0 * hi[pending]
            if np.any(hi[pending] > _MAX_COUNT):
                raise ConfigError("the required threshold exceeds 2**53: target is too small for this mean")
            pending = pending[_poisson_log_sf(mean[pending], hi[pending]) > log_goal[pending]]
    trivial = goal >= 1.0
    lo[trivial] = -1.0
    hi[trivial] = 0.0
    open_ = np.flatnonzero(hi - lo > 1.0)
    while open_.size:
        mid = np.floor((lo[open_] + hi[open_]) / 2.0)
        meets = _log_sf(model, n[open_], p[open_], mid) <= log_goal[open_]
        hi[open_[meets]] = mid[meets]
        lo[open_[~meets]] = mid[~meets]
        open_ = open_[hi[open_] - lo[open_] > 1.0]
    return args.restore(hi.astype(np.int64))


def max_images_for_target(per_image_rate: Any, threshold: Any, target: Any, *, model: str = "binomial") -> Any:
    """The largest account size (images) whose false-flag probability is at most ``target``.

    The probability grows with the number of images, so every smaller account
    meets the target too. ``threshold`` must be at least 1; ``model`` is
    ``"binomial"`` or ``"poisson"``. ``inf`` where no size up to 2**53 exceeds
    the target (for instance a zero rate or a target of 1). A float for scalar
    arguments, else a float array of whole numbers or ``inf``.
    """
    _check_model(model)
    args = _Broadcast(
        _probability_array("per_image_rate", per_image_rate),
        _integer_array("threshold", threshold, minimum=1),
        _probability_array("target", target),
    )
    p, t, goal = args.flat
    log_goal = _log_target(goal)

    # Invariant: the tail at lo meets the target, at hi it does not. With fewer
    # than t images (binomial) or none (Poisson) the tail is zero.
    lo = t - 1.0 if model == "binomial" else np.zeros(p.shape)
    hi = np.maximum(2.0 * lo, 1.0)
    unbounded = (p == 0.0) | (goal >= 1.0)
    pending = np.flatnonzero(~unbounded)
    while pending.size:
        meets = _log_sf(model, hi[pending], p[pending], t[pending]) <= log_goal[pending]
        grow = pending[meets]
        lo[grow] = hi[grow]
        hi[grow] = np.minimum(2.0 * hi[grow], _MAX_COUNT)
        capped = lo[grow] >= _MAX_COUNT
        unbounded[grow[capped]] = True
        pending = grow[~capped]
    open_ = np.flatnonzero(~unbounded & (hi - lo > 1.0))
    while open_.size:
        mid = np.floor((lo[open_] + hi[open_]) / 2.0)
        meets = _log_sf(model, mid, p[open_], t[open_]) <= log_goal[open_]
        lo[open_[meets]] = mid[meets]
        hi[open_[~meets]] = mid[~meets]
        open_ = open_[hi[open_] - lo[open_] > 1.0]
    return args.restore(np.where(unbounded, np.inf, lo))
