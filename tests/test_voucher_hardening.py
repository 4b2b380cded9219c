"""Known answers for hashing to the group and for the public tables; replays keyed on content; whole-table checks.

Each check is run against the real code and against a deliberately broken
implementation monkeypatched in, which it must catch.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from e2escan.crypto import group
from e2escan.crypto.codec import Schema, u32
from e2escan.crypto.cuckoo import CuckooLayout
from e2escan.errors import ProtocolError, VoucherError
from e2escan.hashing import HashArray
from e2escan.protocols import blinded_table, get_protocol, plaintext, psi_exact, tpsi_ad
from e2escan.protocols.base import VoucherReplayError
from e2escan.protocols.blinded_table import BlindedTable

# --- known answers (computed once with this code and checked in; a change of construction changes them) ----

H2G_VECTORS = [
    (b"", b"e2escan-kat-v1", "da4f064a17652dc2a2442b01b279c2963111515a5dadef8b20e055af6d4e66d8"),
    (b"abc", b"e2escan-kat-v1", "83b7869a9b1a9fb5cbaed75721e7663263f1111d418b9ac739dc6028eedda1d5"),
    (bytes(range(64)), b"e2escan-v1/tpsi-ad/H/" + bytes(16),
     "e8ec334c1c0aec59323034514afdfb694a3074de998034223ef5d84388e464fd"),
]
KAT_ALPHA = hashlib.sha512(b"e2escan kat alpha").digest()
KAT_ITEMS = [bytes.fromhex("0123456789abcdef"), bytes.fromhex("fedcba9876543210")]
KAT_DST = b"e2escan-v1/tpsi-ad/H/" + bytes(range(16))
KAT_ENTRIES = [
    "bc2e3bf775ba4422cafb2d269eefcc6871819f47aedb14d141b5b6ebf3570755",
    "eb83e7a1f99e2bc3f32519bb44505b10ad31549ece5fe1c850832c2c465a585e",
]
KAT_L = "9fff3f5daf9d3c59566995fea9ec5e25c1335bc6de28966af433321f5762e0ba"


def hash_to_group_matches_vectors() -> bool:
    return all(group.hash_to_group(msg, dst).hex() == want for msg, dst, want in H2G_VECTORS)


def test_hash_to_group_known_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hash_to_group_matches_vectors()

    def half_group(msg: bytes, dst: bytes) -> bytes:  # one Elligator map only: reaches about half the group
        uniform = group.expand_message_xmd(msg, dst, 2 * group.POINT_BYTES)
        import nacl.bindings as sodium

        return sodium.crypto_core_ed25519_from_uniform(uniform[: group.POINT_BYTES])

    monkeypatch.setattr(group, "hash_to_group", half_group)
    assert not hash_to_group_matches_vectors()


def blinded_entries_match_vectors() -> bool:
    alpha = group.scalar_reduce(KAT_ALPHA)
    entries = [group.scalar_mult(alpha, group.hash_to_group(i, KAT_DST)).hex() for i in KAT_ITEMS]
    return entries == KAT_ENTRIES and group.scalar_mult_base(alpha).hex() == KAT_L


def test_blinded_table_entries_known_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """S-Init's ``P_i = alpha * H(T[i])`` and ``L = alpha * G`` for a fixed ``alpha`` and domain tag."""
    assert blinded_entries_match_vectors()
    real = group.scalar_mult
    monkeypatch.setattr(group, "scalar_mult", lambda s, p, field="point": real(s, group.point_add(p, p), field))
    assert not blinded_entries_match_vectors()


def _kat_table(protocol: str) -> BlindedTable:
    layout = CuckooLayout(3, 2, 1, bytes(range(16)))
    table = b"".join(bytes.fromhex(e) for e in KAT_ENTRIES) + group.scalar_mult_base(group.scalar_reduce(bytes(63) + b"\x07")) \
        + bytes.fromhex(KAT_L)
    return BlindedTable(protocol, hashlib.sha256(protocol.encode()).digest(), bytes(range(16)), 64, layout,
                        bytes.fromhex(KAT_L), table)


# SHA-256 of each protocol's public-parameter encoding of the fixed table above (magic, fields, lengths).
PUBLIC_VECTORS = {
    ("tpsi-ad", b"E2TP"): "4d62f5644cadafe5830e6e252effaf9200909629e098dfd4d457ea1fe8ced5b3",
    ("tpsi-ad-ball", b"E2TB"): "9c592a63920d9a55050fd7ed237ceac86d284e17f0e7c26249d34a348345dc84",
    ("tpsi-ad-multiprobe", b"E2TM"): "9da5c122e4a9cac63ff338bf857099ebdac27d3c7c4c136698008e1be7dd17bc",
    ("psi-exact", b"E2XP"): "805be7d80d91f7a9c4c184f7b058c1b308e846417d36d460c35711b54cee9d23",
}
PLAINTEXT_PUBLIC = (
    "45325050010000002e010000002096d62e2abd3e42de5f50330fb8efc4c5599835278077b21e9aa0b33c1df07a1c0200000004"
    "00000040"
)


def public_encodings_match_vectors() -> bool:
    ok = all(hashlib.sha256(_kat_table(proto).encode(magic)).hexdigest() == want
             for (proto, magic), want in PUBLIC_VECTORS.items())
    pub = plaintext.PUBLIC.encode({"fingerprint": hashlib.sha256(b"plaintext").digest(), "bits": u32(64)})
    return ok and pub.hex() == PLAINTEXT_PUBLIC


