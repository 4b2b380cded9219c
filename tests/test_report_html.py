"""report.html: written by run, sweep, compare and papers reproduce; self-contained; rendered by headless Chromium.

The browser test needs Debian's ``chromium``. ``.ci/run`` installs it and sets
``E2ESCAN_REQUIRE_BROWSER=1``, so in CI a missing browser fails the test
instead of skipping it; elsewhere it is skipped when the browser is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from e2escan.cli import main

pytestmark = pytest.mark.slow  # outside the fast lane: pytest -m 'not slow'

TINY = ["--set", "days=1", "--set", "population.accounts=30", "--set", "content.image_size=64",
        "--set", "content.database_size=10", "--set", "traffic.popular_images=5", "--no-cache"]
SWEEP = """name = "tiny"
scenario = "quickstart"
[set]
days = 1
"population.accounts" = 20
"content.image_size" = 64
"content.database_size" = 10
"traffic.popular_images" = 5
[grid]
"protocol.params.threshold" = [1, 2]
"""


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reports")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["run", *TINY, "--out", "run"]) == 0
        assert main(["run", *TINY, "--set", "protocol.params.threshold=5", "--out", "run5"]) == 0
        assert main(["compare", "run", "run5", "--out", "cmp"]) == 0
        (root / "tiny.toml").write_text(SWEEP)
        assert main(["sweep", "tiny.toml", "--workers", "0", "--out", "sweep"]) == 0
        assert main(["papers", "reproduce", "apple-threshold", "--quick", "--out", "paper"]) == 0
    finally:
        os.chdir(cwd)
    return {k: root / k for k in ("run", "cmp", "sweep", "paper")}


@pytest.mark.parametrize("kind", ["run", "cmp", "sweep", "paper"])
def test_report_is_written_and_self_contained(folders, kind):
    html = (folders[kind] / "report.html").read_text()
    assert "<table" in html and "How to read it" in html
    assert html.count("<svg") == len(list(folders[kind].glob("*.svg"))) > 0
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert not re.search(r'(src|href)\s*=\s*"https?:', html), "no network references"
    if kind == "run":
        assert "Headline measures" in html and "offenders flagged" in html and "Provenance" in html
    if kind == "paper":
        assert "[F]" in html or "[A]" in html or "[S]" in html  # the paper's numbers with their source tags


def test_report_refuses_a_folder_that_holds_no_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "not a results folder" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(folders, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("E2ESCAN_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (E2ESCAN_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("chromium not installed (.ci/run installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    for kind in ("run", "sweep", "paper"):
        page = (folders[kind] / "report.html").resolve().as_uri()
        dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "<svg" in dom.stdout and "<table" in dom.stdout and "<td" in dom.stdout
        shot = tmp_path / f"{kind}.png"
        run = subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,2000", page],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
        pixels = np.asarray(Image.open(shot).convert("RGB"))
        # Rendered text, tables and plots: many distinct colours and a page that is not all background.
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
        assert (pixels.mean(axis=2) < 200).mean() > 0.01
