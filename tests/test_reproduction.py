"""The reproduction suite: paper discovery, strict paper.toml, the CSV checker and the CLI."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import pytest

from e2escan import reproduction
from e2escan.cli import papers as papers_cli
from e2escan.errors import ConfigError

PAPER_TOML = """\
title = "A tiny paper"
source = "Nobody, A tiny paper, 2024"
claim = "Table 1: two numbers and a label"
quick = true
full_runtime = "under a second"
full_memory = "negligible"

[check]
files = ["table.csv"]
rtol = 1e-6
atol = 1e-9
note = "test fixture"
"""

# The fake paper writes a fixed table; the environment-free knob is the seed.
REPRODUCE_PY = """\
from pathlib import Path
from dataclasses import dataclass

from e2escan.results import write_csv, write_json


@dataclass(frozen=True)
class Row:  # a dataclass proves the module is importable the way dataclasses need
    name: str
    value: float


def reproduce(out_dir, *, quick, seed):
    scale = 1.0 + seed * 1e-3
    rows = [Row("a", 1.0 * scale), Row("b", 2.5 * scale), Row("c", 100.0 if quick else 200.0)]
    write_csv(Path(out_dir) / "table.csv", [{"name": r.name, "value": r.value, "label": "x"} for r in rows])
    write_json(Path(out_dir) / "summary.json", {"quick": quick, "seed": seed})
