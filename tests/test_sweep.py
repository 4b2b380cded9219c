"""Parameter sweeps: strict sweep files, reproducible points, one table whatever runs them, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from e2escan.cli import main as cli_main
from e2escan.errors import ConfigError
from e2escan.sim.runner import scenario_digest
from e2escan.sim.scenario import shipped_scenarios_dir
from e2escan.sim.sweep import load_sweep, run_sweep

TINY = {
    "name": "tiny",
    "days": 2,
    "population": {"accounts": 10, "offender_share": 0.1, "mean_contacts": 3, "group_share": 0.0},
    "traffic": {"messages_per_day": 3, "distribution": "poisson", "image_share": 0.8, "forward_share": 0.2},
    "content": {"database_size": 5, "image_size": 64, "encoding": "png", "offender_known_share": 1.0},
    "protocol": {"name": "plaintext", "params": {"radius": 0}},
    "review": {"accuracy": 1.0, "capacity_per_day": 10},
}

GRID = """
name = "tiny-grid"
scenario = "tiny.toml"
description = "radius x seed on a tiny population"

[grid]
"protocol.params.radius" = [0, 24]
seed = [1, 2]
"""


def _toml(table: dict, prefix: str = "") -> str:
    lines = [f"{k} = {json.dumps(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            lines += [f"\n[{prefix}{k}]", _toml(v, f"{prefix}{k}.")]
    return "\n".join(lines)


def write_sweep(folder: Path, body: str, name: str = "sweep.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.toml").write_text(_toml(TINY) + "\n")
    (folder / name).write_text(body)
    return folder / name


def load(folder: Path, body: str) -> object:
    return load_sweep(write_sweep(folder, body))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """The grid sweep run once, in this process: the reference table for the other tests."""
    folder = tmp_path_factory.mktemp("clean")
    path = write_sweep(folder, GRID)
    result = run_sweep(load_sweep(path), folder / "out", workers=0)
    return path, result


# --------------------------------------------------------------------------- the sweep file


def test_grid_points_follow_file_order_and_ids_are_scenario_digests(tmp_path):
    sweep = load(tmp_path, GRID)
    assert sweep.keys == ("protocol.params.radius", "seed")
    assert [p.params for p in sweep.points] == [
        {"protocol.params.radius": 0, "seed": 1}, {"protocol.params.radius": 0, "seed": 2},
        {"protocol.params.radius": 24, "seed": 1}, {"protocol.params.radius": 24, "seed": 2},
    ]
    for p in sweep.points:
        assert p.scenario.protocol.params.radius == p.params["protocol.params.radius"]
        assert p.scenario.seed == p.params["seed"]
        assert p.point_id == scenario_digest(p.scenario)
    assert len({p.point_id for p in sweep.points}) == 4
    # Unquoted dotted keys are the same sweep.
    unquoted = load(tmp_path / "u", GRID.replace('"protocol.params.radius"', "protocol.params.radius"))
    assert [p.point_id for p in unquoted.points] == [p.point_id for p in sweep.points]
    # [set] changes every point, hence every id.
    fixed = load(tmp_path / "s", GRID + "\n[set]\ndays = 1\n")
    assert all(p.scenario.days == 1 for p in fixed.points)
    assert not {p.point_id for p in fixed.points} & {p.point_id for p in sweep.points}


RANDOM = """
name = "tiny-random"
scenario = "tiny.toml"

[grid]
"protocol.params.radius" = [0, 8]

