"""Registries that third-party packages extend through entry points (protocols, hashers).

A :class:`Registry` is a read-only mapping of name to object. Built-ins are
there from the start; installed plugins are loaded the first time the
registry is read (not when e2escan is imported, so that a plugin may import
any part of e2escan while it loads). A plugin that fails to load is skipped
with one warning naming its entry point and distribution.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class Registry(Mapping[str, T], Generic[T]):
    """Name -> registered object, with each name's origin (``built-in``, ``plugin <dist>``, ``registered``)."""

    def __init__(
        self, group: str, kind: str, register: Callable[[Any, str], Any], error: type[Exception]
    ) -> None:
        self.group, self.kind, self.error = group, kind, error
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

    def check_name(self, name: object, owner: str) -> str:
        """``name`` if it is kebab-case (a-z, 0-9, -; at most 64 characters), else :attr:`error` naming ``owner``."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.error(f"register: {owner}.name must be kebab-case (a-z, 0-9, -), got {name!r}")
        return name

    def add(self, name: str, value: T, origin: str, *, replace: bool = False) -> None:
        """Register ``value``; a taken name is :attr:`error` unless ``replace`` (a built-in is never replaced)."""
        taken = self._origin.get(name)
        if taken is not None and (taken == "built-in" or not replace):
            raise self.error(f"register: a {self.kind} named {name!r} is already registered ({taken})")
        self._data[name] = value
        self._origin[name] = origin

    def unregister(self, name: str) -> None:
        """Remove a registered plugin; built-ins stay, and any other name is :attr:`error`."""
        if self._origin.get(name) in (None, "built-in"):
            raise self.error(f"unregister: {name!r} is not a registered plugin {self.kind}")
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

