"""The libp2p layer of the Noise handshake, sans-I/O: identities, signatures, early muxers.

Noise XX authenticates two X25519 *static* keys. libp2p peers are identified by a different
key -- the identity key whose hash is the peer ID -- so each side binds the two together in
its handshake payload (libp2p noise spec, "The libp2p Handshake Payload")::

    identity_key = serialized libp2p PublicKey protobuf
    identity_sig = Sign(identity key, "noise-libp2p-static-key:" || X25519 static public key)

Message flow (the *initiator* is whoever the upgrader says dials; after a hole punch that is
the peer that dialed through the relay, not whoever called ``connect()``)::

    initiator                                      responder
        -- msg 1: e, empty payload ------------------>
        <-- msg 2: e, ee, s, es, payload(responder) --   initiator verifies the responder
        -- msg 3: s, se, payload(initiator) --------->   responder verifies the initiator

The initiator checks the responder's identity (and ``expected_peer``) *before* it sends its own
payload, so it never reveals its identity to an impostor. Message 1 travels before any key
exists, so it carries nothing; whatever a peer puts there is ignored.

Early ("inlined") muxer negotiation: each side may list muxers in
``extensions.stream_muxers``. The result is the first entry of the *initiator's* list that the
responder also lists, and only when both lists are non-empty. Otherwise -- rust never sends a
list, go falls back silently -- the result is ``None`` and the caller runs multistream-select
for the muxer. We never fail on a missing overlap (the spec says MUST fail; go does not, and
being lenient costs one round trip at worst).

:class:`Libp2pNoiseHandshake` wraps :class:`~.core.HandshakeState`: call
:meth:`~Libp2pNoiseHandshake.write_message` when :attr:`~Libp2pNoiseHandshake.is_my_turn`,
:meth:`~Libp2pNoiseHandshake.read_message` otherwise, then take
:meth:`~Libp2pNoiseHandshake.result`. Bytes in, bytes out; the trio driver lives in
:mod:`.session`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...crypto.keys import PrivateKey, PublicKey, deserialize_public_key
from ...exceptions import DecodeError, LocalUsageError, PeerIDMismatch
from ...peer.id import PeerID
from .core import CipherState, HandshakeState
from .errors import NoiseHandshakeError

# protobuf and ``cryptography`` load on the first handshake, not with the package.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

__all__ = [
    "SIGNATURE_PREFIX",
    "HandshakePayload",
    "HandshakeResult",
    "Libp2pNoiseHandshake",
    "negotiate_muxer",
]

#: Prepended to the X25519 static public key before the identity key signs it.
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"


def _text(value: str | bytes) -> str:
    # upb hands back proto2 ``string`` fields that are not valid UTF-8 as bytes; go accepts
    # such strings too, so decode leniently: the result cannot match a real protocol ID.
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class HandshakePayload:
    """A decoded ``NoiseHandshakePayload``; protobuf objects stay inside this class."""

    identity_key: bytes = b""
    identity_sig: bytes = b""
    stream_muxers: tuple[str, ...] = ()
    webtransport_certhashes: tuple[bytes, ...] = ()

    def encode(self) -> bytes:
        """The protobuf encoding; ``extensions`` is omitted when it would be empty."""
        from .pb import payload_pb2

        msg = payload_pb2.NoiseHandshakePayload(
            identity_key=self.identity_key, identity_sig=self.identity_sig
        )
        if self.stream_muxers or self.webtransport_certhashes:
            msg.extensions.stream_muxers.extend(self.stream_muxers)
            msg.extensions.webtransport_certhashes.extend(self.webtransport_certhashes)
        return msg.SerializeToString()

    @classmethod
    def decode(cls, data: bytes) -> HandshakePayload:
        """Parse a payload; :class:`~.errors.NoiseHandshakeError` if it is not valid protobuf."""
        from google.protobuf.message import DecodeError as _ProtobufDecodeError

        from .pb import payload_pb2

        try:
            msg = payload_pb2.NoiseHandshakePayload.FromString(bytes(data))
        except _ProtobufDecodeError as exc:
            raise NoiseHandshakeError(f"malformed Noise handshake payload: {exc}") from exc
        ext = msg.extensions
        return cls(
            identity_key=bytes(msg.identity_key),
            identity_sig=bytes(msg.identity_sig),
            stream_muxers=tuple(_text(m) for m in ext.stream_muxers),
            webtransport_certhashes=tuple(bytes(h) for h in ext.webtransport_certhashes),
        )


def negotiate_muxer(initiator_muxers: Sequence[str], responder_muxers: Sequence[str]) -> str | None:
    """The early-negotiated muxer: the initiator's first choice the responder also supports.

    ``None`` when either list is empty or they share nothing; the caller then negotiates the
    muxer with multistream-select. Both peers compute the same answer from the same lists.
    """
    if not initiator_muxers or not responder_muxers:
        return None
    supported = set(responder_muxers)
    for muxer in initiator_muxers:
        if muxer in supported:
            return muxer
    return None


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """Everything a completed handshake proved and agreed on."""

    local_peer: PeerID
    remote_peer: PeerID
    remote_public_key: PublicKey
    #: The muxer agreed inside the handshake, or None (negotiate it with multistream-select).
    negotiated_muxer: str | None
    #: The muxers the remote listed, in its order (empty if it sent none).
    remote_muxers: tuple[str, ...]
    #: The final Noise handshake hash ``h`` (identical on both sides).
    handshake_hash: bytes
    #: Transport cipher state for data we send.
    send_cipher: CipherState
    #: Transport cipher state for data we receive.
    receive_cipher: CipherState


class Libp2pNoiseHandshake:
    """One side of the libp2p Noise handshake, without I/O.

    ``expected_peer`` (the dialer always knows it) makes the handshake fail with
    :class:`~libp2p.exceptions.PeerIDMismatch` if the remote proves another identity.
    ``muxers`` is what we advertise for early muxer negotiation, in preference order; leave it
    empty to advertise nothing. ``static_key``/``ephemeral_key`` are for tests only: the
    static Noise key is fresh per handshake by default and never persisted.
    """

    __slots__ = (
        "_failed",
        "_local_key",
        "_noise",
        "_remote_key",
        "_remote_muxers",
        "_remote_peer",
        "_result",
        "expected_peer",
        "local_peer",
        "muxers",
    )

    def __init__(
        self,
        local_key: PrivateKey,
        *,
        initiator: bool,
        expected_peer: PeerID | None = None,
        muxers: Sequence[str] = (),
        prologue: bytes = b"",
        static_key: X25519PrivateKey | bytes | None = None,
        ephemeral_key: X25519PrivateKey | bytes | None = None,
    ) -> None:
        if isinstance(muxers, str):
            raise LocalUsageError("muxers must be a sequence of protocol IDs, not one string")
        self._local_key = local_key
        #: Our own peer ID.
        self.local_peer = PeerID.from_public_key(local_key.public_key)
        self.expected_peer = expected_peer
        self.muxers: tuple[str, ...] = tuple(muxers)
        self._noise = HandshakeState(
            initiator=initiator,
            prologue=prologue,
            static_key=static_key,
            ephemeral_key=ephemeral_key,
        )
        self._remote_key: PublicKey | None = None
        self._remote_peer: PeerID | None = None
        self._remote_muxers: tuple[str, ...] = ()
        self._failed = False
        self._result: HandshakeResult | None = None

    @property
    def initiator(self) -> bool:
        """True for the side that sends message 1."""
        return self._noise.initiator

    @property
    def is_my_turn(self) -> bool:
        """Whether the next step is :meth:`write_message` (else :meth:`read_message`)."""
        return self._noise.is_my_turn

    @property
    def complete(self) -> bool:
        """Whether the handshake finished and the remote was verified."""
        return self._noise.complete and not self._failed

    @property
    def message_index(self) -> int:
        """How many of the three handshake messages have been processed."""
        return self._noise.message_index

    def _our_payload(self) -> bytes:
        signature = self._local_key.sign(SIGNATURE_PREFIX + self._noise.local_static_public)
        return HandshakePayload(
            identity_key=self._local_key.public_key.serialize(),
            identity_sig=signature,
            stream_muxers=self.muxers,
        ).encode()

    def write_message(self) -> bytes:
        """The next handshake message (unframed): empty payload first, then our identity."""
        self._check_usable()
        payload = b"" if self._noise.message_index == 0 else self._our_payload()
        return self._noise.write_message(payload)

    def read_message(self, message: bytes | bytearray | memoryview) -> None:
        """Process the remote's next message, verifying its identity when it carries one.

        Raises :class:`~.errors.NoiseHandshakeError` or
        :class:`~libp2p.exceptions.PeerIDMismatch`; the handshake is unusable afterwards.
        """
        self._check_usable()
        first = self._noise.message_index == 0
        # Until the message is fully verified the handshake counts as failed: the Noise state
        # has moved on, so a caller must not continue after an exception.
        self._failed = True
        payload = self._noise.read_message(message)
        if not first:
            self._verify(payload)
        self._failed = False

    def _check_usable(self) -> None:
        if self._failed:
            raise LocalUsageError("this Noise handshake already failed and cannot continue")

    def _verify(self, raw_payload: bytes) -> None:
        payload = HandshakePayload.decode(raw_payload)
        remote_static = self._noise.remote_static
        if remote_static is None:  # impossible after XX messages 2 and 3
            raise NoiseHandshakeError("the remote's Noise static key is missing")
        if not payload.identity_key:
            raise NoiseHandshakeError("the remote's handshake payload has no identity key")
        try:
            key = deserialize_public_key(payload.identity_key)
        except DecodeError as exc:
            raise NoiseHandshakeError(f"the remote's identity key is invalid: {exc}") from exc
        if not key.verify(SIGNATURE_PREFIX + remote_static, payload.identity_sig):
            raise NoiseHandshakeError(
                "the remote's identity signature does not cover its Noise static key"
            )
        peer = PeerID.from_public_key(key)
        if self.expected_peer is not None and peer != self.expected_peer:
            raise PeerIDMismatch(self.expected_peer, peer)
        self._remote_key = key
        self._remote_peer = peer
        self._remote_muxers = payload.stream_muxers

    def result(self) -> HandshakeResult:
        """What the completed handshake proved; :class:`LocalUsageError` before completion."""
        if self._result is not None:
            return self._result
        if not self.complete or self._remote_key is None or self._remote_peer is None:
            raise LocalUsageError("the Noise handshake has not completed")
        send, receive = self._noise.split()
        if self.initiator:
            negotiated = negotiate_muxer(self.muxers, self._remote_muxers)
        else:
            negotiated = negotiate_muxer(self._remote_muxers, self.muxers)
        self._result = HandshakeResult(
            local_peer=self.local_peer,
            remote_peer=self._remote_peer,
            remote_public_key=self._remote_key,
            negotiated_muxer=negotiated,
            remote_muxers=self._remote_muxers,
            handshake_hash=self._noise.handshake_hash,
            send_cipher=send,
            receive_cipher=receive,
        )
        return self._result
