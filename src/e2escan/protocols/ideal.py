"""Ideal functionalities: the ``LEAKAGE`` declaration as a machine that produces a server's view.

The leakage audit (:mod:`e2escan.audit`) compares what a server holds in the
real world with what it would hold if it learnt only what its protocol
declares. The ideal world is built here, one :class:`IdealFunctionality` per
protocol, from three kinds of rule:

* **declared** values, computed from the simulation's ground truth
  (:class:`VoucherTruth`) by their meaning in ``LEAKAGE``: ``opened`` is
  "a member or a synthetic voucher", not a copy of the real bit;
* **fresh** values (:meth:`Fresh.scalar`, :meth:`Fresh.point`,
  :meth:`Fresh.bytes`): everything undeclared, uniformly random of the same
  kind and length, independent across vouchers and accounts;
* **declared linkage**: a fresh value drawn once per ``(account, link key)``
  and repeated, where ``LEAKAGE`` says that something repeats (``x`` for
  re-sent copies of one image under ``dedup = "hash"``).

Each rule is a function of a :class:`Draw` (the truth, the ideal voucher
bytes, the fresh randomness). The ideal world's records must carry exactly
the protocol's ``LEAKAGE`` voucher names (checked by :meth:`IdealFunctionality.check`).

Fresh randomness here is *simulation* randomness: it comes from the audit's
seeded ``numpy.random.Generator``, so an audit is reproducible. Group elements
are hashed to the group from those bytes (uniform in the prime-order
subgroup); scalars are 64 bytes reduced modulo the group order.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..crypto import group, smallfield
from ..crypto.codec import Schema
from ..errors import ProtocolError
from .base import LeakageProfile

_H2G_DST = b"e2escan-ideal-world-v1"


@dataclass(frozen=True, slots=True)
class VoucherTruth:
    """What the simulation knows about one voucher; the server never sees it.

    ``image`` is equal for re-sent copies of one image; ``member`` is the
    protocol's plaintext matcher; ``synthetic`` the device's secret decision;
    ``openings`` how many ``(Q, ct)`` pairs of a *real* voucher of this image
    would open (:meth:`~e2escan.protocols.base.Protocol.expected_openings`).
    """

    account: str
    index: int
    image: int
    hash: bytes
    payload: bytes
    member: bool
    distance: int
    synthetic: bool
    openings: int


#: A declared-linkage key: equal keys (within one account's :class:`Fresh`) draw the same value.
Link = tuple[Hashable, ...]


class Fresh:
    """Seeded fresh randomness for the ideal world; ``link`` keys repeat a value within an account.

    (Inside this class ``bytes`` names the method, so annotations say ``builtins.bytes``.)
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._linked: dict[Link, builtins.bytes] = {}

    def _once(self, key: Link | None, make: Callable[[], builtins.bytes]) -> builtins.bytes:
        if key is None:
            return make()
        if key not in self._linked:
            self._linked[key] = make()
        return self._linked[key]

    def bytes(self, n: int, link: Link | None = None) -> builtins.bytes:
        return self._once(None if link is None else ("bytes", n, *link), lambda: self._rng.bytes(n))

    def scalar(self, link: Link | None = None) -> builtins.bytes:
        return self._once(None if link is None else ("scalar", *link), lambda: group.scalar_reduce(self._rng.bytes(64)))

    def element64(self, link: Link | None = None) -> builtins.bytes:
        """A uniformly random element of the 64-bit field :data:`~e2escan.crypto.smallfield.P64`, encoded."""
        return self._once(
            None if link is None else ("element64", *link),
            lambda: smallfield.encode(int(self._rng.integers(0, smallfield.P64, dtype=np.uint64))),
        )

    def point(self, link: Link | None = None) -> builtins.bytes:
        return self._once(None if link is None else ("point", *link), lambda: group.hash_to_group(self._rng.bytes(32), _H2G_DST))

    def points(self, n: int) -> builtins.bytes:
        return b"".join(self.point() for _ in range(n))


