"""A messaging device: identity keys, sessions with peers, sending and receiving through a relay."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..crypto import ct_equal
from ..errors import AuthenticationError, E2escanError, RelayError, ReplayError
from .attachments import decrypt_attachment, encrypt_attachment
from .ratchet import RatchetLimits, Session
from .relay import Relay
from .wire import (
    ENVELOPE_MESSAGE,
    ENVELOPE_PREKEY,
    AttachmentPointer,
    Content,
    PrekeyBundle,
    PrekeyMessage,
    RatchetMessage,
    decode_envelope,
    encode_envelope,
)
from .x3dh import Identity, create_bundle, x3dh_initiate, x3dh_respond

#: A scanner turns an outgoing attachment into a voucher (bytes) or None.
Scanner = Callable[[bytes], bytes | None]

MAX_ARCHIVED_SESSIONS = 5
PREKEY_REFILL_BELOW = 5
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class SignedPrekeyPolicy:
    """When a device replaces its signed prekey, and how long it keeps the old one for in-flight first messages.

    Signal's guidance (X3DH 4.6) is periodic replacement, e.g. weekly or
    monthly, with the old private key kept "for some period of time". The
    defaults: every 7 days, the old key held 2 more days.
    """

    period_s: float = 7 * DAY_S
    grace_s: float = 2 * DAY_S

    def __post_init__(self) -> None:
        if not self.period_s > 0 or self.grace_s < 0:
            raise ValueError(f"SignedPrekeyPolicy: period_s must be > 0 and grace_s >= 0, got {self.period_s}, {self.grace_s}")


@dataclass(frozen=True, slots=True)
class Received:
    """A decrypted message as the recipient sees it."""

    sender: str
    body: bytes
    attachment: bytes | None
    message_id: int
    at: float


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message the device refused; it was dropped from the queue."""

    sender: str
    message_id: int
    error: E2escanError


@dataclass(slots=True)
class _PeerSession:
    session: Session
    ephemeral: bytes  # X3DH EK_A identifying the session
    # Alice resends the X3DH initiation with each message until Bob replies (X3DH 3.3, DR 5.1).
    prekey_header: tuple[bytes, bytes, int, int | None] | None = None


