"""e2escan: a research simulator for client-side scanning in E2EE messaging."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

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

try:
    __version__ = _version("e2escan")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

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
