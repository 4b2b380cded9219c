"""Reproduced figures and tables: discovery, regeneration and checking against expected outputs.

Each reproduction lives in ``papers/NAME/`` (NAME in kebab-case) in the source
checkout:

- ``paper.toml``: title, source, claim, whether a quick mode exists, the
  measured cost of a full run, and a ``[check]`` table naming the CSV files
  compared and their numeric tolerance;
- ``reproduce.py``: ``reproduce(out_dir, *, quick, seed)`` writes those CSVs
  (plus figures and ``summary.json``) into ``out_dir``;
- ``expected/quick/`` and ``expected/full/``: the CSVs a correct run produces,
  written by :func:`update_expected` from a real run, never by hand.

A run first writes into a hidden staging folder beside the destination and
then moves every file into place with ``manifest.json`` last, so a folder
holding a ``manifest.json`` always holds a complete run.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .results import atomic_write_bytes, peak_memory_bytes, write_manifest

PAPERS_DIR_ENV = "E2ESCAN_PAPERS_DIR"
PAPER_FILE = "paper.toml"
SCRIPT_FILE = "reproduce.py"
DEFAULT_RESULTS_ROOT = Path("results") / "papers"

_NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_CSV_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.csv$")
_PAPER_KEYS = {
    "title": str,
    "source": str,
    "claim": str,
    "quick": bool,
    "full_runtime": str,
    "full_memory": str,
    "check": dict,
}
_CHECK_REQUIRED = ("files", "rtol", "atol")
_CHECK_OPTIONAL = ("note",)

ReproduceFunction = Callable[..., None]


# --- paper descriptions --------------------------------------------------------


@dataclass(frozen=True)
class CheckSpec:
    """Which CSV files ``--check`` compares, and the tolerance for numeric cells.

    A numeric cell passes when ``|got - expected| <= atol + rtol * |expected|``
    (NaN matches NaN, infinities match only themselves); any other cell must
    match the expected text exactly.
    """

    files: tuple[str, ...]
    rtol: float
    atol: float
    note: str = ""


@dataclass(frozen=True)
class PaperSpec:
    """One reproduced figure or table, as described by its ``paper.toml``."""

    name: str
    directory: Path
    title: str
    source: str
    claim: str
    quick: bool
    full_runtime: str
    full_memory: str
    check: CheckSpec

    @property
    def script(self) -> Path:
        return self.directory / SCRIPT_FILE

    def expected_dir(self, quick: bool) -> Path:
        return self.directory / "expected" / mode_name(quick)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "claim": self.claim,
            "quick": self.quick,
            "full_runtime": self.full_runtime,
            "full_memory": self.full_memory,
            "check": {
                "files": list(self.check.files),
                "rtol": self.check.rtol,
                "atol": self.check.atol,
                "note": self.check.note,
            },
        }


def mode_name(quick: bool) -> str:
    return "quick" if quick else "full"


def locate_papers_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The ``papers/`` folder: ``override``, else ``$E2ESCAN_PAPERS_DIR``, else the source checkout's.

    The package is meant to be installed editable from a checkout, whose
    ``papers/`` sits two levels above ``src/e2escan/``.
    """
    if override is not None:
        candidate, origin = Path(override), "--papers-dir"
    elif os.environ.get(PAPERS_DIR_ENV):
        candidate, origin = Path(os.environ[PAPERS_DIR_ENV]), f"${PAPERS_DIR_ENV}"
    else:
        candidate = Path(__file__).resolve().parents[2] / "papers"  # src/e2escan/reproduction.py -> checkout
        origin = "the source checkout next to the installed package"
    if not candidate.is_dir():
        raise ConfigError(
            f"papers folder {candidate} (from {origin}) does not exist; run from a source checkout "
            f"installed with 'pip install -e .', or pass --papers-dir DIR or set {PAPERS_DIR_ENV}"
        )
    return candidate


def _type_name(kind: type) -> str:
    return {str: "a string", bool: "true or false", dict: "a table", float: "a number"}[kind]


