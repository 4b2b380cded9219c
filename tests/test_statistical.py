"""The statistical path: calibration, sampling, closed forms and scale (agreement with the faithful path: test_path_agreement.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import sim_fakes

from e2escan.errors import ConfigError, ScenarioError
from e2escan.sim.calibration import Calibration, calibrate
from e2escan.sim.scenario import Scenario
from e2escan.sim.statistical import run_statistical

pytestmark = pytest.mark.usefixtures("fake_protocol")  # scenarios here name the fake protocol

TRANSFORMS = [
    {"spec": "none", "weight": 0.5},
    {"spec": "jpeg:quality=60", "weight": 0.3},
    {"spec": "resize:scale=0.5", "weight": 0.2},
]


@pytest.fixture(scope="module")
def ahash_calibration(tmp_path_factory):
    path = tmp_path_factory.mktemp("cal") / "ahash-png-64.json"
    cal = calibrate("ahash", transforms=[t["spec"] for t in TRANSFORMS], images=120, image_size=64, encoding="png", seed=5)
    cal.save(path)
    return path


def scenario(cal_path, seed, radius, threshold, engine="faithful", accounts=60):
    return Scenario.from_dict({
        "name": "agree",
        "seed": seed,
        "days": 3,
        "engine": engine,
        "population": {"accounts": accounts, "offender_share": 0.15, "mean_contacts": 4},
        "traffic": {"messages_per_day": 6, "image_share": 0.6, "forward_share": 0.0},
        "content": {"database_size": 40, "image_size": 64, "encoding": "png", "offender_known_share": 0.5,
                    "transforms": TRANSFORMS},
        "hasher": {"name": "ahash"},
        "protocol": {"name": "fake", "params": {"threshold": threshold, "radius": radius}},
        "review": {"accuracy": 1.0, "capacity_per_day": 1000},
        # The model's central estimate; the default tail model ("bound") is a deliberately conservative
        # upper confidence bound where the calibration's data run out.
        "statistical": {"calibration": str(cal_path), "leakage_sample": 200, "tail_model": "normal"},
    })


def test_sparse_and_dense_innocent_sampling_agree(ahash_calibration):
    """Poisson thinning (sparse) against per-account sampling (dense): same false-flag distribution."""
    base = scenario(ahash_calibration, 3, 12, 2, engine="statistical", accounts=20_000)
    base = base.with_overrides(**{"statistical.false_match_rate": 0.02, "population.offender_share": 0.0,
                                  "traffic.messages_per_day": 5})
    sparse = [run_statistical(base, r, protocol=sim_fakes.PROTOCOL).metrics.to_dict()["accounts"]["innocent_flagged"]["count"] for r in range(5)]
    # 'fixed' traffic forces the dense path; with 5 messages a day, images ~ Binomial(5, 0.6) per account-day.
    dense = [run_statistical(base.with_overrides(**{"traffic.distribution": "fixed"}), r, protocol=sim_fakes.PROTOCOL).metrics.to_dict()["accounts"]
             ["innocent_flagged"]["count"] for r in range(5)]
    # Expected flags: P[N >= 2] for N ~ Poisson(3 days * 3 images * 0.02) vs Binomial(15, 0.012).
    lam = 3 * 3 * 0.02
    p_sparse = 1 - np.exp(-lam) * (1 + lam)
    p_dense = 1 - (1 - 0.012) ** 15 - 15 * 0.012 * (1 - 0.012) ** 14
    n = 20_000
    for counts, p in ((sparse, p_sparse), (dense, p_dense)):
        mean = np.mean(counts)
        sd = np.sqrt(n * p * (1 - p) / len(counts))
        assert abs(mean - n * p) < 4 * sd, (mean, n * p)


def test_calibration_file_round_trip_and_validation(ahash_calibration, tmp_path):
    cal = Calibration.load(ahash_calibration)
    assert cal.recall("none", 0) == 1.0  # PNG is lossless
    assert 0 <= cal.collision_probability(0) <= cal.collision_probability(10) <= 1
    assert cal.false_match_probability(64, 10) == 1.0
    bad = json.loads(ahash_calibration.read_text())
    bad["version"] = 99
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ScenarioError, match="bad.json: version = 99: another format; accepted: 1"):
        Calibration.load(tmp_path / "bad.json")
    with pytest.raises(ScenarioError, match="has no transform 'blur'"):
        cal.recall("blur", 3)


def test_tail_extrapolation_below_the_data():
    """Below the empirical support the collision probability comes from the lower-tail fits of hash-eval
    (normal by default, exponential on request)."""
    from math import comb

    from e2escan.hashing import fit_lower_tail

    rng = np.random.default_rng(0)
    d = rng.binomial(256, 0.5, 200_000)  # independent bits: a log-concave distance distribution
    hist = tuple(int(x) for x in np.bincount(d, minlength=257))
    cal = Calibration("test", 256, 64, "png", hist, {"identity": (1,) + (0,) * 256}, "synthetic", 0)
    assert min(d) > 70
    for r, decades in ((40, 3), (70, 1)):
        exact = sum(comb(256, k) for k in range(r + 1)) / 2**256
        normal, exponential = cal.collision_probability(r), cal.collision_probability(r, "exponential")
        assert normal == fit_lower_tail(np.array(hist), model="normal").fpr(r)
        assert exponential == fit_lower_tail(np.array(hist)).fpr(r)
        assert abs(np.log10(normal / exact)) < decades  # a central estimate, 30 to 13 decades below the data
        assert exponential >= exact  # an upper estimate
    # Where data exist, the empirical CDF is used by both.
    assert cal.collision_probability(128) == cal.collision_probability(128, "normal") == pytest.approx((d <= 128).mean())
    with pytest.raises(ConfigError, match="unknown tail model"):
        cal.collision_probability(40, "gumbel")


def test_scenario_mismatch_is_refused(ahash_calibration):
    s = scenario(ahash_calibration, 1, 4, 2, engine="statistical").with_overrides(**{"content.image_size": 128})
    with pytest.raises(ScenarioError, match="measured with png attachments of 64px"):
        run_statistical(s, protocol=sim_fakes.PROTOCOL)


def test_omitted_protocol_parameters_take_the_protocols_defaults(ahash_calibration):
    """tpsi-ad without a threshold uses its default of 30 on both paths (not 1)."""
    from e2escan.protocols import get_protocol
    from e2escan.sim.statistical import protocol_matching

    s = scenario(ahash_calibration, 1, 0, 2, engine="statistical").with_overrides(
        **{"protocol.name": "tpsi-ad", "protocol.params": {}}
    )
    default = get_protocol("tpsi-ad").Params().threshold
    assert default == 30 and protocol_matching(s) == (0, default)
    assert run_statistical(s).metrics.to_dict()["threshold"] == default


@pytest.mark.parametrize("synthetic", [0.0, 0.5])
def test_synthetic_vouchers_never_count_toward_the_threshold(ahash_calibration, synthetic):
    """With fixed traffic an offender's counted matches are exactly Binomial(m * days, share * q * (1 - p_syn)).

    Exactly binomial because every copy is sent untransformed (recall 1, so whether a copy matches does
    not depend on which database entry it copies) and copies are not deduplicated.
    """
    from math import comb

    s = scenario(ahash_calibration, 4, 0, 3, engine="statistical", accounts=20_000).with_overrides(**{
        "traffic.distribution": "fixed",
        "content.transforms": [{"spec": "none", "weight": 1.0}],
        "protocol.name": "tpsi-ad",
        "protocol.params": {"threshold": 3, "synthetic_probability": synthetic, "synthetic_capacity": 64,
                            "dedup": "none"},
    })
    m = run_statistical(s).metrics.to_dict()
    model, ct = m["model"], s.content
    assert model["synthetic_probability"] == synthetic
    q = ct.offender_known_share * model["recall_known"] + (1 - ct.offender_known_share) * model["p_innocent_image_false_match"]
    per_image = s.traffic.image_share * q * (1 - synthetic)
    n = int(round(s.traffic.messages_per_day)) * s.days
    expected = 1 - sum(comb(n, k) * per_image**k * (1 - per_image) ** (n - k) for k in range(3))
    flagged = m["accounts"]["offenders_flagged"]
    assert flagged["ci_low"] <= expected <= flagged["ci_high"], (flagged, expected)
    features = {row["feature"] for row in m["leakage"]}
    assert ("opened_events" in features) == (synthetic > 0)


def test_fixed_traffic_sends_fixed_counts_in_the_leakage_sample(ahash_calibration):
    """Under 'fixed' traffic every account sends exactly the same number of messages (the old sample drew Poisson)."""
    s = scenario(ahash_calibration, 3, 6, 2, engine="statistical", accounts=400)
    s = s.with_overrides(**{"traffic.distribution": "fixed"})
    rows = run_statistical(s, protocol=sim_fakes.PROTOCOL).metrics.to_dict()["leakage"]
    messages = [r for r in rows if r["feature"] == "messages_sent"]
    assert messages and messages[0]["advantage"] == 0.0


def test_synthetic_split_has_the_closed_form_moments():
    """Opened = counted + synthetic: mean M + p (n - M), variance p (1 - p) (n - M) uncapped (one draw per image)."""
    from e2escan.sim.statistical import synthetic_split

    rng = np.random.default_rng(0)
    n, m, p, reps = 40, 10, 0.3, 200_000
    counted, synthetic = synthetic_split(rng, np.full(reps, n), np.full(reps, m), p, capacity=10**6)
    opened = counted + synthetic
    assert abs(opened.mean() - (m + p * (n - m))) < 5 * np.sqrt(p * (1 - p) * (n - m) / reps)
    var, want = opened.var(), p * (1 - p) * (n - m)
    assert abs(var / want - 1) < 0.02  # sd of a sample variance at 200,000 draws: about 0.3%
    # The old model drew the real matches and the synthetic vouchers independently: its opened count has
    # variance p (1 - p) (n + m), 18.9 against 6.3 here, and the same check catches it.
    old_counted = rng.binomial(np.full(reps, m), 1 - p)
    old_opened = old_counted + rng.binomial(np.full(reps, n), p)
    assert not abs(old_opened.var() / want - 1) < 0.02
    counted, synthetic = synthetic_split(rng, np.full(reps, n), np.full(reps, m), p, capacity=3)
    assert synthetic.max() == 3 and (counted >= m - 3).all() and (counted <= m).all()


def _review_both_ways(s, innocent_flags, offender_flag_day, resubmit_days):
    """The same flag schedule through the statistical path's cohort queue and the faithful path's ReviewQueue."""
    from e2escan.sim.review import Case, ReviewQueue
    from e2escan.sim.statistical import _review

    daily, _, _, totals = _review(s, np.array(innocent_flags), np.array(offender_flag_day), np.random.default_rng(0))
    queue = ReviewQueue(s.review, np.random.default_rng(0))
    accounts = []  # (account id, flag day)
    for d, n in enumerate(innocent_flags):
        accounts += [(1000 + len(accounts) + i, d) for i in range(n)]
    accounts += [(i, int(d)) for i, d in enumerate(offender_flag_day) if d >= 0]
    faithful = []
    for d in range(s.days):
        for acct, flag_day in accounts:
            if flag_day == d or (flag_day < d and d in resubmit_days):  # later days reveal more images
                queue.submit(Case(acct, flag_day, (acct * 100 + d,)))
        queue.work_day(d, set())
        faithful.append((len(queue.decisions), queue.backlog))
    statistical = list(zip(np.cumsum([r["reviewed"] for r in daily]).tolist(), [r["backlog"] for r in daily]))
    return faithful, statistical, totals


def test_both_paths_share_one_review_model(ahash_calibration, monkeypatch):
    """Cases, reviewer hours and backlog agree day by day on one flag schedule, capacity-bound review included."""
    s = scenario(ahash_calibration, 1, 6, 2).with_overrides(**{"days": 5, "review.capacity_per_day": 4,
                                                                "review.accuracy": 0.8})
    schedule = ([3, 0, 5, 2, 1], [0, 2, 2, -1, 4, 1])
    faithful, statistical, totals = _review_both_ways(s, *schedule, resubmit_days={2, 3, 4})
    assert faithful == statistical and totals["backlog"] == faithful[-1][1]
    # Broken on purpose: the old faithful model opened a new case every day an account revealed more images.
    from e2escan.sim.review import ReviewQueue

    def old_submit(self, case):
        self.cases[len(self.cases) + 10**6 + case.account * 1000] = case
        self.pending.append(len(self.cases) + 10**6 - 1 + case.account * 1000)
        return True

    monkeypatch.setattr(ReviewQueue, "submit", old_submit)
    faithful_old, statistical, _ = _review_both_ways(s, *schedule, resubmit_days={2, 3, 4})
    assert faithful_old != statistical


def _viral_probabilities(threshold: int, dedup: bool, recalls=(1.0,), p_fresh: float = 0.0, popular: int = 1,
                         originals=None, rng=None, forward_share: float = 1.0):
    """Popular images forwarded with transforms of recall ``recalls`` (the first, if 1, the untransformed copy).

    ``originals``: which popular originals match (default: all); the units are drawn from them with ``rng``.
    """
    from e2escan.sim.statistical import Probabilities, draw_units

    recall = np.asarray(recalls, dtype=float)
    same = (recall >= 1.0).astype(float)  # only the untransformed copy keeps the original's hash
    prob = Probabilities(
        radius=0, threshold=threshold, p_fresh=p_fresh, p_popular=np.ones(popular, dtype=bool) if originals is None
        else originals, popular_share=np.ones(popular) / popular, recall=float(recall.mean()), p_innocent_image=0.0,
        spec_weight=np.ones(recall.size) / recall.size, spec_recall=recall, spec_same=same, dedup=dedup,
        forward_share=forward_share,
    )
    prob.unit_match, prob.unit_same = draw_units(rng or np.random.default_rng(0), prob.p_popular, recall, same,
                                                 prob.stray_probability())
    return prob


def test_viral_forwards_count_once_per_hash_under_dedup_and_follow_their_units(ahash_calibration):
    """One matching viral image forwarded ~5 times by every account: t = 3 is crossed only without dedup."""
    from e2escan.sim.statistical import _innocent_accounts

    s = scenario(ahash_calibration, 1, 6, 3, engine="statistical", accounts=2000)
    rng = np.random.default_rng(0)
    _, counts, cross = _innocent_accounts(s, _viral_probabilities(3, dedup=True), 2000, 5 / 3, rng, None)
    assert counts.mean() > 4 and cross.size == 0  # every copy is a matching image, but one hash counts once
    _, _, cross = _innocent_accounts(s, _viral_probabilities(3, dedup=False), 2000, 5 / 3, rng, None)
    assert cross.size > 1000
    # Exact copies plus copies with a transform that stays in the radius but changes the hash: two hashes,
    # so t = 2 is crossed under dedup by accounts that sent both kinds, and t = 3 by none.
    both = _viral_probabilities(2, dedup=True, recalls=(1.0, 1.0))
    both.spec_same = np.array([1.0, 0.0])
    both.unit_same = np.array([[True, False]])
    _, counts2, cross2 = _innocent_accounts(s, both, 2000, 5 / 3, rng, None)
    assert 500 < cross2.size < 2000
    both.threshold = 3
    _, _, cross3 = _innocent_accounts(s, both, 2000, 5 / 3, rng, None)
    assert cross3.size == 0
    # A copy whose transform leaves the radius never matches when its original matches (recall 0).
    _, counts, _ = _innocent_accounts(s, _viral_probabilities(3, dedup=False, recalls=(0.0,)), 2000, 5 / 3, rng, None)
    assert counts.size == 0


def test_innocent_flag_closed_form_matches_the_simulated_mean(ahash_calibration):
    """t = 1: the mean over 400 replicates agrees with the closed form (z from the between-replicate SD).

    Half the forwards are exact copies, half transformed with recall 0.5 (so a transformed copy of a
    non-matching original matches with q = p (1 - 0.5) / (1 - p)); every replicate redraws the originals
    and the units.
    """
    from e2escan.sim.statistical import _innocent_accounts, innocent_flag_expectation

    s = scenario(ahash_calibration, 1, 6, 1, engine="statistical", accounts=5000)
    rng = np.random.default_rng(1)
    p = 2e-3
    flagged = []
    for _ in range(400):
        prob = _viral_probabilities(1, dedup=False, recalls=(1.0, 0.5), p_fresh=p, popular=50,
                                    originals=rng.random(50) < p, rng=rng, forward_share=0.3)
        _, _, cross = _innocent_accounts(s, prob, 5000, 6 * 0.6, rng, None)
        flagged.append(cross.size)
    base = _viral_probabilities(1, dedup=False, recalls=(1.0, 0.5), p_fresh=p, popular=50, forward_share=0.3)
    want = innocent_flag_expectation(5000, 6 * 0.6 * 3, base)
    mean, se = np.mean(flagged), np.std(flagged, ddof=1) / np.sqrt(len(flagged))
    assert abs(mean - want["expected_innocent_flagged"]) < 4 * se, (mean, se, want)
    q = p * 0.5 / (1 - p)
    assert want["viral_day_probability"] == pytest.approx(1 - ((1 - p) * (1 - q)) ** 50)


def test_replicate_sampler_matches_full_runs_and_the_closed_form(ahash_calibration):
    """innocent_flag_replicates draws each replicate as run_statistical does; its mean tracks the closed form."""
    from e2escan.sim.statistical import innocent_flag_replicates

    s = scenario(ahash_calibration, 4, 6, 1, engine="statistical", accounts=20_000).with_overrides(
        **{"statistical.false_match_rate": 2e-3, "traffic.forward_share": 0.3, "traffic.popular_images": 50})
    counts = innocent_flag_replicates(s, 300, protocol=sim_fakes.PROTOCOL)
    for r in (0, 7):
        run = run_statistical(s, replicate=r, protocol=sim_fakes.PROTOCOL).metrics.to_dict()
        assert run["accounts"]["innocent_flagged"]["count"] == counts[r]
    want = run["model"]["expected_innocent_flagged"]
    se = counts.std(ddof=1) / np.sqrt(counts.size)
    assert abs(counts.mean() - want) < 4 * se, (counts.mean(), se, want)


def test_calibration_keeps_its_hashes_and_bounds_the_collision_probability(ahash_calibration, tmp_path):
    cal = Calibration.load(ahash_calibration)
    assert len(cal.hashes) == 120  # saved and loaded with the file
    point, bound = cal.collision_probability_bound(6, "normal", resamples=50)
    assert point == pytest.approx(cal.collision_probability(6, "normal"), rel=1e-9)
    assert bound >= point
    old = json.loads(Path(ahash_calibration).read_text())
    del old["hashes"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ScenarioError, match="no per-image hashes"):
        Calibration.load(tmp_path / "old.json").collision_probability_bound(6)


def test_the_default_tail_model_is_the_conservative_bound(ahash_calibration):
    """Below the calibration's data the default ('bound') is at least the exponential fit, which is at least the normal."""
    cal = Calibration.load(ahash_calibration)
    s = scenario(ahash_calibration, 1, 6, 2, engine="statistical")
    assert Scenario.from_dict({k: v for k, v in s.to_dict().items() if k != "statistical"} | {
        "statistical": {"calibration": str(ahash_calibration)}}).statistical.tail_model == "bound"
    radius = next(r for r in range(cal.bits) if sum(cal.unrelated[: r + 1]) >= 1) - 1  # below every measured pair
    bound = cal.collision_probability(max(radius, 0), "bound")
    assert bound >= cal.collision_probability(max(radius, 0), "exponential") * 0.999


