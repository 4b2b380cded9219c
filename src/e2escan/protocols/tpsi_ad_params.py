"""``tpsi-ad`` parameters and the sizes that follow from them (spec: ``protocols/tpsi-ad.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..crypto import group, smallfield
from ..errors import (
    ConfigError,
)
from .base import (
    ProtocolParams,
    check_float,
    check_int,
)
from .sealing import (
    KEY_BYTES,
    ONCE_OVERHEAD,
    SEAL_OVERHEAD,
)

NAME = "tpsi-ad"
SC = group.SCALAR_BYTES
CT_BYTES = KEY_BYTES + ONCE_OVERHEAD
_DEDUP_MODES = ("hash", "none")
#: Fields of the detectable hash: the paper's 64-bit prime field (§4.3) or edwards25519's scalar field.
DHF_FIELDS = ("p64", "scalar")


@dataclass(frozen=True)
class TpsiAdParams(ProtocolParams):
    """Parameters of the threshold variants; see ``protocols/tpsi-ad.md`` for each one's meaning."""

    PROTOCOL: ClassVar[str] = NAME

    threshold: int = 30
    payload_size: int = 256
    cuckoo_hashes: int = 2
    cuckoo_load: float = 0.45
    stash_size: int = 0
    synthetic_probability: float = 0.01
    synthetic_capacity: int = 32
    dedup: str = "hash"
    dhf_field: str = "p64"

    def __post_init__(self) -> None:
        p = self.PROTOCOL
        check_int(f"{p}.threshold", self.threshold, 1, 4096)
        check_int(f"{p}.payload_size", self.payload_size, 0, 2**20)
        check_int(f"{p}.cuckoo_hashes", self.cuckoo_hashes, 2, 8)
        check_float(f"{p}.cuckoo_load", self.cuckoo_load, 0.0, 1.0, lo_open=True)
        check_int(f"{p}.stash_size", self.stash_size, 0, 64)
        check_float(f"{p}.synthetic_probability", self.synthetic_probability, 0.0, 1.0, hi_open=True)
        check_int(f"{p}.synthetic_capacity", self.synthetic_capacity, 0, 4096)
        if self.synthetic_probability > 0 and self.synthetic_capacity == 0:
            raise ConfigError(
                f"{p}.synthetic_capacity = 0 with synthetic_probability = {self.synthetic_probability}: "
                "synthetic vouchers need a capacity >= 1 (the detectable hash tolerates that many)"
            )
        if self.dedup not in _DEDUP_MODES:
            raise ConfigError(f"{p}.dedup = {self.dedup!r}; accepted: {', '.join(_DEDUP_MODES)}")
        if self.dhf_field not in DHF_FIELDS:
            raise ConfigError(f"{p}.dhf_field = {self.dhf_field!r}; accepted: {', '.join(DHF_FIELDS)}")

    # Sizes that follow from the parameters (every voucher of a parameter set has one length).
    def probes(self) -> int:
        return 1

    def pairs(self) -> int:
        return self.probes() * (self.cuckoo_hashes + self.stash_size)

    def adct_bytes(self) -> int:
        return SEAL_OVERHEAD + 4 + self.payload_size

    def dhf_width(self) -> int:
        """Detectable-hash values per voucher: ``synthetic_capacity``, or 0 at ``threshold = 1``.

        At ``t = 1`` a genuine share's value is the account key itself, so the
        server recognises genuine shares by trial decryption and needs no
        detectable hash.
        """
        return self.synthetic_capacity if self.threshold >= 2 else 0

    def dhf_bytes(self) -> int:
        """Bytes of the detectable-hash part of the inner layer.

        ``p64`` (the paper's construction): ``(width + 1) * 8``, the hash's own abscissa ``x0`` and
        ``width`` values in the 64-bit field; ``scalar``: ``width * 32``, values in the scalar field
        evaluated at the share's ``x``. 0 when there is no detectable hash (``threshold = 1``).
        """
        width = self.dhf_width()
        if width == 0:
            return 0
        if self.dhf_field == "p64":
            return (width + 1) * smallfield.ELEMENT_BYTES
        return width * SC

    def inner_bytes(self) -> int:
        return 2 * SC + self.dhf_bytes() + self.adct_bytes()


