"""Wire sizes of every variant as functions of its parameters and the database size.

Each size follows from the message schemas, so it is exact (the tests and
``papers/protocol-costs`` compare it with encoded messages). The one
assumption: for ``tpsi-ad-ball`` the expanded database holds
``n * ball_size(bits, r)`` distinct hashes, which is exact when no two
database hashes are within ``2r`` of each other (true with overwhelming
probability for random 64-bit hashes; near-duplicate databases give fewer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..crypto import group
from ..crypto.codec import FIELD_HEADER_BYTES, HEADER_BYTES
from . import psi_exact, tpsi_ad
from .base import ProtocolParams
from .blinded_table import NONCE_BYTES
from .fuzzy import TpsiAdBallParams, ball_size
from .plaintext import PlaintextParams


@dataclass(frozen=True)
class WireSizes:
    """Bytes on the wire for one parameter set and database size."""

    table_entries: int  # hashes placed in the blinded table (0 when nothing is shipped)
    table_cells: int  # cells shipped to every device (buckets + stash)
    public_bytes: int  # the public parameters every device downloads
    voucher_bytes: int  # one voucher (every voucher of a parameter set has this length)


def _blinded_public_bytes(cells: int) -> int:
    fixed = 32 + NONCE_BYTES + 4 + 4 + 4 + 4 + 16 + group.POINT_BYTES
    return HEADER_BYTES + 9 * FIELD_HEADER_BYTES + fixed + group.POINT_BYTES * cells


def wire_sizes(params: ProtocolParams, database_hashes: int, bits: int = 64, payload_bytes: int | None = None) -> WireSizes:
    """Sizes for ``params`` (any variant's ``Params``) and a database of ``database_hashes`` distinct hashes.

    ``payload_bytes`` matters only for ``plaintext`` (its vouchers are not
    padded); it defaults to ``payload_size``.
    """
    if isinstance(params, PlaintextParams):
        payload = params.payload_size if payload_bytes is None else payload_bytes
        public = HEADER_BYTES + 2 * FIELD_HEADER_BYTES + 32 + 4
        voucher = HEADER_BYTES + 3 * FIELD_HEADER_BYTES + bits // 8 + 4 + payload
        return WireSizes(0, 0, public, voucher)
    if isinstance(params, psi_exact.PsiExactParams):
        entries = database_hashes
        cells = math.ceil(entries / params.cuckoo_load) + params.stash_size
        voucher = psi_exact.voucher_schema(params)
    elif isinstance(params, tpsi_ad.TpsiAdParams):
        entries = database_hashes
        if isinstance(params, TpsiAdBallParams):
            entries = database_hashes * ball_size(bits, params.radius)
        cells = math.ceil(entries / params.cuckoo_load) + params.stash_size
        voucher = tpsi_ad.voucher_schema(params)
    else:
        raise TypeError(f"wire_sizes: unknown parameter type {type(params).__name__}")
    voucher_bytes = voucher.overhead() + sum(int(f.size) for f in voucher.fields)  # type: ignore[arg-type]
    return WireSizes(entries, cells, _blinded_public_bytes(cells), voucher_bytes)
