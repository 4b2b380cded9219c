"""``e2escan protocols``: list the registered matching protocols, one line each."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "protocols",
        help="list the matching protocols (name, threshold, what the server learns)",
        description="List the registered matching protocols, one line each: the built-ins (specifications in "
        "protocols/<name>.md, presets in protocols/<name>.toml) and installed plugins (entry-point group "
        "e2escan.protocols), marked [plugin <distribution>].",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..protocols import PROTOCOLS, origin

    rows = [
        {
            "name": p.name,
            "summary": p.summary,
            "spec": p.spec,
            "origin": origin(p.name),
            "parameters": sorted(p.Params().to_dict()),
        }
        for p in PROTOCOLS.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        mark = "" if r["origin"] == "built-in" else f"  [{r['origin']}]"
        print(f"{r['name']:<{width}}  {r['summary']}{mark}")
    return 0
