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
(its steps depend on the goal), and once per image aimed at half the hash
length, which gives the white-box attacker's resisting thresholds beside the
black-box ones.

A messenger re-encodes attachments (JPEG at quality 90 in the simulator), so
every crafted image is also re-hashed after a real JPEG-90 round trip: the
attack runs aimed at the reference thresholds (both attackers) report success
before and after it, and a margin sweep aims ``margin`` bits past the
threshold, with and without the JPEG-90 round trip in the attack's objective,
and re-hashes the results after JPEG-90 and JPEG-75.

The large-sample attack (``scale_*.csv``) runs the black box on many images
against one hash, PDQ at its recommended threshold 31, with JPEG-90 inside
the objective and success judged after a real JPEG-90 round trip; one run per
image gives the success at every query budget up to 3,000, at three SSIM
bounds and with a generic perturbation grid, each with an exact
(Clopper-Pearson) 95% interval.

The same synthetic corpus gives the false positives: the pairwise Hamming
distances of all unrelated images, the query-vs-database rate (the first
half of the corpus as the database, the second half as queries, so the two
are disjoint), and from the pairwise distances the per-query rate against
databases of 100,000 and 1,000,000 entries, assuming independent entries
(``database_false_positives.csv``). The threshold a scanner would need to
catch a given share of attacked images, and what that threshold costs in
false matches per day at 4.5 billion images a day (WhatsApp, July 2017),
follow.

Quick mode: 8 attacked images, SSIM >= 0.95, budget 200 queries, a corpus of
150 images; the large-sample attack on 8 images (4 per other setting) with
300 queries. Full mode: 30 attacked images, SSIM >= 0.95, budget 1000
queries, a corpus of 1,000 images; the large-sample attack on 500 images at
SSIM >= 0.95 and 100 per other setting, 3,000 queries. Image ``i`` and its
attack generator depend only on ``(seed, i)``, the hasher, the bound and the
method, so the quick rows equal the full rows of the same images and budgets.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from e2escan.attacks import GENERIC_GRID, PDQ_MIN_QUALITY, BlackBoxParams, evade
from e2escan.hashing import HashArray, get_hasher
from e2escan.images import image_rng, synthetic_image
from e2escan.metrics.probability import clopper_pearson, separation_power
from e2escan.results import save_figure, write_csv, write_json

HASHERS = ("ahash", "dhash", "phash", "pdq")
WHITEBOX_HASHERS = ("phash", "pdq")
HASHER_KEYS = {name: index for index, name in enumerate(HASHERS)}
IMAGE_SIZE = (128, 128)
DAILY_IMAGES = 4.5e9  # WhatsApp, 26 July 2017: 4.5 billion photos shared per day
CATCH_FRACTIONS = (0.5, 0.9, 1.0)
PDQ_RECOMMENDED_THRESHOLD = 31  # ThreatExchange pdq/README.md: distance <= 31 is a match
REFERENCE_FPR = 1e-3  # "practical" thresholds: the largest with a pairwise FPR at most this on our corpus
MARGINS = (0, 4, 8, 16)  # white box; the black box, whose runs are longer, sweeps BLACKBOX_MARGINS
BLACKBOX_MARGINS = (0, 8)
SWEEP_ENCODINGS = (None, "jpeg:quality=90")  # the attack's objective: raw pixels, or through the messenger's JPEG-90
RECHECK_QUALITIES = (90, 75)  # real JPEG round trips the margin-sweep images are re-hashed after
GRIDS = {"blackbox": "hash resolution (query-only and algorithm-aware)",
         "blackbox-generic": f"generic {GENERIC_GRID}x{GENERIC_GRID} (query-only)",
         "whitebox": "DCT model (white box)",
         "whitebox-jpeg90": "DCT model through JPEG-90 (white box)"}  # fmt: skip
