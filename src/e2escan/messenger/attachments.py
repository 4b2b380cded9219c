"""Attachments: encrypted on the device under a fresh key, stored on the relay as ciphertext.

The message that references an attachment carries its blob id, key and the
SHA-256 digest of the ciphertext; the recipient checks the digest before
decrypting, as deployed messengers do. The relay sees the ciphertext's size.
"""

from __future__ import annotations

from ..crypto import AEAD_KEY_BYTES, aead_decrypt, aead_encrypt, ct_equal, random_bytes, sha256
from ..errors import AuthenticationError
from .wire import AttachmentPointer

ATTACHMENT_AD = b"e2escan attachment v1"


def encrypt_attachment(data: bytes) -> tuple[bytes, bytes, bytes]:
    """Returns (blob to upload, key, digest of the blob)."""
    key = random_bytes(AEAD_KEY_BYTES)
    blob = aead_encrypt(key, bytes(data), ATTACHMENT_AD)
    return blob, key, sha256(blob)


def decrypt_attachment(pointer: AttachmentPointer, blob: bytes) -> bytes:
    """Verify the digest and size, then decrypt; raises :class:`AuthenticationError` on any mismatch."""
    if not ct_equal(sha256(blob), pointer.digest):
        raise AuthenticationError(f"attachment {pointer.blob_id.hex()}: digest mismatch (blob altered on the relay?)")
    data = aead_decrypt(pointer.key, blob, ATTACHMENT_AD, f"attachment {pointer.blob_id.hex()}")
    if len(data) != pointer.size:
        raise AuthenticationError(f"attachment {pointer.blob_id.hex()}: {len(data)} bytes, the message says {pointer.size}")
    return data