def _flag_days(ahash_calibration, threshold: int):
    """Innocent crossing days on 5 days of Poisson traffic, 0.5 genuine false matches per account-day, no viral."""
    from e2escan.sim.statistical import _innocent_accounts

    s = scenario(ahash_calibration, 1, 6, threshold, engine="statistical").with_overrides(days=5)
    prob = _viral_probabilities(threshold, dedup=False, p_fresh=0.5, popular=1, originals=np.zeros(1, dtype=bool),
                                forward_share=0.0)
    _, _, cross = _innocent_accounts(s, prob, 200_000, 1.0, np.random.default_rng(9), None)
    return np.bincount(cross, minlength=5)


def flag_days_match_the_closed_form(observed: np.ndarray, threshold: int, n: int = 200_000) -> bool:
    """P(cross on day d) = P(Poisson(0.5 (d + 1)) >= t) - P(Poisson(0.5 d) >= t); a z-test per day, |z| < 4."""
    import math

    def sf(mu: float) -> float:
        return 1.0 - sum(math.exp(-mu) * mu**k / math.factorial(k) for k in range(threshold))

    for d, got in enumerate(observed):
        p = sf(0.5 * (d + 1)) - sf(0.5 * d)
        if abs(got - n * p) > 4 * math.sqrt(n * p * (1 - p)):
            return False
    return True


