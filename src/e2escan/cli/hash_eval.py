"""``e2escan hash-eval``: distance distributions, ROC and FPR thresholds of perceptual hashers."""

from __future__ import annotations

import argparse
import time

from ..errors import ConfigError
from ..hashing.eval_report import write_hash_eval
from ..hashing.evaluation import evaluate_hashers
from ..hashing.hashers import BUILT_IN_HASHERS, parse_hasher_specs
from ..images import open_corpus, parse_transform_set
from ..report import format_table


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    try:
        return int(width), int(height if sep else width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 256x256), got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hash-eval",
        help="measure how perceptual hashes separate transformed copies from unrelated images",
        description="Hash every corpus image and its transformed copies; write distance histograms, ROC, "
        "thresholds for target false-positive rates (measured, and extrapolated by a conservative exponential and a central normal tail fit), figures and a summary.",
    )
    p.add_argument("--corpus", required=True, metavar="DIR|synthetic:N|skimage",
                   help="a directory of JPEG/PNG/WebP files, synthetic:N seeded synthetic images, or skimage "
                        "(19 photographs bundled with scikit-image; extra 'photos')")
    p.add_argument("--hasher", default=",".join(BUILT_IN_HASHERS), metavar="NAME[,NAME...]",
                   help=f"hashers, optionally with parameters (phash:hash_size=16,pdq); default {','.join(BUILT_IN_HASHERS)}")
    p.add_argument("--transforms", default="default", metavar="SET|CHAIN[;...]",
                   help="';'-separated transform sets (default, quick) and chains (jpeg:quality=50|crop:fraction=0.9)")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus, transforms and pair sampling")
    p.add_argument("--workers", type=int, default=1, help="worker processes; 0 = every core (default 1)")
    p.add_argument("--image-size", type=_size, default=(256, 256), metavar="WxH",
                   help="size of synthetic images (default 256x256; ignored for directories)")
    p.add_argument("--max-unrelated-pairs", type=int, default=2_000_000, metavar="N",
                   help="sample at most N unrelated pairs (default 2,000,000; all pairs if fewer)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG/SVG figures")
    p.add_argument("--force", action="store_true", help="clear a --out folder that holds other results first")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..outputs import claim_output_dir

    started = time.perf_counter()
    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0 = every core), got {args.workers}")
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: must be >= 0")
    if args.max_unrelated_pairs < 1:
        raise ConfigError(f"--max-unrelated-pairs {args.max_unrelated_pairs}: must be >= 1")
    corpus = open_corpus(args.corpus, seed=args.seed, size=args.image_size)
    hashers = parse_hasher_specs(args.hasher)
    chains = parse_transform_set(args.transforms)
    identity = {
        "corpus": args.corpus, "hashers": [h.spec for h in hashers], "transforms": [c.spec for c in chains],
        "seed": args.seed, "image_size": list(args.image_size), "max_unrelated_pairs": args.max_unrelated_pairs,
        "figures": not args.no_figures,
    }  # fmt: skip
    target = claim_output_dir(args.out, command="hash-eval", identity=identity, force=args.force)
    result = evaluate_hashers(
        corpus, hashers, chains, seed=args.seed, workers=args.workers or None,
        max_unrelated_pairs=args.max_unrelated_pairs, progress=None,
    )  # fmt: skip
    config = {
        "corpus": args.corpus, "hashers": [h.spec for h in hashers], "transforms": [c.spec for c in chains],
        "seed": args.seed, "workers": args.workers, "image_size": list(args.image_size),
        "max_unrelated_pairs": args.max_unrelated_pairs,
    }  # fmt: skip
    target.prepare()
    paths = write_hash_eval(result, args.out, command="e2escan hash-eval", started=started, config=config,
                            figures=not args.no_figures)  # fmt: skip
    headers, rows = result.table(1e-6)
    print(format_table(rows, headers, f"{result.corpus}: {result.n_images} images, {len(chains)} transforms, "
                                      f"{result.per_hasher[0].n_unrelated:,} unrelated pairs"))
    for note in result.notes(1e-6):
        print(note)
    if result.skipped:
        print(f"skipped {len(result.skipped)} file(s); reasons in summary.json, first: "
              f"{result.skipped[0].name}: {result.skipped[0].reason}")
    print(f"wrote {len(paths)} files to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0
