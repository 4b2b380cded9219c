"""``e2escan calibrate``: measure the distance distributions the statistical path needs."""

from __future__ import annotations

import argparse

from ..hashing.hashers import parse_hasher_specs
from ..sim.calibration import calibrate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="calibrate the statistical path for one hasher (writes a JSON file)",
                       description="Measure a hasher's distances on seeded synthetic images (unrelated pairs and "
                                   "transformed copies) for the statistical path's false-match and recall model.")
    p.add_argument("--hasher", default="pdq", help="hasher name with optional parameters, e.g. phash:hash_size=8")
    p.add_argument("--transforms", default="none;jpeg:quality=80;resize:scale=0.5;crop:fraction=0.9",
                   help="';'-separated transformation chains to calibrate recall for")
    p.add_argument("--images", type=int, default=300, help="synthetic images (unrelated pairs: n(n-1)/2)")
    p.add_argument("--image-size", type=int, default=128, help="side of the square synthetic images, in pixels")
    p.add_argument("--encoding", choices=("png", "jpeg"), default="png",
                   help="attachment encoding applied before hashing (match the scenario's content.encoding)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic images and transforms")
    p.add_argument("--out", required=True, metavar="FILE", help="the calibration JSON file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file (default: refuse)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from ..errors import ConfigError
    from ..images import parse_chain
    from ..outputs import check_writable

    for flag, value, low in (("--seed", args.seed, 0), ("--images", args.images, 2), ("--image-size", args.image_size, 8)):
        if value < low:
            raise ConfigError(f"{flag} {value}: must be >= {low}")
    (hasher,) = parse_hasher_specs(args.hasher)
    specs = [t for t in args.transforms.split(";") if t.strip()]
    if not specs:
        raise ConfigError("--transforms: no transformation given (e.g. 'none;jpeg:quality=80')")
    for spec in specs:
        parse_chain("identity" if spec.strip() in ("none", "identity") else spec)
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name such as {out / 'calibration.json'}")
    check_writable(out.parent if str(out.parent) else Path("."), flag="--out")
    if out.exists() and not args.force:
        raise ConfigError(f"--out {out}: exists; choose another file or pass --force to overwrite it")
    if out.exists() and not os.access(out, os.W_OK):
        raise ConfigError(f"--out {out}: is not writable")
    from ..progress import progress_bar

    with progress_bar(args.images * (len(specs) + 1), "calibrating", "images") as bar:
        cal = calibrate(hasher.name, hasher.params(), transforms=specs, images=args.images, image_size=args.image_size,
                        encoding=args.encoding, seed=args.seed, progress=bar.update)
    cal.save(args.out)
    mean, sd = cal.unrelated_moments()
    print(f"{cal.hasher}: unrelated-pair distance mean {mean:.1f}, sd {sd:.2f} over {sum(cal.unrelated):,} pairs; "
          f"collision probability at radius 31: {cal.collision_probability(31):.3g} "
          f"(normal tail fit where no pair is that close; exponential: {cal.collision_probability(31, 'exponential'):.3g})")
    _, bound = cal.collision_probability_bound(31, "exponential", resamples=200, seed=args.seed)
    print(f"  95% upper bound at radius 31 (exponential fit, bootstrap over the {len(cal.hashes)} images): {bound:.3g}")
    for spec in cal.transforms:
        print(f"  recall at radius 0 / 8 / 31: {cal.recall(spec, 0):.3f} / {cal.recall(spec, 8):.3f} / "
              f"{cal.recall(spec, 31):.3f}  {spec}")
    print(f"written: {args.out}")
    return 0
