"""The ``tpsi-ad`` voucher format, what the server learns (``LEAKAGE``) and its ideal world."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..crypto import group, smallfield
from ..crypto.codec import FieldSpec, Schema
from ..errors import (
    VoucherError,
)
from .base import (
    LeakageProfile,
)
from .ideal import (
    Draw,
    IdealFunctionality,
    Link,
    ShareRows,
    fresh_fields,
    random_bytes_field,
    random_points_field,
)
from .sealing import (
    ONCE_OVERHEAD,
)
from .tpsi_ad_params import CT_BYTES, TpsiAdParams


def voucher_schema(params: TpsiAdParams) -> Schema:
    pairs = params.pairs()
    return Schema(
        f"{params.PROTOCOL} voucher",
        b"E2TV",
        1,
        (
            FieldSpec("Q", group.POINT_BYTES * pairs),
            FieldSpec("ct", CT_BYTES * pairs),
            FieldSpec("rct", params.inner_bytes() + ONCE_OVERHEAD),
        ),
        error=VoucherError,
    )


DESCRIPTIONS = {
    "index": "position of the voucher among the account's vouchers",
    "length": "voucher length in bytes (the same for every voucher of a parameter set)",
    "opened": "whether the outer layer opened: a real match or a synthetic voucher (indistinguishable below t)",
    "opened_pairs": "how many (Q, ct) pairs opened (0 or 1, except multiprobe; see its spec)",
    "inner_layer": "for opened vouchers: share (x, f(x)), detectable-hash values and the payload ciphertext; "
    "uniformly random below t whether real or synthetic; x repeats for re-sent copies (dedup = hash)",
    "is_match": "over the threshold: whether the voucher is a genuine match (synthetic ones are told apart)",
    "payload": "over the threshold: the decrypted payload of genuine matches (None otherwise)",
    "vouchers": "number of vouchers received for the account",
    "opened_count": "number of vouchers whose outer layer opened (real matches plus synthetic)",
    "distinct_opened": "number of distinct share abscissas among opened vouchers",
    "matches": "over the threshold: number of genuine matching vouchers",
    "account_key": "over the threshold: the account key adkey (decrypts every genuine payload)",
    "table_size": "number of cells of the blinded table (an upper bound on the database size)",
    "hash_bits": "length of the database's hashes",
    "cuckoo_layout": "the public cuckoo hash functions (which cells a hash would occupy)",
}

LEAKAGE = LeakageProfile(
    server_voucher=("index", "length", "opened", "opened_pairs", "inner_layer"),
    server_account=("vouchers", "opened_count", "distinct_opened"),
    server_voucher_over=("is_match", "payload"),
    server_account_over=("matches", "account_key"),
    client=("table_size", "hash_bits", "cuckoo_layout"),
    descriptions=DESCRIPTIONS,
)


def ideal_functionality(params: TpsiAdParams) -> IdealFunctionality:
    """Below the threshold, the server's view as ``LEAKAGE`` declares it (spec: "What each party learns").

    * the voucher: the schema's framing, ``Q`` uniformly random points, ``ct``
      and ``rct`` uniformly random bytes of their lengths;
    * ``opened`` iff the image is a member or the voucher is synthetic;
      ``opened_pairs`` 1 for a synthetic voucher, else the pairs a real
      voucher of the image opens (0 or 1; multiprobe: the members among its probes);
    * ``inner_layer`` of an opened voucher: ``x`` and share uniformly random
      scalars; the detectable-hash part uniformly random elements of its
      field (``p64``: ``x0`` and ``width`` values in the 64-bit field;
      ``scalar``: ``width`` scalars); all the same for every voucher of one
      hash under ``dedup = "hash"`` (declared linkage) and fresh per voucher
      otherwise; ``adct`` fresh random bytes for every voucher;
    * account counts from those records.
    """
    schema = voucher_schema(params)
    pairs = params.pairs()
    sizes = {"Q": group.POINT_BYTES * pairs, "ct": CT_BYTES * pairs, "rct": params.inner_bytes() + ONCE_OVERHEAD}
    width = params.dhf_width()
    per_hash = params.dedup == "hash"
    p64 = params.dhf_field == "p64"

    def link(d: Draw, what: str) -> Link | None:
        return (d.truth.account, d.truth.hash, what) if per_hash else None

    def opened(d: Draw) -> bool:
        return d.truth.synthetic or d.truth.member

    def inner(d: Draw) -> tuple[bytes, bytes, tuple[bytes, ...], bytes] | None:
        if not opened(d):
            return None
        x, y = d.fresh.scalar(link(d, "x")), d.fresh.scalar(link(d, "y"))
        if p64:
            dhf = tuple(d.fresh.element64(link(d, f"dhf{i}")) for i in range(width + 1)) if width else ()
        else:
            dhf = tuple(d.fresh.scalar(link(d, f"dhf{i}")) for i in range(width))
        return (x, y, dhf, d.fresh.bytes(params.adct_bytes()))

    return IdealFunctionality(
        voucher=fresh_fields(schema, {"Q": random_points_field, "ct": random_bytes_field, "rct": random_bytes_field}, sizes),
        record={
            "index": lambda d: d.truth.index,
            "length": lambda d: len(d.voucher),
            "opened": opened,
            "opened_pairs": lambda d: 1 if d.truth.synthetic else d.truth.openings,
            "inner_layer": inner,
        },
        account={
            "vouchers": lambda records, truths: len(records),
            "opened_count": lambda records, truths: sum(bool(r["opened"]) for r in records),
            "distinct_opened": lambda records, truths: len(
                {r["inner_layer"][0] for r in records if r["inner_layer"] is not None}
            ),
        },
        share_rows=lambda record: share_rows(params, record),
        schema=schema,
        component_names={"record.inner_layer": ("x", "share", "dhf", "adct")},
    )


def share_rows(params: TpsiAdParams, record: Mapping[str, Any]) -> tuple[ShareRows, ...]:
    """The polynomial evaluations an opened record carries, per field (for the audit's relation search).

    The Shamir share ``(x, y)`` over the scalar field; the detectable hash over the same field at
    ``x`` (``scalar``) or over the 64-bit field at its own abscissa ``x0`` (``p64``).
    """
    layer = record.get("inner_layer")
    if layer is None:
        return ()
    x, y, dhf, _ = layer
    xi = int.from_bytes(x, "little")
    values = [int.from_bytes(v, "little") for v in dhf]
    if params.dhf_field == "scalar" or not values:
        names = ("share", *(f"dhf{i}" for i in range(len(values))))
        return (ShareRows(group.ELL, xi, (int.from_bytes(y, "little"), *values), names),)
    return (
        ShareRows(group.ELL, xi, (int.from_bytes(y, "little"),), ("share",)),
        ShareRows(smallfield.P64, values[0], tuple(values[1:]), tuple(f"dhf{i}" for i in range(len(values) - 1))),
    )

