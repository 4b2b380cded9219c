"""The package, its error hierarchy and its entry points."""

import subprocess
import sys

import e2escan
from e2escan import errors


def test_every_error_derives_from_base():
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj is not errors.E2escanError:
            assert issubclass(obj, errors.E2escanError), name


def test_python_dash_m_matches_console_script_help():
    out = subprocess.run([sys.executable, "-m", "e2escan", "--help"], capture_output=True, text=True, check=True)
    assert "e2escan" in out.stdout
    for command in ("demo",):
        assert command in out.stdout


def test_version_is_exposed():
    assert e2escan.__version__
    out = subprocess.run([sys.executable, "-m", "e2escan", "--version"], capture_output=True, text=True, check=True)
    assert e2escan.__version__ in out.stdout


def test_unknown_command_is_rejected():
    out = subprocess.run([sys.executable, "-m", "e2escan", "no-such-command"], capture_output=True, text=True)
    assert out.returncode != 0
    assert "invalid choice" in out.stderr
