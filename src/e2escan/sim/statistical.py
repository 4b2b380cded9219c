"""The statistical path: per-account match counts sampled from calibrated probabilities.

It answers population-scale questions (hundreds of millions of accounts) that
the faithful path cannot run, with the same metrics and output format. The
model, per replicate:

* match probabilities: see :mod:`e2escan.sim.statistical_model` (a fresh image, a copy of a
  popular or known image, each drawn once per replicate per image and transform);
* messages per account-day are Poisson (or fixed), images are a binomial share
  of them. With Poisson traffic, Poisson thinning makes an innocent account's
  false matches Poisson(lambda * p_img) independent of its other images, so
  innocent accounts are sampled sparsely: only the few with a false match cost
  anything (exact, not an approximation). With fixed traffic every account is
  sampled densely, chunk by chunk;
* offenders are sampled densely, day by day, with their known and innocent images;
* threshold protocols with synthetic vouchers (tpsi-ad and its variants): each
  voucher is synthetic with the protocol's ``synthetic_probability`` (the
  device's ``synthetic_capacity`` bounds the count in the leakage sample); a
  synthetic voucher opens like a match and never counts toward the threshold,
  so a matching image counts with probability ``1 - synthetic_probability``.
  Per-image false-positive and false-negative rates are of the hash match, as
  on the faithful path;
* ``dedup = "hash"`` (copies of one hash count once toward ``t``): an
  account's copies of one unit count once, and copies that kept the
  original's hash count once with it, for innocents' forwards and offenders'
  known images alike. Transforms drawn with randomness (noise, a random crop
  position) give every copy a hash of its own on the faithful path; the model
  counts them once, so with such transforms in the mix it undercounts;
* review is a FIFO queue over daily cohorts with the scenario's capacity and
  accuracy. A case is "truly offending" when the account is an offender (in the
  faithful path: when a revealed image is a known image; the two differ only
  when an offender is flagged purely by false matches).

Leakage is estimated on a stratified sample of accounts (``leakage_sample``
per class) from the features the server would log: vouchers (one per image),
messages, per-voucher match results where the protocol reveals them, and the
opened-voucher count (genuine matches plus synthetic vouchers) for protocols
with synthetic vouchers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics.leakage import LeakageEstimate, MaxFeatureTest, estimate, max_feature_test
from ..metrics.rates import proportion
from ..metrics.run import Costs, PerImage, Rate, ReplicateAccounts, Review, RunMetrics
from .faithful import replicate_streams, spawn_streams
from .scenario import Scenario
from .statistical_model import (
    Probabilities,
    draw_units,
    innocent_flag_expectation,
    load_calibration,
    probabilities,
    protocol_matching,
)

__all__ = [
    "EngineResult", "Probabilities", "crossing_days", "draw_units", "innocent_flag_expectation",
    "innocent_flag_replicates", "load_calibration", "probabilities", "protocol_matching", "run_statistical",
    "synthetic_split",
]


@dataclass(frozen=True)
class EngineResult:
    """One statistical replicate: its metrics and costs, daily counts, and the match-count histogram rows."""

    metrics: RunMetrics
    costs: Costs
    daily: tuple[dict[str, Any], ...]
    histogram: list[dict[str, int]]


def run_statistical(
    scenario: Scenario,
    replicate: int = 0,
    progress: Callable[[int], None] | None = None,
    protocol: Any = None,
) -> EngineResult:
    """Simulate one replicate: its metrics, costs, daily counts and match histogram, as the faithful path gives them.

    ``protocol`` replaces the registered protocol module (for variants under test), as in ``run_faithful``.
    """
    started = time.perf_counter()
    cal = load_calibration(scenario)
    streams = spawn_streams(scenario, replicate)
    rng = streams["traffic"]
    s, pop, tr = scenario, scenario.population, scenario.traffic
    prob = probabilities(s, cal, streams["content"], protocol)
    n = pop.accounts
    n_off = int(round(pop.offender_share * n))
    n_inn = n - n_off
    days = s.days
    lam_img = tr.messages_per_day * tr.image_share  # images per innocent account-day
    lam_img_off = lam_img * tr.offender_activity

    # -- innocent accounts: false matches only -------------------------------------
    inn_images_total, inn_false_by_account, inn_cross_day = _innocent_accounts(s, prob, n_inn, lam_img, rng, progress)
    nonzero_inn = inn_false_by_account[inn_false_by_account > 0]
    hist_inn = np.bincount(nonzero_inn, minlength=prob.threshold + 2)
    hist_inn[0] = n_inn - nonzero_inn.size

    # -- offenders: dense, day by day ------------------------------------------------
    off = _offenders(s, prob, n_off, lam_img_off, rng)
    hist_off = np.bincount(off["matches"], minlength=prob.threshold + 2)

    # -- daily flags and review ---------------------------------------------------------
    review_rng = streams["review"]
    flags_inn_by_day = np.bincount(inn_cross_day, minlength=days)[:days]
    off_flag_day = off["cross_day"]
    daily, confirmed_off_day, inn_confirmed, decisions = _review(s, flags_inn_by_day, off_flag_day, review_rng)

    images_total = inn_images_total + int(off["images"].sum())
    known_total = int(off["known"].sum())
    known_matched = int(off["known_matched"].sum())
    false_matches = int(inn_false_by_account.sum()) + int(off["false"].sum())
    innocent_images = images_total - known_total
    first_known = off["first_known_day"]
    detected = confirmed_off_day >= 0
    ttd = (confirmed_off_day - first_known)[detected & (first_known >= 0)]
    rate = lambda k, of: Rate.of_proportion(proportion(int(k), int(of)))
    per_image = PerImage(
        images=images_total,
        known_images=known_total,
        innocent_images=innocent_images,
        false_positive=rate(false_matches, innocent_images),
        false_negative=rate(known_total - known_matched, known_total),
    )
    accounts = ReplicateAccounts(
        accounts=n,
        offenders=n_off,
        innocent_flagged=rate((inn_cross_day >= 0).sum(), n_inn),
        innocent_falsely_confirmed=rate(inn_confirmed, n_inn),
        offenders_flagged=rate((off_flag_day >= 0).sum(), n_off),
        offenders_detected=rate(detected.sum(), n_off),
        offenders_sending_known=int((first_known >= 0).sum()),
        days_to_detection_mean=float(ttd.mean()) if ttd.size else None,
        days_to_detection_median=float(np.median(ttd)) if ttd.size else None,
        days_to_detection_n=int(ttd.size),
        mean_images_per_account=images_total / n,
        max_matches_innocent_account=int(inn_false_by_account.max(initial=0)),
    )
    reviewed = decisions["reviewed"]
    review = Review(
        cases_reviewed=reviewed,
        cases_confirmed=decisions["confirmed"],
        cases_confirmed_wrongly=decisions["confirmed_wrongly"],
        cases_cleared_wrongly=decisions["cleared_wrongly"],
        backlog_at_end=decisions["backlog"],
        reviewer_hours=reviewed * s.review.minutes_per_case / 60.0,
    )
    leakage, leakage_test = _leakage(s, prob, lam_img, lam_img_off, streams["leakage"])
    metrics = RunMetrics(
        per_image=per_image,
        accounts=accounts,
        review=review,
        leakage=leakage,
        leakage_test=leakage_test,
        threshold=prob.threshold,
        database_size=s.content.database_size,
        model={
            **(innocent_flag_expectation(n_inn, lam_img * days, prob) if s.traffic.distribution == "poisson" else {}),
            "radius": prob.radius,
            "p_fresh_false_match": prob.p_fresh,
            "p_innocent_image_false_match": prob.p_innocent_image,
            "recall_known": prob.recall,
            "synthetic_probability": prob.synthetic,
            "popular_images_matching": int(prob.p_popular.sum()),
            "calibration": cal.corpus + f" ({cal.hasher}, {cal.encoding}, {cal.image_size}px)",
            "false_match_rate_source": "scenario (statistical.false_match_rate)"
            if s.statistical.false_match_rate is not None else "calibration",
        },
    )
    top = max(int(hist_inn.size), int(hist_off.size))
    histogram = [
        {"matching_images": k, "innocent_accounts": int(hist_inn[k]) if k < hist_inn.size else 0,
         "offending_accounts": int(hist_off[k]) if k < hist_off.size else 0}
        for k in range(top)
    ]
    costs = Costs(
        client_hash_ms_per_image=None,
        client_voucher_ms_per_image=None,
        server_ingest_ms_per_voucher=None,
        voucher_bytes_mean=None,
        attachment_bytes_mean=None,
        envelope_bytes_mean=None,
        blob_bytes_mean=None,
        voucher_bytes_per_message=None,
        hash_cache_hits=0,
        simulation_wall_s=round(time.perf_counter() - started, 3),
        timing_note="statistical path: per-operation costs are not simulated; see the faithful path or papers/protocol-costs",
    )
    return EngineResult(metrics, costs, tuple(daily), histogram)


def _innocent_accounts(s: Scenario, prob: Probabilities, n_inn: int, lam: float, rng: np.random.Generator,
                       progress: Callable[[int], None] | None) -> tuple[int, np.ndarray, np.ndarray]:
    """(total innocent images, false matches per affected account, crossing day per affected account)."""
    days, t = s.days, prob.threshold
    units = _viral_units(prob)
    if s.traffic.distribution == "poisson":
        total_images = int(rng.poisson(lam * days * n_inn)) if n_inn else 0
        # Thinning: fresh false matches per account-day are Poisson(lam * p_fresh_image), and the matching
        # forwards of popular image i sent with transform k are Poisson(lam * f * share_i * w_k * r_k), all
        # independent; each is placed on a uniform account and day (exact for Poisson traffic).
        k = int(rng.poisson(lam * prob.p_fresh_image * days * n_inn)) if n_inn else 0
        accounts_l, days_l, unit_l = [rng.integers(0, n_inn, size=k)], [rng.integers(0, days, size=k)], [np.full(k, -1)]
        for u, rate in units:
            k = int(rng.poisson(lam * rate * days * n_inn)) if n_inn else 0
            accounts_l.append(rng.integers(0, n_inn, size=k))
            days_l.append(rng.integers(0, days, size=k))
            unit_l.append(np.full(k, u))
        accounts, day_of, unit = (np.concatenate(x) for x in (accounts_l, days_l, unit_l))
        if progress:
            progress(n_inn)
    else:
        m = int(round(s.traffic.messages_per_day))
        accounts_l, days_l, unit_l = [], [], []
        total_images = 0
        chunk = s.statistical.chunk_accounts
        for first in range(0, n_inn, chunk):
            size = min(chunk, n_inn - first)
            for d in range(days):
                imgs = rng.binomial(m, s.traffic.image_share, size)
                total_images += int(imgs.sum())
                for u, rate in [(-1, prob.p_fresh_image), *units]:
                    false = rng.binomial(imgs, rate)
                    hit = np.flatnonzero(false)
                    accounts_l.append(np.repeat(first + hit, false[hit]))
                    days_l.append(np.full(int(false[hit].sum()), d))
                    unit_l.append(np.full(int(false[hit].sum()), u))
            if progress:
                progress(size)
        accounts = np.concatenate(accounts_l) if accounts_l else np.zeros(0, np.int64)
        day_of = np.concatenate(days_l) if days_l else np.zeros(0, np.int64)
        unit = np.concatenate(unit_l) if unit_l else np.zeros(0, np.int64)
    if accounts.size == 0:
        return total_images, np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((day_of, accounts))
    accounts, day_of, unit = accounts[order], day_of[order], unit[order]
    _, start, counts = np.unique(accounts, return_index=True, return_counts=True)  # every matching image
    if prob.dedup:
        # dedup = "hash": an account's copies of one hash count once toward t (the earliest copy counts).
        rows = np.flatnonzero(unit >= 0)
        if rows.size:
            keys = _hash_keys(unit[rows], prob.units()[1])
            key = accounts[rows].astype(np.int64) * (int(keys.max()) + 1) + keys
            # Rows are sorted by (account, day), so the first row of each key is the earliest copy.
            first_rows = rows[np.unique(key, return_index=True)[1]]
            keep = np.ones(accounts.size, dtype=bool)
            keep[rows] = False
            keep[first_rows] = True
            accounts, day_of = accounts[keep], day_of[keep]
    _, start, genuine_counts = np.unique(accounts, return_index=True, return_counts=True)
    if prob.synthetic > 0:
        # A matching image sent as a synthetic voucher opens but never counts toward t.
        genuine = _genuine(rng, accounts.size, prob.synthetic)
        accounts, day_of = accounts[genuine], day_of[genuine]
        _, start, genuine_counts = np.unique(accounts, return_index=True, return_counts=True)
    return total_images, counts, crossing_days(day_of, start, genuine_counts, t)


def crossing_days(day_of: np.ndarray, start: np.ndarray, counts: np.ndarray, t: int) -> np.ndarray:
    """Per account with at least ``t`` genuine matches (rows sorted by account, then day): the day of the t-th."""
    over = counts >= t
    return day_of[start[over] + t - 1]


def innocent_flag_replicates(scenario: Scenario, replicates: int, protocol: Any = None) -> np.ndarray:
    """Innocent accounts flagged in each of ``replicates`` replicates, exactly as :func:`run_statistical` draws them.

    Each replicate spawns the same streams as a full run of that replicate
    (its own database and viral draws), so entry ``r`` equals replicate
    ``r``'s ``innocent_flagged`` count; offenders and review are skipped,
    which makes thousands of replicates cheap.
    """
    cal = load_calibration(scenario)
    pop, tr = scenario.population, scenario.traffic
    n_inn = pop.accounts - int(round(pop.offender_share * pop.accounts))
    lam = tr.messages_per_day * tr.image_share
    out = np.zeros(replicates, dtype=np.int64)
    for r, streams in enumerate(replicate_streams(scenario, replicates)):
        prob = probabilities(scenario, cal, streams["content"], protocol)
        _, _, cross = _innocent_accounts(scenario, prob, n_inn, lam, streams["traffic"], None)
        out[r] = cross.size
    return out


def _viral_units(prob: Probabilities) -> list[tuple[int, float]]:
    """``(unit, per-image rate)`` of every matching (popular image, transform) unit: unit = i * K + k."""
    match, _ = prob.units()
    k_specs = match.shape[1]
    out = []
    for i, k in zip(*np.nonzero(match)):
        rate = prob.forward_share * float(prob.popular_share[i]) * float(prob.spec_weight[k])
        if rate > 0:
            out.append((int(i) * k_specs + int(k), rate))
    return out


def _hash_keys(unit: np.ndarray, same: np.ndarray) -> np.ndarray:
    """One key per distinct hash: unit ``i * K + k``, or ``i * K + K`` (+ offset) when the copy kept image i's hash."""
    k_specs = same.shape[1]
    i, k = np.divmod(unit, k_specs)
    return np.where(same[i, k], i * (k_specs + 1) + k_specs, i * (k_specs + 1) + k)


