"""Strict loading of TOML into frozen dataclasses.

Every field of a config dataclass may carry metadata: ``doc`` (one line),
``range`` (inclusive numeric bounds), ``choices`` (allowed values). Loading
rejects unknown keys, wrong types and out-of-range values with an error that
names the dotted key and says what would be accepted.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ScenarioError

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, *, doc: str = "", range: tuple | None = None,
           choices: tuple | None = None, default_factory: Any = dataclasses.MISSING) -> Any:
    meta = {"doc": doc, "range": range, "choices": choices}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "table"
    if tp is type(None):
        return "nothing"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, key)
            except ScenarioError:
                continue
        raise ScenarioError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise ScenarioError(f"{key}: expected nothing")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ScenarioError(f"{key}: expected a table, got {type(value).__name__} {value!r}")
        return from_dict(tp, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ScenarioError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ScenarioError(f"{key}: expected a list of {len(args)} items, got {len(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ScenarioError(f"{key}: expected a table, got {type(value).__name__} {value!r}")
        _, vt = typing.get_args(tp)
        return {k: _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ScenarioError(f"{key}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ScenarioError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build ``cls`` from a parsed TOML table, strictly."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    where = prefix or cls.__name__
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(_dotted(prefix, k)) for k in unknown)}; allowed keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        key = _dotted(prefix, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ScenarioError(f"{key}: required key is missing ({f.metadata.get('doc', '')})")
            continue
        value = _convert(data[name], hints[name], key)
        _check_meta(value, f.metadata, key)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"{where}: {exc}") from exc


def _dotted(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_meta(value: Any, meta: Any, key: str) -> None:
    rng = meta.get("range")
    if rng is not None and value is not None:
        lo, hi = rng
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, (int, float)) and ((lo is not None and v < lo) or (hi is not None and v > hi)):
                bounds = f"between {lo} and {hi}" if lo is not None and hi is not None else (
                    f"at least {lo}" if lo is not None else f"at most {hi}")
                raise ScenarioError(f"{key}: {v!r} is out of range; it must be {bounds}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ScenarioError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(repr, choices))}")


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ScenarioError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ScenarioError(f"{path}: is a folder; give a TOML file or the name of a shipped scenario") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not a text file (not UTF-8 at byte {exc.start}); a TOML file is expected") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain dicts/lists (for manifests and summaries)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def set_path(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of nested ``data`` with ``dotted`` (e.g. ``protocol.params.threshold``) set."""
    import copy

    out = copy.deepcopy(data)
    node = out
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ScenarioError(f"{dotted}: {p} is not a table")
    node[parts[-1]] = value
    return out
