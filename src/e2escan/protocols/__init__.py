"""Matching protocols behind one interface (see :mod:`e2escan.protocols.base`).

>>> from e2escan.protocols import get_protocol
>>> proto = get_protocol("tpsi-ad")
>>> params = proto.Params(threshold=30)          # or proto.Params.from_toml("protocols/tpsi-ad.toml")
>>> server, public = proto.server_setup(database, params)   # doctest: +SKIP
>>> voucher = proto.client(public, params).scan(phash, payload=b"...")   # doctest: +SKIP
>>> server.ingest("alice", voucher); server.reveal("alice")              # doctest: +SKIP

Each variant has a specification in ``protocols/<name>.md`` and a preset in
``protocols/<name>.toml`` at the repository root.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..errors import ProtocolError
from .base import (
    LeakageProfile,
    MatchServer,
    Protocol,
    ProtocolParams,
    Reveal,
    Scanner,
    StatisticalModel,
    VoucherPointError,
    VoucherReplayError,
)
from .fuzzy import (
    TpsiAdBallProtocol,
    TpsiAdMultiprobeProtocol,
    ball_size,
    expand_ball,
    multiprobe_matches,
)
from .plaintext import PlaintextProtocol, plaintext_matches
from .psi_exact import PsiExactProtocol
from .tpsi_ad import TpsiAdProtocol

_ALL: tuple[Protocol, ...] = (
    PlaintextProtocol(),
    PsiExactProtocol(),
    TpsiAdProtocol(),
    TpsiAdBallProtocol(),
    TpsiAdMultiprobeProtocol(),
)

#: Every registered protocol by name, in a stable order.
PROTOCOLS: Mapping[str, Protocol] = MappingProxyType({p.name: p for p in _ALL})


def get_protocol(name: str) -> Protocol:
    """The protocol registered under ``name``; :class:`ProtocolError` lists the names if unknown."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ProtocolError(f"unknown protocol {name!r}; registered: {', '.join(PROTOCOLS)}") from None


__all__ = [
    "PROTOCOLS",
    "LeakageProfile",
    "MatchServer",
    "Protocol",
    "ProtocolParams",
    "Reveal",
    "Scanner",
    "StatisticalModel",
    "VoucherPointError",
    "VoucherReplayError",
    "ball_size",
    "expand_ball",
    "get_protocol",
    "multiprobe_matches",
    "plaintext_matches",
]
