"""The edwards25519 prime-order group: RFC 9380 vectors, validation, scalar field."""

from __future__ import annotations

import nacl.bindings as sodium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.crypto import group as g
from e2escan.errors import CryptoError, DecodeError, InvalidPointError

P25519 = 2**255 - 19

# RFC 9380 Appendix K.3: expand_message_xmd(SHA-512), DST "QUUX-V01-CS02-with-expander-SHA512-256".
EXPANDER_DST = b"QUUX-V01-CS02-with-expander-SHA512-256"
MESSAGES = [b"", b"abc", b"abcdef0123456789", b"q128_" + b"q" * 128, b"a512_" + b"a" * 512]
EXPAND_32 = [
    "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba",
    "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc",
    "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58",
    "7336234ee9983902440f6bc35b348352013becd88938d2afec44311caf8356b3",
    "57b5f7e766d5be68a6bfe1768e3c2b7f1228b3e4b3134956dd73a59b954c66f4",
]
EXPAND_128_ABC = (
    "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11bdd7732d8b38adb4a0edc26a0cef4bb4"
    "5217135456e58fbca1703cd6032cb1347ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b48843"
    "1851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1"
)

# RFC 9380 Appendix J.5.1: edwards25519_XMD:SHA-512_ELL2_RO_ (u0, u1, P.x, P.y, Q0.x, Q1.x).
RO_DST = b"QUUX-V01-CS02-with-edwards25519_XMD:SHA-512_ELL2_RO_"
RO_VECTORS = [
    (
        "03fef4813c8cb5f98c6eef88fae174e6e7d5380de2b007799ac7ee712d203f3a",
        "780bdddd137290c8f589dc687795aafae35f6b674668d92bf92ae793e6a60c75",
        "3c3da6925a3c3c268448dcabb47ccde5439559d9599646a8260e47b1e4822fc6",
        "09a6c8561a0b22bef63124c588ce4c62ea83a3c899763af26d795302e115dc21",
        "6549118f65bb617b9e8b438decedc73c496eaed496806d3b2eb9ee60b88e09a7",
        "31dcfc5c58aa1bee6e760bf78cbe71c2bead8cebb2e397ece0f37a3da19c9ed2",
    ),
    (
        "5081955c4141e4e7d02ec0e36becffaa1934df4d7a270f70679c78f9bd57c227",
        "005bdc17a9b378b6272573a31b04361f21c371b256252ae5463119aa0b925b76",
        "608040b42285cc0d72cbb3985c6b04c935370c7361f4b7fbdb1ae7f8c1a8ecad",
        "1a8395b88338f22e435bbd301183e7f20a5f9de643f11882fb237f88268a5531",
        "5c1525bd5d4b4e034512949d187c39d48e8cd84242aa4758956e4adc7d445573",
        "37b03bba828860c6b459ddad476c83e0f9285787a269df2156219b7e5c86210c",
    ),
    (
        "285ebaa3be701b79871bcb6e225ecc9b0b32dff2d60424b4c50642636a78d5b3",
        "2e253e6a0ef658fedb8e4bd6a62d1544fd6547922acb3598ec6b369760b81b31",
        "6d7fabf47a2dc03fe7d47f7dddd21082c5fb8f86743cd020f3fb147d57161472",
        "53060a3d140e7fbcda641ed3cf42c88a75411e648a1add71217f70ea8ec561a6",
        "3ac463dd7fddb773b069c5b2b01c0f6b340638f54ee3bd92d452fcec3015b52d",
        "0757e7e904f5e86d2d2f4acf7e01c63827fde2d363985aa7432106f1b3a444ec",
    ),
    (
        "4fedd25431c41f2a606952e2945ef5e3ac905a42cf64b8b4d4a83c533bf321af",
        "02f20716a5801b843987097a8276b6d869295b2e11253751ca72c109d37485a9",
        "5fb0b92acedd16f3bcb0ef83f5c7b7a9466b5f1e0d8d217421878ea3686f8524",
        "2eca15e355fcfa39d2982f67ddb0eea138e2994f5956ed37b7f72eea5e89d2f7",
        "703e69787ea7524541933edf41f94010a201cc841c1cce60205ec38513458872",
        "0c9077c5c31720ed9413abe59bf49ce768506128d810cb882435aa90f713ef6b",
    ),
    (
        "6e34e04a5106e9bd59f64aba49601bf09d23b27f7b594e56d5de06df4a4ea33b",
        "1c1c2cb59fc053f44b86c5d5eb8c1954b64976d0302d3729ff66e84068f5fd96",
        "0efcfde5898a839b00997fbe40d2ebe950bc81181afbd5cd6b9618aa336c1e8c",
        "6dc2fc04f266c5c27f236a80b14f92ccd051ef1ff027f26a07f8c0f327d8f995",
        "21091b2e3f9258c7dfa075e7ae513325a94a3d8a28e1b1cb3b5b6f5d65675592",
        "4c07ec48c373e39a23bd7954f9e9b66eeab9e5ee1279b867b3d5315aa815454f",
    ),
]


def _encode_point(x: int, y: int) -> bytes:
    return (y | (x & 1) << 255).to_bytes(32, "little")


@pytest.mark.parametrize("msg,expected", list(zip(MESSAGES, EXPAND_32, strict=True)))
def test_expand_message_xmd_matches_rfc9380_vectors(msg: bytes, expected: str) -> None:
    assert g.expand_message_xmd(msg, EXPANDER_DST, 32).hex() == expected


def test_expand_message_xmd_long_output() -> None:
    assert g.expand_message_xmd(b"abc", EXPANDER_DST, 128).hex() == EXPAND_128_ABC


