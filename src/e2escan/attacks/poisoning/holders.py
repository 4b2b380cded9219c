"""What an account holding copies of the target reveals: direct computation and the holder models.

What an account holding ``m`` copies reveals depends on the protocol
(:func:`revealed_probability`, :func:`opened_count_test`): without a threshold
every matching copy is revealed; with a threshold ``t`` the payloads are
decrypted only once ``t`` copies match; below ``t`` a curious server still
counts the opened outer layers, which betray a single match unless synthetic
vouchers add cover.

Which copies a holder has is a model of its own (:func:`draw_holder_copies`),
because real holders' copies are not independent: one file is kept or
forwarded several times, or all copies went through one edit path. The
parameter ``correlation`` (rho in [0, 1]) mixes two holder models: with
probability rho the holder's ``m`` copies all come from one edit family,
drawn once by its share of the victim pool ("one family"); otherwise each
copy is drawn independently from the whole pool ("independent"). With
``dedup = "none"`` (each copy its own voucher, as the per-image identifiers
of the Apple PSI system give) both have closed forms
(:func:`holder_revealed_probability`): independent copies give
``P[Bin(m, q (1 - s)) >= t]``, one family gives
``sum_f w_f P[Bin(m, q_f (1 - s)) >= t]`` (a deterministic family, ``q_f = 1``,
contributes ``w_f P[Bin(m, 1 - s) >= t]``), and the mixture is linear in rho,
so it lies between the two. Which of the two is higher depends on ``t``: at
``t = 1`` independence reveals more (``1 - (1 - q)^m`` is concave in ``q``);
with ``t`` well above ``m q`` one family reveals far more. Neither end bounds
every correlation structure: a holder keeping one file ``m`` times (all copies
identical) reveals with probability ``q P[Bin(m, 1 - s) >= t]``. With ``dedup = "hash"`` copies with equal
hashes count once toward ``t``; there the model value is a Monte Carlo
estimate (:func:`simulate_revealed`) with its standard error, not a closed
form. :func:`check_holder_model` checks the holder sampler against its closed form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ...errors import ConfigError
from ...metrics import false_flag_probability
from ...metrics.probability import binomial_pmf, check_probability
from .edits import CopySet

__all__ = [
    "DEDUP_MODES", "HolderModelCheck", "HolderPool", "OpenedCountTest", "check_correlation", "check_holder_model",
    "draw_holder_copies", "holder_opened_detection", "holder_revealed_probability", "opened_count_test",
    "revealed_probability", "simulate_revealed",
]


def revealed_probability(per_copy: float, copies: int, threshold: int | None, synthetic_probability: float = 0.0) -> float:
    """P[the payload of at least one copy is decrypted] = P[Bin(copies, q (1 - s)) >= t].

    Assumes each copy is its own voucher (``dedup = "none"``, as the per-image
    identifiers of the Apple PSI system give), copies match independently with probability
    ``per_copy`` and a synthetic voucher replaces a real one with probability
    ``synthetic_probability``. ``threshold=None`` (no threshold) means ``t = 1``.
    """
    check_probability("per_copy", per_copy)
    check_probability("synthetic_probability", synthetic_probability)
    t = 1 if threshold is None else int(threshold)
    return float(false_flag_probability(int(copies), per_copy * (1.0 - synthetic_probability), t))


@dataclass(frozen=True)
class OpenedCountTest:
    """A curious server's test "opened vouchers >= cut" on accounts with ``copies + other_images`` vouchers.

    ``cut`` is the smallest count whose false-positive rate on accounts without
    the target is at most the level asked for; ``detection`` is the rate on
    accounts holding ``copies`` copies.
    """

    cut: int
    detection: float
    false_positive: float


def opened_count_test(
    per_copy: float, copies: int, other_images: int, synthetic_probability: float, max_false_positive: float
) -> OpenedCountTest:
    """Direct computation of the sub-threshold counting test.

    Every matching voucher opens; a non-matching one opens when it is synthetic
    (probability ``s``). A holder's opened count is ``Bin(copies, q + (1 - q) s)
    + Bin(other_images, s)``; an account without the target has
    ``Bin(copies + other_images, s)``. Valid while accounts stay below the
    synthetic capacity (``s`` times the vouchers well below it) and other
    images do not match the poisoned entries.
    """
    check_probability("per_copy", per_copy)
    check_probability("synthetic_probability", synthetic_probability)
    check_probability("max_false_positive", max_false_positive)
    s = synthetic_probability
    n = copies + other_images
    null = binomial_pmf(n, s)
    holder = np.convolve(binomial_pmf(copies, per_copy + (1 - per_copy) * s), binomial_pmf(other_images, s))
    null_tail = np.cumsum(null[::-1])[::-1]  # P[opened >= c]
    holder_tail = np.cumsum(holder[::-1])[::-1]
    ok = np.flatnonzero(null_tail <= max_false_positive + 1e-15)
    cut = int(ok[0]) if ok.size else n + 1
    if cut > n:
        return OpenedCountTest(cut, 0.0, 0.0)
    return OpenedCountTest(cut, float(min(1.0, holder_tail[cut])), float(null_tail[cut]))


#: How copies count toward the threshold: each its own voucher ("none"), or equal hashes once ("hash").
DEDUP_MODES = ("none", "hash")


@dataclass(frozen=True)
class HolderPool:
    """One target's victim copies as the holder models see them.

    ``family[i]`` indexes ``names``; ``hit[i]``: copy ``i`` matches the poisoned
    entries; ``hash_id[i] == hash_id[j]`` iff copies ``i`` and ``j`` have equal
    hashes (what ``dedup = "hash"`` counts once).
    """

    names: tuple[str, ...]
    family: np.ndarray
    hit: np.ndarray
    hash_id: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.family)
        if n == 0:
            raise ConfigError("HolderPool: needs at least one copy")
        if self.hit.shape != (n,) or self.hash_id.shape != (n,):
            raise ConfigError(f"HolderPool: family, hit and hash_id must all have {n} entries")

    @classmethod
    def from_copies(cls, copies: CopySet, hit: np.ndarray, names: Sequence[str]) -> HolderPool:
        """The pool of ``copies`` with their hits; ``names`` lists the edit families (every copy's among them)."""
        index = {name: i for i, name in enumerate(names)}
        family = np.array([index[f] for f in copies.family], dtype=np.int64)
        _, hash_id = np.unique(copies.hashes.data, axis=0, return_inverse=True)
        return cls(tuple(names), family, np.asarray(hit, dtype=bool), hash_id.reshape(-1).astype(np.int64))

    def shares(self) -> np.ndarray:
        """Each family's share of the pool: the weight with which a one-family holder gets it."""
        return np.bincount(self.family, minlength=len(self.names)) / len(self.family)

    def rates(self) -> np.ndarray:
        """Each family's hit rate ``q_f`` in the pool (0 for a family absent from it)."""
        counts = np.bincount(self.family, minlength=len(self.names))
        hits = np.bincount(self.family, weights=self.hit.astype(float), minlength=len(self.names))
        return np.divide(hits, counts, out=np.zeros(len(self.names)), where=counts > 0)

    def rate(self) -> float:
        """The pool's hit rate ``q``: the share of its copies that match."""
        return float(self.hit.mean())


def check_correlation(correlation: float) -> None:
    """:class:`ConfigError` unless the holder correlation ``rho`` lies in [0, 1]."""
    if not 0.0 <= correlation <= 1.0:
        raise ConfigError(f"correlation = {correlation} must lie in [0, 1] (0: independent copies, 1: one family)")


def draw_holder_copies(
    family: np.ndarray, holders: int, copies: int, correlation: float, rng: np.random.Generator
) -> np.ndarray:
    """``(holders, copies)`` pool indices: the copies each holder has.

    With probability ``correlation`` a holder's copies all come from one edit
    family: the family of one uniformly drawn pool copy (so families come by
    their pool share), then every copy uniformly from that family's copies.
    Otherwise every copy is drawn uniformly from the whole pool. Draws are with
    replacement. The same random numbers are drawn whatever the outcome, so a
    seed gives the same holders at every ``correlation``.
    """
    check_correlation(correlation)
    if holders < 0 or copies < 0:
        raise ConfigError(f"draw_holder_copies: holders = {holders} and copies = {copies} must be >= 0")
    family = np.asarray(family, dtype=np.int64)
    n = len(family)
    if n == 0 or (family < 0).any():
        raise ConfigError("draw_holder_copies: family must list one index >= 0 per pool copy, and at least one copy")
    order = np.argsort(family, kind="stable")
    counts = np.bincount(family)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    correlated = rng.random(holders) < correlation
    chosen = family[rng.integers(0, n, size=holders)]
    within = rng.random((holders, copies))
    one_family = order[starts[chosen][:, None] + (within * counts[chosen][:, None]).astype(np.int64)]
    independent = rng.integers(0, n, size=(holders, copies))
    return np.where(correlated[:, None], one_family, independent)


def holder_revealed_probability(
    shares: npt.ArrayLike,
    rates: npt.ArrayLike,
    copies: int,
    threshold: int | None,
    synthetic_probability: float = 0.0,
    correlation: float = 0.0,
) -> float:
    """Closed form of the holder model's reveal probability (``dedup = "none"``).

    ``(1 - rho) P[Bin(m, q (1 - s)) >= t] + rho sum_f w_f P[Bin(m, q_f (1 - s)) >= t]``
    with ``w_f = shares``, ``q_f = rates`` and ``q = sum_f w_f q_f``. At
    ``correlation = 0`` it is :func:`revealed_probability`.
    """
    check_correlation(correlation)
    w = np.asarray(shares, dtype=float)
    q = np.asarray(rates, dtype=float)
    if w.shape != q.shape or w.ndim != 1 or not np.isclose(w.sum(), 1.0) or (w < 0).any():
        raise ConfigError(f"holder_revealed_probability: shares must be one weight per family summing to 1, got {w}")
    for value in q:
        check_probability("holder_revealed_probability: family rate", float(value))
    independent = revealed_probability(float(np.clip(w @ q, 0.0, 1.0)), copies, threshold, synthetic_probability)
    if correlation == 0.0:
        return independent
    one_family = sum(float(wf) * revealed_probability(float(qf), copies, threshold, synthetic_probability)
                     for wf, qf in zip(w, q) if wf > 0)
    return (1.0 - correlation) * independent + correlation * one_family


def holder_opened_detection(pool: HolderPool, copies: int, other: int, s: float, alpha: float, correlation: float) -> float:
    """The opened-count test's detection under the holder model (``dedup = "none"``): linear in rho too."""
    independent = opened_count_test(pool.rate(), copies, other, s, alpha).detection
    if correlation == 0.0:
        return independent
    one_family = sum(float(w) * opened_count_test(float(q), copies, other, s, alpha).detection
                     for w, q in zip(pool.shares(), pool.rates()) if w > 0)
    return (1.0 - correlation) * independent + correlation * one_family


def simulate_revealed(
    pool: HolderPool,
    copies: int,
    thresholds: Sequence[int],
    synthetic_probability: float,
    correlation: float,
    dedup: str,
    holders: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Monte Carlo of the holder model: the share of ``holders`` revealed, per threshold.

    A holder's copies come from :func:`draw_holder_copies`. A matching copy
    counts toward ``t`` unless it is sent as a synthetic voucher (probability
    ``s``). ``dedup = "none"``: every copy counts, each with its own synthetic
    coin. ``dedup = "hash"``: copies with equal hashes count once and share
    one coin, as the protocol's per-hash share abscissa and coin give.
    """
    check_probability("synthetic_probability", synthetic_probability)
    if dedup not in DEDUP_MODES:
        raise ConfigError(f"dedup = {dedup!r}; accepted: {', '.join(DEDUP_MODES)}")
    if holders < 1:
        raise ConfigError(f"simulate_revealed: holders must be >= 1, got {holders}")
    idx = draw_holder_copies(pool.family, holders, copies, correlation, rng)
    matched = pool.hit[idx]
    if dedup == "none":
        counted = matched & (rng.random(idx.shape) >= synthetic_probability)
        count = counted.sum(axis=1)
    else:
        ids = pool.hash_id[idx]
        coin = rng.random((holders, int(pool.hash_id.max()) + 1))
        counted = matched & (np.take_along_axis(coin, ids, axis=1) >= synthetic_probability)
        key = np.sort(np.where(counted, ids, -1), axis=1)
        count = (key[:, :1] >= 0).sum(axis=1) + ((np.diff(key, axis=1) != 0) & (key[:, 1:] >= 0)).sum(axis=1)
    return np.array([float(np.mean(count >= max(1, int(t)))) for t in thresholds])


@dataclass(frozen=True)
class HolderModelCheck:
    """The holder sampler against its closed form (``dedup = "none"``).

    ``standard_error`` is the binomial one at the closed-form value (so it is
    not zero when the simulation happens to see no event); ``agrees``:
    ``|simulated - closed_form| <= z * standard_error`` (plus 1e-12).
    """

    simulated: float
    closed_form: float
    standard_error: float
    agrees: bool


def check_holder_model(
    pool: HolderPool,
    copies: int,
    threshold: int,
    synthetic_probability: float,
    correlation: float,
    holders: int,
    rng: np.random.Generator,
    z: float = 4.0,
) -> HolderModelCheck:
    """Simulate the holder model and compare it with :func:`holder_revealed_probability`."""
    simulated = float(simulate_revealed(pool, copies, (threshold,), synthetic_probability, correlation, "none", holders, rng)[0])
    closed = holder_revealed_probability(pool.shares(), pool.rates(), copies, threshold, synthetic_probability, correlation)
    se = math.sqrt(closed * (1.0 - closed) / holders)
    return HolderModelCheck(simulated, closed, se, abs(simulated - closed) <= z * se + 1e-12)

