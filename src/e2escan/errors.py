"""Every error e2escan raises on purpose derives from :class:`E2escanError`.

Messages name the offending key, file, field or byte offset and what would
have been accepted, so a user can fix the input without reading the source.
"""

from __future__ import annotations


class E2escanError(Exception):
    """Base class of every deliberate e2escan failure."""


class ConfigError(E2escanError):
    """A parameter set, preset or configuration value is invalid."""


class ScenarioError(ConfigError):
    """A scenario file has an unknown key, a wrong type or an out-of-range value."""


class CryptoError(E2escanError):
    """A cryptographic operation failed (base class for the crypto errors)."""


class DecodeError(CryptoError):
    """Bytes received from the other party are malformed (length, version, format)."""


class AuthenticationError(CryptoError):
    """A ciphertext, signature, MAC or digest did not verify."""


class InvalidPointError(DecodeError):
    """A received group element is not a valid point of the prime-order subgroup."""


class SessionError(E2escanError):
    """A messaging session cannot process a message (state, limits)."""


class ReplayError(SessionError):
    """A message was already decrypted once; replays are rejected."""


class TooManySkippedError(SessionError):
    """A message would require skipping more message keys than MAX_SKIP allows."""


class RelayError(E2escanError):
    """The relay refused a request (unknown device, missing bundle or blob)."""


class ImageError(E2escanError):
    """An image could not be read or decoded; the message names the file."""


class HashError(E2escanError):
    """A perceptual hash has the wrong length or format, or hashers disagree."""


class VoucherError(DecodeError):
    """A voucher is malformed, foreign, replayed or inconsistent."""


class ProtocolError(E2escanError):
    """A matching protocol was used outside its contract."""


class SecretSharingError(CryptoError):
    """A set of secret shares is insufficient or inconsistent."""
