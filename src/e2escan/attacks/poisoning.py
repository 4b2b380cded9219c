"""Database poisoning: re-purposing a scanning database to find who holds a chosen (non-abuse) image.

Hooda, Labunets, Kohno and Fernandes show that an adversary who can add
entries to the perceptual-hash database of a client-side scanning system can
use it for physical surveillance. Their abstracts report surveillance rates of
more than 40% by poisoning 5% of the database ("Re-purposing Perceptual
Hashing based Client Side Scanning for Physical Surveillance", arXiv:2212.04107,
2022) and more than 30% at 0.2% ("Experimental Analyses of the Physical
Surveillance Risks in Client-Side Content Scanning", NDSS 2024); only the
abstracts were read here, so the rate's definition is not known.

Two measurements live here, and neither is their rate:

* per-copy detection of one circulating image (:func:`run_poisoning_experiment`,
  below): the victims' images are edited copies of the adversary's image;
* surveillance of a place (:func:`run_viewpoint_surveillance`, at the end):
  the victims' images are distinct views of a synthetic scene, and the
  adversary poisons the database with views of its own.

The circulating-image model, one target image at a time:

* The target circulates as copies made by everyday edits (:data:`EVERYDAY_EDITS`):
  forwarded unchanged, re-encoded by a messenger, cropped, captioned, ... Each
  copy is the target after one chain drawn from an :class:`EditFamily`.
* The adversary knows the edit model. It makes its own copies of the target
  (``attacker`` copies, from its own generator) and spends its budget of
  ``k = round(fraction * database_size)`` entries greedily, each time on the
  hash of one of its copies that covers most of its not yet covered copies
  under the protocol's matching rule (:func:`choose_poison`: exact equality, or
  Hamming radius ``r``).
* A victim's copy is detected when the protocol counts it as a match
  (:func:`matches_any`). The per-copy detection rate ``q`` is measured on an
  independent set of victim copies.

What an account holding ``m`` copies reveals then depends on the protocol
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
form.

:func:`run_protocol_poisoning` measures the same quantities with the real
protocol code on accounts built by the same holder model. Agreement between
the two checks the protocol implementation against the model; it cannot
check the model itself, since both sides draw copies the same way.
:func:`check_holder_model` checks the holder sampler against its closed form.

All simulation randomness comes from the ``numpy.random.Generator`` passed in;
keys and blinding inside the protocols come from the OS and change no outcome.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..hashing import HashArray, Hasher, PerceptualHash, get_hasher
from ..hashing._popcount import popcount_rows
from ..images import TransformChain, TransformStep, image_rng, synthetic_image
from ..images.scenes import ViewModel, render_view, synthetic_scene
from ..metrics import false_flag_probability
from ..metrics.probability import Z_999, binomial_pmf, check_probability
from ..metrics.rates import clustered_proportion, proportion
from ..protocols.tpsi_ad import seeded_coin

__all__ = [
    "DEDUP_MODES",
    "EVERYDAY_EDITS",
    "VIEW_MODELS",
    "VIEW_RADII",
    "CopySet",
    "EditFamily",
    "HolderModelCheck",
    "HolderPool",
    "OpenedCountTest",
    "PoisoningExperiment",
    "PoisoningResults",
    "ProtocolPoisoningRun",
    "ProtocolUnderTest",
    "Uniform",
    "ViewpointExperiment",
    "check_holder_model",
    "choose_poison",
    "draw_holder_copies",
    "holder_revealed_probability",
    "make_copies",
    "matches_any",
    "opened_count_test",
    "poisoned_database",
    "revealed_probability",
    "run_poisoning_experiment",
    "run_protocol_poisoning",
    "run_viewpoint_surveillance",
    "seeded_coin",
    "simulate_revealed",
    "with_weights",
]

TARGET_MARK = b"T"  # payload prefix of a target copy: what a reviewer would recognise
OTHER_MARK = b"O"


# --- the everyday edit model -------------------------------------------------------


@dataclass(frozen=True)
class Uniform:
    """A transform parameter drawn uniformly from ``[low, high]`` for every copy."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ConfigError(f"Uniform: low = {self.low} must not exceed high = {self.high}")

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class EditFamily:
    """One kind of everyday edit: a chain of transforms whose parameters may vary per copy.

    ``steps`` lists ``(transform name, parameters)``; a parameter given as a
    :class:`Uniform` is drawn for every copy, any other value is fixed.
    Transforms with random choices of their own (``crop`` at
    ``position=random``) draw them from the same generator.
    """

    name: str
    weight: float
    steps: tuple[tuple[str, Mapping[str, Any]], ...]

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ConfigError(f"edit family {self.name!r}: weight must be > 0, got {self.weight}")
        for name, params in self.steps:  # validate names and fixed parameters now, not at the first draw
            TransformStep.make(name, **{k: (v.low if isinstance(v, Uniform) else v) for k, v in params.items()})

    def draw(self, rng: np.random.Generator) -> TransformChain:
        steps = []
        for name, params in self.steps:
            values = {k: (v.draw(rng) if isinstance(v, Uniform) else v) for k, v in params.items()}
            steps.append(TransformStep.make(name, **values))
        return TransformChain(tuple(steps))


