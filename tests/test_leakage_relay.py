"""Each protocol's declared leakage, checked against what the relay's ServerView actually holds.

The protocols run inside the faithful simulator, so vouchers travel with real
messages through the relay; the ServerView is the server's whole log.
"""

import numpy as np
import pytest

from e2escan.metrics.leakage import advantage
from e2escan.protocols import PROTOCOLS, get_protocol
from e2escan.protocols.events import MatchEvent, check_fields, decode_event
from e2escan.sim.faithful import run_faithful
from e2escan.sim.scenario import Scenario

pytestmark = pytest.mark.slow  # outside the fast lane: pytest -m 'not slow'

BASE = {
    "name": "leak",
    "seed": 11,
    "days": 2,
    "population": {"accounts": 40, "offender_share": 0.25, "mean_contacts": 4},
    "traffic": {"messages_per_day": 6, "image_share": 1.0, "forward_share": 0.0},
    "content": {"database_size": 20, "image_size": 64, "encoding": "png", "offender_known_share": 0.8},
    "hasher": {"name": "phash"},
}

PARAMS = {
    "plaintext": {"radius": 4},
    "psi-exact": {},
    "tpsi-ad": {"threshold": 3, "synthetic_probability": 0.1},
    "tpsi-ad-ball": {"threshold": 3, "radius": 1},
    "tpsi-ad-multiprobe": {"threshold": 3, "probe_bits": 2},
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_server_view_holds_only_declared_leakage(name):
    assert set(PARAMS) == set(PROTOCOLS)
    proto = get_protocol(name)
    s = Scenario.from_dict({**BASE, "protocol": {"name": name, "params": PARAMS[name]}})
    run = run_faithful(s, cache_dir=None)
    declared = proto.LEAKAGE.voucher_keys(True) | proto.LEAKAGE.account_keys(True)
    lengths = set()
    for ev in run.relay.view:
        if ev.kind == "match":
            event = decode_event(ev.data)
            assert isinstance(event, MatchEvent)
            check_fields(event, proto.LEAKAGE)
            assert set(event.fields) <= declared, (name, ev.data)
        elif ev.kind == "voucher":
            lengths.add(ev.size)
    assert len(lengths) == 1, f"{name}: voucher lengths vary: {lengths}"
    # Reveals name only images the protocol's own matcher counts as matches.
    matching = {r.uid for r in run.images if r.oracle_match}
    for uids in run.revealed.values():
        assert uids <= matching


def test_tpsi_ad_below_threshold_vouchers_in_the_view_do_not_tell_matches():
    """At least 1,000 vouchers through the relay; nobody crosses t; no byte feature beats chance."""
    s = Scenario.from_dict({
        **BASE,
        "population": {"accounts": 60, "offender_share": 0.5, "mean_contacts": 4},
        "traffic": {"messages_per_day": 9, "image_share": 1.0, "forward_share": 0.0},
        "protocol": {"name": "tpsi-ad", "params": {"threshold": 50, "synthetic_probability": 0.0}},
    })
    run = run_faithful(s, cache_dir=None)
    assert run.flags == {}
    truth = {r.message_id: r.oracle_match for r in run.images}
    vouchers = [(ev.data, truth[ev.ref]) for ev in run.relay.view.events("voucher")]
    assert len(vouchers) >= 1000
    label = np.array([m for _, m in vouchers])
    assert 100 < label.sum() < len(label) - 100
    data = [np.frombuffer(v, dtype=np.uint8) for v, _ in vouchers]
    features = {
        "length": [d.size for d in data],
        "mean byte": [d.mean() for d in data],
        "popcount": [int(np.unpackbits(d).sum()) for d in data],
        "first byte after header": [int(d[16]) for d in data],
        "last byte": [int(d[-1]) for d in data],
    }
    # Voucher bytes are OS-random, so this test is random too: each feature fails only if its advantage
    # exceeds all 1,999 label permutations (probability 1/2,000 under the null), 0.25% for the five.
    rng = np.random.default_rng(0)
    for name, values in features.items():
        values = np.asarray(values, dtype=float)
        adv = advantage(values, label)
        null = max(advantage(values, rng.permutation(label)) for _ in range(1999))
        assert adv <= max(null, 1e-12), f"{name}: advantage {adv:.3f} above every one of 1,999 permutations ({null:.3f})"


def _key_only_seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """The sealing layout before the fix: ``commitment(key) || nonce || AEAD``."""
    import hashlib
    import os

    from e2escan.crypto.primitives import aead_seal

    d = hashlib.sha512(b"e2escan key commitment v1" + key).digest()
    nonce = os.urandom(24)
    return d[32:] + nonce + aead_seal(d[:32], nonce, plaintext, ad)


def _battery_scenario() -> Scenario:
    return Scenario.from_dict({
        **BASE,
        "days": 1,
        "population": {"accounts": 60, "offender_share": 0.5, "mean_contacts": 4},
        "traffic": {"messages_per_day": 8, "image_share": 1.0, "forward_share": 0.0},
        "protocol": {"name": "tpsi-ad", "params": {"threshold": 40, "synthetic_probability": 0.2}},
    })


def test_the_runs_audit_battery_passes_and_catches_the_key_only_commitment(monkeypatch):
    """The faithful run's leakage section runs the audit battery on its own ServerView (real vs ideal)."""
    from e2escan.protocols import tpsi_ad_device
    from e2escan.sim.measure import audit_battery

    run = run_faithful(_battery_scenario(), cache_dir=None)
    rows = audit_battery(run)
    assert {r["family"] for r in rows} == {"equality", "relations", "counts", "relay"}
    assert all(r["verdict"] != "LEAK" for r in rows), rows
    monkeypatch.setattr(tpsi_ad_device, "seal", _key_only_seal)
    broken = audit_battery(run_faithful(_battery_scenario(), cache_dir=None))
    leaks = {r["family"]: r for r in broken if r["verdict"] == "LEAK"}
    assert "equality" in leaks, broken
    assert leaks["equality"]["field"] == "record.inner_layer.adct"
