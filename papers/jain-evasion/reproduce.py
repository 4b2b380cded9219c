"""Detection avoidance against perceptual hashes: success rate against the match threshold.

For each hasher (aHash, dHash, pHash via imagehash; PDQ via pdqhash) and
each SSIM bound, every attacked image goes through one black-box NES attack
(:func:`e2escan.attacks.evade`) that pushes its hash as far as it can, up to
half the hash length (the mean distance of unrelated images), within the
query budget. One run per image gives the whole curve: an attack aimed at
threshold ``T`` would have stopped at the first acceptable image more than
``T`` bits away, which the run's ``progress`` records with its query count,
so the success at every threshold and every smaller budget is read off it.
The white-box DCT attack on pHash and PDQ runs once per image and threshold
(its steps depend on the goal).

The same synthetic corpus gives the false positives: the pairwise Hamming
distances of all unrelated images, and the query-vs-database rate (the
first half of the corpus as the database, the second half as queries, so
the two are disjoint). The threshold a scanner would need to catch a given
share of attacked images, and what that threshold costs in false matches
per day at 4.5 billion images a day (WhatsApp, July 2017), follow.

Quick mode: 8 attacked images, SSIM >= 0.95, budget 200 queries, a corpus of
150 images. Full mode: 50 attacked images, SSIM >= 0.90, 0.95 and 0.98,
budget 1000 queries, a corpus of 1,000 images. Image ``i`` and its attack
generator depend only on ``(seed, i)``, the hasher and the bound, so the
quick rows equal the full rows of the same images and budgets.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from e2escan.attacks import evade
from e2escan.hashing import HashArray, get_hasher
from e2escan.images import image_rng, synthetic_image
from e2escan.results import save_figure, write_csv, write_json

HASHERS = ("ahash", "dhash", "phash", "pdq")
WHITEBOX_HASHERS = ("phash", "pdq")
HASHER_KEYS = {name: index for index, name in enumerate(HASHERS)}
IMAGE_SIZE = (128, 128)
DAILY_IMAGES = 4.5e9  # WhatsApp, 26 July 2017: 4.5 billion photos shared per day
CATCH_FRACTIONS = (0.5, 0.9, 1.0)
PDQ_RECOMMENDED_THRESHOLD = 31  # ThreatExchange pdq/README.md: distance <= 31 is a match
REFERENCE_FPR = 1e-3  # "practical" thresholds: the largest with a pairwise FPR at most this on our corpus
QUICK = {"attacked": 8, "corpus": 150, "bounds": (0.95,), "budget": 200, "budgets": (50, 100, 200),
         "whitebox_budget": 100}  # fmt: skip
FULL = {"attacked": 50, "corpus": 1000, "bounds": (0.90, 0.95, 0.98), "budget": 1000,
        "budgets": (100, 200, 500, 1000), "whitebox_budget": 100}  # fmt: skip


def thresholds(bits: int) -> list[int]:
    """32 thresholds from low to just below half the hash length (64 bits: 0..31; PDQ: 3, 7, ..., 127)."""
    step = bits // 64
    return list(range(step - 1, bits // 2, step))


def whitebox_thresholds(bits: int) -> list[int]:
    return thresholds(bits)[3::4]


def attack_rng(seed: int, hasher: str, bound: float, image: int, method: str) -> np.random.Generator:
    key = (HASHER_KEYS[hasher], round(bound * 1000), image, 0 if method == "blackbox" else 1)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _log(message: str) -> None:
    print(f"[jain-evasion] {message}", file=sys.stderr, flush=True)


# --- false positives on unrelated images ---------------------------------------------------------


def false_positive_curves(hashes: HashArray) -> dict[str, np.ndarray | int]:
    """Cumulative share of unrelated pairs within each distance, and of queries matching a disjoint database."""
    n, bits = len(hashes), hashes.bits
    counts = np.zeros(bits + 1, dtype=np.int64)
    for i in range(n - 1):
        counts += np.bincount(hashes[i + 1 :].distances_to(hashes[i]), minlength=bits + 1)
    half = n // 2
    database, queries = hashes[:half], hashes[half:]
    nearest = np.array([int(database.distances_to(q).min()) for q in queries])
    return {
        "pairs": int(counts.sum()),
        "pairwise_fpr": np.cumsum(counts) / counts.sum(),
        "database_size": half,
        "queries": len(queries),
        "query_fpr": np.array([np.mean(nearest <= t) for t in range(bits + 1)]),
    }


# --- attacks ---------------------------------------------------------------------------------------


def _attack_row(method, hasher, bound, index, goal, budget, result) -> dict:
    return {
        "method": method, "hasher": hasher.spec, "bits": hasher.bits, "min_ssim": bound, "image": index,
        "goal_distance": goal, "max_queries": budget, "distance": result.distance, "queries": result.queries,
        "success": result.success, "ssim": round(result.ssim, 6), "psnr_db": round(result.psnr, 4),
    }  # fmt: skip


def reached_within(progress: tuple[tuple[int, int], ...], budget: int) -> int:
    """Largest distance the best acceptable image had after at most ``budget`` queries."""
    return max(distance for queries, distance in progress if queries <= budget)


def run_attacks(images, mode, seed):
    """Black-box runs (one per hasher, bound and image) and white-box runs (also one per threshold)."""
    rows, progress = [], {}
    for name in HASHERS:
        hasher = get_hasher(name)
        started = time.perf_counter()
        for bound in mode["bounds"]:
            for index, image in enumerate(images):
                goal = hasher.bits // 2
                result = evade(image, hasher, min_distance=goal, max_queries=mode["budget"], min_ssim=bound,
                               rng=attack_rng(seed, name, bound, index, "blackbox"))  # fmt: skip
                rows.append(_attack_row("blackbox", hasher, bound, index, goal, mode["budget"], result))
                progress[(name, bound, index)] = result.progress
                if name in WHITEBOX_HASHERS:
                    for threshold in whitebox_thresholds(hasher.bits):
                        result = evade(image, hasher, min_distance=threshold + 1, max_queries=mode["whitebox_budget"],
                                       min_ssim=bound, rng=attack_rng(seed, name, bound, index, "whitebox"),
                                       method="whitebox")  # fmt: skip
                        rows.append(_attack_row("whitebox", hasher, bound, index, threshold + 1,
                                                mode["whitebox_budget"], result))  # fmt: skip
        _log(f"{name}: attacks done in {time.perf_counter() - started:.1f} s")
    return rows, progress


def success_rows(attack_rows, progress, fp, mode) -> list[dict]:
    rows = []
    n = len({r["image"] for r in attack_rows})
    for name in HASHERS:
        bits = get_hasher(name).bits
        for bound in mode["bounds"]:
            for budget in mode["budgets"]:
                reached = [reached_within(progress[(name, bound, i)], budget) for i in range(n)]
                for t in thresholds(bits):
                    evaded = sum(d > t for d in reached)
                    rows.append({"method": "blackbox", "hasher": name, "min_ssim": bound, "max_queries": budget,
                                 "threshold": t, "attacked_images": n, "evaded": evaded,
                                 "success_rate": round(evaded / n, 6),
                                 "pairwise_fpr": float(fp[name]["pairwise_fpr"][t])})  # fmt: skip
            if name in WHITEBOX_HASHERS:
                for t in whitebox_thresholds(bits):
                    runs = [r for r in attack_rows if r["method"] == "whitebox" and r["hasher"] == name
                            and r["min_ssim"] == bound and r["goal_distance"] == t + 1]  # fmt: skip
                    evaded = sum(r["success"] for r in runs)
                    rows.append({"method": "whitebox", "hasher": name, "min_ssim": bound,
                                 "max_queries": mode["whitebox_budget"], "threshold": t,
                                 "attacked_images": len(runs), "evaded": evaded,
                                 "success_rate": round(evaded / len(runs), 6),
                                 "pairwise_fpr": float(fp[name]["pairwise_fpr"][t])})  # fmt: skip
    return rows


def resisting_rows(progress, fp, mode, n_images) -> list[dict]:
    """The threshold that catches a share of attacked images, and its false matches per day."""
    rows = []
    for name in HASHERS:
        bits = get_hasher(name).bits
        curves = fp[name]
        for bound in mode["bounds"]:
            for budget in mode["budgets"]:
                reached = np.sort([reached_within(progress[(name, bound, i)], budget) for i in range(n_images)])
                for share in CATCH_FRACTIONS:
                    # caught at threshold T when the attack could not get past T: reached <= T
                    needed = int(reached[int(np.ceil(share * n_images)) - 1])
                    rows.append({
                        "hasher": name, "min_ssim": bound, "max_queries": budget, "catch_share": share,
                        "threshold_needed": needed, "at_attack_goal": needed >= bits // 2,
                        "pairwise_fpr": float(curves["pairwise_fpr"][needed]),
                        "false_matches_per_day_per_database_image": float(curves["pairwise_fpr"][needed] * DAILY_IMAGES),
                        "database_size": curves["database_size"],
                        "query_fpr": float(curves["query_fpr"][needed]),
                        "images_flagged_per_day": float(curves["query_fpr"][needed] * DAILY_IMAGES),
                    })  # fmt: skip
    return rows


def false_positive_rows(fp) -> list[dict]:
    rows = []
    for name in HASHERS:
        curves = fp[name]
        for t in range(get_hasher(name).bits // 2 + 1):
            rows.append({"hasher": name, "threshold": t, "unrelated_pairs": curves["pairs"],
                         "pairwise_fpr": float(curves["pairwise_fpr"][t]), "database_size": curves["database_size"],
                         "queries": curves["queries"], "query_fpr": float(curves["query_fpr"][t])})  # fmt: skip
    return rows


# --- figures -----------------------------------------------------------------------------------------


def _success_figure(success, mode) -> Figure:
    fig = Figure(figsize=(11, 8))
    axes = fig.subplots(2, 2).ravel()
    budget = mode["budget"]
    colours = {0.90: "tab:red", 0.95: "tab:blue", 0.98: "tab:green"}
    for ax, name in zip(axes, HASHERS):
        for bound in mode["bounds"]:
            for method, style in (("blackbox", "-"), ("whitebox", "--")):
                rows = [r for r in success if r["hasher"] == name and r["min_ssim"] == bound and r["method"] == method
                        and (method == "whitebox" or r["max_queries"] == budget)]  # fmt: skip
                if rows:
                    ax.plot([r["threshold"] for r in rows], [r["success_rate"] for r in rows], style, marker=".",
                            color=colours.get(bound, "black"),
                            label=f"{method}, SSIM >= {bound:.2f}")  # fmt: skip
        if name == "pdq":
            ax.axvline(PDQ_RECOMMENDED_THRESHOLD, color="grey", linestyle=":", label="PDQ recommended (31)")
        fpr_ax = ax.twinx()
        rows = [r for r in success if r["hasher"] == name and r["method"] == "blackbox"
                and r["min_ssim"] == mode["bounds"][0] and r["max_queries"] == budget]  # fmt: skip
        fpr_ax.semilogy([r["threshold"] for r in rows], [max(r["pairwise_fpr"], 1e-7) for r in rows],
                        color="black", linewidth=0.8, alpha=0.6)  # fmt: skip
        fpr_ax.set_ylabel("pairwise false-positive rate (black, log; 0 drawn at 1e-7)", fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{name}: attack success vs match threshold (black box: {budget} queries)", fontsize=9)
        ax.set_xlabel("match threshold T (Hamming distance <= T is a match)")
        ax.set_ylabel("share of images evading detection")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def _budget_figure(success, mode) -> Figure:
    fig = Figure(figsize=(11, 8))
    axes = fig.subplots(2, 2).ravel()
    bound = mode["bounds"][len(mode["bounds"]) // 2]
    for ax, name in zip(axes, HASHERS):
        for budget in mode["budgets"]:
            rows = [r for r in success if r["hasher"] == name and r["min_ssim"] == bound
                    and r["method"] == "blackbox" and r["max_queries"] == budget]  # fmt: skip
            ax.plot([r["threshold"] for r in rows], [r["success_rate"] for r in rows], marker=".",
                    label=f"{budget} queries")  # fmt: skip
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{name}: black-box success by query budget (SSIM >= {bound:.2f})", fontsize=9)
        ax.set_xlabel("match threshold T")
        ax.set_ylabel("share of images evading detection")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _examples_figure(image, reference, mode, seed) -> tuple[Figure, list[dict]]:
    """Image 0 attacked just past each hasher's reference threshold (PDQ: past 31), with the change amplified."""
    bound = mode["bounds"][len(mode["bounds"]) // 2]
    fig = Figure(figsize=(12, 6.5))
    axes = fig.subplots(3, len(HASHERS) + 1)
    original = np.asarray(image)
    axes[0, 0].imshow(original)
    axes[0, 0].set_title("original", fontsize=8)
    rows = []
    for column, name in enumerate(HASHERS, start=1):
        hasher = get_hasher(name)
        threshold = PDQ_RECOMMENDED_THRESHOLD if name == "pdq" else max(reference[name], 0)
        for row, method in enumerate(("blackbox", "whitebox")):
            ax = axes[row, column]
            if method == "whitebox" and name not in WHITEBOX_HASHERS:
                ax.axis("off")
                continue
            result = evade(image, hasher, min_distance=threshold + 1,
                           max_queries=mode["budget"] if method == "blackbox" else mode["whitebox_budget"],
                           min_ssim=bound, rng=attack_rng(seed, name, bound, 0, method), method=method)  # fmt: skip
            rows.append({"hasher": name, "method": method, "threshold": threshold, "success": result.success,
                         "distance": result.distance, "queries": result.queries, "ssim": round(result.ssim, 6),
                         "psnr_db": round(result.psnr, 4)})  # fmt: skip
            ax.imshow(np.asarray(result.image))
            ax.set_title(f"{name} {method}: d={result.distance} > {threshold}\n"
                         f"SSIM {result.ssim:.3f}, PSNR {result.psnr:.1f} dB, {result.queries} queries",
                         fontsize=7)  # fmt: skip
            if method == "blackbox":
                change = np.asarray(result.image, dtype=np.float64) - original
                axes[2, column].imshow(np.clip(128 + 4 * change, 0, 255).astype(np.uint8))
                axes[2, column].set_title(f"{name} black-box change x4", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].axis("off")
    axes[2, 0].axis("off")
    fig.suptitle(f"Detection avoidance on one synthetic image (SSIM >= {bound:.2f})", fontsize=10)
    return fig, rows


# --- entry point ---------------------------------------------------------------------------------------


def _reference_thresholds(fp) -> dict[str, int]:
    out = {}
    for name in HASHERS:
        within = np.flatnonzero(fp[name]["pairwise_fpr"] <= REFERENCE_FPR)
        out[name] = int(within[-1]) if within.size else -1
    return out


def reproduce(out_dir: Path, *, quick: bool, seed: int = 0) -> None:
    started = time.perf_counter()
    out_dir = Path(out_dir)
    mode = QUICK if quick else FULL
    corpus = [synthetic_image(image_rng(seed, i), IMAGE_SIZE) for i in range(mode["corpus"])]
    fp = {}
    for name in HASHERS:
        hasher = get_hasher(name)
        fp[name] = false_positive_curves(HashArray.from_hashes(hasher.hash(image) for image in corpus))
    _log(f"false positives measured on {mode['corpus']} images")
    attacked = corpus[: mode["attacked"]]
    attack_rows, progress = run_attacks(attacked, mode, seed)
    success = success_rows(attack_rows, progress, fp, mode)
    resisting = resisting_rows(progress, fp, mode, len(attacked))

    write_csv(out_dir / "attacks.csv", attack_rows)
    write_csv(out_dir / "success_curves.csv", success)
    write_csv(out_dir / "false_positives.csv", false_positive_rows(fp))
    write_csv(out_dir / "resisting_thresholds.csv", resisting)
    save_figure(_success_figure(success, mode), out_dir, "success_vs_threshold")
    save_figure(_budget_figure(success, mode), out_dir, "success_vs_budget")
    reference = _reference_thresholds(fp)
    examples_fig, examples = _examples_figure(attacked[0], reference, mode, seed)
    save_figure(examples_fig, out_dir, "examples")

    headline = []
    for name in HASHERS:
        points = {("reference", reference[name])}
        if name == "pdq":
            points.add(("PDQ recommended", PDQ_RECOMMENDED_THRESHOLD))
        for label, t in sorted(points):
            for r in success:
                if r["hasher"] == name and r["threshold"] == t and (r["method"] == "whitebox"
                                                                    or r["max_queries"] == mode["budget"]):  # fmt: skip
                    headline.append({**r, "which_threshold": label})
    pdq_quality = [get_hasher("pdq").hash_with_quality(image)[1] for image in attacked]
    blackbox = [r for r in attack_rows if r["method"] == "blackbox"]
    write_json(out_dir / "summary.json", {
        "paper": "jain-evasion", "mode": "quick" if quick else "full", "seed": seed,
        "image_size": list(IMAGE_SIZE), "attacked_images": len(attacked), "corpus_images": mode["corpus"],
        "ssim_bounds": list(mode["bounds"]), "query_budget": mode["budget"],
        "whitebox_query_budget": mode["whitebox_budget"], "daily_images": DAILY_IMAGES,
        "reference_fpr": REFERENCE_FPR, "reference_thresholds": reference,
        "success_at_reference_thresholds": headline, "examples": examples,
        "attacked_pdq_quality_min": min(pdq_quality),
        "blackbox_median_psnr_db": {f"{name}@{bound:.2f}": float(np.median([r["psnr_db"] for r in blackbox
                                                                          if r["hasher"] == name and r["min_ssim"] == bound]))
                                    for name in HASHERS for bound in mode["bounds"]},
        "wall_time_s": round(time.perf_counter() - started, 1),
    })  # fmt: skip
