"""Metrics of one run: from the run's ground truth, and leakage only from the ServerView.

Ground-truth metrics (error rates, flags, detection, review load) read the
simulator's records. Leakage metrics read **only** ``relay.view``: per-account
features an honest-but-curious server can compute from its own log, set
against the true labels that it does not have.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics.leakage import LeakageEstimate, MaxFeatureTest, estimate, max_feature_test
from ..metrics.rates import proportion
from ..metrics.run import (
    Attacks,
    Collision,
    Costs,
    Evasion,
    PerImage,
    Poisoning,
    Rate,
    ReplicateAccounts,
    Review,
    RunMetrics,
)
from ..protocols.events import MatchEvent, RevealEvent, decode_event
from .faithful import FaithfulRun
from .traffic import KNOWN

SECONDS_PER_DAY = 86_400.0


def server_features(run: FaithfulRun) -> dict[str, np.ndarray]:
    """Per-account features computed from the ServerView alone."""
    ids = run.population.ids
    index = {name: i for i, name in enumerate(ids)}
    n = len(ids)
    f = {k: np.zeros(n) for k in ("messages_sent", "vouchers", "bytes_sent", "blob_uploads", "blob_bytes",
                                  "match_events", "opened_events", "reveal_events", "night_share")}
    night = np.zeros(n)
    for ev in run.relay.view:
        if ev.sender not in index:
            continue
        i = index[ev.sender]
        if ev.kind == "submit":
            f["messages_sent"][i] += 1
            f["bytes_sent"][i] += ev.size
            hour = (ev.at % SECONDS_PER_DAY) / 3600
            night[i] += hour < 6
        elif ev.kind == "voucher":
            f["vouchers"][i] += 1
        elif ev.kind == "blob_upload":
            f["blob_uploads"][i] += 1
            f["blob_bytes"][i] += ev.size
        elif ev.kind in ("match", "reveal") and ev.data is not None:  # a match or reveal event always has its body
            event = decode_event(ev.data)
            if isinstance(event, RevealEvent):
                f["reveal_events"][i] += 1
            elif isinstance(event, MatchEvent) and ev.ref is not None:  # the record at ingest, not a later update
                f["match_events"][i] += bool(event.fields.get("is_match", False))
                f["opened_events"][i] += bool(event.fields.get("opened", False))
    with np.errstate(invalid="ignore", divide="ignore"):
        f["night_share"] = np.where(f["messages_sent"] > 0, night / np.maximum(f["messages_sent"], 1), 0.0)
    return f


@dataclass(frozen=True)
class _Truth:
    """Per-image and per-account ground truth of one faithful run, as arrays."""

    known: np.ndarray
    match: np.ndarray
    sender: np.ndarray
    images_per_account: np.ndarray
    matches_per_account: np.ndarray
    flagged: np.ndarray
    confirmed: np.ndarray
    confirm_day: np.ndarray
    first_known_day: np.ndarray


def _truth(run: FaithfulRun) -> _Truth:
    n = len(run.population)
    imgs = run.images
    known = np.array([r.kind == KNOWN for r in imgs], dtype=bool)
    match = np.array([r.oracle_match for r in imgs], dtype=bool)
    sender = np.array([r.sender for r in imgs], dtype=np.int64)
    flagged = np.zeros(n, dtype=bool)
    for acct in run.flags:
        flagged[acct] = True
    confirmed = np.zeros(n, dtype=bool)
    confirm_day = np.full(n, -1)
    for d in run.decisions:
        if d.confirmed and not confirmed[d.case.account]:
            confirmed[d.case.account] = True
            confirm_day[d.case.account] = d.day
    first_known_day = np.full(n, -1)
    for r in imgs:
        if r.kind == KNOWN and first_known_day[r.sender] < 0:
            first_known_day[r.sender] = r.day
    return _Truth(known, match, sender, np.bincount(sender, minlength=n), np.bincount(sender[match], minlength=n),
                  flagged, confirmed, confirm_day, first_known_day)


def compute_metrics(run: FaithfulRun) -> RunMetrics:
    """The replicate's metrics: error rates, flags, detection and review from ground truth; leakage from the view."""
    pop = run.population
    n = len(pop)
    offender = pop.offender
    g = _truth(run)
    known, match = g.known, g.match
    rate = lambda k, of: Rate.of_proportion(proportion(int(k), int(of)))
    per_image = PerImage(
        images=len(run.images),
        known_images=int(known.sum()),
        innocent_images=int((~known).sum()),
        false_positive=rate((match & ~known).sum(), (~known).sum()),
        false_negative=rate((~match & known).sum(), known.sum()),
    )
    innocent = ~offender
    ttd = [int(g.confirm_day[i] - g.first_known_day[i]) for i in np.flatnonzero(offender & g.confirmed)
           if g.first_known_day[i] >= 0]
    accounts = ReplicateAccounts(
        accounts=n,
        offenders=int(offender.sum()),
        innocent_flagged=rate((g.flagged & innocent).sum(), innocent.sum()),
        innocent_falsely_confirmed=rate((g.confirmed & innocent).sum(), innocent.sum()),
        offenders_flagged=rate((g.flagged & offender).sum(), offender.sum()),
        offenders_detected=rate((g.confirmed & offender).sum(), offender.sum()),
        offenders_sending_known=int((offender & (g.first_known_day >= 0)).sum()),
        days_to_detection_mean=float(np.mean(ttd)) if ttd else None,
        days_to_detection_median=float(np.median(ttd)) if ttd else None,
        days_to_detection_n=len(ttd),
        mean_images_per_account=float(g.images_per_account.mean()),
        max_matches_innocent_account=int(g.matches_per_account[innocent].max(initial=0)),
    )
    reviewed = len(run.decisions)
    review = Review(
        cases_reviewed=reviewed,
        cases_confirmed=sum(d.confirmed for d in run.decisions),
        cases_confirmed_wrongly=sum(d.confirmed and not d.truly_offending for d in run.decisions),
        cases_cleared_wrongly=sum((not d.confirmed) and d.truly_offending for d in run.decisions),
        backlog_at_end=run.review_backlog,
        reviewer_hours=reviewed * run.scenario.review.minutes_per_case / 60.0,
    )
    return RunMetrics(
        per_image=per_image,
        accounts=accounts,
        review=review,
        attacks=attack_metrics(run),
        leakage=leakage_metrics(run, g.flagged),
        leakage_test=leakage_test(run, g.flagged),
        leakage_audit=tuple(audit_battery(run)),
        threshold=run.threshold,
        database_size=run.database_size,
    )


