"""``--check``: a run's CSVs against the expected copies in ``expected/<mode>/``, cell by cell."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paper import PaperSpec, mode_name


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
