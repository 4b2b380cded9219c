"""Database poisoning: re-purposing a scanning database to find who holds a chosen (non-abuse) image.

Hooda, Labunets, Kohno and Fernandes show that an adversary who can add
entries to the perceptual-hash database of a client-side scanning system can
use it for physical surveillance: by poisoning 5% of the database with hashes
of images of a target location, they flag more than 40% of the photos taken
there ("Re-purposing Perceptual Hashing based Client Side Scanning for Physical
Surveillance", arXiv:2212.04107, 2022; published as "Experimental Analyses of
the Physical Surveillance Risks in Client-Side Content Scanning", NDSS 2024,
whose abstract reports more than 30% at 0.2%).

The model here, one target image at a time:

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
decrypted only once ``t`` copies match (the real count is ``Bin(m, q (1 - s))``
with synthetic-voucher probability ``s``, each copy sent as its own voucher,
``dedup = "none"``); but below ``t`` a curious server still counts the opened
outer layers, which betray a single match unless synthetic vouchers add cover.
:func:`run_protocol_poisoning` measures the same quantities with the real
protocol code, and tests check that the two agree.

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
from ..metrics import false_flag_probability
from ..metrics.rates import proportion
from ..protocols.tpsi_ad import seeded_coin

__all__ = [
    "EVERYDAY_EDITS",
    "CopySet",
    "EditFamily",
    "OpenedCountTest",
    "PoisoningExperiment",
    "PoisoningResults",
    "ProtocolPoisoningRun",
    "ProtocolUnderTest",
    "Uniform",
    "choose_poison",
    "make_copies",
    "matches_any",
    "opened_count_test",
    "poisoned_database",
    "revealed_probability",
    "run_poisoning_experiment",
    "run_protocol_poisoning",
    "seeded_coin",
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

    Assumes each copy is its own voucher (``dedup = "none"``, as the paper's
    per-image identifiers give), copies match independently with probability
    ``per_copy`` and a synthetic voucher replaces a real one with probability
    ``synthetic_probability``. ``threshold=None`` (no threshold) means ``t = 1``.
    """
    _check_probability("per_copy", per_copy)
    _check_probability("synthetic_probability", synthetic_probability)
    t = 1 if threshold is None else int(threshold)
    return float(false_flag_probability(int(copies), per_copy * (1.0 - synthetic_probability), t))


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} = {value} must be a probability in [0, 1]")


