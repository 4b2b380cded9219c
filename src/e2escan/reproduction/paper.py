"""``paper.toml``: what a reproduced figure or table is, and where the reproductions live.

A paper folder ``papers/NAME/`` (NAME in kebab-case) holds a ``paper.toml``
read into :class:`PaperSpec` by the shared declarative loader
(:mod:`e2escan.config`): every key is required except ``[check].note``,
unknown keys are refused, and every error is one line naming the file, the
dotted key, the value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import finite, load, nonempty, option, to_dict
from ..errors import ConfigError

PAPERS_DIR_ENV = "E2ESCAN_PAPERS_DIR"
PAPER_FILE = "paper.toml"
SCRIPT_FILE = "reproduce.py"

_NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_CSV_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.csv$")


def _csv_files(files: tuple[str, ...]) -> str | None:
    """A ``check``: a non-empty list of distinct plain CSV file names (no folders)."""
    bad = next((f for f in files if not _CSV_NAME_PATTERN.match(f)), None)
    if not files or bad is not None:
        return "empty" if not files else f"{bad!r} is not a plain file name ending in .csv"
    return "a file listed twice" if len(set(files)) != len(files) else None


@dataclass(frozen=True)
class CheckSpec:
    """Which CSV files ``--check`` compares, and the tolerance for numeric cells.

    A numeric cell passes when ``|got - expected| <= atol + rtol * |expected|``
    (NaN matches NaN, infinities match only themselves); any other cell must
    match the expected text exactly.
    """

    files: tuple[str, ...] = option(doc="the CSV files compared", check=_csv_files,
                                    accepts='a non-empty list of distinct plain CSV file names, like ["table.csv"]')
    rtol: float = option(doc="relative tolerance of numeric cells", range=(0.0, None), check=finite,
                         accepts="a finite number at least 0")
    atol: float = option(doc="absolute tolerance of numeric cells", range=(0.0, None), check=finite,
                         accepts="a finite number at least 0")
    note: str = option("", doc="why the tolerance is what it is")


@dataclass(frozen=True)
class PaperFile:
    """What ``paper.toml`` holds."""

    title: str = option(doc="the figure or table reproduced", check=nonempty, accepts="a non-empty string")
    source: str = option(doc="the paper, by title, authors, venue and page", check=nonempty,
                         accepts="a non-empty string")
    claim: str = option(doc="the claim the figure or table supports", check=nonempty, accepts="a non-empty string")
    quick: bool = option(doc="whether a quick mode exists (what the test suite runs)")
    full_runtime: str = option(doc="measured wall time of a full run", check=nonempty, accepts="a non-empty string")
    full_memory: str = option(doc="measured peak memory of a full run", check=nonempty, accepts="a non-empty string")
    check: CheckSpec = option(doc="what --check compares")


@dataclass(frozen=True)
class PaperSpec(PaperFile):
    """One reproduced figure or table: its folder and its ``paper.toml``."""

    name: str = option(doc="the folder's name (kebab-case)")
    directory: Path = option(doc="the paper's folder")

    @property
    def script(self) -> Path:
        return self.directory / SCRIPT_FILE

    def expected_dir(self, quick: bool) -> Path:
        return self.directory / "expected" / mode_name(quick)

    def as_dict(self) -> dict[str, Any]:
        file_fields = {f.name: to_dict(getattr(self, f.name)) for f in dataclasses.fields(PaperFile)}
        return {"name": self.name, **file_fields}


def mode_name(quick: bool) -> str:
    return "quick" if quick else "full"


def locate_papers_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The ``papers/`` folder: ``override``, else ``$E2ESCAN_PAPERS_DIR``, else the source checkout's.

    The package is meant to be installed editable from a checkout, whose
    ``papers/`` sits three levels above ``src/e2escan/reproduction/``.
    """
    if override is not None:
        candidate, origin = Path(override), "--papers-dir"
    elif os.environ.get(PAPERS_DIR_ENV):
        candidate, origin = Path(os.environ[PAPERS_DIR_ENV]), f"${PAPERS_DIR_ENV}"
    else:
        candidate = Path(__file__).resolve().parents[3] / "papers"  # src/e2escan/reproduction/paper.py -> checkout
        origin = "the source checkout next to the installed package"
    if not candidate.is_dir():
        raise ConfigError(
            f"papers folder {candidate} (from {origin}) does not exist; run from a source checkout "
            f"installed with 'pip install -e .', or pass --papers-dir DIR or set {PAPERS_DIR_ENV}"
        )
    return candidate


def load_paper(directory: str | os.PathLike[str]) -> PaperSpec:
    """Read and validate ``directory/paper.toml``; every problem names the file, the key and the value."""
    directory = Path(directory)
    if not _NAME_PATTERN.match(directory.name):
        raise ConfigError(f"{directory}: a paper folder name must be kebab-case (like 'apple-threshold'), "
                          f"got {directory.name!r}")
    paper = load(PaperFile, directory / PAPER_FILE)
    fields = {f.name: getattr(paper, f.name) for f in dataclasses.fields(PaperFile)}
    return PaperSpec(name=directory.name, directory=directory, **fields)


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
