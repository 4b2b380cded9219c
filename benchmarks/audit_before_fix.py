"""The leakage audit on the sealing layout before the nonce-bound commitment, reinstated by monkeypatch.

Up to commit 00051c5, ``seal`` wrote ``SHA-512(context || key)[32:] || nonce || AEAD``: the
commitment depended on the key alone, so it repeated in every payload ciphertext under one
account key. This script puts that layout back (in this process only) and runs the same audit
as ``e2escan audit --all`` (4,000 vouchers, seed 0, synthetic probabilities 0.01 and 0.5), so
the before/after tables in ``protocols/tpsi-ad.md`` can be regenerated:

    python benchmarks/audit_before_fix.py      # about 3 minutes
"""

from __future__ import annotations

import hashlib
import os

from e2escan.audit import audit_protocol
from e2escan.crypto.primitives import AEAD_NONCE_BYTES, aead_seal
from e2escan.protocols import tpsi_ad
from e2escan.report.audit import audit_table


def key_only_seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    d = hashlib.sha512(b"e2escan key commitment v1" + key).digest()
    nonce = os.urandom(AEAD_NONCE_BYTES)
    return d[32:] + nonce + aead_seal(d[:32], nonce, plaintext, ad)


def main() -> None:
    tpsi_ad.seal = key_only_seal
    rows = []
    for name in ["plaintext", "psi-exact", "tpsi-ad", "tpsi-ad-ball", "tpsi-ad-multiprobe"]:
        for p in ([None] if name in ("plaintext", "psi-exact") else [0.01, 0.5]):
            rows += audit_protocol(name, vouchers=4000, synthetic_probability=p, seed=0).rows()
    print(audit_table(rows))


if __name__ == "__main__":
    main()
