"""Human review of flagged accounts: a FIFO queue with a daily capacity and an accuracy."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .scenario import Review


@dataclass(frozen=True, slots=True)
class Case:
    """One flagged account waiting for review, with the image uids revealed to the server."""

    account: int
    flagged_day: int
    revealed_uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    case: Case
    day: int
    confirmed: bool
    truly_offending: bool


@dataclass
class ReviewQueue:
    """Reviewers see the revealed visual derivatives of a case and confirm or clear it.

    A case is truly offending when at least one revealed image is a known
    image; the reviewer gets it right with probability ``accuracy``. At most
    ``capacity_per_day`` cases are decided per day, oldest first.
    """

    cfg: Review
    rng: np.random.Generator
    pending: deque[Case] = field(default_factory=deque)
    decisions: list[Decision] = field(default_factory=list)

    def submit(self, case: Case) -> None:
        self.pending.append(case)

    def work_day(self, day: int, known_uids: set[int]) -> list[Decision]:
        today = []
        for _ in range(min(self.cfg.capacity_per_day, len(self.pending))):
            case = self.pending.popleft()
            truth = any(uid in known_uids for uid in case.revealed_uids)
            correct = self.rng.random() < self.cfg.accuracy
            today.append(Decision(case, day, truth if correct else not truth, truth))
        self.decisions.extend(today)
        return today

    @property
    def backlog(self) -> int:
        return len(self.pending)
