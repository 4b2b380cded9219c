"""e2escan: a research simulator for client-side scanning in E2EE messaging."""

from __future__ import annotations

from ._version import __version__
from .api import Result, load, run
from .errors import (
    AuthenticationError,
    ConfigError,
    CryptoError,
    DecodeError,
    E2escanError,
    HashError,
    ImageError,
    InvalidPointError,
    ProtocolError,
    RelayError,
    ReplayError,
    ScenarioError,
    SecretSharingError,
    SessionError,
    TooManySkippedError,
    VoucherError,
)

__all__ = [
    "__version__",
    "Result",
    "load",
    "run",
    "AuthenticationError",
    "ConfigError",
    "CryptoError",
    "DecodeError",
    "E2escanError",
    "HashError",
    "ImageError",
    "InvalidPointError",
    "ProtocolError",
    "RelayError",
    "ReplayError",
    "ScenarioError",
    "SecretSharingError",
    "SessionError",
    "TooManySkippedError",
    "VoucherError",
]
