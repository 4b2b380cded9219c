"""The simulator: scenario validation, determinism, hand-checkable scenarios, metrics vs the event log."""

import json
import shutil

import numpy as np
import pytest
import sim_fakes

from e2escan.errors import ScenarioError
from e2escan.protocols.events import decode_event
from e2escan.report.summary import compare
from e2escan.sim.faithful import payload_uid, run_faithful
from e2escan.sim.measure import compute_metrics, server_features
from e2escan.sim.population import build_population
from e2escan.sim.runner import run_scenario, scenario_to_toml
from e2escan.sim.scenario import Population, Scenario, shipped_scenarios_dir

pytestmark = pytest.mark.usefixtures("fake_protocol")  # scenarios here name the fake protocol

TINY = {
    "name": "tiny",
    "days": 2,
    "population": {"accounts": 10, "offender_share": 0.1, "mean_contacts": 3, "group_share": 0.0},
    "traffic": {"messages_per_day": 3, "distribution": "fixed", "image_share": 1.0, "forward_share": 0.0},
    "content": {"database_size": 5, "image_size": 64, "encoding": "png", "offender_known_share": 1.0},
    "protocol": {"name": "fake", "params": {"threshold": 3}},
    "review": {"accuracy": 1.0, "capacity_per_day": 10},
}


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"populaton": {}}, "populaton = {}: unknown key; accepted keys: name, description, seed"),
        ({"population": {"accounts": "10"}}, "population.accounts = \"10\": wrong type (a string); accepted: an integer at least 2"),
        ({"population": {"offender_share": 1.5}}, "population.offender_share = 1.5: out of range; accepted: a number from 0.0 to 1.0"),
        ({"population": {"contact_graph": "star"}}, "population.contact_graph = \"star\": not one of the choices; accepted: one of \"small-world\""),
        ({"traffic": {"image_share": -0.1}}, "traffic.image_share = -0.1: out of range"),
        ({"traffic": {"bursty": True}}, "traffic.bursty = true: unknown key; accepted keys: messages_per_day"),
        ({"content": {"transforms": [{"spec": "jpeg", "wieght": 1}]}}, "content.transforms[0].wieght = 1: unknown key; accepted keys: spec, weight"),
        ({"content": {"transforms": []}}, "content.transforms = []: no entry with a positive weight; accepted: at least one entry"),
        ({"days": 0}, "days = 0: out of range; accepted: an integer at least 1"),
        ({"population": {"group_size": [5, 3]}}, "population.group_size = [5, 3]: smallest above largest; accepted: [smallest, largest]"),
        ({"messenger": {"header_encryption": "yes"}}, "messenger.header_encryption = \"yes\": wrong type (a string); accepted: true or false"),
    ],
)
def test_scenario_validation_names_the_key(patch, message):
    data = json.loads(json.dumps(TINY))
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict) and v:
            data[k].update(v)
        else:
            data[k] = v
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(data)
    assert message in str(info.value)


