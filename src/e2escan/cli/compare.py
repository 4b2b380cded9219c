"""``e2escan compare DIR1 DIR2``: headline metrics of two results folders side by side."""

from __future__ import annotations

import argparse

from ..sim.summary import compare


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare two `e2escan run` results folders (prints and plots)")
    p.add_argument("a", metavar="DIR1")
    p.add_argument("b", metavar="DIR2")
    p.add_argument("--out", metavar="DIR", help="where to write compare.csv and compare.png/svg (default: DIR2/compare)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out or f"{args.b}/compare"
    table, _ = compare(args.a, args.b, out)
    print(table)
    print(f"\nwritten: {out}/compare.csv, compare.png, compare.svg")
    return 0