def _offenders(s: Scenario, prob: Probabilities, n_off: int, lam: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Offenders day by day: images, known images (each a copy of database entry j with transform k), matches.

    A known copy matches as its (entry, transform) unit does, drawn once per
    replicate with the transform's recall (the same copy sent twice matches
    twice or never). Under dedup an offender's copies of one hash count once
    toward t; every matching image counts in ``matches`` (the histogram).
    """
    tr, ct = s.traffic, s.content
    z = lambda: np.zeros(n_off, dtype=np.int64)
    out = {k: z() for k in ("images", "known", "known_matched", "false", "matches")}
    out["first_known_day"] = np.full(n_off, -1)
    m = int(round(tr.messages_per_day * tr.offender_activity))
    k_specs = prob.spec_weight.size
    who, when, entry, spec, false_who, false_when = [], [], [], [], [], []
    for d in range(s.days):
        if tr.distribution == "poisson":
            imgs = rng.poisson(lam, n_off)
        else:
            imgs = rng.binomial(m, tr.image_share, n_off)
        known = rng.binomial(imgs, ct.offender_known_share)
        false = rng.binomial(imgs - known, prob.p_innocent_image)
        for key, v in (("images", imgs), ("known", known), ("false", false)):
            out[key] += v
        out["first_known_day"][(out["first_known_day"] < 0) & (known > 0)] = d
        n_known = int(known.sum())
        who.append(np.repeat(np.arange(n_off), known))
        when.append(np.full(n_known, d))
        entry.append(rng.integers(0, max(ct.database_size, 1), size=n_known))
        spec.append(rng.choice(k_specs, size=n_known, p=prob.spec_weight))
        false_who.append(np.repeat(np.arange(n_off), false))
        false_when.append(np.full(int(false.sum()), d))
    who_a, when_a, entry_a, spec_a = (np.concatenate(x).astype(np.int64) for x in (who, when, entry, spec))
    # One draw per distinct (entry, transform) unit sent in this replicate.
    units, inverse = np.unique(entry_a * k_specs + spec_a, return_inverse=True)
    u_k = units % k_specs
    unit_match = rng.random(units.size) < prob.spec_recall[u_k]
    unit_same = unit_match & (rng.random(units.size) < prob.spec_same[u_k])
    matched = unit_match[inverse]
    out["known_matched"] = np.bincount(who_a[matched], minlength=n_off)
    out["matches"] = out["known_matched"] + out["false"]
    # Rows that count toward t: matching known copies (one key per hash) and innocent images' false matches
    # (each a hash of its own: negative keys).
    key = np.where(unit_same[inverse], entry_a * (k_specs + 1) + k_specs, entry_a * (k_specs + 1) + spec_a)[matched]
    f_who, f_when = np.concatenate(false_who).astype(np.int64), np.concatenate(false_when).astype(np.int64)
    acc = np.r_[who_a[matched], f_who]
    day_of = np.r_[when_a[matched], f_when]
    key = np.r_[key, -1 - np.arange(f_who.size)]
    order = np.lexsort((day_of, acc))
    acc, day_of, key = acc[order], day_of[order], key[order]
    if prob.dedup and acc.size:
        # The first row of each (offender, key) is its earliest copy (rows are sorted by offender, then day).
        composite = acc * (int(key.max()) + f_who.size + 2) + (key + f_who.size + 1)
        first = np.sort(np.unique(composite, return_index=True)[1])
        acc, day_of = acc[first], day_of[first]
    if prob.synthetic > 0:
        genuine = _genuine(rng, acc.size, prob.synthetic)  # a synthetic voucher never counts toward t
        acc, day_of = acc[genuine], day_of[genuine]
    ids, start, counts = np.unique(acc, return_index=True, return_counts=True)
    over = counts >= prob.threshold
    out["cross_day"] = np.full(n_off, -1)
    out["cross_day"][ids[over]] = crossing_days(day_of, start, counts, prob.threshold)
    return out


def _genuine(rng: np.random.Generator, size: int, synthetic: float) -> np.ndarray:
    """Which of ``size`` matching images were sent as genuine (not synthetic) vouchers."""
    return rng.random(size) >= synthetic


def _review(s: Scenario, flags_inn_by_day: np.ndarray, off_flag_day: np.ndarray, rng: np.random.Generator):
    """FIFO review over daily cohorts; returns (daily rows, confirm day per offender, innocents confirmed, totals)."""
    acc, cap = s.review.accuracy, s.review.capacity_per_day
    confirm_day = np.full(off_flag_day.size, -1)
    queue: deque[list] = deque()  # [n_innocent_left, offender indices left (array)]
    totals = {"reviewed": 0, "confirmed": 0, "confirmed_wrongly": 0, "cleared_wrongly": 0}
    inn_confirmed = 0
    daily = []
    for d in range(s.days):
        new_off = np.flatnonzero(off_flag_day == d)
        rng.shuffle(new_off)
        queue.append([int(flags_inn_by_day[d]), new_off])
        budget = cap
        reviewed = confirmed = 0
        while budget > 0 and queue:
            n_i, offs = queue[0]
            size = n_i + offs.size
            k = min(budget, size)
            k_off = int(rng.hypergeometric(offs.size, n_i, k)) if size else 0
            k_inn = k - k_off
            take, rest = offs[:k_off], offs[k_off:]
            hit = rng.random(k_off) < acc
            confirm_day[take[hit]] = d
            wrong = int(rng.binomial(k_inn, 1 - acc)) if k_inn else 0
            inn_confirmed += wrong
            totals["confirmed_wrongly"] += wrong
            totals["cleared_wrongly"] += int((~hit).sum())
            confirmed += int(hit.sum()) + wrong
            reviewed += k
            budget -= k
            if k == size:
                queue.popleft()
            else:
                queue[0] = [n_i - k_inn, rest]
        totals["reviewed"] += reviewed
        totals["confirmed"] += confirmed
        backlog = sum(c[0] + c[1].size for c in queue)
        daily.append({"day": d, "new_flags": int(flags_inn_by_day[d]) + int(new_off.size), "reviewed": reviewed,
                      "confirmed": confirmed, "backlog": backlog})
    totals["backlog"] = sum(c[0] + c[1].size for c in queue)
    return daily, confirm_day, inn_confirmed, totals


def synthetic_split(rng: np.random.Generator, images: np.ndarray, matches: np.ndarray, p: float,
                    capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Per account: matches that count toward t (sent real) and synthetic vouchers sent, one draw per image.

    Each image wants a synthetic voucher with probability ``p``; the first
    ``capacity`` get one, a uniformly random subset of those that want one
    (hence the hypergeometric split between matching and other images).
    """
    want_match = rng.binomial(matches, p)
    want_other = rng.binomial(images - matches, p)
    synthetic = np.minimum(want_match + want_other, capacity)
    syn_match = want_match.copy()
    capped = synthetic < want_match + want_other
    if capped.any():
        syn_match[capped] = rng.hypergeometric(want_match[capped], want_other[capped], synthetic[capped])
    return matches - syn_match, synthetic