def test_flag_day_distribution_matches_the_closed_form(ahash_calibration, monkeypatch):
    """The day an innocent account crosses t is the day of its t-th genuine match (Erlang/Poisson closed form)."""
    from e2escan.sim import statistical

    assert flag_days_match_the_closed_form(_flag_days(ahash_calibration, 3), 3)
    # Broken on purpose: the flag day taken at the first match instead of the t-th.
    def first_match_day(day_of, start, counts, t):
        return day_of[start[counts >= t]]

    monkeypatch.setattr(statistical, "crossing_days", first_match_day)
    assert not flag_days_match_the_closed_form(_flag_days(ahash_calibration, 3), 3)


def test_false_match_probability_keeps_the_dependence_between_database_entries():
    """Against brute force over every database subset; the independence formula misses clustered corpora.

    Twelve 64-bit hashes: six in one tight cluster, six scattered. An image in the cluster is near five
    others, a scattered one near none, and averaging over that heterogeneity gives less than
    1 - (1 - q)^3 with q the pooled pair probability (the function is concave in the pair count).
    """
    from itertools import combinations

    rng = np.random.default_rng(3)
    centre = rng.integers(0, 2, size=64)
    bits = []
    for _ in range(6):
        b = centre.copy()
        b[rng.choice(64, size=1, replace=False)] ^= 1
        bits.append(b)
    bits += [rng.integers(0, 2, size=64) for _ in range(6)]
    packed = np.packbits(np.array(bits, dtype=np.uint8), axis=1)
    hashes = tuple(bytes(row).hex() for row in packed)
    d = np.array([[int(np.sum(np.array(bits[i]) != np.array(bits[j]))) for j in range(12)] for i in range(12)])
    unrelated = np.bincount(d[np.triu_indices(12, 1)], minlength=65)
    cal = Calibration("ahash", 64, 64, "png", tuple(int(x) for x in unrelated), {"identity": (1,) + (0,) * 64},
                      "test", 0, hashes=hashes)
    radius, size = 4, 3
    brute = np.mean([np.mean([float(min(d[i, j] for j in subset) <= radius)
                              for subset in combinations([j for j in range(12) if j != i], size)]) for i in range(12)])
    assert cal.false_match_probability(radius, size) == pytest.approx(brute, rel=1e-12)
    q = cal.collision_probability(radius)
    assert 1 - (1 - q) ** size > 1.15 * brute  # what the old formula gave


def test_a_variant_without_a_statistical_model_is_refused(ahash_calibration):
    """A new protocol that declares no statistical model is refused, never modelled as another one."""
    import sim_fakes

    class Unmodelled(sim_fakes.FakeProtocol):
        name = "unmodelled"

        def statistical_model(self, params):  # the base class's default: refuse
            return super(sim_fakes.FakeProtocol, self).statistical_model(params)

    s = scenario(ahash_calibration, 1, 6, 2, engine="statistical")
    with pytest.raises(ScenarioError, match="declares no statistical model"):
        run_statistical(s, protocol=Unmodelled())
    assert run_statistical(s, protocol=sim_fakes.PROTOCOL).metrics.to_dict()["threshold"] == 2  # the fake declares one
