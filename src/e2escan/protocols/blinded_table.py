"""The blinded cuckoo table of the database, shared by the DH-based variants.

S-Init of the Apple PSI System (Bhowmick et al. 2021, §4): the server places
its distinct hashes ``X`` in a cuckoo table, picks a secret ``alpha``,
publishes ``L = alpha * G`` and, for every cell, ``P_i = alpha * H(T[i])`` if
the cell holds ``T[i]`` and a uniformly random group element if it is empty.
Under DDH the published table hides which cells are occupied and by what; a
device can locate the cells a hash *would* occupy (the cuckoo layout is
public) but cannot test whether it does.

``H`` is :func:`~e2escan.crypto.group.hash_to_group` under a domain-separation
tag that includes a fresh 128-bit nonce per setup, as the paper fixes its hash
functions with 128-bit domain-separation nonces; ``H'`` (group element to
key) is keyed BLAKE2b under the same nonce.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..crypto import group
from ..crypto.codec import FieldSpec, Schema, read_u32, u32
from ..crypto.cuckoo import SEED_BYTES, CuckooLayout, CuckooTable
from ..errors import ConfigError, DecodeError, ProtocolError

if TYPE_CHECKING:
    from .base import WireSizes

NONCE_BYTES = 16


def _table_len(f: Mapping[str, bytes]) -> int:
    cells = read_u32(f["num_buckets"]) + read_u32(f["stash_size"])
    return group.POINT_BYTES * cells


def public_schema(name: str, magic: bytes) -> Schema:
    """The public parameters every device downloads (``table`` dominates: 32 bytes per cell)."""
    return Schema(
        f"{name} public parameters",
        magic,
        1,
        (
            FieldSpec("fingerprint", 32),
            FieldSpec("nonce", NONCE_BYTES),
            FieldSpec("bits", 4),
            FieldSpec("num_buckets", 4),
            FieldSpec("num_hashes", 4),
            FieldSpec("stash_size", 4),
            FieldSpec("cuckoo_seed", SEED_BYTES),
            FieldSpec("L", group.POINT_BYTES),
            FieldSpec("table", _table_len),
        ),
        error=DecodeError,
    )


@dataclass(frozen=True)
class BlindedTable:
    """The public part of S-Init: what every device holds."""

    protocol: str
    fingerprint: bytes
    nonce: bytes
    bits: int
    layout: CuckooLayout
    L: bytes
    table: bytes

    @property
    def h2g_dst(self) -> bytes:
        return b"e2escan-v1/" + self.protocol.encode() + b"/H/" + self.nonce

    @property
    def context(self) -> bytes:
        """Associated data binding every ciphertext to this protocol, parameter set and setup."""
        return b"e2escan-v1/" + self.protocol.encode() + b"/" + self.fingerprint + self.nonce

    def entry(self, cell: int) -> bytes:
        return self.table[32 * cell : 32 * cell + 32]

    def key_from_element(self, element: bytes) -> bytes:
        """``H'``: a 32-byte key from a group element."""
        return hashlib.blake2b(element, digest_size=32, key=self.nonce, person=b"e2escan-H'").digest()

    def encode(self, magic: bytes) -> bytes:
        lay = self.layout
        return public_schema(self.protocol, magic).encode(
            {
                "fingerprint": self.fingerprint,
                "nonce": self.nonce,
                "bits": u32(self.bits),
                "num_buckets": u32(lay.num_buckets),
                "num_hashes": u32(lay.num_hashes),
                "stash_size": u32(lay.stash_size),
                "cuckoo_seed": lay.seed,
                "L": self.L,
                "table": self.table,
            }
        )

    @classmethod
    def decode(cls, protocol: str, magic: bytes, public: bytes, fingerprint: bytes) -> BlindedTable:
        """Parse and check public parameters: format, parameter fingerprint, ``L`` and every table cell.

        Every cell must be a point of the prime-order subgroup. Checking cells
        only when used would let a malicious server plant an invalid point in
        chosen cells, so that exactly the images hashing there fail and are
        never sent: a targeted, image-dependent denial. Refusing the whole table
        at load makes any such server visible to every device at once. The
        cost is one libsodium subgroup check per cell (about 50 us here: 50 s
        for a million cells) once per downloaded table; a process checks each
        distinct table once (:func:`validate_table`).
        """
        d = public_schema(protocol, magic).decode(public)
        if d["fingerprint"] != fingerprint:
            raise ProtocolError(
                f"{protocol}: the public parameters were made for different parameters "
                "(fingerprint mismatch); use the Params the server was set up with"
            )
        try:
            layout = CuckooLayout(
                read_u32(d["num_buckets"]), read_u32(d["num_hashes"]), read_u32(d["stash_size"]), d["cuckoo_seed"]
            )
        except ConfigError as exc:
            raise DecodeError(f"{protocol} public parameters: invalid cuckoo layout: {exc}") from exc
        bits = read_u32(d["bits"])
        if bits <= 0 or bits % 8:
            raise DecodeError(f"{protocol} public parameters: bits = {bits} is not a positive multiple of 8")
        L = group.require_point(d["L"], f"{protocol} public parameter L at byte offset {d.offsets['L']}")
        validate_table(protocol, d["table"], d.offsets["table"])
        return cls(protocol, fingerprint, d["nonce"], bits, layout, L, d["table"])


