"""Regenerating a paper: import its ``reproduce.py``, run it into a staging folder, publish, check.

A run first writes into a hidden staging folder beside the destination and
then moves every file into place with ``manifest.json`` last, so a folder
holding a ``manifest.json`` always holds a complete run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..results import atomic_write_bytes, peak_memory_bytes, write_manifest
from .check import CheckReport, check_outputs
from .paper import PAPER_FILE, PaperSpec, mode_name

DEFAULT_RESULTS_ROOT = Path("results") / "papers"

ReproduceFunction = Callable[..., None]


def load_reproduce_function(spec: PaperSpec) -> ReproduceFunction:
    """Import ``reproduce.py`` under a module name unique to its path and return its ``reproduce``."""
    script = spec.script
    if not script.is_file():
        raise ConfigError(f"{script}: file not found (every paper needs a reproduce.py)")
    digest = hashlib.sha256(str(script.resolve()).encode()).hexdigest()[:12]
    module_name = f"_e2escan_paper_{spec.name.replace('-', '_')}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, script)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"{script}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    function = getattr(module, "reproduce", None)
    if not callable(function):
        raise ConfigError(f"{script}: must define reproduce(out_dir, *, quick, seed)")
    return function


@dataclass(frozen=True)
class ReproductionRun:
    """What one regeneration did."""

    paper: PaperSpec
    out_dir: Path
    quick: bool
    seed: int
    wall_time_s: float
    peak_memory_bytes: int
    check: CheckReport | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "paper": self.paper.name,
            "mode": mode_name(self.quick),
            "seed": self.seed,
            "out_dir": str(self.out_dir),
            "wall_time_s": round(self.wall_time_s, 3),
            "peak_memory_bytes": self.peak_memory_bytes,
            "check": self.check.as_dict() if self.check else None,
        }


def default_out_dir(name: str, quick: bool) -> Path:
    """``results/papers/NAME`` or ``results/papers/NAME-quick``, relative to the working directory."""
    return DEFAULT_RESULTS_ROOT / (f"{name}-quick" if quick else name)


def _command(spec: PaperSpec, quick: bool, seed: int) -> str:
    return f"e2escan papers reproduce {spec.name}{' --quick' if quick else ''} --seed {seed}"


def _publish(staging: Path, out_dir: Path) -> None:
    """Move every staged file into ``out_dir``, the manifest last (its presence marks a complete run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.json"
    if manifest.exists():
        manifest.unlink()
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(staging) == Path("manifest.json"))
    for source in files:
        target = out_dir / source.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


def reproduce(
    spec: PaperSpec,
    out_dir: str | os.PathLike[str],
    *,
    quick: bool = False,
    seed: int = 0,
    check: bool = False,
) -> ReproductionRun:
    """Regenerate one paper into ``out_dir`` and, with ``check``, compare it with its expected CSVs.

    Files already in ``out_dir`` that the run does not produce are left alone.
    """
    if quick and not spec.quick:
        raise ConfigError(f"paper {spec.name!r} has no quick mode (its paper.toml sets quick = false)")
    function = load_reproduce_function(spec)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        started = time.perf_counter()
        function(staging, quick=quick, seed=seed)
        wall = time.perf_counter() - started
        missing = [name for name in spec.check.files if not (staging / name).is_file()]
        if missing:
            raise ConfigError(
                f"{spec.script}: reproduce() did not write {', '.join(missing)}, listed in [check].files of "
                f"{spec.directory / PAPER_FILE}"
            )
        report = check_outputs(spec, staging, quick=quick) if check else None
        own_manifest = staging / "manifest.json"
        extra: dict[str, Any] = {"paper_wall_time_s": round(wall, 3)}
        if report is not None:
            extra["check"] = report.as_dict()
        if own_manifest.is_file():
            try:
                extra["reproduce_manifest"] = json.loads(own_manifest.read_text(encoding="utf-8"))
            except ValueError:
                extra["reproduce_manifest"] = "unreadable"
        write_manifest(
            staging,
            command=_command(spec, quick, seed),
            seed=seed,
            config={"paper": spec.name, "mode": mode_name(quick), "title": spec.title, "source": spec.source},
            started=started,
            extra=extra,
        )
        _publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ReproductionRun(spec, out_dir, quick, seed, wall, peak_memory_bytes(), report)


def update_expected(spec: PaperSpec, out_dir: str | os.PathLike[str], *, quick: bool) -> list[Path]:
    """Copy the checked CSVs of a finished run into ``expected/<mode>/`` (for maintainers).

    Expected CSVs no longer listed in ``[check].files`` are removed, so the
    folder matches the paper description exactly.
    """
    out_dir = Path(out_dir)
    target = spec.expected_dir(quick)
    written = []
    for name in spec.check.files:
        source = out_dir / name
        if not source.is_file():
            raise ConfigError(f"{source}: not found; run the paper before updating its expected outputs")
        path = atomic_write_bytes(target / name, source.read_bytes())
        path.chmod(0o644)  # a source file of the checkout, not a private result
        written.append(path)
    for stale in target.glob("*.csv"):
        if stale.name not in spec.check.files:
            stale.unlink()
    return written
