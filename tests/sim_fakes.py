"""A transparent matching protocol for simulator tests: the hash travels in the clear.

``PROTOCOL`` subclasses the :class:`~e2escan.protocols.Protocol` ABC, so the
simulator cannot tell it from a registered protocol; its behaviour is simple
enough to compute expected metrics by hand. With ``synthetic_probability > 0``
the client sends a *synthetic* voucher in place of a real one with that
probability, as tpsi-ad does: the server never counts it toward the threshold
(here it is marked in the clear, since the fake hides nothing).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from e2escan.hashing import HashArray, PerceptualHash
from e2escan.protocols import LeakageProfile, MatchServer, Protocol, ProtocolParams, Scanner, StatisticalModel
from e2escan.protocols.base import Reveal as _Reveal

LEAKAGE = LeakageProfile(
    server_voucher=("is_match", "length"),
    server_account=("vouchers",),
    descriptions={"is_match": "match", "length": "voucher length", "vouchers": "vouchers received"},
)


@dataclass(frozen=True)
class Params(ProtocolParams):
    PROTOCOL: ClassVar[str] = "fake"

    threshold: int = 2
    radius: int = 0
    synthetic_probability: float = 0.0
    synthetic_capacity: int = 0
    dedup: str = "none"  # every copy is a fresh voucher with its own synthetic coin


@dataclass(frozen=True)
class Reveal:
    account: str
    matches: tuple[bytes, ...]
    over_threshold: bool

    @property
    def match_indices(self) -> tuple[int, ...]:
        return tuple(range(len(self.matches)))


class Server(MatchServer):
    def __init__(self, database: HashArray, params: Params) -> None:
        self.db = database
        self.params = params
        self.matched: dict[str, list[bytes]] = {}
        self.records: dict[str, list[dict]] = {}

    def ingest(self, account: str, voucher: bytes) -> dict:
        synthetic, bits = struct.unpack(">BH", voucher[:3])
        h = PerceptualHash(bits, voucher[3 : 3 + bits // 8])
        payload = voucher[3 + bits // 8 :]
        hit = int(self.db.distances_to(h).min()) <= self.params.radius and not synthetic
        if hit:
            self.matched.setdefault(account, []).append(payload)
        self.records.setdefault(account, []).append({"is_match": hit, "length": len(voucher)})
        return self.records[account][-1]

    def observed(self, account: str):
        return tuple(self.records.get(account, ()))

    def account_view(self, account: str):
        return {"vouchers": len(self.records.get(account, ()))}

    def accounts(self) -> tuple[str, ...]:
        return tuple(self.records)

    def reveal(self, account: str) -> Reveal:  # type: ignore[override]
        m = self.matched.get(account, [])
        over = len(m) >= self.params.threshold
        return Reveal(account, tuple(m) if over else (), over)


class Client(Scanner):
    def __init__(self, params: Params) -> None:
        self.params = params
        self.last_was_synthetic = False
        self.coin_source: Callable[[bytes], int] | None = None  # set by seed_client: seeded coins
        self._synthetic = 0

    def scan(self, h: PerceptualHash, payload: bytes = b"") -> bytes:
        p = self.params
        coin = self.coin_source(h.data) if self.coin_source is not None else int.from_bytes(os.urandom(8), "big")
        self.last_was_synthetic = (coin < p.synthetic_probability * 2**64 and self._synthetic < p.synthetic_capacity)
        self._synthetic += self.last_was_synthetic
        return struct.pack(">BH", self.last_was_synthetic, h.bits) + h.data + payload


class FakeProtocol(Protocol):
    name = "fake"
    summary = "the hash in the clear (simulator tests)"
    Params = Params
    LEAKAGE = LEAKAGE

    def server_setup(self, database: HashArray, params: ProtocolParams, rng: Any = None) -> tuple[Server, bytes]:
        assert isinstance(params, Params)
        return Server(database, params), b""

    def client(self, public: bytes, params: ProtocolParams) -> Client:
        assert isinstance(params, Params)
        return Client(params)

    def match_radius(self, params: ProtocolParams) -> int:
        assert isinstance(params, Params)
        return params.radius

    def threshold(self, params: ProtocolParams) -> int:
        assert isinstance(params, Params)
        return params.threshold

    def statistical_model(self, params: ProtocolParams) -> StatisticalModel:
        assert isinstance(params, Params)
        return StatisticalModel(radius=params.radius, threshold=params.threshold,
                                synthetic_probability=params.synthetic_probability,
                                synthetic_capacity=params.synthetic_capacity, reveals_each_match=True)

    def seed_client(self, client: Scanner, rng: Any, params: ProtocolParams) -> None:
        from e2escan.protocols.tpsi_ad import seeded_coin

        assert isinstance(client, Client)
        client.coin_source = seeded_coin(rng, per_hash=False)


PROTOCOL = FakeProtocol()
# Module-level names kept for tests that build pieces by hand.
name = PROTOCOL.name
_ = _Reveal
