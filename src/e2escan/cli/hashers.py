"""``e2escan hashers``: list the registered perceptual hashers, one line each."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "hashers",
        help="list the perceptual hashers (name, bits, parameters, built-in or plugin)",
        description="List the registered perceptual hashers: the built-ins and installed plugins "
        "(entry-point group e2escan.hashers), marked [plugin <distribution>].",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hashing import HASHERS, hasher_origin

    rows: list[dict[str, Any]] = []
    for name, cls in HASHERS.items():
        hasher = cls()
        rows.append({"name": name, "bits": hasher.bits, "parameters": hasher.params(), "origin": hasher_origin(name)})
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["parameters"].items()) or "no parameters"
        mark = "" if r["origin"] == "built-in" else f"  [{r['origin']}]"
        print(f"{r['name']:<{width}}  {r['bits']:>4} bits  {params}{mark}")
    return 0
