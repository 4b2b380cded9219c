"""EU-scale messaging through client-side scanning, as a review funnel: one day, and a year.

Four computations, each anchored on published volumes (IWF hash list, NCMEC
reports, the European Commission's count of reported files, WhatsApp's photos
a day):

* ``funnel.csv``: the shipped ``simulator/eu-day.toml`` scenario on the
  statistical path, with the IWF list's size at the end of 2021 as the
  database, for each protocol, threshold and per-image false-match rate: one
  funnel row per combination (images scanned, known images, matches, accounts
  over the threshold, review cases, reviewer hours), plus the closed-form
  expectation over the viral draws (``t = 1``) and the distribution of
  innocent accounts flagged over ``REPLICATES`` replicates. The row's own
  counts are replicate 0.
* ``year.csv``: innocent accounts flagged in a year at ``t = 1, 3, 10, 30``,
  computed exactly (:func:`block_count_pmf`: the distribution of an innocent
  account's counted matches, marginal over traffic and over which popular
  images falsely match, convolved over the year), for Apple's rates and for
  PDQ's rate measured here. ``year_check.csv`` checks the exact computation
  against the library's statistical engine on a shorter horizon.
* ``pdq_rates.csv``: PDQ's false-match rate on unrelated synthetic images at
  radii 0..31 (:func:`e2escan.hashing.evaluation.evaluate_hashers`), its exact
  one-sided 95% upper bound, the exponential tail extrapolation, and the
  per-image probability against the 1,004,611-hash database.
* ``anchors.csv`` and ``precision.csv``: our volumes beside the published ones,
  and the false reports a 90%-precise detector implies.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from pathlib import Path

import numpy as np

from e2escan.hashing import parse_hasher_specs
from e2escan.hashing.evaluation import evaluate_hashers
from e2escan.images import open_corpus
from e2escan.results import write_csv, write_json, write_manifest
from e2escan.sim.scenario import Scenario, resolve_scenario
from e2escan.sim.statistical import (
    Probabilities,
    innocent_flag_expectation,
    innocent_flag_replicates,
    load_calibration,
    probabilities,
    run_statistical,
)

REPLICATES = 1000

# Verified volumes (sources and how they were read in README.md).
IWF_HASHES_2021 = 1_004_611  # IWF hash list, unique hashes at the end of 2021 [F]: the database size
NCMEC_REPORTS = {2020: 21_751_085, 2021: 29_397_681, 2022: 32_059_029}  # CyberTipline reports [F]
COMMISSION_FILES_2021 = 85_000_000  # "85 million pictures and videos ... reported worldwide in 2021" [F]
WHATSAPP_PHOTOS_PER_DAY = 4.5e9  # July 2017, 1 billion daily users [S, press]
WHATSAPP_DAILY_USERS = 1e9
GROOMING_PRECISION = 0.9  # the Commission's stated accuracy of grooming detection [S], read as precision

# (protocol, params): the protocol's radius and threshold decide matches and flags.
VARIANTS = [
    ("plaintext", {"radius": 31}),
    ("psi-exact", {}),
    ("tpsi-ad", {"threshold": 1}),
    ("tpsi-ad", {"threshold": 3}),
    ("tpsi-ad", {"threshold": 10}),
    ("tpsi-ad", {"threshold": 30}),
]
EXTRA_VARIANTS = [VARIANTS[0], VARIANTS[3]]  # the day funnel at PDQ's extrapolated rate: radius 31 and t = 3
# Per-image false-match rates: Apple's design assumption and its measurement (Security Threat
# Model Review of Apple's Child Safety Features, August 2021, p. 10).
APPLE_RATES = [("Apple, assumed worst case", 1e-6), ("Apple, measured", 3e-8)]
FALSE_MATCH_RATES = [rate for _, rate in APPLE_RATES]

YEAR_DAYS = 365
YEAR_THRESHOLDS = (1, 3, 10, 30)
_TAIL_TERMS = 60

PDQ_RADII = tuple(range(32))  # PDQ's README: distance <= 31 is a match
PDQ_QUICK = {"images": 120, "radii": (0, 10, 20, 31)}
PDQ_FULL = {"images": 2000, "radii": PDQ_RADII}
CONFIDENCE = 0.95

# Engine cross-check of the exact year computation: a horizon short enough to simulate, at a rate high
# enough that t = 3 and t = 10 are crossed often.
CHECK_QUICK = {"accounts": 10_000, "days": 30, "rate": 0.02, "replicates": 20}
CHECK_FULL = {"accounts": 100_000, "days": 30, "rate": 0.02, "replicates": 200}


def base_scenario(seed: int) -> Scenario:
    """``eu-day`` with the IWF list's size at the end of 2021 as the database."""
    return Scenario.load(resolve_scenario("eu-day")).with_overrides(
        seed=seed, **{"content.database_size": IWF_HASHES_2021})


