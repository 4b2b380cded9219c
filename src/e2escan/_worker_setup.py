"""Settings for the worker processes e2escan starts (hashing pools).

Importing this module configures the current process; it is the first module
the fork server preloads (see :mod:`e2escan.hashing._parallel`), so it runs
before numpy or any BLAS library is loaded there, and every worker forked from
the server inherits the result. It deliberately imports nothing heavy.

Two settings, both measured (``benchmarks/bench_hashing.py``):

* **One BLAS/OpenMP thread per worker.** A pool already puts one process on
  each core; a BLAS thread pool inside each worker only competes with the
  other workers (idle BLAS threads spin). Variables the user has set are kept.
* **glibc malloc thresholds.** A fresh process starts with a 128 KiB mmap
  threshold and trims the heap above 128 KiB, so decoding and hashing a
  256x256 image maps, zero-fills and unmaps buffers for every image: PDQ ran
  about 1.5x slower per image in a fresh worker than in a long-running
  process whose thresholds glibc had already raised. Fixing both thresholds
  at 32 MiB / 64 MiB (the top of glibc's own dynamic range) removes the
  difference. Only applied where the C library is glibc; elsewhere a no-op.
"""

from __future__ import annotations

import os
import platform
import sys

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def _tune_glibc_malloc() -> bool:
    """Fix glibc's mmap and trim thresholds; True if applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def configure_worker_process() -> dict[str, object]:
    """Apply the worker settings to this process; returns what was applied (for tests and logs)."""
    # BLAS libraries read their thread count once, when numpy loads them.
    before_numpy = "numpy" not in sys.modules
    threads = {}
    for name in THREAD_VARIABLES:
        threads[name] = os.environ.setdefault(name, "1")
    return {"threads": threads, "before_numpy": before_numpy, "glibc_malloc_tuned": _tune_glibc_malloc()}


APPLIED = configure_worker_process()
