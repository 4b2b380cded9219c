"""Cost and effect of the evasion and collision attacks, per hash query.

Measured in one process on the same synthetic images:

* ``baseline``: a plain loop of ``hasher.hash(image)`` on fresh PIL images,
  the least an attack can spend per query (a query is one hash computation);
* ``attack``: wall time of :func:`e2escan.attacks.evade` /
  :func:`e2escan.attacks.collide` divided by the queries it spent. The ratio
  to the baseline is the attack's own overhead (rendering, upsampling and
  SSIM checks against the quality bound).

It also prints what the attacks achieve on these images: success rate,
median queries, median SSIM and PSNR, for detection avoidance at a fixed
threshold and for collisions with the hash of another image.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from PIL import Image

from e2escan.attacks import collide, evade, whitebox_supported
from e2escan.hashing import get_hasher
from e2escan.images import image_rng, synthetic_image

# (hasher, evasion threshold T: the attack needs distance T + 1, collision radius)
SETTINGS = (("ahash", 10, 8), ("dhash", 10, 8), ("phash", 10, 8), ("pdq", 31, 31))


def baseline_ms_per_hash(hasher, images: list[np.ndarray], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for pixels in images:
            hasher.hash(Image.fromarray(pixels, mode="RGB"))
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / len(images)


def summarise(results, elapsed: float) -> dict:
    queries = sum(r.queries for r in results)
    return {
        "success": np.mean([r.success for r in results]),
        "median_queries": float(np.median([r.queries for r in results])),
        "median_ssim": float(np.median([r.ssim for r in results])),
        "median_psnr": float(np.median([r.psnr for r in results])),
        "ms_per_query": 1e3 * elapsed / queries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--budget", type=int, default=1000, help="black-box query budget")
    parser.add_argument("--evasion-ssim", type=float, default=0.95)
    parser.add_argument("--collision-ssim", type=float, default=0.8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, Python {platform.python_version()}, "
          f"numpy {np.__version__}")  # fmt: skip
    size = (args.size, args.size)
    sources = [synthetic_image(image_rng(100, i), size) for i in range(args.images)]
    targets = [synthetic_image(image_rng(101, i), size) for i in range(args.images)]
    pixels = [np.asarray(img) for img in sources]
    print(f"{args.images} synthetic {args.size}x{args.size} images; evasion SSIM >= {args.evasion_ssim}, "
          f"collision SSIM >= {args.collision_ssim}, black-box budget {args.budget}, white-box budget 100\n")
    header = (f"{'attack':10} {'hasher':6} {'method':9} {'T/r':>4} {'success':>8} {'med q':>7} {'med SSIM':>9} "
              f"{'med PSNR':>9} {'ms/query':>9} {'baseline':>9} {'ratio':>6}")  # fmt: skip
    print(header)
    for name, threshold, radius in SETTINGS:
        hasher = get_hasher(name)
        base = baseline_ms_per_hash(hasher, pixels, args.repeat)
        methods = ("blackbox", "whitebox") if whitebox_supported(hasher) else ("blackbox",)
        for attack in ("evasion", "collision"):
            for method in methods:
                budget = args.budget if method == "blackbox" else 100
                t0 = time.perf_counter()
                if attack == "evasion":
                    results = [evade(img, hasher, min_distance=threshold + 1, max_queries=budget,
                                     min_ssim=args.evasion_ssim, rng=np.random.default_rng(i), method=method)
                               for i, img in enumerate(sources)]  # fmt: skip
                else:
                    results = [collide(img, hasher.hash(tgt), hasher, radius=radius, max_queries=budget,
                                       min_ssim=args.collision_ssim, rng=np.random.default_rng(i), method=method)
                               for i, (img, tgt) in enumerate(zip(sources, targets))]  # fmt: skip
                s = summarise(results, time.perf_counter() - t0)
                bound = threshold if attack == "evasion" else radius
                print(f"{attack:10} {name:6} {method:9} {bound:4d} {s['success']:8.0%} {s['median_queries']:7.0f} "
                      f"{s['median_ssim']:9.3f} {s['median_psnr']:8.1f}dB {s['ms_per_query']:9.2f} {base:9.2f} "
                      f"{s['ms_per_query'] / base:5.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