def _leakage(s: Scenario, prob: Probabilities, lam: float, lam_off: float,
             rng: np.random.Generator) -> tuple[tuple[LeakageEstimate, ...], MaxFeatureTest | None]:
    """Leakage estimates on a stratified sample of never-flagged accounts (features as the server logs them)."""
    k = s.statistical.leakage_sample
    n_off = int(round(s.population.offender_share * s.population.accounts))
    if n_off == 0 or n_off == s.population.accounts:
        return (), None
    k_off, k_inn = min(k, n_off), min(k, s.population.accounts - n_off)
    days = s.days

    def sample(count: int, rate: float, offender: bool) -> dict[str, np.ndarray]:
        if s.traffic.distribution == "fixed":  # exactly the rounded daily count, as the planner sends
            per_day = round(s.traffic.messages_per_day * (s.traffic.offender_activity if offender else 1.0))
            msgs = np.full(count, per_day * days, dtype=np.int64)
        else:
            msgs = rng.poisson(rate / s.traffic.image_share * days if s.traffic.image_share else 0, count)
        imgs = rng.binomial(msgs, s.traffic.image_share)
        known = rng.binomial(imgs, s.content.offender_known_share) if offender else np.zeros(count, np.int64)
        matches = rng.binomial(known, prob.recall) + rng.binomial(imgs - known, prob.p_innocent_image)
        out = {"messages_sent": msgs, "vouchers": imgs, "matches": matches, "counted": matches}
        if prob.synthetic > 0:
            # Each image wants a synthetic voucher with the protocol's probability; the first `capacity` of
            # them get one (which ones: a random subset, hence the hypergeometric split). A synthetic voucher
            # opens; a matching image sent synthetic does not count toward t. One draw per image, so a
            # matching image is either real or synthetic, never both (the opened count's variance is
            # (n - M) s (1 - s) uncapped; drawing the two independently overstated it by 2 M s (1 - s)).
            out["counted"], synthetic = synthetic_split(rng, imgs, matches, prob.synthetic, prob.synthetic_capacity)
            out["opened"] = out["counted"] + synthetic
        return out

    a, b = sample(k_off, lam_off, True), sample(k_inn, lam, False)
    keep_a, keep_b = a["counted"] < prob.threshold, b["counted"] < prob.threshold  # not flagged
    label = np.r_[np.ones(int(keep_a.sum()), bool), np.zeros(int(keep_b.sum()), bool)]
    feats = {"messages_sent": "messages_sent", "vouchers": "vouchers"}
    if prob.reveals_each_match:
        feats["match_events"] = "matches"
    if prob.synthetic > 0:
        feats["opened_events"] = "opened"
    out = []
    columns = {}
    for name, key in feats.items():
        values = np.r_[a[key][keep_a], b[key][keep_b]].astype(float)
        columns[name] = values
        out.append(estimate(name, "accounts not flagged", values, label, rng, permutations=100))
    return tuple(out), max_feature_test(columns, label, rng, "accounts not flagged")
