"""``e2escan audit``: the table, the files, the exit status of a leak, and one-line errors that change nothing."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import pytest

from e2escan.cli import main
from e2escan.crypto.primitives import aead_seal
from e2escan.protocols import tpsi_ad_device

FAST = ["--vouchers", "1000", "--min-share", "0.25", "--permutations", "999", "--alpha", "0.01"]


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        h.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def test_audit_writes_table_csv_figure_and_manifest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "audit"
    assert main(["audit", "psi-exact", *FAST, "--alpha", "0.0001", "--permutations", "19999", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Leakage audit" in printed and "psi-exact" in printed
    rows = list(csv.DictReader((out / "audit.csv").open()))
    assert {r["family"] for r in rows} == {"voucher-bytes", "equality", "relations", "counts", "relay"}
    assert all(r["verdict"] in ("ok", "n/a") for r in rows)
    assert (out / "audit.png").stat().st_size > 0 and (out / "audit.svg").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["passed"] is True and manifest["seed"] == 0 and manifest["config"]["vouchers"] == 1000


def _key_only_seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    d = hashlib.sha512(b"e2escan key commitment v1" + key).digest()
    nonce = os.urandom(24)
    return d[32:] + nonce + aead_seal(d[:32], nonce, plaintext, ad)


def test_a_leak_exits_non_zero_naming_the_distinguisher_and_the_field(monkeypatch, capsys) -> None:
    monkeypatch.setattr(tpsi_ad_device, "seal", _key_only_seal)
    assert main(["audit", "tpsi-ad", *FAST, "--synthetic-probability", "0.01"]) == 3
    err = capsys.readouterr().err
    assert "LEAK in tpsi-ad" in err and "'equality'" in err and "record.inner_layer.adct" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "nope", *FAST], "unknown protocol 'nope'; known: plaintext, psi-exact"),
        (["audit", "tpsi-ad", "--vouchers", "300", "--min-share", "0.05"], "vouchers"),
        (["audit", "tpsi-ad", *FAST, "--set", "thresold=3"], "unknown key"),
        (["audit", "tpsi-ad", *FAST, "--synthetic-probability", "1.5"], "--synthetic-probability"),
        (["audit", "tpsi-ad", "--vouchers", "1000", "--min-share", "0.25", "--permutations", "99"], "use at least 199"),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_an_out_that_is_a_file_or_holds_files_is_refused_and_left_alone(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    assert main(["audit", "plaintext", *FAST, "--out", str(a_file)]) == 1
    assert a_file.read_text() == "keep me" and "is a file" in capsys.readouterr().err
    assert main(["audit", "plaintext", *FAST, "--out", str(a_file / "below")]) == 1
    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    before = _digest(folder)
    assert main(["audit", "plaintext", *FAST, "--out", str(folder)]) == 1
    assert "not results of `e2escan audit`" in capsys.readouterr().err and _digest(folder) == before
    assert main(["audit", "plaintext", *FAST, "--out", str(folder), "--force"]) == 0
    assert not (folder / "summary.json").exists() and (folder / "audit.csv").exists()
