"""The detectable hash over the paper's 64-bit prime field (``tpsi-ad`` parameter ``dhf_field = "p64"``).

The Apple PSI System (Bhowmick, Boneh, Myers, Talwar, Tarbe, 2021), §4.3, builds
its detectable hash over "a 64-bit prime" field: ``(s + 1) * 8`` bytes per
voucher instead of ``s`` 32-byte scalars. These tests check the field, the
detection over it, the voucher size it buys, and that the server validates
every received element; each validation test also shows that it fails on a
server with the check removed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2escan.audit import audit_protocol
from e2escan.crypto import shamir, smallfield
from e2escan.errors import DecodeError, SecretSharingError, VoucherError
from e2escan.hashing import HashArray
from e2escan.protocols import get_protocol, tpsi_ad
from e2escan.protocols.costs import wire_sizes
from e2escan.protocols.tpsi_ad import TpsiAdScanner

SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
P64 = smallfield.P64  # kept: one test raises the server's bound to show its check matters


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin: the first 12 primes as bases decide every n < 3.3e24."""
    if n < 2:
        return False
    for p in SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in SMALL_PRIMES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def test_p64_is_the_largest_prime_below_2_to_the_64() -> None:
    assert _is_prime(smallfield.P64) and smallfield.P64 < 2**64
    assert not any(_is_prime(n) for n in range(smallfield.P64 + 1, 2**64))
    assert not _is_prime(2**61 + 1) and _is_prime(2**61 - 1)  # the primality test itself discriminates


@given(st.integers(0, smallfield.P64 - 1))
def test_elements_round_trip(value: int) -> None:
    assert smallfield.require_element(smallfield.encode(value), "v") == value


@given(st.integers(smallfield.P64, 2**64 - 1))
def test_non_canonical_encodings_are_refused(value: int) -> None:
    with pytest.raises(DecodeError, match="not below the field prime"):
        smallfield.require_element(value.to_bytes(8, "little"), "v")
    with pytest.raises(SecretSharingError):
        smallfield.encode(value)


@given(st.binary(max_size=20).filter(lambda b: len(b) != 8))
def test_wrong_lengths_are_refused(data: bytes) -> None:
    with pytest.raises(DecodeError, match="expected 8 bytes"):
        smallfield.require_element(data, "v")


def test_prf_reduction_needs_enough_bytes() -> None:
    with pytest.raises(SecretSharingError):
        smallfield.element_from_bytes(bytes(8))
    assert smallfield.element_from_bytes(bytes(15) + b"\x01") == 2**120 % smallfield.P64


