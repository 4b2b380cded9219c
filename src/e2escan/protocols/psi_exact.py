"""``psi-exact``: one-message DH-OPRF membership test on the exact hash; the server learns the result.

Design (spec: ``protocols/psi-exact.md``). The server publishes the blinded
cuckoo table of S-Init (:mod:`.blinded_table`). For an image hash ``y`` the
device blinds ``H(y)`` as in RFC 9497's ``Blind`` step, ``Q = beta * H(y)``,
and for each cell ``w`` that could hold ``y`` computes ``S_w = beta * P_w``.
The server's ``BlindEvaluate`` is ``Z = alpha * Q``; if ``y = T[w]`` then
``S_w = beta * alpha * H(y) = Z``. The device encrypts a fresh ``rkey`` under
``H'(S_w)`` for every candidate cell and the payload under ``rkey``; the
server opens exactly the vouchers whose hash is in the database.

This is the PSI-AD warm-up of the Apple PSI System without the threshold,
with plain multiplicative blinding instead of the DH random self-reduction
(``gamma = 0``): one shared ``Q`` and one multiplication per candidate cell
instead of three, at the price of resting on CDH in the random-oracle model
rather than on the self-reduction's information-theoretic hiding for
non-matches. Who learns what: the server learns, per voucher, match or no
match and the payload of matches; the device learns nothing (it sends one
message and gets no answer) and cannot test membership offline (that needs
``alpha``). Publishing ``alpha * H(x)`` for the set *with* an evaluation
oracle (OpenMined's client-learns PSI) would let devices test hashes; here
the only oracle is the server's decryption, and its result stays with the
server.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..crypto import group
from ..crypto.codec import Decoded, FieldSpec, Schema
from ..errors import AuthenticationError, DecodeError, InvalidPointError, VoucherError
from ..hashing import HashArray, PerceptualHash
from .base import (
    LeakageProfile,
    PerVoucherMatchServer,
    Protocol,
    ProtocolParams,
    Scanner,
    StatisticalModel,
    VoucherPointError,
    VoucherReplayError,
    WireSizes,
    check_account,
    check_database,
    check_float,
    check_hash,
    check_int,
    check_voucher,
    frozen_record,
    unique_rows,
)
from .blinded_table import BlindedTable, ServerTableState, build_blinded_table
from .ideal import (
    IdealFunctionality,
    fresh_fields,
    random_bytes_field,
    random_points_field,
)
from .sealing import (
    KEY_BYTES,
    ONCE_OVERHEAD,
    open_once,
    pad_payload,
    seal_once,
    unpad_payload,
)

NAME = "psi-exact"
PUBLIC_MAGIC = b"E2XP"


@dataclass(frozen=True)
class PsiExactParams(ProtocolParams):
    """Cuckoo shape (``cuckoo_hashes`` functions, ``cuckoo_load`` items per bucket, ``stash_size``) and ``payload_size``."""

    PROTOCOL = NAME

    payload_size: int = 256
    cuckoo_hashes: int = 2
    cuckoo_load: float = 0.45
    stash_size: int = 0

    def __post_init__(self) -> None:
        check_int(f"{NAME}.payload_size", self.payload_size, 0, 2**20)
        check_int(f"{NAME}.cuckoo_hashes", self.cuckoo_hashes, 2, 8)
        check_float(f"{NAME}.cuckoo_load", self.cuckoo_load, 0.0, 1.0, lo_open=True)
        check_int(f"{NAME}.stash_size", self.stash_size, 0, 64)

    def cells_per_probe(self) -> int:
        return self.cuckoo_hashes + self.stash_size


CT_BYTES = KEY_BYTES + ONCE_OVERHEAD


def voucher_schema(params: PsiExactParams) -> Schema:
    cells = params.cells_per_probe()
    return Schema(
        f"{NAME} voucher",
        b"E2XV",
        1,
        (
            FieldSpec("Q", group.POINT_BYTES),
            FieldSpec("ct", CT_BYTES * cells),
            FieldSpec("rct", 4 + params.payload_size + ONCE_OVERHEAD),
        ),
        error=VoucherError,
    )


LEAKAGE = LeakageProfile(
    server_voucher=("index", "length", "is_match", "payload"),
    server_account=("vouchers", "matches"),
    client=("table_size", "hash_bits", "cuckoo_layout"),
    descriptions={
        "index": "position of the voucher among the account's vouchers",
        "length": "voucher length in bytes (the same for every voucher of a parameter set)",
        "is_match": "whether the voucher's hash is in the database (exact equality)",
        "payload": "the decrypted payload, for matching vouchers only (None otherwise)",
        "vouchers": "number of vouchers received for the account",
        "matches": "number of matching vouchers",
        "table_size": "number of cells of the blinded table (an upper bound on the database size)",
        "hash_bits": "length of the database's hashes",
        "cuckoo_layout": "the public cuckoo hash functions (which cells a hash would occupy)",
    },
)


class PsiExactScanner(Scanner):
    def __init__(self, public: bytes, params: PsiExactParams) -> None:
        self.params = params
        self.table = BlindedTable.decode(NAME, PUBLIC_MAGIC, public, params.fingerprint())
        self._schema = voucher_schema(params)
        self._ctx = self.table.context

    def scan(self, phash: PerceptualHash, payload: bytes = b"") -> bytes:
        y = check_hash(phash, self.table.bits, f"{NAME}.scan")
        t = self.table
        beta = group.random_scalar()
        q = group.scalar_mult(beta, group.hash_to_group(y, t.h2g_dst), "H(y)")
        rkey = os.urandom(KEY_BYTES)
        cts = []
        seen: set[int] = set()
        for cell in t.layout.candidate_cells(y):
            if cell in seen:  # two cuckoo functions chose the same bucket: one opening ciphertext is enough
                cts.append(seal_once(os.urandom(KEY_BYTES), rkey, self._ctx))
                continue
            seen.add(cell)
            s = group.scalar_mult(beta, t.entry(cell), f"{NAME} public table cell {cell}")
            cts.append(seal_once(t.key_from_element(s), rkey, self._ctx))
        # Shuffled so the position of the ciphertext that opens says nothing about which
        # cuckoo function placed the database entry.
        secrets.SystemRandom().shuffle(cts)
        rct = seal_once(rkey, pad_payload(payload, self.params.payload_size), self._ctx)
        return self._schema.encode({"Q": q, "ct": b"".join(cts), "rct": rct})


class PsiExactServer(PerVoucherMatchServer):
    def __init__(self, state: ServerTableState, params: PsiExactParams) -> None:
        self.params = params
        self._alpha = state.alpha
        self._public = state.public
        self._ctx = state.public.context
        self._schema = voucher_schema(params)
        super().__init__()

    def _process(self, d: Decoded) -> bytes | None:
        try:
            z = group.scalar_mult(self._alpha, d["Q"], f"{NAME} voucher field 'Q' at byte offset {d.offsets['Q']}")
        except InvalidPointError as exc:
            raise VoucherPointError(str(exc)) from exc
        key = self._public.key_from_element(z)
        cts = d["ct"]
        for j in range(len(cts) // CT_BYTES):
            try:
                rkey = open_once(key, cts[j * CT_BYTES : (j + 1) * CT_BYTES], self._ctx, "ct")
            except AuthenticationError:
                continue
            try:
                padded = open_once(rkey, d["rct"], self._ctx, "rct")
                return unpad_payload(padded, self.params.payload_size)
            except (AuthenticationError, DecodeError) as exc:
                raise VoucherError(
                    f"{NAME} voucher field 'rct' at byte offset {d.offsets['rct']}: does not open under the key "
                    "carried by 'ct' (inconsistent voucher)"
                ) from exc
        return None

    def ingest(self, account: str, voucher: bytes) -> Mapping[str, object]:
        check_account(account)
        decoded = self._schema.decode(check_voucher(voucher, NAME))
        # Keyed on the blinded point Q (fresh per voucher), so reordered ciphertexts do not make a new voucher.
        q = decoded["Q"]
        if q in self._seen:
            raise VoucherReplayError(f"{NAME} voucher: its point Q was ingested before (a replay, possibly reordered)")
        payload = self._process(decoded)
        records = self._records.setdefault(account, [])
        record = frozen_record(index=len(records), length=len(voucher), is_match=payload is not None, payload=payload)
        records.append(record)
        self._seen.add(q)
        return record


class PsiExactProtocol(Protocol):
    name = NAME
    summary = "one-message DH-OPRF membership test on the exact hash; server learns match and payload"
    Params = PsiExactParams
    LEAKAGE = LEAKAGE
    PUBLIC_MAGIC = PUBLIC_MAGIC

    def table_server(self, state: Any, params: ProtocolParams) -> tuple[PsiExactServer, bytes]:
        self.check_params(params)
        assert isinstance(params, PsiExactParams)
        return PsiExactServer(state, params), state.public.encode(PUBLIC_MAGIC)

    def server_setup(
        self, database: HashArray, params: ProtocolParams, rng: Any = None, *, progress: bool = False
    ) -> tuple[PsiExactServer, bytes]:
        self.check_params(params)
        assert isinstance(params, PsiExactParams)
        check_database(database, f"{NAME}.server_setup")
        state = build_blinded_table(
            NAME,
            params.fingerprint(),
            unique_rows(database),
            database.bits,
            num_hashes=params.cuckoo_hashes,
            load=params.cuckoo_load,
            stash_size=params.stash_size,
            progress=progress,
        )
        return PsiExactServer(state, params), state.public.encode(PUBLIC_MAGIC)

    def ideal_functionality(self, params: ProtocolParams, hash_bits: int) -> IdealFunctionality:
        self.check_params(params)
        assert isinstance(params, PsiExactParams)
        return ideal_functionality(params)

    def payload_size(self, params: ProtocolParams) -> int:
        assert isinstance(params, PsiExactParams)
        return params.payload_size

    def statistical_model(self, params: ProtocolParams) -> StatisticalModel:
        self.check_params(params)
        return StatisticalModel(radius=0, threshold=1, reveals_each_match=True)

    def wire_sizes(self, params: ProtocolParams, database_hashes: int, bits: int = 64,
                   payload_bytes: int | None = None) -> WireSizes:
        from .blinded_table import wire_sizes

        assert isinstance(params, PsiExactParams)
        return wire_sizes(database_hashes, params.cuckoo_load, params.stash_size, voucher_schema(params))

    def client(self, public: bytes, params: ProtocolParams) -> PsiExactScanner:
        self.check_params(params)
        assert isinstance(params, PsiExactParams)
        return PsiExactScanner(public, params)


def ideal_functionality(params: PsiExactParams) -> IdealFunctionality:
    """The server learns, per voucher, match or not and the payload of a match; the voucher bytes are random."""
    schema = voucher_schema(params)
    sizes = {"Q": group.POINT_BYTES, "ct": CT_BYTES * params.cells_per_probe(), "rct": 4 + params.payload_size + ONCE_OVERHEAD}
    return IdealFunctionality(
        voucher=fresh_fields(schema, {"Q": random_points_field, "ct": random_bytes_field, "rct": random_bytes_field}, sizes),
        record={
            "index": lambda d: d.truth.index,
            "length": lambda d: len(d.voucher),
            "is_match": lambda d: d.truth.member,
            "payload": lambda d: d.truth.payload if d.truth.member else None,
        },
        account={
            "vouchers": lambda records, truths: len(records),
            "matches": lambda records, truths: sum(bool(r["is_match"]) for r in records),
        },
        schema=schema,
    )
