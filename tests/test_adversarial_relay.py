"""``e2escan demo --adversarial-relay``: every attack a malicious relay tries, and the devices' guarantee."""

from __future__ import annotations

import copy

import pytest

from e2escan.cli import main
from e2escan.messenger import Session
from e2escan.messenger.adversarial import run_adversarial_relay
from e2escan.protocols import blinded_table


def test_every_guarantee_holds_and_the_command_says_so(capsys: pytest.CaptureFixture) -> None:
    outcomes = run_adversarial_relay()
    assert [o.attack for o in outcomes] == [
        "replay", "replay under another name", "reordering", "dropping", "bundle without a one-time prekey",
        "voucher replay, pairs reordered", "invalid table cell",
    ]
    assert all(o.held for o in outcomes), [o for o in outcomes if not o.held]
    assert main(["demo", "--adversarial-relay"]) == 0
    assert "A malicious relay against the devices" in capsys.readouterr().out


def test_the_demo_reports_a_broken_device(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Broken on purpose: devices that skip the table check and accept replays; the demo must report them."""
    monkeypatch.setattr(blinded_table, "validate_table", lambda protocol, table, offset=0: None)
    real_decrypt = Session.ratchet_decrypt

    def forgetful(self, message):  # decrypts, then forgets it did: nothing is ever "used"
        saved = copy.deepcopy(self.__dict__)
        try:
            return real_decrypt(self, message)
        finally:
            self.__dict__.update(saved)

    monkeypatch.setattr(Session, "ratchet_decrypt", forgetful)
    failed = {o.attack for o in run_adversarial_relay() if not o.held}
    assert {"invalid table cell", "replay"} <= failed
    assert main(["demo", "--adversarial-relay"]) == 1
    assert "FAILED" in capsys.readouterr().out
