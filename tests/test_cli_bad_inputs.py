"""Bad input to any CLI verb: a non-zero exit, one line on stderr naming the problem, no traceback, nothing changed.

Every case runs in a scratch folder holding a finished run, a hash-eval
folder, a calibration file, a relay file that is not a database and other
fixtures; a digest of the whole folder (every path and every byte) is taken
before and after, so a refused command that wrote, moved or deleted anything
fails. Add a case here for every new command or option.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from e2escan.cli import main

TINY = ["--set", "days=1", "--set", "population.accounts=20", "--set", "content.image_size=64",
        "--set", "content.database_size=10", "--set", "traffic.popular_images=5", "--no-cache"]


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-inputs")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["run", *TINY, "--out", "run-a"]) == 0
        assert main(["hash-eval", "--corpus", "synthetic:6", "--image-size", "32x32", "--hasher", "ahash",
                     "--transforms", "identity", "--no-figures", "--out", "he"]) == 0
    finally:
        os.chdir(cwd)
    (root / "afile").write_text("not a folder\n")
    (root / "binary.toml").write_bytes(bytes(range(128, 256)) * 3)
    (root / "adir").mkdir()
    (root / "calibration.json").write_text("{}\n")
    (root / "cachefile").write_text("a file where the cache folder should be\n")
    (root / "badcache").mkdir()
    (root / "badcache" / "hashes.sqlite").write_bytes(b"garbage" * 40)
    (root / "unknown-key.toml").write_text('name = "x"\ncolour = "red"\n')
    return root


CASES = [
    ("run --out is a file", ["run", *TINY, "--out", "afile"], {}, "is a file"),
    ("run --out under a file", ["run", *TINY, "--out", "afile/sub"], {}, "is a file"),
    ("run --out holds a different run", ["run", *TINY, "--set", "seed=9", "--out", "run-a"], {}, "seed: 1 -> 9"),
    ("run --out holds a hash-eval", ["run", *TINY, "--out", "he"], {}, "hash-eval"),
    ("run bad transform, existing --out", ["run", *TINY, "--set", 'content.transforms=[{spec="bogus:x=1", weight=1}]',
                                           "--out", "run-a"], {}, "unknown transform"),
    ("run binary scenario", ["run", "binary.toml"], {}, "not a text file"),
    ("run a folder as scenario", ["run", "adir"], {}, "is a folder"),
    ("run unknown scenario key", ["run", "unknown-key.toml"], {}, "colour"),
    ("run --resume onto a different run", ["run", *TINY, "--set", "seed=9", "--out", "run-a", "--resume"], {},
     "different run"),
    ("run --force --resume", ["run", *TINY, "--out", "run-a", "--force", "--resume"], {}, "choose one"),
    ("run cache dir is a file", ["run", *TINY[:-1], "--out", "new-run"], {"E2ESCAN_CACHE_DIR": "cachefile"},
     "--no-cache"),
    ("run corrupt cache", ["run", *TINY[:-1], "--out", "new-run"], {"E2ESCAN_CACHE_DIR": "badcache"}, "--no-cache"),
    ("sweep binary file", ["sweep", "binary.toml"], {}, "not a text file"),
    ("sweep a folder", ["sweep", "adir"], {}, "is a folder"),
    ("hash-eval --seed -1", ["hash-eval", "--corpus", "synthetic:4", "--seed", "-1", "--out", "he2"], {}, "--seed"),
    ("hash-eval --out holds a run", ["hash-eval", "--corpus", "synthetic:4", "--hasher", "ahash", "--out", "run-a"],
     {}, "not of `e2escan hash-eval`"),
    ("hash-eval --out holds another corpus", ["hash-eval", "--corpus", "synthetic:7", "--image-size", "32x32",
                                             "--hasher", "ahash", "--transforms", "identity", "--no-figures", "--out",
                                             "he"], {}, "synthetic:6"),
    ("calibrate --seed -1", ["calibrate", "--seed", "-1", "--out", "c.json"], {}, "--seed"),
    ("calibrate --images 0", ["calibrate", "--images", "0", "--out", "c.json"], {}, "--images"),
    ("calibrate --image-size 0", ["calibrate", "--image-size", "0", "--out", "c.json"], {}, "--image-size"),
    ("calibrate --out exists", ["calibrate", "--images", "4", "--out", "calibration.json"], {}, "--force"),
    ("calibrate --out is a folder", ["calibrate", "--images", "4", "--out", "adir"], {}, "is a folder"),
    ("calibrate --out under a file", ["calibrate", "--images", "4", "--out", "afile/c.json"], {}, "is a file"),
    ("demo --seed -1", ["demo", "--seed", "-1"], {}, "--seed"),
    ("demo --relay-db not a database", ["demo", "--relay-db", "afile"], {}, "not an SQLite database"),
    ("demo --relay-db a folder", ["demo", "--relay-db", "adir"], {}, "is a folder"),
    ("compare a non-run folder", ["compare", "he", "run-a"], {}, "not an `e2escan run` results folder"),
    ("compare --out is a file", ["compare", "run-a", "run-a", "--out", "afile"], {}, "is a file"),
    ("papers --out is a file", ["papers", "reproduce", "eu-funnel", "--quick", "--out", "afile"], {}, "is a file"),
    ("papers --out holds a run", ["papers", "reproduce", "eu-funnel", "--quick", "--out", "run-a"], {},
     "not of `e2escan papers reproduce`"),
    ("papers --seed -1", ["papers", "reproduce", "eu-funnel", "--quick", "--seed", "-1", "--out", "p"], {}, "--seed"),
    ("audit --out is a file", ["audit", "plaintext", "--vouchers", "50", "--out", "afile"], {}, "is a file"),
    ("report on a folder without results", ["report", "adir"], {}, "not a results folder"),
    ("report on a file", ["report", "afile"], {}, "not a folder"),
]


@pytest.mark.parametrize("name, argv, env, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_changes_nothing(scratch, monkeypatch, capsys, name, argv, env, needle):
    monkeypatch.chdir(scratch)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = tree_digest(scratch)
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, f"{name}: exit 0"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("e2escan: error: "), f"{name}: stderr was {err!r}"
    assert "Traceback" not in err
    assert needle in lines[0], f"{name}: {lines[0]!r} does not mention {needle!r}"
    assert tree_digest(scratch) == before, f"{name}: the scratch folder changed"


def test_results_land_beside_each_other_and_reruns_are_idempotent(tmp_path, monkeypatch, capsys):
    """Twice the same run, then a changed one: two folders, named by the effective scenario's digest."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", *TINY]) == 0
    first = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(first) == 1 and first[0].startswith("quickstart-")
    summary = (tmp_path / "results" / first[0] / "summary.json").read_text()
    assert main(["run", *TINY]) == 0
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == first
    assert main(["run", *TINY, "--set", "protocol.params.threshold=5"]) == 0
    folders = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(folders) == 2 and first[0] in folders
    other = next(f for f in folders if f != first[0])
    assert '"threshold": 5' in (tmp_path / "results" / other / "summary.json").read_text()
    # The manifest records the whole command line, --set arguments included.
    assert "--set protocol.params.threshold=5" in (tmp_path / "results" / other / "manifest.json").read_text()
    import json

    assert json.loads((tmp_path / "results" / first[0] / "summary.json").read_text())["metrics"] == \
        json.loads(summary)["metrics"]


def test_force_clears_a_folder_of_another_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *TINY, "--out", "r"]) == 0
    (tmp_path / "r" / "stale.txt").write_text("from before\n")
    assert main(["run", *TINY, "--set", "seed=9", "--out", "r", "--force"]) == 0
    assert not (tmp_path / "r" / "stale.txt").exists()
    assert "seed = 9" in (tmp_path / "r" / "scenario.toml").read_text()
