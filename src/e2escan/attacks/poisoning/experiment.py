"""The circulating-image experiment: poisoning per radius and fraction; per-copy, account-level and protocol-run tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ConfigError
from ...hashing import HashArray, get_hasher
from ...images import image_rng, synthetic_image
from ...metrics.probability import Z_999, check_probability
from ...metrics.rates import proportion
from ...protocols import Protocol, ProtocolParams
from .edits import EVERYDAY_EDITS, CopySet, EditFamily, make_copies
from .entries import choose_poison, matches_any, poisoned_database
from .holders import (
    DEDUP_MODES,
    HolderPool,
    draw_holder_copies,
    holder_opened_detection,
    holder_revealed_probability,
    opened_count_test,
    revealed_probability,
    simulate_revealed,
)
from .protocol_runs import ProtocolPoisoningRun, ProtocolUnderTest, run_protocol_poisoning

__all__ = ["DEFAULT_PROTOCOLS", "PoisoningExperiment", "PoisoningResults", "run_poisoning_experiment"]

#: A protocol under test with its protocol and parameters resolved.
Resolved = tuple[ProtocolUnderTest, Protocol, ProtocolParams]
#: The key of the per-setting tables: (matching radius, poisoned fraction).
Setting = tuple[int, float]

DEFAULT_PROTOCOLS: tuple[ProtocolUnderTest, ...] = (
    ProtocolUnderTest("plaintext, radius 31", "plaintext", {"radius": 31}),
    ProtocolUnderTest("plaintext, exact", "plaintext", {"radius": 0}),
    *(
        ProtocolUnderTest(
            f"tpsi-ad t={t}, synthetic {'off' if s == 0 else s}",
            "tpsi-ad",
            {"threshold": t, "synthetic_probability": s, "dedup": "none", "payload_size": 16},
        )
        for t in (1, 3, 30)
        for s in (0.0, 0.1)
    ),
)


@dataclass(frozen=True)
class PoisoningExperiment:
    """Everything one poisoning measurement depends on (the generator passed to the run aside).

    ``edits`` is the edit mix (families and weights, default
    :data:`EVERYDAY_EDITS`; see :func:`~e2escan.attacks.poisoning.edits.with_weights`): the per-copy rates, and
    so every account-level number, follow from it.

    Holder models (``holders`` table): for the threshold protocols, at
    ``holder_fractions``, every ``correlation`` in ``correlations`` and both
    ``dedup`` modes, ``model_holders`` holders per target are simulated and
    set beside the closed form.

    Protocol runs: per target, ``run_accounts`` accounts hold copies of it and
    as many hold none; each has ``other_images`` unrelated images besides. A
    holder holds ``run_copies`` copies, or ``threshold + 10`` when the
    protocol's threshold is above ``run_copies`` (so the threshold can be met).
    Holders are drawn with each correlation of ``run_correlations``; a protocol
    whose parameters set ``dedup`` is run with each mode of ``run_dedup``.
    """

    hasher: str = "pdq"
    image_size: int = 256
    targets: int = 3
    attacker_copies: int = 120
    victim_copies: int = 120
    unrelated_images: int = 150
    database_size: int = 1000
    fractions: tuple[float, ...] = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
    copies_held: tuple[int, ...] = (1, 3, 10, 40)
    other_images: int = 10
    max_false_positive: float = 0.01
    synthetic_grid: tuple[float, ...] = (0.0, 0.01, 0.1)
    protocols: tuple[ProtocolUnderTest, ...] = DEFAULT_PROTOCOLS
    run_fractions: tuple[float, ...] = (0.05,)
    run_accounts: int = 6
    run_copies: int = 3
    edits: tuple[EditFamily, ...] = EVERYDAY_EDITS
    correlations: tuple[float, ...] = (0.0, 0.5, 1.0)
    holder_fractions: tuple[float, ...] = (0.05,)
    model_holders: int = 4000
    run_correlations: tuple[float, ...] = (0.0, 1.0)
    run_dedup: tuple[str, ...] = ("none", "hash")

    def __post_init__(self) -> None:
        counts = {"targets": (self.targets, 1), "attacker_copies": (self.attacker_copies, 1),
                  "victim_copies": (self.victim_copies, 1), "unrelated_images": (self.unrelated_images, 1),
                  "database_size": (self.database_size, 1), "model_holders": (self.model_holders, 1),
                  "run_accounts": (self.run_accounts, 0), "run_copies": (self.run_copies, 0),
                  "other_images": (self.other_images, 0)}
        for name, (value, lowest) in counts.items():
            if value < lowest:
                raise ConfigError(f"PoisoningExperiment.{name} must be >= {lowest}, got {value}")
        for f in (*self.fractions, *self.run_fractions, *self.holder_fractions):
            if not 0.0 <= f <= 1.0:
                raise ConfigError(f"PoisoningExperiment: poison fraction {f} must lie in [0, 1]")
        for s in self.synthetic_grid:
            check_probability("PoisoningExperiment.synthetic_grid entry", s)
        check_probability("PoisoningExperiment.max_false_positive", self.max_false_positive)
        if any(m < 1 for m in self.copies_held):
            raise ConfigError(f"PoisoningExperiment.copies_held must list counts >= 1, got {self.copies_held}")
        for name, rhos in (("correlations", self.correlations), ("run_correlations", self.run_correlations)):
            for rho in rhos:
                if not 0.0 <= rho <= 1.0:
                    raise ConfigError(f"PoisoningExperiment.{name} entry {rho} must lie in [0, 1]")
        if not self.run_correlations:
            raise ConfigError("PoisoningExperiment.run_correlations must list at least one correlation")
        bad = [d for d in self.run_dedup if d not in DEDUP_MODES]
        if bad or not self.run_dedup:
            raise ConfigError(f"PoisoningExperiment.run_dedup = {self.run_dedup}; accepted entries: {', '.join(DEDUP_MODES)}")
        if not self.edits:
            raise ConfigError("PoisoningExperiment.edits needs at least one edit family")

    def budget(self, fraction: float) -> int:
        """Database entries the adversary controls at ``fraction``."""
        return round(fraction * self.database_size)

    def copies_for(self, threshold: int | None) -> int:
        """Copies a holder holds in the protocol runs: ``run_copies``, or ``threshold + 10`` when that is more."""
        t = threshold or 1
        return self.run_copies if t <= self.run_copies else t + 10


@dataclass
class PoisoningResults:
    """Tidy tables (lists of rows) of one experiment; see :func:`run_poisoning_experiment`."""

    per_copy: list[dict[str, Any]]
    detection: list[dict[str, Any]]
    protocol_runs: list[dict[str, Any]]
    per_target_rate: dict[tuple[int, float], np.ndarray]  # (radius, fraction) -> q per target
    holders: list[dict[str, Any]] = field(default_factory=list)
    pools: dict[tuple[int, float], list[HolderPool]] = field(default_factory=dict)  # (radius, fraction) -> per target


def _sources(experiment: PoisoningExperiment, rng: np.random.Generator) -> tuple[list[Image.Image], list[Image.Image]]:
    """The target images and the unrelated images (synthetic, from two seeds drawn from ``rng``)."""
    size = (experiment.image_size, experiment.image_size)
    target_seed, unrelated_seed = (int(s) for s in rng.integers(0, 2**63, size=2))
    targets = [synthetic_image(image_rng(target_seed, i), size) for i in range(experiment.targets)]
    unrelated = [synthetic_image(image_rng(unrelated_seed, i), size) for i in range(experiment.unrelated_images)]
    return targets, unrelated


def run_poisoning_experiment(experiment: PoisoningExperiment, rng: np.random.Generator) -> PoisoningResults:
    """Measure detection against the poisoned fraction, directly and with the real protocols.

    Randomness is spawned from ``rng`` in a fixed order (images, attacker
    copies, victim copies, databases and accounts, holder-model simulation),
    so one seed gives one result. Returns four tables:

    * ``per_copy``: per matching radius, fraction and edit family, the share of
      victim copies the poisoned entries match (mean over targets), and the
      share of unrelated images they match (false matches). This is per-copy
      detection of one circulating image, not the surveillance of a place
      (for that, see :func:`~e2escan.attacks.poisoning.viewpoints.run_viewpoint_surveillance`).
    * ``detection``: per protocol, fraction and copies held, the probability
      that a holder's target copy is decrypted and the sub-threshold counting
      test, both computed directly for independent copies and ``dedup =
      "none"`` (the synthetic probability is varied over ``synthetic_grid`` for
      threshold variants).
    * ``holders``: per threshold protocol, fraction, copies held, correlation
      and dedup mode, the holder model's reveal probability: simulated (mean
      over targets, with its standard error) beside the closed form where one
      exists (``dedup = "none"``).
    * ``protocol_runs``: at ``run_fractions``, the same quantities measured by
      running every protocol of ``experiment.protocols`` on real accounts
      (for each holder correlation and dedup mode asked for), beside the
      model's value: a check of the protocol implementation against the
      model, not of the model.
    """
    images_rng, attacker_rng, victim_rng, run_rng, model_rng = rng.spawn(5)
    hasher = get_hasher(experiment.hasher)
    targets, unrelated_images = _sources(experiment, images_rng)
    attacker = make_copies(targets, experiment.edits, experiment.attacker_copies, hasher, attacker_rng)
    victim = make_copies(targets, experiment.edits, experiment.victim_copies, hasher, victim_rng)
    unrelated = HashArray.from_hashes(hasher.hash(im) for im in unrelated_images)

    resolved: list[Resolved] = [(put, *put.resolve()) for put in experiment.protocols]
    radii = sorted({proto.match_radius(params) for _, proto, params in resolved})
    poison: dict[tuple[int, float, int], HashArray] = {}
    per_copy_rows: list[dict[str, Any]] = []
    rates: dict[Setting, np.ndarray] = {}
    pools: dict[Setting, list[HolderPool]] = {}
    families = [e.name for e in experiment.edits]
    extra = tuple(dict.fromkeys(f for f in (*experiment.run_fractions, *experiment.holder_fractions) if f not in experiment.fractions))
    for radius in radii:
        for fraction in experiment.fractions + extra:
            budget = experiment.budget(fraction)
            by_family = np.full((experiment.targets, len(families)), np.nan)  # NaN: the family made no copy
            false_match = np.zeros(experiment.targets)
            used = 0
            pools[(radius, fraction)] = []
            for t in range(experiment.targets):
                entries = choose_poison(attacker.of_target(t).hashes, budget, radius)
                poison[(radius, fraction, t)] = entries
                used += len(entries)
                mine = victim.of_target(t)
                pool = HolderPool.from_copies(mine, matches_any(entries, mine.hashes, radius), families)
                pools[(radius, fraction)].append(pool)
                present = np.bincount(pool.family, minlength=len(families)) > 0
                by_family[t, present] = pool.rates()[present]
                false_match[t] = matches_any(entries, unrelated, radius).mean()
            q = np.array([pool.rate() for pool in pools[(radius, fraction)]])
            rates[(radius, fraction)] = q
            if fraction not in experiment.fractions:
                continue
            base = {
                "radius": radius,
                "poison_fraction": fraction,
                "poisoned_entries_budget": budget,
                "poisoned_entries_used_mean": used / experiment.targets,
            }
            per_copy_rows.append({**base, "edit_family": "all", "per_copy_detection_rate": float(q.mean()),
                                  "unrelated_false_match": float(false_match.mean())})
            for f, vals in zip(families, by_family.T):
                per_copy_rows.append({**base, "edit_family": f,
                                      "per_copy_detection_rate": float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan"),
                                      "unrelated_false_match": float(false_match.mean())})

    detection_rows = _detection_table(experiment, resolved, rates)
    run_rows = _protocol_run_table(experiment, resolved, pools, poison, victim, unrelated, run_rng, model_rng)
    holder_rows = _holder_table(experiment, resolved, pools, model_rng)
    return PoisoningResults(per_copy_rows, detection_rows, run_rows, rates, holder_rows, pools)


def _direct(q_per_target: np.ndarray, copies: int, threshold: int | None, s: float, other: int, alpha: float) -> dict[str, Any]:
    """The direct computation for independent copies, averaged over targets (the count test's cut is the same for all)."""
    revealed = float(np.mean([revealed_probability(float(q), copies, threshold, s) for q in q_per_target]))
    tests = [opened_count_test(float(q), copies, other, s, alpha) for q in q_per_target]
    return {
        "revealed_probability": revealed,
        "opened_test_cut": tests[0].cut,
        "opened_test_detection": float(np.mean([x.detection for x in tests])),
        "opened_test_false_positive": tests[0].false_positive,
    }


def _detection_table(experiment: PoisoningExperiment, resolved: Sequence[Resolved],
                     rates: Mapping[Setting, np.ndarray]) -> list[dict[str, Any]]:
    """The direct computation for every protocol (threshold variants over ``synthetic_grid``), fraction and copies held."""
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, int, int | None, float]] = set()
    for put, proto, params in resolved:
        radius = proto.match_radius(params)
        threshold = proto.threshold(params)
        grid = experiment.synthetic_grid if threshold is not None else (0.0,)
        for s in grid:
            key = (put.protocol, radius, threshold, s)
            if key in seen:  # e.g. "synthetic off" and "synthetic 0.1" share the grid
                continue
            seen.add(key)
            label = put.label if threshold is None else f"{put.protocol} t={threshold}"
            for fraction in experiment.fractions:
                q = rates[(radius, fraction)]
                for m in experiment.copies_held:
                    rows.append({
                        "protocol": label,
                        "radius": radius,
                        "threshold": threshold if threshold is not None else 1,
                        "synthetic_probability": s,
                        "poison_fraction": fraction,
                        "poisoned_entries_budget": experiment.budget(fraction),
                        "copies_held": m,
                        "other_images": experiment.other_images,
                        "per_copy_detection_rate": float(q.mean()),
                        **_direct(q, m, threshold, s, experiment.other_images, experiment.max_false_positive),
                    })
    return rows


