"""``plaintext``: the device sends its hash and payload in the clear (today's server-side scanning).

The baseline every other variant is measured against: the server matches the
hash against its database within Hamming radius ``radius`` and sees every
hash and every payload. Spec: ``protocols/plaintext.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..crypto.codec import FieldSpec, Schema, read_u32, u32
from ..errors import ProtocolError, VoucherError
from ..hashing import HammingIndex, HashArray, PerceptualHash
from .base import (
    LeakageProfile,
    PerVoucherMatchServer,
    Protocol,
    ProtocolParams,
    Scanner,
    StatisticalModel,
    VoucherReplayError,
    WireSizes,
    check_account,
    check_database,
    check_hash,
    check_int,
    frozen_record,
    unique_rows,
    voucher_digest,
)
from .ideal import Fresh, IdealFunctionality, VoucherTruth


@dataclass(frozen=True)
class PlaintextParams(ProtocolParams):
    """``radius``: largest Hamming distance that counts as a match; ``payload_size``: largest payload."""

    PROTOCOL = "plaintext"

    radius: int = 0
    payload_size: int = 4096

    def __post_init__(self) -> None:
        check_int("plaintext.radius", self.radius, 0, 1024)
        check_int("plaintext.payload_size", self.payload_size, 0, 2**24)


PUBLIC = Schema("plaintext public parameters", b"E2PP", 1, (FieldSpec("fingerprint", 32), FieldSpec("bits", 4)))


def _voucher_schema(bits: int, payload_size: int) -> Schema:
    def payload_len(f: Mapping[str, bytes]) -> int:
        n = read_u32(f["payload_length"])
        if n > payload_size:
            raise ValueError(f"payload_length {n} exceeds payload_size {payload_size}")
        return n

    return Schema(
        "plaintext voucher",
        b"E2PV",
        1,
        (FieldSpec("hash", bits // 8), FieldSpec("payload_length", 4), FieldSpec("payload", payload_len)),
        error=VoucherError,
    )


LEAKAGE = LeakageProfile(
    server_voucher=("index", "length", "hash", "payload", "is_match", "nearest_distance"),
    server_account=("vouchers", "matches"),
    client=("hash_bits",),
    descriptions={
        "index": "position of the voucher among the account's vouchers",
        "length": "voucher length in bytes",
        "hash": "the image's perceptual hash, in the clear",
        "payload": "the payload (visual derivative), in the clear, matching or not",
        "is_match": "whether the hash is within the radius of a database hash",
        "nearest_distance": "Hamming distance to the nearest database hash",
        "vouchers": "number of vouchers received for the account",
        "matches": "number of matching vouchers",
        "hash_bits": "length of the database's hashes (the device learns nothing else)",
    },
)


class PlaintextScanner(Scanner):
    def __init__(self, public: bytes, params: PlaintextParams) -> None:
        decoded = PUBLIC.decode(public)
        if decoded["fingerprint"] != params.fingerprint():
            raise ProtocolError("plaintext: the public parameters were made for different parameters")
        self.bits = read_u32(decoded["bits"])
        self.params = params
        self._schema = _voucher_schema(self.bits, params.payload_size)

    def scan(self, phash: PerceptualHash, payload: bytes = b"") -> bytes:
        data = check_hash(phash, self.bits, "plaintext.scan")
        if len(payload) > self.params.payload_size:
            raise ProtocolError(
                f"plaintext.scan: payload of {len(payload)} bytes exceeds payload_size = {self.params.payload_size}"
            )
        return self._schema.encode({"hash": data, "payload_length": u32(len(payload)), "payload": bytes(payload)})


class PlaintextServer(PerVoucherMatchServer):
    def __init__(self, database: HashArray, params: PlaintextParams) -> None:
        self.params = params
        self.bits = database.bits
        self._db = HashArray.frombytes(b"".join(unique_rows(database)), database.bits)
        self._exact = {row.tobytes() for row in self._db.data}
        self._index = HammingIndex(self._db, threads=1)
        self._schema = _voucher_schema(self.bits, params.payload_size)
        super().__init__()

    def _nearest(self, data: bytes) -> int:
        """Distance to the nearest database hash (:class:`~e2escan.hashing.HammingIndex`, exact)."""
        if data in self._exact:
            return 0
        return int(self._index.knn(PerceptualHash(self.bits, data), 1)[1][0, 0])

    def ingest(self, account: str, voucher: bytes) -> Mapping[str, object]:
        check_account(account)
        digest = voucher_digest(voucher, "plaintext")
        decoded = self._schema.decode(voucher)
        if digest in self._seen:
            raise VoucherReplayError("plaintext voucher: this exact voucher was ingested before (replay)")
        nearest = self._nearest(decoded["hash"])
        records = self._records.setdefault(account, [])
        record = frozen_record(
            index=len(records),
            length=len(voucher),
            hash=decoded["hash"],
            payload=decoded["payload"],
            is_match=nearest <= self.params.radius,
            nearest_distance=nearest,
        )
        records.append(record)
        self._seen.add(digest)
        return record


class PlaintextProtocol(Protocol):
    name = "plaintext"
    summary = "hash and payload sent in the clear; server matches within a Hamming radius (baseline)"
    Params = PlaintextParams
    LEAKAGE = LEAKAGE

    def server_setup(self, database: HashArray, params: ProtocolParams, rng: Any = None) -> tuple[PlaintextServer, bytes]:
        self.check_params(params)
        assert isinstance(params, PlaintextParams)
        check_database(database, "plaintext.server_setup")
        server = PlaintextServer(database, params)
        public = PUBLIC.encode({"fingerprint": params.fingerprint(), "bits": u32(database.bits)})
        return server, public

    def match_radius(self, params: ProtocolParams) -> int:
        assert isinstance(params, PlaintextParams)
        return params.radius

    def payload_size(self, params: ProtocolParams) -> int:
        assert isinstance(params, PlaintextParams)
        return params.payload_size

    def statistical_model(self, params: ProtocolParams) -> StatisticalModel:
        self.check_params(params)
        return StatisticalModel(radius=self.match_radius(params), threshold=1, reveals_each_match=True)

    def wire_sizes(self, params: ProtocolParams, database_hashes: int, bits: int = 64,
                   payload_bytes: int | None = None) -> WireSizes:
        from ..crypto.codec import FIELD_HEADER_BYTES, HEADER_BYTES

        assert isinstance(params, PlaintextParams)
        payload = params.payload_size if payload_bytes is None else payload_bytes
        public = HEADER_BYTES + 2 * FIELD_HEADER_BYTES + 32 + 4
        voucher = HEADER_BYTES + 3 * FIELD_HEADER_BYTES + bits // 8 + 4 + payload
        return WireSizes(0, 0, public, voucher)

    def ideal_functionality(self, params: ProtocolParams, hash_bits: int) -> IdealFunctionality:
        """Everything is declared: the voucher is the hash and the payload in the clear, and the server's match."""
        self.check_params(params)
        assert isinstance(params, PlaintextParams)
        schema = _voucher_schema(hash_bits, params.payload_size)

        def voucher(truth: VoucherTruth, fresh: Fresh) -> bytes:
            return schema.encode({"hash": truth.hash, "payload_length": u32(len(truth.payload)), "payload": truth.payload})

        return IdealFunctionality(
            voucher=voucher,
            record={
                "index": lambda d: d.truth.index,
                "length": lambda d: len(d.voucher),
                "hash": lambda d: d.truth.hash,
                "payload": lambda d: d.truth.payload,
                "is_match": lambda d: d.truth.distance <= params.radius,
                "nearest_distance": lambda d: d.truth.distance,
            },
            account={
                "vouchers": lambda records, truths: len(records),
                "matches": lambda records, truths: sum(bool(r["is_match"]) for r in records),
            },
            schema=schema,
        )

    def client(self, public: bytes, params: ProtocolParams) -> PlaintextScanner:
        self.check_params(params)
        assert isinstance(params, PlaintextParams)
        return PlaintextScanner(public, params)


def plaintext_matches(database: HashArray, queries: HashArray, radius: int) -> np.ndarray:
    """The oracle: ``True`` where a query is within ``radius`` of some database hash (brute force)."""
    out = np.zeros(len(queries), dtype=bool)
    for i, q in enumerate(queries):
        out[i] = bool(database.distances_to(q).min() <= radius)
    return out
