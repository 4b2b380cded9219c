"""On-disk cache of perceptual hashes keyed by (hasher spec, SHA-256 of the encoded image).

Repeated runs of a scenario re-render the same image bytes; the cache avoids
hashing them again. One SQLite file, safe to delete at any time. Location:
``$E2ESCAN_CACHE_DIR`` or ``$XDG_CACHE_HOME/e2escan`` or ``~/.cache/e2escan``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

from ..errors import ConfigError


def default_cache_dir() -> Path:
    env = os.environ.get("E2ESCAN_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "e2escan"


class HashCache:
    """``get``/``put`` hash bytes by image digest; ``path=None`` disables the cache."""

    def __init__(self, path: str | Path | None, hasher_spec: str) -> None:
        self.spec = hasher_spec
        self.hits = 0
        self.misses = 0
        self._db = None
        if path is not None:
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(path), isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS hashes (hasher TEXT, digest BLOB, hash BLOB, extra INTEGER, "
                    "PRIMARY KEY (hasher, digest))"
                )
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(
                    f"hash cache {path}: unusable ({exc}); set E2ESCAN_CACHE_DIR to a writable folder, or pass "
                    "--no-cache to run without it"
                ) from None
        self._pending: list[tuple[str, bytes, bytes, None]] = []

    @staticmethod
    def digest(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def get(self, digest: bytes) -> bytes | None:
        if self._db is None:
            self.misses += 1
            return None
        row = self._db.execute("SELECT hash FROM hashes WHERE hasher = ? AND digest = ?", (self.spec, digest)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        value: bytes = row[0]  # the hash column holds BLOBs only (put)
        return value

    def put(self, digest: bytes, value: bytes) -> None:
        if self._db is not None:
            self._pending.append((self.spec, digest, value, None))
            if len(self._pending) >= 256:
                self.flush()

    def flush(self) -> None:
        if self._db is not None and self._pending:
            self._db.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)", self._pending)
            self._pending.clear()

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