def _binomial_pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n + 1)
    if p <= 0.0:
        return (k == 0).astype(float)
    if p >= 1.0:
        return (k == n).astype(float)
    log = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
    return np.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))


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
    _check_probability("per_copy", per_copy)
    _check_probability("synthetic_probability", synthetic_probability)
    _check_probability("max_false_positive", max_false_positive)
    s = synthetic_probability
    n = copies + other_images
    null = _binomial_pmf(n, s)
    holder = np.convolve(_binomial_pmf(copies, per_copy + (1 - per_copy) * s), _binomial_pmf(other_images, s))
    null_tail = np.cumsum(null[::-1])[::-1]  # P[opened >= c]
    holder_tail = np.cumsum(holder[::-1])[::-1]
    ok = np.flatnonzero(null_tail <= max_false_positive + 1e-15)
    cut = int(ok[0]) if ok.size else n + 1
    if cut > n:
        return OpenedCountTest(cut, 0.0, 0.0)
    return OpenedCountTest(cut, float(min(1.0, holder_tail[cut])), float(null_tail[cut]))


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
    """
    server, public = protocol.server_setup(database, params)
    radius = protocol.match_radius(params)
    per_hash = getattr(params, "dedup", "none") == "hash"
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
        if hasattr(client, "coin_source"):
            client.coin_source = seeded_coin(rng, per_hash)
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

    Protocol runs: per target, ``run_accounts`` accounts hold copies of it and
    as many hold none; each has ``other_images`` unrelated images besides. A
    holder holds ``run_copies`` copies, or ``threshold + 10`` when the
    protocol's threshold is above ``run_copies`` (so the threshold can be met).
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

    def __post_init__(self) -> None:
        for name in ("targets", "attacker_copies", "victim_copies", "unrelated_images", "database_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PoisoningExperiment.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("run_accounts", "run_copies", "other_images"):
            if getattr(self, name) < 0:
                raise ConfigError(f"PoisoningExperiment.{name} must be >= 0, got {getattr(self, name)}")
        for f in (*self.fractions, *self.run_fractions):
            if not 0.0 <= f <= 1.0:
                raise ConfigError(f"PoisoningExperiment: poison fraction {f} must lie in [0, 1]")
        for s in self.synthetic_grid:
            _check_probability("PoisoningExperiment.synthetic_grid entry", s)
        _check_probability("PoisoningExperiment.max_false_positive", self.max_false_positive)
        if any(m < 1 for m in self.copies_held):
            raise ConfigError(f"PoisoningExperiment.copies_held must list counts >= 1, got {self.copies_held}")

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


def _sources(experiment: PoisoningExperiment, rng: np.random.Generator) -> tuple[list[Image.Image], list[Image.Image]]:
    size = (experiment.image_size, experiment.image_size)
    target_seed, unrelated_seed = (int(s) for s in rng.integers(0, 2**63, size=2))
    targets = [synthetic_image(image_rng(target_seed, i), size) for i in range(experiment.targets)]
    unrelated = [synthetic_image(image_rng(unrelated_seed, i), size) for i in range(experiment.unrelated_images)]
    return targets, unrelated


def run_poisoning_experiment(experiment: PoisoningExperiment, rng: np.random.Generator) -> PoisoningResults:
    """Measure detection against the poisoned fraction, directly and with the real protocols.

    Randomness is spawned from ``rng`` in a fixed order (images, attacker
    copies, victim copies, databases and accounts), so one seed gives one
    result. Returns three tables:

    * ``per_copy``: per matching radius, fraction and edit family, the share of
      victim copies the poisoned entries match (mean over targets), and the
      share of unrelated images they match (false surveillance).
    * ``detection``: per protocol, fraction and copies held, the probability
      that a holder's target copy is decrypted and the sub-threshold counting
      test, both computed directly (the synthetic probability is varied over
      ``synthetic_grid`` for threshold variants).
    * ``protocol_runs``: at ``run_fractions``, the same quantities measured by
      running every protocol of ``experiment.protocols`` on real accounts,
      beside the direct computation.
    """
    images_rng, attacker_rng, victim_rng, run_rng = rng.spawn(4)
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
    families = [e.name for e in experiment.edits]
    for radius in radii:
        for fraction in experiment.fractions + tuple(f for f in experiment.run_fractions if f not in experiment.fractions):
            budget = experiment.budget(fraction)
            q = np.zeros(experiment.targets)
            by_family = {f: np.full(experiment.targets, np.nan) for f in families}
            false_match = np.zeros(experiment.targets)
            used = 0
            for t in range(experiment.targets):
                entries = choose_poison(attacker.of_target(t).hashes, budget, radius)
                poison[(radius, fraction, t)] = entries
                used += len(entries)
                mine = victim.of_target(t)
                hit = matches_any(entries, mine.hashes, radius)
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
            per_copy_rows.append({**base, "edit_family": "all", "per_copy_detection": float(q.mean()),
                                  "unrelated_false_match": float(false_match.mean())})
            for f in families:
                vals = by_family[f]
                per_copy_rows.append({**base, "edit_family": f,
                                      "per_copy_detection": float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan"),
                                      "unrelated_false_match": float(false_match.mean())})

    detection_rows = _detection_table(experiment, resolved, rates)
    run_rows = _protocol_run_table(experiment, resolved, rates, poison, victim, unrelated, run_rng)
    return PoisoningResults(per_copy_rows, detection_rows, run_rows, rates)


def _threshold_of(params: Any) -> int | None:
    return getattr(params, "threshold", None)


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
        threshold = _threshold_of(params)
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
                        "per_copy_detection": float(q.mean()),
                        **_direct(q, m, threshold, s, experiment.other_images, experiment.max_false_positive),
                    })
    return rows


def _protocol_run_table(experiment, resolved, rates, poison, victim, unrelated, rng) -> list[dict[str, Any]]:
    """One database per protocol and fraction holds every target's poisoned entries plus random filler.

    Targets never match each other's entries (their hashes are ~128 bits apart),
    so each target is detected as if the database had been poisoned for it alone.
    """
    rows = []
    if experiment.run_accounts == 0:
        return rows
    for put, proto, params in resolved:
        radius = proto.match_radius(params)
        threshold = _threshold_of(params)
        s = float(getattr(params, "synthetic_probability", 0.0))
        m = experiment.copies_for(threshold)
        for fraction in experiment.run_fractions:
            entries = HashArray.concatenate([poison[(radius, fraction, t)] for t in range(experiment.targets)])
            if len(entries) > experiment.database_size:
                raise ConfigError(
                    f"PoisoningExperiment: {experiment.targets} targets x {experiment.budget(fraction)} entries "
                    f"at fraction {fraction} exceed database_size = {experiment.database_size}"
                )
            db = poisoned_database(entries, experiment.database_size, rng)
            accounts = []
            for t in range(experiment.targets):
                mine = victim.of_target(t).hashes
                for _ in range(experiment.run_accounts):
                    accounts.append(_account(mine, m, unrelated, experiment.other_images, rng))
            for _ in range(experiment.targets * experiment.run_accounts):
                accounts.append(_account(None, m, unrelated, experiment.other_images, rng))
            run = run_protocol_poisoning(proto, params, db, accounts, rng)
            rows.append(_run_row(put, radius, threshold, s, fraction, m, experiment, rates[(radius, fraction)], run))
    return rows


def _account(copies_from: HashArray | None, m: int, unrelated: HashArray, other: int, rng) -> tuple[HashArray, np.ndarray]:
    """A holder (``m`` copies drawn from ``copies_from`` plus ``other`` unrelated images) or, for ``None``,
    an account of ``m + other`` unrelated images; shuffled."""
    k = 0 if copies_from is None else m
    parts = [unrelated[rng.integers(0, len(unrelated), size=other + m - k)]]
    if k:
        parts.insert(0, copies_from[rng.integers(0, len(copies_from), size=k)])
    hashes = HashArray.concatenate(parts)
    label = np.r_[np.ones(k, dtype=bool), np.zeros(other + m - k, dtype=bool)]
    order = rng.permutation(len(hashes))
    return hashes[order], label[order]


def _run_row(put, radius, threshold, s, fraction, m, experiment, q, run: ProtocolPoisoningRun) -> dict[str, Any]:
    holder, revealed, revealed_any, opened = run.holder, run.revealed_target, run.revealed_any, run.opened
    direct = _direct(q, m, threshold, s, experiment.other_images, experiment.max_false_positive)
    cut = direct["opened_test_cut"]
    measured = proportion(int(revealed[holder].sum()), int(holder.sum()), z=3.2905)
    test = proportion(int((opened[holder] >= cut).sum()), int(holder.sum()), z=3.2905)
    false_pos = proportion(int((opened[~holder] >= cut).sum()), int((~holder).sum()), z=3.2905)
    return {
        "protocol": put.label,
        "radius": radius,
        "threshold": threshold if threshold is not None else 1,
        "synthetic_probability": s,
        "poison_fraction": fraction,
        "copies_held": m,
        "other_images": experiment.other_images,
        "holders": int(holder.sum()),
        "non_holders": int((~holder).sum()),
        "per_copy_detection": float(q.mean()),
        "revealed_measured": measured.rate,
        "revealed_ci999_low": measured.low,
        "revealed_ci999_high": measured.high,
        "revealed_direct": direct["revealed_probability"],
        "revealed_agrees": bool(measured.low <= direct["revealed_probability"] <= measured.high),
        "non_holders_revealed": int(revealed_any[~holder].sum()),
        "opened_test_cut": cut,
        "opened_test_measured": test.rate,
        "opened_test_direct": direct["opened_test_detection"],
        "opened_test_agrees": bool(test.low <= direct["opened_test_detection"] <= test.high),
        "opened_false_positive_measured": false_pos.rate,
        "opened_false_positive_direct": direct["opened_test_false_positive"],
    }