def _check_keys(table: dict[str, Any], allowed: Sequence[str], required: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; accepted keys are {', '.join(allowed)}")
    for key in required:
        if key not in table:
            raise ConfigError(f"{where}: missing key {key!r}")


def _tolerance(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: key {key!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: key {key!r} must be a finite number >= 0, got {value!r}")
    return value


def _parse_check(table: dict[str, Any], where: str) -> CheckSpec:
    where = f"{where} [check]"
    _check_keys(table, _CHECK_REQUIRED + _CHECK_OPTIONAL, _CHECK_REQUIRED, where)
    files = table["files"]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"{where}: key 'files' must be a non-empty list of CSV file names, got {files!r}")
    for name in files:
        if not _CSV_NAME_PATTERN.match(name):
            raise ConfigError(f"{where}: key 'files' entry {name!r} must be a plain file name ending in .csv")
    if len(set(files)) != len(files):
        raise ConfigError(f"{where}: key 'files' lists a file twice: {files!r}")
    note = table.get("note", "")
    if not isinstance(note, str):
        raise ConfigError(f"{where}: key 'note' must be a string, got {note!r}")
    return CheckSpec(
        files=tuple(files),
        rtol=_tolerance(table["rtol"], "rtol", where),
        atol=_tolerance(table["atol"], "atol", where),
        note=note,
    )


def load_paper(directory: str | os.PathLike[str]) -> PaperSpec:
    """Read and validate ``directory/paper.toml``; every problem names the file and the key."""
    directory = Path(directory)
    path = directory / PAPER_FILE
    name = directory.name
    if not _NAME_PATTERN.match(name):
        raise ConfigError(f"{directory}: a paper folder name must be kebab-case (like 'apple-threshold'), got {name!r}")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    _check_keys(data, tuple(_PAPER_KEYS), tuple(_PAPER_KEYS), str(path))
    for key, kind in _PAPER_KEYS.items():
        value = data[key]
        if not isinstance(value, kind):
            raise ConfigError(f"{path}: key {key!r} must be {_type_name(kind)}, got {value!r}")
        if kind is str and not value.strip():
            raise ConfigError(f"{path}: key {key!r} must not be empty")
    return PaperSpec(
        name=name,
        directory=directory,
        title=data["title"],
        source=data["source"],
        claim=data["claim"],
        quick=data["quick"],
        full_runtime=data["full_runtime"],
        full_memory=data["full_memory"],
        check=_parse_check(data["check"], str(path)),
    )


def discover_papers(papers_dir: str | os.PathLike[str]) -> list[PaperSpec]:
    """Every ``papers_dir/*/paper.toml``, validated, in name order.

    Folders without a ``paper.toml`` (work in progress) and hidden or
    underscore-prefixed folders are ignored.
    """
    found = []
    for child in sorted(Path(papers_dir).iterdir()):
        if not child.is_dir() or child.name.startswith((".", "_")):
            continue
        if (child / PAPER_FILE).is_file():
            found.append(load_paper(child))
    return found


def find_paper(papers_dir: str | os.PathLike[str], name: str) -> PaperSpec:
    """The paper ``name``, validating only its own ``paper.toml`` (a broken neighbour does not block it)."""
    papers_dir = Path(papers_dir)
    if _NAME_PATTERN.match(name) and (papers_dir / name / PAPER_FILE).is_file():
        return load_paper(papers_dir / name)
    known = sorted(p.parent.name for p in papers_dir.glob(f"*/{PAPER_FILE}") if not p.parent.name.startswith((".", "_")))
    raise ConfigError(f"no paper named {name!r} in {papers_dir}; available: {', '.join(known) or 'none'}")


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


# --- checking ------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """One way a produced CSV differs from its expected copy."""

    file: str
    problem: str
    row: int | None = None  # 1-based data row (the header is line 1, so row r is line r + 1)
    column: str | None = None
    expected: str | None = None
    got: str | None = None
    tolerance: str | None = None

    def describe(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row} (line {self.row + 1})"
        if self.column is not None:
            where += f" column {self.column!r}"
        detail = self.problem
        if self.expected is not None or self.got is not None:
            detail += f": expected {self.expected}, got {self.got}"
        if self.tolerance:
            detail += f" ({self.tolerance})"
        return f"{where}: {detail}"


@dataclass(frozen=True)
class CheckReport:
    """The outcome of comparing a run with ``expected/<mode>/``."""

    mode: str
    expected_dir: Path
    files_compared: tuple[str, ...]
    cells_compared: int
    mismatches: tuple[Mismatch, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "passed": self.ok,
            "files_compared": list(self.files_compared),
            "cells_compared": self.cells_compared,
            "mismatches": [m.describe() for m in self.mismatches],
        }


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _as_number(text: str) -> float | None:
    stripped = text.strip()
    if not stripped or "_" in stripped:
        return None
    try:
        return float(stripped)
    except ValueError:
        return None


def _compare_cell(expected: str, got: str, rtol: float, atol: float) -> tuple[str, str] | None:
    """None if the cells agree, else (problem, tolerance description)."""
    e, g = _as_number(expected), _as_number(got)
    if e is None or g is None:
        if expected == got:
            return None
        if e is not None or g is not None:
            return "one of the two is not a number", "a number must match a number"
        return "text differs", "text must match exactly"
    if math.isnan(e) or math.isnan(g):
        same = math.isnan(e) and math.isnan(g)
        return None if same else ("value differs", "NaN matches only NaN")
    if math.isinf(e) or math.isinf(g):
        return None if e == g else ("value differs", "infinities match only themselves")
    allowed = atol + rtol * abs(e)
    if abs(g - e) <= allowed:
        return None
    return "value differs", (
        f"difference {abs(g - e):.6g} exceeds tolerance {allowed:.6g} = atol {atol:g} + rtol {rtol:g} x |expected|"
    )


def compare_csv(
    produced: Path, expected: Path, *, file: str, rtol: float, atol: float
) -> tuple[list[Mismatch], int]:
    """Differences between two CSV files (header, row count, then every shared cell), and cells compared."""
    want, have = _read_csv(expected), _read_csv(produced)
    want_header, want_rows = (want[0], want[1:]) if want else ([], [])
    have_header, have_rows = (have[0], have[1:]) if have else ([], [])
    problems: list[Mismatch] = []
    for column in want_header:
        if column not in have_header:
            problems.append(Mismatch(file, "column missing from the output", column=column))
    for column in have_header:
        if column not in want_header:
            problems.append(Mismatch(file, "column not in the expected file", column=column))
    if len(want_rows) != len(have_rows):
        problems.append(
            Mismatch(file, "row count differs", expected=str(len(want_rows)), got=str(len(have_rows)))
        )
    shared = [(want_header.index(c), have_header.index(c), c) for c in want_header if c in have_header]
    cells = 0
    for number, (want_row, have_row) in enumerate(zip(want_rows, have_rows), start=1):
        ragged = False
        for row, header, label in ((want_row, want_header, "expected"), (have_row, have_header, "produced")):
            if len(row) != len(header):
                problems.append(
                    Mismatch(file, f"{label} row has {len(row)} fields but the header has {len(header)}", row=number)
                )
                ragged = True
        if ragged:
            continue
        for i_want, i_have, column in shared:
            cells += 1
            verdict = _compare_cell(want_row[i_want], have_row[i_have], rtol, atol)
            if verdict is not None:
                problem, tolerance = verdict
                problems.append(
                    Mismatch(
                        file,
                        problem,
                        row=number,
                        column=column,
                        expected=repr(want_row[i_want]),
                        got=repr(have_row[i_have]),
                        tolerance=tolerance,
                    )
                )
    return problems, cells


def check_outputs(spec: PaperSpec, out_dir: str | os.PathLike[str], *, quick: bool) -> CheckReport:
    """Compare the CSVs named in ``[check].files`` in ``out_dir`` with ``expected/<mode>/``."""
    out_dir = Path(out_dir)
    expected_dir = spec.expected_dir(quick)
    hint = f"maintainers: regenerate with 'e2escan papers reproduce {spec.name}{' --quick' if quick else ''} --update-expected'"
    problems: list[Mismatch] = []
    compared = []
    cells = 0
    for name in spec.check.files:
        produced, expected = out_dir / name, expected_dir / name
        if not expected.is_file():
            problems.append(Mismatch(name, f"no expected copy in {expected_dir} ({hint})"))
            continue
        if not produced.is_file():
            problems.append(Mismatch(name, f"not produced by {spec.script.name}"))
            continue
        found, n_cells = compare_csv(produced, expected, file=name, rtol=spec.check.rtol, atol=spec.check.atol)
        problems.extend(found)
        cells += n_cells
        compared.append(name)
    if expected_dir.is_dir():
        for stale in sorted(p.name for p in expected_dir.glob("*.csv")):
            if stale not in spec.check.files:
                problems.append(Mismatch(stale, f"in {expected_dir} but not listed in [check].files ({hint})"))
    return CheckReport(mode_name(quick), expected_dir, tuple(compared), cells, tuple(problems))


# --- running -------------------------------------------------------------------


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
