"""The model the statistical path samples from: match and flag probabilities from a calibration.

:func:`probabilities` turns a scenario, its calibration and the protocol's
:class:`~e2escan.protocols.StatisticalModel` into :class:`Probabilities`
(per-image false-match and recall rates, and the once-per-replicate draws of
which popular-image copies match); :func:`innocent_flag_expectation` is the
closed form of innocent accounts flagged at ``t = 1``. The sampling itself is
:mod:`e2escan.sim.statistical`. Per replicate:

* a fresh innocent image (sent with any transform) falsely matches with
  ``p_fp``: measured directly on the calibration's images against random
  ``D``-subsets of the others where its data reach, else ``1 - (1 - q(r))^D``
  (``q``: calibrated collision probability of one pair, ``D``: database size);
* a copy is a deterministic function of its image and transform, so whether it
  matches is drawn once per replicate per *(image, transform) unit*, not per
  copy. For popular image ``i`` (forwards): the original matches with ``p_fp``
  (``M_i``); the copy sent with transform ``k`` matches with the transform's
  calibrated recall ``r_k`` when ``M_i``, else with ``q_k = p_fp (1 - r_k) / (1 -
  p_fp)`` (a copy that left its original's neighbourhood is a fresh image to
  the database), so every forward's marginal false-match rate is ``p_fp`` as on
  the faithful path, and false matches of viral images are correlated across
  accounts. For known image ``j`` (offenders): the copy with transform ``k``
  matches with ``r_k``. A matching copy keeps its original's hash with
  probability ``r_k(0) / r_k(r)``;
* ``innocent_flag_expectation`` gives the closed-form expectation over the
  viral draws of innocent accounts flagged at ``t = 1``, the probability of a
  viral false match and its conditional impact (``RunMetrics.model``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScenarioError
from ..protocols import StatisticalModel, get_protocol
from .calibration import Calibration
from .scenario import Scenario, shipped_scenarios_dir


def protocol_matching(scenario: Scenario, protocol: Any = None) -> tuple[int, int]:
    """(Hamming radius, threshold) that decide matches and flags, from the protocol's statistical model.

    Read from the protocol's own parameter object, so omitted parameters take
    the protocol's defaults exactly as on the faithful path (e.g. tpsi-ad's
    threshold of 30).
    """
    model = _protocol_model(scenario, protocol)
    return model.radius, model.threshold


def _protocol_model(scenario: Scenario, protocol: Any = None) -> StatisticalModel:
    """The protocol's :class:`StatisticalModel` for the scenario's parameters; refuses what it cannot model."""
    proto = protocol if protocol is not None else get_protocol(scenario.protocol.name)
    model = proto.statistical_model(scenario.protocol.params)
    if model.unsupported:
        raise ScenarioError(f"protocol.name: {model.unsupported}")
    return model


def load_calibration(scenario: Scenario) -> Calibration:
    path = Path(scenario.statistical.calibration)
    if not path.is_absolute():
        path = shipped_scenarios_dir() / path
    cal = Calibration.load(path)
    hasher = scenario.hasher.name
    if cal.hasher.split(":")[0].split("(")[0] != hasher:
        raise ScenarioError(f"statistical.calibration: {path} calibrates hasher {cal.hasher!r}, the scenario uses {hasher!r}")
    if cal.encoding != scenario.content.encoding or cal.image_size != scenario.content.image_size:
        raise ScenarioError(
            f"statistical.calibration: {path} was measured with {cal.encoding} attachments of {cal.image_size}px; "
            f"the scenario uses {scenario.content.encoding} and {scenario.content.image_size}px"
        )
    return cal


@dataclass
class Probabilities:
    radius: int
    threshold: int
    p_fresh: float  # a fresh innocent image falsely matches
    p_popular: np.ndarray  # per popular image: does its original match (drawn once per replicate)
    popular_share: np.ndarray  # popularity distribution
    recall: float  # a known image (after the transform mix) matches
    p_innocent_image: float  # an innocent image matches, averaged over fresh/forwarded
    synthetic: float = 0.0  # a voucher is synthetic (threshold protocols): it opens but never counts toward t
    synthetic_capacity: int = 0  # most synthetic vouchers per device
    #: A copy is sent with transform k of the scenario's mix with probability ``spec_weight[k]``; a copy of a
    #: matching original still matches with probability ``spec_recall[k]`` and then keeps the original's
    #: hash with probability ``spec_same[k]``.
    spec_weight: np.ndarray = field(default_factory=lambda: np.ones(1))
    spec_recall: np.ndarray = field(default_factory=lambda: np.ones(1))
    spec_same: np.ndarray = field(default_factory=lambda: np.ones(1))
    dedup: bool = False  # copies of one hash count once toward t (tpsi-ad's dedup = "hash")
    forward_share: float = 0.0
    reveals_each_match: bool = False  # the server learns each voucher's match result (a leakage feature)
    #: Per popular image and transform (``(P, K)``), drawn once per replicate: does that copy match, and does
    #: it keep its original's hash. ``None``: derived from ``p_popular`` as ``M_i & (recall draw)`` would be
    #: with every recall 1 (tests that build the object by hand).
    unit_match: np.ndarray | None = None
    unit_same: np.ndarray | None = None

    @property
    def p_fresh_image(self) -> float:
        """An innocent image is fresh (not a forward) and falsely matches."""
        return (1.0 - self.forward_share) * self.p_fresh

    def units(self) -> tuple[np.ndarray, np.ndarray]:
        """``(match, same)``, each ``(P, K)``."""
        if self.unit_match is not None:
            same = self.unit_same if self.unit_same is not None else self.unit_match
            return self.unit_match, same
        match = np.repeat(np.asarray(self.p_popular, dtype=bool)[:, None], self.spec_weight.size, axis=1)
        return match, match

    def stray_probability(self) -> np.ndarray:
        """``q_k``: a copy with transform ``k`` of a popular image whose original does not match, matches."""
        if self.p_fresh >= 1.0:
            return np.ones_like(self.spec_recall)
        return self.p_fresh * (1.0 - self.spec_recall) / (1.0 - self.p_fresh)


def draw_units(rng: np.random.Generator, originals: np.ndarray, recall: np.ndarray, same: np.ndarray,
               stray: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per (image, transform): does the copy match, and does it keep its original's hash.

    ``originals[i]``: image ``i``'s original matches. A copy with transform
    ``k`` then matches with ``recall[k]`` (and keeps the original's hash with
    ``same[k]``), else with ``stray[k]`` (a hash of its own).
    """
    n, k = originals.size, recall.size
    u = rng.random((n, k))
    match = np.where(originals[:, None], u < recall[None, :], u < np.broadcast_to(stray, (k,))[None, :])
    keeps = originals[:, None] & match & (rng.random((n, k)) < same[None, :])
    return match, keeps