def attack_metrics(run: FaithfulRun) -> Attacks:
    """Outcomes of the scenario's attacks, from ground truth and the reveals."""
    s = run.scenario
    rate = lambda k, of: Rate.of_proportion(proportion(int(k), int(of)))
    evasion = collision = poisoning = None
    if s.attacks.evasion is not None:
        attacked = [r for r in run.images if r.attacked and r.kind == KNOWN]
        evasion = Evasion(
            images_attacked=len(attacked),
            evaded=rate(sum(not r.oracle_match for r in attacked), len(attacked)),
            min_distance=s.attacks.evasion.min_distance,
            min_ssim=s.attacks.evasion.min_ssim,
            max_queries=s.attacks.evasion.max_queries,
        )
    if s.attacks.collision is not None:
        crafted = [r for r in run.images if r.kind == "crafted"]
        targets = {r.sender for r in crafted}
        collision = Collision(
            crafted_images_sent=len(crafted),
            crafted_images_matching=rate(sum(r.oracle_match for r in crafted), len(crafted)),
            targets_flagged=rate(sum(1 for t in targets if t in run.flags), len(targets)),
            max_queries=s.attacks.collision.max_queries,
            min_ssim=s.attacks.collision.min_ssim,
        )
    if s.attacks.poisoning is not None:
        target_uids = {r.uid for r in run.images if r.target}
        holders = {r.sender for r in run.images if r.target}
        found = {acct for acct, uids in run.revealed.items() if uids & target_uids}
        poisoning = Poisoning(
            poison_entries=run.poison_entries,
            database_entries=run.database_size,
            target_images_sent=len(target_uids),
            target_images_matching=rate(sum(r.oracle_match for r in run.images if r.target), len(target_uids)),
            holders_revealed=rate(len(found & holders), len(holders)),
        )
    return Attacks(evasion, collision, poisoning)


def account_rows(run: FaithfulRun) -> list[dict[str, Any]]:
    """One row per account: its images, matches, and the days it was flagged, confirmed, first sent a known image."""
    g = _truth(run)
    known_per = np.bincount(g.sender[g.known], minlength=len(run.population))
    rows = []
    for i, name in enumerate(run.population.ids):
        rows.append({
            "account": name,
            "offender": bool(run.population.offender[i]),
            "images": int(g.images_per_account[i]),
            "known_images": int(known_per[i]),
            "matching_images": int(g.matches_per_account[i]),
            "flagged_day": run.flags.get(i, ""),
            "confirmed_day": int(g.confirm_day[i]) if g.confirmed[i] else "",
            "first_known_day": int(g.first_known_day[i]) if g.first_known_day[i] >= 0 else "",
        })
    return rows


def leakage_test(run: FaithfulRun, flagged: np.ndarray) -> MaxFeatureTest | None:
    """The headline: one max-over-features permutation test on the accounts the server did not flag.

    See :class:`~e2escan.metrics.leakage.MaxFeatureTest`: 999 permutations,
    the best of the features paid for, the advantage estimated on held-out
    folds. ``None`` when the scope has no offender or no innocent account.
    """
    feats = server_features(run)
    label = run.population.offender[~flagged]
    if label.all() or not label.any():
        return None
    columns = {name: values[~flagged] for name, values in feats.items()}
    return max_feature_test(columns, label, run.leakage_rng, "accounts not flagged")


