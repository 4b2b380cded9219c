"""Reproduced figures and tables: discovery, regeneration and checking against expected outputs.

Each reproduction lives in ``papers/NAME/`` (NAME in kebab-case) in the source
checkout:

- ``paper.toml``: title, source, claim, whether a quick mode exists, the
  measured cost of a full run, and a ``[check]`` table naming the CSV files
  compared and their numeric tolerance (:mod:`.paper`);
- ``reproduce.py``: ``reproduce(out_dir, *, quick, seed)`` writes those CSVs
  (plus figures and ``summary.json``) into ``out_dir`` (run by :mod:`.run`);
- ``expected/quick/`` and ``expected/full/``: the CSVs a correct run produces
  (compared by :mod:`.check`), written by :func:`update_expected` from a real
  run, never by hand.
"""

from .check import CheckReport, Mismatch, check_outputs, compare_csv
from .paper import (
    PAPER_FILE,
    PAPERS_DIR_ENV,
    SCRIPT_FILE,
    CheckSpec,
    PaperFile,
    PaperSpec,
    discover_papers,
    find_paper,
    load_paper,
    locate_papers_dir,
    mode_name,
)
from .run import (
    DEFAULT_RESULTS_ROOT,
    ReproduceFunction,
    ReproductionRun,
    default_out_dir,
    load_reproduce_function,
    reproduce,
    update_expected,
)

__all__ = [
    "DEFAULT_RESULTS_ROOT", "PAPERS_DIR_ENV", "PAPER_FILE", "SCRIPT_FILE", "CheckReport", "CheckSpec", "Mismatch",
    "PaperFile", "PaperSpec", "ReproduceFunction", "ReproductionRun", "check_outputs", "compare_csv",
    "default_out_dir", "discover_papers", "find_paper", "load_paper", "load_reproduce_function", "locate_papers_dir",
    "mode_name", "reproduce", "update_expected",
]