def test_public_table_encodings_known_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert public_encodings_match_vectors()
    for proto, magic in PUBLIC_VECTORS:  # and they decode back to the same table
        table = _kat_table(proto)
        assert BlindedTable.decode(proto, magic, table.encode(magic), table.fingerprint) == table
    real = blinded_table.public_schema

    def swapped(name: str, magic: bytes) -> Schema:  # broken: two fields written in the other order
        schema = real(name, magic)
        fields = list(schema.fields)
        fields[2], fields[3] = fields[3], fields[2]
        return Schema(schema.name, schema.magic, schema.version, tuple(fields), error=schema.error)

    monkeypatch.setattr(blinded_table, "public_schema", swapped)
    assert not public_encodings_match_vectors()


# --- replays keyed on content -----------------------------------------------------------------------------


def _reversed_chunks(data: bytes, chunk: int) -> bytes:
    return b"".join(reversed([data[i : i + chunk] for i in range(0, len(data), chunk)]))


def _reordered(name: str, params, voucher: bytes) -> bytes:
    """The same voucher with its (Q, ct) pairs (psi-exact: its ciphertexts) in reverse order."""
    if name == "psi-exact":
        schema = psi_exact.voucher_schema(params)
        d = dict(schema.decode(voucher))
        d["ct"] = _reversed_chunks(d["ct"], psi_exact.CT_BYTES)
    else:
        schema = tpsi_ad.voucher_schema(params)
        d = dict(schema.decode(voucher))
        d["Q"], d["ct"] = _reversed_chunks(d["Q"], 32), _reversed_chunks(d["ct"], tpsi_ad.CT_BYTES)
    return schema.encode(d)


@pytest.mark.parametrize("name", ["tpsi-ad", "tpsi-ad-multiprobe", "psi-exact"])
def test_a_reordered_voucher_is_refused_as_a_replay_under_any_account(name: str, monkeypatch) -> None:
    proto = get_protocol(name)
    db = HashArray.random(8, 64, np.random.default_rng(4))
    params = proto.Params() if name == "psi-exact" else proto.Params(threshold=3, synthetic_probability=0.0)

    def replay_refused() -> bool:
        server, public = proto.server_setup(db, params)
        voucher = proto.client(public, params).scan(db[0])
        reordered = _reordered(name, params, voucher)
        assert reordered != voucher
        server.ingest("alice", voucher)
        for account in ("alice", "mallory"):
            try:
                server.ingest(account, reordered)
            except VoucherReplayError:
                continue
            return False
        return server.accounts() == ("alice",) and len(server.observed("alice")) == 1

    assert replay_refused()
    # Broken: replays keyed on the voucher's bytes (the old check), which a reordered copy passes.
    if name == "psi-exact":
        real_ingest = psi_exact.PsiExactServer.ingest

        def byte_keyed(self, account, voucher):
            digest = hashlib.sha256(voucher).digest()
            seen = self.__dict__.setdefault("digests", set())
            if digest in seen:
                raise VoucherReplayError("byte replay")
            self._seen.clear()
            record = real_ingest(self, account, voucher)
            seen.add(digest)
            return record

        monkeypatch.setattr(psi_exact.PsiExactServer, "ingest", byte_keyed)
    else:
        def byte_keyed_points(self, decoded):
            digest = hashlib.sha256(b"".join(decoded[k] for k in decoded)).digest()
            if digest in self._seen:
                raise VoucherReplayError("byte replay")
            return [digest]

        monkeypatch.setattr(tpsi_ad.TpsiAdServer, "_points", byte_keyed_points)
    assert not replay_refused()


def repeated_point_is_refused() -> bool:
    proto = get_protocol("tpsi-ad")
    params = proto.Params(threshold=3, synthetic_probability=0.0)
    db = HashArray.random(8, 64, np.random.default_rng(5))
    server, public = proto.server_setup(db, params)
    schema = tpsi_ad.voucher_schema(params)
    d = dict(schema.decode(proto.client(public, params).scan(db[1])))
    d["Q"] = d["Q"][:32] * (len(d["Q"]) // 32)
    try:
        server.ingest("alice", schema.encode(d))
    except VoucherError as exc:
        return "same point appears twice" in str(exc) and server.accounts() == ()
    return False


def test_a_voucher_repeating_a_point_is_refused(monkeypatch) -> None:
    assert repeated_point_is_refused()
    # Broken on purpose: the replay check without its within-voucher test accepts the malformed voucher.
    def no_duplicate_check(self, decoded):
        qs = decoded["Q"]
        return [qs[32 * j : 32 * j + 32] for j in range(len(qs) // 32)]

    monkeypatch.setattr(tpsi_ad.TpsiAdServer, "_points", no_duplicate_check)
    assert not repeated_point_is_refused()


# --- the whole public table is checked at load --------------------------------------------------------


def _poisoned_public(name: str):
    proto = get_protocol(name)
    db = HashArray.random(8, 64, np.random.default_rng(6))
    params = proto.Params() if name == "psi-exact" else proto.Params(threshold=3)
    _, public = proto.server_setup(db, params)
    schema = blinded_table.public_schema(name, public[:4])
    d = dict(schema.decode(public))
    cell = 3
    bad = group.small_order_points()[1]
    d["table"] = d["table"][: 32 * cell] + bad + d["table"][32 * (cell + 1) :]
    return proto, params, schema.encode(d), cell


@pytest.mark.parametrize("name", ["tpsi-ad", "psi-exact"])
def test_a_table_with_an_invalid_cell_is_refused_at_load(name: str, monkeypatch) -> None:
    proto, params, poisoned, cell = _poisoned_public(name)

    def refused_at_load() -> bool:
        try:
            proto.client(poisoned, params)
        except ProtocolError as exc:
            return f"table cell {cell}" in str(exc)
        return False  # the device took the table: images hashing to the cell would fail, the others not

    assert refused_at_load()
    monkeypatch.setattr(blinded_table, "validate_table", lambda protocol, table, offset=0: None)  # broken: no check
    assert not refused_at_load()
