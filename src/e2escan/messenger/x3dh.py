"""X3DH key agreement (Signal specification, revision 1, 2016), over libsodium.

Identity keys are Ed25519 (they sign the signed prekey); for the Diffie-Hellman
steps they are converted to X25519 with libsodium's birational map, as the
specification permits in place of XEdDSA. Step names follow section 3:

* :func:`create_bundle` -- "Publishing keys" (3.2),
* :func:`x3dh_initiate` -- "Sending the initial message" (3.3),
* :func:`x3dh_respond` -- "Receiving the initial message" (3.4).

``SK = HKDF(F || DH1 || DH2 || DH3 [|| DH4])`` with F = 32 bytes of 0xFF, a
zero salt and the info string below; ``AD = IK_A || IK_B``. With header
encryption the two shared header keys of Double Ratchet section 4 are derived
from SK under a separate info string.

**Signed-prekey rotation** (section 4.6 of the specification: "Bob should
replace his signed prekey periodically", keeping the old private key "for
some period of time" to handle delayed messages). :meth:`Identity.rotate_signed_prekey`
makes a new signed prekey and keeps the old one until a grace time has passed;
:meth:`Identity.signed_prekey` hands out only keys inside that window. A first
message without a one-time prekey can be replayed by the relay for as long as
its signed prekey is held, so devices also remember the ``(IK_A, EK_A)`` pairs
seen under each held signed prekey and refuse repeats; rotation bounds that
memory.

**Key erasure.** Python cannot wipe a key from memory: ``bytes`` are immutable
and the interpreter may copy them, so "deleting" a key (a used one-time
prekey, a rotated-out signed prekey, a used message key) drops every
reference this code holds and leaves the memory to the allocator. The
simulator models erasure as unreachability: a key is gone once no object of
the device refers to it, which is what the forward-secrecy tests check (they
search a captured state for every key it still holds). A real client would
keep keys in memory it can overwrite (libsodium's ``sodium_memzero`` on
locked buffers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..crypto import (
    Ed25519KeyPair,
    X25519KeyPair,
    ed25519_public_to_x25519,
    ed25519_verify,
    hkdf,
    x25519,
)
from ..errors import AuthenticationError, SessionError
from .wire import OneTimePrekey, PrekeyBundle, spk_signed_bytes

X3DH_INFO = b"e2escan X3DH v1"
HEADER_KEYS_INFO = b"e2escan X3DH header keys v1"
F = b"\xff" * 32


@dataclass(repr=False)
class Identity:
    """A device's long-term and medium-term private keys.

    ``spk_id``/``spk``/``spk_signature`` are the current signed prekey, made at
    ``spk_created_at``; ``retired_spks`` maps the id of each earlier signed
    prekey still held to ``(key pair, time it is dropped)``.
    """

    identity: Ed25519KeyPair
    spk_id: int
    spk: X25519KeyPair
    spk_signature: bytes
    one_time_prekeys: dict[int, X25519KeyPair] = field(default_factory=dict)
    next_opk_id: int = 1
    spk_created_at: float = 0.0
    retired_spks: dict[int, tuple[X25519KeyPair, float]] = field(default_factory=dict)

    @classmethod
    def generate(cls, one_time_prekeys: int = 20, now: float = 0.0) -> Identity:
        ik = Ed25519KeyPair.generate()
        spk = X25519KeyPair.generate()
        spk_id = 1
        ident = cls(ik, spk_id, spk, ik.sign(spk_signed_bytes(spk_id, spk.public)), spk_created_at=now)
        ident.new_one_time_prekeys(one_time_prekeys)
        return ident

    def rotate_signed_prekey(self, now: float, grace_s: float) -> None:
        """A new signed prekey (id + 1); the current one is kept until ``now + grace_s`` for in-flight messages."""
        self.retired_spks[self.spk_id] = (self.spk, now + grace_s)
        self.spk_id += 1
        self.spk = X25519KeyPair.generate()
        self.spk_signature = self.identity.sign(spk_signed_bytes(self.spk_id, self.spk.public))
        self.spk_created_at = now

    def expire_signed_prekeys(self, now: float) -> tuple[int, ...]:
        """Drop retired signed prekeys whose grace time has passed; returns their ids."""
        gone = tuple(i for i, (_, until) in self.retired_spks.items() if until <= now)
        for i in gone:
            del self.retired_spks[i]
        return gone

    def signed_prekey(self, spk_id: int, now: float | None = None) -> X25519KeyPair | None:
        """The signed prekey ``spk_id`` if this device still holds it (current, or retired within its grace time)."""
        if spk_id == self.spk_id:
            return self.spk
        held = self.retired_spks.get(spk_id)
        if held is None or (now is not None and held[1] <= now):
            return None
        return held[0]

    def new_one_time_prekeys(self, count: int) -> tuple[OneTimePrekey, ...]:
        fresh = []
        for _ in range(count):
            kp = X25519KeyPair.generate()
            self.one_time_prekeys[self.next_opk_id] = kp
            fresh.append(OneTimePrekey(self.next_opk_id, kp.public))
            self.next_opk_id += 1
        return tuple(fresh)

    def __repr__(self) -> str:
        return f"Identity(public={self.identity.public.hex()[:16]}..., opks={len(self.one_time_prekeys)})"


def create_bundle(ident: Identity) -> PrekeyBundle:
    opks = tuple(OneTimePrekey(i, kp.public) for i, kp in sorted(ident.one_time_prekeys.items()))
    return PrekeyBundle(ident.identity.public, ident.spk_id, ident.spk.public, ident.spk_signature, opks)


@dataclass(frozen=True, slots=True, repr=False)
class X3DHResult:
    sk: bytes
    ad: bytes
    header_keys: tuple[bytes, bytes] | None  # (shared_hka, shared_nhkb)


def _kdf(dhs: list[bytes], header_encryption: bool) -> tuple[bytes, tuple[bytes, bytes] | None]:
    sk = hkdf(F + b"".join(dhs), 32, salt=bytes(32), info=X3DH_INFO)
    if not header_encryption:
        return sk, None
    hk = hkdf(sk, 64, salt=bytes(32), info=HEADER_KEYS_INFO)
    return sk, (hk[:32], hk[32:])


def x3dh_initiate(
    ik_a: Ed25519KeyPair, bundle: PrekeyBundle, header_encryption: bool = False
) -> tuple[X3DHResult, X25519KeyPair, int | None]:
    """Alice's side: verify Bob's bundle and derive SK. Returns (result, ephemeral key, opk id used)."""
    ed25519_verify(
        bundle.identity, spk_signed_bytes(bundle.spk_id, bundle.spk), bundle.spk_signature, "signed prekey signature"
    )
    if len(bundle.one_time_prekeys) > 1:
        raise SessionError(f"prekey bundle carries {len(bundle.one_time_prekeys)} one-time prekeys; at most 1 expected")
    ek = X25519KeyPair.generate()
    ik_b = ed25519_public_to_x25519(bundle.identity)
    dhs = [
        x25519(ik_a.to_x25519().private, bundle.spk),
        x25519(ek.private, ik_b),
        x25519(ek.private, bundle.spk),
    ]
    opk_id = None
    if bundle.one_time_prekeys:
        opk = bundle.one_time_prekeys[0]
        dhs.append(x25519(ek.private, opk.public))
        opk_id = opk.id
    sk, hks = _kdf(dhs, header_encryption)
    return X3DHResult(sk, ik_a.public + bundle.identity, hks), ek, opk_id


def x3dh_respond(
    ident: Identity,
    ik_a: bytes,
    ek_a: bytes,
    spk_id: int,
    opk_id: int | None,
    header_encryption: bool = False,
    now: float | None = None,
) -> X3DHResult:
    """Bob's side. Does not delete the one-time prekey: the caller does once the first message decrypts."""
    spk = ident.signed_prekey(spk_id, now)
    if spk is None:
        raise AuthenticationError(
            f"prekey message names signed prekey {spk_id}, which this device does not hold (current: {ident.spk_id}; "
            f"held within their grace time: {sorted(ident.retired_spks) or 'none'})"
        )
    dhs = [
        x25519(spk.private, ed25519_public_to_x25519(ik_a)),
        x25519(ident.identity.to_x25519().private, ek_a),
        x25519(spk.private, ek_a),
    ]
    if opk_id is not None:
        opk = ident.one_time_prekeys.get(opk_id)
        if opk is None:
            raise AuthenticationError(f"prekey message names one-time prekey {opk_id}, which is unknown or already used")
        dhs.append(x25519(opk.private, ek_a))
    sk, hks = _kdf(dhs, header_encryption)
    return X3DHResult(sk, ik_a + ident.identity.public, hks)