@pytest.mark.parametrize("index", range(5))
def test_hash_to_field_and_libsodium_map_match_rfc9380_ro_suite(index: int) -> None:
    u0, u1, px, py, q0x, q1x = (int(h, 16) for h in RO_VECTORS[index])
    # hash_to_field (L = 48) over our expand_message_xmd gives the RFC's field elements.
    uniform = g.expand_message_xmd(MESSAGES[index], RO_DST, 96)
    assert int.from_bytes(uniform[:48], "big") % P25519 == u0
    assert int.from_bytes(uniform[48:], "big") % P25519 == u1
    # libsodium's from_uniform is the RFC's Elligator 2 map followed by cofactor clearing,
    # up to the sign of x, which libsodium takes from bit 255 of its input.
    m0 = sodium.crypto_core_ed25519_from_uniform((u0 | (q0x & 1) << 255).to_bytes(32, "little"))
    m1 = sodium.crypto_core_ed25519_from_uniform((u1 | (q1x & 1) << 255).to_bytes(32, "little"))
    assert g.point_add(m0, m1) == _encode_point(px, py)


def test_expand_message_xmd_rejects_bad_sizes() -> None:
    with pytest.raises(CryptoError, match="DST"):
        g.expand_message_xmd(b"m", b"", 32)
    with pytest.raises(CryptoError, match="expand"):
        g.expand_message_xmd(b"m", b"d", 255 * 64 + 1)


def test_hash_to_group_is_deterministic_domain_separated_and_in_subgroup() -> None:
    p = g.hash_to_group(b"hash", b"dst-A")
    assert p == g.hash_to_group(b"hash", b"dst-A")
    assert p != g.hash_to_group(b"hash", b"dst-B")
    assert p != g.hash_to_group(b"hasH", b"dst-A")
    for i in range(20):
        assert g.is_valid_point(g.hash_to_group(i.to_bytes(4, "big"), b"dst"))


def test_small_order_and_malformed_points_are_rejected_with_field_name() -> None:
    for p in g.small_order_points():
        assert not g.is_valid_point(p)
        with pytest.raises(InvalidPointError, match="voucher Q"):
            g.require_point(p, "voucher Q")
        with pytest.raises(InvalidPointError, match="table entry"):
            g.scalar_mult(g.random_scalar(), p, "table entry")
    with pytest.raises(InvalidPointError, match="32-byte"):
        g.require_point(b"\x01" * 31, "Q")
    # A y-coordinate >= p is a non-canonical encoding.
    noncanonical = (P25519 + 1).to_bytes(32, "little")
    assert not g.is_valid_point(noncanonical)
    # A point of the full curve outside the prime-order subgroup: generator plus a 2-torsion point.
    mixed = g.point_add(g.GENERATOR, g.small_order_points()[1])
    assert not g.is_valid_point(mixed)
    with pytest.raises(InvalidPointError):
        g.scalar_mult(g.random_scalar(), mixed, "Q")


def test_valid_points_pass() -> None:
    assert g.require_point(g.GENERATOR, "G") == g.GENERATOR
    r = g.random_point()
    assert g.is_valid_point(r)
    s = g.random_scalar()
    assert g.scalar_mult(s, g.GENERATOR) == g.scalar_mult_base(s)


def test_random_scalars_are_canonical_nonzero_and_distinct() -> None:
    seen = {g.random_scalar() for _ in range(50)}
    assert len(seen) == 50
    for s in seen:
        assert g.is_canonical_scalar(s) and s != g.SCALAR_ZERO


def test_require_scalar_rejects_noncanonical_zero_and_short() -> None:
    with pytest.raises(DecodeError, match="non-canonical"):
        g.require_scalar(g.ELL.to_bytes(32, "little"), "y")
    with pytest.raises(DecodeError, match="nonzero"):
        g.require_scalar(g.SCALAR_ZERO, "x", nonzero=True)
    with pytest.raises(DecodeError, match="32-byte"):
        g.require_scalar(b"\x00" * 31, "x")


scalars = st.integers(min_value=0, max_value=g.ELL - 1)


@settings(max_examples=200, deadline=None)
@given(scalars, scalars)
def test_scalar_field_matches_integer_arithmetic_mod_ell(a: int, b: int) -> None:
    # Integer arithmetic is the test oracle only; the code under test is libsodium's.
    sa, sb = g.scalar_from_int(a), g.scalar_from_int(b)
    assert g.scalar_to_int(g.scalar_add(sa, sb)) == (a + b) % g.ELL
    assert g.scalar_to_int(g.scalar_sub(sa, sb)) == (a - b) % g.ELL
    assert g.scalar_to_int(g.scalar_mul(sa, sb)) == (a * b) % g.ELL
    assert g.scalar_to_int(g.scalar_neg(sa)) == (-a) % g.ELL
    if a:
        assert g.scalar_to_int(g.scalar_invert(sa)) == pow(a, -1, g.ELL)
    # The fast path and PyNaCl's public bindings agree.
    assert g.scalar_mul(sa, sb) == sodium.crypto_core_ed25519_scalar_mul(sa, sb)
    assert g.scalar_add(sa, sb) == sodium.crypto_core_ed25519_scalar_add(sa, sb)


def test_zero_has_no_inverse() -> None:
    with pytest.raises(CryptoError, match="zero"):
        g.scalar_invert(g.SCALAR_ZERO)


def test_hash_to_scalar_is_canonical_and_separated() -> None:
    a = g.hash_to_scalar(b"m", b"d1")
    assert g.is_canonical_scalar(a)
    assert a != g.hash_to_scalar(b"m", b"d2")
