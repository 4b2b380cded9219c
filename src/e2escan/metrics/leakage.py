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
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Plain-language names of the ServerView features (figures and the summary table).
FEATURE_LABELS = {
    "messages_sent": "messages sent",
    "vouchers": "safety vouchers sent (one per image)",
    "bytes_sent": "bytes sent",
    "blob_uploads": "attachments uploaded",
    "blob_bytes": "attachment bytes uploaded",
    "match_events": "vouchers the server saw match",
    "opened_events": "vouchers whose outer layer opened (matches and synthetic)",
    "reveal_events": "threshold reveals",
    "night_share": "share of messages sent at night",
}


def feature_label(name: str) -> str:
    """``FEATURE_LABELS[name]``, or the name itself for features without one."""
    return FEATURE_LABELS.get(name, name.replace("_", " "))


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


# --- the headline: one test over all features, an advantage estimated on held-out data -------------------


@dataclass(frozen=True, slots=True)
class MaxFeatureTest:
    """Whether *any* of several features tells the label, and how well the best rule does on held-out data.

    ``p_value`` is a max-statistic permutation test: in every permutation of
    the labels the largest in-sample advantage over all features is taken, so
    picking the best of ``features`` is paid for (the printed p is the
    family's, not the best feature's own). ``heldout_advantage`` is
    cross-fitted: on each of two stratified folds the feature, threshold and
    direction are chosen on the other fold and evaluated here, and the
    held-out predictions are pooled (TPR - FPR, signed; near 0 when nothing
    leaks). The interval is the normal approximation for a difference of two
    proportions over the held-out counts, conditional on the data set.
    """

    scope: str
    features: int
    positives: int
    negatives: int
    best_feature: str
    in_sample_advantage: float
    p_value: float
    permutations: int
    heldout_advantage: float
    ci_low: float
    ci_high: float

    @property
    def at_floor(self) -> bool:
        return self.p_value <= 1.0 / (self.permutations + 1) + 1e-15

    def p_text(self) -> str:
        if self.at_floor:
            return f"p < {1.0 / (self.permutations + 1) * 1.0001:.2g}"
        return f"p = {self.p_value:.2g}"

    def as_dict(self) -> dict:
        return {
            "scope": self.scope,
            "features": self.features,
            "positives": self.positives,
            "negatives": self.negatives,
            "best_feature": self.best_feature,
            "in_sample_advantage": self.in_sample_advantage,
            "p_value": self.p_value,
            "permutations": self.permutations,
            "heldout_advantage": self.heldout_advantage,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }


def _advantage_matrix(feature: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """In-sample advantage of one feature under each row of ``labels`` (rows: label vectors of one class count)."""
    order = np.argsort(feature, kind="stable")
    f = feature[order]
    last = np.flatnonzero(np.r_[f[1:] != f[:-1], True])  # the valid cut points (between distinct values)
    n1 = int(labels[0].sum())
    n0 = labels.shape[1] - n1
    ones = np.cumsum(labels[:, order], axis=1, dtype=np.int32)[:, last]
    c1 = ones / max(n1, 1)
    c0 = ((last + 1)[None, :] - ones) / max(n0, 1)
    return np.abs(c1 - c0).max(axis=1, initial=0.0)


def _best_rule(x: np.ndarray, y: np.ndarray) -> tuple[int, float, float, int]:
    """``(feature index, advantage, threshold, direction)`` maximising TPR - FPR on ``(x, y)``."""
    best = (0, -1.0, 0.0, 1)
    n1, n0 = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    for j in range(x.shape[1]):
        order = np.argsort(x[:, j], kind="stable")
        f, lab = x[order, j], y[order]
        c1, c0 = np.cumsum(lab) / n1, np.cumsum(~lab) / n0
        last = np.flatnonzero(np.r_[f[1:] != f[:-1], True])
        # "positive above the cut": TPR - FPR = (1 - c1) - (1 - c0) = c0 - c1; "positive at or below": c1 - c0.
        for direction, gain in ((1, c0[last] - c1[last]), (-1, c1[last] - c0[last])):
            k = int(np.argmax(gain))
            if gain[k] > best[1]:
                cut = last[k]
                nxt = f[cut + 1] if cut + 1 < f.size else f[cut] + 1.0
                best = (j, float(gain[k]), float((f[cut] + nxt) / 2), direction)
    return best


def max_feature_test(
    features: Mapping[str, np.ndarray],
    label: np.ndarray,
    rng: np.random.Generator,
    scope: str = "",
    permutations: int = 999,
) -> MaxFeatureTest:
    """The headline leakage test over every feature at once (see :class:`MaxFeatureTest`)."""
    names = list(features)
    x = np.column_stack([np.asarray(features[n], dtype=float) for n in names])
    y = np.asarray(label, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0 or not names:
        return MaxFeatureTest(scope, len(names), n1, n0, "", 0.0, 1.0, permutations, 0.0, 0.0, 0.0)
    observed = np.array([advantage(x[:, j], y) for j in range(len(names))])
    best = int(np.argmax(observed))
    exceed = 0
    for start in range(0, permutations, 200):
        b = min(200, permutations - start)
        perms = rng.permuted(np.broadcast_to(y, (b, y.size)), axis=1)
        null_max = np.max([_advantage_matrix(x[:, j], perms) for j in range(len(names))], axis=0)
        exceed += int((null_max >= observed[best] - 1e-12).sum())
    p_value = (1 + exceed) / (permutations + 1)
    # Cross-fitting on two stratified folds.
    fold = np.empty(y.size, dtype=int)
    for cls in (True, False):
        idx = np.flatnonzero(y == cls)
        fold[rng.permutation(idx)] = np.arange(idx.size) % 2
    tp = fp = 0
    for k in (0, 1):
        train, test = fold != k, fold == k
        if y[train].all() or not y[train].any():
            continue
        j, _, thr, direction = _best_rule(x[train], y[train])
        pred = (x[test, j] > thr) if direction == 1 else (x[test, j] <= thr)
        tp += int((pred & y[test]).sum())
        fp += int((pred & ~y[test]).sum())
    tpr, fpr = tp / n1, fp / n0
    held = tpr - fpr
    se = math.sqrt(tpr * (1 - tpr) / n1 + fpr * (1 - fpr) / n0)
    return MaxFeatureTest(scope, len(names), n1, n0, names[best], float(observed[best]), p_value, permutations,
                          held, max(-1.0, held - 1.96 * se), min(1.0, held + 1.96 * se))
