"""``e2escan scenarios``: the shipped scenario files, one line each."""

from __future__ import annotations

import argparse

from ..report import format_table, terminal_width
from ..sim.scenario import Scenario, describe, shipped_scenarios_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenarios", help="list the shipped scenarios (or --fields: every scenario field)",
                       description="List the shipped scenarios in simulator/, one line each; with --fields, every "
                                   "scenario field with its type, default, allowed values and meaning.")
    p.add_argument("--fields", action="store_true", help="list every scenario field with its default and meaning")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.fields:
        print(format_table(describe(), ["key", "default", "meaning"], width=terminal_width()))
        return 0
    rows = []
    for path in sorted(shipped_scenarios_dir().glob("*.toml")):
        s = Scenario.load(path)
        t = s.protocol.params.to_dict().get("threshold", "-")
        rows.append((path.stem, s.protocol.name, str(t), s.hasher.name, s.population.accounts, s.days, s.description))
    print(format_table(rows, ["scenario", "protocol", "t", "hasher", "accounts", "days", "description"],
                       width=terminal_width()))
    return 0
