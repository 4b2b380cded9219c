"""``e2escan papers``: list, regenerate and check the reproduced figures and tables in ``papers/``."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from .. import reproduction
from ..errors import ConfigError
from ..report import format_table, terminal_width

_MAX_REPORTED_PER_FILE = 20


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--papers-dir",
        metavar="DIR",
        help=f"the papers folder (default: ${reproduction.PAPERS_DIR_ENV}, else papers/ of the source checkout)",
    )
    parser = sub.add_parser(
        "papers",
        help="list, regenerate and check reproduced figures and tables",
        description="Reproduced figures and tables from papers: each lives in papers/NAME/ "
        "with paper.toml, reproduce.py and expected/{quick,full}/*.csv.",
    )

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)
    actions = parser.add_subparsers(dest="papers_command", metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="show every reproduced figure or table",
                                 description="Every reproduction in papers/: its source, the claim it checks, "
                                             "whether it has a quick mode, and its full run's time and memory.")
    listing.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")
    listing.set_defaults(func=run_list)

    rep = actions.add_parser(
        "reproduce",
        parents=[common],
        help="regenerate one paper (or all) into a results folder",
        description="Regenerate a reproduced figure or table. Exit status 1 if a check fails.",
    )
    rep.add_argument("name", nargs="?", metavar="NAME", help="the paper folder name (see 'e2escan papers list')")
    rep.add_argument("--all", action="store_true", help="every paper (with --quick: every paper that has a quick mode)")
    rep.add_argument("--quick", action="store_true", help="the quick mode (a smaller run, checked in the test suite)")
    rep.add_argument(
        "--check",
        action="store_true",
        help="compare the CSVs with papers/NAME/expected/<quick|full>/ within the paper's tolerance",
    )
    rep.add_argument(
        "--update-expected",
        action="store_true",
        help="maintainers: copy the produced CSVs into papers/NAME/expected/<quick|full>/ (review the diff)",
    )
    rep.add_argument(
        "--out",
        metavar="DIR",
        help="results folder (default results/papers/NAME[-quick]); with --all, the parent of one folder per paper",
    )
    rep.add_argument(
        "--seed", type=int, default=0, help="seed passed to reproduce() (default 0; expected outputs use 0)"
    )
    rep.add_argument("--force", action="store_true",
                     help="clear a results folder that holds other results first (default: refuse)")
    rep.set_defaults(func=run_reproduce)


def run_list(args: argparse.Namespace) -> int:
    papers_dir = reproduction.locate_papers_dir(args.papers_dir)
    papers = reproduction.discover_papers(papers_dir)
    if args.json:
        print(json.dumps([spec.as_dict() for spec in papers], indent=2))
        return 0
    if not papers:
        print(f"No papers in {papers_dir} (a paper is a folder with a paper.toml).")
        return 0
    rows = [(s.name, "yes" if s.quick else "no", s.full_runtime, s.full_memory, s.title) for s in papers]
    print(format_table(rows, ["paper", "quick", "full run", "full memory", "title"], f"Reproductions in {papers_dir}",
                       width=terminal_width()))
    for spec in papers:
        print()
        print(spec.name)
        for label, text in (("source", spec.source), ("claim", spec.claim)):
            print(textwrap.fill(text, width=terminal_width(), initial_indent=f"  {label + ':':<8}",
                                subsequent_indent=" " * 10))
    return 0


def _selected(args: argparse.Namespace, papers_dir: Path) -> list[reproduction.PaperSpec]:
    if args.all == bool(args.name):
        raise ConfigError("give exactly one of NAME or --all to 'e2escan papers reproduce'")
    if args.check and args.update_expected:
        raise ConfigError("--check and --update-expected cannot be combined (a fresh copy always matches itself)")
    if args.name:
        return [reproduction.find_paper(papers_dir, args.name)]
    papers = reproduction.discover_papers(papers_dir)
    if args.quick:
        for spec in papers:
            if not spec.quick:
                print(f"skipping {spec.name}: no quick mode")
        papers = [spec for spec in papers if spec.quick]
    return papers


def _out_dir(args: argparse.Namespace, name: str) -> Path:
    if args.out is None:
        return reproduction.default_out_dir(name, args.quick)
    if args.all:
        return Path(args.out) / (f"{name}-quick" if args.quick else name)
    return Path(args.out)


def _print_mismatches(report: reproduction.CheckReport) -> None:
    shown: dict[str, int] = {}
    hidden: dict[str, int] = {}
    for mismatch in report.mismatches:
        if shown.get(mismatch.file, 0) < _MAX_REPORTED_PER_FILE:
            print("  " + mismatch.describe())
            shown[mismatch.file] = shown.get(mismatch.file, 0) + 1
        else:
            hidden[mismatch.file] = hidden.get(mismatch.file, 0) + 1
    for file, count in hidden.items():
        print(f"  ... and {count} more differences in {file}")


def run_reproduce(args: argparse.Namespace) -> int:
    papers_dir = reproduction.locate_papers_dir(args.papers_dir)
    papers = _selected(args, papers_dir)
    if not papers:
        print("No papers to reproduce.")
        return 0
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: must be >= 0")
    from ..outputs import claim_output_dir

    # Every results folder is checked before any paper runs.
    targets = {spec.name: claim_output_dir(_out_dir(args, spec.name), command="papers reproduce", force=args.force,
                                           identity={"paper": spec.name, "mode": reproduction.mode_name(args.quick),
                                                     "seed": args.seed})
               for spec in papers}
    rows = []
    status = 0
    for spec in papers:
        out_dir = targets[spec.name].prepare()
        mode = reproduction.mode_name(args.quick)
        print(f"reproducing {spec.name} ({mode}) into {out_dir} ...", flush=True)
        try:
            from ..progress import Heartbeat

            with Heartbeat(f"reproducing {spec.name}"):
                run = reproduction.reproduce(spec, out_dir, quick=args.quick, seed=args.seed, check=args.check)
        except Exception as exc:  # one broken paper must not hide the others under --all
            if not args.all:
                raise
            print(f"  FAILED: {type(exc).__name__}: {exc}")
            rows.append((spec.name, mode, "-", "-", "run failed", str(out_dir)))
            status = 1
            continue
        verdict = "not run"
        if run.check is not None:
            if run.check.ok:
                verdict = f"passed ({run.check.cells_compared:,} cells)"
            else:
                count = len(run.check.mismatches)
                verdict = f"FAILED ({count} difference{'s' if count != 1 else ''})"
                status = 1
                print(f"  {spec.name}: differs from {run.check.expected_dir}:")
                _print_mismatches(run.check)
        from ..report.html import write_report

        write_report(run.out_dir)
        if args.update_expected:
            written = reproduction.update_expected(spec, run.out_dir, quick=args.quick)
            verdict = f"expected updated ({len(written)} files)"
            for path in written:
                print(f"  wrote {path}")
        rows.append(
            (spec.name, mode, f"{run.wall_time_s:.1f} s", f"{run.peak_memory_bytes / 2**20:.0f} MiB", verdict, str(out_dir))
        )
    print()
    print(format_table(rows, ["paper", "mode", "time", "peak memory*", "check", "results"]))
    print("* peak resident memory of this process so far")
    return status
