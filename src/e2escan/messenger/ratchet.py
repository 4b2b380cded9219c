"""The Double Ratchet (Signal specification, revision 1, 2016), with optional header encryption.

Function and variable names follow the specification: ``KDF_RK`` is
:func:`kdf_rk`, ``KDF_CK`` is :func:`kdf_ck`, ``RatchetEncrypt`` is
:meth:`Session.ratchet_encrypt`, ``DHRatchet`` happens inside
:meth:`Session.ratchet_decrypt`, and so on (sections 3 and 4).

Choices the specification leaves open:

* ``KDF_RK``: HKDF-SHA-256 with salt = RK, IKM = DH output, a 64-byte (96 with
  header encryption) output split into RK | CK [| NHK].
* ``KDF_CK``: HMAC-SHA-256(CK, 0x01) is the message key, HMAC-SHA-256(CK, 0x02)
  the next chain key.
* ``ENCRYPT``: XChaCha20-Poly1305 keyed by the message key with an all-zero
  nonce. Each message key encrypts exactly one message, which the specification
  (3.1) names as the condition for a constant nonce; it saves 24 bytes a message.
  Header encryption uses a random 24-byte nonce, since header keys are reused
  across a chain.
* Limits (:class:`RatchetLimits`): at most ``max_skip`` = 25,000 message keys
  skipped by one message in all, the rest of the old receiving chain and the
  start of the new one together (libsignal's MAX_FORWARD_JUMPS; checked from
  the header before any key is derived, so a forged header costs one check), at most 2,000 stored
  skipped keys per receiving chain (libsignal's MAX_MESSAGE_KEYS) with
  oldest-first eviction, and at most 5 old receiving chains remembered
  (libsignal's MAX_RECEIVER_CHAINS); the oldest chain is forgotten first. The
  bounds are counts of events, never timers, as the specification (6.7) advises.

A failed decryption changes nothing (specification 3.5): every step works on a
draft of the state and the draft is committed only after the AEAD verified.

**Deleting keys.** The specification asks that used message keys and old
chain keys be deleted. Python cannot wipe memory: ``bytes`` are immutable and
may be copied by the interpreter, so this module deletes a key by dropping
every reference to it and leaves the memory to the allocator. The simulator
treats a key as erased once no object of the session refers to it; the
forward-secrecy tests search a captured session for every 32-byte value it
still holds and try each as a message or chain key against earlier messages.
A real client would hold keys in memory it can overwrite (libsodium's
``sodium_memzero``, locked buffers).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass

from ..crypto import (
    X25519KeyPair,
    aead_decrypt,
    aead_encrypt,
    aead_open,
    aead_seal,
    hkdf,
    hmac_sha256,
    x25519,
)
from ..errors import (
    AuthenticationError,
    DecodeError,
    ReplayError,
    SessionError,
    TooManySkippedError,
)
from .wire import ENCRYPTED_HEADER_BYTES, Header, RatchetMessage

ZERO_NONCE = bytes(24)
ROOT_INFO = b"e2escan ratchet root v1"
ROOT_INFO_HE = b"e2escan ratchet root with header keys v1"
HEADER_AD = b"e2escan ratchet header v1"


@dataclass(frozen=True, slots=True)
class RatchetLimits:
    """Bounds that stop a malicious sender from making a receiver do unbounded work or storage."""

    max_skip: int = 25_000
    max_keys_per_chain: int = 2_000
    max_receiver_chains: int = 5

    def __post_init__(self) -> None:
        for name in ("max_skip", "max_keys_per_chain", "max_receiver_chains"):
            if getattr(self, name) < 1:
                raise ValueError(f"RatchetLimits.{name} must be at least 1")


def kdf_rk(rk: bytes, dh_out: bytes, header_keys: bool = False) -> tuple[bytes, ...]:
    """KDF_RK (or KDF_RK_HE): the new root key, chain key [, next header key]."""
    if header_keys:
        out = hkdf(dh_out, 96, salt=rk, info=ROOT_INFO_HE)
        return out[:32], out[32:64], out[64:]
    out = hkdf(dh_out, 64, salt=rk, info=ROOT_INFO)
    return out[:32], out[32:]


def kdf_ck(ck: bytes) -> tuple[bytes, bytes]:
    """KDF_CK: (next chain key, message key)."""
    return hmac_sha256(ck, b"\x02"), hmac_sha256(ck, b"\x01")


class SkippedKeys:
    """MKSKIPPED: message keys of skipped messages, grouped per receiving chain.

    A chain is identified by the sender's ratchet public key (or, with header
    encryption, by the header key). Chains are kept in the order they were
    left; a chain with no keys left is still remembered so that a replay of one
    of its messages is reported as a replay, not as tampering.
    """

    def __init__(self, limits: RatchetLimits) -> None:
        self.limits = limits
        self.chains: OrderedDict[bytes, OrderedDict[int, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(c) for c in self.chains.values())

    def get(self, chain: bytes, n: int) -> bytes | None:
        keys = self.chains.get(chain)
        return None if keys is None else keys.get(n)

    def knows(self, chain: bytes) -> bool:
        return chain in self.chains

    def add(self, chain: bytes, n: int, mk: bytes) -> None:
        keys = self.chains.get(chain)
        if keys is None:
            keys = self.remember(chain)
        keys[n] = mk
        while len(keys) > self.limits.max_keys_per_chain:
            keys.popitem(last=False)

    def remember(self, chain: bytes) -> OrderedDict[int, bytes]:
        keys = self.chains.setdefault(chain, OrderedDict())
        while len(self.chains) > self.limits.max_receiver_chains:
            self.chains.popitem(last=False)
        return keys

    def delete(self, chain: bytes, n: int) -> None:
        self.chains[chain].pop(n, None)


@dataclass(slots=True)
class _State:
    """The specification's state variables (section 3.2 and 4.2)."""

    DHs: X25519KeyPair
    DHr: bytes | None
    RK: bytes
    CKs: bytes | None
    CKr: bytes | None
    Ns: int = 0
    Nr: int = 0
    PN: int = 0
    HKs: bytes | None = None
    HKr: bytes | None = None
    NHKs: bytes | None = None
    NHKr: bytes | None = None