_VALIDATED: set[bytes] = set()


def validate_table(protocol: str, table: bytes, offset: int = 0) -> None:
    """:class:`ProtocolError` naming the first cell of ``table`` that is not a point of the prime-order subgroup.

    Remembers (per process) the SHA-256 of every table that passed, so the
    simulator's many devices check one table once.
    """
    digest = hashlib.sha256(table).digest()
    if digest in _VALIDATED:
        return
    for cell in range(len(table) // group.POINT_BYTES):
        entry = table[group.POINT_BYTES * cell : group.POINT_BYTES * (cell + 1)]
        if not group.is_valid_point(entry):
            raise ProtocolError(
                f"{protocol} public parameters: table cell {cell} (byte offset {offset + group.POINT_BYTES * cell}) "
                "is not a point of the prime-order subgroup; the server's table is malformed or malicious, "
                "and this device refuses it"
            )
    _VALIDATED.add(digest)


@dataclass
class ServerTableState:
    """The secret half of S-Init."""

    alpha: bytes
    public: BlindedTable
    cuckoo: CuckooTable


def build_blinded_table(
    protocol: str,
    fingerprint: bytes,
    items: list[bytes],
    bits: int,
    *,
    num_hashes: int,
    load: float,
    stash_size: int,
    progress: bool = False,
) -> ServerTableState:
    """S-Init: cuckoo-place ``items``, blind occupied cells, fill empty cells with random elements."""
    if not items:
        raise ProtocolError(f"{protocol}: cannot set up with an empty database")
    nonce = os.urandom(NONCE_BYTES)
    cuckoo = CuckooTable.build(items, num_hashes=num_hashes, load=load, stash_size=stash_size)
    alpha = group.random_scalar()
    L = group.scalar_mult_base(alpha)
    public = BlindedTable(protocol, fingerprint, nonce, bits, cuckoo.layout, L, b"")
    dst = public.h2g_dst
    cells = cuckoo.cells
    iterator = range(len(cells))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"{protocol} S-Init", unit="cell", mininterval=1.0)
    entries = []
    for i in iterator:
        idx = cells[i]
        if idx is None:
            entries.append(group.random_point())
        else:
            entries.append(group.scalar_mult(alpha, group.hash_to_group(items[idx], dst)))
    table = b"".join(entries)
    public = BlindedTable(protocol, fingerprint, nonce, bits, cuckoo.layout, L, table)
    return ServerTableState(alpha, public, cuckoo)


def public_bytes(cells: int) -> int:
    """Length of the encoded public parameters of a blinded table with ``cells`` cells."""
    from ..crypto.codec import FIELD_HEADER_BYTES, HEADER_BYTES

    fixed = 32 + NONCE_BYTES + 4 + 4 + 4 + 4 + 16 + group.POINT_BYTES
    return HEADER_BYTES + 9 * FIELD_HEADER_BYTES + fixed + group.POINT_BYTES * cells


def wire_sizes(entries: int, cuckoo_load: float, stash_size: int, voucher: Schema) -> WireSizes:
    """:class:`~e2escan.protocols.base.WireSizes` of a blinded-table protocol: ``entries`` hashes in
    ``ceil(entries / cuckoo_load)`` buckets (``cuckoo_load``: the load factor) plus a stash, and vouchers of
    the fixed-size ``voucher`` schema (:class:`ProtocolError` if a field of it has no fixed size)."""
    import math

    from .base import WireSizes

    cells = math.ceil(entries / cuckoo_load) + stash_size
    field_bytes = 0
    for f in voucher.fields:
        if not isinstance(f.size, int):
            raise ProtocolError(f"{voucher.name}: field {f.name!r} has no fixed size, so neither has a voucher")
        field_bytes += f.size
    return WireSizes(entries, cells, public_bytes(cells), voucher.overhead() + field_bytes)
