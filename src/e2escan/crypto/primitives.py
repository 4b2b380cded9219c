"""Thin, typed wrappers over PyNaCl (libsodium) and ``cryptography``.

Nothing here implements a primitive: every function forwards to libsodium or
OpenSSL and adds what the raw bindings leave to the caller, namely length and
format validation on every decode and errors from :mod:`e2escan.errors` that
say which field was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import AuthenticationError, DecodeError

X25519_KEY_BYTES = 32
ED25519_PUBLIC_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
AEAD_KEY_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES  # 32
AEAD_NONCE_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
AEAD_TAG_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16
SHA256_BYTES = 32

HashName = Literal["sha256", "sha512"]
_HASHES = {"sha256": hashes.SHA256, "sha512": hashes.SHA512}


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the OS CSPRNG (libsodium's ``randombytes_buf``)."""
    return nacl.utils.random(n)


def require_length(value: bytes, expected: int, field: str) -> bytes:
    """Raise :class:`DecodeError` unless ``value`` is bytes of exactly ``expected`` length."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{field}: expected {expected} bytes, got {type(value).__name__}")
    if len(value) != expected:
        raise DecodeError(f"{field}: expected {expected} bytes, got {len(value)}")
    return bytes(value)


def ct_equal(a: bytes, b: bytes) -> bool:
    """Constant-time equality (libsodium ``sodium_memcmp``); unequal lengths compare unequal."""
    if len(a) != len(b):
        return False
    return sodium.sodium_memcmp(a, b)


# --- X25519 -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class X25519KeyPair:
    """An X25519 key pair. ``repr`` never shows the private key."""

    private: bytes
    public: bytes

    @classmethod
    def generate(cls) -> X25519KeyPair:
        private = random_bytes(X25519_KEY_BYTES)
        return cls(private, sodium.crypto_scalarmult_base(private))

    def __repr__(self) -> str:
        return f"X25519KeyPair(public={self.public.hex()[:16]}...)"


def x25519(private: bytes, public: bytes) -> bytes:
    """X25519 Diffie-Hellman; rejects low-order peer keys (all-zero shared secret)."""
    require_length(public, X25519_KEY_BYTES, "x25519 public key")
    try:
        return sodium.crypto_scalarmult(private, public)
    except nacl.exceptions.RuntimeError as exc:
        # libsodium refuses to return the all-zero output of a low-order point.
        raise DecodeError("x25519 public key: low-order point rejected") from exc


# --- Ed25519 ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Ed25519KeyPair:
    """An Ed25519 signing key pair (``secret`` is libsodium's 64-byte form)."""

    secret: bytes
    public: bytes

    @classmethod
    def generate(cls) -> Ed25519KeyPair:
        public, secret = sodium.crypto_sign_seed_keypair(random_bytes(32))
        return cls(secret, public)

    def sign(self, message: bytes) -> bytes:
        """A detached 64-byte signature."""
        return sodium.crypto_sign(message, self.secret)[:ED25519_SIGNATURE_BYTES]

    def to_x25519(self) -> X25519KeyPair:
        """The birationally equivalent X25519 key pair (libsodium's conversion)."""
        return X25519KeyPair(
            sodium.crypto_sign_ed25519_sk_to_curve25519(self.secret),
            ed25519_public_to_x25519(self.public),
        )

    def __repr__(self) -> str:
        return f"Ed25519KeyPair(public={self.public.hex()[:16]}...)"


def ed25519_verify(public: bytes, message: bytes, signature: bytes, what: str = "signature") -> None:
    """Raise :class:`AuthenticationError` unless ``signature`` verifies."""
    require_length(public, ED25519_PUBLIC_BYTES, f"{what}: Ed25519 public key")
    require_length(signature, ED25519_SIGNATURE_BYTES, what)
    try:
        sodium.crypto_sign_open(signature + message, public)
    except nacl.exceptions.BadSignatureError as exc:
        raise AuthenticationError(f"{what}: Ed25519 signature does not verify") from exc


def ed25519_public_to_x25519(public: bytes) -> bytes:
    require_length(public, ED25519_PUBLIC_BYTES, "Ed25519 public key")
    try:
        return sodium.crypto_sign_ed25519_pk_to_curve25519(public)
    except nacl.exceptions.RuntimeError as exc:
        raise DecodeError("Ed25519 public key: not a valid curve point") from exc


# --- KDF and MAC ------------------------------------------------------------


def hkdf(ikm: bytes, length: int, *, salt: bytes | None, info: bytes, hash: HashName = "sha256") -> bytes:
    """HKDF (RFC 5869) from ``cryptography``."""
    return HKDF(algorithm=_HASHES[hash](), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = _hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def sha256(data: bytes) -> bytes:
    return sodium.crypto_hash_sha256(data)


def sha512(data: bytes) -> bytes:
    return sodium.crypto_hash_sha512(data)


# --- AEAD -------------------------------------------------------------------


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes = b"") -> bytes:
    """XChaCha20-Poly1305 with a caller-chosen nonce; returns ``ciphertext || tag``.

    Only for keys used once (the ratchet's message keys), where a fixed nonce
    is safe and saves 24 bytes per message.
    """
    require_length(key, AEAD_KEY_BYTES, "AEAD key")
    require_length(nonce, AEAD_NONCE_BYTES, "AEAD nonce")
    return sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, key)


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes = b"", what: str = "ciphertext") -> bytes:
    """Inverse of :func:`aead_seal`; raises :class:`AuthenticationError` on any tampering."""
    require_length(key, AEAD_KEY_BYTES, "AEAD key")
    require_length(nonce, AEAD_NONCE_BYTES, "AEAD nonce")
    if len(ciphertext) < AEAD_TAG_BYTES:
        raise DecodeError(f"{what}: {len(ciphertext)} bytes is shorter than the {AEAD_TAG_BYTES}-byte tag")
    try:
        return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key)
    except nacl.exceptions.CryptoError as exc:
        raise AuthenticationError(f"{what}: authentication failed (tampered or wrong key)") from exc


def aead_encrypt(key: bytes, plaintext: bytes, ad: bytes = b"", nonce: bytes | None = None) -> bytes:
    """XChaCha20-Poly1305; returns ``nonce || ciphertext || tag``.

    The 24-byte nonce is random unless given; random nonces are safe at this
    size for any number of messages under one key.
    """
    if nonce is None:
        nonce = random_bytes(AEAD_NONCE_BYTES)
    return nonce + aead_seal(key, nonce, plaintext, ad)


def aead_decrypt(key: bytes, sealed: bytes, ad: bytes = b"", what: str = "ciphertext") -> bytes:
    """Inverse of :func:`aead_encrypt`; raises :class:`AuthenticationError` on any tampering."""
    if len(sealed) < AEAD_NONCE_BYTES + AEAD_TAG_BYTES:
        raise DecodeError(
            f"{what}: {len(sealed)} bytes is shorter than nonce + tag "
            f"({AEAD_NONCE_BYTES + AEAD_TAG_BYTES} bytes)"
        )
    return aead_open(key, sealed[:AEAD_NONCE_BYTES], sealed[AEAD_NONCE_BYTES:], ad, what)


def aead_overhead() -> int:
    return AEAD_NONCE_BYTES + AEAD_TAG_BYTES