def _model_value(pools: Sequence[HolderPool], m: int, threshold: int | None, s: float, correlation: float, dedup: str,
                 holders: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Means over targets: (closed form or NaN, simulated, standard error of the simulated mean, standard
    error at the closed form or NaN)."""
    t = 1 if threshold is None else int(threshold)
    sims = np.array([simulate_revealed(p, m, (t,), s, correlation, dedup, holders, rng)[0] for p in pools])
    se = float(np.sqrt(np.sum(sims * (1 - sims) / holders))) / len(pools)
    if dedup != "none":
        return float("nan"), float(sims.mean()), se, float("nan")
    closed = np.array([holder_revealed_probability(p.shares(), p.rates(), m, t, s, correlation) for p in pools])
    se_closed = float(np.sqrt(np.sum(closed * (1 - closed) / holders))) / len(pools)
    return float(closed.mean()), float(sims.mean()), se, se_closed


def _holder_table(experiment: PoisoningExperiment, resolved: Sequence[Resolved], pools: Mapping[Setting, list[HolderPool]],
                  rng: np.random.Generator) -> list[dict[str, Any]]:
    """The holder models for every threshold protocol: simulated beside the closed form.

    ``agrees`` (``dedup = "none"``): the simulated mean lies within 4 standard
    errors (binomial, at the closed-form value) of the closed form; empty for
    ``dedup = "hash"``, which has no closed form here.
    """
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, int, int, float]] = set()
    for put, proto, params in resolved:
        threshold = proto.threshold(params)
        if threshold is None:
            continue
        radius = proto.match_radius(params)
        s = proto.synthetic_probability(params)
        key = (put.protocol, radius, threshold, s)
        if key in seen:
            continue
        seen.add(key)
        for fraction in experiment.holder_fractions:
            for m in experiment.copies_held:
                for rho in experiment.correlations:
                    for dedup in DEDUP_MODES:
                        closed, sim, se, se_closed = _model_value(pools[(radius, fraction)], m, threshold, s, rho, dedup,
                                                                  experiment.model_holders, rng)
                        rows.append({
                            "protocol": f"{put.protocol} t={threshold}",
                            "radius": radius,
                            "threshold": threshold,
                            "synthetic_probability": s,
                            "poison_fraction": fraction,
                            "copies_held": m,
                            "correlation": rho,
                            "dedup": dedup,
                            "holders_simulated": experiment.model_holders * len(pools[(radius, fraction)]),
                            "revealed_closed_form": closed,
                            "revealed_simulated": sim,
                            "simulated_standard_error": se,
                            "agrees": bool(abs(sim - closed) <= 4 * se_closed + 1e-12) if dedup == "none" else "",
                        })
    return rows


def _protocol_run_table(experiment: PoisoningExperiment, resolved: Sequence[Resolved],
                        pools: Mapping[Setting, list[HolderPool]], poison: Mapping[tuple[int, float, int], HashArray],
                        victim: CopySet, unrelated: HashArray, rng: np.random.Generator,
                        model_rng: np.random.Generator) -> list[dict[str, Any]]:
    """One database per protocol and fraction holds every target's poisoned entries plus random filler.

    Targets never match each other's entries (their hashes are ~128 bits apart),
    so each target is detected as if the database had been poisoned for it alone.
    """
    rows: list[dict[str, Any]] = []
    if experiment.run_accounts == 0:
        return rows
    for put, proto, params in resolved:
        radius = proto.match_radius(params)
        threshold = proto.threshold(params)
        m = experiment.copies_for(threshold)
        variants: list[tuple[ProtocolUnderTest, ProtocolParams]] = [(put, params)]
        if "dedup" in put.params:
            variants = []
            for dedup in experiment.run_dedup:
                variant = ProtocolUnderTest(put.label, put.protocol, {**dict(put.params), "dedup": dedup})
                variants.append((variant, variant.resolve()[1]))
        for fraction in experiment.run_fractions:
            entries = HashArray.concatenate([poison[(radius, fraction, t)] for t in range(experiment.targets)])
            if len(entries) > experiment.database_size:
                raise ConfigError(
                    f"PoisoningExperiment: {experiment.targets} targets x {experiment.budget(fraction)} entries "
                    f"at fraction {fraction} exceed database_size = {experiment.database_size}"
                )
            db = poisoned_database(entries, experiment.database_size, rng)
            for variant, vparams in variants:
                for rho in experiment.run_correlations:
                    accounts: list[tuple[HashArray, np.ndarray]] = []
                    for t in range(experiment.targets):
                        mine = victim.of_target(t).hashes
                        held = draw_holder_copies(pools[(radius, fraction)][t].family, experiment.run_accounts, m, rho, rng)
                        for row in held:
                            accounts.append(_account(mine, row, unrelated, experiment.other_images, rng))
                    for _ in range(experiment.targets * experiment.run_accounts):
                        accounts.append(_account(None, np.zeros(m, dtype=np.int64), unrelated, experiment.other_images, rng))
                    run = run_protocol_poisoning(proto, vparams, db, accounts, rng)
                    rows.append(_run_row(proto, variant, vparams, radius, threshold, fraction, m, rho, experiment,
                                         pools[(radius, fraction)], run, model_rng))
    return rows


def _account(pool: HashArray | None, held: np.ndarray, unrelated: HashArray, other: int,
             rng: np.random.Generator) -> tuple[HashArray, np.ndarray]:
    """A holder (the pool copies ``held`` plus ``other`` unrelated images) or, for ``pool = None``, an
    account of ``len(held) + other`` unrelated images; shuffled."""
    m = len(held)
    k = 0 if pool is None else m
    parts = [unrelated[rng.integers(0, len(unrelated), size=other + m - k)]]
    if pool is not None and k:
        parts.insert(0, pool[np.asarray(held, dtype=np.int64)])
    hashes = HashArray.concatenate(parts)
    label = np.r_[np.ones(k, dtype=bool), np.zeros(other + m - k, dtype=bool)]
    order = rng.permutation(len(hashes))
    return hashes[order], label[order]


def _run_row(proto: Protocol, put: ProtocolUnderTest, params: ProtocolParams, radius: int, threshold: int | None,
             fraction: float, m: int, rho: float, experiment: PoisoningExperiment, pools: Sequence[HolderPool],
             run: ProtocolPoisoningRun, model_rng: np.random.Generator) -> dict[str, Any]:
    """Measured beside the model. ``dedup = "none"``: the closed forms; ``dedup = "hash"``: the holder
    model simulated (no closed form), and no opened-count model (the count test's null distribution
    then depends on repeats among the unrelated images), so those cells are NaN and ``opened_test_agrees``
    is empty."""
    s = proto.synthetic_probability(params)
    dedup = "hash" if proto.counts_copies_once(params) else "none"
    holder, revealed, revealed_any, opened = run.holder, run.revealed_target, run.revealed_any, run.opened
    q = np.array([p.rate() for p in pools])
    direct = _direct(q, m, threshold, s, experiment.other_images, experiment.max_false_positive)
    closed, sim, _, _ = _model_value(pools, m, threshold, s, rho, dedup, experiment.model_holders, model_rng)
    model = closed if dedup == "none" else sim
    cut = direct["opened_test_cut"]
    alpha = experiment.max_false_positive
    if dedup == "none":
        opened_model = float(np.mean([holder_opened_detection(p, m, experiment.other_images, s, alpha, rho) for p in pools]))
    else:
        opened_model = float("nan")
    measured = proportion(int(revealed[holder].sum()), int(holder.sum()), z=Z_999)
    test = proportion(int((opened[holder] >= cut).sum()), int(holder.sum()), z=Z_999)
    false_pos = proportion(int((opened[~holder] >= cut).sum()), int((~holder).sum()), z=Z_999)
    return {
        "protocol": put.label,
        "radius": radius,
        "threshold": threshold if threshold is not None else 1,
        "synthetic_probability": s,
        "dedup": dedup,
        "correlation": rho,
        "poison_fraction": fraction,
        "copies_held": m,
        "other_images": experiment.other_images,
        "holders": int(holder.sum()),
        "non_holders": int((~holder).sum()),
        "per_copy_detection_rate": float(q.mean()),
        "revealed_measured": measured.rate,
        "revealed_ci999_low": measured.low,
        "revealed_ci999_high": measured.high,
        "revealed_model": model,
        "revealed_model_source": "closed form" if dedup == "none" else "holder model simulated",
        "revealed_independent_binomial": direct["revealed_probability"],
        "revealed_agrees": bool(measured.low <= model <= measured.high),
        "non_holders_revealed": int(revealed_any[~holder].sum()),
        "opened_test_cut": cut,
        "opened_test_measured": test.rate,
        "opened_test_model": opened_model,
        "opened_test_agrees": bool(test.low <= opened_model <= test.high) if dedup == "none" else "",
        "opened_false_positive_measured": false_pos.rate,
        "opened_false_positive_direct": direct["opened_test_false_positive"],
    }

