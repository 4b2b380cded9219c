"""Exact Hamming search over a :class:`HashArray`: radius and k-nearest queries.

Two exact backends, chosen per query by estimated cost (``mode="auto"``):

``scan``
    XOR and popcount of the query against every database hash. The database is
    kept column-wise (one contiguous ``uint64`` array per 64-bit word), so each
    step is one long vectorised numpy call; cost grows with ``len(db)``.

``multi`` (multi-index hashing, Norouzi, Punjani & Fleet, CVPR 2012 / TPAMI 2014)
    Each hash is cut into ``m`` disjoint substrings of ``w`` bits. If two
    hashes differ in at most ``r`` bits, then by the pigeonhole principle at
    least one substring differs in at most ``s = r // m`` bits. For each
    substring we keep the database sorted by substring value (a CSR table:
    ``offsets[value]`` .. ``offsets[value + 1]`` in an array of row ids), probe
    every value within ``s`` bits of the query's substring, and verify the union
    of the buckets exactly. Cost grows with the number of probes and candidates,
    not with ``len(db)``: for 1,000,000 random 256-bit hashes and ``r = 31``,
    ``w = 16`` gives ``m = 16``, ``s = 1``, 17 probes per substring and about
    4,000 candidates per query instead of 1,000,000 comparisons.

``auto`` estimates both costs per query, from the exact candidate counts of
its probes (cheap to get) and per-item costs measured on a 2-core x86-64
machine (class attributes, see ``benchmarks/bench_hamming_index.py``), and
sends each query to the cheaper backend. Every backend returns exactly the
brute-force answer (:func:`radius_brute_force`, :func:`knn_brute_force`, the
specification the tests compare against). ``mode="faiss"`` uses
``faiss.IndexBinaryFlat`` when faiss is installed.

Output order is deterministic: radius results list database indices in
ascending order; k-nearest results are sorted by (distance, index).

The brute-force oracle (:mod:`.brute_force`) and the CSR result type
(:mod:`.radius_result`) live in their own modules and are re-exported here;
the multi-index substring tables are in :mod:`.substring_tables`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, overload

import numpy as np

from ..errors import ConfigError, HashError
from ._popcount import HAS_BITWISE_COUNT, popcount_u8
from .brute_force import knn_brute_force, radius_brute_force
from .radius_result import RadiusResult, assemble_radius_result
from .substring_tables import SubstringTables, n_masks, substrings
from .types import HashArray, PerceptualHash

__all__ = [
    "MODES",
    "HammingIndex",
    "RadiusResult",
    "knn_brute_force",
    "radius_brute_force",
]

MODES = ("auto", "scan", "multi", "faiss")

# Bound on candidate ids materialised at once (keeps temporaries near 100 MB).
_CANDIDATES_PER_PASS = 500_000
# Bound on probes materialised at once.
_PROBES_PER_PASS = 4_000_000


# -- the index -------------------------------------------------------------------------------


class HammingIndex:
    """Exact Hamming radius and k-nearest-neighbour search over ``db``.

    ``mode``: ``"auto"`` (per-query choice by estimated cost), ``"scan"``,
    ``"multi"`` (multi-index hashing for every query) or ``"faiss"``.
    ``substring_bits`` (8, 16 or 32) sets the multi-index substring width;
    by default 16 when the database has at least 8,192 hashes and the hash
    length allows, else 8. ``threads`` splits query batches over threads
    (numpy releases the GIL in the heavy loops); default: every core.

    Memory: the database words twice (row-wise for gathers, column-wise for
    scans: ``2 * len(db) * bits / 8`` bytes) plus, when a multi-index is built
    (modes ``auto`` and ``multi``), ``4 * m`` bytes of row ids per hash, the
    offsets (``8 * m * 2**w`` bytes) and the distinct substring values: about
    160 MB in all for 1,000,000 256-bit hashes (``nbytes``).
    """

    # Per-item cost estimates in nanoseconds (2-core x86-64, numpy 2.x); used only to
    # choose a backend, never to decide a result.
    SCAN_NS_PER_WORD: float = 1.0  # one 64-bit word of one database hash, per query
    PROBE_NS: float = 25.0  # one bucket lookup
    CANDIDATE_NS: float = 40.0  # expanding and verifying one candidate
    QUERY_OVERHEAD_NS: float = 20_000.0  # fixed per-query cost of the multi path

    def __init__(
        self,
        db: HashArray,
        mode: str = "auto",
        *,
        substring_bits: int | None = None,
        threads: int | None = None,
    ) -> None:
        if not isinstance(db, HashArray):
            raise HashError(f"HammingIndex needs a HashArray database, got {type(db).__name__}")
        if mode not in MODES:
            raise ConfigError(f"HammingIndex mode must be one of {', '.join(MODES)}, got {mode!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive int or None (every core), got {threads!r}")
        self.db = db
        self.mode = mode
        self.bits = db.bits
        self.n = len(db)
        self.threads = threads or os.cpu_count() or 1
        self._n_words = -(-db.bits // 64)
        self._words = self._to_words(db.data)  # (n, words): row gathers for verification
        self._columns = np.ascontiguousarray(self._words.T)  # (words, n): sequential scans
        self.substring_bits = self._choose_substring_bits(substring_bits)
        self._tables: SubstringTables | None = None
        self._faiss_index: Any = None
        if mode in ("auto", "multi"):
            self._tables = SubstringTables(db.data, self.substring_bits)
        if mode == "faiss":
            self._faiss_index = self._build_faiss()

    # -- construction ----------------------------------------------------------

    def _to_words(self, data: np.ndarray) -> np.ndarray:
        """Pad each hash to whole 64-bit words (zero padding never changes a distance)."""
        n, nbytes = data.shape
        padded = np.zeros((n, self._n_words * 8), dtype=np.uint8)
        padded[:, :nbytes] = data
        return padded.view(np.uint64)

    def _choose_substring_bits(self, requested: int | None) -> int:
        if requested is None:
            return 16 if self.n >= 8192 and self.bits % 16 == 0 else 8
        if requested not in (8, 16, 32):
            raise ConfigError(f"substring_bits must be 8, 16 or 32, got {requested!r}")
        if self.bits % requested:
            raise ConfigError(f"substring_bits={requested} does not divide the hash length {self.bits}")
        return requested

    def _build_faiss(self) -> Any:
        try:
            faiss = importlib.import_module("faiss")  # optional, untyped: resolved at run time
        except ImportError as exc:
            raise ConfigError("mode='faiss' needs the faiss-cpu package (pip install faiss-cpu)") from exc
        index = faiss.IndexBinaryFlat(self.bits)
        if self.n:
            index.add(np.ascontiguousarray(self.db.data))
        return index

    @property
    def m(self) -> int:
        """Number of multi-index substrings."""
        return self.bits // self.substring_bits

    # -- input checks ------------------------------------------------------------------

    def _as_queries(self, queries: HashArray | PerceptualHash) -> HashArray:
        if isinstance(queries, PerceptualHash):
            queries = HashArray(np.frombuffer(queries.data, dtype=np.uint8).reshape(1, -1).copy())
        if not isinstance(queries, HashArray):
            raise HashError(f"queries must be a HashArray or PerceptualHash, got {type(queries).__name__}")
        if queries.bits != self.bits:
            raise HashError(f"queries have {queries.bits} bits but the index holds {self.bits}-bit hashes")
        return queries

    def _check_radius(self, r: int) -> int:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
            raise ConfigError(f"radius must be an int >= 0, got {r!r}")
        return min(int(r), self.bits)

    # -- cost model --------------------------------------------------------------------

    def estimated_scan_ns(self) -> float:
        """Estimated nanoseconds for one query by full scan."""
        return self.SCAN_NS_PER_WORD * self._n_words * self.n

    @overload
    def estimated_multi_ns(self, r: int, candidates: float) -> float: ...
    @overload
    def estimated_multi_ns(self, r: int, candidates: np.ndarray) -> np.ndarray: ...

    def estimated_multi_ns(self, r: int, candidates: np.ndarray | float) -> np.ndarray | float:
        """Estimated nanoseconds for one multi-index query at radius ``r`` with ``candidates`` to verify
        (elementwise when ``candidates`` is an array)."""
        probes = self._tables.n_probes(r // self.m) if self._tables else self.m * n_masks(self.substring_bits, r // self.m)
        return self.QUERY_OVERHEAD_NS + self.PROBE_NS * probes + self.CANDIDATE_NS * candidates

    def _multi_feasible(self, r: int) -> bool:
        """Whether probing alone (before any candidate) is cheaper than a scan."""
        if self._tables is None:
            return False
        if self.mode == "multi":
            return True
        return self.estimated_multi_ns(r, 0.0) < self.estimated_scan_ns()

    # -- radius search -----------------------------------------------------------------

    def radius(self, queries: HashArray | PerceptualHash, r: int) -> RadiusResult:
        """All database hashes within distance ``r`` (inclusive) of each query, ascending by index."""
        queries = self._as_queries(queries)
        r = self._check_radius(r)
        nq = len(queries)
        stats: dict[str, Any] = {"scan_queries": 0, "multi_queries": 0, "candidates": 0, "mode": self.mode}
        if nq == 0 or self.n == 0:
            empty = np.empty(0, dtype=np.int64)
            return RadiusResult(np.zeros(nq + 1, dtype=np.int64), empty, empty, stats)
        if self.mode == "faiss":
            stats["faiss_queries"] = nq
            return self._radius_faiss(queries, r, stats)
        qwords = self._to_words(queries.data)
        if self.mode == "scan" or not self._multi_feasible(r):
            stats["scan_queries"] = nq
            q, i, d = self._radius_scan(qwords, np.arange(nq), r)
            return assemble_radius_result(nq, self.n, q, i, d, dedupe=False, stats=stats)
        return self._radius_multi(queries, qwords, r, stats)

    def _radius_scan(self, qwords: np.ndarray, qids: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def one(qi: int) -> tuple[np.ndarray, np.ndarray]:
            d = self._scan_distances(qwords[qi])
            hit = np.flatnonzero(d <= r)
            return hit, d[hit]

        results = self._map(one, [int(q) for q in qids])
        ids = [h for h, _ in results]
        counts = np.array([h.size for h in ids], dtype=np.int64)
        q_col = np.repeat(qids.astype(np.int64), counts)
        if not ids:
            e = np.empty(0, dtype=np.int64)
            return e, e, e
        return q_col, np.concatenate(ids).astype(np.int64), np.concatenate([d for _, d in results])

    def _scan_distances(self, qword_row: np.ndarray) -> np.ndarray:
        """Distances from one query (its padded words) to every database hash, ``uint16``."""
        d: np.ndarray
        if not HAS_BITWISE_COUNT:  # numpy < 2: byte lookup table, slower but equal
            d = popcount_u8((self._words ^ qword_row).view(np.uint8)).sum(axis=1, dtype=np.uint16)
            return d
        cols = self._columns
        d = np.bitwise_count(cols[0] ^ qword_row[0]).astype(np.uint16)
        for w in range(1, cols.shape[0]):
            d += np.bitwise_count(cols[w] ^ qword_row[w])
        return d

    def _radius_multi(
        self, queries: HashArray, qwords: np.ndarray, r: int, stats: dict[str, Any], *, scan_rest: bool = True
    ) -> RadiusResult:
        tables = self._tables
        assert tables is not None
        nq = len(queries)
        s = r // self.m
        qkeys = substrings(queries.data, self.substring_bits)
        scan_ns = self.estimated_scan_ns()
        # Probe in query chunks that bound the probe arrays.
        step = max(1, _PROBES_PER_PASS // max(1, tables.n_probes(s)))
        chunks = [np.arange(lo, min(nq, lo + step)) for lo in range(0, nq, step)]

        def lookup(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            q, starts, lengths = tables.probes(qkeys[chunk], s)
            return chunk, chunk[q], starts, lengths

        multi_parts, scan_ids = [], []
        total_candidates = 0
        for chunk, q, starts, lengths in self._map(lookup, chunks):
            cand = np.bincount(q - chunk[0], weights=lengths, minlength=chunk.size)
            if self.mode == "multi":
                use = np.ones(chunk.size, dtype=bool)
            else:
                use = self.estimated_multi_ns(r, cand) < scan_ns
            scan_ids.append(chunk[~use])
            if use.any():
                keep = use[q - chunk[0]]
                multi_parts.append((q[keep], starts[keep], lengths[keep]))
                total_candidates += int(cand[use].sum())
        # Verify candidates in passes of bounded size, split over threads.
        jobs = list(self._candidate_passes(multi_parts))
        verified = self._map(lambda job: self._verify(job, qwords, r), jobs)
        scan_q = np.concatenate(scan_ids) if scan_ids else np.empty(0, dtype=np.int64)
        parts = list(verified)
        if scan_q.size and scan_rest:
            parts.append(self._radius_scan(qwords, scan_q, r))
        stats.update(scan_queries=int(scan_q.size), multi_queries=int(nq - scan_q.size),
                     candidates=total_candidates, substring_bits=self.substring_bits, probe_radius=s)
        if not parts:
            e = np.empty(0, dtype=np.int64)
            return assemble_radius_result(nq, self.n, e, e, e, dedupe=False, stats=stats)
        q, i, d = (np.concatenate(x) for x in zip(*parts))
        return assemble_radius_result(nq, self.n, q, i, d, dedupe=True, stats=stats)

    @staticmethod
    def _candidate_passes(
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Regroup (probe query, start, length) arrays into passes of about _CANDIDATES_PER_PASS candidates."""
        for q_flat, s_flat, l_flat in parts:
            cum = np.cumsum(l_flat)
            lo = 0
            while lo < l_flat.size:
                base = cum[lo - 1] if lo else 0
                hi = max(int(np.searchsorted(cum, base + _CANDIDATES_PER_PASS, side="right")), lo + 1)
                yield q_flat[lo:hi], s_flat[lo:hi], l_flat[lo:hi]
                lo = hi

    def _verify(self, job: tuple[np.ndarray, np.ndarray, np.ndarray], qwords: np.ndarray, r: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact distances of every candidate of ``job``; keep those within ``r``."""
        q_probe, starts, lengths = job
        assert self._tables is not None
        cand = self._tables.bucket_members(starts, lengths)
        rows = np.take(self._words, cand, axis=0)
        rows ^= np.repeat(qwords[q_probe], lengths, axis=0)
        # Column-wise adds: numpy's small-axis sum is several times slower.
        counts = np.bitwise_count(rows) if HAS_BITWISE_COUNT else popcount_u8(rows.view(np.uint8))
        dist = counts[:, 0].astype(np.uint16)
        for w in range(1, counts.shape[1]):
            dist += counts[:, w]
        keep = np.flatnonzero(dist <= r)
        q_cand = np.repeat(q_probe, lengths)[keep]
        return q_cand.astype(np.int64), cand[keep].astype(np.int64), dist[keep].astype(np.int64)

    def _radius_faiss(self, queries: HashArray, r: int, stats: dict[str, Any]) -> RadiusResult:
        # faiss returns distances strictly below its radius argument.
        lims, dist, ids = self._faiss_index.range_search(np.ascontiguousarray(queries.data), r + 1)
        lims = lims.astype(np.int64)
        qids = np.repeat(np.arange(len(queries), dtype=np.int64), np.diff(lims))
        return assemble_radius_result(len(queries), self.n, qids, ids.astype(np.int64), dist.astype(np.int64),
                                      dedupe=False, stats=stats)

    # -- k nearest neighbours ----------------------------------------------------------

    def knn(self, queries: HashArray | PerceptualHash, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest hashes of each query: ``(indices, distances)``, both ``(n_queries, k)``.

        Rows are sorted by distance, ties broken by the smaller database index,
        so the result is unique. ``auto`` first tries a small multi-index radius
        (exact for every query that has at least ``k`` hashes inside it) and
        scans for the rest; ``multi`` grows the radius until every query has
        ``k`` hashes within it.
        """
        queries = self._as_queries(queries)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.n:
            raise ConfigError(f"k must be an int in 1..{self.n} (the database size), got {k!r}")
        k = int(k)
        nq = len(queries)
        idx = np.empty((nq, k), dtype=np.int64)
        dist = np.empty((nq, k), dtype=np.int64)
        if nq == 0:
            return idx, dist
        if self.mode == "faiss":
            return self._knn_faiss(queries, k)
        todo = np.arange(nq)
        if self.mode == "multi":
            s = 0
            while todo.size:
                r = min(self.bits, self.m * (s + 1) - 1)
                todo = self._knn_from_radius(queries[todo], todo, k, r, idx, dist)
                s += 1
            return idx, dist
        if self.mode == "auto":
            r0 = self._knn_probe_radius()
            if r0 is not None:
                todo = self._knn_from_radius(queries[todo], todo, k, r0, idx, dist)
        qwords = self._to_words(queries.data)

        def one(qi: int) -> tuple[int, np.ndarray, np.ndarray]:
            d = self._scan_distances(qwords[qi])
            sel, dd = _smallest_k(d, k, self.bits)
            return qi, sel, dd

        for qi, sel, dd in self._map(one, [int(q) for q in todo]):
            idx[qi], dist[qi] = sel, dd
        return idx, dist

    def _knn_probe_radius(self) -> int | None:
        """Largest MIH-natural radius ``m * (s + 1) - 1`` whose uniform-data cost is well below a scan."""
        if self._tables is None:
            return None
        best = None
        for s in range(3):
            r = self.m * (s + 1) - 1
            expected = self.m * n_masks(self.substring_bits, s) * self.n / float(1 << self.substring_bits)
            if self.estimated_multi_ns(r, expected) < 0.25 * self.estimated_scan_ns():
                best = r
        return best

    def _knn_from_radius(self, queries: HashArray, qids: np.ndarray, k: int, r: int,
                         idx: np.ndarray, dist: np.ndarray) -> np.ndarray:
        """Fill rows whose radius-``r`` ball holds at least ``k`` hashes; return the query ids left."""
        if self.mode == "multi":
            res = self.radius(queries, r)
        else:  # auto: queries the cost model would scan come back empty and are scanned once, below
            res = self._radius_multi(queries, self._to_words(queries.data), r, {}, scan_rest=False)
        left = []
        for j, qi in enumerate(qids):
            ids, dd = res[j], res.distances(j)
            if ids.size >= k:
                order = np.lexsort((ids, dd))[:k]
                idx[qi], dist[qi] = ids[order], dd[order]
            else:
                left.append(qi)
        return np.array(left, dtype=np.int64)

    def _knn_faiss(self, queries: HashArray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # faiss breaks ties arbitrarily: take its k-th distance, then every hash within it, and sort.
        data = np.ascontiguousarray(queries.data)
        dk, _ = self._faiss_index.search(data, k)
        kth = dk[:, -1].astype(np.int64)
        idx = np.empty((len(queries), k), dtype=np.int64)
        dist = np.empty((len(queries), k), dtype=np.int64)
        for i in range(len(queries)):
            _, d, ids = self._faiss_index.range_search(data[i : i + 1], int(kth[i]) + 1)
            order = np.lexsort((ids, d))[:k]
            idx[i], dist[i] = ids[order], d[order]
        return idx, dist

    # -- threading -------------------------------------------------------------------------

    def _map(self, fn: Any, items: list[Any]) -> list[Any]:
        if self.threads <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            return list(pool.map(fn, items))

    @property
    def nbytes(self) -> int:
        """Memory held by the index (database words twice, plus the substring tables)."""
        return self._words.nbytes + self._columns.nbytes + (self._tables.nbytes if self._tables else 0)


def _smallest_k(d: np.ndarray, k: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` smallest of ``d`` ordered by (value, index)."""
    counts = np.bincount(d, minlength=bits + 1)
    kth = int(np.searchsorted(np.cumsum(counts), k))  # smallest distance whose cumulative count reaches k
    below = np.flatnonzero(d < kth)
    at = np.flatnonzero(d == kth)[: k - below.size]
    sel = np.concatenate([below, at])
    dd = d[sel].astype(np.int64)
    order = np.lexsort((sel, dd))
    return sel[order].astype(np.int64), dd[order]
