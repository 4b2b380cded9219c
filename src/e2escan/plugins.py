"""Registries that third-party packages extend through entry points (protocols, hashers).

A :class:`Registry` is a read-only mapping of name to object. Built-ins are
there from the start; installed plugins are loaded the first time the
registry is read (not when e2escan is imported, so that a plugin may import
any part of e2escan while it loads). A plugin that fails to load is skipped
with one warning naming its entry point and distribution.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Name -> registered object, with each name's origin (``built-in``, ``plugin <dist>``, ``registered``)."""

    def __init__(self, group: str, kind: str, register: Callable[[Any, str], Any]) -> None:
        self.group, self.kind = group, kind
        self._data: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._register = register
        self._loaded = False

    # -- the Mapping interface (loads plugins on first use) --------------------------------
    def __getitem__(self, name: str) -> T:
        self.load_plugins()
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        self.load_plugins()
        return iter(list(self._data))

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._data)

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._data

    # -- registration ------------------------------------------------------------------------
    def origin(self, name: str) -> str:
        self.load_plugins()
        return self._origin[name]

    def taken_by(self, name: str) -> str | None:
        """The origin of ``name`` if it is registered (without loading plugins), else ``None``."""
        return self._origin.get(name)

    def put(self, name: str, value: T, origin: str) -> None:
        self._data[name] = value
        self._origin[name] = origin

    def remove(self, name: str) -> None:
        del self._data[name], self._origin[name]

    def load_plugins(self) -> None:
        """Register every entry point of :attr:`group` once; a failing one is skipped with a warning."""
        if self._loaded:
            return
        self._loaded = True  # first, so that a plugin reading the registry while it loads does not recurse
        for ep in metadata.entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            try:
                self._register(ep.load(), f"plugin {dist}")
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the built-ins
                warnings.warn(
                    f"e2escan: {self.kind} plugin {ep.name!r} ({ep.value}, from {dist}) not loaded: {exc}",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def __repr__(self) -> str:
        return f"Registry({self.group}: {', '.join(self._data)})"

