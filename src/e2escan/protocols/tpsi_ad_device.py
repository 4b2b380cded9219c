"""The ``tpsi-ad`` device: C-Init and C-Gen-Voucher of the Apple PSI System (§4)."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..crypto import group, smallfield
from ..crypto.shamir import (
    DetectableHash,
    SharingPolynomial,
)
from ..errors import (
    ProtocolError,
    SecretSharingError,
)
from ..hashing import PerceptualHash
from .base import (
    Scanner,
    check_hash,
)
from .blinded_table import BlindedTable
from .sealing import (
    KEY_BYTES,
    pad_payload,
    seal,
    seal_once,
)
from .tpsi_ad_params import TpsiAdParams
from .tpsi_ad_voucher import voucher_schema

# --- C-Init / C-Gen-Voucher ----------------------------------------------------


def _prf_scalar(key: bytes, data: bytes, person: bytes) -> bytes:
    s = group.scalar_reduce(hashlib.blake2b(data, digest_size=64, key=key, person=person).digest())
    if s == group.SCALAR_ZERO:  # probability 2^-252
        raise SecretSharingError("PRF output reduced to zero")
    return s


def seeded_coin(rng: Any, per_hash: bool) -> Callable[[bytes], int]:
    """A reproducible stand-in for a device's secret synthetic-voucher coin (for ``coin_source``).

    Simulation only: ``rng`` is a seeded ``numpy.random.Generator``. With
    ``per_hash`` the coin is a keyed hash of the image hash, so copies share
    their decision as with ``dedup = "hash"``; otherwise every call differs.
    """
    key = rng.bytes(32)
    counter = [0]

    def coin(y: bytes) -> int:
        counter[0] += 1
        data = y if per_hash else y + counter[0].to_bytes(8, "big")
        return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "big")

    return coin


class TpsiAdScanner(Scanner):
    """One device (account): C-Init at construction, C-Gen-Voucher in :meth:`scan`."""

    def __init__(self, protocol: str, magic: bytes, public: bytes, params: TpsiAdParams) -> None:
        self.params = params
        self.table = BlindedTable.decode(protocol, magic, public, params.fingerprint())
        self._schema = voucher_schema(params)
        self._ctx = self.table.context
        t, s = params.threshold, params.dhf_width()
        # C-Init.
        account_scalar = group.random_scalar()
        self._poly = SharingPolynomial.random(account_scalar, t)
        self._adkey = _account_aead_key(account_scalar)
        self._dhf: DetectableHash | None = None
        self._dhf64: smallfield.DetectableHash64 | None = None
        if s and params.dhf_field == "p64":
            self._dhf64 = smallfield.DetectableHash64.random(t - 2, s)
        elif s:
            self._dhf = DetectableHash.random(t - 2, s)
        self._fkey = os.urandom(32)
        self._skey = os.urandom(32)
        self._synthetic_tags: set[bytes] = set()
        self._synthetic_sent = 0
        #: Whether the last :meth:`scan` produced a synthetic voucher (device-side knowledge, never sent).
        self.last_was_synthetic = False
        #: Simulation hook: a function ``y -> 64-bit int`` replacing the secret synthetic-voucher coin, so
        #: that a simulator can make the *decision* reproducible from its seeded generator. The voucher's
        #: keys, shares and blinding stay OS-random. Never set it on a real device.
        self.coin_source: Callable[[bytes], int] | None = None

    @property
    def synthetic_sent(self) -> int:
        """Synthetic vouchers emitted so far (re-sent copies included)."""
        return self._synthetic_sent

    # Hooks for the fuzzy variants ------------------------------------------------
    def _probes(self, y: bytes, hints: Mapping[str, Any]) -> list[bytes]:
        if hints:
            raise ProtocolError(f"{self.params.PROTOCOL}.scan: unexpected keyword(s) {sorted(hints)}")
        return [y]

    # ------------------------------------------------------------------------------
    def scan(self, phash: PerceptualHash, payload: bytes = b"", **hints: Any) -> bytes:
        """C-Gen-Voucher for one image. The voucher's length depends only on the parameters."""
        y = check_hash(phash, self.table.bits, f"{self.params.PROTOCOL}.scan")
        padded = pad_payload(payload, self.params.payload_size)
        probes = self._probes(y, hints)
        x, synthetic, dummy_seed = self._decide(y)
        self.last_was_synthetic = synthetic
        if synthetic:
            self._synthetic_sent += 1
            return self._synthetic_voucher(x, dummy_seed)
        return self._real_voucher(x, padded, probes)

    def _decide(self, y: bytes) -> tuple[bytes, bool, bytes | None]:
        p = self.params
        if p.dedup == "hash":
            x = _prf_scalar(self._fkey, y, b"e2escan-x")
            coin = int.from_bytes(hashlib.blake2b(y, digest_size=8, key=self._skey, person=b"e2escan-coin").digest())
            seed = hashlib.blake2b(y, digest_size=32, key=self._skey, person=b"e2escan-dummy").digest()
        else:
            x = group.random_scalar()
            coin = secrets.randbits(64)
            seed = None
        if self.coin_source is not None:
            coin = self.coin_source(y)
        wants = coin < p.synthetic_probability * 2**64
        allowed = x in self._synthetic_tags or len(self._synthetic_tags) < p.synthetic_capacity
        synthetic = wants and allowed
        if synthetic:
            self._synthetic_tags.add(x)
        return x, synthetic, seed

    def _real_voucher(self, x: bytes, padded: bytes, probes: Sequence[bytes]) -> bytes:
        t = self.table
        inner = x + self._poly.evaluate(x) + self._dhf_values(x) + seal(self._adkey, padded, self._ctx)
        rkey = os.urandom(KEY_BYTES)
        rct = seal_once(rkey, inner, self._ctx)
        pairs = []
        for probe in probes:
            h = group.hash_to_group(probe, t.h2g_dst)
            seen: set[int] = set()
            for cell in t.layout.candidate_cells(probe):
                if cell in seen:
                    # Two cuckoo functions chose the same bucket: a second opening pair would
                    # set this voucher apart from a synthetic one (which opens exactly once).
                    pairs.append(self._dummy_pair(rkey))
                    continue
                seen.add(cell)
                beta, gamma = group.random_scalar(), group.random_scalar()
                q = group.point_add(group.scalar_mult(beta, h, "H(y)"), group.scalar_mult_base(gamma))
                s = group.point_add(
                    group.scalar_mult(beta, t.entry(cell), f"{t.protocol} public table cell {cell}"),
                    group.scalar_mult(gamma, t.L, "L"),
                )
                pairs.append((q, seal_once(t.key_from_element(s), rkey, self._ctx)))
        return self._encode(pairs, rct)

    def _dhf_values(self, x: bytes) -> bytes:
        """The genuine detectable-hash part of the inner layer for the share abscissa ``x``.

        ``p64``: the paper's ``DHF(hkey, x0)`` at its own abscissa ``x0``, a PRF of ``x``
        (so re-sent copies repeat it, as they repeat ``x``; ``x`` is itself a PRF of the
        image hash or OS-random); ``scalar``: the polynomials evaluated at ``x``.
        """
        if self._dhf64 is not None:
            x0 = smallfield.element_from_bytes(
                hashlib.blake2b(x, digest_size=smallfield.PRF_BYTES, key=self._fkey, person=b"e2escan-x0").digest()
            )
            return b"".join(smallfield.encode(v) for v in self._dhf64.evaluate(x0))
        if self._dhf is not None:
            return b"".join(self._dhf.evaluate(x))
        return b""

    def _synthetic_values(self, seed: bytes | None) -> bytes:
        """A synthetic voucher's share value and detectable-hash part: uniformly random in their fields.

        With ``seed`` (``dedup = "hash"``) they are a PRF of it, so copies of one image repeat them.
        """
        p = self.params
        if seed is None:
            share = group.random_scalar()
        else:
            share = _prf_scalar(seed, (0).to_bytes(4, "big"), b"e2escan-dvalue")
        width = p.dhf_width()
        if width and p.dhf_field == "p64":
            if seed is None:
                elements = [smallfield.random_element() for _ in range(width + 1)]
            else:
                elements = [
                    smallfield.element_from_bytes(
                        hashlib.blake2b(i.to_bytes(4, "big"), digest_size=smallfield.PRF_BYTES, key=seed,
                                        person=b"e2escan-d64").digest()
                    )
                    for i in range(width + 1)
                ]
            return share + b"".join(smallfield.encode(v) for v in elements)
        if seed is None:
            values = [group.random_scalar() for _ in range(width)]
        else:
            values = [_prf_scalar(seed, i.to_bytes(4, "big"), b"e2escan-dvalue") for i in range(1, width + 1)]
        return share + b"".join(values)

    def _synthetic_voucher(self, x: bytes, seed: bytes | None) -> bytes:
        t, p = self.table, self.params
        inner = x + self._synthetic_values(seed) + os.urandom(p.adct_bytes())
        rkey = os.urandom(KEY_BYTES)
        rct = seal_once(rkey, inner, self._ctx)
        gamma = group.random_scalar()
        # S = gamma * L = alpha * Q: this pair opens for the server; the others never do.
        opener = (group.scalar_mult_base(gamma), seal_once(t.key_from_element(group.scalar_mult(gamma, t.L, "L")), rkey, self._ctx))
        pairs = [opener] + [self._dummy_pair(rkey) for _ in range(p.pairs() - 1)]
        return self._encode(pairs, rct)

    def _dummy_pair(self, rkey: bytes) -> tuple[bytes, bytes]:
        """A uniformly random Q and a ciphertext under a random key: never opens."""
        return group.random_point(), seal_once(os.urandom(KEY_BYTES), rkey, self._ctx)

    def _encode(self, pairs: list[tuple[bytes, bytes]], rct: bytes) -> bytes:
        secrets.SystemRandom().shuffle(pairs)
        return self._schema.encode({"Q": b"".join(q for q, _ in pairs), "ct": b"".join(c for _, c in pairs), "rct": rct})


def _account_aead_key(account_scalar: bytes) -> bytes:
    return hashlib.blake2b(account_scalar, digest_size=32, person=b"e2escan-adkey").digest()


