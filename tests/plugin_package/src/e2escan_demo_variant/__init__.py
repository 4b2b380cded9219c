"""``tpsi-ad-three-hash``: tpsi-ad whose cuckoo table uses three hash functions (the paper's §4.1 option).

A protocol variant in its own package: a ``Params`` subclass with its own
name, a ``Protocol`` subclass, its specification beside it, and one entry point
in ``pyproject.toml``. The package also adds a hasher (``ahash-16``, aHash on a
16 x 16 grid: 256 bits) through the ``e2escan.hashers`` group. Nothing inside
e2escan is edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from e2escan.hashing import AverageHasher
from e2escan.protocols.tpsi_ad import TpsiAdParams, TpsiAdProtocol

NAME = "tpsi-ad-three-hash"


@dataclass(frozen=True)
class ThreeHashParams(TpsiAdParams):
    PROTOCOL: ClassVar[str] = NAME

    cuckoo_hashes: int = 3


class ThreeHashProtocol(TpsiAdProtocol):
    name = NAME
    summary = "tpsi-ad with three cuckoo functions: 3 (Q, ct) pairs per voucher, a denser table"
    Params = ThreeHashParams
    PUBLIC_MAGIC = b"E2T3"

    @property
    def spec(self) -> str:
        return str(Path(__file__).with_name("spec.md"))


@dataclass(frozen=True)
class AverageHasher16(AverageHasher):
    """aHash on a 16 x 16 grid (256 bits)."""

    name: ClassVar[str] = "ahash-16"
    hash_size: int = 16
