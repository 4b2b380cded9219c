"""``e2escan compare DIR1 DIR2``: headline metrics of two results folders side by side."""

from __future__ import annotations

import argparse

from ..report.summary import compare, compare_runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare `e2escan run` results folders (prints and plots)",
                       description="Headline metrics of two or more runs side by side: the first (A) against each "
                                   "other, with the difference and a stated two-sided test per rate (McNemar for "
                                   "same-seed runs, Fisher otherwise).")
    p.add_argument("a", metavar="DIR1", help="the first run's results folder (A, the baseline)")
    p.add_argument("b", metavar="DIR2", nargs="+", help="one or more other runs' results folders (B, C, ...)")
    p.add_argument("--out", metavar="DIR", help="where to write compare.csv and compare.png/svg (default: DIR2/compare); "
                   "a folder holding other results is refused unless --force")
    p.add_argument("--force", action="store_true", help="clear a --out folder that holds other results first")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..outputs import claim_output_dir

    for d in (args.a, *args.b):
        if not (Path(d) / "summary.json").is_file() or not (Path(d) / "scenario.toml").is_file():
            raise ConfigError(f"{d}: not an `e2escan run` results folder (no summary.json and scenario.toml); "
                              "compare takes run folders")
    out = args.out or f"{args.b[-1]}/compare"
    identity: dict[str, str | list[str]]
    if len(args.b) == 1:
        identity = {"a": str(Path(args.a).resolve()), "b": str(Path(args.b[0]).resolve())}
    else:
        identity = {"a": str(Path(args.a).resolve()), "b": [str(Path(b).resolve()) for b in args.b]}
    claim_output_dir(out, command="compare", identity=identity, force=args.force).prepare()
    if len(args.b) == 1:
        table, _ = compare(args.a, args.b[0], out)
    else:
        table = compare_runs(args.a, args.b, out)
    from ..report.html import write_report

    write_report(out)
    print(table)
    print(f"\nwritten: {out}/compare.csv, compare.png, compare.svg, report.html")
    return 0