_MESSENGER_JPEG = ("jpeg", {"quality": 75})

#: How a circulating image gets copied, with the share of copies made each way.
#: Our assumption (no published mix exists): a quarter are forwarded unchanged,
#: three in ten are re-encoded or downscaled by a messenger (deterministic, so
#: an adversary who anticipates them gets the exact hash), and the rest are
#: edited with parameters that differ from copy to copy.
EVERYDAY_EDITS: tuple[EditFamily, ...] = (
    EditFamily("forwarded", 0.25, ()),
    EditFamily("recompressed", 0.15, (_MESSENGER_JPEG,)),
    EditFamily("downscaled", 0.15, (("resize", {"scale": 0.5}), _MESSENGER_JPEG)),
    EditFamily("cropped", 0.15, (("crop", {"fraction": Uniform(0.8, 0.97), "position": "random"}), _MESSENGER_JPEG)),
    EditFamily("rotated", 0.1, (("rotate", {"degrees": Uniform(-5.0, 5.0)}), _MESSENGER_JPEG)),
    EditFamily("captioned", 0.1, (("text", {"size": Uniform(0.05, 0.1), "position": "random"}), _MESSENGER_JPEG)),
    EditFamily("screenshot", 0.1, (("screenshot", {"scale": Uniform(0.6, 0.95)}), _MESSENGER_JPEG)),
)


def with_weights(edits: Sequence[EditFamily], weights: Mapping[str, float]) -> tuple[EditFamily, ...]:
    """``edits`` with the weights of the named families replaced (the others unchanged).

    Weights are relative: :func:`make_copies` normalises them. A weight of 0
    drops the family from the mix.
    """
    names = [e.name for e in edits]
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(f"with_weights: unknown edit family {unknown[0]!r}; known: {', '.join(names)}")
    for name, w in weights.items():
        if not (w >= 0 and math.isfinite(w)):
            raise ConfigError(f"with_weights: weight of {name!r} must be a finite number >= 0, got {w}")
    out = tuple(
        EditFamily(e.name, float(weights[e.name]), e.steps) if e.name in weights else e
        for e in edits if weights.get(e.name, 1.0) > 0
    )
    if not out:
        raise ConfigError("with_weights: every edit family has weight 0")
    return out


@dataclass(frozen=True)
class CopySet:
    """Hashes of edited copies: ``target[i]`` is the index of the source image of copy ``i``."""

    hashes: HashArray
    target: np.ndarray
    family: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.hashes)

    def of_target(self, index: int) -> CopySet:
        mask = self.target == index
        return CopySet(self.hashes[mask], self.target[mask], tuple(f for f, m in zip(self.family, mask) if m))


