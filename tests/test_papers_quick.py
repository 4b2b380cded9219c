"""Every reproduced figure or table in papers/, in quick mode, matches its expected CSVs.

The equivalent of ``e2escan papers reproduce NAME --quick --check`` for each
``papers/*/paper.toml``; a new paper is picked up without editing this file.
Folders without a paper.toml (work in progress) are not papers yet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2escan import reproduction
from e2escan.errors import ConfigError

pytestmark = pytest.mark.slow  # outside the fast lane: pytest -m 'not slow'

PAPERS_DIR = Path(__file__).resolve().parents[1] / "papers"
PAPER_FOLDERS = sorted(p.parent for p in PAPERS_DIR.glob("*/paper.toml")) if PAPERS_DIR.is_dir() else []


@pytest.mark.parametrize("folder", PAPER_FOLDERS, ids=[p.name for p in PAPER_FOLDERS])
def test_quick_mode_reproduces_expected_outputs(folder, tmp_path):
    spec = reproduction.load_paper(folder)  # a malformed paper.toml fails here, for this paper only
    if not spec.quick:
        pytest.skip(f"{spec.name} has no quick mode")
    run = reproduction.reproduce(spec, tmp_path / f"{spec.name}-quick", quick=True, seed=0, check=True)
    assert run.check is not None
    if not run.check.ok:
        listed = "\n".join("  " + m.describe() for m in run.check.mismatches[:50])
        more = len(run.check.mismatches) - 50
        pytest.fail(
            f"{spec.name} differs from {run.check.expected_dir}:\n{listed}" + (f"\n  ... and {more} more" if more > 0 else ""),
            pytrace=False,
        )
    assert (run.out_dir / "manifest.json").is_file()


def test_discovery_agrees_with_this_file():
    """discover_papers finds exactly the folders parametrised above (none hidden, none extra)."""
    if not PAPER_FOLDERS:
        pytest.skip("no papers yet")
    try:
        found = [spec.directory for spec in reproduction.discover_papers(PAPERS_DIR)]
    except ConfigError as exc:  # reported per paper by the test above
        pytest.skip(f"a paper.toml is invalid: {exc}")
    assert [p.name for p in found] == [p.name for p in PAPER_FOLDERS if not p.name.startswith((".", "_"))]
