"""Every id in ``tests/slow_tests.txt`` names a test that exists, so a rename cannot silently un-mark it."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def test_every_listed_slow_test_exists() -> None:
    missing = []
    for line in (TESTS / "slow_tests.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        path, _, name = line.strip().partition("::")
        name = name.split("[", 1)[0]
        file = TESTS.parent / path
        defined = set()
        if file.is_file():
            defined = {n.name for n in ast.walk(ast.parse(file.read_text())) if isinstance(n, ast.FunctionDef)}
        if name not in defined:
            missing.append(line)
    assert not missing, missing
