"""The same measurement with the real protocol code: protocols under test, and accounts run through them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...hashing import HashArray
from ...protocols import Protocol, ProtocolParams, get_protocol
from ..protocol_leakage import record_opened

__all__ = ["OTHER_MARK", "TARGET_MARK", "ProtocolPoisoningRun", "ProtocolUnderTest", "run_protocol_poisoning"]

TARGET_MARK = b"T"  # payload prefix of a target copy: what a reviewer would recognise
OTHER_MARK = b"O"


@dataclass(frozen=True)
class ProtocolUnderTest:
    """A protocol configuration in the experiment: a label, a registered protocol name, its parameters."""

    label: str
    protocol: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self) -> tuple[Protocol, ProtocolParams]:
        """The registered protocol and its parameters; :class:`ConfigError` naming the label for bad parameters."""
        proto = get_protocol(self.protocol)
        try:
            params = proto.Params(**dict(self.params))
        except TypeError as exc:
            raise ConfigError(f"protocol {self.label!r}: {exc}") from None
        return proto, params


@dataclass(frozen=True)
class ProtocolPoisoningRun:
    """Per account: what the server learnt. ``holder[i]``: account ``i`` holds target copies.

    ``revealed_target``: a decrypted payload is a target copy (the adversary
    learns for certain that the account holds the target). ``revealed_any``: any
    payload was decrypted. ``opened``: vouchers whose outer layer opened (for
    variants without one: vouchers that matched). ``target_matches``: target
    copies that matched under the protocol's own rule (its ``plaintext_matcher``:
    ground truth, known to the simulation only).
    """

    holder: np.ndarray
    revealed_target: np.ndarray
    revealed_any: np.ndarray
    opened: np.ndarray
    vouchers: np.ndarray
    target_matches: np.ndarray


def run_protocol_poisoning(
    protocol: Protocol,
    params: ProtocolParams,
    database: HashArray,
    accounts: Sequence[tuple[HashArray, np.ndarray]],
    rng: np.random.Generator,
) -> ProtocolPoisoningRun:
    """Set the protocol up on ``database``; every account scans its images; read what the server learnt.

    ``accounts[i] = (hashes, is_target)``: the account's images in sending order
    and which of them are copies of the target. Each account is a fresh device
    (its own C-Init); its synthetic-voucher coin, if the protocol has one, is
    :func:`~e2escan.protocols.tpsi_ad.seeded_coin` from ``rng`` so outcomes are reproducible.

    Set beside the holder model's value for the same accounts, the outcome
    checks the protocol implementation. Which copies the accounts hold is the
    caller's model (:func:`~e2escan.attacks.poisoning.holders.draw_holder_copies` in the experiment), so agreement
    says nothing about whether that model describes real holders.
    """
    server, public = protocol.server_setup(database, params)
    matcher = protocol.plaintext_matcher(database, params)
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
        opened[i] = sum(record_opened(r) for r in server.observed(name))
        vouchers[i] = len(hashes)
        if is_target.any():
            target_matches[i] = sum(matcher(h)[0] for h in hashes[is_target])
    return ProtocolPoisoningRun(out["holder"], out["revealed_target"], out["revealed_any"], opened, vouchers, target_matches)
