"""Strict, declarative loading of parsed TOML (or JSON) tables into frozen dataclasses.

Every configuration e2escan reads (scenarios, protocol parameters, sweep
files, ``paper.toml``, calibration files) is a dataclass whose fields are
declared with :func:`option`: a default, a one-line ``doc``, and what is
accepted (``range``, ``choices``, a ``check``). :func:`from_dict` and
:func:`load` build the dataclass from a parsed table; types come from the
field annotations; unknown keys, wrong types and out-of-range values are
refused. Every refusal is one line naming the file (when there is one), the
dotted key, the value and what is accepted::

    simulator/x.toml: protocol.params.threshold = 0: out of range; accepted: an integer from 1 to 4096

An error a dataclass raises from its own ``__post_init__`` (a cross-field
check) reaches the user prefixed with the file and the dotted key of its
table: ``table.field = ...`` when the message starts with one of the class's
field names, ``table: message`` otherwise, unchanged when it already starts
with the table's key.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from .errors import ConfigError, E2escanError

T = TypeVar("T")
_MISSING: Any = dataclasses.MISSING
_SHOW_MAX = 60


def option(
    default: Any = _MISSING,
    *,
    doc: str = "",
    range: tuple[float | None, float | None] | None = None,  # noqa: A002 - the word a reader expects
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None,
    check: Callable[[Any], str | None] | None = None,
    accepts: str = "",
    type_from: Callable[[Mapping[str, Any]], type] | None = None,
    serialise: Callable[[Any], Any] | None = None,
    rest: bool = False,
    default_factory: Any = _MISSING,
) -> Any:
    """A dataclass field with what the loader needs to accept or refuse its value.

    ``range``: inclusive numeric bounds (``None``: unbounded; each item of a list);
    ``choices``: the allowed values, or a function returning them when asked
    (for registries); ``check``: a function returning a problem (one phrase) or
    None; ``accepts``: what the field accepts, in words, when the type, range and
    choices do not say it well; ``type_from``: the field is a table whose
    dataclass depends on the fields declared before it (called with their
    values); ``serialise``: how :func:`to_dict` writes the value; ``rest``: the
    table's keys that name no field are collected here (a ``dict`` field).
    """
    meta = {"doc": doc, "range": range, "choices": choices, "check": check, "accepts": accepts,
            "type_from": type_from, "serialise": serialise, "rest": rest}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# --------------------------------------------------------------------------- words


def show(value: Any) -> str:
    """``value`` as written in TOML (strings quoted, ``true``/``false``), cut to about 60 characters."""
    text = _toml_text(value)
    if len(text) <= _SHOW_MAX:
        return text
    closing = text[-1] if text[-1] in "]}" else ""
    return text[: _SHOW_MAX - 4] + " ..." + closing


def _toml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_text(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "(nothing)"
    return repr(value)


def invalid(key: str, value: Any, problem: str, accepted: str) -> str:
    """The one-line refusal ``key = value: problem; accepted: what`` (callers prefix the file)."""
    return f"{key} = {show(value)}: {problem}; accepted: {accepted}"


def type_name(tp: Any) -> str:
    """What a value of annotation ``tp`` looks like in TOML, in words ("an integer", "a list of numbers")."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(type_name(args[0]))}"
        return f"a list of {len(args)} {_plural(type_name(args[0]))}" if args else "a list"
    if origin in (dict, Mapping) or tp in (dict, Mapping) or dataclasses.is_dataclass(tp):
        return "a table"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
             type(None): "nothing", Any: "any value"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(name: str) -> str:
    words = name.split(" ", 1)
    noun = words[-1]
    if words[0] in ("a", "an") and len(words) == 2:
        return noun if " or " in noun else (noun + "s" if not noun.endswith("s") else noun)
    return name


def _bounds(rng: tuple[float | None, float | None]) -> str:
    lo, hi = rng
    if lo is not None and hi is not None:
        return f"from {lo} to {hi}"
    return f"at least {lo}" if lo is not None else f"at most {hi}"