[random]
samples = 5
seed = 3
"traffic.forward_share" = {uniform = [0.1, 0.4]}
"traffic.popularity_exponent" = {loguniform = [0.01, 10.0]}
"population.accounts" = {integers = [10, 12]}
"hasher.name" = {choice = ["pdq", "dhash"]}
"""


def test_random_draws_are_seeded_bounded_and_shared_by_grid_points(tmp_path):
    sweep = load(tmp_path, RANDOM)
    assert sweep.keys[0] == "protocol.params.radius" and len(sweep.keys) == 5
    assert len(sweep.points) + sweep.duplicates_merged == 2 * 5
    draws = [{k: v for k, v in p.params.items() if k != "protocol.params.radius"} for p in sweep.points]
    for d in draws:
        assert 0.1 <= d["traffic.forward_share"] < 0.4 and isinstance(d["traffic.forward_share"], float)
        assert 0.01 <= d["traffic.popularity_exponent"] < 10.0
        assert d["population.accounts"] in (10, 11, 12) and type(d["population.accounts"]) is int
        assert d["hasher.name"] in ("pdq", "dhash")
    # Every grid point sees the same draws (common random numbers), in the same order.
    by_radius = {r: [d for p, d in zip(sweep.points, draws) if p.params["protocol.params.radius"] == r] for r in (0, 8)}
    assert by_radius[0] == by_radius[8]
    again = load(tmp_path / "again", RANDOM)
    assert [p.params for p in again.points] == [p.params for p in sweep.points]
    other = load(tmp_path / "other", RANDOM.replace("seed = 3", "seed = 4"))
    assert [p.params for p in other.points] != [p.params for p in sweep.points]


def test_repeated_random_draws_run_once(tmp_path):
    body = 'name = "r"\nscenario = "tiny.toml"\n[random]\nsamples = 8\n"seed" = 1\n"days" = {choice = [1, 2]}\n'
    sweep = load(tmp_path, body)
    assert sorted(p.params["days"] for p in sweep.points) == [1, 2]
    assert sweep.duplicates_merged == 6


@pytest.mark.parametrize(
    "body, message",
    [
        (GRID + "\n[gird]\n", "gird = {}: unknown key; accepted keys: name, scenario"),
        ('name = "x"\n[grid]\nseed = [1]\n', "scenario: required key is missing; accepted: a string"),
        (GRID.replace("tiny.toml", "no-such-scenario"), "scenario = \"no-such-scenario\": no such file next to the sweep file, and no shipped scenario"),
        ('name = "x"\nscenario = "tiny.toml"\n', "nothing to sweep; accepted: a [grid] table of lists or a [random] table"),
        (GRID + '"populaton.accounts" = [10]\n', "grid.populaton.accounts = [10]: populaton is not a scenario field; accepted: top-level fields: "),
        (GRID + '"population.acounts" = [10]\n', "grid.population.acounts = [10]: acounts is not a scenario field; accepted: fields of population: "),
        (GRID + '"days.max" = [1]\n', "grid.days.max = [1]: days is a value, not a table"),
        (GRID + "days = 2\n", "grid.days = 2: not a non-empty list; accepted: a non-empty list of distinct values"),
        (GRID + "days = []\n", "grid.days = []: not a non-empty list"),
        (GRID + "days = [1, 2, 1]\n", "grid.days = [1, 2, 1]: 1 listed twice"),
        (GRID + "days = [1, 0]\n", "point protocol.params.radius=0, seed=1, days=0: days = 0: out of range; accepted: an integer at least 1"),
        (GRID + 'days = ["2"]\n', "days = \"2\": wrong type (a string); accepted: an integer"),
        (GRID + '"protocol.params.raduis" = [1]\n',
         "protocol.params.raduis = 1: unknown key; accepted keys: radius"),
        ('name = "x"\nscenario = "tiny.toml"\n[grid]\n"protocol.params" = [{radius = -1}]\n',
         "point protocol.params={\"radius\": -1}: protocol.params: plaintext.radius = -1 is out of range"),
        (GRID + '"protocol.params" = [{radius = 1}]\n', "protocol.params and protocol.params.radius: overlap"),
        (GRID + '"hasher.params.hash_sise" = [8]\n', "hasher 'pdq' has no parameter 'hash_sise'"),
        (GRID + '"population.accounts" = [3]\n', "population.mean_contacts = 3: not below population.accounts"),
        (GRID + "\n[set]\nseed = 5\n", "seed = 5: both fixed (in [set] or --set) and swept"),
        (GRID + "\n[set]\npopulaton = 5\n", "set.populaton = 5: populaton is not a scenario field"),
        (GRID + "\n[random]\nsamples = 2\n\"days\" = {normal = [1, 2]}\n",
         "random.days.normal = [1, 2]: unknown key; accepted keys: uniform, loguniform, integers, choice"),
        (GRID + "\n[random]\nsamples = 2\n\"traffic.forward_share\" = {uniform = [0.5, 0.1]}\n",
         "random.traffic.forward_share.uniform = [0.5, 0.1]: low not below high"),
        (GRID + "\n[random]\nsamples = 2\n\"traffic.forward_share\" = {loguniform = [0.0, 0.1]}\n",
         "random.traffic.forward_share.loguniform = [0.0, 0.1]: low not positive"),
        (GRID + "\n[random]\nsamples = 2\n\"days\" = {integers = [1, 2.5]}\n", "random.days.integers[1] = 2.5: wrong type (a number); accepted: an integer"),
        (GRID + "\n[random]\n\"days\" = {integers = [1, 2]}\n", "random.samples: required key is missing; accepted: an integer at least 1"),
        (GRID + "\n[random]\nsamples = 2\nseed = {integers = [1, 9]}\n", "random.seed = {integers = [1, 9]}: wrong type (a table); accepted: an integer at least 0, the sampler's seed"),
        (GRID + "\n[random]\nsamples = 2\n", "random = {samples = 2}: no keys to draw"),
        (GRID + "\n[random]\nsamples = 2\n\"days\" = {choice = [1, 2], uniform = [1, 2]}\n",
         "random.days = {choice = [1, 2], uniform = [1, 2]}: not one distribution; accepted: one of {uniform"),
    ],
)
def test_bad_sweep_files_fail_up_front_naming_the_key(tmp_path, body, message):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, body)
    assert message in str(info.value)
    assert "sweep.toml" in str(info.value)


def test_shipped_sweeps_are_valid():
    folder = shipped_scenarios_dir() / "sweeps"
    paths = sorted(folder.glob("*.toml"))
    assert {p.stem for p in paths} >= {"threshold"} and (folder / "README.md").exists()
    for path in paths:
        sweep = load_sweep(path)
        assert sweep.points and sweep.description, path


# --------------------------------------------------------------------------- running


def test_sweep_folder_is_tidy(clean_run):
    _, first = clean_run
    out = first.out_dir
    assert first.computed == 4 and first.reused == 0 and not first.failures

    table = pq.read_table(out / "sweep.parquet").to_pylist()
    assert [r["point"] for r in table] == [0, 1, 2, 3]
    assert [(r["protocol.params.radius"], r["seed"]) for r in table] == [(0, 1), (0, 2), (24, 1), (24, 2)]
    header = (out / "sweep.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["point", "point_id", "protocol.params.radius", "seed"]
    for col in ("accounts.innocent_flagged.rate", "accounts.offenders_detected.ci_low", "per_image.images",
                "per_image.false_negative.count", "review.cases_reviewed"):
        assert col in header
    assert not any("_ms_" in c or "wall" in c for c in header)  # timings live in costs.csv
    for row in table:
        summary = json.loads((out / "points" / row["point_id"] / "summary.json").read_text())
        entry = summary["metrics"]["accounts"]["offenders_detected"]
        assert row["accounts.offenders_detected.count"] == entry["count"]
        assert row["accounts.offenders_detected.of"] == entry["of"]
        assert summary["seed"] == row["seed"] and summary["protocol_params"]["radius"] == row["protocol.params.radius"]
    # The seed really reaches the simulation: the same radius at another seed is another population.
    metrics = [{k: v for k, v in r.items() if "." in k and k not in ("protocol.params.radius",)} for r in table]
    assert metrics[0] != metrics[1] and metrics[2] != metrics[3]

    costs = (out / "costs.csv").read_text().splitlines()
    assert costs[0].startswith("point,point_id,protocol.params.radius,seed,wall_time_s") and len(costs) == 5
    assert (out / "failures.csv").read_text().strip() == "point,point_id,protocol.params.radius,seed,error_type,error"
    for name in ("sweep_protocol_params_radius.png", "sweep_protocol_params_radius.svg", "manifest.json",
                 "summary.json", "leakage.csv", "sweep.toml", "scenario.toml"):
        assert (out / name).exists(), name
    assert not (out / "sweep_seed.png").exists()  # seeds are pooled, not plotted against
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["points"], summary["finished"], summary["failed"]) == (4, 4, 0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "e2escan sweep" and manifest["git_commit"]


def test_a_failing_point_is_reported_and_the_others_finish(tmp_path, capsys):
    # Enough files to pass validation before the run, none of them an image: the point fails while running.
    empty = tmp_path / "broken-corpus"
    empty.mkdir()
    for i in range(60):
        (empty / f"img{i:02d}.png").write_bytes(b"not an image")
    body = f'name = "f"\nscenario = "tiny.toml"\n[grid]\n"content.corpus" = ["synthetic", {json.dumps(str(empty))}]\n'
    path = write_sweep(tmp_path, body)
    out = tmp_path / "out"
    assert cli_main(["sweep", str(path), "--out", str(out), "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert "1 point(s) failed" in err and str(empty) in err
    rows = (out / "sweep.csv").read_text().splitlines()
    assert len(rows) == 2 and ",synthetic," in rows[1]
    failures = (out / "failures.csv").read_text().splitlines()
    assert len(failures) == 2 and str(empty) in failures[1] and "content.corpus" in failures[1]
    failed_id = failures[1].split(",")[1]
    assert "Traceback" in (out / "points" / failed_id / "error.txt").read_text()

    # An existing sweep folder is not overwritten by accident; --resume keeps the finished point
    # and retries the failed one.
    with pytest.raises(ConfigError, match="already holds sweep points"):
        run_sweep(load_sweep(path), out, workers=0)
    done = out / "points" / rows[1].split(",")[1] / "summary.json"
    before = done.stat().st_mtime_ns
    assert cli_main(["sweep", str(path), "--out", str(out), "--workers", "0", "--resume", "--json"]) == 1
    assert done.stat().st_mtime_ns == before
    summary = json.loads(capsys.readouterr().out)
    assert (summary["reused"], summary["computed_this_run"], summary["failed"]) == (1, 1, 1)


def test_same_sweep_twice_same_table_here_and_on_a_dask_scheduler(clean_run, tmp_path):
    from dask.distributed import LocalCluster

    path, first = clean_run
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        again = run_sweep(load_sweep(path), tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert again.computed == 4 and again.reused == 0
    # Other processes, another completion order: the same bytes.
    assert (tmp_path / "dask" / "sweep.csv").read_bytes() == (first.out_dir / "sweep.csv").read_bytes()
    assert pq.read_table(tmp_path / "dask" / "sweep.parquet").equals(pq.read_table(first.out_dir / "sweep.parquet"))


def test_sigkill_mid_sweep_then_resume_recomputes_nothing_finished(clean_run, tmp_path):
    path, first = clean_run
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "e2escan", "sweep", str(path), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not list(out.glob("points/*/manifest.json")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no point finished within 120 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its Dask workers
        proc.wait()
    finished = {p.parent.name: (p.stat().st_mtime_ns, (p.parent / "summary.json").stat().st_mtime_ns)
                for p in out.glob("points/*/manifest.json")}
    assert 1 <= len(finished) < 4
    assert not (out / "sweep.csv").exists()

    assert cli_main(["sweep", str(path), "--out", str(out), "--workers", "0", "--resume"]) == 0
    for point_id, mtimes in finished.items():
        folder = out / "points" / point_id
        assert ((folder / "manifest.json").stat().st_mtime_ns, (folder / "summary.json").stat().st_mtime_ns) == mtimes
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["reused"], summary["computed_this_run"]) == (len(finished), 4 - len(finished))
    assert (out / "sweep.csv").read_bytes() == (first.out_dir / "sweep.csv").read_bytes()