DATABASE_SIZES = (100_000, 1_000_000)  # IWF-scale databases for the per-query false-positive estimate
# The large-sample attack: PDQ at its recommended threshold, black box at the hash's resolution, with the
# messenger's JPEG-90 inside the objective and success judged after a real JPEG-90 round trip. ``images`` per
# SSIM bound (the headline bound first); success at every budget in ``budgets`` is read from one run per image.
SCALE_HASHER = "pdq"
SCALE_ENCODING = "jpeg:quality=90"
SCALE_TARGETS = (0.999, 0.95)  # the paper's ">99.9%" and a clearly lower rate the sample must tell apart from it
QUICK = {"attacked": 8, "corpus": 150, "bounds": (0.95,), "budget": 200, "budgets": (50, 100, 200),
         "whitebox_budget": 100,
         "scale": {"runs": ((0.95, "blackbox", 8), (0.90, "blackbox", 4), (0.98, "blackbox", 4),
                            (0.95, "blackbox-generic", 4)), "budget": 300, "budgets": (30, 100, 300)}}  # fmt: skip
FULL = {"attacked": 30, "corpus": 1000, "bounds": (0.95,), "budget": 1000,
        "budgets": (100, 200, 500, 1000), "whitebox_budget": 100,
        "scale": {"runs": ((0.95, "blackbox", 500), (0.90, "blackbox", 100), (0.98, "blackbox", 100),
                           (0.95, "blackbox-generic", 100)), "budget": 3000,
                  "budgets": (30, 100, 300, 1000, 3000)}}  # fmt: skip


