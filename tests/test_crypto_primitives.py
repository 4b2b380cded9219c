"""The crypto wrappers: published vectors and the validation they add."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.crypto import (
    Ed25519KeyPair,
    X25519KeyPair,
    aead_decrypt,
    aead_encrypt,
    ct_equal,
    ed25519_verify,
    hkdf,
    hmac_sha256,
    random_bytes,
    x25519,
)
from e2escan.errors import AuthenticationError, DecodeError


def test_x25519_rfc7748_vector():
    # RFC 7748, section 6.1
    a = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    b_pub = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert x25519(a, b_pub) == shared


def test_x25519_rejects_low_order_and_bad_length():
    sk = X25519KeyPair.generate().private
    with pytest.raises(DecodeError, match="low-order"):
        x25519(sk, bytes(32))
    with pytest.raises(DecodeError, match="expected 32 bytes, got 31"):
        x25519(sk, bytes(31))


def test_hkdf_rfc5869_case1():
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    assert hkdf(ikm, 42, salt=salt, info=info) == okm


def test_hmac_sha256_rfc4231_case2():
    mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


RFC8032_TEST1_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def _check_rfc8032_test1(sig: bytes) -> None:
    """The whole 64-byte signature of RFC 8032 section 7.1, TEST 1 (R and S)."""
    assert sig.hex() == RFC8032_TEST1_SIGNATURE


def test_the_vector_check_compares_the_whole_signature():
    """Broken on purpose: a signature with a wrong second half (S) must fail the check."""
    good = bytes.fromhex(RFC8032_TEST1_SIGNATURE)
    with pytest.raises(AssertionError):
        _check_rfc8032_test1(good[:32] + bytes(32))


def test_ed25519_rfc8032_test1():
    from nacl.bindings import crypto_sign_seed_keypair

    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public, secret = crypto_sign_seed_keypair(seed)
    assert public.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    sig = Ed25519KeyPair(secret, public).sign(b"")
    _check_rfc8032_test1(sig)
    ed25519_verify(public, b"", sig)
    with pytest.raises(AuthenticationError):
        ed25519_verify(public, b"x", sig)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=40), st.data())
def test_aead_round_trip_and_any_flipped_bit_rejected(plaintext, ad, data):
    key = random_bytes(32)
    sealed = aead_encrypt(key, plaintext, ad)
    assert aead_decrypt(key, sealed, ad) == plaintext
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    tampered = bytearray(sealed)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(AuthenticationError):
        aead_decrypt(key, bytes(tampered), ad)


@given(st.integers(0, 39))
def test_aead_truncation_is_a_decode_error(n):
    with pytest.raises(DecodeError, match="shorter than nonce"):
        aead_decrypt(random_bytes(32), bytes(n))


def test_ct_equal():
    assert ct_equal(b"abc", b"abc")
    assert not ct_equal(b"abc", b"abd")
    assert not ct_equal(b"abc", b"ab")


def test_keypair_repr_hides_private_key():
    kp = X25519KeyPair.generate()
    assert kp.private.hex() not in repr(kp)
    ek = Ed25519KeyPair.generate()
    assert ek.secret.hex()[:16] not in repr(ek)
