"""The battery of distinguishers and the one test they all go through.

Every distinguisher turns a world into a table of per-account features (the
same columns in both worlds). Five families:

* ``voucher-bytes``: per voucher, the mean byte value and the share of set
  bits of every 16-byte window of every voucher field and every decoded bytes
  field of the server's record (at most 12 windows per field, evenly spaced),
  averaged per account within each class of voucher (database member,
  synthetic, other);
* ``equality``: for *every* aligned 16-byte window and every whole bytes field,
  how many pairs of an account's vouchers carry equal values (within the
  account), and how many of its vouchers carry a value some other account
  also sent (across accounts);
* ``relations``: for records whose decoded scalars are evaluations of secret
  polynomials at ``x`` (threshold variants), how many subsets of ``k = 2..4``
  of an account's rows lie on a polynomial of degree at most ``k - 2``, per
  column (the share and the first eight detectable-hash columns);
* ``counts``: every numeric or boolean field of the account aggregate, and
  per account the sum of every numeric or boolean record field, the number of
  records, the number of empty (``None``) fields, and whether the server
  could decrypt anything (``over_threshold``, never in the ideal world);
* ``relay``: per account, the mean voucher size per class, the total voucher
  bytes and the mean time between vouchers, as the relay logged them.

**The test.** Both worlds hold the same accounts with the same ground truth,
so the test is paired: for feature ``f`` and account ``a`` let
``d_af = real_af - ideal_af``. The statistic of ``f`` is
``T_f = |sum_a d_af| / sqrt(sum_a d_af^2)`` (0 when every ``d_af`` is 0), and a
family's statistic is ``max_f T_f``. Under the null hypothesis that the real
world gives every account a view distributed as the ideal one (given the
truth), swapping an account's two views changes nothing, so flipping the
signs of whole rows of ``d`` gives the null distribution of the maximum
(``permutations`` random sign vectors, one per permutation for every feature
of every family, so the maximum over correlated features is calibrated as it
is). A family's p-value is single-step max-T adjusted:
``(1 + #{null max over the whole battery >= the family's max}) / (permutations + 1)``,
so the battery is tested at level ``alpha`` as a whole with no further
correction for its families or features.

**What is reported** for the family's strongest feature: the advantage of
the best threshold rule telling an account's real view from its ideal one
(the two-sample Kolmogorov-Smirnov distance of the feature between worlds),
its chance level (mean advantage after random swaps), a 95% bootstrap
interval over accounts, and the max-T adjusted p-value.

**Power.** A leak that adds a difference of one sign to a feature for a
fraction ``phi`` of accounts (and leaves the others as the ideal world has
them) gives ``T = sqrt(n phi)`` when the differences are of similar size. It is
found with probability about 0.9 when ``sqrt(n phi) >= z(alpha / (2 F m)) + 1.28``
for ``m`` features per family and ``F`` families (a Bonferroni bound on the
maximum, which the max-T test can only beat): :func:`required_accounts`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist
from typing import Any

import numpy as np

from ..crypto.group import ELL
from ..metrics.leakage import advantage
from ..protocols.ideal import VoucherTruth
from .worlds import World, Worlds

WINDOW = 16
MAX_WINDOWS = 12
MAX_RELATION_COLUMNS = 9
RELATION_SIZES = (2, 3, 4)
CLASSES = ("member", "synthetic", "other")
FAMILIES = ("voucher-bytes", "equality", "relations", "counts", "relay")


def voucher_class(truth: VoucherTruth) -> str:
    return "synthetic" if truth.synthetic else "member" if truth.member else "other"


@dataclass(frozen=True)
class FeatureTable:
    """Per-account features of one family in both worlds; ``fields[j]`` names the field feature ``j`` reads."""

    family: str
    names: tuple[str, ...]
    fields: tuple[str, ...]
    real: np.ndarray  # accounts x features
    ideal: np.ndarray


@dataclass(frozen=True)
class FamilyResult:
    family: str
    features: int
    accounts: int
    feature: str  # the strongest feature ("" when the family has none)
    field: str
    statistic: float
    advantage: float
    chance_advantage: float
    ci_low: float
    ci_high: float
    p_value: float
    alpha: float  # the family's share of the audit's level

    @property
    def leaks(self) -> bool:
        return self.features > 0 and self.p_value < self.alpha

    def as_row(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "features": self.features,
            "accounts": self.accounts,
            "strongest_feature": self.feature,
            "field": self.field,
            "statistic": round(self.statistic, 4),
            "advantage": round(self.advantage, 4),
            "chance_advantage": round(self.chance_advantage, 4),
            "ci_low": round(self.ci_low, 4),
            "ci_high": round(self.ci_high, 4),
            "p_value": self.p_value,
            "alpha": self.alpha,
            "verdict": "LEAK" if self.leaks else ("n/a" if self.features == 0 else "ok"),
        }


# --- features ----------------------------------------------------------------------------


def _leaves(value: Any, path: str, names: Mapping[str, Sequence[str]]) -> Iterator[tuple[str, Any]]:
    """Flatten a record value: tuples of bytes join into one leaf; other tuples recurse with component names."""
    if isinstance(value, tuple):
        if value and all(isinstance(v, bytes) for v in value):
            yield path, b"".join(value)
            return
        parts = names.get(path, ())
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}.{parts[i] if i < len(parts) else i}", names)
    else:
        yield path, value


def _record_leaves(record: Mapping[str, Any], names: Mapping[str, Sequence[str]]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key in sorted(record):
        out.extend(_leaves(record[key], f"record.{key}", names))
    return out


def _byte_leaves(obs, schema, names) -> list[tuple[str, bytes]]:
    out = []
    if schema is not None:
        decoded = schema.decode(obs.voucher)
        out += [(f"voucher.{k}", decoded[k]) for k in decoded]
    else:
        out.append(("voucher", obs.voucher))
    out += [(p, v) for p, v in _record_leaves(obs.record, names) if isinstance(v, bytes)]
    return out


def _sampled(n: int) -> list[int]:
    if n <= MAX_WINDOWS:
        return list(range(n))
    return sorted({round(i * (n - 1) / (MAX_WINDOWS - 1)) for i in range(MAX_WINDOWS)})


class _Accumulator:
    """Named per-account sums and counts (means per account; 0 where an account has nothing)."""

    def __init__(self, accounts: int) -> None:
        self.n = accounts
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray | None] = {}  # None: the column is a total, not a mean
        self.field_of: dict[str, str] = {}

    def add(self, name: str, field: str, account: int, value: float, mean: bool = True) -> None:
        if name not in self.sums:
            self.sums[name] = np.zeros(self.n)
            self.counts[name] = np.zeros(self.n) if mean else None
            self.field_of[name] = field
        self.sums[name][account] += value
        counted = self.counts[name]
        if counted is not None:
            counted[account] += 1

    def add_column(self, name: str, field: str, sums: np.ndarray, counts: np.ndarray | None) -> None:
        """Add a whole column at once: per-account sums, and counts for a mean (``None``: a total)."""
        if name not in self.sums:
            self.sums[name] = np.zeros(self.n)
            self.counts[name] = None if counts is None else np.zeros(self.n)
            self.field_of[name] = field
        self.sums[name] += sums
        if counts is not None:
            counted = self.counts[name]
            if counted is None:
                raise ValueError(f"audit feature {name!r}: a total (no counts) cannot also be a mean")
            counted += counts

    def column(self, name: str) -> np.ndarray:
        if name not in self.sums:
            return np.zeros(self.n)
        c = self.counts[name]
        return self.sums[name] if c is None else np.divide(self.sums[name], np.maximum(c, 1))


def _table(family: str, real: _Accumulator, ideal: _Accumulator) -> FeatureTable:
    names = sorted(set(real.sums) | set(ideal.sums))
    fields = tuple(real.field_of.get(n) or ideal.field_of[n] for n in names)
    r = np.column_stack([real.column(n) for n in names]) if names else np.zeros((real.n, 0))
    i = np.column_stack([ideal.column(n) for n in names]) if names else np.zeros((real.n, 0))
    return FeatureTable(family, tuple(names), fields, r, i)


def _leaf_matrices(worlds: Worlds, world: World) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per bytes field (path and length): ``(account index, class index, uint8 matrix)`` over every voucher."""
    schema, names = worlds.ideal.schema, worlds.ideal.component_names
    rows: dict[str, tuple[list[int], list[int], list[bytes]]] = defaultdict(lambda: ([], [], []))
    for a, account in enumerate(worlds.accounts):
        for truth, obs in zip(worlds.truths[account], world.vouchers[account]):
            cls = CLASSES.index(voucher_class(truth))
            for path, data in _byte_leaves(obs, schema, names):
                if not data:
                    continue
                acc_idx, cls_idx, values = rows[f"{path}#{len(data)}"]
                acc_idx.append(a)
                cls_idx.append(cls)
                values.append(data)
    out = {}
    for key, (acc_idx, cls_idx, values) in rows.items():
        width = len(values[0])
        matrix = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), width)
        out[key] = (np.asarray(acc_idx), np.asarray(cls_idx), matrix)
    return out


