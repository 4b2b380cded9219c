"""``e2escan <command>``: a thin layer that parses arguments and calls the library.

Each command lives in its own module with a ``register(subparsers)`` function
that adds its parser and sets ``func`` (called with the parsed namespace,
returning an exit code). Add a command by adding a module to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import E2escanError

# Module names under e2escan.cli, in the order they appear in --help.
COMMANDS: tuple[str, ...] = (
    "run",
    "sweep",
    "scenarios",
    "compare",
    "calibrate",
    "demo",
    "protocols",
    "hashers",
    "hash_eval",
    "papers",
    "audit",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="e2escan",
        description="Research simulator for client-side scanning in end-to-end encrypted messaging.",
    )
    parser.add_argument("--version", action="version", version=f"e2escan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    _show_defaults(parser)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's help ends with its default (where it has one and the text does not already say it)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _show_defaults(child)
        elif (action.help and action.option_strings and "default" not in action.help
              and not (action.default is None or action.default is False or action.default == argparse.SUPPRESS
                       or action.default == [])):
            action.help += " (default: %(default)s)"


def main(argv: Sequence[str] | None = None) -> int:
    import shlex

    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(words)
    args.command_line = "e2escan " + shlex.join(words)  # recorded in manifests
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except E2escanError as exc:
        print(f"e2escan: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `e2escan scenarios | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("e2escan: interrupted", file=sys.stderr)
        return 130
