"""The leakage audit: does a protocol's server learn more than its ``LEAKAGE`` declares?

>>> from e2escan.audit import audit_protocol
>>> report = audit_protocol("tpsi-ad", vouchers=4000, synthetic_probability=0.5, seed=1)   # doctest: +SKIP
>>> report.passed, [r.as_row() for r in report.results]                                     # doctest: +SKIP

It runs the protocol for real (clients, relay, match server; everything read
back from the ServerView) and its ideal functionality
(:mod:`e2escan.protocols.ideal`) on one ground truth, and puts both through
one battery of distinguishers (:mod:`e2escan.audit.distinguishers`). A family
whose strongest feature separates the worlds beyond chance (adjusted p-value
below ``alpha``) is an undeclared
leak, reported with the feature and the field it reads. The p-values are
single-step max-T adjusted over the whole battery (one permutation null for
every feature of every family), so the audit as a whole holds level ``alpha``. ``e2escan audit``
is the command-line form; it is the tool to run on a new protocol variant
before believing it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, ProtocolError
from ..protocols import PROTOCOLS, Protocol
from ..protocols.events import EventError
from .distinguishers import (
    EXTRACTORS,
    FAMILIES,
    FamilyResult,
    family_test,
    joint_null_max,
    required_accounts,
)
from .worlds import MEAN_VOUCHERS_PER_ACCOUNT, build_worlds, resolve_params

__all__ = [
    "DEFAULT_OVERRIDES",
    "FAMILIES",
    "AuditReport",
    "audit_protocol",
    "check_permutations",
    "check_power",
    "detectable_share",
    "resolve_protocol",
]

#: A small threshold, so accounts come close to it and relations among ``t - 1`` genuine rows are testable.
DEFAULT_OVERRIDES: Mapping[str, Any] = {"threshold": 4, "synthetic_capacity": 8, "payload_size": 64}
#: Upper bound on the features of one family, used for the power calculation before anything runs.
MAX_FEATURES = 1000


@dataclass(frozen=True)
class AuditReport:
    protocol: str
    params: Mapping[str, Any]
    vouchers: int
    accounts: int
    synthetic_probability: float | None
    alpha: float
    min_share: float | None  # the share asked for, or None
    results: tuple[FamilyResult, ...]
    seconds: Mapping[str, float] = field(default_factory=dict)
    detectable_share: float = 1.0  # the share of accounts a leak must touch to be found with power 0.9

    @property
    def passed(self) -> bool:
        return not any(r.leaks for r in self.results)

    @property
    def leaks(self) -> tuple[FamilyResult, ...]:
        return tuple(r for r in self.results if r.leaks)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"protocol": self.protocol, "synthetic_probability": self.synthetic_probability, "vouchers": self.vouchers,
             **r.as_row(), "detectable_share": round(self.detectable_share, 4)}
            for r in self.results
        ]


def resolve_protocol(name: str) -> Protocol:
    """The registered protocol ``name``; :class:`ConfigError` lists the known ones otherwise."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def check_permutations(permutations: int, alpha: float, families: int = 1) -> None:
    """A permutation p-value is at least ``1 / (permutations + 1)``: it must be able to fall to half the level.

    The battery is tested as a whole (max-T over every family), so the level is ``alpha`` itself.
    """
    needed = math.ceil(2 / alpha) - 1
    if permutations < needed:
        raise ConfigError(
            f"--permutations {permutations}: a p-value can then not fall below {1 / (permutations + 1):.2g}, "
            f"above half the level {alpha:.2g}; use at least {needed}"
        )


def detectable_share(accounts: int, *, alpha: float, families: int = len(FAMILIES), power: float = 0.9) -> float:
    """The smallest share of accounts a leak must touch to be found with ``power`` by ``accounts`` accounts."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - alpha / (2 * families * MAX_FEATURES)) + NormalDist().inv_cdf(power)
    return min(1.0, z * z / max(accounts, 1))


def check_power(vouchers: int, *, alpha: float, min_share: float | None, families: int = len(FAMILIES)) -> int:
    """The accounts ``vouchers`` give; with ``min_share``, a :class:`ConfigError` saying how many are needed if too few.

    Without ``min_share`` nothing is refused: the report states the share of
    accounts a leak must touch to be found (:func:`detectable_share`).
    """
    accounts = int(vouchers / MEAN_VOUCHERS_PER_ACCOUNT)
    if accounts < 2:
        raise ConfigError(f"--vouchers {vouchers} gives {accounts} accounts; the audit needs at least 2 (about 10 vouchers)")
    if min_share is None:
        return accounts
    needed = required_accounts(MAX_FEATURES, families, alpha, min_share)
    if accounts < needed:
        raise ConfigError(
            f"--vouchers {vouchers} gives about {accounts} accounts; finding with power 0.9 a leak in "
            f"{min_share:.0%} of accounts at alpha = {alpha} needs {needed} accounts, about "
            f"{int(np.ceil(needed * MEAN_VOUCHERS_PER_ACCOUNT))} vouchers (or raise --min-share)"
        )
    return accounts


def _params_for(protocol: Protocol, synthetic_probability: float | None, overrides: Mapping[str, Any]) -> Any:
    accepted = set(protocol.Params().to_dict())
    values = {k: v for k, v in DEFAULT_OVERRIDES.items() if k in accepted}
    if synthetic_probability is not None and "synthetic_probability" in accepted:
        values["synthetic_probability"] = synthetic_probability
    values.update(overrides)
    return resolve_params(protocol, values)


def audit_protocol(
    name: str | Protocol,
    *,
    vouchers: int = 4000,
    synthetic_probability: float | None = None,
    seed: int = 0,
    alpha: float = 0.001,
    min_share: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    families: Sequence[str] = FAMILIES,
    permutations: int = 1999,
) -> AuditReport:
    """Audit one protocol (a registered name, or a :class:`Protocol` object for a variant under test)."""
    protocol = resolve_protocol(name) if isinstance(name, str) else name
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ConfigError(f"unknown distinguisher families {unknown}; known: {', '.join(FAMILIES)}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha = {alpha} must lie in (0, 1)")
    if min_share is not None and not 0 < min_share <= 1:
        raise ConfigError(f"min_share = {min_share} must lie in (0, 1]")
    check_permutations(permutations, alpha, len(families))
    accounts = check_power(vouchers, alpha=alpha, min_share=min_share, families=len(families))
    params = _params_for(protocol, synthetic_probability, overrides or {})
    rng = np.random.default_rng(seed)
    try:
        worlds = build_worlds(protocol, params, accounts, rng)
    except (ProtocolError, EventError) as exc:
        raise ConfigError(f"audit of {protocol.name}: {exc}") from exc
    t1 = time.perf_counter()
    tables = [EXTRACTORS[family](worlds) for family in families]
    null_max = joint_null_max(tables, rng, permutations)
    results = [family_test(table, rng, alpha=alpha, null_max=null_max) for table in tables]
    t2 = time.perf_counter()
    p = params.to_dict().get("synthetic_probability")
    return AuditReport(protocol.name, params.to_dict(), worlds.voucher_count, len(worlds.accounts), p, alpha,
                       min_share, tuple(results), {**worlds.seconds, "distinguishers_s": t2 - t1},
                       detectable_share(len(worlds.accounts), alpha=alpha, families=len(families)))
