"""Every protocol behind the one interface: agreement with the plaintext oracle, voucher hygiene, params."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2escan.crypto import group
from e2escan.crypto.codec import HEADER_BYTES
from e2escan.errors import ConfigError, DecodeError, ProtocolError, VoucherError
from e2escan.hashing import HashArray, PerceptualHash
from e2escan.protocols import (
    PROTOCOLS,
    VoucherPointError,
    VoucherReplayError,
    get_protocol,
    multiprobe_matches,
    plaintext_matches,
)

REPO = Path(__file__).resolve().parents[1]
BITS = 64


def _flip(h: PerceptualHash, positions: list[int]) -> PerceptualHash:
    bits = h.to_bits().copy()
    bits[positions] ^= 1
    return PerceptualHash.from_bits(bits)


@pytest.fixture(scope="module")
def data():
    """40 database hashes; queries: 8 exact, 8 at distance 1, 6 at distance 2, 10 unrelated."""
    rng = np.random.default_rng(1234)
    db = HashArray.random(40, BITS, rng)
    queries, flips = [], []
    for i in range(8):
        queries.append(db[i])
        flips.append([])
    for i in range(8, 16):
        pos = [int(rng.integers(BITS))]
        queries.append(_flip(db[i], pos))
        flips.append(pos)
    for i in range(16, 22):
        pos = [int(p) for p in rng.choice(BITS, 2, replace=False)]
        queries.append(_flip(db[i], pos))
        flips.append(pos)
    for h in HashArray.random(10, BITS, rng):
        queries.append(h)
        flips.append([])
    return db, HashArray.from_hashes(queries), flips


def _params(name: str, **extra):
    base = {"threshold": 2, "synthetic_probability": 0.0, "synthetic_capacity": 4, "payload_size": 32}
    if name == "plaintext" or name == "psi-exact":
        base = {"payload_size": 32}
    base.update(extra)
    return get_protocol(name).Params(**base)


def _run(name: str, db: HashArray, queries: HashArray, hints=None, **extra):
    proto = get_protocol(name)
    params = _params(name, **extra)
    server, public = proto.server_setup(db, params)
    client = proto.client(public, params)
    vouchers = []
    for i, q in enumerate(queries):
        kwargs = {} if hints is None else {"reliability": hints[i]}
        vouchers.append(client.scan(q, payload=b"img-%03d" % i, **kwargs))
    for v in vouchers:
        server.ingest("acct", v)
    return server, client, vouchers, server.reveal("acct")


def _revealed_mask(reveal, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[list(reveal.match_indices)] = True
    for i, payload in zip(reveal.match_indices, reveal.matches, strict=True):
        assert payload == b"img-%03d" % i  # each revealed payload is that voucher's own
    return mask


@pytest.mark.parametrize("name", ["plaintext", "psi-exact", "tpsi-ad"])
def test_exact_variants_equal_the_plaintext_matcher(name: str, data) -> None:
    db, queries, _ = data
    _, _, _vouchers, reveal = _run(name, db, queries)
    expected = plaintext_matches(db, queries, 0)
    assert expected.sum() == 8
    np.testing.assert_array_equal(_revealed_mask(reveal, len(queries)), expected)
    assert reveal.vouchers == len(queries)


def test_plaintext_radius_matches_oracle(data) -> None:
    db, queries, _ = data
    _, _, _, reveal = _run("plaintext", db, queries, radius=2)
    np.testing.assert_array_equal(_revealed_mask(reveal, len(queries)), plaintext_matches(db, queries, 2))


def test_ball_variant_equals_plaintext_matcher_at_its_radius(data) -> None:
    db, queries, _ = data
    small_db = db[:22]  # keeps the expanded table (65x) small
    _, _, _, reveal = _run("tpsi-ad-ball", small_db, queries, radius=1)
    expected = plaintext_matches(small_db, queries, 1)
    assert expected.sum() == 16
    np.testing.assert_array_equal(_revealed_mask(reveal, len(queries)), expected)


def test_multiprobe_matches_its_declared_rule(data) -> None:
    db, queries, flips = data
    rng = np.random.default_rng(7)
    # Reliability hints: the truly flipped bits are among the least reliable for half the edited queries.
    hints = []
    for i, f in enumerate(flips):
        r = rng.uniform(1.0, 2.0, BITS)
        if f and i % 2 == 0:
            r[f] = 0.1
        hints.append(r)
    _server, client, _, reveal = _run("tpsi-ad-multiprobe", db, queries, hints=hints, probe_bits=3)
    expected = np.array(
        [multiprobe_matches(db, q.data, client.probe_positions(hints[i])) for i, q in enumerate(queries)]
    )
    np.testing.assert_array_equal(_revealed_mask(reveal, len(queries)), expected)
    # Declared trade-off: every exact member and every edit confined to hinted bits is found ...
    for i, f in enumerate(flips[:22]):
        if not f or i % 2 == 0:
            assert expected[i], i
    # ... and nothing beyond the plaintext matcher at radius probe_bits is.
    assert not np.any(expected & ~plaintext_matches(db, queries, 3))


def test_multiprobe_without_hint_uses_the_fixed_order(data) -> None:
    db, _, _ = data
    proto = get_protocol("tpsi-ad-multiprobe")
    params = _params("tpsi-ad-multiprobe", probe_bits=2, probe_order=(5, 9, 1))
    server, public = proto.server_setup(db, params)
    client = proto.client(public, params)
    assert client.probe_positions() == [5, 9]
    hit = _flip(db[0], [5, 9])
    miss = _flip(db[1], [1])
    for i, q in enumerate([hit, miss, db[2]]):
        server.ingest("a", client.scan(q, payload=b"%d" % i))
    assert server.reveal("a").matches == (b"0", b"2")


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_matching_and_nonmatching_vouchers_have_one_length(name: str, data) -> None:
    db, queries, _ = data
    _, _, vouchers, _ = _run(name, db[:22] if name == "tpsi-ad-ball" else db, queries)
    assert len({len(v) for v in vouchers}) == 1


def _state(server, account: str):
    return server.observed(account), dict(server.account_view(account)), server.reveal(account)


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_malformed_and_replayed_vouchers_raise_and_change_nothing(name: str, data) -> None:
    db, queries, _ = data
    server, client, vouchers, _ = _run(name, db[:22] if name == "tpsi-ad-ball" else db, queries[:12])
    before = _state(server, "acct")
    good = vouchers[0]
    bad = [good[:-1], good[: len(good) // 2], good + b"\x00", b"", b"junk" * 10]
    body_len_flip = bytearray(good)
    body_len_flip[6] ^= 0x01
    bad.append(bytes(body_len_flip))
    for v in bad:
        with pytest.raises(VoucherError):
            server.ingest("acct", v)
    with pytest.raises(VoucherReplayError):
        server.ingest("acct", good)
    with pytest.raises(VoucherReplayError):  # replay under another account
        server.ingest("other", vouchers[3])
    assert _state(server, "acct") == before
    assert server.observed("other") == ()
    # A fresh voucher still goes through afterwards.
    server.ingest("acct", client.scan(queries[0], payload=b"again"))
    assert len(server.observed("acct")) == len(before[0]) + 1


@pytest.mark.parametrize("name", ["psi-exact", "tpsi-ad", "tpsi-ad-multiprobe"])
def test_invalid_and_small_order_points_are_rejected(name: str, data) -> None:
    db, queries, _ = data
    server, client, _vouchers, _ = _run(name, db, queries[:4])
    before = _state(server, "acct")
    voucher = client.scan(queries[0], payload=b"x")
    q_offset = HEADER_BYTES + 5  # the Q field is the first field
    foreign = [
        *group.small_order_points(),
        group.point_add(group.GENERATOR, group.small_order_points()[1]),  # outside the subgroup
        (2**255 - 18).to_bytes(32, "little"),  # non-canonical y
        b"\xff" * 32,
    ]
    for point in foreign:
        tampered = voucher[:q_offset] + point + voucher[q_offset + 32 :]
        with pytest.raises(VoucherPointError, match=r"'Q'.*byte offset"):
            server.ingest("acct", tampered)
    assert _state(server, "acct") == before
    assert issubclass(VoucherPointError, VoucherError)


def test_vouchers_of_one_protocol_are_refused_by_another(data) -> None:
    db, queries, _ = data
    _, _, psi_vouchers, _ = _run("psi-exact", db, queries[:2])
    tpsi_server, _, _, _ = _run("tpsi-ad", db, queries[:2])
    with pytest.raises(VoucherError, match="magic"):
        tpsi_server.ingest("acct", psi_vouchers[0])


def test_client_rejects_public_parameters_for_other_params(data) -> None:
    db, _, _ = data
    proto = get_protocol("tpsi-ad")
    _, public = proto.server_setup(db, _params("tpsi-ad"))
    with pytest.raises(ProtocolError, match="fingerprint"):
        proto.client(public, _params("tpsi-ad", threshold=3))
    with pytest.raises(DecodeError, match="body length"):
        proto.client(public[:-1], _params("tpsi-ad"))


def test_scan_checks_hash_length_and_payload_size(data) -> None:
    db, _, _ = data
    for name in ("plaintext", "psi-exact", "tpsi-ad"):
        proto = get_protocol(name)
        params = _params(name)
        _, public = proto.server_setup(db, params)
        client = proto.client(public, params)
        with pytest.raises(ProtocolError, match="64-bit"):
            client.scan(PerceptualHash(256, bytes(32)))
        with pytest.raises(ProtocolError, match="payload"):
            client.scan(db[0], payload=b"x" * 33)


def test_unknown_protocol_lists_the_registered_names() -> None:
    with pytest.raises(ProtocolError, match="tpsi-ad"):
        get_protocol("nope")


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_presets_load_and_match_the_registry(name: str) -> None:
    proto = get_protocol(name)
    params = proto.Params.from_toml(REPO / "protocols" / f"{name}.toml")
    assert isinstance(params, proto.Params)
    assert (REPO / proto.spec).is_file()


def test_params_validation_names_the_key(tmp_path: Path) -> None:
    proto = get_protocol("tpsi-ad")
    with pytest.raises(ConfigError, match="threshold"):
        proto.Params(threshold=0)
    with pytest.raises(ConfigError, match="synthetic_probability"):
        proto.Params(synthetic_probability=1.5)
    with pytest.raises(ConfigError, match="dedup"):
        proto.Params(dedup="sometimes")
    with pytest.raises(ConfigError, match="synthetic_capacity"):
        proto.Params(synthetic_probability=0.1, synthetic_capacity=0)
    with pytest.raises(ConfigError, match="radius"):
        get_protocol("tpsi-ad-ball").Params(radius=-1)
    with pytest.raises(ConfigError, match="probe_order"):
        get_protocol("tpsi-ad-multiprobe").Params(probe_order=(1, 1, 2))
    bad = tmp_path / "bad.toml"
    bad.write_text('protocol = "tpsi-ad"\n[params]\nthreshold = 5\nthreshhold = 6\n')
    with pytest.raises(ConfigError, match=r"bad.toml: params.threshhold = 6: unknown key; accepted keys: threshold"):
        proto.Params.from_toml(bad)
    bad.write_text('protocol = "psi-exact"\n[params]\n')
    with pytest.raises(ConfigError, match="parameters of 'tpsi-ad'"):
        proto.Params.from_toml(bad)
    bad.write_text('protocol = "tpsi-ad"\nextra = 1\n')
    with pytest.raises(ConfigError, match="unknown top-level"):
        proto.Params.from_toml(bad)


def test_leakage_profiles_describe_every_name() -> None:
    for proto in PROTOCOLS.values():
        lk = proto.LEAKAGE
        for name in lk.server_voucher + lk.server_account + lk.server_voucher_over + lk.server_account_over + lk.client:
            assert lk.descriptions[name]


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_reveal_agrees_with_the_protocols_own_plaintext_matcher(name: str, data) -> None:
    db, queries, _ = data
    db = db[:22] if name == "tpsi-ad-ball" else db
    extra = {"radius": 1} if name in ("plaintext", "tpsi-ad-ball") else {}
    if name == "tpsi-ad-multiprobe":
        extra = {"probe_bits": 2, "probe_order": (3, 17)}
        queries = HashArray.from_hashes([*queries, _flip(db[0], [3]), _flip(db[1], [3, 17]), _flip(db[2], [4])])
    proto = get_protocol(name)
    _, _, _, reveal = _run(name, db, queries, **extra)
    matcher = proto.plaintext_matcher(db, _params(name, **extra))
    expected = np.array([matcher(q)[0] for q in queries])
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(_revealed_mask(reveal, len(queries)), expected)


def test_ingest_returns_the_observed_record(data) -> None:
    db, queries, _ = data
    for name in PROTOCOLS:
        proto = get_protocol(name)
        params = _params(name)
        server, public = proto.server_setup(db[:5], params)
        client = proto.client(public, params)
        record = server.ingest("a", client.scan(queries[0], payload=b"r"))
        assert record == server.observed("a")[0]


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_wire_sizes_match_encoded_messages(name: str, data) -> None:
    from e2escan.protocols.costs import wire_sizes

    db, queries, _ = data
    db = db[:10] if name == "tpsi-ad-ball" else db
    proto = get_protocol(name)
    params = proto.Params.from_toml(REPO / "protocols" / f"{name}.toml")
    _server, public = proto.server_setup(db, params)
    voucher = proto.client(public, params).scan(queries[0], payload=b"p" * 100)
    sizes = wire_sizes(params, len(db), payload_bytes=100)
    assert sizes.public_bytes == len(public)
    assert sizes.voucher_bytes == len(voucher)