def probabilities(
    scenario: Scenario, cal: Calibration, rng: np.random.Generator, protocol: Any = None
) -> Probabilities:
    model = _protocol_model(scenario, protocol)
    radius, threshold = model.radius, model.threshold
    t = scenario.traffic
    override = scenario.statistical.false_match_rate
    if override is not None:
        p_fresh = override
    else:
        p_fresh = cal.false_match_probability(
            radius, scenario.content.database_size, tail_model=scenario.statistical.tail_model
        )
    weights = np.array([x.weight for x in scenario.content.transforms], dtype=float)
    weights /= weights.sum()
    recalls = np.array([cal.recall(x.spec, radius) for x in scenario.content.transforms])
    at_zero = np.array([cal.recall(x.spec, 0) for x in scenario.content.transforms])
    same = np.divide(at_zero, recalls, out=np.zeros_like(recalls), where=recalls > 0)
    recall = float((weights * recalls).sum())
    ranks = np.arange(1, t.popular_images + 1, dtype=float)
    share = ranks ** -t.popularity_exponent
    share /= share.sum()
    popular_match = rng.random(t.popular_images) < p_fresh
    synthetic, capacity = model.synthetic_probability, model.synthetic_capacity
    dedup = model.copies_once and threshold > 1
    prob = Probabilities(radius, threshold, p_fresh, popular_match, share, recall, 0.0, synthetic, capacity,
                         weights, recalls, same, dedup, t.forward_share, reveals_each_match=model.reveals_each_match)
    # A forward is a copy of a popular image sent with a transform of the mix: it matches as its unit does.
    prob.unit_match, prob.unit_same = draw_units(rng, popular_match, recalls, same, prob.stray_probability())
    prob.p_innocent_image = (1 - t.forward_share) * p_fresh + t.forward_share * float(
        (share[:, None] * weights[None, :] * prob.unit_match).sum())
    return prob


def innocent_flag_expectation(n_inn: int, images_per_account: float, prob: Probabilities) -> dict[str, float | None]:
    """Closed form, over the viral draws, of innocent accounts flagged at ``t = 1`` (Poisson traffic).

    An innocent account sends Poisson(``m = images_per_account``) images over
    the run. It is flagged when it sends at least one genuine (non-synthetic)
    matching image: a fresh false match (rate ``L_f = m (1 - f) p (1 - s)``) or
    a forward from a matching unit. Unit ``(i, k)`` is sent at rate ``l_ik = m f
    share_i w_k (1 - s)``; it matches with ``r_k`` when popular image ``i``'s
    original does (probability ``p``) and with ``q_k`` otherwise, once per
    replicate, so with ``a_ik = 1 - exp(-l_ik)``

        E[flagged] = N (1 - exp(-L_f) prod_i [(1 - p) prod_k (1 - q_k a_ik) + p prod_k (1 - r_k a_ik)])

    The viral-day probability is that of at least one matching unit,
    ``1 - prod_i [(1 - p) prod_k (1 - q_k) + p prod_k (1 - r_k)]``, and the
    conditional impact is ``E[flagged | some matching unit] - E[flagged | none]``
    (with no matching unit only fresh images can flag). ``None`` for ``t > 1``,
    where no closed form is given.
    """
    p, s_ = prob.p_fresh, prob.synthetic
    r, q = prob.spec_recall, prob.stray_probability()
    fresh = images_per_account * prob.p_fresh_image * (1 - s_)
    lam = images_per_account * prob.forward_share * (1 - s_) * prob.popular_share[:, None] * prob.spec_weight[None, :]
    a = -np.expm1(-lam)
    no_unit = (1 - p) * np.prod(1 - q) + p * np.prod(1 - r)
    viral_day = float(-np.expm1(prob.popular_share.size * np.log(no_unit))) if no_unit > 0 else 1.0
    if prob.threshold != 1:
        return {"expected_innocent_flagged": None, "viral_day_probability": viral_day, "viral_day_impact": None}
    none_i = (1 - p) * np.prod(1 - q[None, :] * a, axis=1) + p * np.prod(1 - r[None, :] * a, axis=1)
    log_none = float(np.log(none_i).sum()) if np.all(none_i > 0) else -np.inf
    expected = n_inn * float(-np.expm1(-fresh + log_none))
    quiet = n_inn * float(-np.expm1(-fresh))
    impact = (expected - (1 - viral_day) * quiet) / viral_day - quiet if viral_day > 0 else 0.0
    return {"expected_innocent_flagged": expected, "viral_day_probability": viral_day, "viral_day_impact": impact}
