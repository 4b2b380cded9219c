"""Ordered, bounded-memory parallel map over worker processes."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from ..errors import ConfigError

T = TypeVar("T")


def resolve_workers(workers: int | None) -> int:
    """``None`` means every core; otherwise a positive int."""
    if workers is None:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive int or None (all cores), got {workers!r}")
    return workers


# Imported once by the fork server, in this order, so every later worker starts
# with them loaded. The first configures the process before numpy is imported;
# scipy.fftpack is what imagehash's pHash imports on its first call (about 0.1 s
# per worker otherwise). The fork server skips a module that fails to import.
_PRELOAD = ["e2escan._worker_setup", "e2escan.hashing.batch", "e2escan.hashing.evaluation", "scipy.fftpack"]


def _init_worker() -> None:
    """Pool initializer: applies :mod:`e2escan._worker_setup` (already done under forkserver)."""
    import e2escan._worker_setup  # noqa: F401  (configures the process on import)


def worker_settings() -> dict[str, object] | None:
    """What :mod:`e2escan._worker_setup` applied in the calling process; None if it was never imported."""
    module = sys.modules.get("e2escan._worker_setup")
    return None if module is None else module.APPLIED


def start_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers are configured for CPU-bound hashing (one BLAS thread, tuned malloc)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=process_context(), initializer=_init_worker)


def process_context() -> multiprocessing.context.BaseContext:
    """Start method for worker pools: ``forkserver`` where available, else ``spawn``.

    Plain ``fork`` would start faster but is unsafe in a process that runs
    threads (progress bars, thread pools, dask), so it is not used. Scripts
    that start pools need the usual ``if __name__ == "__main__":`` guard.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)  # no effect once the server runs
        return ctx
    return multiprocessing.get_context("spawn")


def imap_ordered(fn: Callable[..., T], tasks: Iterable[tuple[Any, ...]], workers: int) -> Iterator[T]:
    """``fn(*task)`` for each task, in input order, on ``workers`` processes.

    At most ``2 * workers`` tasks are submitted ahead of the consumer, so the
    input is read lazily and memory stays bounded. ``workers == 1`` runs in
    this process (no pickling). ``fn`` and the tasks must be picklable.
    """
    if workers == 1:
        for task in tasks:
            yield fn(*task)
        return
    with start_pool(workers) as pool:
        pending: deque[Future[T]] = deque()
        for task in tasks:
            pending.append(pool.submit(fn, *task))
            while len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
