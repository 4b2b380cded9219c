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
signs of whole rows of ``d`` gives the null distribution of the family's
maximum (``permutations`` random sign vectors, the same for every feature, so
the maximum over correlated features is calibrated as it is). The p-value is
``(1 + #{null max >= observed max}) / (permutations + 1)``.

**What is reported** for the family's strongest feature: the advantage of
the best threshold rule telling an account's real view from its ideal one
(the two-sample Kolmogorov-Smirnov distance of the feature between worlds),
its chance level (mean advantage after random swaps), a 95% bootstrap
interval over accounts, and the family-wise p-value.

**Power.** A leak that adds a difference of one sign to a feature for a
fraction ``phi`` of accounts (and leaves the others as the ideal world has
them) gives ``T = sqrt(n phi)`` when the differences are of similar size. It is
found with probability about 0.9 when ``sqrt(n phi) >= z(alpha / (2 F m)) + 1.28``
for ``m`` features per family and ``F`` families (a Bonferroni bound on the
maximum): :func:`required_accounts`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
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
    out = []
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


def _windows(data: bytes) -> list[tuple[int, bytes]]:
    return [(w, data[w * WINDOW : (w + 1) * WINDOW]) for w in range(max(1, math.ceil(len(data) / WINDOW)))]


def _sampled(n: int) -> list[int]:
    if n <= MAX_WINDOWS:
        return list(range(n))
    return sorted({round(i * (n - 1) / (MAX_WINDOWS - 1)) for i in range(MAX_WINDOWS)})


class _Accumulator:
    """Named per-account sums and counts (means per account; 0 where an account has nothing)."""

    def __init__(self, accounts: int) -> None:
        self.n = accounts
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.field_of: dict[str, str] = {}

    def add(self, name: str, field: str, account: int, value: float, mean: bool = True) -> None:
        if name not in self.sums:
            self.sums[name] = np.zeros(self.n)
            self.counts[name] = np.zeros(self.n) if mean else None  # type: ignore[assignment]
            self.field_of[name] = field
        self.sums[name][account] += value
        if self.counts[name] is not None:
            self.counts[name][account] += 1

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


def voucher_bytes(worlds: Worlds) -> FeatureTable:
    schema, names = worlds.ideal.schema, worlds.ideal.component_names
    accs = []
    for world in (worlds.real, worlds.ideal_world):
        acc = _Accumulator(len(worlds.accounts))
        for a, account in enumerate(worlds.accounts):
            for truth, obs in zip(worlds.truths[account], world.vouchers[account]):
                cls = voucher_class(truth)
                for path, data in _byte_leaves(obs, schema, names):
                    arr = np.frombuffer(data, dtype=np.uint8)
                    windows = max(1, math.ceil(arr.size / WINDOW))
                    for w in _sampled(windows):
                        part = arr[w * WINDOW : (w + 1) * WINDOW]
                        if part.size == 0:
                            continue
                        acc.add(f"{cls}:{path}[{w}]:mean", path, a, float(part.mean()))
                        acc.add(f"{cls}:{path}[{w}]:bits", path, a, float(np.unpackbits(part).mean()))
        accs.append(acc)
    return _table("voucher-bytes", *accs)


def equality(worlds: Worlds) -> FeatureTable:
    schema, names = worlds.ideal.schema, worlds.ideal.component_names
    accs = []
    for world in (worlds.real, worlds.ideal_world):
        acc = _Accumulator(len(worlds.accounts))
        per_account: list[dict[str, Counter]] = []
        owners: dict[tuple[str, bytes], set[int]] = defaultdict(set)
        fields: dict[str, str] = {}
        for a, account in enumerate(worlds.accounts):
            seen: dict[str, Counter] = defaultdict(Counter)
            for obs in world.vouchers[account]:
                for path, data in _byte_leaves(obs, schema, names):
                    keys = [(f"{path}", data)] + ([(f"{path}[{w}]", part) for w, part in _windows(data)] if len(data) > WINDOW else [])
                    for key, value in keys:
                        seen[key][value] += 1
                        owners[(key, value)].add(a)
                        fields[key] = path
            per_account.append(seen)
        for a, seen in enumerate(per_account):
            for key, counter in seen.items():
                pairs = sum(c * (c - 1) // 2 for c in counter.values())
                shared = sum(c for v, c in counter.items() if len(owners[(key, v)]) > 1)
                acc.add(f"within:{key}", fields[key], a, float(pairs), mean=False)
                acc.add(f"across:{key}", fields[key], a, float(shared), mean=False)
        accs.append(acc)
    return _table("equality", *accs)


def _relation_counts(rows: list[tuple[int, tuple[int, ...]]]) -> dict[tuple[int, int], int]:
    """``(column, k) -> `` subsets of ``k`` rows whose values lie on a polynomial of degree <= k - 2."""
    out: dict[tuple[int, int], int] = defaultdict(int)
    for k in RELATION_SIZES:
        for subset in combinations(rows, k):
            xs = [x for x, _ in subset]
            weights = []
            for i, xi in enumerate(xs):
                prod = 1
                for j, xj in enumerate(xs):
                    if i != j:
                        prod = prod * (xi - xj) % ELL
                weights.append(pow(prod, -1, ELL))
            columns = min(len(subset[0][1]), MAX_RELATION_COLUMNS)
            for c in range(columns):
                # The (k-1)-th divided difference is zero iff the k points lie on degree <= k - 2.
                if sum(w * values[c] for w, (_, values) in zip(weights, subset)) % ELL == 0:
                    out[(c, k)] += 1
    return out


def relations(worlds: Worlds) -> FeatureTable:
    share_rows = worlds.ideal.share_rows
    accs = []
    for world in (worlds.real, worlds.ideal_world):
        acc = _Accumulator(len(worlds.accounts))
        if share_rows is not None:
            for a, account in enumerate(worlds.accounts):
                rows: dict[int, tuple[int, ...]] = {}
                for obs in world.vouchers[account]:
                    row = share_rows(obs.record)
                    if row is not None and row[0] % ELL != 0:
                        rows.setdefault(row[0] % ELL, row[1])
                if not rows:
                    continue
                width = min(len(next(iter(rows.values()))), MAX_RELATION_COLUMNS)
                counts = _relation_counts(list(rows.items()))
                for c in range(width):
                    column = "share" if c == 0 else f"dhf{c - 1}"
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


def family_test(table: FeatureTable, rng: np.random.Generator, *, alpha: float, permutations: int = 1999,
                bootstrap: int = 200) -> FamilyResult:
    """The paired sign-flip max test of one family, and the advantage of its strongest feature."""
    n, m = table.real.shape
    if m == 0:
        return FamilyResult(table.family, 0, n, "", "", 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, alpha)
    d = table.real - table.ideal
    observed = _statistics(d)
    best = int(np.argmax(observed))
    null_max = np.empty(permutations)
    for start in range(0, permutations, 250):
        stop = min(permutations, start + 250)
        signs = rng.choice((-1.0, 1.0), size=(stop - start, n))
        null_max[start:stop] = _statistics(d, signs).max(axis=1)
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
