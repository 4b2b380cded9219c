"""The ``tpsi-ad`` server: S-Process and the threshold (detection, reconstruction, classification)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..crypto import group, smallfield
from ..crypto.codec import Decoded
from ..crypto.shamir import (
    GenuineDetector,
    Share,
    evaluate_polynomial,
    interpolate_polynomial,
    reconstruct,
)
from ..errors import (
    AuthenticationError,
    DecodeError,
    InvalidPointError,
    SecretSharingError,
    VoucherError,
)
from .base import (
    MatchServer,
    Reveal,
    VoucherPointError,
    VoucherReplayError,
    check_account,
    check_voucher,
    frozen_record,
)
from .blinded_table import ServerTableState
from .sealing import (
    open_once,
    open_sealed,
    unpad_payload,
)
from .tpsi_ad_device import _account_aead_key
from .tpsi_ad_params import CT_BYTES, SC, TpsiAdParams
from .tpsi_ad_voucher import voucher_schema

# --- S-Process -------------------------------------------------------------------


@dataclass
class _Inner:
    x: bytes
    y: bytes
    dhf: tuple[bytes, ...]
    adct: bytes


@dataclass
class _Account:
    records: list[dict[str, object]] = field(default_factory=list)
    rows: dict[bytes, tuple[bytes, tuple[bytes, ...]]] = field(default_factory=dict)
    coefficients: list[bytes] | None = None
    adkey: bytes | None = None
    classified: int = 0
    failed_at_rows: int = -1
    detector: GenuineDetector | None = None  # the opened rows, in arrival order, for the detectable hash
    detector_shares: list[bytes] = field(default_factory=list)  # the share x of each detector row, in order


class TpsiAdServer(MatchServer):
    """S-Process. Holds ``alpha`` and, per account, what the vouchers let it open."""

    def __init__(self, state: ServerTableState, params: TpsiAdParams) -> None:
        self.params = params
        self._alpha = state.alpha
        self._public = state.public
        self._ctx = state.public.context
        self._schema = voucher_schema(params)
        self._accounts: dict[str, _Account] = {}
        self._seen: set[bytes] = set()
        self.database_size = len(state.cuckoo)

    # -- ingest --------------------------------------------------------------------
    def _points(self, d: Decoded) -> list[bytes]:
        """The voucher's points ``Q``; a replay is any voucher that repeats one (in any pair order, any account).

        Every ``Q`` is a fresh uniformly random point (a real pair's ``beta * H(y) + gamma * G``, a synthetic
        opener's ``gamma * G``, a dummy's random point), so an honest device repeats one with probability
        about 2^-252. Keying on the points rather than the voucher's bytes refuses a voucher whose pairs were
        reordered, which would otherwise open again and count again.
        """
        qs = d["Q"]
        points = [qs[32 * j : 32 * j + 32] for j in range(len(qs) // 32)]
        if len(set(points)) != len(points):
            raise VoucherError(f"{self.params.PROTOCOL} voucher field 'Q': the same point appears twice")
        if any(q in self._seen for q in points):
            raise VoucherReplayError(
                f"{self.params.PROTOCOL} voucher: a point Q of this voucher was ingested before (a replay, "
                "possibly with its pairs reordered)"
            )
        return points

    def _open(self, d: Decoded) -> tuple[int, _Inner | None]:
        p = self.params
        qs, cts, q_off = d["Q"], d["ct"], d.offsets["Q"]
        rkey = None
        opened = 0
        for j in range(p.pairs()):
            try:
                z = group.scalar_mult(
                    self._alpha,
                    qs[32 * j : 32 * j + 32],
                    f"{p.PROTOCOL} voucher field 'Q' entry {j} at byte offset {q_off + 32 * j}",
                )
            except InvalidPointError as exc:
                raise VoucherPointError(str(exc)) from exc
            try:
                key = open_once(self._public.key_from_element(z), cts[CT_BYTES * j : CT_BYTES * (j + 1)], self._ctx)
            except AuthenticationError:
                continue
            opened += 1
            rkey = rkey or key
        if rkey is None:
            return 0, None
        rct_off = d.offsets["rct"]
        try:
            inner = open_once(rkey, d["rct"], self._ctx, "rct")
        except (AuthenticationError, DecodeError) as exc:
            raise VoucherError(
                f"{p.PROTOCOL} voucher field 'rct' at byte offset {rct_off}: does not open under the key "
                "carried by 'ct' (inconsistent voucher)"
            ) from exc
        return opened, self._parse_inner(inner)

    def _parse_inner(self, inner: bytes) -> _Inner:
        """Split and validate the inner layer: every scalar below ``ELL``, every 64-bit element below ``P64``."""
        p = self.params
        p64 = p.dhf_field == "p64" and p.dhf_width() > 0
        size = smallfield.ELEMENT_BYTES if p64 else SC
        n_dhf = p.dhf_width() + 1 if p64 else p.dhf_width()
        start = 2 * SC
        dhf = tuple(inner[start + size * i : start + size * (i + 1)] for i in range(n_dhf))
        x, y = inner[:SC], inner[SC : 2 * SC]
        bound = smallfield.P64 if p64 else group.ELL
        rest = inner[start + size * n_dhf :]
        # Fast path: one range check per value; the slow path below names the first bad field.
        if (
            x != group.SCALAR_ZERO
            and int.from_bytes(x, "little") < group.ELL
            and int.from_bytes(y, "little") < group.ELL
            and all(int.from_bytes(v, "little") < bound for v in dhf)
        ):
            return _Inner(x, y, dhf, rest)
        where = f"{p.PROTOCOL} voucher inner layer"
        try:
            group.require_scalar(x, f"{where}: share x (inner byte offset 0)", nonzero=True)
            group.require_scalar(y, f"{where}: share y (inner byte offset {SC})")
            for i, v in enumerate(dhf):
                what = f"{where}: detectable-hash value {i} (inner byte offset {start + size * i})"
                if p64:
                    smallfield.require_element(v, what)
                else:
                    group.require_scalar(v, what)
        except DecodeError as exc:
            raise VoucherError(str(exc)) from exc
        raise AssertionError("unreachable: the fast path accepts every valid inner layer")  # pragma: no cover

    def ingest(self, account: str, voucher: bytes) -> Mapping[str, object]:
        """S-Process for one voucher; a malformed, foreign or replayed voucher changes nothing."""
        check_account(account)
        decoded = self._schema.decode(check_voucher(voucher, self.params.PROTOCOL))
        points = self._points(decoded)
        opened_pairs, inner = self._open(decoded)
        # Everything is validated; only now is state changed.
        acc = self._accounts.setdefault(account, _Account())
        acc.records.append(
            {
                "index": len(acc.records),
                "length": len(voucher),
                "opened": inner is not None,
                "opened_pairs": opened_pairs,
                "inner_layer": inner,
            }
        )
        if inner is not None and inner.x not in acc.rows:
            if self.params.dhf_width() and acc.adkey is None:  # after the key is recovered it is not needed
                self._detect_row(acc, inner)
            acc.rows[inner.x] = (inner.y, inner.dhf)
        self._seen.update(points)
        return self._export(acc.records[-1])

    def _detect_row(self, acc: _Account, inner: _Inner) -> None:
        """Feed the detectable hash the row of a newly opened share (values already validated).

        ``p64``: the row is ``(x0, values)`` at the hash's own abscissa. A repeated ``x0`` under a
        new share ``x`` (probability about ``m^2 / 2^65`` for an honest device; otherwise a
        malformed device) cannot join the detector, so that share is never counted as genuine.
        """
        p = self.params
        p64 = p.dhf_field == "p64"
        if acc.detector is None:
            acc.detector = GenuineDetector(p.threshold - 2, p.dhf_width(), smallfield.P64 if p64 else group.ELL)
        row_x, values = (inner.dhf[0], inner.dhf[1:]) if p64 else (inner.x, inner.dhf)
        if acc.detector.seen(row_x):
            return
        acc.detector.add(row_x, values)
        acc.detector_shares.append(inner.x)

    # -- threshold -----------------------------------------------------------------
    def _try_recover(self, acc: _Account) -> None:
        t = self.params.threshold
        if acc.adkey is not None or len(acc.rows) < t or len(acc.rows) == acc.failed_at_rows:
            return
        xs = list(acc.rows)
        if t == 1:
            self._recover_single(acc)
            return
        if acc.detector is not None:
            genuine = [acc.detector_shares[i] for i in sorted(acc.detector.genuine())]
        else:
            genuine = xs
        if len(genuine) < t:
            acc.failed_at_rows = len(acc.rows)
            return
        shares = [Share(x, acc.rows[x][0]) for x in genuine]
        try:
            secret = reconstruct(shares, t)
        except SecretSharingError:
            acc.failed_at_rows = len(acc.rows)
            return
        adkey = _account_aead_key(secret)
        # Confirm the key: the payload ciphertexts of the shares used must open under it. With
        # exactly t shares nothing else could reveal a wrongly detected set.
        used = set(genuine[:t])
        for rec in acc.records:
            inner = rec["inner_layer"]
            if isinstance(inner, _Inner) and inner.x in used:
                used.discard(inner.x)
                try:
                    open_sealed(adkey, inner.adct, self._ctx, "adct")
                except (AuthenticationError, DecodeError):
                    acc.failed_at_rows = len(acc.rows)
                    return
        acc.coefficients = interpolate_polynomial(shares[:t])
        acc.adkey = adkey
        acc.detector = None
        acc.detector_shares = []

    def _recover_single(self, acc: _Account) -> None:
        """``t = 1``: the genuine shares' value is the account key; find one by trial decryption."""
        for rec in acc.records:
            inner = rec["inner_layer"]
            if not isinstance(inner, _Inner):
                continue
            adkey = _account_aead_key(inner.y)
            try:
                open_sealed(adkey, inner.adct, self._ctx, "adct")
            except (AuthenticationError, DecodeError):
                continue
            acc.coefficients, acc.adkey = [inner.y], adkey
            return
        acc.failed_at_rows = len(acc.rows)

    def _classify(self, acc: _Account) -> None:
        assert acc.coefficients is not None and acc.adkey is not None
        for rec in acc.records[acc.classified :]:
            inner = rec["inner_layer"]
            payload = None
            if isinstance(inner, _Inner) and evaluate_polynomial(acc.coefficients, inner.x) == inner.y:
                try:
                    padded = open_sealed(acc.adkey, inner.adct, self._ctx, "adct")
                    payload = unpad_payload(padded, self.params.payload_size)
                except (AuthenticationError, DecodeError):
                    payload = None  # a genuine share with a bad payload ciphertext: not revealed
            rec["is_match"] = payload is not None
            rec["payload"] = payload
        acc.classified = len(acc.records)

    def reveal(self, account: str) -> Reveal:
        acc = self._accounts.get(account)
        if acc is None:
            return Reveal(account, 0, (), (), False, self.params.threshold)
        self._try_recover(acc)
        if acc.adkey is None:
            return Reveal(account, len(acc.records), (), (), False, self.params.threshold)
        self._classify(acc)
        hits = [r for r in acc.records if r["is_match"]]
        return Reveal(
            account=account,
            vouchers=len(acc.records),
            matches=tuple(r["payload"] for r in hits),  # type: ignore[misc]
            match_indices=tuple(r["index"] for r in hits),  # type: ignore[misc]
            over_threshold=True,
            threshold=self.params.threshold,
        )

    # -- what the server holds -----------------------------------------------------
    def observed(self, account: str) -> tuple[Mapping[str, object], ...]:
        acc = self._accounts.get(account)
        if acc is None:
            return ()
        return tuple(self._export(rec) for rec in acc.records)

    @staticmethod
    def _export(rec: dict[str, object]) -> Mapping[str, object]:
        inner = rec["inner_layer"]
        exported = dict(rec)
        if isinstance(inner, _Inner):
            exported["inner_layer"] = (inner.x, inner.y, inner.dhf, inner.adct)
        return frozen_record(**exported)

    def account_view(self, account: str) -> Mapping[str, object]:
        acc = self._accounts.get(account)
        if acc is None:
            return frozen_record(vouchers=0, opened_count=0, distinct_opened=0)
        view: dict[str, object] = {
            "vouchers": len(acc.records),
            "opened_count": sum(bool(r["opened"]) for r in acc.records),
            "distinct_opened": len(acc.rows),
        }
        if acc.adkey is not None:
            self._classify(acc)
            view["matches"] = sum(bool(r["is_match"]) for r in acc.records)
            view["account_key"] = acc.adkey
        return frozen_record(**view)

    def accounts(self) -> tuple[str, ...]:
        return tuple(self._accounts)


