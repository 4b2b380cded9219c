"""``tpsi-ad``: threshold PSI with associated data, after the Apple PSI System.

Bhowmick, Boneh, Myers, Talwar, Tarbe, "The Apple PSI System" (2021), §4.
Steps, named as in the paper (spec: ``protocols/tpsi-ad.md``):

* **S-Init** (:func:`~.blinded_table.build_blinded_table`): blinded cuckoo
  table ``L = alpha * G``, ``P_i = alpha * H(T[i])``, random elements in empty
  cells.
* **C-Init** (:class:`TpsiAdScanner`): per account, a random account key
  ``adkey`` (a scalar), a Shamir polynomial ``f`` of degree ``t - 1`` with
  ``f(0) = adkey``, a detectable-hash key (``width = synthetic_capacity``
  polynomials of degree ``t - 2``), a PRF key for share abscissas and a secret
  key for synthetic-voucher decisions.
* **C-Gen-Voucher** (:meth:`TpsiAdScanner.scan`): inner layer ``adct =
  Enc(adkey, payload)`` and the share ``(x, f(x))`` plus detectable-hash values
  at ``x``, all encrypted under a fresh ``rkey``; outer layer, for every cell
  ``w`` that could hold the hash: random ``beta, gamma``, ``Q = beta * H(y) +
  gamma * G``, ``S = beta * P_w + gamma * L``, ``ct = Enc(H'(S), rkey)``. The
  ``(Q, ct)`` pairs are shuffled. With probability ``synthetic_probability`` the
  device instead emits a *synthetic* voucher: one pair is ``Q = gamma * G``,
  ``S = gamma * L`` (so it always opens), the others are random, and the inner
  layer carries a random share, random detectable-hash values and a random
  ``adct``. A synthetic voucher replaces the real one, so a matching image
  sent synthetically is not detected (recall ``1 - synthetic_probability``).
* **S-Process** (:class:`TpsiAdServer`): ``S^ = alpha * Q`` for every pair;
  a pair that opens gives ``rkey`` and the inner layer. Below ``t`` distinct
  genuine shares the server cannot tell real from synthetic openings (both
  shares and detectable-hash values are uniformly random). Once there are
  ``t`` genuine ones, the detectable hash identifies them
  (:class:`~e2escan.crypto.shamir.GenuineDetector`, fed as vouchers open), Shamir reconstruction with
  the consistency check recovers ``adkey``, and every genuine voucher's
  ``adct`` is decrypted; later vouchers are classified by checking their share
  against the recovered polynomial.

Re-sent copies: with ``dedup = "hash"`` (default) the share abscissa ``x`` is a
PRF of the image hash, and the synthetic decision and synthetic values are
too, so every copy of an image carries the same share and counts once toward
``t`` (the paper derives ``x`` from a per-image identifier, so copies with
fresh identifiers each count). ``dedup = "none"`` reproduces the paper's
behaviour (fresh ``x`` per voucher).
"""

from __future__ import annotations

from typing import Any

from ..crypto import smallfield
from ..crypto.shamir import (
    SharingPolynomial,
)
from ..hashing import HashArray
from .base import (
    Protocol,
    ProtocolParams,
    Scanner,
    StatisticalModel,
    WireSizes,
    check_database,
    unique_rows,
)
from .blinded_table import build_blinded_table
from .ideal import (
    IdealFunctionality,
)
from .tpsi_ad_device import TpsiAdScanner, seeded_coin
from .tpsi_ad_params import CT_BYTES, DHF_FIELDS, NAME, SC, TpsiAdParams
from .tpsi_ad_server import TpsiAdServer
from .tpsi_ad_voucher import (
    DESCRIPTIONS,
    LEAKAGE,
    ideal_functionality,
    share_rows,
    voucher_schema,
)

__all__ = [
    "CT_BYTES",
    "DESCRIPTIONS",
    "DHF_FIELDS",
    "LEAKAGE",
    "NAME",
    "SC",
    "SharingPolynomial",
    "TpsiAdParams",
    "TpsiAdProtocol",
    "TpsiAdScanner",
    "TpsiAdServer",
    "ideal_functionality",
    "seeded_coin",
    "share_rows",
    "smallfield",
    "voucher_schema",
]