@dataclass(frozen=True, slots=True)
class Draw:
    """The inputs of a rule: ground truth, the ideal voucher's bytes, fresh randomness."""

    truth: VoucherTruth
    voucher: bytes
    fresh: Fresh


@dataclass(frozen=True, slots=True)
class ShareRows:
    """One record's evaluations of secret polynomials at ``x``, over the prime field ``modulus``.

    ``values[i]`` is column ``columns[i]`` (the audit names its features after them). A
    record may carry rows of several fields, e.g. a Shamir share over the scalar field and
    detectable-hash values over the 64-bit field at their own abscissa.
    """

    modulus: int
    x: int
    values: tuple[int, ...]
    columns: tuple[str, ...]


Rule = Callable[[Draw], Any]
AccountRule = Callable[[Sequence[Mapping[str, Any]], Sequence[VoucherTruth]], Any]


@dataclass(frozen=True)
class IdealFunctionality:
    """The ideal world of one protocol at one parameter set.

    ``voucher(truth, fresh) -> bytes`` makes the voucher the relay would see;
    ``record`` maps each ``LEAKAGE`` voucher name to its rule; ``account``
    each ``LEAKAGE`` account name to a function of the account's ideal records
    and truths. ``share_rows(record)`` (optional) returns the :class:`ShareRows`
    of a record whose decoded values are evaluations of secret polynomials
    (threshold variants), so the audit can look for linear relations among
    them; ``()`` for records without any.
    """

    voucher: Callable[[VoucherTruth, Fresh], bytes]
    record: Mapping[str, Rule]
    account: Mapping[str, AccountRule]
    share_rows: Callable[[Mapping[str, Any]], Sequence[ShareRows]] | None = None
    schema: Schema | None = None
    #: Names of the components of tuple-valued fields, e.g. ``{"record.inner_layer": ("x", "share", "dhf", "adct")}``.
    component_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def check(self, leakage: LeakageProfile, protocol: str) -> None:
        """:class:`ProtocolError` unless the rules cover exactly the LEAKAGE names below the threshold."""
        for what, have, want in (
            ("voucher", set(self.record), set(leakage.voucher_keys(False))),
            ("account", set(self.account), set(leakage.account_keys(False))),
        ):
            if have != want:
                raise ProtocolError(
                    f"{protocol}: the ideal functionality's {what} fields {sorted(have)} differ from LEAKAGE's "
                    f"{sorted(want)} (missing: {sorted(want - have)}, undeclared: {sorted(have - want)})"
                )

    def run_voucher(self, truth: VoucherTruth, fresh: Fresh) -> tuple[bytes, dict[str, Any]]:
        voucher = self.voucher(truth, fresh)
        draw = Draw(truth, voucher, fresh)
        return voucher, {name: rule(draw) for name, rule in self.record.items()}

    def run_account(self, records: Sequence[Mapping[str, Any]], truths: Sequence[VoucherTruth]) -> dict[str, Any]:
        return {name: rule(records, truths) for name, rule in self.account.items()}


def fresh_fields(schema: Schema, kinds: Mapping[str, Callable[[Fresh, int], bytes]], sizes: Mapping[str, int]) -> Callable[[VoucherTruth, Fresh], bytes]:
    """A voucher of ``schema`` whose every field is fresh: ``kinds[name](fresh, size)`` for each field."""

    def make(truth: VoucherTruth, fresh: Fresh) -> bytes:
        return schema.encode({name: kinds[name](fresh, sizes[name]) for name in kinds})

    return make


def random_bytes_field(fresh: Fresh, size: int) -> bytes:
    return fresh.bytes(size)


def random_points_field(fresh: Fresh, size: int) -> bytes:
    if size % group.POINT_BYTES:
        raise ProtocolError(f"a points field of {size} bytes is not a whole number of {group.POINT_BYTES}-byte points")
    return fresh.points(size // group.POINT_BYTES)
