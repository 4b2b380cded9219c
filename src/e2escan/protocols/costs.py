"""Wire sizes of every variant as functions of its parameters and the database size.

Each size follows from the message schemas, so it is exact (the tests and
``papers/protocol-costs`` compare it with encoded messages). The one
assumption: for ``tpsi-ad-ball`` the expanded database holds
``n * ball_size(bits, r)`` distinct hashes, which is exact when no two
database hashes are within ``2r`` of each other (true with overwhelming
probability for random 64-bit hashes; near-duplicate databases give fewer).
"""

from __future__ import annotations

from .base import ProtocolParams, WireSizes

__all__ = ["WireSizes", "wire_sizes"]


def wire_sizes(params: ProtocolParams, database_hashes: int, bits: int = 64, payload_bytes: int | None = None) -> WireSizes:
    """Sizes for ``params`` (any variant's ``Params``) and a database of ``database_hashes`` distinct hashes.

    Each protocol computes its own (:meth:`Protocol.wire_sizes`); ``payload_bytes``
    matters only for ``plaintext`` (its vouchers are not padded) and defaults
    to ``payload_size``.
    """
    from . import get_protocol

    return get_protocol(params.PROTOCOL).wire_sizes(params, database_hashes, bits, payload_bytes)
