"""Proportions with confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Proportion:
    """``successes`` out of ``trials`` with a Wilson score interval (95% by default)."""

    successes: int
    trials: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.successes / self.trials if self.trials else float("nan")

    def as_dict(self) -> dict[str, float | int]:
        return {"count": self.successes, "of": self.trials, "rate": self.rate, "ci_low": self.low, "ci_high": self.high}


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval; well-behaved at 0 and ``trials`` successes, unlike the Wald interval."""
    if trials <= 0:
        return (float("nan"), float("nan"))
    if not 0 <= successes <= trials:
        raise ValueError(f"successes={successes} must lie in [0, trials={trials}]")
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


def proportion(successes: int, trials: int, z: float = Z95) -> Proportion:
    low, high = wilson_interval(int(successes), int(trials), z)
    return Proportion(int(successes), int(trials), low, high)


# Two-sided 97.5% quantiles of Student's t for 1..29 degrees of freedom (the normal value beyond).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045)


def t975(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else Z95


def clustered_proportion(successes: list[int], trials: list[int]) -> dict[str, float | int | str]:
    """A rate pooled over replicates with an interval from the *between-replicate* variance.

    Units inside one replicate share its database and its viral draws, so they
    are not independent: one viral false match can flag thousands of accounts
    on one simulated day and none on the next. The pooled rate is
    ``sum(k) / sum(n)``; its standard error is the cluster-robust (ratio
    estimator) one, ``sqrt(R / (R - 1) * sum((k_r - p n_r)^2)) / sum(n)``, with a
    Student t quantile on ``R - 1`` degrees of freedom. With no event in any
    replicate the between-replicate variance is 0 and says nothing, so the
    Wilson interval of the pooled counts is given instead (``ci_method`` says
    which). The 2.5th, 50th and 97.5th percentiles of the replicates' own rates
    come with it.
    """
    k = [int(x) for x in successes]
    n = [int(x) for x in trials]
    r = len(k)
    total_k, total_n = sum(k), sum(n)
    out: dict[str, float | int | str] = dict(proportion(total_k, total_n).as_dict())
    rates = sorted(ki / ni for ki, ni in zip(k, n) if ni)
    if rates:
        def pct(q: float) -> float:  # linear interpolation between order statistics
            pos = q * (len(rates) - 1)
            lo = int(math.floor(pos))
            return rates[lo] + (rates[min(lo + 1, len(rates) - 1)] - rates[lo]) * (pos - lo)

        out.update(replicate_p2_5=pct(0.025), replicate_p50=pct(0.5), replicate_p97_5=pct(0.975))
    if r < 2 or total_n == 0:
        out["ci_method"] = "Wilson, conditional on this replicate's database and viral draws"
        return out
    if total_k == 0:
        out["ci_method"] = f"Wilson on pooled counts (no event in {r} replicates)"
        return out
    p = total_k / total_n
    se = math.sqrt(r / (r - 1) * sum((ki - p * ni) ** 2 for ki, ni in zip(k, n))) / total_n
    half = t975(r - 1) * se
    out.update(ci_low=max(0.0, p - half), ci_high=min(1.0, p + half),
               ci_method=f"between-replicate variance over {r} replicates (t, {r - 1} df)")
    return out