def _choices(meta: Mapping[str, Any], tp: Any = None) -> tuple[Any, ...] | None:
    """The allowed values: the field's ``choices`` (called if a function), else a ``Literal`` annotation's."""
    choices = meta.get("choices")
    if choices is None and typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    return tuple(choices()) if callable(choices) else choices


def accepted(tp: Any, meta: Mapping[str, Any]) -> str:
    """What a field accepts, in words: its ``accepts``, else its choices, else its type and range."""
    if meta.get("accepts"):
        return str(meta["accepts"])
    choices = _choices(meta, tp)
    if choices is not None:
        return "one of " + ", ".join(show(c) for c in choices)
    words = type_name(tp)
    if meta.get("range") is not None:
        words += (" each " if typing.get_origin(tp) is tuple else " ") + _bounds(meta["range"])
    return words


# --------------------------------------------------------------------------- loading


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "", *,
              error: type[ConfigError] = ConfigError, source: str = "") -> T:
    """Build dataclass ``cls`` from a parsed table, strictly; ``prefix`` is the table's dotted key.

    Raises ``error`` (a :class:`ConfigError` class) with one line
    ``[source: ]key = value: problem; accepted: what``.
    """
    try:
        return _Loader(error).table(cls, data, prefix)
    except E2escanError as exc:
        if not source:
            raise
        kind = type(exc) if isinstance(exc, ConfigError) else error
        raise kind(f"{source}: {exc}") from None


def load(cls: type[T], path: str | Path, prefix: str = "", *, error: type[ConfigError] = ConfigError) -> T:
    """Read the TOML file ``path`` into dataclass ``cls``; every error starts with the file's path."""
    return from_dict(cls, load_toml(path, error=error), prefix, error=error, source=str(path))


