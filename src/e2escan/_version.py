"""The installed package's version (a leaf module: anything may import it)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("e2escan")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
