"""Cryptographic building blocks, all forwarding to libsodium (PyNaCl) or ``cryptography``.

``crypto`` imports nothing else from e2escan except the error types.
"""

from .primitives import (
    AEAD_KEY_BYTES,
    AEAD_NONCE_BYTES,
    AEAD_TAG_BYTES,
    Ed25519KeyPair,
    X25519KeyPair,
    aead_decrypt,
    aead_encrypt,
    aead_open,
    aead_seal,
    ct_equal,
    ed25519_public_to_x25519,
    ed25519_verify,
    hkdf,
    hmac_sha256,
    random_bytes,
    require_length,
    sha256,
    sha512,
    x25519,
)

__all__ = [
    "AEAD_KEY_BYTES",
    "AEAD_NONCE_BYTES",
    "AEAD_TAG_BYTES",
    "Ed25519KeyPair",
    "X25519KeyPair",
    "aead_decrypt",
    "aead_encrypt",
    "aead_open",
    "aead_seal",
    "ct_equal",
    "ed25519_public_to_x25519",
    "ed25519_verify",
    "hkdf",
    "hmac_sha256",
    "random_bytes",
    "require_length",
    "sha256",
    "sha512",
    "x25519",
]
