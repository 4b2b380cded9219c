"""``e2escan run [SCENARIO]``: simulate a scenario and write its results folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import to_dict
from ..outputs import claim_output_dir
from ..report.summary import format_summary
from ..sim.runner import run_scenario, scenario_digest
from ..sim.scenario import Scenario, resolve_scenario, validate_components


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="simulate a scenario (default: the quick start) and write its results",
        description="Simulate a scenario through the real messenger, hashing and matching protocol.",
    )
    p.add_argument("scenario", nargs="?", default=None,
                   help="a scenario file or the name of a shipped one (default: quickstart; see `e2escan scenarios`)")
    p.add_argument("--out", metavar="DIR",
                   help="results folder (default: results/<scenario name>-<digest of the effective scenario>, so a "
                        "changed scenario lands beside the old results and an identical rerun reuses its folder); "
                        "a folder holding a different run is refused unless --force or --resume")
    p.add_argument("--seed", type=int, help="overrides the scenario's `seed` field")
    p.add_argument("--replicates", type=int, help="overrides the scenario's `replicates` field")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override any scenario field, e.g. --set protocol.params.threshold=10 (value parsed as TOML)")
    p.add_argument("--resume", action="store_true", help="keep finished replicates in --out and run the rest")
    p.add_argument("--force", action="store_true", help="clear a --out folder that holds other results first")
    p.add_argument("--no-cache", action="store_true", help="do not use the on-disk hash cache")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.set_defaults(func=run)


def default_out(scenario: Scenario) -> Path:
    """``results/<name>-<first 8 hex digits of the effective scenario's digest>``."""
    return Path("results") / f"{scenario.name}-{scenario_digest(scenario)[:8]}"


def legacy_identity(path: Path):
    """The identity of a run folder written before output claims: its ``scenario.toml``."""
    import tomllib

    from ..errors import E2escanError

    try:
        return to_dict(Scenario.from_dict(tomllib.loads((path / "scenario.toml").read_text())))
    except (OSError, ValueError, E2escanError):  # not a run folder, or an unreadable one: foreign files
        return None


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
    validate_components(scenario)  # every input is checked before the output folder is touched
    if not args.no_cache:
        from ..hashing.cache import HashCache, default_cache_dir

        HashCache(default_cache_dir() / "hashes.sqlite", "probe").close()  # a clear error now, not mid-run
    out = Path(args.out) if args.out else default_out(scenario)
    claim_output_dir(out, command="run", identity=to_dict(scenario), force=args.force, resume=args.resume,
                     legacy=legacy_identity).prepare()

    def bar(rep: int, label: str):
        from ..progress import progress_bar

        if scenario.engine == "statistical":  # the statistical path reports innocent accounts sampled
            innocent = scenario.population.accounts - round(scenario.population.offender_share * scenario.population.accounts)
            return progress_bar(innocent, label, "accounts", leave=False)
        expected = int(scenario.population.accounts * scenario.traffic.messages_per_day * scenario.days)
        return progress_bar(expected, label, "messages", estimate=scenario.traffic.distribution == "poisson",
                            leave=False)

    print(f"e2escan run: {scenario.name} ({path})", file=sys.stderr)
    if args.resume:
        done = sum((out / "runs" / f"rep-{r:03d}" / "summary.json").is_file() for r in range(scenario.replicates))
        print(f"resuming: {done} of {scenario.replicates} replicates already finished in {out}/ are reused",
              file=sys.stderr)
    summary = run_scenario(scenario, out, resume=args.resume, progress_factory=bar,
                           cache_dir=None if args.no_cache else "default",
                           command=args.command_line)
    from ..report.html import write_report

    write_report(out)
    if args.json:
        import json

        print(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        print(format_summary(summary))
        print(f"\nresults: {out}/ (report.html, summary.json, metrics.csv, daily.csv, leakage.csv, costs.csv, figures, "
              "manifest.json)")
    return 0
