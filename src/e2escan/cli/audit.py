"""``e2escan audit NAME|--all``: the leakage audit of one or every registered protocol."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import ConfigError

LEAK_EXIT = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="check that a protocol's server learns nothing beyond its declared LEAKAGE",
        description="Run a protocol for real (clients, relay, match server; read back from the ServerView) and its "
        "ideal functionality built from LEAKAGE on one seeded ground truth, and put both through one battery of "
        "distinguishers (voucher bytes, equality within and across accounts, linear relations among shares, "
        "counts, relay sizes and timing). Exits 3 when an undeclared leak is found, naming the distinguisher "
        "and the field.",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("name", nargs="?", metavar="NAME", help="a registered protocol (see `e2escan protocols`)")
    target.add_argument("--all", action="store_true", help="audit every registered protocol")
    p.add_argument("--vouchers", type=int, default=4000, metavar="N",
                   help="vouchers per audit, all below the threshold (default 4000)")
    p.add_argument("--synthetic-probability", type=float, action="append", metavar="P", dest="probabilities",
                   help="synthetic-voucher probability of the threshold variants; repeat for several "
                   "(default: 0.01 and 0.5); overrides protocol.params.synthetic_probability")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a protocol parameter (integer, float, or text), e.g. --set threshold=6")
    p.add_argument("--seed", type=int, default=0, help="seed of the traffic plan and the ideal world (default 0)")
    p.add_argument("--alpha", type=float, default=0.001,
                   help="level of the whole audit: max-T adjusted over every family and feature (default 0.001)")
    p.add_argument("--min-share", type=float, default=None, metavar="PHI",
                   help="refuse to run unless a leak touching this share of accounts is found with power 0.9 "
                   "(e.g. 0.05 needs about 4,000 vouchers); without it the table states the share the run can find")
    p.add_argument("--permutations", type=int, default=1999, help="sign-flip permutations per family (default 1999)")
    p.add_argument("--out", metavar="DIR", help="write audit.csv, audit.png/.svg and manifest.json here")
    p.add_argument("--force", action="store_true", help="clear a non-empty --out folder first")
    p.set_defaults(func=run)


def _parse_set(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        value: object = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        out[key.strip()] = value
    return out


def run(args: argparse.Namespace) -> int:
    from ..audit import (
        audit_protocol,
        check_permutations,
        check_power,
        resolve_protocol,
    )
    from ..protocols import PROTOCOLS

    started = time.perf_counter()
    names = list(PROTOCOLS) if args.all else [args.name]
    protocols = [resolve_protocol(n) for n in names]
    probabilities = args.probabilities or [0.01, 0.5]
    for p in probabilities:
        if not 0 <= p < 1:
            raise ConfigError(f"--synthetic-probability {p}: must lie in [0, 1)")
    check_permutations(args.permutations, args.alpha)
    overrides = _parse_set(args.set)
    check_power(args.vouchers, alpha=args.alpha, min_share=args.min_share)
    for proto in protocols:  # parameters are checked for every protocol before anything runs
        from ..audit import _params_for

        for p in probabilities:
            _params_for(proto, p, overrides)
    out = None
    if args.out:  # checked (and claimed) after every parameter, before any protocol runs
        from ..outputs import claim_output_dir

        out = claim_output_dir(args.out, command="audit", force=args.force, identity={
            "protocols": names, "probabilities": probabilities, "vouchers": args.vouchers, "seed": args.seed,
            "alpha": args.alpha, "min_share": args.min_share, "permutations": args.permutations,
            "set": sorted(args.set)})

    rows, reports = [], []
    for proto in protocols:
        has_synthetic = "synthetic_probability" in proto.Params().to_dict()
        for p in probabilities if has_synthetic else [None]:
            print(f"auditing {proto.name}" + ("" if p is None else f" at synthetic_probability {p:g}") + " ...",
                  file=sys.stderr, flush=True)
            report = audit_protocol(proto, vouchers=args.vouchers, synthetic_probability=p, seed=args.seed,
                                    alpha=args.alpha, min_share=args.min_share, overrides=overrides,
                                    permutations=args.permutations)
            reports.append(report)
            rows.extend(report.rows())

    from ..report.audit import audit_table

    print(audit_table(rows))
    share = max(r.detectable_share for r in reports)
    print(f"Power: with about {min(r.accounts for r in reports):,} accounts per audit, a leak is found with "
          f"probability 0.9 when it shifts one feature in at least {share:.1%} of the accounts (alpha = {args.alpha}, "
          "max-T over the battery); use more --vouchers to find rarer ones.")
    if out is not None:
        _write(out.prepare(), args, rows, reports, started)
        print(f"wrote audit.csv, audit.png, audit.svg and manifest.json to {out}")
    leaks = [(rep.protocol, rep.synthetic_probability, r) for rep in reports for r in rep.leaks]
    for protocol, p, r in leaks:
        at = "" if p is None else f" at synthetic_probability {p:g}"
        print(f"e2escan: LEAK in {protocol}{at}: distinguisher {r.family!r}, feature {r.feature!r} on field "
              f"{r.field!r} (advantage {r.advantage:.3f}, chance {r.chance_advantage:.3f}, p = {r.p_value:.2g})",
              file=sys.stderr)
    return LEAK_EXIT if leaks else 0


def _write(out: Path, args: argparse.Namespace, rows, reports, started: float) -> None:
    from ..report.audit import audit_figure
    from ..results import write_csv, write_manifest

    write_csv(out / "audit.csv", rows)
    audit_figure(rows, out)
    write_manifest(
        out,
        command="e2escan audit " + " ".join(sys.argv[2:]),
        seed=args.seed,
        config={
            "protocols": sorted({r.protocol for r in reports}),
            "vouchers": args.vouchers,
            "synthetic_probabilities": args.probabilities or [0.01, 0.5],
            "alpha": args.alpha,
            "min_share": args.min_share,
            "permutations": args.permutations,
            "overrides": _parse_set(args.set),
        },
        started=started,
        extra={"params": {f"{r.protocol}@{r.synthetic_probability}": dict(r.params) for r in reports},
               "seconds": {f"{r.protocol}@{r.synthetic_probability}": dict(r.seconds) for r in reports},
               "passed": all(r.passed for r in reports)},
    )
