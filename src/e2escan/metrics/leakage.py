"""What an honest-but-curious server can infer about labels from features it observed.

Two estimators, both on one feature at a time (and on the joint feature
vector for the classifier):

* **advantage**: max over thresholds of |TPR - FPR| of a one-feature
  threshold classifier, i.e. the Kolmogorov-Smirnov distance between the
  feature's distribution in the two classes. 0 means the feature says nothing;
  1 means it separates the classes perfectly. On finite samples it is biased
  upwards, so each estimate comes with the value a permutation of the labels
  gives (the chance level) and a p-value.
* **mutual information** (bits) between the discretised feature and the
  label, plug-in estimate with the Miller-Madow bias correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def advantage(feature: np.ndarray, label: np.ndarray) -> float:
    """max_t |P(f > t | 1) - P(f > t | 0)| (0 when a class is empty)."""
    feature = np.asarray(feature, dtype=float)
    label = np.asarray(label, dtype=bool)
    n1, n0 = int(label.sum()), int((~label).sum())
    if n1 == 0 or n0 == 0:
        return 0.0
    order = np.argsort(feature, kind="stable")
    f, y = feature[order], label[order]
    c1 = np.cumsum(y) / n1
    c0 = np.cumsum(~y) / n0
    # Only thresholds between distinct values are valid cut points.
    last = np.r_[f[1:] != f[:-1], True]
    return float(np.max(np.abs(c1[last] - c0[last]), initial=0.0))


def mutual_information_bits(feature: np.ndarray, label: np.ndarray, bins: int = 16) -> float:
    """Plug-in MI with Miller-Madow correction, feature discretised into quantile bins."""
    feature = np.asarray(feature, dtype=float)
    label = np.asarray(label, dtype=bool)
    n = feature.size
    if n == 0:
        return 0.0
    uniq = np.unique(feature)
    if uniq.size <= bins:
        codes = np.searchsorted(uniq, feature)
    else:
        edges = np.unique(np.quantile(feature, np.linspace(0, 1, bins + 1)[1:-1]))
        codes = np.searchsorted(edges, feature, side="right")
    joint = np.zeros((codes.max() + 1, 2))
    np.add.at(joint, (codes, label.astype(int)), 1)

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts > 0] / counts.sum()
        nonzero = int((counts > 0).sum())
        return float(-(p * np.log2(p)).sum() + (nonzero - 1) / (2 * counts.sum() * math.log(2)))

    mi = entropy(joint.sum(axis=1)) + entropy(joint.sum(axis=0)) - entropy(joint.ravel())
    return max(0.0, mi)


@dataclass(frozen=True, slots=True)
class LeakageEstimate:
    feature: str
    scope: str
    n: int
    positives: int
    advantage: float
    chance_advantage: float  # mean advantage under permuted labels
    p_value: float
    mutual_information_bits: float

    def as_dict(self) -> dict:
        return {
            "feature": self.feature,
            "scope": self.scope,
            "n": self.n,
            "positives": self.positives,
            "advantage": self.advantage,
            "chance_advantage": self.chance_advantage,
            "p_value": self.p_value,
            "mutual_information_bits": self.mutual_information_bits,
        }


def estimate(
    feature_name: str,
    scope: str,
    feature: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    permutations: int = 200,
) -> LeakageEstimate:
    feature = np.asarray(feature, dtype=float)
    label = np.asarray(label, dtype=bool)
    adv = advantage(feature, label)
    null = np.array([advantage(feature, rng.permutation(label)) for _ in range(permutations)])
    p_value = (1 + int((null >= adv - 1e-12).sum())) / (permutations + 1)
    return LeakageEstimate(
        feature_name,
        scope,
        int(feature.size),
        int(label.sum()),
        adv,
        float(null.mean()) if permutations else float("nan"),
        p_value,
        mutual_information_bits(feature, label),
    )
