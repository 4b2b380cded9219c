"""Every subcommand describes itself; every option has help text and states its default."""

from __future__ import annotations

import argparse

from e2escan.cli import build_parser


def walk(parser: argparse.ArgumentParser, name: str):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from walk(child, f"{name} {child_name}".strip())


def test_every_command_and_option_is_documented():
    problems = []
    for name, parser in walk(build_parser(), ""):
        if name and not parser.description:
            problems.append(f"{name}: no description")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            if not action.help:
                problems.append(f"{name} {action.option_strings or action.dest}: no help")
            elif (action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS)
                  and "default" not in action.help):
                problems.append(f"{name} {action.option_strings}: default {action.default!r} not stated")
    assert not problems, problems
