"""Who sends what to whom, day by day: the plan the faithful and statistical paths both follow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .population import PopulationModel
from .scenario import Scenario

SECONDS_PER_DAY = 86_400.0

KNOWN = "known"  # an image from the known-image database (after transformation)
POPULAR = "popular"  # a forward of a popular innocent image
FRESH = "fresh"  # an innocent image seen nowhere else
CRAFTED = "crafted"  # an innocent-looking image crafted to collide with a database hash (an attack)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Which image a message carries, and how it was transformed before sending."""

    uid: int  # unique per sent image instance
    kind: str
    index: int  # index in the known set, the popular pool, or the fresh sequence
    transform: str
    transform_seed: int

    @property
    def known(self) -> bool:
        return self.kind == KNOWN


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    day: int
    at: float  # seconds since the start of the run
    sender: int
    recipients: tuple[int, ...]
    image: ImageRef | None


class TrafficPlanner:
    """Draws each day's messages from the scenario's traffic and content models."""

    def __init__(self, scenario: Scenario, population: PopulationModel, rng: np.random.Generator) -> None:
        self.s = scenario
        self.pop = population
        self.rng = rng
        weights = np.array([t.weight for t in scenario.content.transforms], dtype=float)
        self.transform_specs = [t.spec for t in scenario.content.transforms]
        self.transform_p = weights / weights.sum()
        ranks = np.arange(1, scenario.traffic.popular_images + 1, dtype=float)
        pop_w = ranks ** -scenario.traffic.popularity_exponent
        self.popular_p = pop_w / pop_w.sum()
        self.next_uid = 0
        self.next_fresh = 0

    def day(self, day: int) -> list[PlannedMessage]:
        s, pop, rng = self.s, self.pop, self.rng
        rate = np.full(len(pop), s.traffic.messages_per_day)
        rate[pop.offender] *= s.traffic.offender_activity
        counts = rng.poisson(rate) if s.traffic.distribution == "poisson" else np.rint(rate).astype(np.int64)
        senders = np.repeat(np.arange(len(pop)), counts)
        times = day * SECONDS_PER_DAY + rng.uniform(0.0, SECONDS_PER_DAY, senders.size)
        order = np.argsort(times, kind="stable")
        out = []
        for i in order:
            sender = int(senders[i])
            out.append(PlannedMessage(day, float(times[i]), sender, self._recipients(sender), self._image(sender)))
        return out

    def _recipients(self, sender: int) -> tuple[int, ...]:
        contacts = self.pop.contacts[sender]
        cfg = self.s.population
        if self.rng.random() < cfg.group_share and contacts.size > 1:
            size = int(self.rng.integers(cfg.group_size[0], cfg.group_size[1] + 1))
            size = min(size, contacts.size)
            return tuple(int(c) for c in np.sort(self.rng.choice(contacts, size=size, replace=False)))
        return (int(contacts[self.rng.integers(contacts.size)]),)

    def _image(self, sender: int) -> ImageRef | None:
        rng, s = self.rng, self.s
        if rng.random() >= s.traffic.image_share:
            return None
        if self.pop.offender[sender] and rng.random() < s.content.offender_known_share:
            kind, index = KNOWN, int(rng.integers(s.content.database_size))
        elif rng.random() < s.traffic.forward_share:
            kind, index = POPULAR, int(rng.choice(self.popular_p.size, p=self.popular_p))
        else:
            kind, index = FRESH, self.next_fresh
            self.next_fresh += 1
        t = int(rng.choice(self.transform_p.size, p=self.transform_p))
        ref = ImageRef(self.next_uid, kind, index, self.transform_specs[t], int(rng.integers(2**63)))
        self.next_uid += 1
        return ref