def funnel_rows(quick: bool, seed: int, extra_rates: tuple[float, ...] = ()) -> list[dict]:
    """One day: one row per false-match rate and protocol variant (counts of replicate 0, see the module doc).

    ``extra_rates`` are run for ``EXTRA_VARIANTS`` only.
    """
    base = base_scenario(seed)
    if quick:
        base = base.with_overrides(**{"population.accounts": 45_000_000})
    rows = []
    runs = [(fmr, v) for fmr in FALSE_MATCH_RATES for v in VARIANTS]
    runs += [(fmr, v) for fmr in extra_rates for v in EXTRA_VARIANTS]
    for fmr, (name, params) in runs:
        s = base.with_overrides(**{"protocol.name": name, "protocol.params": params,
                                   "statistical.false_match_rate": fmr})
        m = run_statistical(s).metrics.to_dict()
        pi, ac, rv = m["per_image"], m["accounts"], m["review"]
        known_matched = pi["known_images"] - pi["false_negative"]["count"]
        rows.append({
            "protocol": name,
            "radius": m["model"]["radius"],
            "threshold": m["threshold"],
            "false_match_rate": fmr,
            "accounts": ac["accounts"],
            "images_scanned": pi["images"],
            "vouchers": pi["images"],
            "known_images": pi["known_images"],
            "known_images_matched": known_matched,
            "false_matches": pi["false_positive"]["count"],
            "accounts_over_threshold": ac["innocent_flagged"]["count"] + ac["offenders_flagged"]["count"],
            "innocent_accounts_flagged": ac["innocent_flagged"]["count"],
            "offenders": ac["offenders"],
            "offenders_flagged": ac["offenders_flagged"]["count"],
            "review_cases": rv["cases_reviewed"],
            "reviewer_hours": round(rv["reviewer_hours"], 1),
            "offenders_confirmed": ac["offenders_detected"]["count"],
            "innocent_accounts_confirmed": ac["innocent_falsely_confirmed"]["count"],
            **_innocent_distribution(s, m["model"]),
        })
    return rows


def _innocent_distribution(s: Scenario, model: dict) -> dict:
    """Closed form and replicate distribution of innocent accounts flagged per day."""
    counts = innocent_flag_replicates(s, REPLICATES)
    expected = model.get("expected_innocent_flagged")
    impact = model.get("viral_day_impact")
    return {
        "innocent_flagged_expected": "" if expected is None else round(expected, 1),
        "viral_day_probability": round(model["viral_day_probability"], 6),
        "viral_day_impact": "" if impact is None else round(impact, 1),
        "replicates": REPLICATES,
        "innocent_flagged_mean": round(float(counts.mean()), 1),
        "innocent_flagged_p2_5": round(float(np.percentile(counts, 2.5)), 1),
        "innocent_flagged_p50": round(float(np.percentile(counts, 50)), 1),
        "innocent_flagged_p97_5": round(float(np.percentile(counts, 97.5)), 1),
        "innocent_flagged_max": int(counts.max()),
        "viral_days": int((counts > 3 * np.median(counts) + 10).sum()),
    }


# ---------------------------------------------------------------------------------------------
# Year scale: exact distribution of an innocent account's counted matches
# ---------------------------------------------------------------------------------------------


