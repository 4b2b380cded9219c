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
