"""The statistical path against closed forms, each check shown to fail on the bug it exists to catch.

The outside audit injected five bugs that the old path-agreement test let
through. The flag-day bug is caught in ``test_statistical.py``; the other
four are caught here, each by a closed form computed independently of the
code under test, with its tolerance and power stated:

* synthetic thinning dropped for innocents: innocent accounts flagged at
  t = 1 with ``synthetic_probability = 0.5`` against ``N (1 - exp(-m p (1 - s)))``;
* reviewer accuracy inverted: the share of reviewed offenders confirmed
  against the scenario's accuracy;
* viral forwards never matching: innocent flags at t = 1 averaged over
  replicates against the closed form over the viral draws;
* recall from one transform only: the per-image false-negative rate against
  ``1 - sum_k w_k r_k`` read from the calibration's histograms.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sim_fakes

from e2escan.sim import statistical
from e2escan.sim.calibration import calibrate
from e2escan.sim.scenario import Scenario
from e2escan.sim.statistical import run_statistical

pytestmark = pytest.mark.usefixtures("fake_protocol")  # scenarios here name the fake protocol

TRANSFORMS = [{"spec": "none", "weight": 0.5}, {"spec": "jpeg:quality=60", "weight": 0.3},
              {"spec": "resize:scale=0.5", "weight": 0.2}]


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    path = tmp_path_factory.mktemp("cal") / "ahash-png-64.json"
    calibrate("ahash", transforms=[t["spec"] for t in TRANSFORMS], images=120, image_size=64, encoding="png",
              seed=5).save(path)
    return path


def scenario(cal, **over) -> Scenario:
    data = {
        "name": "closed", "seed": 3, "days": 2, "engine": "statistical",
        "population": {"accounts": 200_000, "offender_share": 0.01, "mean_contacts": 4},
        "traffic": {"messages_per_day": 5, "image_share": 0.6, "forward_share": 0.0, "popular_images": 50},
        "content": {"database_size": 40, "image_size": 64, "encoding": "png", "offender_known_share": 0.5,
                    "transforms": TRANSFORMS},
        "hasher": {"name": "ahash"},
        "protocol": {"name": "fake", "params": {"threshold": 1, "radius": 4}},
        "review": {"accuracy": 0.8, "capacity_per_day": 10**6},
        "statistical": {"calibration": str(cal), "leakage_sample": 100, "false_match_rate": 1e-3},
    }
    s = Scenario.from_dict(data)
    return s.with_overrides(**over) if over else s


def innocent_flagged_matches_closed_form(cal, synthetic: float) -> bool:
    """t = 1, no forwards: E[flagged] = N (1 - exp(-m p (1 - s))); |z| < 4 with the binomial SD (N = 198,000)."""
    s = scenario(cal, **{"protocol.params": {"threshold": 1, "radius": 4, "synthetic_probability": synthetic,
                                             "synthetic_capacity": 10**6}})
    m = run_statistical(s, protocol=sim_fakes.PROTOCOL).metrics.to_dict()
    n = m["accounts"]["accounts"] - m["accounts"]["offenders"]
    images = 5 * 0.6 * 2
    p = -math.expm1(-images * 1e-3 * (1 - synthetic))
    got = m["accounts"]["innocent_flagged"]["count"]
    return abs(got - n * p) < 4 * math.sqrt(n * p * (1 - p))


def test_synthetic_thinning_of_innocents(calibration, monkeypatch):
    assert innocent_flagged_matches_closed_form(calibration, 0.5)
    monkeypatch.setattr(statistical, "_genuine", lambda rng, size, synthetic: np.ones(size, dtype=bool))  # the bug
    assert not innocent_flagged_matches_closed_form(calibration, 0.5)


def offenders_confirmed_at_accuracy(cal) -> bool:
    """Every flagged offender is reviewed (unbounded capacity): confirmed / reviewed ~ accuracy (0.8), |z| < 4."""
    m = run_statistical(scenario(cal), protocol=sim_fakes.PROTOCOL).metrics.to_dict()
    flagged = m["accounts"]["offenders_flagged"]["count"]
    confirmed = m["accounts"]["offenders_detected"]["count"]
    return flagged > 500 and abs(confirmed - 0.8 * flagged) < 4 * math.sqrt(flagged * 0.8 * 0.2)


def test_reviewer_accuracy(calibration, monkeypatch):
    assert offenders_confirmed_at_accuracy(calibration)
    real = statistical._review

    def inverted(s, *args):  # the bug: the reviewer is right with probability 1 - accuracy
        return real(s.with_overrides(**{"review.accuracy": 1 - s.review.accuracy}), *args)

    monkeypatch.setattr(statistical, "_review", inverted)
    assert not offenders_confirmed_at_accuracy(calibration)


def viral_flags_match_closed_form(cal) -> bool:
    """Forwards of 50 popular images (p = 0.01 each): the mean over 300 replicates against the closed form.

    The standard error is the between-replicate one; |z| < 4. The viral part of the expectation is about a
    third of it here, so dropping it moves the mean by far more than 4 standard errors.
    """
    s = scenario(cal, **{"traffic.forward_share": 0.5, "statistical.false_match_rate": 1e-2,
                         "population.accounts": 20_000})
    counts = statistical.innocent_flag_replicates(s, 300, protocol=sim_fakes.PROTOCOL)
    want = run_statistical(s, protocol=sim_fakes.PROTOCOL).metrics.to_dict()["model"]["expected_innocent_flagged"]
    se = counts.std(ddof=1) / math.sqrt(counts.size)
    return abs(counts.mean() - want) < 4 * se


def test_viral_forwards_match(calibration, monkeypatch):
    assert viral_flags_match_closed_form(calibration)
    monkeypatch.setattr(statistical, "_viral_units", lambda prob: [])  # the bug: forwards never match
    assert not viral_flags_match_closed_form(calibration)


def false_negative_matches_the_transform_mix(cal) -> bool:
    """FN rate of known images against 1 - sum_k w_k r_k from the calibration file's histograms; |z| < 4."""
    data = json.loads(Path(cal).read_text())
    radius = 0  # where the transforms' recalls differ (at radius 4 every one is 1 on this corpus)
    recall = 0.0
    for t in TRANSFORMS:
        key = "identity" if t["spec"] == "none" else t["spec"]
        h = np.asarray(data["transforms"][key], dtype=float)
        recall += t["weight"] * h[: radius + 1].sum() / h.sum()
    s = scenario(cal, **{"protocol.params": {"threshold": 1, "radius": radius}})
    m = run_statistical(s, protocol=sim_fakes.PROTOCOL).metrics.to_dict()["per_image"]["false_negative"]
    p = 1 - recall
    return abs(m["count"] - m["of"] * p) < 4 * math.sqrt(m["of"] * p * (1 - p))


def test_recall_over_the_transform_mix(calibration, monkeypatch):
    assert false_negative_matches_the_transform_mix(calibration)
    from e2escan.sim.calibration import Calibration

    real = Calibration.recall
    monkeypatch.setattr(Calibration, "recall", lambda self, spec, radius: real(self, "none", radius))  # one transform
    assert not false_negative_matches_the_transform_mix(calibration)
