"""``e2escan run [SCENARIO]``: simulate a scenario and write its results folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..sim.runner import run_scenario
from ..sim.scenario import Scenario, resolve_scenario
from ..sim.summary import format_summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="simulate a scenario (default: the quick start) and write its results",
        description="Simulate a scenario through the real messenger, hashing and matching protocol.",
    )
    p.add_argument("scenario", nargs="?", default=None,
                   help="a scenario file or the name of a shipped one (default: quickstart; see `e2escan scenarios`)")
    p.add_argument("--out", metavar="DIR", help="results folder (default: results/<scenario name>)")
    p.add_argument("--seed", type=int, help="overrides the scenario's `seed` field")
    p.add_argument("--replicates", type=int, help="overrides the scenario's `replicates` field")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override any scenario field, e.g. --set protocol.params.threshold=10 (value parsed as TOML)")
    p.add_argument("--resume", action="store_true", help="keep finished replicates in --out and run the rest")
    p.add_argument("--no-cache", action="store_true", help="do not use the on-disk hash cache")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.set_defaults(func=run)


def parse_override(text: str) -> tuple[str, object]:
    import tomllib

    from ..errors import ScenarioError

    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise ScenarioError(f"--set {text!r}: expected KEY=VALUE, e.g. protocol.params.threshold=10")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word is a string
    return key.strip(), parsed


def run(args: argparse.Namespace) -> int:
    path = resolve_scenario(args.scenario)
    scenario = Scenario.load(path)
    overrides = dict(parse_override(t) for t in args.set)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.replicates is not None:
        overrides["replicates"] = args.replicates
    if overrides:
        scenario = scenario.with_overrides(**overrides)
    out = Path(args.out) if args.out else Path("results") / scenario.name

    def bar(rep: int, label: str):
        from ..sim.traffic import TrafficPlanner  # noqa: F401  (keeps the import cost out of --help)

        expected = int(scenario.population.accounts * scenario.traffic.messages_per_day * scenario.days)
        return tqdm(total=expected, desc=label, unit="msg", file=sys.stderr, disable=None, leave=False)

    print(f"e2escan run: {scenario.name} ({path})", file=sys.stderr)
    summary = run_scenario(scenario, out, resume=args.resume, progress_factory=bar,
                           cache_dir=None if args.no_cache else "default")
    if args.json:
        import json

        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
        print(f"\nresults: {out}/ (summary.json, metrics.csv, daily.csv, leakage.csv, costs.csv, figures, manifest.json)")
    return 0