def test_missing_name_and_bad_file(tmp_path):
    with pytest.raises(ScenarioError, match="name: required key is missing"):
        Scenario.from_dict({})
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[population\n")
    with pytest.raises(ScenarioError, match="bad.toml: not valid TOML"):
        Scenario.load(bad)


def test_every_shipped_scenario_loads_and_round_trips():
    paths = sorted(shipped_scenarios_dir().glob("*.toml"))
    assert {p.stem for p in paths} >= {"quickstart", "apple-2021", "plaintext-baseline"}
    for path in paths:
        s = Scenario.load(path)
        import tomllib

        assert Scenario.from_dict(tomllib.loads(scenario_to_toml(s))) == s, path


def test_population_offender_count_and_graph():
    pop = build_population(Population(accounts=100, offender_share=0.07, mean_contacts=6), np.random.default_rng(1))
    assert pop.offender.sum() == 7
    for i, nb in enumerate(pop.contacts):
        assert nb.size >= 1 and i not in nb
        for j in nb:
            assert i in pop.contacts[j]  # undirected
    degrees = np.array([nb.size for nb in pop.contacts])
    assert 4 <= degrees.mean() <= 8


def test_tiny_scenario_known_answers():
    s = Scenario.from_dict(TINY)
    run = run_faithful(s, protocol=sim_fakes.PROTOCOL, cache_dir=None)
    m = compute_metrics(run)
    offender = int(np.flatnonzero(run.population.offender)[0])
    # 10 accounts x 3 messages x 2 days, every message carries one image.
    assert m.per_image.images == 60
    # The offender sends only known images, unmodified (PNG is lossless): exactly 3 matches a day.
    assert m.per_image.known_images == 6
    assert m.per_image.false_negative.count == 0
    assert m.per_image.false_positive.count == 0
    assert run.flags == {offender: 0}  # t = 3 reached on day 0
    assert m.accounts.offenders_detected.count == 1
    assert m.accounts.innocent_flagged.count == 0
    assert m.accounts.days_to_detection_mean == 0
    # The server revealed exactly the offender's first three known images on day 0, then the next three.
    assert sorted(run.revealed[offender]) == sorted(r.uid for r in run.images if r.sender == offender)


def test_threshold_minus_one_flags_nobody():
    data = json.loads(json.dumps(TINY))
    data["protocol"]["params"]["threshold"] = 7  # the offender sends 6 known images in total
    run = run_faithful(Scenario.from_dict(data), protocol=sim_fakes.PROTOCOL, cache_dir=None)
    assert run.flags == {}
    assert compute_metrics(run).accounts.offenders_flagged.count == 0


def test_metrics_agree_with_direct_computation_from_event_log():
    data = json.loads(json.dumps(TINY))
    data["traffic"].update({"distribution": "poisson", "image_share": 0.5, "forward_share": 0.3})
    data["population"].update({"accounts": 30, "group_share": 0.3})
    run = run_faithful(Scenario.from_dict(data), protocol=sim_fakes.PROTOCOL, cache_dir=None)
    feats = server_features(run)
    # Direct, independent count over the raw view.
    index = {n: i for i, n in enumerate(run.population.ids)}
    vouchers = np.zeros(len(index))
    submits = np.zeros(len(index))
    for ev in run.relay.view:
        if ev.kind == "voucher":
            vouchers[index[ev.sender]] += 1
        if ev.kind == "submit":
            submits[index[ev.sender]] += 1
    assert np.array_equal(feats["vouchers"], vouchers)
    assert np.array_equal(feats["messages_sent"], submits)
    # One voucher per image, whatever the number of recipients.
    assert vouchers.sum() == len(run.images)
    # Revealed payloads in the view name exactly the images the ground truth says matched, for flagged accounts.
    revealed_in_view = set()
    for ev in run.relay.view.events("reveal"):
        for payload in decode_event(ev.data).payloads:
            revealed_in_view.add(payload_uid(payload))
    truth = {r.uid for r in run.images if r.oracle_match and r.sender in run.flags}
    assert revealed_in_view == truth


def test_same_seed_same_metrics_different_seed_different(tmp_path):
    data = json.loads(json.dumps(TINY))
    data["traffic"].update({"distribution": "poisson", "image_share": 0.6})
    s = Scenario.from_dict(data)
    a = run_scenario(s, tmp_path / "a", protocol=sim_fakes.PROTOCOL, cache_dir=None)
    b = run_scenario(s, tmp_path / "b", protocol=sim_fakes.PROTOCOL, cache_dir=None)
    c = run_scenario(s.with_overrides(seed=99), tmp_path / "c", protocol=sim_fakes.PROTOCOL, cache_dir=None)
    assert a.metrics == b.metrics
    assert a.metrics != c.metrics
    for name in ("summary.json", "metrics.csv", "daily.csv", "leakage.csv", "costs.csv", "manifest.json",
                 "matches_per_account.png", "matches_per_account.svg", "daily_funnel.png", "leakage.svg"):
        assert (tmp_path / "a" / name).exists(), name
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["version"] and manifest["git_commit"]
    table, rows = compare(tmp_path / "a", tmp_path / "c", tmp_path / "cmp")
    assert "offenders_detected" in table and (tmp_path / "cmp" / "compare.png").exists()


def test_resume_keeps_finished_replicates(tmp_path):
    data = json.loads(json.dumps(TINY))
    data["replicates"] = 2
    s = Scenario.from_dict(data)
    run_scenario(s, tmp_path / "r", protocol=sim_fakes.PROTOCOL, cache_dir=None)
    rep0 = tmp_path / "r" / "runs" / "rep-000" / "summary.json"
    before = rep0.stat().st_mtime_ns
    shutil.rmtree(tmp_path / "r" / "runs" / "rep-001")  # as if killed during replicate 1
    (tmp_path / "r" / "runs" / ".rep-001.tmp").mkdir()  # a half-written replicate
    summary = run_scenario(s, tmp_path / "r", resume=True, protocol=sim_fakes.PROTOCOL, cache_dir=None)
    assert rep0.stat().st_mtime_ns == before
    assert (tmp_path / "r" / "runs" / "rep-001" / "summary.json").exists()
    assert not (tmp_path / "r" / "runs" / ".rep-001.tmp").exists()
    assert summary.replicates == 2
    # The resumed folder's tables have the layout of an uninterrupted run: same columns, same rows, same order.
    run_scenario(s, tmp_path / "u", protocol=sim_fakes.PROTOCOL, cache_dir=None)
    assert (tmp_path / "r" / "daily.csv").read_text() == (tmp_path / "u" / "daily.csv").read_text()
    for name in ("leakage.csv", "costs.csv"):
        assert [line.split(",")[0] for line in (tmp_path / "r" / name).read_text().splitlines()] == \
            [line.split(",")[0] for line in (tmp_path / "u" / name).read_text().splitlines()], name
        assert (tmp_path / "r" / name).read_text().splitlines()[0] == (tmp_path / "u" / name).read_text().splitlines()[0]
    resumed, fresh = ((tmp_path / d / "metrics.csv").read_text().splitlines() for d in ("r", "u"))
    assert resumed[0] == fresh[0] and [r.split(",")[0] for r in resumed] == [r.split(",")[0] for r in fresh]
    with pytest.raises(ScenarioError, match="different scenario"):
        run_scenario(s.with_overrides(days=3), tmp_path / "r", resume=True, protocol=sim_fakes.PROTOCOL, cache_dir=None)


def test_real_tpsi_ad_is_deterministic_despite_os_randomness():
    """Keys, shares and blinding come from the OS; no metric may change because of them."""
    from e2escan.sim.scenario import resolve_scenario

    s = Scenario.load(resolve_scenario("quickstart")).with_overrides(**{
        "population.accounts": 30, "days": 2, "content.image_size": 64,
        "protocol.params": {"threshold": 2, "synthetic_probability": 0.3},
    })
    a = compute_metrics(run_faithful(s, cache_dir=None))
    b = compute_metrics(run_faithful(s, cache_dir=None))
    assert a == b
    assert a.per_image.images > 0


@pytest.mark.parametrize(
    "when, override, message",
    [
        ("built", {"protocol.params": {"treshold": 3}},
         "protocol.params.treshold = 3: unknown key; accepted keys: threshold"),
        ("built", {"protocol.name": "tpsi"}, 'protocol.name = "tpsi": not one of the choices; accepted: one of "plaintext"'),
        ("built", {"protocol.params": {"threshold": 0}}, "protocol.params: tpsi-ad.threshold = 0 is out of range"),
        ("run", {"hasher.params": {"hash_sise": 8}}, "hasher 'pdq' has no parameter 'hash_sise'"),
    ],
)
def test_protocol_and_hasher_parameters_are_validated_before_a_run(tmp_path, when, override, message):
    """The protocol's name and parameters are refused when the scenario is built; the hasher's before a run."""
    from e2escan.sim.scenario import resolve_scenario, validate_components

    base = Scenario.load(resolve_scenario("quickstart"))
    if when == "built":
        with pytest.raises(ScenarioError) as info:
            base.with_overrides(**override)
    else:
        s = base.with_overrides(**override)
        with pytest.raises(ScenarioError) as info:
            validate_components(s)
        with pytest.raises(ScenarioError):
            run_scenario(s, tmp_path / "never")
        assert not (tmp_path / "never").exists()
    assert message in str(info.value)


def _attack_scenario(**attacks):
    from e2escan.sim.scenario import resolve_scenario

    return Scenario.load(resolve_scenario("quickstart")).with_overrides(**{
        "population.accounts": 40, "days": 2, "content.image_size": 64,
        "traffic.forward_share": 0.5, "traffic.popular_images": 4,
        "population.offender_share": 0.15, "content.offender_known_share": 1.0,
        "protocol.params": {"threshold": 2, "synthetic_probability": 0.0},
        "attacks": attacks,
    })


def test_poisoning_attack_reveals_exactly_the_accounts_with_t_distinct_target_matches():
    s = _attack_scenario(poisoning={"fraction": 0.2, "target": 0})
    run = run_faithful(s, cache_dir=None)
    m = compute_metrics(run).attacks.poisoning
    assert m.poison_entries == round(0.2 * 50 / 0.8)
    assert m.target_images_sent > 0 and m.target_images_matching.count > 0
    # Direct computation: tpsi-ad (dedup by hash, no synthetic vouchers) flags an account once it has sent
    # t distinct matching hashes.
    distinct: dict[int, set[str]] = {}
    for r in run.images:
        if r.oracle_match:
            distinct.setdefault(r.sender, set()).add(r.hash_hex)
    expected = {a for a, hs in distinct.items() if len(hs) >= 2}
    assert set(run.flags) == expected
    holders = {r.sender for r in run.images if r.target}
    target_hashes = {r.hash_hex for r in run.images if r.target and r.oracle_match}
    revealed_holders = {a for a in holders if a in run.flags and distinct[a] & target_hashes}
    assert m.holders_revealed.count == len(revealed_holders)


def test_evasion_attack_in_a_scenario_keeps_known_images_from_matching():
    s = _attack_scenario(evasion={"share": 1.0, "min_distance": 1, "max_queries": 40, "min_ssim": 0.85})
    run = run_faithful(s, cache_dir=None)
    attacked = [r for r in run.images if r.attacked]
    assert attacked and all(r.kind == "known" for r in attacked)
    ev = compute_metrics(run).attacks.evasion
    assert ev.images_attacked == len(attacked)
    # Exact matching: moving the hash by one bit is enough, and the attack reaches it within budget.
    assert ev.evaded.count == len(attacked)
    assert run.flags == {} or all(not run.population.offender[a] for a in run.flags)


def test_collision_attack_in_a_scenario_flags_targets_through_crafted_forwards():
    s = _attack_scenario(collision={"targets": 3, "images": 2, "max_queries": 400, "min_ssim": 0.5})
    s = s.with_overrides(**{"hasher.name": "ahash", "protocol.name": "plaintext", "protocol.params": {"radius": 10},
                            "population.offender_share": 0.0})
    run = run_faithful(s, cache_dir=None)
    crafted = [r for r in run.images if r.kind == "crafted"]
    assert len(crafted) == 6 and all(r.day == 0 for r in crafted)
    c = compute_metrics(run).attacks.collision
    assert c.crafted_images_matching.count == sum(r.oracle_match for r in crafted) > 0
    # plaintext reveals every match (t = 1): a target whose crafted forward matched is flagged.
    for r in crafted:
        if r.oracle_match:
            assert r.sender in run.flags
    assert c.targets_flagged.count == len({r.sender for r in crafted} & set(run.flags))


def test_pooled_header_and_days_to_detection_over_replicates(tmp_path):
    """The header shows accounts per replicate; days to detection is the mean over every detected offender."""
    from e2escan.metrics.run import ReplicateSummary
    from e2escan.report.summary import format_summary
    from e2escan.sim.runner import aggregate

    data = json.loads(json.dumps(TINY))
    data["replicates"] = 2
    s = Scenario.from_dict(data)
    summary = run_scenario(s, tmp_path / "r", protocol=sim_fakes.PROTOCOL, cache_dir=None)
    per_rep = [json.loads((tmp_path / "r" / "runs" / f"rep-00{i}" / "summary.json").read_text()) for i in range(2)]
    accounts = per_rep[0]["metrics"]["accounts"]["accounts"]
    assert f"{accounts:,} accounts" in format_summary(summary).splitlines()[0]
    # Two made-up replicates: 1 detection after 10 days, 3 detections after 2 days each -> (10 + 6) / 4 = 4.
    fake = [json.loads(json.dumps(per_rep[0])), json.loads(json.dumps(per_rep[1]))]
    for rep, (mean, n) in zip(fake, ((10.0, 1), (2.0, 3))):
        rep["metrics"]["accounts"].update(days_to_detection_mean=mean, days_to_detection_n=n)
    reps = [ReplicateSummary.from_dict(rep) for rep in fake]
    assert aggregate(s, reps).metrics.accounts.days_to_detection_mean == 4.0  # the unweighted mean was 6


def test_compare_tests_match_scipy():
    """McNemar's exact test (paired, same-seed runs) and Fisher's exact test (independent runs) against scipy."""
    stats = pytest.importorskip("scipy.stats")
    from e2escan.metrics.probability import fisher_exact as _fisher_two_sided
    from e2escan.metrics.probability import mcnemar_exact as _binom_two_sided

    for k, n in ((0, 0), (0, 10), (3, 10), (10, 10), (7, 25)):
        want = 1.0 if n == 0 else stats.binomtest(k, n, 0.5).pvalue
        assert _binom_two_sided(k, n) == pytest.approx(want, rel=1e-9)
    for k1, n1, k2, n2 in ((15, 20, 5, 20), (0, 380, 3, 380), (2, 3920, 9, 3920), (1, 10, 1, 10)):
        want = stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue
        assert _fisher_two_sided(k1, n1, k2, n2) == pytest.approx(want, rel=1e-9)
    # Pairing matters: 8 accounts flagged only under A and none only under B is p = 0.0078 paired,
    # while the same marginal counts (18/40 against 10/40) give p = 0.10 unpaired.
    assert _binom_two_sided(0, 8) < 0.01 and _fisher_two_sided(18, 40, 10, 40) > 0.05


def test_pooled_intervals_use_the_variance_between_replicates():
    """Overdispersed replicates (one viral day): the clustered interval covers the replicates' mean, Wilson does not."""
    from e2escan.metrics.rates import clustered_proportion, proportion

    n = [1_000_000] * 20
    k = [2] * 19 + [2_000]  # nineteen ordinary days and one viral false match
    pooled = clustered_proportion(k, n)
    mean_of_replicates = sum(ki / ni for ki, ni in zip(k, n)) / len(k)
    assert pooled["ci_low"] <= mean_of_replicates <= pooled["ci_high"]
    assert pooled["ci_method"].startswith("between-replicate") and pooled["replicate_p50"] == 2e-6
    wilson = proportion(sum(k), sum(n))
    assert wilson.low > 2e-6 * 10 or wilson.high < pooled["ci_high"] / 2  # far too narrow for these data
    one = clustered_proportion([3], [100])
    assert one["ci_method"].startswith("Wilson, conditional") and one["ci_low"] == proportion(3, 100).low
    none = clustered_proportion([0, 0], [100, 100])
    assert none["ci_method"].startswith("Wilson on pooled counts") and none["ci_high"] > 0


def test_compare_labels_name_what_differs(tmp_path):
    """compare.png is labelled by the differing scenario fields, not by folder paths."""
    from e2escan.report.summary import run_labels

    for name, t in (("a", 3), ("b", 5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "scenario.toml").write_text(f'name = "q"\nseed = 1\n[protocol.params]\nthreshold = {t}\n')
    assert run_labels(tmp_path / "a", tmp_path / "b") == ("A: threshold = 3", "B: threshold = 5")


def test_compare_takes_three_runs(tmp_path, monkeypatch):
    """A against B and C: one table per pair, one CSV with a run column, one figure and report."""
    from e2escan.cli import main

    tiny = ["--set", "days=1", "--set", "population.accounts=20", "--set", "content.image_size=64",
            "--set", "content.database_size=10", "--set", "traffic.popular_images=5", "--no-cache"]
    monkeypatch.chdir(tmp_path)
    for name, t in (("a", 3), ("b", 2), ("c", 1)):
        assert main(["run", *tiny, "--set", f"protocol.params.threshold={t}", "--out", name]) == 0
    assert main(["compare", "a", "b", "c", "--out", "cmp"]) == 0
    rows = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert rows[0].startswith("run,metric") and {r.split(",")[0] for r in rows[1:]} == {"b", "c"}
    assert (tmp_path / "cmp" / "compare.svg").is_file() and (tmp_path / "cmp" / "report.html").is_file()
