"""Attachments: encrypted on the device under a fresh key, stored on the relay as ciphertext.

The message that references an attachment carries its blob id, key and the
SHA-256 digest of the ciphertext; the recipient checks the digest before
decrypting, as deployed messengers do.

The relay sees the ciphertext's size, so the plaintext is padded first, the
way Signal pads attachments: to the next size ``max(541, floor(1.05^k))``
bytes, so a size reveals only a bucket within 5% (an unpadded size lets the
server recognise a re-sent file by its exact length). The true size travels
inside the encrypted message.
"""

from __future__ import annotations

import math

from ..crypto import (
    AEAD_KEY_BYTES,
    aead_decrypt,
    aead_encrypt,
    ct_equal,
    random_bytes,
    sha256,
)
from ..errors import AuthenticationError
from .wire import AttachmentPointer

ATTACHMENT_AD = b"e2escan attachment v1"
MIN_PADDED = 541


def padded_size(n: int) -> int:
    """The bucket an ``n``-byte attachment is padded to: ``max(541, floor(1.05^ceil(log_1.05 n)))``."""
    if n <= MIN_PADDED:
        return MIN_PADDED
    k = math.ceil(math.log(n) / math.log(1.05))
    size = math.floor(1.05**k)
    while size < n:  # guard against rounding in log()
        k += 1
        size = math.floor(1.05**k)
    return size


def encrypt_attachment(data: bytes) -> tuple[bytes, bytes, bytes]:
    """Returns (blob to upload, key, digest of the blob); the plaintext is padded to its bucket."""
    data = bytes(data)
    key = random_bytes(AEAD_KEY_BYTES)
    blob = aead_encrypt(key, data + bytes(padded_size(len(data)) - len(data)), ATTACHMENT_AD)
    return blob, key, sha256(blob)


def decrypt_attachment(pointer: AttachmentPointer, blob: bytes) -> bytes:
    """Verify the digest and size, then decrypt; raises :class:`AuthenticationError` on any mismatch."""
    if not ct_equal(sha256(blob), pointer.digest):
        raise AuthenticationError(f"attachment {pointer.blob_id.hex()}: digest mismatch (blob altered on the relay?)")
    data = aead_decrypt(pointer.key, blob, ATTACHMENT_AD, f"attachment {pointer.blob_id.hex()}")
    if len(data) != padded_size(pointer.size):
        raise AuthenticationError(
            f"attachment {pointer.blob_id.hex()}: {len(data)} padded bytes, expected {padded_size(pointer.size)} "
            f"for the {pointer.size} bytes the message names"
        )
    return data[: pointer.size]
