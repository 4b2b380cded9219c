"""tpsi-ad voucher generation and server ingest, as a ratio to the raw libsodium work they need.

One C-Gen-Voucher needs a fixed list of primitive calls (group operations,
scalar-field operations, hashes, AEAD), and one S-Process likewise. The
baseline here performs exactly those calls, straight into libsodium (through
PyNaCl's bindings) and hashlib, with no e2escan code and no encoding. Each
protocol call is timed back to back with one baseline call, alternating, so a
change in machine load hits both sides of the ratio equally. A ratio of 1.0
means the protocol adds nothing to the primitives it must call; the target is
<= 1.3.

    python benchmarks/bench_protocols.py [--preset protocols/tpsi-ad.toml] [--db 2000] [--vouchers 300]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import time
from pathlib import Path

import nacl.bindings as sodium
import numpy as np
from nacl._sodium import ffi, lib

from e2escan.hashing import HashArray
from e2escan.protocols import get_protocol

ROOT = Path(__file__).resolve().parents[1]

_enc = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt
_dec = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt
_mul = lib.crypto_core_ed25519_scalar_mul
_add = lib.crypto_core_ed25519_scalar_add


class RawVoucher:
    """The primitive calls of one real C-Gen-Voucher, on dummy inputs of the right sizes."""

    def __init__(self, params, table_entry: bytes, L: bytes) -> None:
        self.pairs, self.probes = params.pairs(), params.probes()
        self.t, self.s = params.threshold, params.dhf_width()
        self.P, self.L = table_entry, L
        self.inner = os.urandom(params.inner_bytes())
        self.payload = os.urandom(4 + params.payload_size)
        self.coeffs = [os.urandom(31) + b"\x00" for _ in range(self.s * (self.t - 1))]
        self.tmp, self.acc = ffi.new("unsigned char[32]"), ffi.new("unsigned char[32]")

    def __call__(self) -> None:
        key, nonce, tmp, acc = os.urandom(32), os.urandom(24), self.tmp, self.acc
        for _ in range(self.probes):  # hash_to_group
            b0 = hashlib.sha512(key).digest()
            hashlib.sha512(b0).digest()
            h = sodium.crypto_core_ed25519_add(
                sodium.crypto_core_ed25519_from_uniform(b0[:32]), sodium.crypto_core_ed25519_from_uniform(b0[32:])
            )
        for _ in range(self.pairs):
            beta = sodium.crypto_core_ed25519_scalar_reduce(os.urandom(64))
            gamma = sodium.crypto_core_ed25519_scalar_reduce(os.urandom(64))
            sodium.crypto_core_ed25519_add(
                sodium.crypto_scalarmult_ed25519_noclamp(beta, h), sodium.crypto_scalarmult_ed25519_base_noclamp(gamma)
            )
            s = sodium.crypto_core_ed25519_add(
                sodium.crypto_scalarmult_ed25519_noclamp(beta, self.P), sodium.crypto_scalarmult_ed25519_noclamp(gamma, self.L)
            )
            k = hashlib.blake2b(s, digest_size=32, key=key).digest()
            hashlib.sha512(k).digest()
            _enc(key, b"ad", nonce, k)
        for _ in range(3):  # PRFs: share abscissa, synthetic coin, dummy seed
            hashlib.blake2b(key, digest_size=64, key=key).digest()
        x = sodium.crypto_core_ed25519_scalar_reduce(os.urandom(64))
        for c in self.coeffs[: self.t - 1]:  # Shamir, Horner
            _mul(tmp, acc, x)
            _add(acc, tmp, c)
        for _ in range(self.t - 2):  # powers of x
            _mul(tmp, tmp, x)
        for c in self.coeffs:  # detectable hash: s inner products of length t - 1
            _mul(tmp, c, x)
            _add(acc, acc, tmp)
        hashlib.sha512(key).digest()
        _enc(self.payload, b"ad", nonce, key)  # adct
        hashlib.sha512(key).digest()
        _enc(self.inner, b"ad", nonce, key)  # rct


class RawIngest:
    """The primitive calls of one S-Process on a voucher that opens (``match``) or not."""

    def __init__(self, params, voucher: bytes, alpha: bytes, point: bytes) -> None:
        self.pairs, self.voucher, self.alpha, self.Q = params.pairs(), voucher, alpha, point
        key, nonce = os.urandom(32), os.urandom(24)
        self.key, self.nonce = key, nonce
        self.ct = _enc(key, b"ad", nonce, key)
        self.rct = _enc(os.urandom(params.inner_bytes()), b"ad", nonce, key)

    def __call__(self, match: bool) -> None:
        hashlib.sha256(self.voucher).digest()
        for _ in range(self.pairs):
            z = sodium.crypto_scalarmult_ed25519_noclamp(self.alpha, self.Q)
            k = hashlib.blake2b(z, digest_size=32, key=self.key).digest()
            hashlib.sha512(k).digest()
        if match:
            _dec(self.ct, b"ad", self.nonce, self.key)
            hashlib.sha512(self.key).digest()
            _dec(self.rct, b"ad", self.nonce, self.key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=str(ROOT / "protocols" / "tpsi-ad.toml"))
    ap.add_argument("--db", type=int, default=2000, help="database size (hashes)")
    ap.add_argument("--vouchers", type=int, default=300, help="vouchers generated and ingested")
    args = ap.parse_args()

    proto = get_protocol("tpsi-ad")
    preset = proto.Params.from_toml(args.preset)
    # Real vouchers only: synthetic ones skip most of the work and would flatter the ratio.
    params = proto.Params(**{**preset.to_dict(), "synthetic_probability": 0.0})
    rng = np.random.default_rng(0)
    db = HashArray.random(args.db, 64, rng)
    server, public = proto.server_setup(db, params)
    client = proto.client(public, params)
    n = args.vouchers
    matches = [i % 2 == 0 for i in range(n)]
    others = HashArray.random(n, 64, rng)
    queries = [db[i % len(db)] if m else others[i] for i, m in enumerate(matches)]
    payload = bytes(params.payload_size)

    raw_voucher = RawVoucher(params, client.table.entry(0), client.table.L)
    gen, raw_gen = [], []
    vouchers = []
    for q in queries:
        t0 = time.perf_counter()
        vouchers.append(client.scan(q, payload=payload))
        t1 = time.perf_counter()
        raw_voucher()
        t2 = time.perf_counter()
        gen.append(t1 - t0)
        raw_gen.append(t2 - t1)

    raw_ingest = RawIngest(params, vouchers[0], os.urandom(31) + b"\x01", client.table.L)
    ing, raw_ing = [], []
    for v, m in zip(vouchers, matches, strict=True):
        t0 = time.perf_counter()
        server.ingest("bench", v)
        t1 = time.perf_counter()
        raw_ingest(m)
        t2 = time.perf_counter()
        ing.append(t1 - t0)
        raw_ing.append(t2 - t1)

    t0 = time.perf_counter()
    reveal = server.reveal("bench")
    t_reveal = time.perf_counter() - t0
    assert reveal.over_threshold and len(reveal.matches) == sum(matches)

    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"{os.cpu_count()} cpus | Python {platform.python_version()} | PyNaCl {sodium.__name__ and __import__('nacl').__version__}")
    print(f"tpsi-ad ({Path(args.preset).name}, synthetic off): t={params.threshold}, detectable-hash width="
          f"{params.dhf_width()}, {params.pairs()} (Q, ct) pairs, voucher {len(vouchers[0])} bytes, "
          f"database {args.db}, {n} vouchers ({sum(matches)} matching)")
    # Medians resist load spikes on a shared machine; the ratio of medians is the headline figure.
    print(f"{'step (median of ' + str(n) + ')':<30}{'e2escan us':>12}{'raw libsodium us':>18}{'ratio':>8}"
          f"{'ratio of means':>16}")
    for label, ours, raw in (("C-Gen-Voucher (per image)", gen, raw_gen), ("S-Process (per voucher)", ing, raw_ing)):
        mo, mr = float(np.median(ours)) * 1e6, float(np.median(raw)) * 1e6
        print(f"{label:<30}{mo:>12.1f}{mr:>18.1f}{mo / mr:>8.2f}{sum(ours) / sum(raw):>16.2f}")
    print(f"reveal once over the threshold ({sum(matches)} genuine shares, detection + reconstruction + "
          f"{sum(matches)} payload decryptions): {t_reveal * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
