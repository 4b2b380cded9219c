"""Overhead of ``hash_many`` over calling imagehash / pdqhash directly, and its multi-core speed-up.

Measured in one process on the same images:

* ``direct``: a plain loop calling the library (``imagehash.phash(img)``,
  ``pdqhash.compute(np.asarray(img.convert("RGB")))``, ...) and keeping its
  result, the least any wrapper can cost;
* ``hash_many(workers=1)``: our path, which also packs the bits into a
  ``HashArray``. Target: at most 1.05x ``direct``;
* ``hash_many(workers=N)`` on image files (each worker decodes its own files,
  as for a directory corpus) against the same one-core loop that decodes and
  hashes. Target: close to N times faster, pool start-up included;
* the same loop inside one pool worker against this process: what a worker
  process costs per image by itself (1.5x for PDQ before workers got
  :mod:`e2escan._worker_setup`; run against an older version with
  ``PYTHONPATH=<worktree>/src`` to see it).

Timings are the best of ``--repeat`` interleaved runs, which filters out
interference from other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import imagehash
import numpy as np
import pdqhash

from e2escan.hashing import get_hasher, hash_many
from e2escan.images import load_image, synthetic_corpus

DIRECT: dict[str, Callable] = {
    "ahash": imagehash.average_hash,
    "dhash": imagehash.dhash,
    "phash": imagehash.phash,
    "whash": imagehash.whash,
    "pdq": lambda img: pdqhash.compute(np.asarray(img.convert("RGB"))),
}


def best_of(repeat: int, *fns: Callable[[], object]) -> list[float]:
    """Best wall time of each function over ``repeat`` interleaved rounds."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def parallel_ceiling(workers: int, n: int = 3_000_000, rounds: int = 3) -> float:
    """Speed-up of ``workers`` processes on pure CPU work (no I/O, no pickling), measured now.

    On a shared machine other processes take cores; this is the best any
    parallel code could do at the moment, so hashing speed-ups are read against it.
    """
    from concurrent.futures import ProcessPoolExecutor

    from e2escan.hashing._parallel import process_context

    with ProcessPoolExecutor(workers, mp_context=process_context()) as pool:
        list(pool.map(_spin, [1000] * workers))  # start the workers before timing
        serial = parallel = float("inf")
        for _ in range(rounds):  # best of each, as for the hashing timings
            t0 = time.perf_counter()
            _spin(n * workers)
            serial = min(serial, time.perf_counter() - t0)
            t0 = time.perf_counter()
            list(pool.map(_spin, [n] * workers))
            parallel = min(parallel, time.perf_counter() - t0)
    return serial / parallel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="in-memory images for the overhead test")
    parser.add_argument("--files", type=int, default=600, help="image files for the multi-core test")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hashers", default=",".join(DIRECT))
    args = parser.parse_args()
    names = args.hashers.split(",")

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}")
    corpus = synthetic_corpus(max(args.images, args.files), seed=0, size=(args.size, args.size))
    images = [corpus.load(i) for i in range(args.images)]

    print(f"\n1) overhead on one core: {args.images} in-memory {args.size}x{args.size} RGB images, best of {args.repeat}")
    print(f"{'hasher':8} {'direct ms/img':>14} {'hash_many ms/img':>17} {'ratio':>7}")
    for name in names:
        direct, hasher = DIRECT[name], get_hasher(name)
        t_direct, t_ours = best_of(args.repeat, lambda f=direct: [f(im) for im in images],
                                   lambda h=hasher: hash_many(h, images, workers=1))  # fmt: skip
        n = len(images)
        print(f"{name:8} {1e3 * t_direct / n:14.3f} {1e3 * t_ours / n:17.3f} {t_ours / t_direct:6.3f}x")

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.files):
            paths.append(str(Path(tmp) / f"{i:05d}.png"))
            corpus.load(i).save(paths[-1])
        rounds = max(2, args.repeat // 2)
        ceiling = parallel_ceiling(args.workers)
        print(f"\n2) speed-up with {args.workers} worker processes: {args.files} PNG files decoded and hashed, "
              f"pool start-up included, best of {rounds}")
        print(f"   load average now {os.getloadavg()[0]:.2f}; a trivially parallel CPU loop gets {ceiling:.2f}x "
              f"from {args.workers} processes on this machine right now (the ceiling for any code)")
        print(f"{'hasher':8} {'1 core s':>9} {f'{args.workers} workers s':>12} {'speed-up':>9} {'of ceiling':>11}")
        for name in names:
            direct, hasher = DIRECT[name], get_hasher(name)
            t_one, t_many = best_of(rounds, lambda f=direct: [f(load_image(p)) for p in paths],
                                    lambda h=hasher: hash_many(h, paths, workers=args.workers))  # fmt: skip
            speedup = t_one / t_many
            print(f"{name:8} {t_one:9.2f} {t_many:12.2f} {speedup:8.2f}x {speedup / ceiling:10.0%}")

        print(f"\n3) one pool worker against this process, the same {args.files} files, one at a time, best of {rounds}:")
        print("   the per-image cost a worker process adds by itself (no competition for cores)")
        print(f"{'hasher':8} {'here ms/img':>12} {'worker ms/img':>14} {'ratio':>7}")
        for name in names:
            hasher = get_hasher(name)
            t_here = t_worker = float("inf")
            for _ in range(rounds):  # interleaved; the worker times its own loop, so start-up is excluded
                t_here = min(t_here, _timed_hash_files(hasher, paths))
                t_worker = min(t_worker, _in_one_worker(hasher, paths))
            n = len(paths)
            print(f"{name:8} {1e3 * t_here / n:12.3f} {1e3 * t_worker / n:14.3f} {t_worker / t_here:6.3f}x")


def _hash_files(hasher, paths):  # type: ignore[no-untyped-def]
    for p in paths:
        hasher.hash_packed(load_image(p))


def _timed_hash_files(hasher, paths) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    _hash_files(hasher, paths)
    return time.perf_counter() - t0


def _in_one_worker(hasher, paths) -> float:  # type: ignore[no-untyped-def]
    """The same loop, timed inside one worker of the pool ``hash_many`` uses (pool start-up excluded)."""
    from e2escan.hashing._parallel import imap_ordered

    (elapsed,) = imap_ordered(_timed_hash_files, [(hasher, paths)], 2)
    return elapsed


if __name__ == "__main__":  # worker processes re-import this module
    main()