def make_copies(
    images: Sequence[Image.Image],
    edits: Sequence[EditFamily],
    per_image: int,
    hasher: Hasher,
    rng: np.random.Generator,
) -> CopySet:
    """``per_image`` copies of every image: an edit family drawn by weight, then its chain, then the hash."""
    if per_image < 1:
        raise ConfigError(f"make_copies: per_image must be >= 1, got {per_image}")
    if not edits:
        raise ConfigError("make_copies: needs at least one edit family")
    weights = np.array([e.weight for e in edits], dtype=float)
    weights /= weights.sum()
    hashes: list[PerceptualHash] = []
    target: list[int] = []
    family: list[str] = []
    for index, image in enumerate(images):
        for choice in rng.choice(len(edits), size=per_image, p=weights):
            edit = edits[int(choice)]
            copy = edit.draw(rng).apply(image, rng).image
            hashes.append(hasher.hash(copy))
            target.append(index)
            family.append(edit.name)
    return CopySet(HashArray.from_hashes(hashes), np.array(target, dtype=np.int64), tuple(family))


# --- the adversary's choice and the matching rule ----------------------------------------


def _distance_matrix(a: HashArray, b: HashArray) -> np.ndarray:
    """``(len(a), len(b))`` Hamming distances (brute force; the sets here are small)."""
    out = np.empty((len(a), len(b)), dtype=np.int64)
    for i, row in enumerate(a.data):
        out[i] = popcount_rows(np.bitwise_xor(b.data, row))
    return out


def matches_any(entries: HashArray, queries: HashArray, radius: int) -> np.ndarray:
    """``True`` where a query is within ``radius`` of some entry: the protocols' plaintext matching rule."""
    if len(queries) == 0:
        return np.zeros(0, dtype=bool)
    if len(entries) == 0:
        return np.zeros(len(queries), dtype=bool)
    if entries.bits != queries.bits:
        raise ConfigError(f"matches_any: entries have {entries.bits} bits, queries {queries.bits}")
    return (_distance_matrix(queries, entries) <= radius).any(axis=1)


def choose_poison(candidates: HashArray, budget: int, radius: int) -> HashArray:
    """Greedy maximum coverage: up to ``budget`` candidate hashes covering most candidates within ``radius``.

    Each step takes the candidate whose radius-ball holds the most candidates
    not yet covered (ties: the first in order), so the result is deterministic.
    Stops early once every candidate is covered: further entries would be wasted.
    """
    if budget < 0:
        raise ConfigError(f"choose_poison: budget must be >= 0, got {budget}")
    if radius < 0:
        raise ConfigError(f"choose_poison: radius must be >= 0, got {radius}")
    if budget == 0 or len(candidates) == 0:
        return HashArray(np.zeros((0, candidates.nbytes_per_hash), dtype=np.uint8))
    cover = _distance_matrix(candidates, candidates) <= radius
    gain = cover.sum(axis=1)
    uncovered = np.ones(len(candidates), dtype=bool)
    chosen: list[int] = []
    while len(chosen) < budget and uncovered.any():
        best = int(np.argmax(gain))
        chosen.append(best)
        newly = cover[best] & uncovered
        uncovered &= ~newly
        gain -= cover[:, newly].sum(axis=1)
    return candidates[np.array(chosen, dtype=np.int64)]


def poisoned_database(poison: HashArray, size: int, rng: np.random.Generator) -> HashArray:
    """``size`` entries: the poison plus uniformly random stand-ins for the genuine entries, shuffled."""
    if size < len(poison):
        raise ConfigError(f"poisoned_database: size = {size} cannot hold {len(poison)} poisoned entries")
    genuine = HashArray.random(size - len(poison), poison.bits, rng)
    both = HashArray.concatenate([genuine, poison]) if len(poison) else genuine
    return both[rng.permutation(size)]


# --- direct computation --------------------------------------------------------------------


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


# --- holder models: which copies one account holds ----------------------------------------

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
        return float(self.hit.mean())


def _check_correlation(correlation: float) -> None:
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
    _check_correlation(correlation)
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
    shares: Sequence[float],
    rates: Sequence[float],
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
    _check_correlation(correlation)
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


