"""Typed results of a simulated run: what both engines produce and every reader consumes.

:class:`RunMetrics` is one replicate's metrics, produced alike by the
faithful path (``sim.measure``) and the statistical path
(``sim.statistical``); :class:`PooledMetrics` pools them over replicates
(``sim.runner.aggregate``). :class:`ReplicateSummary` and :class:`RunSummary`
wrap them with the costs and the run's identity, exactly as ``summary.json``
holds them: :meth:`to_dict` writes that JSON and :meth:`from_dict` reads it
back through the project's one declarative loader, strictly (an unknown or
missing key in a results folder is an error naming it).

The sections are frozen dataclasses, so renaming a metric is one edit here
and a type error at every reader. Fields marked ``omit_when_none`` are left
out of the JSON when absent (e.g. the statistical path's ``model``, which
the faithful path lacks); every other ``None`` is written as ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..config import from_dict, to_dict
from .leakage import LeakageEstimate, MaxFeatureTest
from .rates import Proportion

_OMIT = {"omit_when_none": True}
T = TypeVar("T")


def _optional() -> Any:
    """A field absent from the JSON when it is ``None``."""
    return field(default=None, metadata=_OMIT)


class _Record:
    """JSON round trip shared by every results dataclass."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_dict(self)
        return out

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any], source: str = "") -> T:
        """Read back what :meth:`to_dict` wrote, strictly: an unknown, missing or mistyped key is a
        :class:`~e2escan.errors.ConfigError` naming ``source`` (the file), the dotted key and the value."""
        return from_dict(cls, data, source=source)


@dataclass(frozen=True)
class Rate(_Record):
    """``count`` of ``of`` with a 95% interval; pooled rates say how the interval was made."""

    count: int
    of: int
    rate: float
    ci_low: float
    ci_high: float
    ci_method: str | None = _optional()
    replicate_p2_5: float | None = _optional()
    replicate_p50: float | None = _optional()
    replicate_p97_5: float | None = _optional()

    @classmethod
    def of_proportion(cls, p: Proportion) -> Rate:
        return cls(p.successes, p.trials, p.rate, p.low, p.high)


@dataclass(frozen=True)
class PerImage(_Record):
    images: int
    known_images: int
    innocent_images: int
    false_positive: Rate
    false_negative: Rate


@dataclass(frozen=True)
class Accounts(_Record):
    accounts: int
    offenders: int
    innocent_flagged: Rate
    innocent_falsely_confirmed: Rate
    offenders_flagged: Rate
    offenders_detected: Rate
    days_to_detection_mean: float | None
    days_to_detection_n: int
    mean_images_per_account: float | None
    max_matches_innocent_account: int


@dataclass(frozen=True)
class ReplicateAccounts(Accounts):
    offenders_sending_known: int = 0
    days_to_detection_median: float | None = None


@dataclass(frozen=True)
class PooledAccounts(Accounts):
    accounts_per_replicate: int = 0


@dataclass(frozen=True)
class Review(_Record):
    cases_reviewed: int
    cases_confirmed: int
    cases_confirmed_wrongly: int
    cases_cleared_wrongly: int
    backlog_at_end: int
    reviewer_hours: float


@dataclass(frozen=True)
class Evasion(_Record):
    images_attacked: int
    evaded: Rate
    min_distance: int
    min_ssim: float
    max_queries: int


@dataclass(frozen=True)
class Collision(_Record):
    crafted_images_sent: int
    crafted_images_matching: Rate
    targets_flagged: Rate
    max_queries: int
    min_ssim: float


@dataclass(frozen=True)
class Poisoning(_Record):
    poison_entries: int  # per replicate (each replicate poisons its own database the same way)
    database_entries: int
    target_images_sent: int
    target_images_matching: Rate
    holders_revealed: Rate


@dataclass(frozen=True)
class Attacks(_Record):
    """Outcomes of the scenario's attacks; a section is ``None`` when its attack is off."""

    evasion: Evasion | None = _optional()
    collision: Collision | None = _optional()
    poisoning: Poisoning | None = _optional()

    def __bool__(self) -> bool:
        return any(a is not None for a in (self.evasion, self.collision, self.poisoning))


@dataclass(frozen=True)
class PooledLeakage(_Record):
    """One leakage feature over replicates: mean advantages, the largest p-value."""

    feature: str
    scope: str
    advantage: float | None
    chance_advantage: float | None
    p_value: float
    mutual_information_bits: float | None


@dataclass(frozen=True)
class Costs(_Record):
    """Median per-operation costs (faithful path) or ``None`` (statistical path, which simulates none)."""

    client_hash_ms_per_image: float | None
    client_voucher_ms_per_image: float | None
    server_ingest_ms_per_voucher: float | None
    voucher_bytes_mean: float | None
    attachment_bytes_mean: float | None
    envelope_bytes_mean: float | None
    blob_bytes_mean: float | None
    voucher_bytes_per_message: float | None
    hash_cache_hits: float | None
    timing_note: str
    simulation_wall_s: float | None = _optional()

    def numbers(self) -> dict[str, float | None]:
        """Every cost but the note, by name (the costs table)."""
        return {k: v for k, v in self.to_dict().items() if k != "timing_note"}


@dataclass(frozen=True)
class RunMetrics(_Record):
    """One replicate's metrics, from either engine.

    ``leakage_audit`` rows are the audit battery's rows (see
    ``e2escan.audit.distinguishers.FamilyResult.as_row``) on the run's own
    ServerView; the faithful path only. ``model`` holds the statistical
    path's model quantities; ``attacks`` the faithful path's attack outcomes.
    """

    per_image: PerImage
    accounts: ReplicateAccounts
    review: Review
    leakage: tuple[LeakageEstimate, ...]
    leakage_test: MaxFeatureTest | None
    threshold: int | None
    database_size: int
    attacks: Attacks | None = _optional()
    leakage_audit: tuple[dict[str, Any], ...] | None = _optional()
    model: dict[str, Any] | None = _optional()


@dataclass(frozen=True)
class PooledMetrics(_Record):
    """Metrics pooled over replicates: counts summed, rates with between-replicate intervals."""

    per_image: PerImage
    accounts: PooledAccounts
    review: Review
    threshold: int | None
    database_size: int
    leakage: tuple[PooledLeakage, ...]
    leakage_audit: tuple[dict[str, Any], ...]
    leakage_test: tuple[MaxFeatureTest | None, ...]
    model: dict[str, Any] | None = _optional()
    attacks: Attacks | None = _optional()


@dataclass(frozen=True)
class ReplicateSummary(_Record):
    """One replicate as ``runs/rep-NNN/summary.json`` holds it."""

    replicate: int
    engine: str
    metrics: RunMetrics
    costs: Costs
    daily: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class RunSummary(_Record):
    """A run pooled over its replicates, as the results folder's ``summary.json`` holds it."""

    scenario: str
    description: str
    seed: int
    replicates: int
    hasher: str
    protocol: str
    protocol_params: dict[str, Any]  # every value, defaults included
    protocol_params_set: dict[str, Any]  # those that differ from the protocol's defaults (the table's heading)
    engine: str
    metrics: PooledMetrics
    costs: Costs
    provenance_version: str | None = None
    provenance_git_commit: str | None = None
