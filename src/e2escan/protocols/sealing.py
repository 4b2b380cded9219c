"""Key-committing, random-key-robust encryption for voucher layers.

The Apple PSI System needs an encryption scheme that is IND-CPA and *random
key robust*: decrypting a ciphertext under a key other than the one used fails
(Bhowmick et al. 2021, §4; the server learns "no match" from a failed
decryption). A Poly1305 tag already makes a wrong independent random key fail
except with probability about 2^-100, but Poly1305 AEADs are not committing: a
party that chooses keys can craft one ciphertext that opens under two keys
(Len, Grubbs and Ristenpart, "Partitioning Oracle Attacks", USENIX Security
2021). Vouchers are built by clients
the server does not trust, so each layer here commits to its key:

    (enc_key, commitment) = SHA-512("e2escan key commitment v2" || key || nonce)
    sealed = nonce (24 bytes) || commitment (32 bytes) || XChaCha20-Poly1305(enc_key, nonce, plaintext, ad)

Opening first compares the commitment in constant time, then verifies the
AEAD tag. For a given ``(nonce, commitment)``, finding two keys that open it
means a collision on half of SHA-512's output with a fixed prefix, so a
ciphertext opens under at most one key; and a wrong random key fails at the
commitment except with probability 2^-256. This is the generic fix of deriving
a key commitment with a collision-resistant hash and sending it with the
ciphertext (Albertini, Duong, Gueron, Kölbl, Luykx and Schmieg, "How to Abuse
and Fix Authenticated Encryption Without Key Commitment", USENIX Security
2022), over libsodium's XChaCha20-Poly1305.

**Unlinkability.** The commitment is bound to the nonce. A commitment that
depends on the key alone repeats in every ciphertext under one key, so anyone
holding two ciphertexts sees that they share a key. The account key of
``tpsi-ad`` seals every genuine payload of an account, and such a repeat would
tell the server below the threshold which opened vouchers are genuine (a
synthetic voucher carries random bytes there). With a fresh random nonce per
ciphertext, ``SHA-512(context || key || nonce)`` is a fresh output of a PRF
keyed by the secret key, and the AEAD key is fresh per ciphertext too, so
without the key two ciphertexts under one key look like two under
independent keys (SHA-512 modelled as a random oracle).

``seal_once`` uses a fixed all-zero nonce, which is not sent, and is only for
keys used once (a fresh ``rkey``, a key derived from a fresh group element);
``seal`` draws a random 24-byte nonce for keys that encrypt many messages (the
account key).
"""

from __future__ import annotations

import hashlib
import hmac

from ..crypto.primitives import (
    AEAD_NONCE_BYTES,
    AEAD_TAG_BYTES,
    aead_open,
    aead_seal,
    random_bytes,
)
from ..errors import AuthenticationError, DecodeError, ProtocolError

KEY_BYTES = 32
COMMIT_BYTES = 32
ONCE_OVERHEAD = COMMIT_BYTES + AEAD_TAG_BYTES
SEAL_OVERHEAD = COMMIT_BYTES + AEAD_NONCE_BYTES + AEAD_TAG_BYTES

_ZERO_NONCE = bytes(AEAD_NONCE_BYTES)
_CONTEXT = b"e2escan key commitment v2"


def _split(key: bytes, nonce: bytes) -> tuple[bytes, bytes]:
    """``(enc_key, commitment)`` for one ciphertext: both depend on the key *and* the nonce."""
    if len(key) != KEY_BYTES:
        raise DecodeError(f"sealing key: expected {KEY_BYTES} bytes, got {len(key)}")
    d = hashlib.sha512(_CONTEXT + key + nonce).digest()
    return d[:32], d[32:]


def seal_once(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """Encrypt under a key that is never used again (fixed nonce); ``len = len(plaintext) + ONCE_OVERHEAD``."""
    enc, commitment = _split(key, _ZERO_NONCE)
    return commitment + aead_seal(enc, _ZERO_NONCE, plaintext, ad)


def open_once(key: bytes, sealed: bytes, ad: bytes, what: str = "ciphertext") -> bytes:
    """Inverse of :func:`seal_once`; :class:`AuthenticationError` if the key or the ciphertext is wrong."""
    if len(sealed) < ONCE_OVERHEAD:
        raise DecodeError(f"{what}: {len(sealed)} bytes is shorter than the {ONCE_OVERHEAD}-byte overhead")
    enc, commitment = _split(key, _ZERO_NONCE)
    if not hmac.compare_digest(commitment, sealed[:COMMIT_BYTES]):  # constant time
        raise AuthenticationError(f"{what}: key commitment does not match (not encrypted under this key)")
    return aead_open(enc, _ZERO_NONCE, sealed[COMMIT_BYTES:], ad, what)


def seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """Encrypt under a reusable key (random nonce); ``len = len(plaintext) + SEAL_OVERHEAD``."""
    nonce = random_bytes(AEAD_NONCE_BYTES)
    enc, commitment = _split(key, nonce)
    return nonce + commitment + aead_seal(enc, nonce, plaintext, ad)


def open_sealed(key: bytes, sealed: bytes, ad: bytes, what: str = "ciphertext") -> bytes:
    """Inverse of :func:`seal`."""
    if len(sealed) < SEAL_OVERHEAD:
        raise DecodeError(f"{what}: {len(sealed)} bytes is shorter than the {SEAL_OVERHEAD}-byte overhead")
    nonce = sealed[:AEAD_NONCE_BYTES]
    enc, commitment = _split(key, nonce)
    if not hmac.compare_digest(commitment, sealed[AEAD_NONCE_BYTES:SEAL_OVERHEAD - AEAD_TAG_BYTES]):  # constant time
        raise AuthenticationError(f"{what}: key commitment does not match (not encrypted under this key)")
    return aead_open(enc, nonce, sealed[AEAD_NONCE_BYTES + COMMIT_BYTES :], ad, what)


def pad_payload(payload: bytes, size: int, what: str = "payload") -> bytes:
    """``u32 length || payload || zeros`` of exactly ``4 + size`` bytes, so every voucher has one length."""
    if not isinstance(payload, (bytes, bytearray)):
        raise ProtocolError(f"{what}: expected bytes, got {type(payload).__name__}")
    if len(payload) > size:
        raise ProtocolError(f"{what}: {len(payload)} bytes exceeds payload_size = {size}; raise payload_size")
    return len(payload).to_bytes(4, "big") + bytes(payload) + bytes(size - len(payload))


def unpad_payload(padded: bytes, size: int, what: str = "payload") -> bytes:
    if len(padded) != 4 + size:
        raise DecodeError(f"{what}: padded payload is {len(padded)} bytes, expected {4 + size}")
    n = int.from_bytes(padded[:4], "big")
    if n > size or any(padded[4 + n :]):
        raise DecodeError(f"{what}: malformed padding (declared length {n}, payload_size {size})")
    return padded[4 : 4 + n]