class TpsiAdProtocol(Protocol):
    name = NAME
    summary = "threshold PSI with associated data (Apple PSI): nothing below t matches, payloads at t"
    Params = TpsiAdParams
    LEAKAGE = LEAKAGE
    PUBLIC_MAGIC = b"E2TP"

    def _database_items(self, database: HashArray, params: TpsiAdParams) -> list[bytes]:
        return unique_rows(database)

    def match_radius(self, params: ProtocolParams) -> int:
        return 0  # exact matching; the ball variant overrides this

    def payload_size(self, params: ProtocolParams) -> int:
        assert isinstance(params, TpsiAdParams)
        return params.payload_size

    def synthetic_probability(self, params: ProtocolParams) -> float:
        assert isinstance(params, TpsiAdParams)
        return params.synthetic_probability

    def synthetic_capacity(self, params: ProtocolParams) -> int:
        assert isinstance(params, TpsiAdParams)
        return params.synthetic_capacity

    def statistical_model(self, params: ProtocolParams) -> StatisticalModel:
        self.check_params(params)
        assert isinstance(params, TpsiAdParams)
        return StatisticalModel(radius=self.match_radius(params), threshold=params.threshold,
                                copies_once=self.counts_copies_once(params),
                                synthetic_probability=params.synthetic_probability,
                                synthetic_capacity=params.synthetic_capacity)

    def table_entries(self, params: ProtocolParams, database_hashes: int, bits: int) -> int:
        """Hashes placed in the blinded table for a database of ``database_hashes`` distinct hashes."""
        return database_hashes

    def wire_sizes(self, params: ProtocolParams, database_hashes: int, bits: int = 64,
                   payload_bytes: int | None = None) -> WireSizes:
        from .blinded_table import wire_sizes

        assert isinstance(params, TpsiAdParams)
        return wire_sizes(self.table_entries(params, database_hashes, bits), params.cuckoo_load, params.stash_size,
                          voucher_schema(params))

    def seed_client(self, client: Scanner, rng: Any, params: ProtocolParams) -> None:
        """Replace the device's OS coin for synthetic-voucher decisions with a seeded one (simulation only)."""
        assert isinstance(client, TpsiAdScanner) and isinstance(params, TpsiAdParams)
        client.coin_source = seeded_coin(rng, params.dedup == "hash")

    def threshold(self, params: ProtocolParams) -> int | None:
        self.check_params(params)
        assert isinstance(params, TpsiAdParams)
        return params.threshold

    def counts_copies_once(self, params: ProtocolParams) -> bool:
        self.check_params(params)
        assert isinstance(params, TpsiAdParams)
        return params.dedup == "hash"

    def ideal_functionality(self, params: ProtocolParams, hash_bits: int) -> IdealFunctionality:
        self.check_params(params)
        assert isinstance(params, TpsiAdParams)
        return ideal_functionality(params)

    def server_setup(
        self, database: HashArray, params: ProtocolParams, rng: Any = None, *, progress: bool = False
    ) -> tuple[TpsiAdServer, bytes]:
        self.check_params(params)
        assert isinstance(params, TpsiAdParams)
        check_database(database, f"{self.name}.server_setup")
        state = build_blinded_table(
            self.name,
            params.fingerprint(),
            self._database_items(database, params),
            database.bits,
            num_hashes=params.cuckoo_hashes,
            load=params.cuckoo_load,
            stash_size=params.stash_size,
            progress=progress,
        )
        return TpsiAdServer(state, params), state.public.encode(self.PUBLIC_MAGIC)

    def table_server(self, state: Any, params: ProtocolParams) -> tuple[TpsiAdServer, bytes]:
        self.check_params(params)
        assert isinstance(params, TpsiAdParams)
        return TpsiAdServer(state, params), state.public.encode(self.PUBLIC_MAGIC)

    def client(self, public: bytes, params: ProtocolParams) -> TpsiAdScanner:
        self.check_params(params)
        assert isinstance(params, TpsiAdParams)
        return TpsiAdScanner(self.name, self.PUBLIC_MAGIC, public, params)