def _holder_opened_detection(pool: HolderPool, copies: int, other: int, s: float, alpha: float, correlation: float) -> float:
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


# --- measured with the real protocol code ------------------------------------------------------


@dataclass(frozen=True)
class ProtocolPoisoningRun:
    """Per account: what the server learnt. ``holder[i]``: account ``i`` holds target copies.

    ``revealed_target``: a decrypted payload is a target copy (the adversary
    learns for certain that the account holds the target). ``revealed_any``: any
    payload was decrypted. ``opened``: vouchers whose outer layer opened (for
    variants without one: vouchers that matched). ``target_matches``: target
    copies that matched (ground truth, known to the simulation only).
    """

    holder: np.ndarray
    revealed_target: np.ndarray
    revealed_any: np.ndarray
    opened: np.ndarray
    vouchers: np.ndarray
    target_matches: np.ndarray


def _opened(record: Mapping[str, object]) -> bool:
    if "opened" in record:
        return bool(record["opened"])
    return bool(record.get("is_match", False))


def run_protocol_poisoning(
    protocol: Any,
    params: Any,
    database: HashArray,
    accounts: Sequence[tuple[HashArray, np.ndarray]],
    rng: np.random.Generator,
) -> ProtocolPoisoningRun:
    """Set the protocol up on ``database``; every account scans its images; read what the server learnt.

    ``accounts[i] = (hashes, is_target)``: the account's images in sending order
    and which of them are copies of the target. Each account is a fresh device
    (its own C-Init); its synthetic-voucher coin, if the protocol has one, is
    :func:`seeded_coin` from ``rng`` so outcomes are reproducible.

    Set beside the holder model's value for the same accounts, the outcome
    checks the protocol implementation. Which copies the accounts hold is the
    caller's model (:func:`draw_holder_copies` in the experiment), so agreement
    says nothing about whether that model describes real holders.
    """
    server, public = protocol.server_setup(database, params)
    radius = protocol.match_radius(params)
    n = len(accounts)
    out = {k: np.zeros(n, dtype=bool) for k in ("holder", "revealed_target", "revealed_any")}
    opened = np.zeros(n, dtype=np.int64)
    vouchers = np.zeros(n, dtype=np.int64)
    target_matches = np.zeros(n, dtype=np.int64)
    for i, (hashes, is_target) in enumerate(accounts):
        is_target = np.asarray(is_target, dtype=bool)
        if is_target.shape != (len(hashes),):
            raise ConfigError(f"run_protocol_poisoning: account {i} has {len(hashes)} images but {is_target.size} labels")
        name = f"account-{i}"
        client = protocol.client(public, params)
        protocol.seed_client(client, rng, params)  # reproducible synthetic-voucher coins, if it has any
        for j, h in enumerate(hashes):
            # The account and position make every payload unique: a plaintext voucher carrying the same
            # hash and payload twice would be refused as a replay.
            payload = (TARGET_MARK if is_target[j] else OTHER_MARK) + i.to_bytes(4, "big") + j.to_bytes(4, "big")
            server.ingest(name, client.scan(h, payload=payload))
        reveal = server.reveal(name)
        out["holder"][i] = bool(is_target.any())
        out["revealed_any"][i] = bool(reveal.matches)
        out["revealed_target"][i] = any(p.startswith(TARGET_MARK) for p in reveal.matches)
        opened[i] = sum(_opened(r) for r in server.observed(name))
        vouchers[i] = len(hashes)
        if is_target.any():
            target_matches[i] = int(matches_any(database, hashes[is_target], radius).sum())
    return ProtocolPoisoningRun(out["holder"], out["revealed_target"], out["revealed_any"], opened, vouchers, target_matches)


# --- the experiment: per-copy curve, account-level tables, protocol runs -------------------------


