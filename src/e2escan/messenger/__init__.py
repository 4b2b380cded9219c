"""An end-to-end encrypted messenger in the Signal protocol family, over libsodium.

X3DH key agreement, the Double Ratchet (optional header encryption),
encrypted attachments referenced by id + key + digest, and a relay whose
:class:`ServerView` records everything the server could observe. Groups are
pairwise fan-out (each member gets its own ratchet message; the attachment
is uploaded once), not Signal's sender keys.
"""

from .attachments import decrypt_attachment, encrypt_attachment
from .device import Device, Received, Rejected
from .ratchet import RatchetLimits, Session
from .relay import EVENT_KINDS, Delivery, Relay, ServerView, ViewEvent
from .x3dh import Identity, x3dh_initiate, x3dh_respond

__all__ = [
    "EVENT_KINDS",
    "Delivery",
    "Device",
    "Identity",
    "RatchetLimits",
    "Received",
    "Rejected",
    "Relay",
    "ServerView",
    "Session",
    "ViewEvent",
    "decrypt_attachment",
    "encrypt_attachment",
    "x3dh_initiate",
    "x3dh_respond",
]
