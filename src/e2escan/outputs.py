"""Output folders that are never silently lost: checked before anything is written, claimed when used.

Every command that writes a results folder calls :func:`claim_output_dir`
*after* validating all of its inputs and *before* writing anything. The folder
is accepted when it is new or empty, or when it holds results of the same
command with the same identity (rerunning an identical scenario is idempotent,
and ``--resume`` continues it). Anything else is refused with one line that
names what differs, unless ``force`` is given, which clears the folder first.
An ``--out`` that is a file, lies under a file or cannot be written is refused
the same way, before any work starts.

The claim is a small JSON file, ``.e2escan-output.json``, holding the command
and its identity (a flat mapping of the fields that define the results, e.g.
the effective scenario with its seed).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

CLAIM = ".e2escan-output.json"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are kept as values (JSON-normalised)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.loads(json.dumps(value, default=str))
    return out


def differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 3) -> str:
    """``"seed: 1 -> 2; days: 4 -> 1"`` for the first ``limit`` differing fields (sorted by name)."""
    keys = sorted(set(old) | set(new))
    diff = [k for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>")]
    parts = [f"{k}: {_short(old.get(k, '<absent>'))} -> {_short(new.get(k, '<absent>'))}" for k in diff[:limit]]
    more = f" (and {len(diff) - limit} more)" if len(diff) > limit else ""
    return "; ".join(parts) + more


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def check_writable(path: Path, flag: str = "--out") -> None:
    """Refuse a path that is a file, lies under a file, or whose nearest existing folder is not writable."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file, not a folder")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{flag} {path}: {probe} is a file, so the folder cannot be created")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {probe} is not writable")


def _dangerous(path: Path) -> bool:
    """Folders ``--force`` must never clear: the working directory, its ancestors, the home folder, the root."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    return resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve() or resolved.parent == resolved


@dataclass(frozen=True)
class OutputDir:
    """A checked output folder; :meth:`prepare` clears it (under ``force``), creates it and writes the claim."""

    path: Path
    command: str
    identity: dict[str, Any]
    clear: bool

    def prepare(self) -> Path:
        try:
            if self.clear and self.path.is_dir():
                for child in self.path.iterdir():
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / CLAIM).write_text(json.dumps({"command": self.command, "identity": self.identity},
                                                      indent=1, sort_keys=True) + "\n")
        except OSError as exc:
            raise ConfigError(f"--out {self.path}: cannot write there ({exc.strerror or exc})") from None
        return self.path


def read_claim(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / CLAIM).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("identity"), dict):
        return None
    return data


def claim_output_dir(
    out: str | os.PathLike[str],
    *,
    command: str,
    identity: Mapping[str, Any],
    force: bool = False,
    resume: bool = False,
    legacy: Callable[[Path], Mapping[str, Any] | None] | None = None,
) -> OutputDir:
    """Check ``out`` for ``command`` with ``identity`` (see the module docstring); writes nothing.

    ``legacy`` reads the identity of a folder written before claims existed
    (e.g. from its ``scenario.toml``), or returns ``None``.
    """
    path = Path(out)
    ident = flatten(identity)
    check_writable(path)
    if force and resume:
        raise ConfigError("--force and --resume: choose one (--force clears the folder, --resume continues it)")
    if force and _dangerous(path):
        raise ConfigError(f"--out {path}: --force would clear the working directory, a parent of it or the home folder")
    if not path.is_dir() or not any(path.iterdir()) or force:  # new, empty, or to be cleared
        return OutputDir(path, command, ident, clear=force)
    claim = read_claim(path)
    if claim is None and legacy is not None:
        old = legacy(path)
        if old is not None:
            claim = {"command": command, "identity": flatten(old)}
    if claim is None:
        raise ConfigError(f"--out {path}: the folder holds files that are not results of `e2escan {command}`; "
                          "choose an empty or new folder, or pass --force to clear it")
    if claim.get("command") != command:
        raise ConfigError(f"--out {path}: holds results of `e2escan {claim.get('command')}`, not of `e2escan {command}`; "
                          "choose another folder, or pass --force to clear it")
    if claim["identity"] != ident:
        how = "--force to clear it" if not resume else "drop --resume and pass --force to clear it"
        raise ConfigError(f"--out {path}: holds results of a different {command} ({differences(claim['identity'], ident)}); "
                          f"choose another folder, or {how}")
    return OutputDir(path, command, ident, clear=False)