@dataclasses.dataclass(frozen=True)
class _Loader:
    error: type[ConfigError]

    def fail(self, message: str) -> NoReturn:
        raise self.error(message)

    def table(self, cls: type[T], data: Mapping[str, Any], prefix: str) -> T:
        if not isinstance(data, Mapping):
            self.fail(invalid(prefix or cls.__name__, data, "wrong type", "a table"))
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        rest = next((f.name for f in fields.values() if f.metadata.get("rest")), None)
        unknown = [k for k in data if k not in fields]
        if unknown and rest is None:
            also = f" (also unknown: {', '.join(map(str, unknown[1:]))})" if len(unknown) > 1 else ""
            first = _dotted(prefix, unknown[0])
            self.fail(f"{first} = {show(data[unknown[0]])}: unknown key{also}; "
                      f"accepted keys: {', '.join(fields) or '(none)'}")
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            key = _dotted(prefix, name)
            if f.metadata.get("type_from"):
                kwargs[name] = self.typed_table(f, data.get(name, {}), key, kwargs, fields)
                continue
            if name == rest:
                value: Any = {k: data[k] for k in unknown}
            elif name in data:
                value = data[name]
            elif f.default is _MISSING and f.default_factory is _MISSING:
                doc = f" ({f.metadata['doc']})" if f.metadata.get("doc") else ""
                self.fail(f"{key}: required key is missing; accepted: {accepted(hints[name], f.metadata)}{doc}")
            else:
                continue
            kwargs[name] = self.value(value, hints[name], prefix if name == rest else key, f.metadata)
        try:
            return cls(**kwargs)
        except (E2escanError, ValueError, TypeError) as exc:
            message = str(exc)
            if prefix and message.startswith(tuple(f"{n}{sep}" for n in fields for sep in (" =", ":", "[", "."))):
                message = f"{prefix}.{message}"  # the class named one of its own fields
            elif prefix and not message.startswith(tuple(prefix + sep for sep in (".", ":", " ", "["))):
                message = f"{prefix}: {message}"
            kind = type(exc) if isinstance(exc, self.error) else self.error
            raise kind(message) from None

    def typed_table(self, f: dataclasses.Field[Any], value: Any, key: str, before: dict[str, Any],
                    fields: Mapping[str, dataclasses.Field[Any]]) -> Any:
        """A table whose dataclass is chosen by the fields before it (e.g. a protocol's ``Params``)."""
        siblings = {n: before.get(n, g.default) for n, g in fields.items() if n in before or g.default is not _MISSING}
        try:
            cls = f.metadata["type_from"](siblings)
        except E2escanError as exc:
            self.fail(f"{key}: {exc}")
        return self.table(cls, value, key)

    def value(self, value: Any, tp: Any, key: str, meta: Mapping[str, Any]) -> Any:
        converted = self.convert(value, tp, key, meta)
        rng = meta.get("range")
        if rng is not None and converted is not None:
            lo, hi = rng
            items = enumerate(converted) if isinstance(converted, tuple) else [(None, converted)]
            for i, v in items:
                if isinstance(v, (int, float)) and ((lo is not None and v < lo) or (hi is not None and v > hi)):
                    self.fail(invalid(key if i is None else f"{key}[{i}]", v, "out of range", accepted(tp, meta)))
        choices = _choices(meta)
        if choices is not None and converted not in choices:
            self.fail(invalid(key, value, "not one of the choices", accepted(tp, meta)))
        check = meta.get("check")
        problem = check(converted) if check is not None else None
        if problem:
            self.fail(invalid(key, value, problem, accepted(tp, meta)))
        return converted

    def convert(self, value: Any, tp: Any, key: str, meta: Mapping[str, Any]) -> Any:
        """``value`` as annotation ``tp`` (ints widen to floats, lists become tuples), or a wrong-type error."""
        origin = typing.get_origin(tp)
        if origin in (types.UnionType, typing.Union):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if value is None and len(members) < len(typing.get_args(tp)):
                return None
            if len(members) == 1:
                return self.convert(value, members[0], key, meta)
            for arg in members:
                try:
                    return self.convert(value, arg, key, meta)
                except ConfigError:
                    continue
            self.wrong_type(value, tp, key, meta)
        if tp is Any:
            return value
        if origin is typing.Literal:
            if not any(value == v and type(value) is type(v) for v in typing.get_args(tp)):
                self.fail(invalid(key, value, "not one of the choices", accepted(tp, meta)))
            return value
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                self.wrong_type(value, tp, key, meta)
            return self.table(tp, value, key)  # type: ignore[arg-type]
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                self.wrong_type(value, tp, key, meta)
            args = typing.get_args(tp)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self.convert(v, args[0], f"{key}[{i}]", {}) for i, v in enumerate(value))
            if len(args) != len(value):
                self.fail(invalid(key, value, f"{len(value)} items", accepted(tp, meta)))
            return tuple(self.convert(v, a, f"{key}[{i}]", {}) for i, (v, a) in enumerate(zip(value, args)))
        if origin in (dict, Mapping) or tp in (dict, Mapping):
            if not isinstance(value, Mapping):
                self.wrong_type(value, tp, key, meta)
            vt = typing.get_args(tp)[1] if typing.get_args(tp) else Any
            return {k: self.convert(v, vt, _dotted(key, k), {}) for k, v in value.items()}
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.wrong_type(value, tp, key, meta)
            return float(value)
        if tp in (int, bool, str):
            if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
                self.wrong_type(value, tp, key, meta)
            return value
        raise TypeError(f"unsupported config type {tp!r} at {key}")

    def wrong_type(self, value: Any, tp: Any, key: str, meta: Mapping[str, Any]) -> NoReturn:
        self.fail(invalid(key, value, f"wrong type ({type_name(type(value))})", accepted(tp, meta)))


