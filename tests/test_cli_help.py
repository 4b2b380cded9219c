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


def test_tables_fit_the_terminal_width():
    from e2escan.report import format_table

    rows = [("a", 1, "a long description " * 10), ("bb", 22, "short")]
    text = format_table(rows, ["key", "n", "meaning"], width=60)
    assert max(len(line) for line in text.splitlines()) <= 60 and "short" in text
    # Columns too wide for the width: one record per row, every line within it.
    wide = [("x" * 50, "y" * 50, "z" * 50)]
    text = format_table(wide, ["first", "second", "third"], width=60)
    assert max(len(line) for line in text.splitlines()) <= 60 and "second:" in text


def test_fields_list_allowed_values_and_attack_keys():
    from e2escan.sim.scenario import describe

    rows = {key: doc for key, _, doc in describe()}
    assert "allowed: 'faithful', 'statistical'" in rows["engine"]
    assert "attacks.evasion.min_distance" in rows and "attacks.poisoning" in rows