@settings(max_examples=30, deadline=None)
@given(
    degree=st.integers(0, 5),
    width=st.integers(1, 6),
    extra=st.integers(0, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_detection_over_p64_finds_exactly_the_genuine_rows(degree: int, width: int, extra: int, seed: int) -> None:
    """At least degree + 2 genuine rows and at most width random ones: detection is exact (fails w.p. ~n / 2^64)."""
    rng = np.random.default_rng(seed)
    key = smallfield.DetectableHash64(
        [[int(rng.integers(0, smallfield.P64, dtype=np.uint64)) for _ in range(degree + 1)] for _ in range(width)]
    )
    n_genuine = degree + 2 + extra
    n_random = int(rng.integers(0, width + 1))
    xs = rng.choice(2**62, n_genuine + n_random, replace=False)
    rows = []
    for i, x0 in enumerate(xs):
        out = key.evaluate(int(x0))
        values = out[1:] if i < n_genuine else tuple(int(rng.integers(0, smallfield.P64, dtype=np.uint64)) for _ in range(width))
        rows.append((smallfield.encode(out[0]), [smallfield.encode(v) for v in values]))
    order = rng.permutation(len(rows))
    shuffled = [rows[i] for i in order]
    genuine = frozenset(j for j, i in enumerate(order) if i < n_genuine)
    assert shamir.detect_genuine(shuffled, degree, smallfield.P64) == genuine
    assert shamir._detect_genuine_dense(shuffled, degree, smallfield.P64) == genuine
    # degree + 1 genuine rows are uniformly random: nothing is detected.
    assert shamir.detect_genuine([rows[i] for i in range(degree + 1)] + rows[n_genuine:], degree, smallfield.P64) == frozenset()


def test_detector_refuses_values_outside_its_field() -> None:
    detector = shamir.GenuineDetector(1, 1, smallfield.P64)
    with pytest.raises(SecretSharingError, match="below the modulus"):
        detector.add(smallfield.encode(1), [smallfield.P64.to_bytes(8, "little")])


def test_voucher_at_s32_t30_is_at_most_1000_bytes() -> None:
    proto = get_protocol("tpsi-ad")
    p64 = wire_sizes(proto.Params(threshold=30, synthetic_capacity=32), 10_000, 64, payload_bytes=256)
    scalar = wire_sizes(proto.Params(threshold=30, synthetic_capacity=32, dhf_field="scalar"), 10_000, 64, payload_bytes=256)
    assert p64.voucher_bytes <= 1000
    # The detectable-hash part: 33 x 8 = 264 bytes against 32 x 32 = 1,024.
    assert scalar.voucher_bytes - p64.voucher_bytes == 32 * 32 - 33 * 8
    assert proto.Params().dhf_field == "p64"  # the paper's field is the default


@pytest.fixture(scope="module")
def database() -> HashArray:
    return HashArray.random(20, 64, np.random.default_rng(7))


def _setup(database: HashArray, **params):
    proto = get_protocol("tpsi-ad")
    p = proto.Params(payload_size=16, threshold=3, synthetic_probability=0.0, synthetic_capacity=4, **params)
    server, public = proto.server_setup(database, p)
    return server, proto.client(public, p)


def _install_deviating_device(monkeypatch: pytest.MonkeyPatch) -> None:
    honest = TpsiAdScanner._dhf_values

    def wrapped(self, x: bytes) -> bytes:
        out = honest(self, x)
        return out[:-8] + P64.to_bytes(8, "little")  # the value 0, encoded non-canonically as P64

    monkeypatch.setattr(TpsiAdScanner, "_dhf_values", wrapped)


def _non_canonical_is_refused(database: HashArray, monkeypatch: pytest.MonkeyPatch) -> bool:
    server, client = _setup(database)
    server.ingest("a", client.scan(database[0], payload=b"ok"))
    before = server.observed("a")
    with monkeypatch.context() as m:
        _install_deviating_device(m)
        bad = client.scan(database[1], payload=b"bad")
    try:
        server.ingest("a", bad)
    except VoucherError as exc:
        assert "detectable-hash value 4" in str(exc) and "not below the field prime" in str(exc)
        assert server.observed("a") == before  # nothing changed
        return True
    return False


def test_server_refuses_a_non_canonical_field_element(database: HashArray, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _non_canonical_is_refused(database, monkeypatch)
    # The same check against a server whose range check is removed (bound raised to 2^64) must fail.
    monkeypatch.setattr(tpsi_ad.smallfield, "P64", 2**64)
    assert not _non_canonical_is_refused(database, monkeypatch)


def _ingest_with_repeated_x0(database: HashArray, monkeypatch: pytest.MonkeyPatch):
    """One honest voucher, then two whose detectable-hash abscissa x0 is forced to the same value."""
    server, client = _setup(database)
    server.ingest("a", client.scan(database[0], payload=b"0"))
    with monkeypatch.context() as m:
        m.setattr(tpsi_ad.smallfield, "element_from_bytes", lambda data: 12345)  # x0 = PRF(...) mod p, forced
        vouchers = [client.scan(database[i], payload=b"%d" % i) for i in (1, 2)]
    for v in vouchers:
        server.ingest("a", v)
    return server


def test_a_repeated_x0_under_a_new_share_is_not_counted(database: HashArray, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device repeating its detectable-hash abscissa: the server neither fails nor counts the second share."""
    server = _ingest_with_repeated_x0(database, monkeypatch)
    assert server.account_view("a")["distinct_opened"] == 3
    # Three shares opened, but only two distinct x0 reached the detector: no reveal at t = 3.
    assert not server.reveal("a").over_threshold
    # Against a server without the repeated-x0 guard, the same vouchers break ingestion.
    monkeypatch.setattr(shamir.GenuineDetector, "seen", lambda self, x: False)
    with pytest.raises(SecretSharingError, match="distinct x"):
        _ingest_with_repeated_x0(database, monkeypatch)


@pytest.mark.slow
def test_relations_catch_a_detectable_hash_of_too_low_a_degree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit sees a p64 detectable hash of degree t - 3 (three genuine rows on a line below t = 4)."""
    real_random = smallfield.DetectableHash64.random
    monkeypatch.setattr(
        smallfield.DetectableHash64, "random", classmethod(lambda cls, degree, width: real_random(degree - 1, width))
    )
    report = audit_protocol(
        "tpsi-ad-ball", synthetic_probability=0.01, families=("relations",),
        vouchers=1000, min_share=0.25, permutations=999, seed=3, alpha=0.01,
    )
    leaks = {r.family: (r.feature, r.field) for r in report.leaks}
    feature, field = leaks["relations"]
    assert feature.startswith("dhf") and feature.endswith(":k=3") and field.startswith("record.inner_layer.dhf")


@pytest.mark.slow
def test_the_audit_passes_both_fields() -> None:
    for field in ("p64", "scalar"):
        report = audit_protocol(
            "tpsi-ad", synthetic_probability=0.5, overrides={"dhf_field": field},
            vouchers=1000, min_share=0.25, permutations=19999, seed=3, alpha=1e-4,
        )
        assert report.passed, (field, [r.as_row() for r in report.leaks])