def _dotted(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def finite(value: float) -> str | None:
    """A ``check``: refuses NaN and infinities."""
    return None if math.isfinite(value) else "not a finite number"


def nonempty(value: Any) -> str | None:
    """A ``check``: refuses an empty (or blank) string, list or table."""
    return "empty" if not (value.strip() if isinstance(value, str) else value) else None


# --------------------------------------------------------------------------- files and plain data


def load_toml(path: str | Path, *, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """The parsed TOML file; unreadable or invalid files raise ``error`` naming the path."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder; give a TOML file or the name of a shipped scenario") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a text file (not UTF-8 at byte {exc.start}); a TOML file is expected") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain dicts and lists (for TOML, manifests and summaries).

    A field declared with ``serialise`` is written by that function; one whose metadata says
    ``omit_when_none`` is left out while it is ``None``.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value, serialise = getattr(obj, f.name), f.metadata.get("serialise")
            if value is None and f.metadata.get("omit_when_none"):
                continue
            out[f.name] = to_dict(serialise(value) if serialise is not None else value)
        return out
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def to_toml(data: Mapping[str, Any]) -> str:
    """A nested table (e.g. :func:`to_dict` of a scenario) as TOML text that :func:`load_toml` reads back.

    Top-level values first, then one ``[section]`` per table with its sub-tables and arrays of tables;
    ``None`` is left out (TOML has no null: an omitted key takes its default).
    """
    lines = [f"{k} = {_toml_text(v)}" for k, v in data.items() if not isinstance(v, Mapping) and v is not None]
    for section, table in data.items():
        if not isinstance(table, Mapping):
            continue
        lines.append(f"\n[{section}]")
        nested = {}
        for k, v in table.items():
            if isinstance(v, Mapping) or isinstance(v, list) and v and isinstance(v[0], Mapping):
                nested[k] = v
            elif v is not None:
                lines.append(f"{k} = {_toml_text(v)}")
        for k, v in nested.items():
            for item in [v] if isinstance(v, Mapping) else v:
                lines.append(f"\n[{section}.{k}]" if isinstance(v, Mapping) else f"\n[[{section}.{k}]]")
                lines.extend(f"{kk} = {_toml_text(vv)}" for kk, vv in item.items() if vv is not None)
    return "\n".join(lines) + "\n"


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, doc with what is accepted) for every field of an ``option(...)`` dataclass tree.

    An optional table (``None`` unless given) is listed with its own fields under its key; a table typed
    by its siblings (``type_from``, e.g. a protocol's parameters) is shown as ``{}``.
    """
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        factory: Any = f.default_factory
        default = f.default if f.default is not _MISSING else factory() if factory is not _MISSING else "(required)"
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            rows.extend(describe(type(default), key + "."))
            continue
        doc = f.metadata.get("doc", "")
        if f.metadata.get("type_from"):
            default = {}
        choices = _choices(f.metadata, hints.get(f.name))
        if choices:
            doc += "; allowed: " + ", ".join(repr(c) for c in choices)
        if f.metadata.get("range"):
            lo, hi = f.metadata["range"]
            doc += f"; range: {'-inf' if lo is None else lo} to {'inf' if hi is None else hi}"
        rows.append((key, default if default == "(required)" else repr(to_dict(default)), doc))
        table = [a for a in typing.get_args(hints.get(f.name)) if isinstance(a, type) and dataclasses.is_dataclass(a)]
        if default is None and table:  # an optional table: its fields, as they apply when it is given
            rows.extend(describe(table[0], key + "."))
    return rows


def set_path(data: dict[str, Any], dotted: str, value: Any, *, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A copy of nested ``data`` with ``dotted`` (e.g. ``protocol.params.threshold``) set."""
    out = copy.deepcopy(data)
    node = out
    parts = dotted.split(".")
    for i, p in enumerate(parts[:-1]):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            here = ".".join(parts[: i + 1])
            raise error(invalid(here, node, f"a value, so {dotted!r} cannot be set", "a table"))
    node[parts[-1]] = value
    return out