@dataclass(frozen=True)
class ProtocolUnderTest:
    """A protocol configuration in the experiment: a label, a registered protocol name, its parameters."""

    label: str
    protocol: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self) -> tuple[Any, Any]:
        from ..protocols import get_protocol

        proto = get_protocol(self.protocol)
        try:
            params = proto.Params(**dict(self.params))
        except TypeError as exc:
            raise ConfigError(f"protocol {self.label!r}: {exc}") from None
        return proto, params


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
    :data:`EVERYDAY_EDITS`; see :func:`with_weights`): the per-copy rates, and
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
        for name in ("targets", "attacker_copies", "victim_copies", "unrelated_images", "database_size", "model_holders"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PoisoningExperiment.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("run_accounts", "run_copies", "other_images"):
            if getattr(self, name) < 0:
                raise ConfigError(f"PoisoningExperiment.{name} must be >= 0, got {getattr(self, name)}")
        for f in (*self.fractions, *self.run_fractions, *self.holder_fractions):
            if not 0.0 <= f <= 1.0:
                raise ConfigError(f"PoisoningExperiment: poison fraction {f} must lie in [0, 1]")
        for s in self.synthetic_grid:
            check_probability("PoisoningExperiment.synthetic_grid entry", s)
        check_probability("PoisoningExperiment.max_false_positive", self.max_false_positive)
        if any(m < 1 for m in self.copies_held):
            raise ConfigError(f"PoisoningExperiment.copies_held must list counts >= 1, got {self.copies_held}")
        for name in ("correlations", "run_correlations"):
            for rho in getattr(self, name):
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
      (for that, see :func:`run_viewpoint_surveillance`).
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

    resolved = [(put, *put.resolve()) for put in experiment.protocols]
    radii = sorted({proto.match_radius(params) for _, proto, params in resolved})
    poison: dict[tuple[int, float, int], HashArray] = {}
    per_copy_rows: list[dict[str, Any]] = []
    rates: dict[tuple[int, float], np.ndarray] = {}
    pools: dict[tuple[int, float], list[HolderPool]] = {}
    families = [e.name for e in experiment.edits]
    extra = tuple(dict.fromkeys(f for f in (*experiment.run_fractions, *experiment.holder_fractions) if f not in experiment.fractions))
    for radius in radii:
        for fraction in experiment.fractions + extra:
            budget = experiment.budget(fraction)
            q = np.zeros(experiment.targets)
            by_family = {f: np.full(experiment.targets, np.nan) for f in families}
            false_match = np.zeros(experiment.targets)
            used = 0
            pools[(radius, fraction)] = []
            for t in range(experiment.targets):
                entries = choose_poison(attacker.of_target(t).hashes, budget, radius)
                poison[(radius, fraction, t)] = entries
                used += len(entries)
                mine = victim.of_target(t)
                hit = matches_any(entries, mine.hashes, radius)
                pools[(radius, fraction)].append(HolderPool.from_copies(mine, hit, families))
                q[t] = hit.mean()
                fam = np.array(mine.family)
                for f in families:
                    if (fam == f).any():
                        by_family[f][t] = hit[fam == f].mean()
                false_match[t] = matches_any(entries, unrelated, radius).mean()
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
            for f in families:
                vals = by_family[f]
                per_copy_rows.append({**base, "edit_family": f,
                                      "per_copy_detection_rate": float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan"),
                                      "unrelated_false_match": float(false_match.mean())})

    detection_rows = _detection_table(experiment, resolved, rates)
    run_rows = _protocol_run_table(experiment, resolved, pools, poison, victim, unrelated, run_rng, model_rng)
    holder_rows = _holder_table(experiment, resolved, pools, model_rng)
    return PoisoningResults(per_copy_rows, detection_rows, run_rows, rates, holder_rows, pools)


def _threshold_of(proto: Any, params: Any) -> int | None:
    return proto.threshold(params)


def _direct(q_per_target: np.ndarray, copies: int, threshold: int | None, s: float, other: int, alpha: float) -> dict[str, Any]:
    revealed = float(np.mean([revealed_probability(float(q), copies, threshold, s) for q in q_per_target]))
    tests = [opened_count_test(float(q), copies, other, s, alpha) for q in q_per_target]
    return {
        "revealed_probability": revealed,
        "opened_test_cut": tests[0].cut,
        "opened_test_detection": float(np.mean([x.detection for x in tests])),
        "opened_test_false_positive": tests[0].false_positive,
    }


def _detection_table(experiment: PoisoningExperiment, resolved, rates) -> list[dict[str, Any]]:
    rows = []
    seen: set[tuple] = set()
    for put, proto, params in resolved:
        radius = proto.match_radius(params)
        threshold = _threshold_of(proto, params)
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


def _holder_table(experiment: PoisoningExperiment, resolved, pools, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The holder models for every threshold protocol: simulated beside the closed form.

    ``agrees`` (``dedup = "none"``): the simulated mean lies within 4 standard
    errors (binomial, at the closed-form value) of the closed form; empty for
    ``dedup = "hash"``, which has no closed form here.
    """
    rows = []
    seen: set[tuple] = set()
    for put, proto, params in resolved:
        threshold = _threshold_of(proto, params)
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


def _protocol_run_table(experiment, resolved, pools, poison, victim, unrelated, rng, model_rng) -> list[dict[str, Any]]:
    """One database per protocol and fraction holds every target's poisoned entries plus random filler.

    Targets never match each other's entries (their hashes are ~128 bits apart),
    so each target is detected as if the database had been poisoned for it alone.
    """
    rows = []
    if experiment.run_accounts == 0:
        return rows
    for put, proto, params in resolved:
        radius = proto.match_radius(params)
        threshold = _threshold_of(proto, params)
        m = experiment.copies_for(threshold)
        variants = [(put, params)]
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
                    accounts = []
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


def _account(pool: HashArray | None, held: np.ndarray, unrelated: HashArray, other: int, rng) -> tuple[HashArray, np.ndarray]:
    """A holder (the pool copies ``held`` plus ``other`` unrelated images) or, for ``pool = None``, an
    account of ``len(held) + other`` unrelated images; shuffled."""
    m = len(held)
    k = 0 if pool is None else m
    parts = [unrelated[rng.integers(0, len(unrelated), size=other + m - k)]]
    if k:
        parts.insert(0, pool[np.asarray(held, dtype=np.int64)])
    hashes = HashArray.concatenate(parts)
    label = np.r_[np.ones(k, dtype=bool), np.zeros(other + m - k, dtype=bool)]
    order = rng.permutation(len(hashes))
    return hashes[order], label[order]


def _run_row(proto, put, params, radius, threshold, fraction, m, rho, experiment, pools, run: ProtocolPoisoningRun,
             model_rng) -> dict[str, Any]:
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
        opened_model = float(np.mean([_holder_opened_detection(p, m, experiment.other_images, s, alpha, rho) for p in pools]))
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


# --- surveillance of a place: distinct views of one scene ----------------------------------------
#
# The measurement above follows one circulating image. The surveillance the
# paper's title names is about a place: the victims' photos of it are distinct
# photos, taken from other positions, not copies of the adversary's image.
# Here each target is a synthetic scene (``images.scenes``); the adversary
# poisons the database with the hashes of ``k`` views of its own, and the
# surveillance rate is the share of the victims' distinct views of the scene
# that match one of them under a matching rule of radius ``r``. The innocent
# cost of the same rule is the share of views of *other* scenes that match.

#: The view models compared (our assumption, from a narrow to a wide spread of viewpoints):
#: "same spot" frames nearly the same region, "nearby" varies framing moderately,
#: "around the place" frames 45-75% of the scene anywhere within 12% of its centre.
VIEW_MODELS: tuple[tuple[str, ViewModel], ...] = (
    ("same spot", ViewModel(scale=(0.60, 0.70), offset=0.03, degrees=(-2.0, 2.0), perspective=0.02)),
    ("nearby", ViewModel(scale=(0.55, 0.70), offset=0.06, degrees=(-4.0, 4.0), perspective=0.04)),
    ("around the place", ViewModel()),
)

#: Matching radii per hash: exact, PDQ's recommended 31, and wider rules; the 64-bit radii are the
#: 256-bit ones scaled by 64/256 (rounded), so both hashes tolerate the same share of differing bits.
VIEW_RADII: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("pdq", (0, 31, 45, 63, 80, 96)),
    ("phash", (0, 8, 11, 16, 20, 24)),
)


@dataclass(frozen=True)
class ViewpointExperiment:
    """Surveillance of synthetic scenes by their distinct views, against the matching radius.

    Per scene, the adversary takes ``adversary_views`` views and poisons the
    database with the hashes of the first ``k`` for every ``k`` of
    ``entries_per_target`` (so the entry sets are nested); victims take
    ``victim_views`` other views. Every view goes through ``encoding`` (the
    messenger's re-encoding) before it is hashed, the adversary's too: it
    knows the encoding path. The scene is the replicate unit: views of one
    scene share its content, so the intervals come from the variance between
    scenes.
    """

    scenes: int = 12
    scene_size: int = 1024
    capture_size: int = 256
    adversary_views: int = 20
    victim_views: int = 40
    entries_per_target: tuple[int, ...] = (1, 5, 20)
    view_models: tuple[tuple[str, ViewModel], ...] = VIEW_MODELS
    radii: tuple[tuple[str, tuple[int, ...]], ...] = VIEW_RADII
    encoding: tuple[tuple[str, Mapping[str, Any]], ...] = (_MESSENGER_JPEG,)

    def __post_init__(self) -> None:
        if self.scenes < 2:
            raise ConfigError(f"ViewpointExperiment.scenes must be >= 2 (other scenes are the innocent views), got {self.scenes}")
        for name in ("adversary_views", "victim_views"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ViewpointExperiment.{name} must be >= 1, got {getattr(self, name)}")
        if not self.entries_per_target or any(not 1 <= k <= self.adversary_views for k in self.entries_per_target):
            raise ConfigError(f"ViewpointExperiment.entries_per_target = {self.entries_per_target}: each must lie in "
                              f"[1, adversary_views = {self.adversary_views}]")
        if not self.view_models or not self.radii:
            raise ConfigError("ViewpointExperiment needs at least one view model and one hasher")
        for hasher, radii in self.radii:
            if not radii or any(r < 0 for r in radii):
                raise ConfigError(f"ViewpointExperiment.radii for {hasher!r} must list radii >= 0, got {radii}")
        EditFamily("encoding", 1.0, self.encoding)  # validates the transform names and parameters


def _hash_views(scene: Image.Image, model: ViewModel, count: int, experiment: ViewpointExperiment,
                hashers: Sequence[Hasher], rng: np.random.Generator) -> list[list[PerceptualHash]]:
    """Per hasher, the hashes of ``count`` views of ``scene`` (each drawn, rendered, encoded, then hashed)."""
    encode = EditFamily("encoding", 1.0, experiment.encoding)
    out: list[list[PerceptualHash]] = [[] for _ in hashers]
    for _ in range(count):
        view = render_view(scene, model.draw(rng, experiment.scene_size), experiment.capture_size)
        sent = encode.draw(rng).apply(view, rng).image
        for i, hasher in enumerate(hashers):
            out[i].append(hasher.hash(sent))
    return out


def _scene_proportion(counts: Sequence[int], per_scene: int) -> dict[str, Any]:
    """Pooled rate over scenes with the between-scene interval; Wilson on the pooled counts when every scene
    gave the same count (the between-scene variance is then 0 and says nothing; Wilson treats views as
    independent, which views of one scene are not)."""
    out = clustered_proportion(list(counts), [per_scene] * len(counts))
    if len(set(counts)) == 1 and sum(counts) > 0:
        pooled = proportion(int(sum(counts)), per_scene * len(counts))
        out.update(ci_low=pooled.low, ci_high=pooled.high,
                   ci_method=f"Wilson on pooled counts (every one of {len(counts)} scenes gave {counts[0]} of {per_scene})")
    return out


def run_viewpoint_surveillance(experiment: ViewpointExperiment, rng: np.random.Generator) -> list[dict[str, Any]]:
    """One row per view model, hasher, radius and entries per target.

    Columns: ``surveillance_rate`` (victims' views of the target scene that
    match one of its poisoned entries, pooled over scenes) with a 95% interval
    from the between-scene variance (:func:`~e2escan.metrics.rates.clustered_proportion`;
    conditional on the scene generator and view model; Wilson on the pooled
    counts when every scene gave the same count, e.g. none), the scenes' own
    2.5/50/97.5 percentiles,
    and ``innocent_false_match_rate``: views of the other scenes that match the
    target's entries, per target scene, pooled the same way (every target
    scene is tested against the same pool of other scenes' views, so those
    replicates overlap and that interval is indicative only). Both are
    fractions in [0, 1]; the matching rule is Hamming distance <= ``radius``.

    Randomness: the scenes from one seed drawn from ``rng``; per view model,
    one generator for the adversary's views and one for the victims'.
    """
    hashers = [get_hasher(name) for name, _ in experiment.radii]
    scene_rng, *model_rngs = rng.spawn(1 + len(experiment.view_models))
    scene_seed = int(scene_rng.integers(0, 2**63))
    scenes = [synthetic_scene(image_rng(scene_seed, i), experiment.scene_size) for i in range(experiment.scenes)]
    rows: list[dict[str, Any]] = []
    for (model_name, model), model_rng in zip(experiment.view_models, model_rngs):
        adversary_rng, victim_rng = model_rng.spawn(2)
        adversary = [_hash_views(s, model, experiment.adversary_views, experiment, hashers, adversary_rng) for s in scenes]
        victim = [_hash_views(s, model, experiment.victim_views, experiment, hashers, victim_rng) for s in scenes]
        for h, (hasher_name, radii) in enumerate(experiment.radii):
            own = [HashArray.from_hashes(adversary[s][h]) for s in range(experiment.scenes)]
            views = [HashArray.from_hashes(victim[s][h]) for s in range(experiment.scenes)]
            distances = [[_distance_matrix(views[v], own[s]) for s in range(experiment.scenes)]
                         for v in range(experiment.scenes)]  # [victim scene][target scene]: (views, entries)
            for k in experiment.entries_per_target:
                nearest = [[d[:, :k].min(axis=1) for d in row] for row in distances]
                for radius in radii:
                    hits = [int((nearest[s][s] <= radius).sum()) for s in range(experiment.scenes)]
                    false = [sum(int((nearest[v][s] <= radius).sum()) for v in range(experiment.scenes) if v != s)
                             for s in range(experiment.scenes)]
                    caught = _scene_proportion(hits, experiment.victim_views)
                    innocent = _scene_proportion(false, experiment.victim_views * (experiment.scenes - 1))
                    rows.append({
                        "view_model": model_name,
                        "hasher": hasher_name,
                        "bits": hashers[h].bits,
                        "radius": radius,
                        "entries_per_target": k,
                        "scenes": experiment.scenes,
                        "victim_views_per_scene": experiment.victim_views,
                        "surveillance_rate": caught["rate"],
                        "surveillance_ci95_low": caught["ci_low"],
                        "surveillance_ci95_high": caught["ci_high"],
                        "surveillance_scene_p2_5": caught["replicate_p2_5"],
                        "surveillance_scene_median": caught["replicate_p50"],
                        "surveillance_scene_p97_5": caught["replicate_p97_5"],
                        "surveillance_ci_method": caught["ci_method"],
                        "innocent_views_per_scene": experiment.victim_views * (experiment.scenes - 1),
                        "innocent_false_matches": int(sum(false)),
                        "innocent_false_match_rate": innocent["rate"],
                        "innocent_ci95_low": innocent["ci_low"],
                        "innocent_ci95_high": innocent["ci_high"],
                        "innocent_ci_method": innocent["ci_method"],
                    })
    return rows