def _path(key: str) -> str:
    return key.rsplit("#", 1)[0]


def voucher_bytes(worlds: Worlds) -> FeatureTable:
    accs = []
    n = len(worlds.accounts)
    for world in (worlds.real, worlds.ideal_world):
        acc = _Accumulator(n)
        for key, (acc_idx, cls_idx, matrix) in _leaf_matrices(worlds, world).items():
            path = _path(key)
            windows = max(1, math.ceil(matrix.shape[1] / WINDOW))
            for w in _sampled(windows):
                part = matrix[:, w * WINDOW : (w + 1) * WINDOW]
                stats = {"mean": part.mean(axis=1), "bits": np.unpackbits(part, axis=1).mean(axis=1)}
                for c, cls in enumerate(CLASSES):
                    mask = cls_idx == c
                    if not mask.any():
                        continue
                    counts = np.bincount(acc_idx[mask], minlength=n)
                    for stat, values in stats.items():
                        acc.add_column(f"{cls}:{path}[{w}]:{stat}", path, np.bincount(acc_idx[mask], values[mask], n), counts)
        accs.append(acc)
    return _table("voucher-bytes", *accs)


def _equal_value_counts(acc_idx: np.ndarray, part: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per account: pairs of its vouchers with equal ``part`` rows, and vouchers whose row another account sent."""
    row = np.ascontiguousarray(part).view(np.dtype((np.void, part.shape[1]))).ravel()
    _, value = np.unique(row, return_inverse=True)
    value = value.ravel()
    # Within an account: occurrences of each (account, value), then C(c, 2) per account.
    pair_key = acc_idx.astype(np.int64) * (int(value.max()) + 1) + value
    keys, counts = np.unique(pair_key, return_counts=True)
    within = np.bincount(keys // (int(value.max()) + 1), counts * (counts - 1) / 2, n)
    # Across accounts: a value counts for an account when some other account also sent it.
    owners = np.bincount(keys % (int(value.max()) + 1), minlength=int(value.max()) + 1)
    across = np.bincount(acc_idx, (owners[value] > 1).astype(float), n)
    return within, across


def equality(worlds: Worlds) -> FeatureTable:
    accs = []
    n = len(worlds.accounts)
    for world in (worlds.real, worlds.ideal_world):
        acc = _Accumulator(n)
        for key, (acc_idx, _, matrix) in _leaf_matrices(worlds, world).items():
            path = _path(key)
            parts = [(path, matrix)]
            if matrix.shape[1] > WINDOW:
                parts += [(f"{path}[{w}]", matrix[:, w * WINDOW : (w + 1) * WINDOW])
                          for w in range(math.ceil(matrix.shape[1] / WINDOW))]
            for name, part in parts:
                within, across = _equal_value_counts(acc_idx, part, n)
                acc.add_column(f"within:{name}", path, within, None)
                acc.add_column(f"across:{name}", path, across, None)
        accs.append(acc)
    return _table("equality", *accs)


def _relation_counts(rows: list[tuple[int, tuple[int, ...]]], modulus: int = ELL) -> dict[tuple[int, int], int]:
    """``(column, k) -> `` subsets of ``k`` rows whose values lie on a polynomial of degree <= k - 2 mod ``modulus``."""
    out: dict[tuple[int, int], int] = defaultdict(int)
    for k in RELATION_SIZES:
        for subset in combinations(rows, k):
            xs = [x for x, _ in subset]
            # D_i = prod_{j != i} (x_i - x_j); the (k-1)-th divided difference is sum_i y_i / D_i, and it is
            # zero iff sum_i y_i * prod_{l != i} D_l is (the D_i are nonzero): no inversion needed.
            d = []
            for i, xi in enumerate(xs):
                prod = 1
                for j, xj in enumerate(xs):
                    if i != j:
                        prod = prod * (xi - xj) % modulus
                d.append(prod)
            weights = []
            for i in range(k):
                prod = 1
                for l_, dl in enumerate(d):
                    if l_ != i:
                        prod = prod * dl % modulus
                weights.append(prod)
            columns = min(len(subset[0][1]), MAX_RELATION_COLUMNS)
            for c in range(columns):
                # The k points lie on a polynomial of degree <= k - 2 iff the combination vanishes.
                if sum(w * values[c] for w, (_, values) in zip(weights, subset)) % modulus == 0:
                    out[(c, k)] += 1
    return out


def relations(worlds: Worlds) -> FeatureTable:
    """Per account and field: subsets of opened rows whose values lie on a low-degree polynomial.

    Rows are grouped by (modulus, columns) -- one family per field a record's
    :class:`~e2escan.protocols.ideal.ShareRows` come in -- and deduplicated by
    ``x`` within an account, as a server would.
    """
    share_rows = worlds.ideal.share_rows
    accs = []
    for world in (worlds.real, worlds.ideal_world):
        acc = _Accumulator(len(worlds.accounts))
        if share_rows is not None:
            for a, account in enumerate(worlds.accounts):
                families: dict[tuple[int, tuple[str, ...]], dict[int, tuple[int, ...]]] = {}
                for obs in world.vouchers[account]:
                    for row in share_rows(obs.record):
                        if row.x % row.modulus != 0:
                            families.setdefault((row.modulus, row.columns), {}).setdefault(row.x % row.modulus, row.values)
                for (modulus, columns), rows in sorted(families.items()):
                    counts = _relation_counts(list(rows.items()), modulus)
                    for c, column in enumerate(columns[:MAX_RELATION_COLUMNS]):
                        for k in RELATION_SIZES:
                            acc.add(f"{column}:k={k}", f"record.inner_layer.{column}", a, float(counts.get((c, k), 0)), mean=False)
        accs.append(acc)
    return _table("relations", *accs)


def counts(worlds: Worlds) -> FeatureTable:
    names = worlds.ideal.component_names
    accs = []
    for world in (worlds.real, worlds.ideal_world):
        acc = _Accumulator(len(worlds.accounts))
        for a, account in enumerate(worlds.accounts):
            for key, value in sorted(world.account_fields[account].items()):
                for path, leaf in _leaves(value, f"account.{key}", names):
                    if isinstance(leaf, (bool, int)):
                        acc.add(f"{path}", path, a, float(leaf), mean=False)
            acc.add("records", "record", a, float(len(world.vouchers[account])), mean=False)
            acc.add("over_threshold", "reveal.over_threshold", a, float(world.over_threshold.get(account, False)), mean=False)
            for obs in world.vouchers[account]:
                for path, leaf in _record_leaves(obs.record, names):
                    if isinstance(leaf, (bool, int)):
                        acc.add(f"sum:{path}", path, a, float(leaf), mean=False)
                    acc.add(f"none:{path}", path, a, float(leaf is None), mean=False)
        accs.append(acc)
    return _table("counts", *accs)


def relay(worlds: Worlds) -> FeatureTable:
    accs = []
    for world in (worlds.real, worlds.ideal_world):
        acc = _Accumulator(len(worlds.accounts))
        for a, account in enumerate(worlds.accounts):
            observed = world.vouchers[account]
            for truth, obs in zip(worlds.truths[account], observed):
                acc.add(f"{voucher_class(truth)}:size", "relay.voucher.size", a, float(obs.size))
                acc.add("total_bytes", "relay.voucher.size", a, float(obs.size), mean=False)
            times = [obs.at for obs in observed]
            if len(times) > 1:
                acc.add("mean_gap_s", "relay.voucher.at", a, float(np.diff(times).mean()), mean=False)
        accs.append(acc)
    return _table("relay", *accs)


EXTRACTORS: Mapping[str, Callable[[Worlds], FeatureTable]] = {
    "voucher-bytes": voucher_bytes,
    "equality": equality,
    "relations": relations,
    "counts": counts,
    "relay": relay,
}


# --- the test ----------------------------------------------------------------------------------


def _statistics(d: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
    norm = np.sqrt((d * d).sum(axis=0))
    sums = d.sum(axis=0) if signs is None else signs @ d
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(norm > 0, np.abs(sums) / np.where(norm > 0, norm, 1), 0.0)
    return t


def joint_null_max(tables: Sequence[FeatureTable], rng: np.random.Generator, permutations: int) -> np.ndarray:
    """The null distribution of the maximum statistic over *every* feature of *every* table.

    One random sign vector per permutation swaps each account's two views in
    all tables at once (the tables share their accounts), so the maximum is
    taken over correlated features and families as they are.
    """
    n = tables[0].real.shape[0]
    diffs = [t.real - t.ideal for t in tables if t.real.shape[1]]
    null_max = np.zeros(permutations)
    for start in range(0, permutations, 250):
        stop = min(permutations, start + 250)
        signs = rng.choice((-1.0, 1.0), size=(stop - start, n))
        for d in diffs:
            null_max[start:stop] = np.maximum(null_max[start:stop], _statistics(d, signs).max(axis=1))
    return null_max


def family_test(table: FeatureTable, rng: np.random.Generator, *, alpha: float, permutations: int = 1999,
                bootstrap: int = 200, null_max: np.ndarray | None = None) -> FamilyResult:
    """The paired sign-flip max test of one family, and the advantage of its strongest feature.

    With ``null_max`` (from :func:`joint_null_max` over all families) the
    p-value is the single-step max-T adjusted one: the family's largest
    statistic against the maximum over the whole battery, so no further
    correction for the number of families or features is needed.
    """
    n, m = table.real.shape
    if m == 0:
        return FamilyResult(table.family, 0, n, "", "", 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, alpha)
    d = table.real - table.ideal
    observed = _statistics(d)
    best = int(np.argmax(observed))
    if null_max is None:
        null_max = joint_null_max([table], rng, permutations)
    permutations = null_max.size
    p_value = (1 + int((null_max >= observed[best] - 1e-9).sum())) / (permutations + 1)
    r, i = table.real[:, best], table.ideal[:, best]
    label = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    adv = advantage(np.r_[r, i], label)
    chance = []
    for _ in range(100):
        swap = rng.random(n) < 0.5
        chance.append(advantage(np.r_[np.where(swap, i, r), np.where(swap, r, i)], label))
    boots = []
    for _ in range(bootstrap):
        idx = rng.integers(0, n, n)
        boots.append(advantage(np.r_[r[idx], i[idx]], label))
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return FamilyResult(table.family, m, n, table.names[best], table.fields[best], float(observed[best]), adv,
                        float(np.mean(chance)), float(lo), float(hi), p_value, alpha)


def required_accounts(features: int, families: int, alpha: float, min_share: float, power: float = 0.9) -> int:
    """Accounts needed to find, with probability ``power``, a leak shifting one feature in ``min_share`` of them."""
    z = NormalDist().inv_cdf(1 - alpha / (2 * families * max(features, 1)))
    return math.ceil((z + NormalDist().inv_cdf(power)) ** 2 / min_share)
