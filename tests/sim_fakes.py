"""A transparent matching protocol for simulator tests: the hash travels in the clear.

It follows the protocol interface exactly, so the simulator cannot tell it
from a registered protocol; its behaviour is simple enough to compute expected
metrics by hand.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from e2escan.hashing import HashArray, PerceptualHash
from e2escan.errors import ProtocolError
from e2escan.protocols import LeakageProfile

name = "fake"
LEAKAGE = LeakageProfile(
    server_voucher=("is_match", "length"),
    server_account=("vouchers",),
    descriptions={"is_match": "match", "length": "voucher length", "vouchers": "vouchers received"},
)


@dataclass(frozen=True)
class Params:
    threshold: int = 2
    radius: int = 0


@dataclass(frozen=True)
class Reveal:
    account: str
    matches: tuple[bytes, ...]
    over_threshold: bool

    @property
    def match_indices(self) -> tuple[int, ...]:
        return tuple(range(len(self.matches)))


class Server:
    def __init__(self, database: HashArray, params: Params) -> None:
        self.db = database
        self.params = params
        self.matched: dict[str, list[bytes]] = {}
        self.records: dict[str, list[dict]] = {}

    def ingest(self, account: str, voucher: bytes) -> bytes:
        bits, = struct.unpack(">H", voucher[:2])
        h = PerceptualHash(bits, voucher[2 : 2 + bits // 8])
        payload = voucher[2 + bits // 8 :]
        hit = int(self.db.distances_to(h).min()) <= self.params.radius
        if hit:
            self.matched.setdefault(account, []).append(payload)
        self.records.setdefault(account, []).append({"is_match": hit, "length": len(voucher)})
        return self.records[account][-1]

    def observed(self, account: str):
        return tuple(self.records.get(account, ()))

    def account_view(self, account: str):
        return {"vouchers": len(self.records.get(account, ()))}

    def reveal(self, account: str) -> Reveal:
        m = self.matched.get(account, [])
        over = len(m) >= self.params.threshold
        return Reveal(account, tuple(m) if over else (), over)


class Client:
    last_was_synthetic = False

    def scan(self, h: PerceptualHash, payload: bytes = b"") -> bytes:
        return struct.pack(">H", h.bits) + h.data + payload


def server_setup(database: HashArray, params: Params):
    return Server(database, params), b""


def client(public: bytes, params: Params) -> Client:
    return Client()


def plaintext_matcher(database: HashArray, params: Params):
    def match(h: PerceptualHash) -> tuple[bool, int]:
        d = int(database.distances_to(h).min())
        return d <= params.radius, d

    return match


def expected_openings(database: HashArray, params: Params):
    return lambda h, matched: int(matched)


def threshold(params: Params) -> int:
    return params.threshold


def counts_copies_once(params: Params) -> bool:
    return False


def ideal_functionality(params: Params, hash_bits: int):
    raise ProtocolError("fake: declares no ideal functionality")
