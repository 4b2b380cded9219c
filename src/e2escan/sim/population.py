"""Accounts, who is an offender, and who talks to whom."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenario import Population


@dataclass(frozen=True)
class PopulationModel:
    ids: tuple[str, ...]
    offender: np.ndarray  # bool, one per account
    contacts: tuple[np.ndarray, ...]  # sorted neighbour indices per account

    def __len__(self) -> int:
        return len(self.ids)


def account_ids(n: int) -> tuple[str, ...]:
    width = max(4, len(str(n - 1)))
    return tuple(f"acct-{i:0{width}d}" for i in range(n))


def contact_graph(cfg: Population, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Undirected contact graph as neighbour lists; every account has at least one contact."""
    n = cfg.accounts
    adj: list[set[int]] = [set() for _ in range(n)]

    def link(a: int, b: int) -> None:
        if a != b:
            adj[a].add(b)
            adj[b].add(a)

    if cfg.contact_graph == "complete":
        return tuple(np.array([j for j in range(n) if j != i], dtype=np.int64) for i in range(n))
    if cfg.contact_graph == "small-world":
        # Watts-Strogatz: a ring lattice with k/2 neighbours on each side, each edge rewired with probability p.
        half = max(1, cfg.mean_contacts // 2)
        for i in range(n):
            for d in range(1, half + 1):
                j = (i + d) % n
                if rng.random() < cfg.rewire:
                    j = int(rng.integers(n))
                    while j == i or j in adj[i]:
                        j = int(rng.integers(n))
                link(i, j)
    else:  # random (Erdos-Renyi with the requested mean degree)
        p = cfg.mean_contacts / (n - 1)
        iu, ju = np.triu_indices(n, k=1)
        keep = rng.random(iu.size) < p
        for a, b in zip(iu[keep], ju[keep]):
            link(int(a), int(b))
    for i in range(n):
        if not adj[i]:
            j = int(rng.integers(n - 1))
            link(i, j if j < i else j + 1)
    return tuple(np.array(sorted(s), dtype=np.int64) for s in adj)


def build_population(cfg: Population, rng: np.random.Generator) -> PopulationModel:
    n = cfg.accounts
    offender = np.zeros(n, dtype=bool)
    k = int(round(cfg.offender_share * n))
    offender[rng.choice(n, size=k, replace=False)] = True
    return PopulationModel(account_ids(n), offender, contact_graph(cfg, rng))