def _capped_poisson(lam: np.ndarray, cap: int) -> np.ndarray:
    """``P[Poisson(lam) = n]`` for ``n < cap``, and ``P[Poisson(lam) >= cap]`` last; shape ``lam.shape + (cap + 1,)``.

    Below ``lam = cap / 2`` the tail is summed term by term upwards (each term
    at most half the one before, so 60 terms reach double precision and a tiny
    tail keeps its relative precision); above, it is at least about 1e-4 and
    ``1 - cdf`` is accurate.
    """
    lam = np.asarray(lam, dtype=float)[..., None]
    lgam = np.array([math.lgamma(k + 1.0) for k in range(cap + _TAIL_TERMS)])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lam = np.log(lam)
        n = np.arange(cap + _TAIL_TERMS)
        logpmf = np.where(lam > 0, -lam + n * log_lam - lgam, np.where(n == 0, 0.0, -np.inf))
    terms = np.exp(logpmf)
    pmf = terms[..., : cap + 1].copy()
    complement = np.clip(1.0 - pmf[..., :cap].sum(axis=-1), 0.0, 1.0)
    pmf[..., cap] = np.where(lam[..., 0] < cap / 2, terms[..., cap:].sum(axis=-1), complement)
    return pmf


def _capped_convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distribution of the sum of two independent counts given as capped pmfs (last entry: ``>= cap``), batched.

    The capped entry is summed from products of non-negative terms, so tiny
    tail probabilities keep their relative precision.
    """
    cap = a.shape[-1] - 1
    out = np.zeros(np.broadcast_shapes(a.shape, b.shape))
    tail_b = np.flip(np.cumsum(np.flip(b, -1), axis=-1), -1)  # tail_b[m] = P[B >= m]
    for n in range(cap):
        out[..., n] = (a[..., : n + 1] * np.flip(b[..., : n + 1], -1)).sum(axis=-1)
    # A + B >= cap: A = j < cap and B >= cap - j, or A >= cap.
    out[..., cap] = (a[..., :cap] * np.flip(tail_b[..., 1:], -1)).sum(axis=-1) + a[..., cap] * tail_b[..., 0]
    return out


def _convolve_all(pmfs: np.ndarray) -> np.ndarray:
    """The capped pmf of the sum of independent counts, one per row of ``pmfs`` (pairwise tree reduction)."""
    while pmfs.shape[0] > 1:
        if pmfs.shape[0] % 2:
            pmfs = np.concatenate([pmfs, np.eye(1, pmfs.shape[1])])  # a point mass at 0
        pmfs = _capped_convolve(pmfs[0::2], pmfs[1::2])
    return pmfs[0]


def _power(pmf: np.ndarray, k: int) -> np.ndarray:
    """The capped pmf of the sum of ``k`` independent copies of a count with capped pmf ``pmf``."""
    result = np.eye(1, pmf.size)[0]
    base = pmf
    while k:
        if k & 1:
            result = _capped_convolve(result, base)
        k >>= 1
        if k:
            base = _capped_convolve(base, base)
    return result


def _bernoulli_sum(probs: list[np.ndarray], cap: int, size: int) -> np.ndarray:
    """Capped pmf (per row) of a sum of independent Bernoulli counts with the given success probabilities."""
    pmf = np.zeros((size, cap + 1))
    pmf[:, 0] = 1.0
    for p in probs:
        nxt = pmf * (1.0 - p)[:, None]
        nxt[:, 1:] += pmf[:, :-1] * p[:, None]
        nxt[:, cap] += pmf[:, cap] * p  # already at the cap: stays there
        pmf = nxt
    return pmf


def block_count_pmf(prob: Probabilities, images: float, cap: int) -> np.ndarray:
    """Capped pmf of the matches one innocent account has counted toward ``t`` over one block.

    A block is a stretch of time with one draw of which popular (image,
    transform) units match, as in one replicate of :func:`run_statistical`;
    ``images`` is the account's expected images in it (Poisson). The count is
    exactly the engine's: fresh false matches (each its own hash) plus, per
    popular image ``i``, its units' copies, where the original matches with
    ``p``, a unit then matches with ``r_k`` and keeps the original's hash with
    ``same_k``, and otherwise matches with the stray ``q_k``; each counted
    match is genuine with ``1 - synthetic``; under ``dedup`` an account's copies
    of one hash count once. Marginal over the traffic and the unit draws (so an
    expectation over viral luck, not one replicate). Entry ``cap`` is ``P[count >= cap]``.
    """
    s, f, p = prob.synthetic, prob.forward_share, prob.p_fresh
    w, r, same = prob.spec_weight, prob.spec_recall, prob.spec_same
    q = prob.stray_probability()
    lam = images * f * prob.popular_share[:, None] * w[None, :]  # (P, K) copies of each unit sent
    n_img, k_specs = lam.shape
    fresh = _capped_poisson(np.array([images * prob.p_fresh_image * (1 - s)]), cap)
    per_image = np.zeros((n_img, cap + 1))
    # Per popular image: enumerate each unit's state (0 no match, 1 own hash, 2 keeps the original's hash).
    for original in (False, True):
        weight_orig = p if original else 1.0 - p
        if weight_orig == 0.0:
            continue
        states = (0, 1, 2) if original else (0, 1)
        for combo in itertools.product(states, repeat=k_specs):
            c = np.array(combo)
            if original:
                pr = np.prod(np.where(c == 0, 1 - r, np.where(c == 1, r * (1 - same), r * same)))
            else:
                pr = np.prod(np.where(c == 0, 1 - q, q))
            if pr == 0.0:
                continue
            if prob.dedup:
                parts = [-np.expm1(-lam[:, k]) * (1 - s) for k in np.flatnonzero(c == 1)]
                if (c == 2).any():
                    parts.append(-np.expm1(-lam[:, c == 2].sum(axis=1)) * (1 - s))
                pmf = _bernoulli_sum(parts, cap, n_img)
            else:
                pmf = _capped_poisson(lam[:, c > 0].sum(axis=1) * (1 - s), cap)
            per_image += weight_orig * pr * pmf
    return _convolve_all(np.concatenate([fresh, per_image]))


def tail_probabilities(pmf: np.ndarray, thresholds: tuple[int, ...]) -> dict[int, float]:
    """``P[count >= t]`` per threshold from a capped pmf (summed upwards, so tiny values stay exact)."""
    return {t: float(pmf[t:].sum()) for t in thresholds}


# ---------------------------------------------------------------------------------------------
# PDQ's false-match rate, measured on unrelated synthetic images
# ---------------------------------------------------------------------------------------------


def binomial_upper_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """Exact one-sided (Clopper-Pearson) upper bound on a binomial proportion: ``k`` successes in ``n`` trials.

    The ``p`` with ``P[Bin(n, p) <= k] = 1 - confidence`` (for ``k = 0``:
    ``1 - (1 - confidence)^(1/n)``, close to the rule of three's ``3/n``).
    """
    alpha = 1.0 - confidence
    if k >= n:
        return 1.0
    if k == 0:
        return -math.expm1(math.log(alpha) / n)

    def cdf(p: float) -> float:
        logs = [math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * math.log(p)
                + (n - j) * math.log1p(-p) for j in range(k + 1)]
        top = max(logs)
        return math.exp(top) * sum(math.exp(x - top) for x in logs)

    lo, hi = k / n, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cdf(mid) > alpha else (lo, mid)
    return hi


def against_database(pair_rate: float, database: int = IWF_HASHES_2021) -> float:
    """Probability that an image falsely matches at least one of ``database`` hashes, each independently with ``pair_rate``."""
    return -math.expm1(database * math.log1p(-pair_rate)) if pair_rate < 1 else 1.0


def pdq_rate_rows(quick: bool, seed: int) -> list[dict]:
    """Per radius: unrelated synthetic pairs within it, the measured rate, its upper bound and the tail extrapolation."""
    mode = PDQ_QUICK if quick else PDQ_FULL
    corpus = open_corpus(f"synthetic:{mode['images']}", seed=seed, size=(256, 256))
    result = evaluate_hashers(corpus, parse_hasher_specs("pdq"), [], seed=seed,
                              workers=1 if quick else os.cpu_count() or 1)
    ev = result.per_hasher[0]
    n = ev.n_unrelated
    within = np.cumsum(ev.unrelated_counts)
    nonzero = np.flatnonzero(ev.unrelated_counts)
    rows = []
    for r in mode["radii"]:
        k = int(within[r])
        upper = binomial_upper_bound(k, n)
        fit = ev.fit.fpr(r)
        rows.append({
            "radius": r, "images": result.n_images, "unrelated_pairs": n, "smallest_distance": int(nonzero[0]),
            "pairs_within_radius": k, "measured_rate": k / n if k else "",
            "upper_bound_95": float(f"{upper:.6g}"), "exponential_fit_rate": float(f"{fit:.6g}"),
            "database_hashes": IWF_HASHES_2021,
            "per_image_upper_bound_95": float(f"{against_database(upper):.6g}"),
            "per_image_exponential_fit": float(f"{against_database(fit):.6g}"),
        })  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------
# A year: innocent and offending accounts flagged, exactly
# ---------------------------------------------------------------------------------------------


def _year_probabilities(base: Scenario, rate: float, threshold: int, dedup: str) -> Probabilities:
    s = base.with_overrides(**{"protocol.name": "tpsi-ad",
                               "protocol.params": {"threshold": threshold, "dedup": dedup},
                               "statistical.false_match_rate": rate})
    # The unit draws are not used: block_count_pmf is marginal over them.
    return probabilities(s, load_calibration(s), np.random.default_rng(0))


def year_tails(base: Scenario, rate: float, dedup: str, renewal: str) -> dict[int, float]:
    """``P[an innocent account is flagged in a year]`` per threshold of ``YEAR_THRESHOLDS`` (tpsi-ad counting).

    ``renewal = "daily"``: every day has its own popular images (365
    independent days, each with its own draw of which of them falsely match);
    ``"yearly"``: one set of popular images all year (the engine's model for a
    365-day run). ``t = 1`` never deduplicates (tpsi-ad's dedup acts only above 1).
    """
    lam = base.traffic.messages_per_day * base.traffic.image_share
    cap = max(YEAR_THRESHOLDS)
    out = {}
    for above_one in (False, True):
        prob = _year_probabilities(base, rate, cap if above_one else 1, dedup)
        if renewal == "daily":
            pmf = _power(block_count_pmf(prob, lam, cap), YEAR_DAYS)
        else:
            pmf = block_count_pmf(prob, lam * YEAR_DAYS, cap)
        for t, v in tail_probabilities(pmf, YEAR_THRESHOLDS).items():
            if (t > 1) == above_one:
                out[t] = v
    return out


def _offender_year(base: Scenario, rate: float, threshold: int) -> float:
    """``P[an offender crosses t in a year]``: its genuine known-image matches are Poisson (see README)."""
    prob = _year_probabilities(base, rate, threshold, "hash")
    tr = base.traffic
    mu = YEAR_DAYS * tr.messages_per_day * tr.image_share * tr.offender_activity * \
        base.content.offender_known_share * prob.recall * (1 - prob.synthetic)
    return float(_capped_poisson(np.array([mu]), threshold)[0, threshold])


def year_rows(base: Scenario, rates: list[tuple[str, str, float]], renewals: tuple[str, ...],
              dedups: tuple[str, ...]) -> list[dict]:
    """Expected innocent accounts flagged in a year at EU scale, per rate, renewal, counting rule and threshold."""
    n = base.population.accounts
    n_off = round(base.population.offender_share * n)
    n_inn = n - n_off
    minutes = base.review.minutes_per_case
    rows = []
    for basis, radius, rate in rates:
        off = {t: _offender_year(base, rate, t) for t in YEAR_THRESHOLDS}
        for renewal in renewals:
            for dedup in dedups:
                tails = year_tails(base, rate, dedup, renewal)
                for t in YEAR_THRESHOLDS:
                    if t == 1 and dedup != dedups[0]:
                        continue  # t = 1 never deduplicates: one row
                    inn = n_inn * tails[t]
                    offenders = n_off * off[t]
                    rows.append({
                        "rate_basis": basis, "radius": radius, "false_match_rate": float(f"{rate:.6g}"),
                        "popular_images": renewal, "dedup": dedup if t > 1 else "-", "threshold": t,
                        "images_per_account": round(YEAR_DAYS * base.traffic.messages_per_day
                                                    * base.traffic.image_share, 1),
                        "p_innocent_account_flagged": float(f"{tails[t]:.6g}"),
                        "innocent_flagged_expected": float(f"{inn:.6g}"),
                        "offenders": n_off, "offenders_flagged_expected": float(f"{offenders:.6g}"),
                        "review_cases": float(f"{inn + offenders:.6g}"),
                        "reviewer_hours": float(f"{(inn + offenders) * minutes / 60:.6g}"),
                    })  # fmt: skip
    return rows


def year_check_rows(seed: int, quick: bool) -> list[dict]:
    """The exact computation against the engine: one block of ``days`` with one popular set, as a run draws it.

    The engine's mean over replicates varies with traffic and with which
    popular units falsely match; its standard error is the between-replicate
    standard deviation over the square root of the replicates.
    """
    c = CHECK_QUICK if quick else CHECK_FULL
    base = base_scenario(seed).with_overrides(days=c["days"], **{"population.accounts": c["accounts"]})
    n_inn = c["accounts"] - round(base.population.offender_share * c["accounts"])
    lam = base.traffic.messages_per_day * base.traffic.image_share * c["days"]
    rows = []
    for dedup, t in (("hash", 1), ("hash", 3), ("hash", 10), ("none", 3), ("none", 10)):
        s = base.with_overrides(**{"protocol.name": "tpsi-ad", "protocol.params": {"threshold": t, "dedup": dedup},
                                   "statistical.false_match_rate": c["rate"]})
        prob = probabilities(s, load_calibration(s), np.random.default_rng(0))
        exact = n_inn * tail_probabilities(block_count_pmf(prob, lam, t), (t,))[t]
        counts = innocent_flag_replicates(s, c["replicates"]).astype(float)
        se = float(counts.std(ddof=1) / math.sqrt(counts.size))
        rows.append({
            "check": "engine replicates", "dedup": dedup if t > 1 else "-", "threshold": t, "accounts": c["accounts"],
            "days": c["days"], "false_match_rate": c["rate"], "replicates": c["replicates"],
            "exact_expected": round(exact, 3), "engine_mean": round(float(counts.mean()), 3),
            "engine_se": round(se, 3), "z": round((float(counts.mean()) - exact) / se, 3) if se > 0 else "",
        })  # fmt: skip
    # t = 1 at EU scale against the library's closed form (one day, Apple's assumed rate).
    eu = base_scenario(seed)
    for name, params in (("plaintext", {"radius": 31}), ("tpsi-ad", {"threshold": 1})):
        s = eu.with_overrides(**{"protocol.name": name, "protocol.params": params, "statistical.false_match_rate": 1e-6})
        prob = probabilities(s, load_calibration(s), np.random.default_rng(0))
        n = s.population.accounts - round(s.population.offender_share * s.population.accounts)
        m = s.traffic.messages_per_day * s.traffic.image_share
        exact = n * tail_probabilities(block_count_pmf(prob, m, 1), (1,))[1]
        closed = innocent_flag_expectation(n, m, prob)["expected_innocent_flagged"]
        rows.append({
            "check": f"closed form ({name})", "dedup": "-", "threshold": 1, "accounts": s.population.accounts,
            "days": 1, "false_match_rate": 1e-6, "replicates": "", "exact_expected": round(exact, 3),
            "engine_mean": round(closed, 3), "engine_se": "", "z": "",
        })  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------
# Anchors and the 90%-precision scenario
# ---------------------------------------------------------------------------------------------


def _row(rows: list[dict], protocol: str, threshold: int, rate: float) -> dict:
    return next(r for r in rows if r["protocol"] == protocol and r["threshold"] == threshold
                and r["false_match_rate"] == rate)


def anchor_rows(base: Scenario, funnel: list[dict], year: list[dict]) -> list[dict]:
    """Our volumes beside the verified published ones (scaled to the full EU population in quick mode too)."""
    scale = base.population.accounts / funnel[0]["accounts"]  # quick runs a tenth of the accounts
    plain = _row(funnel, "plaintext", 1, 1e-6)
    y30 = next(r for r in year if r["rate_basis"] == APPLE_RATES[0][0] and r["popular_images"] == "daily"
               and r["dedup"] == "hash" and r["threshold"] == 30)
    per_account = WHATSAPP_PHOTOS_PER_DAY / WHATSAPP_DAILY_USERS
    rows = [
        {"anchor": "photos a day per daily user (WhatsApp, July 2017)", "published": per_account, "tag": "S",
         "ours_basis": "images scanned a day per account (replicate 0, plaintext radius 31)",
         "ours": round(plain["images_scanned"] / plain["accounts"], 4),
         "ratio": round(plain["images_scanned"] / plain["accounts"] / per_account, 4),
         "note": f"{WHATSAPP_PHOTOS_PER_DAY:.3g} photos a day for 1 billion users; ours: "
                 f"{round(plain['images_scanned'] * scale):,} a day for 450 million accounts"},
        {"anchor": "database hashes (IWF list, end of 2021)", "published": IWF_HASHES_2021, "tag": "F",
         "ours_basis": "content.database_size (an input)", "ours": base.content.database_size, "ratio": 1.0,
         "note": "input, not a comparison"},
        {"anchor": "files reported worldwide in 2021 (European Commission)", "published": COMMISSION_FILES_2021,
         "tag": "F", "ours_basis": "known images matched a day x 365 (plaintext radius 31, 1e-6)",
         "ours": round(plain["known_images_matched"] * scale * YEAR_DAYS),
         "ratio": round(plain["known_images_matched"] * scale * YEAR_DAYS / COMMISSION_FILES_2021, 4),
         "note": "worldwide and all services against the EU on one service; ours scales with the assumed offender share"},
    ]
    for year_, reports in NCMEC_REPORTS.items():
        rows.append({
            "anchor": f"NCMEC CyberTipline reports {year_}", "published": reports, "tag": "F",
            "ours_basis": "review cases a day x 365 (plaintext radius 31, 1e-6: each day's flag a report)",
            "ours": round(plain["review_cases"] * scale * YEAR_DAYS),
            "ratio": round(plain["review_cases"] * scale * YEAR_DAYS / reports, 4),
            "note": "worldwide, all providers; a report is an incident, not an account",
        })  # fmt: skip
        rows.append({
            "anchor": f"NCMEC CyberTipline reports {year_}", "published": reports, "tag": "F",
            "ours_basis": "accounts flagged in a year (tpsi-ad t = 30, 1e-6, exact)",
            "ours": round(y30["review_cases"]), "ratio": round(y30["review_cases"] / reports, 6),
            "note": "an account is flagged once a year at most",
        })  # fmt: skip
    return rows


def precision_rows(base: Scenario, funnel: list[dict], year: list[dict]) -> list[dict]:
    """False reports a detector with ``GROOMING_PRECISION`` precision adds to a given volume of true reports."""
    scale = base.population.accounts / funnel[0]["accounts"]
    plain = _row(funnel, "plaintext", 1, 1e-6)
    bases = [("offenders flagged a day x 365 (our EU day, plaintext radius 31, 1e-6)",
              plain["offenders_flagged"] * scale * YEAR_DAYS)]
    bases += [("offenders flagged in a year (tpsi-ad t = 30, 1e-6, exact year)", r["offenders_flagged_expected"])
              for r in year if r["rate_basis"] == APPLE_RATES[0][0] and r["threshold"] == 30
              and r["popular_images"] == "daily" and r["dedup"] == "hash"]
    bases += [(f"NCMEC CyberTipline reports {y} [F], worldwide, as if every one were true", v)
              for y, v in NCMEC_REPORTS.items()]
    minutes = base.review.minutes_per_case
    rows = []
    for basis, true_year in bases:
        reports = true_year / GROOMING_PRECISION
        false = reports - true_year
        rows.append({
            "true_reports_basis": basis, "precision": GROOMING_PRECISION,
            "true_reports_per_year": round(true_year), "reports_per_year": round(reports),
            "false_reports_per_year": round(false), "false_reports_per_day": round(false / YEAR_DAYS, 1),
            "reviewer_hours_per_day": round(reports / YEAR_DAYS * minutes / 60, 1),
            "hash_false_flags_per_year": round(plain["innocent_flagged_expected"] * scale * YEAR_DAYS),
        })  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------


def reproduce(out_dir: Path, *, quick: bool, seed: int) -> None:
    started = time.perf_counter()
    out_dir = Path(out_dir)
    base = base_scenario(seed)
    pdq = pdq_rate_rows(quick, seed)
    at = {r["radius"]: r for r in pdq}
    funnel = funnel_rows(quick, seed, extra_rates=(at[31]["per_image_exponential_fit"],))
    pdq31 = "PDQ radius 31, exponential tail fit (synthetic images)"
    rates = [(basis, "", rate) for basis, rate in APPLE_RATES]
    rates += [(pdq31, 31, at[31]["per_image_exponential_fit"])]
    year = year_rows(base, rates, ("daily", "yearly"), ("hash", "none"))
    # PDQ at every radius: popular images renewed daily, tpsi-ad's default dedup (radius 31's fit is above).
    sweep = [(f"PDQ radius {r}, {kind} (synthetic images)", r, at[r][column])
             for r in (PDQ_QUICK["radii"] if quick else PDQ_RADII)
             for kind, column in (("exponential tail fit", "per_image_exponential_fit"),
                                  ("95% upper bound", "per_image_upper_bound_95"))]
    year += year_rows(base, [x for x in sweep if x[0] != pdq31], ("daily",), ("hash",))
    check = year_check_rows(seed, quick)
    anchors = anchor_rows(base, funnel, year)
    precision = precision_rows(base, funnel, year)
    for name, rows in (("funnel", funnel), ("year", year), ("year_check", check), ("pdq_rates", pdq),
                       ("anchors", anchors), ("precision", precision)):
        write_csv(out_dir / f"{name}.csv", rows)
    write_json(out_dir / "summary.json", {"funnel": funnel, "year": year, "year_check": check, "pdq_rates": pdq,
                                          "anchors": anchors, "precision": precision, "quick": quick, "seed": seed})
    _figure(funnel, out_dir)
    _year_figure(year, out_dir)
    write_manifest(out_dir, command="e2escan papers reproduce eu-funnel" + (" --quick" if quick else ""),
                   seed=seed, started=started)


def _year_figure(rows: list[dict], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from e2escan.results import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for basis, _ in APPLE_RATES:
        for renewal, dedup, style in (("daily", "hash", "-"), ("yearly", "hash", "--"), ("yearly", "none", ":")):
            sub = [r for r in rows if r["rate_basis"] == basis and r["popular_images"] == renewal
                   and r["dedup"] in (dedup, "-")]
            ts = [r["threshold"] for r in sub]
            ax.plot(ts, [max(r["innocent_flagged_expected"], 1e-300) for r in sub], style, marker="o",
                    label=f"{basis}; popular images renewed {renewal}; dedup {dedup}")
    ax.set_yscale("log")
    ax.set_xlabel("threshold t (genuine matches in a year)")
    ax.set_ylabel("expected innocent accounts flagged a year\n(450 million accounts)")
    ax.axhline(1, color="grey", lw=0.5)
    ax.legend(fontsize=6)
    ax.set_title("A year of EU-scale messaging, tpsi-ad counting (exact)", fontsize=9)
    save_figure(fig, out_dir, "year")
    plt.close(fig)
def _figure(rows: list[dict], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from e2escan.results import save_figure

    stages = [("images_scanned", "images scanned"), ("known_images_matched", "known images matched"),
              ("false_matches", "false matches"), ("accounts_over_threshold", "accounts over threshold"),
              ("innocent_accounts_flagged", "innocent accounts flagged"), ("review_cases", "review cases")]
    fig, axes = plt.subplots(1, len(FALSE_MATCH_RATES), figsize=(11, 4), sharey=True)
    for ax, fmr in zip(np.atleast_1d(axes), FALSE_MATCH_RATES):
        sub = [r for r in rows if r["false_match_rate"] == fmr]
        x = np.arange(len(stages))
        width = 0.8 / len(sub)
        for i, r in enumerate(sub):
            label = f"{r['protocol']} t={r['threshold']}" + (f" r={r['radius']}" if r["radius"] else "")
            vals = np.array([r[k] for k, _ in stages], dtype=float)
            xs = x + (i - len(sub) / 2 + 0.5) * width
            bars = ax.bar(xs, np.where(vals > 0, vals, np.nan), width, label=label)  # a zero has no bar on a log axis
            for xi in xs[vals == 0]:
                ax.annotate("0", (xi, 0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=5,
                            color=bars.patches[0].get_facecolor())
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([s for _, s in stages], rotation=30, ha="right", fontsize=7)
        ax.set_title(f"per-image false-match rate {fmr:g}", fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("images, accounts or cases in one day\n(a 0 marks a stage with none)")
    np.atleast_1d(axes)[-1].legend(fontsize=6)
    fig.suptitle("One day of EU-scale messaging through client-side scanning (statistical path)", fontsize=10)
    save_figure(fig, out_dir, "funnel")
    plt.close(fig)
