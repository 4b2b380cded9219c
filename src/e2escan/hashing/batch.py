"""Hash a stream of images into a :class:`HashArray`, on one core or many.

``hash_many`` consumes its input lazily: with ``workers > 1`` at most
``2 * workers`` chunks are in flight, so an arbitrarily long iterator (a
directory walk, a generator of transformed images) never has to fit in
memory. Output order always equals input order.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import ConfigError
from ._parallel import imap_ordered, resolve_workers
from .hashers import Hasher, ImageLike
from .types import HashArray

_DEFAULT_CHUNK = 32


def _load_if_path(item: Any) -> ImageLike:
    if isinstance(item, (str, os.PathLike)):
        # images does not import hashing, so this lazy import cannot cycle.
        from ..images.loading import load_image

        return load_image(item)
    return item


def _hash_chunk(hasher: Hasher, items: list[Any]) -> np.ndarray:
    out = np.empty((len(items), hasher.bits // 8), dtype=np.uint8)
    for i, item in enumerate(items):
        out[i] = hasher.hash_packed(_load_if_path(item))
    return out


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class _RowBuffer:
    """A growable ``(n, width)`` uint8 buffer (amortised doubling, one final copy)."""

    def __init__(self, width: int) -> None:
        self._buf = np.empty((64, width), dtype=np.uint8)
        self._n = 0

    def extend(self, rows: np.ndarray) -> None:
        need = self._n + rows.shape[0]
        if need > self._buf.shape[0]:
            grown = np.empty((max(need, 2 * self._buf.shape[0]), self._buf.shape[1]), dtype=np.uint8)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = rows
        self._n = need

    def append(self, row: np.ndarray) -> None:
        if self._n == self._buf.shape[0]:
            grown = np.empty((2 * self._buf.shape[0], self._buf.shape[1]), dtype=np.uint8)
            grown[: self._n] = self._buf
            self._buf = grown
        self._buf[self._n] = row
        self._n += 1

    def finish(self) -> HashArray:
        return HashArray(self._buf[: self._n].copy())


def hash_many(
    hasher: Hasher,
    images: Iterable[Any],
    *,
    workers: int | None = 1,
    chunksize: int = _DEFAULT_CHUNK,
    progress: Any = None,
) -> HashArray:
    """Hash every image of ``images`` (in order) with ``hasher``.

    Items may be PIL images, ``uint8`` arrays, objects with an ``.image``
    attribute (a transformed image) or file paths (loaded with
    :func:`e2escan.images.load_image` inside the worker, which avoids
    shipping pixels between processes). ``workers=1`` hashes in this process;
    ``workers=N`` uses ``N`` processes; ``workers=None`` uses every core.
    ``progress``, if given, is a tqdm-like object whose ``update(n)`` is
    called as hashes complete.

    Worker processes start with ``forkserver`` (or ``spawn``), so a script
    that calls this with ``workers > 1`` needs the usual
    ``if __name__ == "__main__":`` guard. They run with one BLAS thread each
    and, on glibc, fixed malloc thresholds (:mod:`e2escan._worker_setup`);
    without those a fresh worker hashed PDQ about 1.5x slower per image than
    a long-running process.
    """
    n_workers = resolve_workers(workers)
    if not isinstance(chunksize, int) or chunksize < 1:
        raise ConfigError(f"chunksize must be a positive int, got {chunksize!r}")
    out = _RowBuffer(hasher.bits // 8)
    if n_workers == 1:
        hash_packed = hasher.hash_packed
        for item in images:
            out.append(hash_packed(_load_if_path(item)))
            if progress is not None:
                progress.update(1)
        return out.finish()

    tasks = ((hasher, chunk) for chunk in _chunks(images, chunksize))
    for rows in imap_ordered(_hash_chunk, tasks, n_workers):
        out.extend(rows)
        if progress is not None:
            progress.update(rows.shape[0])
    return out.finish()