def leakage_metrics(run: FaithfulRun, flagged: np.ndarray) -> tuple[LeakageEstimate, ...]:
    """Account-level leakage about offender status, from the ServerView only.

    Scopes: ``all`` accounts, and ``not-flagged`` accounts: what the server
    learns about the people the protocol is supposed to say nothing about.
    Image-level: whether a voucher's length tells matching from non-matching.
    """
    feats = server_features(run)
    label = run.population.offender
    rng = run.leakage_rng
    out = []
    for scope, mask in (("all accounts", np.ones_like(label)), ("accounts not flagged", ~flagged)):
        for name, values in feats.items():
            out.append(estimate(name, scope, values[mask], label[mask], rng, permutations=100))
    # Image level: voucher length against the true match status, among vouchers the server saw.
    if run.images:
        length = np.array([r.voucher_bytes for r in run.images], dtype=float)
        match = np.array([r.oracle_match for r in run.images], dtype=bool)
        out.append(estimate("voucher_length", "vouchers (match vs non-match)", length, match, rng, permutations=100))
    return tuple(out)


#: Families of the audit battery run on a simulation: those whose numbers are functions of the scenario and
#: seed. The voucher-bytes family reads ciphertext bytes (OS-random), so it would make run metrics differ
#: between identical runs; ``e2escan audit`` runs it.
RUN_FAMILIES = ("equality", "relations", "counts", "relay")


def audit_battery(run: FaithfulRun, permutations: int = 999) -> list[dict]:
    """The leakage audit's battery on the run's own ServerView: real view against the ideal world.

    Scope: accounts that sent at least one voucher and that the server never
    opened (for protocols with a threshold; all of them otherwise), since the
    ideal functionality describes the view below the threshold. The ideal
    world is built from the run's ground truth (which images matched, which
    went synthetic) and the run's seeded leakage generator. Returns one row
    per family (see :mod:`e2escan.audit.distinguishers`); an empty list when
    the protocol declares no ideal functionality.
    """
    from ..audit.distinguishers import EXTRACTORS, family_test, joint_null_max
    from ..audit.worlds import build_ideal_world, read_real_world
    from ..errors import ProtocolError

    proto, params = run.protocol, run.params
    try:
        ideal = proto.ideal_functionality(params, run.hash_bits)
    except ProtocolError:
        return []
    over = run.threshold is not None
    accounts = [a for i, a in enumerate(run.population.ids) if a in run.voucher_truths and not (over and i in run.flags)]
    if not accounts:
        return []
    worlds = build_ideal_world(proto, params, ideal, accounts, run.voucher_truths, read_real_world(run.relay, accounts),
                               run.leakage_rng)
    tables = [EXTRACTORS[family](worlds) for family in RUN_FAMILIES]
    null_max = joint_null_max(tables, run.leakage_rng, permutations)
    return [
        {"scope": "accounts not opened",
         **family_test(t, run.leakage_rng, alpha=0.01, null_max=null_max, bootstrap=100).as_row()}
        for t in tables
    ]


def cost_metrics(run: FaithfulRun) -> Costs:
    """Median per-operation wall-clock costs and mean sizes on the wire (not part of the deterministic metrics)."""
    c = run.costs
    subs: Counter[str] = Counter()
    sizes: defaultdict[str, int] = defaultdict(int)
    for ev in run.relay.view:
        if ev.kind in ("submit", "voucher", "blob_upload"):
            subs[ev.kind] += 1
            sizes[ev.kind] += ev.size

    def ms(xs: list[float]) -> float | None:
        return 1000.0 * float(np.median(xs)) if xs else None

    def per(kind: str, of: str = "") -> float:
        return sizes[kind] / subs[of or kind] if subs[of or kind] else 0.0

    return Costs(
        client_hash_ms_per_image=ms(c.hash_s),
        client_voucher_ms_per_image=ms(c.scan_s),
        server_ingest_ms_per_voucher=ms(c.ingest_s),
        voucher_bytes_mean=float(np.mean(c.voucher_bytes)) if c.voucher_bytes else 0.0,
        attachment_bytes_mean=float(np.mean(c.attachment_bytes)) if c.attachment_bytes else 0.0,
        envelope_bytes_mean=per("submit"),
        blob_bytes_mean=per("blob_upload"),
        voucher_bytes_per_message=per("voucher", "submit"),
        hash_cache_hits=run.hash_cache_hits,
        timing_note="median wall-clock per operation on this machine; not part of the deterministic metrics",
    )