"""


def make_paper(root: Path, name: str = "tiny-paper", toml: str = PAPER_TOML, script: str = REPRODUCE_PY) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "paper.toml").write_text(toml)
    (folder / "reproduce.py").write_text(script)
    return folder


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="e2escan")
    sub = parser.add_subparsers()
    papers_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


# --- the checker -------------------------------------------------------------------


def compare(tmp_path: Path, expected: str, got: str, rtol: float = 1e-6, atol: float = 0.0):
    e = write(tmp_path / "expected.csv", expected)
    g = write(tmp_path / "got.csv", got)
    mismatches, cells = reproduction.compare_csv(g, e, file="t.csv", rtol=rtol, atol=atol)
    return mismatches, cells


def test_identical_files_pass(tmp_path):
    text = "x,y,label\n1,2.5,a\n3,nan,b\n-inf,1e-300,c\n"
    mismatches, cells = compare(tmp_path, text, text)
    assert mismatches == [] and cells == 9


def test_numeric_tolerance_is_relative_plus_absolute(tmp_path):
    expected = "x\n1000\n0\n"
    ok, _ = compare(tmp_path, expected, "x\n1000.0009\n0.0000001\n", rtol=1e-6, atol=1e-6)
    assert ok == []
    bad, _ = compare(tmp_path, expected, "x\n1000.0011\n0.000002\n", rtol=1e-6, atol=1e-6)
    assert [(m.row, m.column) for m in bad] == [(1, "x"), (2, "x")]
    assert all(m.problem == "value differs" for m in bad)


def test_mismatch_names_file_row_column_expected_got_and_tolerance(tmp_path):
    mismatches, _ = compare(tmp_path, "p,log10\n1e-6,-12.0\n1e-7,-20.0\n", "p,log10\n1e-6,-12.0\n1e-7,-20.1\n")
    (m,) = mismatches
    assert (m.file, m.row, m.column, m.expected, m.got) == ("t.csv", 2, "log10", "'-20.0'", "'-20.1'")
    text = m.describe()
    for part in ("t.csv", "row 2", "line 3", "'log10'", "-20.0", "-20.1", "rtol 1e-06", "atol 0"):
        assert part in text


def test_text_cells_must_match_exactly(tmp_path):
    mismatches, _ = compare(tmp_path, "label\nassumed worst case\n", "label\nassumed worst-case\n")
    (m,) = mismatches
    assert m.problem == "text differs" and "exactly" in m.tolerance


def test_number_against_text_is_a_mismatch(tmp_path):
    mismatches, _ = compare(tmp_path, "v\n1.5\nTrue\n", "v\nabc\n1\n")
    assert [m.problem for m in mismatches] == ["one of the two is not a number"] * 2


def test_nan_and_infinities(tmp_path):
    ok, _ = compare(tmp_path, "v\nnan\ninf\n-inf\n", "v\nNaN\ninf\n-inf\n")
    assert ok == []
    bad, _ = compare(tmp_path, "v\nnan\ninf\n1\n", "v\n1\n-inf\ninf\n")
    assert len(bad) == 3


def test_row_count_mismatch_is_reported_and_shared_rows_still_compared(tmp_path):
    mismatches, _ = compare(tmp_path, "v\n1\n2\n3\n", "v\n1\n5\n")
    problems = {(m.problem, m.row) for m in mismatches}
    assert ("row count differs", None) in problems
    assert ("value differs", 2) in problems
    count = next(m for m in mismatches if m.problem == "row count differs")
    assert (count.expected, count.got) == ("3", "2")


def test_missing_and_extra_columns(tmp_path):
    mismatches, _ = compare(tmp_path, "a,b\n1,2\n", "a,c\n1,2\n")
    assert {(m.problem, m.column) for m in mismatches} == {
        ("column missing from the output", "b"),
        ("column not in the expected file", "c"),
    }


def test_column_order_does_not_matter(tmp_path):
    mismatches, _ = compare(tmp_path, "a,b\n1,2\n", "b,a\n2,1\n")
    assert mismatches == []


def test_ragged_rows_are_reported(tmp_path):
    mismatches, _ = compare(tmp_path, "a,b\n1,2\n", "a,b\n1\n")
    (m,) = mismatches
    assert m.row == 1 and "fields" in m.problem


def test_empty_files_compare_equal(tmp_path):
    assert compare(tmp_path, "", "")[0] == []


# --- paper.toml and discovery ---------------------------------------------------------


def test_discovery_ignores_folders_without_paper_toml(tmp_path):
    make_paper(tmp_path)
    (tmp_path / "half-written").mkdir()
    (tmp_path / "half-written" / "reproduce.py").write_text("# work in progress\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README.md").write_text("papers\n")
    names = [p.name for p in reproduction.discover_papers(tmp_path)]
    assert names == ["tiny-paper"]


def test_load_paper_reads_every_field(tmp_path):
    spec = reproduction.load_paper(make_paper(tmp_path))
    assert spec.name == "tiny-paper" and spec.quick is True
    assert spec.check == reproduction.CheckSpec(files=("table.csv",), rtol=1e-6, atol=1e-9, note="test fixture")
    assert spec.expected_dir(True) == tmp_path / "tiny-paper" / "expected" / "quick"


@pytest.mark.parametrize(
    "edit,key",
    [
        (lambda t: t + 'colour = "red"\n', "colour"),
        (lambda t: t.replace('title = "A tiny paper"\n', ""), "title"),
        (lambda t: t.replace("quick = true", 'quick = "yes"'), "quick"),
        (lambda t: t.replace('full_memory = "negligible"', "full_memory = 3"), "full_memory"),
        (lambda t: t.replace("rtol = 1e-6", 'rtol = "small"'), "rtol"),
        (lambda t: t.replace("atol = 1e-9", "atol = -1.0"), "atol"),
        (lambda t: t.replace("rtol = 1e-6", "rtol = true"), "rtol"),
        (lambda t: t.replace('files = ["table.csv"]', "files = []"), "files"),
        (lambda t: t.replace('files = ["table.csv"]', 'files = ["../escape.csv"]'), "files"),
        (lambda t: t.replace('files = ["table.csv"]', 'files = ["table.txt"]'), "files"),
        (lambda t: t.replace('note = "test fixture"', "tolerance = 1"), "tolerance"),
        (lambda t: t.replace("[check]\n", "[check]\nextra = 1\n"), "extra"),
        (lambda t: t.replace('title = "A tiny paper"', 'title = ""'), "title"),
    ],
)
def test_paper_toml_is_validated_strictly(tmp_path, edit, key):
    folder = make_paper(tmp_path, toml=edit(PAPER_TOML))
    with pytest.raises(ConfigError) as info:
        reproduction.load_paper(folder)
    assert key in str(info.value)
    assert "paper.toml" in str(info.value)


def test_broken_toml_and_bad_folder_names(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        reproduction.load_paper(make_paper(tmp_path, toml="title = \n"))
    with pytest.raises(ConfigError, match="kebab-case"):
        reproduction.load_paper(make_paper(tmp_path, name="Bad_Name"))


def test_locate_papers_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(reproduction.PAPERS_DIR_ENV, raising=False)
    default = reproduction.locate_papers_dir()
    assert default == Path(__file__).resolve().parents[1] / "papers"
    monkeypatch.setenv(reproduction.PAPERS_DIR_ENV, str(tmp_path))
    assert reproduction.locate_papers_dir() == tmp_path
    assert reproduction.locate_papers_dir(tmp_path / "..") == tmp_path / ".."
    with pytest.raises(ConfigError, match="--papers-dir"):
        reproduction.locate_papers_dir(tmp_path / "missing")
    monkeypatch.setenv(reproduction.PAPERS_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=reproduction.PAPERS_DIR_ENV):
        reproduction.locate_papers_dir()


def test_unknown_paper_lists_the_available_ones(tmp_path):
    make_paper(tmp_path)
    with pytest.raises(ConfigError, match="tiny-paper"):
        reproduction.find_paper(tmp_path, "no-such-paper")


# --- running -------------------------------------------------------------------------


def test_reproduce_check_and_update_expected(tmp_path):
    spec = reproduction.load_paper(make_paper(tmp_path / "papers"))
    out = tmp_path / "out"
    first = reproduction.reproduce(spec, out, quick=True, seed=0, check=True)
    assert not first.check.ok
    assert "no expected copy" in first.check.mismatches[0].describe()
    written = reproduction.update_expected(spec, out, quick=True)
    assert [p.name for p in written] == ["table.csv"]
    assert (spec.expected_dir(True) / "table.csv").read_text() == (out / "table.csv").read_text()

    again = reproduction.reproduce(spec, out, quick=True, seed=0, check=True)
    assert again.check.ok and again.check.cells_compared == 9
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["config"]["paper"] == "tiny-paper"
    assert manifest["check"]["passed"] is True
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".partial")]

    # The full mode has its own expected folder, so the quick copy does not satisfy it.
    full = reproduction.reproduce(spec, tmp_path / "full", quick=False, seed=0, check=True)
    assert not full.check.ok

    # A different seed moves the values by 0.1 %, far beyond rtol 1e-6: each cell is named.
    moved = reproduction.reproduce(spec, tmp_path / "seed1", quick=True, seed=1, check=True)
    assert [(m.row, m.column) for m in moved.check.mismatches] == [(1, "value"), (2, "value")]


def test_stale_expected_files_are_reported(tmp_path):
    spec = reproduction.load_paper(make_paper(tmp_path / "papers"))
    reproduction.reproduce(spec, tmp_path / "out", quick=True)
    reproduction.update_expected(spec, tmp_path / "out", quick=True)
    write(spec.expected_dir(True) / "old.csv", "a\n1\n")
    report = reproduction.check_outputs(spec, tmp_path / "out", quick=True)
    assert [m.file for m in report.mismatches] == ["old.csv"]
    reproduction.update_expected(spec, tmp_path / "out", quick=True)
    assert not (spec.expected_dir(True) / "old.csv").exists()


def test_a_run_that_misses_a_declared_file_fails_and_leaves_no_manifest(tmp_path):
    script = REPRODUCE_PY.replace('"table.csv"', '"other.csv"')
    spec = reproduction.load_paper(make_paper(tmp_path / "papers", script=script))
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="table.csv"):
        reproduction.reproduce(spec, out, quick=True)
    assert not (out / "manifest.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_a_crashing_run_leaves_the_previous_results_intact(tmp_path):
    spec = reproduction.load_paper(make_paper(tmp_path / "papers"))
    out = tmp_path / "out"
    reproduction.reproduce(spec, out, quick=True)
    before = (out / "table.csv").read_text()
    (spec.directory / "reproduce.py").write_text(
        "from pathlib import Path\n"
        "def reproduce(out_dir, *, quick, seed):\n"
        "    (Path(out_dir) / 'table.csv').write_text('half')\n"
        "    raise RuntimeError('killed')\n"
    )
    with pytest.raises(RuntimeError):
        reproduction.reproduce(spec, out, quick=True)
    assert (out / "table.csv").read_text() == before
    assert (out / "manifest.json").exists()


def test_quick_mode_must_exist(tmp_path):
    spec = reproduction.load_paper(make_paper(tmp_path, toml=PAPER_TOML.replace("quick = true", "quick = false")))
    with pytest.raises(ConfigError, match="no quick mode"):
        reproduction.reproduce(spec, tmp_path / "out", quick=True)


def test_reproduce_py_must_define_reproduce(tmp_path):
    spec = reproduction.load_paper(make_paper(tmp_path, script="def run():\n    pass\n"))
    with pytest.raises(ConfigError, match="must define reproduce"):
        reproduction.reproduce(spec, tmp_path / "out")


def test_same_paper_name_in_two_folders_loads_two_modules(tmp_path):
    a = reproduction.load_paper(make_paper(tmp_path / "one"))
    b = reproduction.load_paper(make_paper(tmp_path / "two", script=REPRODUCE_PY.replace('"x"', '"y"')))
    assert reproduction.load_reproduce_function(a).__module__ != reproduction.load_reproduce_function(b).__module__


# --- the command line ---------------------------------------------------------------


def test_cli_list_shows_each_paper(tmp_path, capsys):
    make_paper(tmp_path)
    assert cli(["papers", "list", "--papers-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for part in ("tiny-paper", "under a second", "negligible", "Nobody, A tiny paper", "Table 1", "yes"):
        assert part in out
    assert cli(["papers", "list", "--papers-dir", str(tmp_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "tiny-paper" and listed[0]["check"]["files"] == ["table.csv"]


def test_cli_reproduce_check_exit_codes_and_messages(tmp_path, capsys):
    papers = tmp_path / "papers"
    make_paper(papers)
    base = ["papers", "reproduce", "tiny-paper", "--quick", "--papers-dir", str(papers)]
    assert cli(base + ["--out", str(tmp_path / "a"), "--update-expected"]) == 0
    assert cli(base + ["--out", str(tmp_path / "b"), "--check"]) == 0
    assert "passed" in capsys.readouterr().out
    assert cli(base + ["--out", str(tmp_path / "c"), "--check", "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "table.csv row 1 (line 2) column 'value'" in out and "FAILED (2 differences)" in out


def test_cli_all_uses_one_folder_per_paper(tmp_path, capsys):
    papers = tmp_path / "papers"
    make_paper(papers, "first-paper")
    make_paper(papers, "second-paper", toml=PAPER_TOML.replace("quick = true", "quick = false"))
    assert cli(["papers", "reproduce", "--all", "--quick", "--papers-dir", str(papers), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "first-paper-quick" / "manifest.json").exists()
    assert not (tmp_path / "r" / "second-paper-quick").exists()
    assert "skipping second-paper: no quick mode" in capsys.readouterr().out


def test_cli_rejects_ambiguous_requests(tmp_path):
    make_paper(tmp_path)
    with pytest.raises(ConfigError, match="NAME or --all"):
        cli(["papers", "reproduce", "--papers-dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="NAME or --all"):
        cli(["papers", "reproduce", "tiny-paper", "--all", "--papers-dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="cannot be combined"):
        cli(["papers", "reproduce", "tiny-paper", "--check", "--update-expected", "--papers-dir", str(tmp_path)])


def test_default_out_dir_names():
    assert reproduction.default_out_dir("apple-threshold", True) == Path("results/papers/apple-threshold-quick")
    assert reproduction.default_out_dir("apple-threshold", False) == Path("results/papers/apple-threshold")


def test_a_broken_neighbour_does_not_block_one_paper(tmp_path):
    make_paper(tmp_path)
    make_paper(tmp_path, "broken-paper", toml="title = 1\n")
    assert reproduction.find_paper(tmp_path, "tiny-paper").name == "tiny-paper"
    with pytest.raises(ConfigError, match="broken-paper"):
        reproduction.discover_papers(tmp_path)
    with pytest.raises(ConfigError, match="available: broken-paper, tiny-paper"):
        reproduction.find_paper(tmp_path, "../" + tmp_path.name + "/tiny-paper")
