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

import re
import warnings
from collections.abc import Mapping
from importlib import metadata
from types import MappingProxyType
from typing import Any

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
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_REGISTRY: dict[str, Protocol] = {p.name: p for p in _BUILT_IN}
_ORIGIN: dict[str, str] = {p.name: "built-in" for p in _BUILT_IN}

#: Every registered protocol by name: the built-ins in a stable order, then plugins as registered.
#: A read-only live view: a protocol registered later appears here too.
PROTOCOLS: Mapping[str, Protocol] = MappingProxyType(_REGISTRY)


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
    name = instance.name if isinstance(getattr(type(instance), "name", None), str) else None
    if name is None or not _NAME.match(name):
        raise ProtocolError(f"register: {type(instance).__name__}.name must be kebab-case (a-z, 0-9, -), got {name!r}")
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
    if name in _REGISTRY and (_ORIGIN[name] == "built-in" or not replace):
        raise ProtocolError(f"register: a protocol named {name!r} is already registered ({_ORIGIN[name]})")
    _REGISTRY[name] = instance
    _ORIGIN[name] = origin
    return instance


def unregister(name: str) -> None:
    """Remove a registered plugin (built-ins stay); :class:`ProtocolError` if ``name`` is not a plugin."""
    if _ORIGIN.get(name, "built-in") == "built-in":
        raise ProtocolError(f"unregister: {name!r} is not a registered plugin")
    del _REGISTRY[name], _ORIGIN[name]


def origin(name: str) -> str:
    """Where protocol ``name`` comes from: ``"built-in"``, ``"plugin <distribution>"`` or ``"registered"``."""
    get_protocol(name)
    return _ORIGIN[name]


def _load_entry_points() -> None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        try:
            loaded: Any = ep.load()
            register(loaded, origin=f"plugin {dist}")
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the built-ins
            warnings.warn(
                f"e2escan: protocol plugin {ep.name!r} ({ep.value}, from {dist}) not loaded: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )


def get_protocol(name: str) -> Protocol:
    """The protocol registered under ``name``; :class:`ProtocolError` lists the names if unknown."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ProtocolError(f"unknown protocol {name!r}; registered: {', '.join(PROTOCOLS)}") from None


_load_entry_points()

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
