"""Suite-wide configuration: the ``slow`` marker for tests measured above about a second.

``pytest -m "not slow" -q -n 2`` is the fast lane while editing; the README's
command (the full suite) runs everything. Tests that carry
``@pytest.mark.slow`` in their own module are slow as well; the node ids below
were measured with ``pytest --durations=0`` (call or fixture setup above one
second, or half a second, on 2 cores) and are listed here rather than decorated one by one. An id
without a ``[parameter]`` part covers every parametrisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SLOW_FILE = Path(__file__).with_name("slow_tests.txt")


def _slow_ids() -> tuple[str, ...]:
    lines = _SLOW_FILE.read_text().splitlines() if _SLOW_FILE.is_file() else []
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = _slow_ids()
    for item in items:
        nodeid = item.nodeid
        base = nodeid.split("[", 1)[0]
        if nodeid in slow or base in slow:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def fake_protocol() -> Iterator[Any]:
    """The simulator tests' fake protocol (``sim_fakes``), registered as ``fake`` for one module.

    A scenario holds its protocol's typed parameters, built from the registry when the scenario is
    loaded, so a scenario naming ``fake`` needs it registered; the module's tests run it by passing
    ``protocol=sim_fakes.PROTOCOL``. Use with ``pytestmark = pytest.mark.usefixtures("fake_protocol")``.
    """
    import sim_fakes

    from e2escan.protocols import register, unregister

    register(sim_fakes.PROTOCOL)
    yield sim_fakes.PROTOCOL
    unregister(sim_fakes.PROTOCOL.name)
