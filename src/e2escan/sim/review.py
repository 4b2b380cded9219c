"""Human review of flagged accounts: a FIFO queue with a daily capacity and an accuracy.

The review model, the same on both simulation paths: **one case per
account**, opened on the day the account first crosses the threshold and
queued first in, first out; at most ``capacity_per_day`` cases are decided a
day, each correctly with probability ``accuracy``. Images the server reveals
for an account whose case is still waiting join that case (the reviewer sees
them); images revealed after the decision open no new case. Reviewer hours
are cases decided times ``minutes_per_case``. (The faithful path used to open
a new case every day an account revealed more images, and the statistical
path one per account, so their reviewer hours disagreed by about 45%.)
"""

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
    pending: deque[int] = field(default_factory=deque)  # accounts, oldest case first
    cases: dict[int, Case] = field(default_factory=dict)  # account -> its waiting case
    decided: set[int] = field(default_factory=set)
    decisions: list[Decision] = field(default_factory=list)

    def submit(self, case: Case) -> bool:
        """Open the account's case, or add the revealed images to its waiting case; False once decided."""
        if case.account in self.decided:
            return False
        waiting = self.cases.get(case.account)
        if waiting is None:
            self.cases[case.account] = case
            self.pending.append(case.account)
        else:
            uids = tuple(sorted(set(waiting.revealed_uids) | set(case.revealed_uids)))
            self.cases[case.account] = Case(case.account, waiting.flagged_day, uids)
        return True

    def work_day(self, day: int, known_uids: set[int]) -> list[Decision]:
        today = []
        for _ in range(min(self.cfg.capacity_per_day, len(self.pending))):
            account = self.pending.popleft()
            case = self.cases.pop(account)
            self.decided.add(account)
            truth = any(uid in known_uids for uid in case.revealed_uids)
            correct = self.rng.random() < self.cfg.accuracy
            today.append(Decision(case, day, truth if correct else not truth, truth))
        self.decisions.extend(today)
        return today

    @property
    def backlog(self) -> int:
        return len(self.pending)
