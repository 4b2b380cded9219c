"""The voucher layers' encryption: round trip, key commitment, robustness, and unlinkability under one key."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.crypto.primitives import AEAD_NONCE_BYTES, aead_seal
from e2escan.errors import AuthenticationError, DecodeError
from e2escan.protocols import sealing
from e2escan.protocols.sealing import (
    COMMIT_BYTES,
    KEY_BYTES,
    ONCE_OVERHEAD,
    SEAL_OVERHEAD,
    open_once,
    open_sealed,
    seal,
    seal_once,
)

keys = st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES)
texts = st.binary(max_size=300)


@settings(max_examples=60, deadline=None)
@given(keys, texts, st.binary(max_size=40))
def test_round_trip_and_lengths(key: bytes, plaintext: bytes, ad: bytes) -> None:
    once = seal_once(key, plaintext, ad)
    many = seal(key, plaintext, ad)
    assert len(once) == len(plaintext) + ONCE_OVERHEAD
    assert len(many) == len(plaintext) + SEAL_OVERHEAD
    assert open_once(key, once, ad) == plaintext
    assert open_sealed(key, many, ad) == plaintext


@settings(max_examples=40, deadline=None)
@given(keys, keys, texts)
def test_a_wrong_key_fails_at_the_commitment(key: bytes, other: bytes, plaintext: bytes) -> None:
    if key == other:
        return
    with pytest.raises(AuthenticationError, match="commitment"):
        open_once(other, seal_once(key, plaintext, b""), b"")
    with pytest.raises(AuthenticationError, match="commitment"):
        open_sealed(other, seal(key, plaintext, b""), b"")


@settings(max_examples=40, deadline=None)
@given(keys, texts, st.integers(min_value=0), st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused(key: bytes, plaintext: bytes, where: int, bit: int) -> None:
    sealed = bytearray(seal(key, plaintext, b"ad"))
    sealed[where % len(sealed)] ^= 1 << bit
    with pytest.raises(AuthenticationError):
        open_sealed(key, bytes(sealed), b"ad")


def test_truncated_ciphertexts_get_a_decode_error() -> None:
    key = os.urandom(KEY_BYTES)
    with pytest.raises(DecodeError, match="shorter than"):
        open_sealed(key, seal(key, b"", b"")[: SEAL_OVERHEAD - 1], b"")
    with pytest.raises(DecodeError, match="shorter than"):
        open_once(key, b"x" * (ONCE_OVERHEAD - 1), b"")


def test_a_crafted_two_key_ciphertext_is_refused() -> None:
    """The AEAD part of a ciphertext under key k1, spliced behind k2's commitment, opens under neither k1 nor k2."""
    k1, k2 = os.urandom(KEY_BYTES), os.urandom(KEY_BYTES)
    genuine = seal(k1, b"payload", b"")
    nonce = genuine[:AEAD_NONCE_BYTES]
    other = seal(k2, b"payload", b"")
    spliced = nonce + other[AEAD_NONCE_BYTES : AEAD_NONCE_BYTES + COMMIT_BYTES] + genuine[AEAD_NONCE_BYTES + COMMIT_BYTES :]
    for key in (k1, k2):
        with pytest.raises(AuthenticationError):
            open_sealed(key, spliced, b"")


def _shared_windows(a: bytes, b: bytes, width: int = 16) -> int:
    """Aligned ``width``-byte windows equal in both ciphertexts (the cross-ciphertext linkage test)."""
    return sum(a[i : i + width] == b[i : i + width] for i in range(0, min(len(a), len(b)) - width + 1, width))


def test_two_ciphertexts_under_one_key_share_no_bytes() -> None:
    key = os.urandom(KEY_BYTES)
    sealed = [seal(key, b"same payload", b"ctx") for _ in range(50)]
    assert all(_shared_windows(sealed[0], s) == 0 for s in sealed[1:])


def _key_only_seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """The broken layout this module replaced: a commitment that depends on the key alone."""
    d = hashlib.sha512(b"e2escan key commitment v1" + key).digest()
    nonce = os.urandom(AEAD_NONCE_BYTES)
    return nonce + d[32:] + aead_seal(d[:32], nonce, plaintext, ad)


def test_the_linkage_check_catches_a_key_only_commitment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sealing, "seal", _key_only_seal)
    key = os.urandom(KEY_BYTES)
    sealed = [sealing.seal(key, b"same payload", b"ctx") for _ in range(5)]
    assert all(_shared_windows(sealed[0], s) >= 1 for s in sealed[1:])


def test_the_commitment_checks_catch_a_commitment_that_ignores_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken on purpose: a commitment that does not depend on the key no longer tells keys apart.

    With it, a wrong key is caught only by Poly1305, which is not committing: the check that a wrong key
    fails *at the commitment* (the property a device-chosen ciphertext needs) must fail.
    """
    real = sealing._split
    monkeypatch.setattr(sealing, "_split", lambda key, nonce: (real(key, nonce)[0], bytes(32)))
    key, other = os.urandom(KEY_BYTES), os.urandom(KEY_BYTES)
    with pytest.raises(AuthenticationError) as info:
        open_sealed(other, seal(key, b"payload", b""), b"")
    assert "commitment" not in str(info.value)