@dataclass(eq=False)
class Device:
    """One account's device. Create with :meth:`register`."""

    device_id: str
    relay: Relay
    identity: Identity = field(repr=False)
    header_encryption: bool = False
    limits: RatchetLimits = field(default_factory=RatchetLimits)
    scanner: Scanner | None = None
    spk_policy: SignedPrekeyPolicy = field(default_factory=SignedPrekeyPolicy)
    sessions: dict[str, list[_PeerSession]] = field(default_factory=dict, repr=False)
    #: Trust on first use, both ways: each peer name has one identity key and each identity key one name.
    known_identities: dict[str, bytes] = field(default_factory=dict, repr=False)
    names_by_identity: dict[bytes, str] = field(default_factory=dict, repr=False)
    #: ``(IK_A, EK_A)`` of every first message accepted, per signed prekey still held: a repeat is a replay.
    seen_initiations: dict[int, set[tuple[bytes, bytes]]] = field(default_factory=dict, repr=False)
    rejected: list[Rejected] = field(default_factory=list, repr=False)

    @classmethod
    def register(
        cls,
        device_id: str,
        relay: Relay,
        *,
        one_time_prekeys: int = 20,
        header_encryption: bool = False,
        limits: RatchetLimits | None = None,
        scanner: Scanner | None = None,
        spk_policy: SignedPrekeyPolicy | None = None,
    ) -> Device:
        """Generate keys and publish the prekey bundle to ``relay``."""
        identity = Identity.generate(one_time_prekeys, now=float(relay.clock()))
        relay.register(device_id, create_bundle(identity).encode())
        return cls(device_id, relay, identity, header_encryption, limits or RatchetLimits(), scanner,
                   spk_policy or SignedPrekeyPolicy())

    # -- sending -----------------------------------------------------------------

    def send(self, recipient: str, body: bytes, attachment: bytes | None = None) -> int:
        """Encrypt and submit one message; returns the relay's message id (its acknowledgement)."""
        return self.send_group([recipient], body, attachment)[0]

    def send_group(self, recipients: Iterable[str], body: bytes, attachment: bytes | None = None) -> list[int]:
        """Pairwise fan-out: one ratchet message per member, the attachment uploaded once.

        A scanning voucher, if a scanner is installed, travels with the first
        copy only: it describes the image, not the recipient.
        """
        recipients = list(recipients)
        pointer = None
        voucher = None
        if attachment is not None:
            attachment = bytes(attachment)
            if self.scanner is not None:
                voucher = self.scanner(attachment)
            blob, key, digest = encrypt_attachment(attachment)
            blob_id = self.relay.put_blob(self.device_id, blob)
            pointer = AttachmentPointer(blob_id, key, digest, len(attachment))
        plaintext = Content(bytes(body), pointer).encode()
        ids = []
        for i, recipient in enumerate(recipients):
            envelope = self._encrypt_for(recipient, plaintext)
            ids.append(self.relay.submit(self.device_id, recipient, envelope, voucher if i == 0 else None))
        return ids

    def _encrypt_for(self, recipient: str, plaintext: bytes) -> bytes:
        if recipient == self.device_id:
            raise RelayError("a device cannot open a session with itself")
        peer = self._active(recipient)
        if peer is None:
            peer = self._initiate(recipient)
        message = peer.session.ratchet_encrypt(plaintext)
        if peer.prekey_header is not None:
            ik, ek, spk_id, opk_id = peer.prekey_header
            return encode_envelope(ENVELOPE_PREKEY, PrekeyMessage(ik, ek, spk_id, opk_id, message).encode_body())
        return encode_envelope(ENVELOPE_MESSAGE, message.encode())

    def _initiate(self, recipient: str) -> _PeerSession:
        bundle = PrekeyBundle.decode(self.relay.fetch_bundle(self.device_id, recipient))
        self._check_identity(recipient, bundle.identity)
        result, ek, opk_id = x3dh_initiate(self.identity.identity, bundle, self.header_encryption)
        hka, nhkb = result.header_keys or (None, None)
        session = Session.ratchet_init_alice(
            result.sk, bundle.spk, result.ad, shared_hka=hka, shared_nhkb=nhkb, limits=self.limits
        )
        peer = _PeerSession(session, ek.public, (self.identity.identity.public, ek.public, bundle.spk_id, opk_id))
        self._pin(recipient, bundle.identity)
        self._store(recipient, peer)
        return peer

    # -- receiving ---------------------------------------------------------------

    def receive(self, limit: int | None = None) -> list[Received]:
        """Fetch, decrypt and acknowledge queued messages.

        A message that fails to decrypt is acknowledged too (dropped), and
        recorded in :attr:`rejected` with the error; no session state changes
        because of it.
        """
        out = []
        for delivery in self.relay.fetch(self.device_id, limit):
            try:
                body, attachment = self.open_envelope(delivery.sender, delivery.envelope)
            except E2escanError as exc:
                self.rejected.append(Rejected(delivery.sender, delivery.message_id, exc))
            else:
                out.append(Received(delivery.sender, body, attachment, delivery.message_id, delivery.at))
            self.relay.ack(self.device_id, delivery.message_id)
        if self.relay.prekey_count(self.device_id) < PREKEY_REFILL_BELOW:
            self.relay.upload_prekeys(self.device_id, self.identity.new_one_time_prekeys(20))
        self.maintain_signed_prekey()
        return out

    def maintain_signed_prekey(self, now: float | None = None) -> bool:
        """Rotate the signed prekey when its period is over and drop old ones past their grace time.

        Called at the end of every :meth:`receive` (the simulator's devices
        receive at the end of each simulated day). Returns whether it rotated.
        """
        now = float(self.relay.clock()) if now is None else now
        for spk_id in self.identity.expire_signed_prekeys(now):
            self.seen_initiations.pop(spk_id, None)  # first messages under it are refused anyway now
        if now - self.identity.spk_created_at < self.spk_policy.period_s:
            return False
        self.identity.rotate_signed_prekey(now, self.spk_policy.grace_s)
        ident = self.identity
        self.relay.update_signed_prekey(self.device_id, ident.spk_id, ident.spk.public, ident.spk_signature)
        return True

    def open_envelope(self, sender: str, envelope: bytes) -> tuple[bytes, bytes | None]:
        """Decrypt one envelope from ``sender``: (body, attachment bytes or None)."""
        kind, payload = decode_envelope(envelope)
        if kind == ENVELOPE_PREKEY:
            plaintext = self._open_prekey_message(sender, PrekeyMessage.decode_body(payload))
        else:
            assert kind == ENVELOPE_MESSAGE
            plaintext = self._open_message(sender, RatchetMessage.decode(payload))
        content = Content.decode(plaintext)
        attachment = None
        if content.attachment is not None:
            blob = self.relay.get_blob(self.device_id, content.attachment.blob_id)
            attachment = decrypt_attachment(content.attachment, blob)
        return content.body, attachment

    def _open_prekey_message(self, sender: str, pm: PrekeyMessage) -> bytes:
        self._check_identity(sender, pm.identity)
        # Sessions are found by the identity key in the message, not by the name the relay shows.
        for peer in self.sessions.get(self.names_by_identity.get(pm.identity, ""), ()):
            if ct_equal(peer.ephemeral, pm.ephemeral):
                plaintext = peer.session.ratchet_decrypt(pm.message)
                peer.prekey_header = None
                return plaintext
        seen = self.seen_initiations.setdefault(pm.spk_id, set())
        if (pm.identity, pm.ephemeral) in seen:
            raise ReplayError(
                f"first message from {sender!r} replays an X3DH initiation (IK_A, EK_A) already accepted under "
                f"signed prekey {pm.spk_id}"
            )
        now = float(self.relay.clock())
        spk = self.identity.signed_prekey(pm.spk_id, now)
        header_encryption = pm.message.header_encrypted
        result = x3dh_respond(self.identity, pm.identity, pm.ephemeral, pm.spk_id, pm.opk_id, header_encryption, now)
        assert spk is not None  # x3dh_respond refused an unknown signed prekey
        hka, nhkb = result.header_keys or (None, None)
        session = Session.ratchet_init_bob(
            result.sk, spk, result.ad, shared_hka=hka, shared_nhkb=nhkb, limits=self.limits
        )
        plaintext = session.ratchet_decrypt(pm.message)  # raises before anything is stored
        if pm.opk_id is not None:
            del self.identity.one_time_prekeys[pm.opk_id]  # X3DH 3.4: delete the one-time prekey
        seen.add((pm.identity, pm.ephemeral))
        self._pin(sender, pm.identity)
        self._store(sender, _PeerSession(session, pm.ephemeral))
        return plaintext

    def _open_message(self, sender: str, message: RatchetMessage) -> bytes:
        peers = self.sessions.get(sender)
        if not peers:
            raise AuthenticationError(f"message from {sender!r} but no session with it exists")
        first_error: E2escanError | None = None
        for peer in peers:
            try:
                plaintext = peer.session.ratchet_decrypt(message)
            except ReplayError:
                raise
            except E2escanError as exc:
                first_error = first_error or exc
                continue
            peer.prekey_header = None  # the peer answered: stop resending the X3DH initiation
            return plaintext
        assert first_error is not None
        raise first_error

    # -- session bookkeeping -------------------------------------------------------

    def _active(self, peer: str) -> _PeerSession | None:
        peers = self.sessions.get(peer)
        return peers[0] if peers else None

    def _store(self, peer: str, record: _PeerSession) -> None:
        peers = self.sessions.setdefault(peer, [])
        peers.insert(0, record)
        del peers[MAX_ARCHIVED_SESSIONS + 1 :]

    def _check_identity(self, peer: str, identity: bytes) -> None:
        known = self.known_identities.get(peer)
        if known is not None and not ct_equal(known, identity):
            raise AuthenticationError(f"identity key of {peer!r} changed since first contact (trust on first use)")
        owner = self.names_by_identity.get(identity)
        if owner is not None and owner != peer:
            raise AuthenticationError(
                f"the relay shows {peer!r} as the sender, but this identity key belongs to {owner!r} (relabelled message)"
            )

    def _pin(self, peer: str, identity: bytes) -> None:
        self.known_identities[peer] = identity
        self.names_by_identity[identity] = peer

    def session_with(self, peer: str) -> Session:
        record = self._active(peer)
        if record is None:
            raise RelayError(f"{self.device_id!r} has no session with {peer!r}")
        return record.session
