"""``e2escan report DIR``: write a self-contained report.html for a results folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write report.html for a results folder (run, sweep, compare, hash-eval or paper)",
        description="Write DIR/report.html: the headline table, how to read it, every figure inline, the scenario "
                    "and the provenance, in one file with no script or network reference (it can be emailed). "
                    "run, sweep, compare and papers reproduce write it themselves.",
    )
    p.add_argument("folder", metavar="DIR", help="a results folder written by e2escan")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report.html import write_report

    path = write_report(args.folder)
    print(f"written: {path}")
    return 0