def thresholds(bits: int) -> list[int]:
    """32 thresholds at the same fractions of every hash's length (64 bits: 0..31; PDQ: 3, 7, ..., 127)."""
    step = bits // 64
    return list(range(step - 1, bits // 2, step))


def whitebox_thresholds(bits: int) -> list[int]:
    """Every fourth threshold: 8 points at the same fractions of the length (pHash 3, 7, ..., 31; PDQ 15, 31, ..., 127)."""
    return thresholds(bits)[3::4]


def attack_rng(seed: int, hasher: str, bound: float, image: int, method: str) -> np.random.Generator:
    methods = {"blackbox": 0, "whitebox": 1, "blackbox-generic": 2, "whitebox-jpeg90": 3, "blackbox-jpeg90-scale": 4,
               "blackbox-generic-jpeg90-scale": 5}
    key = (HASHER_KEYS[hasher], round(bound * 1000), image, methods[method])
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def jpeg_round_trip(image: Image.Image, quality: int) -> Image.Image:
    """A real JPEG round trip through Pillow (quality 90: the simulator's attachment encoding)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def received_distance(hasher, result, quality: int) -> tuple[int, int | None, bool]:
    """Distance from the original's hash after a real JPEG round trip, its PDQ quality, and whether it still evades."""
    decoded = jpeg_round_trip(result.image, quality)
    if hasher.spec == "pdq":
        digest, pdq_quality = hasher.hash_with_quality(decoded)
    else:
        digest, pdq_quality = hasher.hash(decoded), None
    distance = digest.distance(result.original_hash)
    usable = pdq_quality is None or pdq_quality >= PDQ_MIN_QUALITY
    return distance, pdq_quality, bool(usable and distance >= result.min_distance)


def _log(message: str) -> None:
    print(f"[jain-evasion] {message}", file=sys.stderr, flush=True)


# --- false positives on unrelated images ---------------------------------------------------------


def false_positive_curves(hashes: HashArray) -> dict[str, np.ndarray | int]:
    """Cumulative share of unrelated pairs within each distance, of queries matching a disjoint database, and
    per image the share of the other corpus images within each distance (``neighbour_share``, N x (bits + 1))."""
    n, bits = len(hashes), hashes.bits
    within = np.zeros((n, bits + 1), dtype=np.int64)  # within[i, t]: other images at distance <= t from image i
    for i in range(n):
        distances = np.delete(hashes.distances_to(hashes[i]), i)
        within[i] = np.cumsum(np.bincount(distances, minlength=bits + 1))
    pairs = n * (n - 1) // 2
    matches = within.sum(axis=0) // 2  # every unordered pair counted from both ends
    half = n // 2
    database, queries = hashes[:half], hashes[half:]
    nearest = np.array([int(database.distances_to(q).min()) for q in queries])
    return {
        "pairs": pairs,
        "pairwise_matches": matches,
        "pairwise_fpr": matches / pairs,
        "neighbour_share": within / (n - 1),
        "database_size": half,
        "queries": len(queries),
        "query_fpr": np.array([np.mean(nearest <= t) for t in range(bits + 1)]),
    }


def database_fpr(curves: dict, threshold: int, database_size: int) -> dict[str, float]:
    """Share of queries that falsely match a ``database_size``-entry database at ``threshold`` (no unit: a rate).

    Two estimates from the corpus's pairwise distances, both assuming that the database entries are
    independent draws of unrelated images:
    ``pooled``: ``1 - (1 - p)^D`` with ``p`` the pairwise false-positive rate (also independent of the query);
    ``per_query``: the mean over corpus images ``q`` of ``1 - (1 - p_q)^D``, with ``p_q`` the share of the
    other corpus images within ``threshold`` of ``q`` (keeps the spread between queries, which the pooled
    estimate averages away).
    With no pair within ``threshold`` both are 0, and ``pooled_upper95`` replaces ``p`` by ``3 / pairs``
    (the rule of three: an approximate one-sided 95% bound, which treats the pairs as independent).
    """
    p = float(curves["pairwise_fpr"][threshold])
    shares = curves["neighbour_share"][:, threshold]
    zero = curves["pairwise_matches"][threshold] == 0
    return {
        "pooled": float(-np.expm1(database_size * np.log1p(-p))) if p < 1 else 1.0,
        "per_query": float(np.mean(-np.expm1(database_size * np.log1p(-np.minimum(shares, 1 - 1e-16))))),
        "pooled_upper95": float(-np.expm1(database_size * np.log1p(-3 / curves["pairs"]))) if zero else "",
    }


# --- attacks ---------------------------------------------------------------------------------------


def _attack_row(method, hasher, bound, index, goal, budget, result) -> dict:
    after, after_quality, survives = received_distance(hasher, result, 90)
    return {
        "method": method, "grid": GRIDS[method], "hasher": hasher.spec, "bits": hasher.bits, "min_ssim": bound,
        "image": index, "goal_distance": goal, "max_queries": budget, "distance": result.distance,
        "queries": result.queries, "success": result.success, "ssim": round(result.ssim, 6),
        "psnr_db": round(result.psnr, 4), "pdq_quality": result.quality, "fell_back": result.fell_back,
        "distance_after_jpeg90": after, "pdq_quality_after_jpeg90": after_quality,
        "success_after_jpeg90": survives,
    }  # fmt: skip


def reached_within(progress: tuple[tuple[int, int], ...], budget: int) -> int:
    """Largest distance the best acceptable image had after at most ``budget`` queries (0 if none was usable)."""
    return max((distance for queries, distance in progress if queries <= budget), default=0)


def _blackbox(image, hasher, name, bound, index, seed, mode, *, min_distance=None, **options):
    return evade(image, hasher, min_distance=hasher.bits // 2 if min_distance is None else min_distance,
                 max_queries=mode["budget"], min_ssim=bound, rng=attack_rng(seed, name, bound, index, "blackbox"),
                 **options)  # fmt: skip


def _whitebox(image, hasher, name, bound, index, seed, mode, min_distance, **options):
    method = "whitebox" if options.get("encode") is None else "whitebox-jpeg90"
    return evade(image, hasher, min_distance=min_distance, max_queries=mode["whitebox_budget"], min_ssim=bound,
                 rng=attack_rng(seed, name, bound, index, method), method="whitebox", **options)  # fmt: skip


def run_attacks(images, mode, seed):
    """Black-box runs aimed at half the hash (per hasher, bound and image), white-box runs per threshold and
    aimed at half the hash. Returns rows and the runs' progress."""
    rows, progress = [], {}
    for name in HASHERS:
        hasher = get_hasher(name)
        started = time.perf_counter()
        half = hasher.bits // 2
        for bound in mode["bounds"]:
            for index, image in enumerate(images):
                result = _blackbox(image, hasher, name, bound, index, seed, mode)
                rows.append(_attack_row("blackbox", hasher, bound, index, half, mode["budget"], result))
                progress[("blackbox", name, bound, index)] = result.progress
                if name in WHITEBOX_HASHERS:
                    # half - 1 is already the last grid point; dict.fromkeys keeps each threshold once
                    for threshold in dict.fromkeys([*whitebox_thresholds(hasher.bits), half - 1]):
                        result = _whitebox(image, hasher, name, bound, index, seed, mode, threshold + 1)
                        rows.append(_attack_row("whitebox", hasher, bound, index, threshold + 1,
                                                mode["whitebox_budget"], result))  # fmt: skip
                        if threshold == half - 1:  # aimed at half the hash: the white-box resisting thresholds
                            progress[("whitebox", name, bound, index)] = result.progress
                    # the same aim with the messenger's JPEG-90 inside the objective (distances after JPEG-90)
                    result = _whitebox(image, hasher, name, bound, index, seed, mode, half, encode="jpeg:quality=90")
                    rows.append(_attack_row("whitebox-jpeg90", hasher, bound, index, half, mode["whitebox_budget"],
                                            result))  # fmt: skip
                    progress[("whitebox-jpeg90", name, bound, index)] = result.progress
        _log(f"{name}: attacks done in {time.perf_counter() - started:.1f} s")
    return rows, progress


def success_rows(attack_rows, progress, fp, mode) -> list[dict]:
    rows = []
    n = len({r["image"] for r in attack_rows})
    for name in HASHERS:
        bits = get_hasher(name).bits
        for bound in mode["bounds"]:
            for method in ("blackbox",):
                for budget in mode["budgets"]:
                    reached = [reached_within(progress[(method, name, bound, i)], budget) for i in range(n)]
                    for t in thresholds(bits):
                        evaded = sum(d > t for d in reached)
                        rows.append({"method": method, "grid": GRIDS[method], "hasher": name, "min_ssim": bound,
                                     "max_queries": budget, "threshold": t, "attacked_images": n, "evaded": evaded,
                                     "success_rate": round(evaded / n, 6), "evaded_after_jpeg90": "",
                                     "pairwise_fpr": float(fp[name]["pairwise_fpr"][t])})  # fmt: skip
            if name in WHITEBOX_HASHERS:
                for t in whitebox_thresholds(bits):
                    runs = [r for r in attack_rows if r["method"] == "whitebox" and r["hasher"] == name
                            and r["min_ssim"] == bound and r["goal_distance"] == t + 1]  # fmt: skip
                    evaded = sum(r["success"] for r in runs)
                    rows.append({"method": "whitebox", "grid": GRIDS["whitebox"], "hasher": name, "min_ssim": bound,
                                 "max_queries": mode["whitebox_budget"], "threshold": t,
                                 "attacked_images": len(runs), "evaded": evaded,
                                 "success_rate": round(evaded / len(runs), 6),
                                 "evaded_after_jpeg90": sum(r["success_after_jpeg90"] for r in runs),
                                 "pairwise_fpr": float(fp[name]["pairwise_fpr"][t])})  # fmt: skip
    return rows


def resisting_rows(progress, fp, mode, n_images) -> list[dict]:
    """The threshold that catches a share of attacked images, and its false matches per day, for each attacker.

    Caught at threshold T when the attack could not get past T (reached <= T). Black box: the distance
    reached within each budget by the run aimed at half the hash; white box: the distance reached by one
    run per image aimed at half the hash (its steps depend on the goal, so a run aimed lower could differ),
    on raw pixels ("whitebox") and through the messenger's JPEG-90 ("whitebox-jpeg90": the distance the
    scanner sees after the attachment's encoding).
    """
    rows = []
    for name in HASHERS:
        bits = get_hasher(name).bits
        curves = fp[name]
        for bound in mode["bounds"]:
            attackers = [("blackbox", budget) for budget in mode["budgets"]]
            if name in WHITEBOX_HASHERS:
                attackers += [("whitebox", mode["whitebox_budget"]), ("whitebox-jpeg90", mode["whitebox_budget"])]
            for method, budget in attackers:
                reached = np.sort([reached_within(progress[(method, name, bound, i)], budget)
                                   for i in range(n_images)])  # fmt: skip
                for share in CATCH_FRACTIONS:
                    needed = int(reached[int(np.ceil(share * n_images)) - 1])
                    rows.append({
                        "attacker": method, "grid": GRIDS[method], "hasher": name, "min_ssim": bound,
                        "max_queries": budget, "catch_share": share,
                        "threshold_needed": needed, "at_attack_goal": needed >= bits // 2,
                        "pairwise_fpr": float(curves["pairwise_fpr"][needed]),
                        "false_matches_per_day_per_database_image": float(curves["pairwise_fpr"][needed] * DAILY_IMAGES),
                        "database_size": curves["database_size"],
                        "query_fpr": float(curves["query_fpr"][needed]),
                        "images_flagged_per_day": float(curves["query_fpr"][needed] * DAILY_IMAGES),
                        **{f"query_fpr_d{size}": database_fpr(curves, needed, size)["pooled"]
                           for size in DATABASE_SIZES},
                        **{f"images_flagged_per_day_d{size}": database_fpr(curves, needed, size)["pooled"]
                           * DAILY_IMAGES for size in DATABASE_SIZES},
                    })  # fmt: skip
    return rows


def reference_points(reference: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Each hasher's reference threshold, plus PDQ's recommended 31; a threshold listed twice appears once."""
    points = {}
    for name in HASHERS:
        labelled = {reference[name]: "reference (pairwise FPR <= 1e-3)"}
        if name == "pdq":
            labelled[PDQ_RECOMMENDED_THRESHOLD] = (
                "PDQ recommended" if PDQ_RECOMMENDED_THRESHOLD not in labelled else "reference and PDQ recommended"
            )
        points[name] = sorted((label, t) for t, label in labelled.items() if t >= 0)
    return points


def reference_rows(images, points, mode, seed) -> list[dict]:
    """Both attackers aimed just past each reference threshold, judged on raw pixels and after a real JPEG-90."""
    rows = []
    for name in HASHERS:
        hasher = get_hasher(name)
        methods = ("blackbox", "whitebox") if name in WHITEBOX_HASHERS else ("blackbox",)
        for label, t in points[name]:
            for bound in mode["bounds"]:
                for method in methods:
                    results = [
                        _blackbox(image, hasher, name, bound, i, seed, mode, min_distance=t + 1) if method == "blackbox"
                        else _whitebox(image, hasher, name, bound, i, seed, mode, t + 1)
                        for i, image in enumerate(images)
                    ]  # fmt: skip
                    after = [received_distance(hasher, r, 90) for r in results]
                    rows.append({"hasher": name, "which_threshold": label, "threshold": t, "method": method,
                                 "grid": GRIDS[method], "min_ssim": bound,
                                 "max_queries": mode["budget"] if method == "blackbox" else mode["whitebox_budget"],
                                 "attacked_images": len(results), "evaded": sum(r.success for r in results),
                                 "evaded_after_jpeg90": sum(a[2] for a in after),
                                 "median_queries": float(np.median([r.queries for r in results])),
                                 "min_ssim_reached": round(min(r.ssim for r in results), 6),
                                 "fell_back": sum(r.fell_back for r in results)})  # fmt: skip
    return rows


def margin_rows(images, reference, mode, seed) -> list[dict]:
    """Aim ``margin`` bits past the threshold (PDQ: the recommended 31; the others: their reference threshold),
    on raw pixels or through JPEG-90, at the middle SSIM bound; re-hash after real JPEG-90 and JPEG-75."""
    rows = []
    bound = mode["bounds"][len(mode["bounds"]) // 2]
    for name in HASHERS:
        hasher = get_hasher(name)
        t = PDQ_RECOMMENDED_THRESHOLD if name == "pdq" else reference[name]
        methods = ("blackbox", "whitebox") if name in WHITEBOX_HASHERS else ("blackbox",)
        for method in methods:
            for encode in SWEEP_ENCODINGS:
                for margin in MARGINS if method == "whitebox" else BLACKBOX_MARGINS:
                    if t + 1 + margin > hasher.bits:
                        continue
                    results = [
                        _blackbox(image, hasher, name, bound, i, seed, mode, min_distance=t + 1, encode=encode,
                                  margin=margin) if method == "blackbox"
                        else _whitebox(image, hasher, name, bound, i, seed, mode, t + 1, encode=encode, margin=margin)
                        for i, image in enumerate(images)
                    ]  # fmt: skip
                    row = {"hasher": name, "threshold": t, "method": method, "grid": GRIDS[method],
                           "min_ssim": bound, "objective": encode or "raw pixels", "margin": margin,
                           "attacked_images": len(results), "reported_success": sum(r.success for r in results)}
                    for quality in RECHECK_QUALITIES:
                        row[f"evaded_after_jpeg{quality}"] = sum(received_distance(hasher, r, quality)[2]
                                                                 for r in results)  # fmt: skip
                    row["median_ssim"] = round(float(np.median([r.ssim for r in results])), 6)
                    row["min_ssim_reached"] = round(min(r.ssim for r in results), 6)
                    row["median_queries"] = float(np.median([r.queries for r in results]))
                    qualities = [r.quality for r in results if r.quality is not None]
                    row["min_pdq_quality"] = min(qualities) if qualities else ""
                    rows.append(row)
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


def database_rows(fp) -> list[dict]:
    """Per-query false-positive rate against databases of 100,000 and 1,000,000 entries, and flags per day.

    Beside them, the same two estimates at the measured database size (half the corpus), next to the rate
    measured directly with the disjoint query half: the check of the independence assumption where a
    direct measurement exists.
    """
    rows = []
    for name in HASHERS:
        curves = fp[name]
        measured_size = curves["database_size"]
        for t in range(get_hasher(name).bits // 2 + 1):
            at_measured = database_fpr(curves, t, measured_size)
            row = {"hasher": name, "threshold": t, "unrelated_pairs": curves["pairs"],
                   "pairwise_matches": int(curves["pairwise_matches"][t]),
                   "pairwise_fpr": float(curves["pairwise_fpr"][t]), "measured_database_size": measured_size,
                   "measured_query_fpr": float(curves["query_fpr"][t]),
                   "pooled_estimate_at_measured_size": at_measured["pooled"],
                   "per_query_estimate_at_measured_size": at_measured["per_query"]}  # fmt: skip
            for size in DATABASE_SIZES:
                estimate = database_fpr(curves, t, size)
                row[f"pooled_query_fpr_d{size}"] = estimate["pooled"]
                row[f"pooled_upper95_d{size}"] = estimate["pooled_upper95"]
                row[f"per_query_fpr_d{size}"] = estimate["per_query"]
                row[f"images_flagged_per_day_d{size}"] = estimate["pooled"] * DAILY_IMAGES
            rows.append(row)
    return rows


# --- the large-sample attack: success against budget and distortion, with exact intervals ---------------


def scale_threshold() -> int:
    """The large-sample attack's match threshold: PDQ's recommended 31."""
    return PDQ_RECOMMENDED_THRESHOLD


def run_scale(images, mode, seed) -> list[dict]:
    """One black-box run per image and SSIM bound, aimed just past PDQ's threshold with JPEG-90 in the objective.

    Each run stops at its first success, so it succeeds within a smaller budget ``B`` exactly when it succeeded
    with ``queries <= B``. Every crafted image is re-hashed after a real JPEG-90 round trip; success counts
    only if it still holds there (the path the attack claims).
    """
    scale, hasher, t = mode["scale"], get_hasher(SCALE_HASHER), scale_threshold()
    rows = []
    for bound, method, count in scale["runs"]:
        started = time.perf_counter()
        params = BlackBoxParams(grid=GENERIC_GRID) if method == "blackbox-generic" else None
        for index in range(count):
            result = evade(images[index], hasher, min_distance=t + 1, max_queries=scale["budget"], min_ssim=bound,
                           rng=attack_rng(seed, SCALE_HASHER, bound, index, f"{method}-jpeg90-scale"),
                           params=params, encode=SCALE_ENCODING)  # fmt: skip
            after, after_quality, survives = received_distance(hasher, result, 90)
            rows.append({"hasher": SCALE_HASHER, "threshold": t, "method": method, "grid": GRIDS[method],
                         "objective": SCALE_ENCODING, "min_ssim": bound,
                         "image": index, "max_queries": scale["budget"], "queries": result.queries,
                         "distance": result.distance, "success": result.success,
                         "distance_after_jpeg90": after, "pdq_quality_after_jpeg90": after_quality,
                         "success_after_jpeg90": survives, "ssim": round(result.ssim, 6),
                         "psnr_db": round(result.psnr, 4), "pdq_quality": result.quality})  # fmt: skip
        _log(f"large-sample attack, {method}, SSIM >= {bound:.2f}: {count} images in "
             f"{time.perf_counter() - started:.1f} s")
    return rows


def scale_success_rows(scale_rows, mode) -> list[dict]:
    """Success after a real JPEG-90 round trip, per SSIM bound and query budget, with exact 95% intervals."""
    rows = []
    for bound, method, _ in mode["scale"]["runs"]:
        runs = [r for r in scale_rows if r["min_ssim"] == bound and r["method"] == method]
        for budget in mode["scale"]["budgets"]:
            evaded = sum(r["success_after_jpeg90"] and r["queries"] <= budget for r in runs)
            claimed = sum(r["success"] and r["queries"] <= budget for r in runs)
            low, high = clopper_pearson(evaded, len(runs))
            successes = [r["psnr_db"] for r in runs if r["success_after_jpeg90"] and r["queries"] <= budget]
            rows.append({"hasher": SCALE_HASHER, "threshold": scale_threshold(), "method": method,
                         "grid": GRIDS[method], "objective": SCALE_ENCODING, "min_ssim": bound, "max_queries": budget, "attacked_images": len(runs),
                         "evaded_by_attack": claimed, "evaded_after_jpeg90": evaded,
                         "success_rate": round(evaded / len(runs), 6), "cp95_low": round(low, 6),
                         "cp95_high": round(high, 6), "excludes_0.999": high < 0.999, "excludes_0.95": low > 0.95,
                         "median_psnr_db_of_successes": float(np.median(successes)) if successes else ""})  # fmt: skip
    return rows


def _scale_figure(scale_success, mode) -> Figure:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for bound, method, _ in mode["scale"]["runs"]:
        rows = [r for r in scale_success if r["min_ssim"] == bound and r["method"] == method]
        rates = np.array([r["success_rate"] for r in rows])
        errors = np.array([[r["success_rate"] - r["cp95_low"] for r in rows],
                           [r["cp95_high"] - r["success_rate"] for r in rows]])  # fmt: skip
        ax.errorbar([r["max_queries"] for r in rows], rates, yerr=errors, marker="o", capsize=3,
                    linestyle=":" if method == "blackbox-generic" else "-",
                    label=f"{'generic grid' if method == 'blackbox-generic' else 'hash-resolution grid'}, "
                          f"SSIM >= {bound:.2f} ({rows[0]['attacked_images']} images)")  # fmt: skip
    for target in SCALE_TARGETS:
        ax.axhline(target, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("query budget (hash computations)")
    ax.set_ylabel("share evading after JPEG-90 (exact 95% CI)")
    ax.set_title(f"PDQ at T = {scale_threshold()}: black box through JPEG-90, by budget and SSIM bound", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


# --- figures -----------------------------------------------------------------------------------------


def _success_figure(success, mode) -> Figure:
    fig = Figure(figsize=(11, 8))
    axes = fig.subplots(2, 2).ravel()
    budget = mode["budget"]
    colours = {0.90: "tab:red", 0.95: "tab:blue", 0.98: "tab:green"}
    for ax, name in zip(axes, HASHERS):
        for bound in mode["bounds"]:
            for method, style in (("blackbox", "-"), ("blackbox-generic", ":"), ("whitebox", "--")):
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
                         "success_after_jpeg90": received_distance(hasher, result, 90)[2],
                         "distance": result.distance, "queries": result.queries, "ssim": round(result.ssim, 6),
                         "psnr_db": round(result.psnr, 4), "pdq_quality": result.quality})  # fmt: skip
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
    reference = _reference_thresholds(fp)
    points = reference_points(reference)
    stage = time.perf_counter()
    at_reference = reference_rows(attacked, points, mode, seed)
    _log(f"reference-threshold runs done in {time.perf_counter() - stage:.1f} s")
    stage = time.perf_counter()
    margins = margin_rows(attacked, reference, mode, seed)
    _log(f"margin sweep done in {time.perf_counter() - stage:.1f} s")

    stage = time.perf_counter()
    largest = max(count for _, _, count in mode["scale"]["runs"])
    scale_images = corpus[:largest] if largest <= len(corpus) else [
        synthetic_image(image_rng(seed, i), IMAGE_SIZE) for i in range(largest)]  # fmt: skip
    scale_rows = run_scale(scale_images, mode, seed)
    scale_success = scale_success_rows(scale_rows, mode)
    _log(f"large-sample attack done in {time.perf_counter() - stage:.1f} s")
    headline = scale_success[len(mode["scale"]["budgets"]) - 1]  # first bound, largest budget
    power = separation_power(headline["attacked_images"], *SCALE_TARGETS)

    write_csv(out_dir / "scale_attacks.csv", scale_rows)
    write_csv(out_dir / "scale_success.csv", scale_success)
    write_csv(out_dir / "database_false_positives.csv", database_rows(fp))
    save_figure(_scale_figure(scale_success, mode), out_dir, "scale_success_vs_budget")
    write_csv(out_dir / "attacks.csv", attack_rows)
    write_csv(out_dir / "success_curves.csv", success)
    write_csv(out_dir / "false_positives.csv", false_positive_rows(fp))
    write_csv(out_dir / "resisting_thresholds.csv", resisting)
    write_csv(out_dir / "reference_thresholds.csv", at_reference)
    write_csv(out_dir / "margin_sweep.csv", margins)
    save_figure(_success_figure(success, mode), out_dir, "success_vs_threshold")
    save_figure(_budget_figure(success, mode), out_dir, "success_vs_budget")
    examples_fig, examples = _examples_figure(attacked[0], reference, mode, seed)
    save_figure(examples_fig, out_dir, "examples")

    pdq = get_hasher("pdq")
    pdq_quality = [pdq.hash_with_quality(image)[1] for image in attacked]
    blackbox = [r for r in attack_rows if r["method"] == "blackbox"]
    write_json(out_dir / "summary.json", {
        "paper": "jain-evasion", "mode": "quick" if quick else "full", "seed": seed,
        "image_size": list(IMAGE_SIZE), "attacked_images": len(attacked), "corpus_images": mode["corpus"],
        "ssim_bounds": list(mode["bounds"]), "query_budget": mode["budget"],
        "whitebox_query_budget": mode["whitebox_budget"], "generic_grid": GENERIC_GRID, "margins": list(MARGINS), "blackbox_margins": list(BLACKBOX_MARGINS),
        "daily_images": DAILY_IMAGES, "reference_fpr": REFERENCE_FPR, "reference_thresholds": reference,
        "success_at_reference_thresholds": at_reference, "examples": examples,
        "attacked_pdq_quality_min": min(pdq_quality),
        "attacked_pdq_quality_below_50": sum(q < PDQ_MIN_QUALITY for q in pdq_quality),
        "attacked_pdq_quality_below_50_after_jpeg90": sum(
            pdq.hash_with_quality(jpeg_round_trip(image, 90))[1] < PDQ_MIN_QUALITY for image in attacked),
        "blackbox_median_psnr_db": {f"{name}@{bound:.2f}": float(np.median([r["psnr_db"] for r in blackbox
                                                                          if r["hasher"] == name and r["min_ssim"] == bound]))
                                    for name in HASHERS for bound in mode["bounds"]},
        "database_sizes": list(DATABASE_SIZES),
        "large_sample_attack": {
            "hasher": SCALE_HASHER, "threshold": scale_threshold(), "objective": SCALE_ENCODING,
            "runs": [{"min_ssim": b, "method": m, "images": n} for b, m, n in mode["scale"]["runs"]],
            "headline": headline,
            "power_of_exact_95_interval": {"trials": headline["attacked_images"], "high": SCALE_TARGETS[0],
                                           "low": SCALE_TARGETS[1], **power},
            "claimed_but_lost_after_real_jpeg90": sum(r["success"] and not r["success_after_jpeg90"]
                                                      for r in scale_rows),
            "median_queries_of_successes": {f"{m}@{b:.2f}": float(np.median(
                [r["queries"] for r in scale_rows if r["min_ssim"] == b and r["method"] == m
                 and r["success_after_jpeg90"]] or [0])) for b, m, _ in mode["scale"]["runs"]},
        },
        "wall_time_s": round(time.perf_counter() - started, 1),
    })  # fmt: skip