class Session:
    """One party's end of a Double Ratchet conversation.

    ``ad`` is the associated data fixed at session start (X3DH's
    ``Encode(IK_A) || Encode(IK_B)``); it is bound into every message.
    """

    def __init__(self, state: _State, ad: bytes, header_encryption: bool, limits: RatchetLimits) -> None:
        self._s = state
        self.ad = ad
        self.header_encryption = header_encryption
        self.limits = limits
        self.skipped = SkippedKeys(limits)
        self.received_any = False

    # -- initialisation (sections 3.3 and 4.3) --------------------------------

    @classmethod
    def ratchet_init_alice(
        cls,
        sk: bytes,
        bob_dh_public_key: bytes,
        ad: bytes,
        *,
        shared_hka: bytes | None = None,
        shared_nhkb: bytes | None = None,
        limits: RatchetLimits | None = None,
    ) -> Session:
        header_encryption = shared_hka is not None
        dhs = X25519KeyPair.generate()
        dh_out = x25519(dhs.private, bob_dh_public_key)
        if header_encryption:
            rk, cks, nhks = kdf_rk(sk, dh_out, True)
            state = _State(dhs, bob_dh_public_key, rk, cks, None, HKs=shared_hka, NHKs=nhks, NHKr=shared_nhkb)
        else:
            rk, cks = kdf_rk(sk, dh_out)
            state = _State(dhs, bob_dh_public_key, rk, cks, None)
        return cls(state, ad, header_encryption, limits or RatchetLimits())

    @classmethod
    def ratchet_init_bob(
        cls,
        sk: bytes,
        bob_dh_key_pair: X25519KeyPair,
        ad: bytes,
        *,
        shared_hka: bytes | None = None,
        shared_nhkb: bytes | None = None,
        limits: RatchetLimits | None = None,
    ) -> Session:
        header_encryption = shared_hka is not None
        state = _State(bob_dh_key_pair, None, sk, None, None)
        if header_encryption:
            state.NHKs = shared_nhkb
            state.NHKr = shared_hka
        return cls(state, ad, header_encryption, limits or RatchetLimits())

    # -- sending ---------------------------------------------------------------

    def ratchet_encrypt(self, plaintext: bytes) -> RatchetMessage:
        s = self._s
        if s.CKs is None:
            raise SessionError("this session cannot send before it has received a message (no sending chain yet)")
        s.CKs, mk = kdf_ck(s.CKs)
        header = Header(s.DHs.public, s.PN, s.Ns).encode()
        if self.header_encryption:
            if s.HKs is None:  # set with the sending chain: at init (Alice) or by the DH ratchet (Bob)
                raise SessionError("this session has a sending chain but no header key to send with")
            header = aead_encrypt(s.HKs, header, HEADER_AD)
        s.Ns += 1
        return RatchetMessage(header, aead_seal(mk, ZERO_NONCE, plaintext, self.ad + header), self.header_encryption)

    # -- receiving -------------------------------------------------------------

    def ratchet_decrypt(self, message: RatchetMessage) -> bytes:
        """Decrypt one message; on any failure raise and leave the session exactly as it was."""
        if message.header_encrypted != self.header_encryption:
            raise DecodeError(
                "ratchet message: header encryption flag is "
                f"{message.header_encrypted}, this session uses {self.header_encryption}"
            )
        if self.header_encryption:
            return self._decrypt_he(message)
        return self._decrypt_plain(message)

    def _open(self, mk: bytes, message: RatchetMessage) -> bytes:
        return aead_open(mk, ZERO_NONCE, message.ciphertext, self.ad + message.header, "ratchet message")

    def _decrypt_plain(self, message: RatchetMessage) -> bytes:
        header = Header.decode(message.header)
        # TrySkippedMessageKeys
        mk = self.skipped.get(header.dh, header.n)
        if mk is not None:
            plaintext = self._open(mk, message)
            self.skipped.delete(header.dh, header.n)
            return plaintext
        s = self._s
        if header.dh == s.DHr and header.n < s.Nr or header.dh != s.DHr and self.skipped.knows(header.dh):
            raise ReplayError(
                f"ratchet message {header.n} of chain {header.dh.hex()[:16]} was already decrypted "
                "(or its skipped key was evicted)"
            )
        self._check_skip_total(s, header, new_chain=header.dh != s.DHr)
        draft = copy.copy(s)
        pending: list[tuple[bytes, int, bytes]] = []
        retired = None
        if header.dh != draft.DHr:
            if draft.DHr is not None:
                retired = draft.DHr
            self._skip_message_keys(draft, header.pn, pending, draft.DHr)
            self._dh_ratchet(draft, header.dh)
        self._skip_message_keys(draft, header.n, pending, draft.DHr)
        if draft.CKr is None:
            # Only before the first reply, when DHr is still the peer's signed prekey (public): a
            # header naming that key comes from no ratchet the peer ran.
            raise AuthenticationError(
                f"ratchet message: names ratchet key {header.dh.hex()[:16]}, for which this session has no "
                "receiving chain (forged?)"
            )
        draft.CKr, mk = kdf_ck(draft.CKr)
        draft.Nr += 1
        plaintext = self._open(mk, message)
        self._commit(draft, pending, retired)
        return plaintext

    def _decrypt_he(self, message: RatchetMessage) -> bytes:
        if len(message.header) != ENCRYPTED_HEADER_BYTES:
            raise DecodeError(f"ratchet message: encrypted header must be {ENCRYPTED_HEADER_BYTES} bytes")
        # TrySkippedMessageKeysHE, one header decryption per remembered chain.
        for hk, keys in self.skipped.chains.items():
            header = self._try_header(hk, message.header)
            if header is None:
                continue
            mk = keys.get(header.n)
            if mk is None:
                if hk == self._s.HKr and header.n >= self._s.Nr:
                    break  # a new message of the current chain: the normal path below
                raise ReplayError(f"ratchet message {header.n} of an earlier chain was already decrypted (or evicted)")
            plaintext = self._open(mk, message)
            self.skipped.delete(hk, header.n)
            return plaintext
        s = self._s
        draft = copy.copy(s)
        pending: list[tuple[bytes, int, bytes]] = []
        retired = None
        # DecryptHeader
        header = self._try_header(draft.HKr, message.header) if draft.HKr is not None else None
        if header is not None:
            if header.n < draft.Nr:
                raise ReplayError(f"ratchet message {header.n} of the current chain was already decrypted")
            self._check_skip_total(draft, header, new_chain=False)
        else:
            header = self._try_header(draft.NHKr, message.header) if draft.NHKr is not None else None
            if header is None:
                raise AuthenticationError("ratchet message: header does not decrypt under any header key (tampered?)")
            self._check_skip_total(draft, header, new_chain=True)
            if draft.HKr is not None:
                retired = draft.HKr
            self._skip_message_keys(draft, header.pn, pending, draft.HKr)
            self._dh_ratchet(draft, header.dh)
        self._skip_message_keys(draft, header.n, pending, draft.HKr)
        if draft.CKr is None:  # HKr and CKr are set together by the DH ratchet
            raise AuthenticationError("ratchet message: its header key has no receiving chain (tampered?)")
        draft.CKr, mk = kdf_ck(draft.CKr)
        draft.Nr += 1
        plaintext = self._open(mk, message)
        self._commit(draft, pending, retired)
        return plaintext

    @staticmethod
    def _try_header(hk: bytes, sealed: bytes) -> Header | None:
        try:
            return Header.decode(aead_decrypt(hk, sealed, HEADER_AD, "ratchet header"))
        except (AuthenticationError, DecodeError):
            return None

    def _check_skip_total(self, s: _State, header: Header, *, new_chain: bool) -> None:
        """Refuse a header whose message would make the receiver derive more than ``max_skip`` skipped keys.

        With a new ratchet key the receiver skips the rest of its current chain
        (up to ``header.pn``) and then ``header.n`` keys of the new one; the
        bound applies to the sum, so a forged header costs at most
        ``max_skip`` chain steps, not twice that.
        """
        old = max(0, header.pn - s.Nr) if new_chain and s.CKr is not None else 0
        new = header.n if new_chain else header.n - s.Nr
        if old + new > self.limits.max_skip:
            raise TooManySkippedError(
                f"ratchet message number {header.n} (previous chain length {header.pn}) would skip {old + new} "
                f"message keys in all; at most {self.limits.max_skip} (MAX_SKIP) are allowed"
            )

    def _skip_message_keys(
        self, s: _State, until: int, pending: list[tuple[bytes, int, bytes]], chain: bytes | None
    ) -> None:
        if s.Nr + self.limits.max_skip < until:
            raise TooManySkippedError(
                f"ratchet message number {until} would skip {until - s.Nr} message keys; "
                f"at most {self.limits.max_skip} (MAX_SKIP) are allowed"
            )
        if s.CKr is not None and s.Nr < until:
            if chain is None:  # the DH ratchet sets a receiving chain together with its ratchet key and header key
                raise SessionError("ratchet: a receiving chain without the key that identifies it")
            while s.Nr < until:
                s.CKr, mk = kdf_ck(s.CKr)
                pending.append((chain, s.Nr, mk))
                s.Nr += 1

    def _dh_ratchet(self, s: _State, dh: bytes) -> None:
        s.PN = s.Ns
        s.Ns = 0
        s.Nr = 0
        s.DHr = dh
        if self.header_encryption:
            s.HKs = s.NHKs
            s.HKr = s.NHKr
            s.RK, s.CKr, s.NHKr = kdf_rk(s.RK, x25519(s.DHs.private, s.DHr), True)
            s.DHs = X25519KeyPair.generate()
            s.RK, s.CKs, s.NHKs = kdf_rk(s.RK, x25519(s.DHs.private, s.DHr), True)
        else:
            s.RK, s.CKr = kdf_rk(s.RK, x25519(s.DHs.private, s.DHr))
            s.DHs = X25519KeyPair.generate()
            s.RK, s.CKs = kdf_rk(s.RK, x25519(s.DHs.private, s.DHr))

    def _commit(self, draft: _State, pending: list[tuple[bytes, int, bytes]], retired: bytes | None) -> None:
        for chain, n, mk in pending:
            self.skipped.add(chain, n, mk)
        if retired is not None:
            self.skipped.remember(retired)
        self._s = draft
        self.received_any = True

    # -- inspection (tests and the security evaluation) ------------------------

    @property
    def sending_ratchet_public(self) -> bytes:
        return self._s.DHs.public

    def snapshot(self) -> Session:
        """A deep copy of the full state, as an attacker who compromised the device would hold it."""
        return copy.deepcopy(self)
