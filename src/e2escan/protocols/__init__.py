"""Matching protocols behind one interface (see :mod:`e2escan.protocols.base`).

>>> from e2escan.protocols import get_protocol
>>> proto = get_protocol("tpsi-ad")
>>> params = proto.Params(threshold=30)          # or proto.Params.from_toml("protocols/tpsi-ad.toml")
>>> server, public = proto.server_setup(database, params)   # doctest: +SKIP
>>> voucher = proto.client(public, params).scan(phash, payload=b"...")   # doctest: +SKIP
>>> server.ingest("alice", voucher); server.reveal("alice")              # doctest: +SKIP

Each built-in variant has a specification in ``protocols/<name>.md`` and a
preset in ``protocols/<name>.toml`` at the repository root.

Third-party variants (plugins) register in one of two ways, and are then used
everywhere a built-in is (``e2escan protocols``, ``run``, ``sweep``, ``audit``):

* an installed distribution declares an entry point in the group
  ``e2escan.protocols`` naming a :class:`Protocol` subclass (or instance); it is
  loaded when this package is first imported;
* in a session or notebook, ``e2escan.protocols.register(MyProtocol)``.

A plugin carries its own specification (override :attr:`Protocol.spec` with a
path inside its package). A plugin that fails to load is skipped with a
one-line warning naming the entry point; it never breaks the built-ins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ProtocolError
from ..plugins import Registry
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

_BUILT_IN: tuple[Protocol, ...] = (
    PlaintextProtocol(),
    PsiExactProtocol(),
    TpsiAdProtocol(),
    TpsiAdBallProtocol(),
    TpsiAdMultiprobeProtocol(),
)
#: Names of the built-in protocols (what the shipped presets, papers and expected outputs cover).
BUILT_IN: tuple[str, ...] = tuple(p.name for p in _BUILT_IN)
ENTRY_POINT_GROUP = "e2escan.protocols"


def _register_entry_point(loaded: Any, origin: str) -> None:
    register(loaded, origin=origin)


_REGISTRY: Registry[Protocol] = Registry(ENTRY_POINT_GROUP, "protocol", _register_entry_point, ProtocolError)
for _p in _BUILT_IN:
    _REGISTRY.add(_p.name, _p, "built-in")

#: Every registered protocol by name: the built-ins in a stable order, then plugins as registered.
#: Read-only; installed plugins (entry-point group ``e2escan.protocols``) load on first use.
PROTOCOLS: Mapping[str, Protocol] = _REGISTRY


def register(protocol: type[Protocol] | Protocol, *, origin: str = "registered", replace: bool = False) -> Protocol:
    """Register a protocol variant (a :class:`Protocol` subclass or instance) and return the instance.

    Checks what every caller relies on: a kebab-case ``name`` not taken (unless ``replace``; a
    built-in is never replaced), a ``summary``, ``Params`` a :class:`ProtocolParams` subclass whose
    defaults construct, and ``LEAKAGE`` a :class:`LeakageProfile`. Raises :class:`ProtocolError`
    naming what is wrong.
    """
    instance = protocol() if isinstance(protocol, type) and issubclass(protocol, Protocol) else protocol
    if not isinstance(instance, Protocol):
        raise ProtocolError(f"register: expected a Protocol subclass or instance, got {protocol!r}")
    name = _REGISTRY.check_name(getattr(type(instance), "name", None), type(instance).__name__)
    if not isinstance(getattr(type(instance), "summary", None), str):
        raise ProtocolError(f"register: protocol {name!r} needs a one-line `summary` string")
    params = getattr(type(instance), "Params", None)
    if not (isinstance(params, type) and issubclass(params, ProtocolParams)):
        raise ProtocolError(f"register: protocol {name!r}: Params must subclass ProtocolParams")
    try:
        params()
    except Exception as exc:  # noqa: BLE001 - any failure of the defaults is the plugin's error
        raise ProtocolError(f"register: protocol {name!r}: Params() with its defaults fails: {exc}") from None
    if not isinstance(getattr(type(instance), "LEAKAGE", None), LeakageProfile):
        raise ProtocolError(f"register: protocol {name!r}: LEAKAGE must be a LeakageProfile")
    _REGISTRY.add(name, instance, origin, replace=replace)
    return instance


def unregister(name: str) -> None:
    """Remove a registered plugin (built-ins stay); :class:`ProtocolError` if ``name`` is not a plugin."""
    _REGISTRY.unregister(name)


def origin(name: str) -> str:
    """Where protocol ``name`` comes from: ``"built-in"``, ``"plugin <distribution>"`` or ``"registered"``."""
    get_protocol(name)
    return _REGISTRY.origin(name)


def get_protocol(name: str) -> Protocol:
    """The protocol registered under ``name``; :class:`ProtocolError` lists the names if unknown."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ProtocolError(f"unknown protocol {name!r}; registered: {', '.join(PROTOCOLS)}") from None


__all__ = [
    "BUILT_IN",
    "ENTRY_POINT_GROUP",
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
    "origin",
    "plaintext_matches",
    "register",
    "unregister",
]
