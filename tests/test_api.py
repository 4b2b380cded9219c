"""The Python API: the README's snippet runs as written; run writes nothing without out=; load reads a folder back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import e2escan

pytestmark = pytest.mark.slow  # outside the fast lane: pytest -m 'not slow'

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet() -> str:
    text = README.read_text()
    section = text[text.index("## From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_snippet_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_snippet(), "README.md (From Python)", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out
    assert "offenders flagged:" in printed and "quickstart: protocol tpsi-ad (threshold=2)" in printed
    assert set(namespace["figures"]) >= {"matches_per_account", "daily_funnel"}
    assert {"metrics", "daily", "leakage", "costs", "histogram", "accounts"} <= set(namespace["tables"])
    assert list(tmp_path.iterdir()) == []  # nothing written without out=


def test_run_with_out_writes_the_cli_folder_and_load_reads_it_back(tmp_path):
    small = {"days": 1, "population.accounts": 30}
    in_memory = e2escan.run("quickstart", set=small)
    written = e2escan.run("quickstart", set=small, out=tmp_path / "r")
    assert (tmp_path / "r" / "summary.json").is_file() and (tmp_path / "r" / "runs" / "rep-000").is_dir()
    again = e2escan.load(tmp_path / "r")
    for section in ("per_image", "accounts", "review"):
        assert again.metrics.to_dict()[section] == written.metrics.to_dict()[section] == in_memory.metrics.to_dict()[section]
    assert again.tables()["accounts"].shape == in_memory.tables()["accounts"].shape
    with pytest.raises(e2escan.ConfigError, match="different run"):
        e2escan.run("quickstart", set={**small, "seed": 5}, out=tmp_path / "r")
    with pytest.raises(e2escan.ConfigError, match="not an `e2escan run` results folder"):
        e2escan.load(tmp_path)
