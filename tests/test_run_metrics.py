"""Typed run results: summary.json round-trips exactly, a damaged one is refused naming the key, pooling is typed."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.errors import ConfigError
from e2escan.metrics.rates import clustered_proportion, proportion
from e2escan.metrics.run import (
    Attacks,
    Costs,
    Evasion,
    PerImage,
    Rate,
    ReplicateAccounts,
    ReplicateSummary,
    Review,
    RunMetrics,
)
from e2escan.report.run_tables import read_replicate_summary

counts = st.integers(min_value=0, max_value=10**9)


@st.composite
def rates(draw: st.DrawFn) -> Rate:
    of = draw(st.integers(min_value=1, max_value=10**6))
    return Rate.of_proportion(proportion(draw(st.integers(min_value=0, max_value=of)), of))


@st.composite
def replicate_summaries(draw: st.DrawFn) -> ReplicateSummary:
    r = rates()
    accounts = ReplicateAccounts(
        accounts=draw(counts), offenders=draw(counts), innocent_flagged=draw(r), innocent_falsely_confirmed=draw(r),
        offenders_flagged=draw(r), offenders_detected=draw(r),
        days_to_detection_mean=draw(st.none() | st.floats(0, 1e3)), days_to_detection_n=draw(counts),
        mean_images_per_account=draw(st.floats(0, 1e3)), max_matches_innocent_account=draw(counts),
        offenders_sending_known=draw(counts), days_to_detection_median=draw(st.none() | st.floats(0, 1e3)),
    )
    evasion = draw(st.none() | st.builds(Evasion, images_attacked=counts, evaded=r, min_distance=counts,
                                         min_ssim=st.floats(0, 1), max_queries=counts))
    metrics = RunMetrics(
        per_image=PerImage(draw(counts), draw(counts), draw(counts), draw(r), draw(r)),
        accounts=accounts,
        review=Review(draw(counts), draw(counts), draw(counts), draw(counts), draw(counts), draw(st.floats(0, 1e6))),
        leakage=(), leakage_test=None, threshold=draw(st.none() | st.integers(1, 64)), database_size=draw(counts),
        attacks=draw(st.sampled_from([None, Attacks(evasion=evasion)])),
        model=draw(st.none() | st.just({"radius": 31, "calibration": "synthetic:200"})),
    )
    costs = Costs(*[draw(st.none() | st.floats(0, 1e6)) for _ in range(9)], timing_note="t",
                  simulation_wall_s=draw(st.none() | st.floats(0, 1e3)))
    return ReplicateSummary(draw(st.integers(0, 99)), draw(st.sampled_from(["faithful", "statistical"])), metrics,
                            costs, ({"day": 0, "images": draw(counts)},))


@settings(max_examples=60, deadline=None)
@given(replicate_summaries())
def test_a_replicate_summary_round_trips_through_json(summary: ReplicateSummary) -> None:
    text = json.dumps(summary.to_dict(), sort_keys=True)
    again = ReplicateSummary.from_dict(json.loads(text))
    assert again == summary
    assert json.dumps(again.to_dict(), sort_keys=True) == text


def test_absent_optional_sections_are_left_out_and_a_null_median_is_kept() -> None:
    r = Rate.of_proportion(proportion(0, 3))
    accounts = ReplicateAccounts(3, 0, r, r, r, r, None, 0, 1.0, 0)
    m = RunMetrics(PerImage(1, 0, 1, r, r), accounts, Review(0, 0, 0, 0, 0, 0.0), (), None, None, 5)
    d = m.to_dict()
    assert "model" not in d and "attacks" not in d and "leakage_audit" not in d
    assert d["accounts"]["days_to_detection_median"] is None and d["threshold"] is None
    assert "ci_method" not in d["per_image"]["false_positive"]
    # A statistical replicate records its model; the same key must come back as a table.
    assert RunMetrics.from_dict({**d, "model": {"radius": 3}}).model == {"radius": 3}


@pytest.mark.parametrize(
    "damage, where",
    [
        (lambda d: d["metrics"]["accounts"].update(offenders="7"), "metrics.accounts.offenders"),
        (lambda d: d["metrics"]["per_image"]["false_positive"].pop("of"), "metrics.per_image.false_positive.of"),
        (lambda d: d["metrics"]["review"].update(reviewer_minutes=1.0), "metrics.review.reviewer_minutes"),
    ],
)
def test_a_damaged_summary_is_refused_naming_the_file_and_key(tmp_path: Path, damage, where: str) -> None:
    r = Rate.of_proportion(proportion(1, 4))
    accounts = ReplicateAccounts(4, 1, r, r, r, r, 2.0, 1, 3.0, 0, 1, 2.0)
    metrics = RunMetrics(PerImage(12, 3, 9, r, r), accounts, Review(1, 1, 0, 0, 0, 0.1), (), None, 2, 10)
    costs = Costs(*([None] * 9), timing_note="t")
    data = ReplicateSummary(0, "statistical", metrics, costs, ()).to_dict()
    damage(data)
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        read_replicate_summary(path)
    message = str(info.value)
    assert str(path) in message and where in message and "\n" not in message


def test_pooled_rates_carry_their_interval_method() -> None:
    pooled = Rate.from_dict(clustered_proportion([1, 3, 0], [10, 10, 10]))
    assert pooled.count == 4 and pooled.of == 30 and pooled.ci_method.startswith("between-replicate")
    assert math.isclose(pooled.rate, 4 / 30)


def test_pooling_sums_attack_counts_and_keeps_the_attack_settings() -> None:
    """An attack's settings (target distance, SSIM floor, budget) are the same in every replicate: not summed."""
    from e2escan.sim.runner import _attacks_summary

    def metrics(attacked: int, evaded: int) -> RunMetrics:
        r = Rate.of_proportion(proportion(0, 1))
        ev = Evasion(attacked, Rate.of_proportion(proportion(evaded, attacked)), 32, 0.95, 3000)
        return RunMetrics(PerImage(1, 0, 1, r, r), ReplicateAccounts(1, 0, r, r, r, r, None, 0, 1.0, 0),
                          Review(0, 0, 0, 0, 0, 0.0), (), None, 2, 5, attacks=Attacks(evasion=ev))

    pooled = _attacks_summary([metrics(10, 9), metrics(20, 20)]).evasion
    assert pooled is not None
    assert (pooled.images_attacked, pooled.evaded.count, pooled.evaded.of) == (30, 29, 30)
    assert (pooled.min_distance, pooled.min_ssim, pooled.max_queries) == (32, 0.95, 3000)


def test_every_section_is_frozen() -> None:
    r = Rate.of_proportion(proportion(1, 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.count = 5  # type: ignore[misc]


def test_pooling_keeps_the_poisoned_share_of_one_database() -> None:
    """Each replicate poisons its own database of the same size: pooling sums copies and holders, not entries."""
    from e2escan.metrics.run import Poisoning
    from e2escan.sim.runner import _attacks_summary

    def metrics(holders: int) -> RunMetrics:
        r = Rate.of_proportion(proportion(0, 1))
        p = Poisoning(13, 63, 8, Rate.of_proportion(proportion(6, 8)), Rate.of_proportion(proportion(holders, 5)))
        return RunMetrics(PerImage(1, 0, 1, r, r), ReplicateAccounts(1, 0, r, r, r, r, None, 0, 1.0, 0),
                          Review(0, 0, 0, 0, 0, 0.0), (), None, 2, 63, attacks=Attacks(poisoning=p))

    pooled = _attacks_summary([metrics(1), metrics(3), metrics(2)]).poisoning
    assert pooled is not None
    assert (pooled.poison_entries, pooled.database_entries) == (13, 63)
    assert (pooled.target_images_sent, pooled.holders_revealed.count, pooled.holders_revealed.of) == (24, 6, 15)
