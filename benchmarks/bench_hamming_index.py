"""Radius-query throughput of ``HammingIndex`` on 1,000,000 256-bit (PDQ-sized) hashes.

Compared in one process on the same database and queries:

* ``naive``: a plain numpy loop, ``np.bitwise_count(db ^ q).sum(axis=1) <= r``
  per query over the packed bytes (the obvious implementation);
* ``faiss``: ``faiss.IndexBinaryFlat.range_search`` (exhaustive, SIMD popcount,
  multi-threaded), batched;
* ``HammingIndex(mode="scan")``: our column-wise exhaustive scan;
* ``HammingIndex()`` (``mode="auto"``, the default): multi-index hashing
  with a per-query fallback to the scan.

Query sets (radius 31, PDQ's recommended match threshold):

* ``near``: copies of database entries with 6% of their bits flipped (about
  15 bits; every query has a true match), the case a matcher is built for;
* ``random``: uniformly random hashes (almost never a match within 31 bits),
  the case of innocent traffic;
* ``mixed``: half and half.

For random 256-bit data the database looks the same to every query, so the
numbers say little about real hash lists with clusters; multi-index hashing
slows down when substring buckets are crowded (``auto`` then scans).
All answers are checked against each other before timing is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from e2escan.hashing import HammingIndex, HashArray


def near_copies(db: HashArray, n: int, flip: float, rng: np.random.Generator) -> HashArray:
    bits = np.unpackbits(db.data[rng.integers(0, len(db), n)], axis=1)
    bits ^= (rng.random(bits.shape) < flip).astype(np.uint8)
    return HashArray(np.packbits(bits, axis=1))


def naive_radius(db: np.ndarray, queries: np.ndarray, r: int) -> list[np.ndarray]:
    return [np.flatnonzero(np.bitwise_count(db ^ q).sum(axis=1) <= r) for q in queries]


def timed(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database size")
    parser.add_argument("--queries", type=int, default=1000, help="queries per set")
    parser.add_argument("--naive-queries", type=int, default=30, help="queries timed with the naive loop (slow)")
    parser.add_argument("--radius", type=int, default=31)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        import faiss
    except ImportError:
        faiss = None
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}, Python {platform.python_version()}, numpy {np.__version__}, "
          f"faiss {faiss.__version__ if faiss else 'not installed'}")
    rng = np.random.default_rng(args.seed)
    db = HashArray.random(args.n, 256, rng)
    sets = {
        "near": near_copies(db, args.queries, 0.06, rng),
        "random": HashArray.random(args.queries, 256, rng),
    }
    half = args.queries // 2
    sets["mixed"] = HashArray.concatenate([sets["near"][:half], sets["random"][: args.queries - half]])

    t0 = time.perf_counter()
    auto = HammingIndex(db)
    t_build_auto = time.perf_counter() - t0
    t0 = time.perf_counter()
    scan = HammingIndex(db, "scan")
    t_build_scan = time.perf_counter() - t0
    print(f"database: {args.n:,} random 256-bit hashes; radius {args.radius}; {args.queries} queries per set")
    print(f"build: auto {t_build_auto:.2f} s ({auto.nbytes / 1e6:.0f} MB, {auto.m} substrings of "
          f"{auto.substring_bits} bits), scan {t_build_scan:.2f} s ({scan.nbytes / 1e6:.0f} MB)")
    fidx = None
    if faiss is not None:
        t0 = time.perf_counter()
        fidx = faiss.IndexBinaryFlat(256)
        fidx.add(np.ascontiguousarray(db.data))
        print(f"faiss IndexBinaryFlat build {time.perf_counter() - t0:.2f} s, {faiss.omp_get_max_threads()} threads")

    header = f"{'set':7} {'backend':14} {'ms/query':>9} {'vs faiss':>9} {'matches':>8}  notes"
    print("\n" + header + "\n" + "-" * len(header))
    r = args.radius
    for name, queries in sets.items():
        q = np.ascontiguousarray(queries.data)
        rows = []
        t_auto, res_auto = timed(lambda qs=queries: auto.radius(qs, r), args.repeat)
        t_scan, res_scan = timed(lambda qs=queries[:100]: scan.radius(qs, r), 1)
        sub = q[: args.naive_queries]
        t_naive, res_naive = timed(lambda qs=sub: naive_radius(db.data, qs, r), 1)
        for j in range(sub.shape[0]):
            assert np.array_equal(res_naive[j], res_auto[j]), (name, j)
        for j in range(min(100, len(queries))):
            assert np.array_equal(res_scan[j], res_auto[j]), (name, j)
        ms_auto = 1e3 * t_auto / len(queries)
        ms_scan = 1e3 * t_scan / min(100, len(queries))
        ms_naive = 1e3 * t_naive / sub.shape[0]
        ms_faiss = None
        if fidx is not None:
            t_f, (lims, _, ids) = timed(lambda qs=q: fidx.range_search(qs, r + 1), args.repeat)
            for j in range(len(queries)):
                assert np.array_equal(np.sort(ids[lims[j]:lims[j + 1]]), res_auto[j]), (name, j)
            ms_faiss = 1e3 * t_f / len(queries)
            # One thread too: OpenMP teams suffer most when other processes share the cores.
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            t_f1, _ = timed(lambda qs=q: fidx.range_search(qs, r + 1), args.repeat)
            faiss.omp_set_num_threads(threads)
        stats = res_auto.stats
        matches = int(res_auto.counts.sum())
        if ms_faiss is not None:
            rows.append(("faiss flat", ms_faiss, f"batched range_search, {threads} threads"))
            rows.append(("faiss 1 thread", 1e3 * t_f1 / len(queries), "batched range_search, 1 thread"))
        note = (f"{stats['multi_queries']} multi, {stats['scan_queries']} scanned, "
                f"{stats['candidates'] / len(queries):,.0f} candidates/query")
        rows.append(("auto (default)", ms_auto, note))
        rows.append(("scan", ms_scan, "first 100 queries"))
        rows.append(("naive numpy", ms_naive, f"first {sub.shape[0]} queries"))
        for backend, ms, note in rows:
            if ms is None:
                print(f"{name:7} {backend:14} {'n/a':>9}")
                continue
            ratio = f"{ms / ms_faiss:8.2f}x" if ms_faiss else "      n/a"
            print(f"{name:7} {backend:14} {ms:9.3f} {ratio} {matches if backend != 'naive numpy' else '':>8}  {note}")
        print(f"{name:7} ratios: naive/auto {ms_naive / ms_auto:.1f}x, scan/auto {ms_scan / ms_auto:.1f}x"
              + (f", auto/faiss {ms_auto / ms_faiss:.2f}x (target <= 1.5x)" if ms_faiss else ""))

    k = 10
    t_knn, _ = timed(lambda: auto.knn(sets["near"], k), 1)
    print(f"\nknn k={k} on 'near' queries (auto): {1e3 * t_knn / len(sets['near']):.3f} ms/query")
    if fidx is not None:
        t_fk, _ = timed(lambda: fidx.search(np.ascontiguousarray(sets["near"].data), k), 1)
        print(f"faiss search k={k} (ties in arbitrary order): {1e3 * t_fk / len(sets['near']):.3f} ms/query")


if __name__ == "__main__":
    main()
