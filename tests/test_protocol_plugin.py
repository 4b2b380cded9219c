"""Protocols and hashers as plugins: a variant from a separate package, and ``register`` for a notebook.

The slow test builds ``tests/plugin_package`` (a tpsi-ad variant with three
cuckoo functions, with its own spec and one entry point) with pip into a
private target directory, so the suite's other workers never see it; runs
``e2escan protocols``, ``e2escan run --set protocol.name=...`` and ``e2escan
audit`` against it in subprocesses with that directory on ``PYTHONPATH``; and
removes it. Nothing inside e2escan names the variant.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from e2escan import hashing, protocols
from e2escan.errors import ConfigError, ProtocolError
from e2escan.hashing import AverageHasher
from e2escan.protocols import BUILT_IN, PROTOCOLS, get_protocol, register, unregister
from e2escan.protocols.tpsi_ad import TpsiAdProtocol

PACKAGE = Path(__file__).parent / "plugin_package"
TINY = ["--set", "days=1", "--set", "population.accounts=20", "--set", "content.image_size=64",
        "--set", "content.database_size=10", "--set", "traffic.popular_images=5", "--no-cache"]


class _Notebook(TpsiAdProtocol):
    name = "tpsi-ad-notebook"
    summary = "a variant registered from a session"


def test_register_makes_a_variant_available_everywhere_and_unregister_removes_it() -> None:
    try:
        instance = register(_Notebook)
        assert get_protocol("tpsi-ad-notebook") is instance and "tpsi-ad-notebook" in PROTOCOLS
        assert protocols.origin("tpsi-ad-notebook") == "registered"
        assert "tpsi-ad-notebook" not in BUILT_IN
        with pytest.raises(ProtocolError, match="already registered"):
            register(_Notebook)
        register(_Notebook, replace=True)
    finally:
        unregister("tpsi-ad-notebook")
    assert "tpsi-ad-notebook" not in PROTOCOLS


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"name": "Bad Name"}, "kebab-case"),
        ({"name": "tpsi-ad"}, "already registered \\(built-in\\)"),
        ({"name": "x-ok", "summary": None}, "summary"),
        ({"name": "x-ok", "Params": dict}, "Params must subclass ProtocolParams"),
        ({"name": "x-ok", "LEAKAGE": "everything"}, "LEAKAGE must be a LeakageProfile"),
    ],
)
def test_register_refuses_an_incomplete_protocol(attrs: dict, message: str) -> None:
    cls = type("Broken", (TpsiAdProtocol,), attrs)
    with pytest.raises(ProtocolError, match=message):
        register(cls)
    assert set(PROTOCOLS) == set(BUILT_IN)


def test_a_built_in_cannot_be_replaced_or_unregistered() -> None:
    with pytest.raises(ProtocolError, match="already registered"):
        register(TpsiAdProtocol, replace=True)
    with pytest.raises(ProtocolError, match="not a registered plugin"):
        unregister("tpsi-ad")


def _e2escan(args: list[str], pythonpath: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, "-m", "e2escan", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=900, check=False)


@pytest.mark.slow
def test_a_variant_in_a_separate_package_is_listed_run_and_audited(tmp_path: Path) -> None:
    source = tmp_path / "src-copy"
    shutil.copytree(PACKAGE, source)  # pip builds in the source tree; keep the checked-in copy clean
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert install.returncode == 0, install.stderr
    try:
        listed = _e2escan(["protocols"], target, tmp_path)
        assert listed.returncode == 0, listed.stderr
        line = next(row for row in listed.stdout.splitlines() if row.startswith("tpsi-ad-three-hash"))
        assert "[plugin e2escan-demo-variant]" in line
        hashers = _e2escan(["hashers"], target, tmp_path)
        assert hashers.returncode == 0, hashers.stderr
        line = next(row for row in hashers.stdout.splitlines() if row.startswith("ahash-16"))
        assert "256 bits" in line and "[plugin e2escan-demo-variant]" in line
        run = _e2escan(["run", *TINY, "--set", "protocol.name=tpsi-ad-three-hash", "--set", "hasher.name=ahash-16",
                        "--out", "run"], target, tmp_path)
        assert run.returncode == 0, run.stderr
        scenario = (tmp_path / "run" / "scenario.toml").read_text()
        assert '"tpsi-ad-three-hash"' in scenario and '"ahash-16"' in scenario
        audit = _e2escan(["audit", "tpsi-ad-three-hash", "--vouchers", "500", "--permutations", "19999",
                          "--alpha", "0.0001", "--min-share", "0.5"], target, tmp_path)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        # Without the package on the path the name is unknown again: nothing was installed into e2escan.
        gone = _e2escan(["run", *TINY, "--set", "protocol.name=tpsi-ad-three-hash", "--out", "run2"], tmp_path, tmp_path)
        assert gone.returncode != 0 and "tpsi-ad-three-hash" in gone.stderr
    finally:
        shutil.rmtree(target)
    assert not target.exists()


def test_a_broken_plugin_is_skipped_with_one_warning(tmp_path: Path) -> None:
    """An entry point that fails to import: a warning naming it, and the built-ins still load."""
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[e2escan.protocols]\nbroken = no_such_module_xyz:Thing\n")
    probe = subprocess.run(
        [sys.executable, "-W", "always", "-c", "from e2escan.protocols import PROTOCOLS; print(len(PROTOCOLS))"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120, check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(len(BUILT_IN))
    assert "protocol plugin 'broken'" in probe.stderr and "broken-plugin" in probe.stderr


def test_register_a_hasher_and_refuse_broken_ones() -> None:
    from dataclasses import dataclass
    from typing import ClassVar

    @dataclass(frozen=True)
    class Wide(AverageHasher):
        name: ClassVar[str] = "ahash-wide"
        hash_size: int = 16

    try:
        hashing.register(Wide)
        assert hashing.get_hasher("ahash-wide").bits == 256 and hashing.hasher_origin("ahash-wide") == "registered"
        with pytest.raises(ConfigError, match="already registered"):
            hashing.register(Wide)
    finally:
        hashing.unregister("ahash-wide")
    assert "ahash-wide" not in hashing.HASHERS
    with pytest.raises(ConfigError, match="already registered \\(built-in\\)"):
        hashing.register(AverageHasher, replace=True)
    with pytest.raises(ConfigError, match="dataclass"):
        hashing.register(int)  # type: ignore[arg-type]

    @dataclass(frozen=True)
    class Odd(AverageHasher):
        name: ClassVar[str] = "ahash-odd"
        hash_size: int = 3

    with pytest.raises(ConfigError, match="defaults fails|multiple of 8"):
        hashing.register(Odd)
    assert set(hashing.HASHERS) == set(hashing.BUILT_IN_HASHERS)
