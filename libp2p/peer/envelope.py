"""Signed envelopes (libp2p RFC 0002): a payload signed by a peer for one stated purpose.

Some data has to travel through peers we do not trust -- a peer's own addresses repeated by
others (peer records), a relay's promise to serve a peer (reservation vouchers). An envelope
lets any receiver check who produced the payload and that nobody altered it::

    Envelope { public_key = 1, payload_type = 2, payload = 3, signature = 5 }

    signature = Sign(key, uvarint(len(domain)) || domain
                          || uvarint(len(payload_type)) || payload_type
                          || uvarint(len(payload)) || payload)

Why a *domain*: a signature made for one purpose must never be accepted for another (a
signed peer record replayed as a relay voucher, say). The domain string -- e.g.
``"libp2p-peer-record"`` -- is mixed into the signed bytes but never transmitted, so the
receiver has to know which purpose it expects and a signature only verifies under that one.
The length prefixes keep field boundaries unambiguous, so bytes cannot slide from one field
into the next without breaking the signature.

Why a *payload type*: it tells the receiver how to decode the payload. It is a multicodec code
written as raw big-endian bytes -- ``03 01`` for a peer record, ``03 02`` for a voucher --
exactly as go, js and rust send it (*not* the uvarint form ``81 06``). It is signed too.

Receiving follows RFC 0003's order: parse the envelope, rebuild the signed bytes with the
domain *we* expect, verify the signature, and only then decode the payload
(:meth:`Envelope.open`). Every way this can fail on remote input raises a subclass of
:class:`InvalidEnvelope`, itself a :class:`~libp2p.exceptions.DecodeError` (and so a
:class:`~libp2p.exceptions.RemoteProtocolError`): the sender's fault, never ours.

Decoding policy: like go and js we parse the envelope as ordinary proto3, so unknown fields are
skipped and a repeated field keeps its last value -- nothing outside ``payload_type`` and
``payload`` is covered by the signature anyway, and the key itself is parsed strictly by
:func:`~libp2p.crypto.keys.deserialize_public_key`. Input longer than ``max_size`` (default
:data:`MAX_ENVELOPE_SIZE`, 8 KiB) is refused before parsing: envelopes travel inside identify
messages, which go and js cap at 8 KiB, so nothing legitimate is larger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..crypto.keys import PrivateKey, PublicKey, deserialize_public_key
from ..exceptions import DecodeError, LocalUsageError, MessageTooLarge
from ..varint import encode_uvarint
from .id import PeerID

__all__ = [
    "MAX_ENVELOPE_SIZE",
    "Envelope",
    "EnvelopePayloadTypeError",
    "EnvelopeSignatureError",
    "EnvelopeTooLarge",
    "InvalidEnvelope",
    "signing_buffer",
]

#: Largest serialized envelope accepted by default, in bytes. Envelopes arrive inside identify
#: messages, which go-libp2p and js-libp2p read with an 8 KiB limit per message; a peer record
#: with an RSA-4096 key and dozens of addresses still fits comfortably.
MAX_ENVELOPE_SIZE: Final = 8 * 1024


class InvalidEnvelope(DecodeError):
    """Bytes from a peer are not an acceptable signed envelope for what we asked for.

    The root of every envelope failure: malformed bytes, a missing key, a bad signature, an
    unexpected payload type, an oversized envelope, or a payload that is not a valid record.
    """


class EnvelopeSignatureError(InvalidEnvelope):
    """The signature does not verify: the envelope was altered or signed for another domain."""


class EnvelopePayloadTypeError(InvalidEnvelope):
    """The envelope carries a different payload type than the caller expects."""

    def __init__(self, expected: bytes, actual: bytes) -> None:
        super().__init__(
            f"envelope payload type is {actual.hex() or '(empty)'}, expected {expected.hex()}"
        )
        self.expected = expected
        self.actual = actual


class EnvelopeTooLarge(InvalidEnvelope, MessageTooLarge):
    """The serialized envelope exceeds the size limit; it was not parsed."""


def _check_domain(domain: str) -> bytes:
    if not isinstance(domain, str):
        raise LocalUsageError(f"envelope domain must be a str, not {type(domain).__name__}")
    if not domain:
        raise LocalUsageError("envelope domain must not be empty")
    return domain.encode("utf-8")


def signing_buffer(domain: str, payload_type: bytes, payload: bytes) -> bytes:
    """The exact bytes an envelope signature covers (RFC 0002, go ``makeUnsigned``).

    ``uvarint(len(domain)) || domain || uvarint(len(payload_type)) || payload_type ||
    uvarint(len(payload)) || payload``, with the domain encoded as UTF-8. An empty domain is a
    :class:`~libp2p.exceptions.LocalUsageError`.
    """
    parts = [_check_domain(domain), bytes(payload_type), bytes(payload)]
    return b"".join(encode_uvarint(len(part)) + part for part in parts)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed envelope: a payload, its type hint, and the signer's key and signature.

    Build one with :meth:`seal`; read one from a peer with :meth:`open` (parse and verify) --
    :meth:`from_bytes` only parses and proves nothing about the contents.
    """

    public_key: PublicKey
    payload_type: bytes
    payload: bytes
    signature: bytes

    @property
    def signer(self) -> PeerID:
        """The peer ID of the key that signed (or claims to have signed) this envelope."""
        return PeerID.from_public_key(self.public_key)

    # -- producing ------------------------------------------------------------------------

    @classmethod
    def seal(cls, key: PrivateKey, domain: str, payload_type: bytes, payload: bytes) -> Envelope:
        """Sign ``payload`` with ``key`` for ``domain``.

        ``domain`` and ``payload_type`` must be non-empty (as in go); otherwise
        :class:`~libp2p.exceptions.LocalUsageError`.
        """
        payload_type = bytes(payload_type)
        payload = bytes(payload)
        if not payload_type:
            raise LocalUsageError("envelope payload type must not be empty")
        signature = key.sign(signing_buffer(domain, payload_type, payload))
        return cls(key.public_key, payload_type, payload, signature)

    def to_bytes(self) -> bytes:
        """The protobuf encoding, field by field in tag order, as go and js write it."""
        from .pb import envelope_pb2  # protobuf loads on first use, not with the package

        msg = envelope_pb2.Envelope(
            public_key=self.public_key.serialize(),
            payload_type=self.payload_type,
            payload=self.payload,
            signature=self.signature,
        )
        return msg.SerializeToString(deterministic=True)

    # -- consuming ------------------------------------------------------------------------

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, *, max_size: int = MAX_ENVELOPE_SIZE
    ) -> Envelope:
        """Parse an envelope *without* checking its signature (see :meth:`open`).

        Raises :class:`EnvelopeTooLarge` for input over ``max_size`` bytes and
        :class:`InvalidEnvelope` for malformed protobuf or a missing or invalid public key.
        """
        if len(data) > max_size:
            raise EnvelopeTooLarge(
                f"signed envelope of {len(data)} bytes exceeds the {max_size}-byte limit"
            )
        from google.protobuf import message as _pb_message

        from .pb import envelope_pb2

        msg = envelope_pb2.Envelope()
        try:
            msg.ParseFromString(bytes(data))
        except _pb_message.Error as exc:
            raise InvalidEnvelope(f"malformed signed envelope protobuf: {exc}") from exc
        if not msg.public_key:
            raise InvalidEnvelope("signed envelope has no public key")
        try:
            public_key = deserialize_public_key(msg.public_key)
        except DecodeError as exc:
            raise InvalidEnvelope(f"signed envelope has an invalid public key: {exc}") from exc
        return cls(public_key, bytes(msg.payload_type), bytes(msg.payload), bytes(msg.signature))

    @classmethod
    def open(
        cls,
        data: bytes | bytearray | memoryview,
        domain: str,
        *,
        payload_type: bytes | None = None,
        max_size: int = MAX_ENVELOPE_SIZE,
    ) -> Envelope:
        """Parse an envelope from a peer and verify it was signed for ``domain``.

        If ``payload_type`` is given, the envelope must carry exactly that type
        (:class:`EnvelopePayloadTypeError` otherwise). A signature that does not verify under
        ``domain`` raises :class:`EnvelopeSignatureError`; malformed or oversized input raises
        :class:`InvalidEnvelope` / :class:`EnvelopeTooLarge`. Only the returned envelope's
        payload is trustworthy -- decode it after this call, never before.
        """
        _check_domain(domain)  # misuse is reported as ours before blaming the peer
        envelope = cls.from_bytes(data, max_size=max_size)
        if payload_type is not None:
            envelope.check_payload_type(payload_type)
        envelope.verify(domain)
        return envelope

    def check_payload_type(self, payload_type: bytes) -> None:
        """Raise :class:`EnvelopePayloadTypeError` unless this envelope carries ``payload_type``."""
        expected = bytes(payload_type)
        if self.payload_type != expected:
            raise EnvelopePayloadTypeError(expected, self.payload_type)

    def verify(self, domain: str) -> None:
        """Raise :class:`EnvelopeSignatureError` unless the signature is valid for ``domain``."""
        buffer = signing_buffer(domain, self.payload_type, self.payload)
        if not self.public_key.verify(buffer, self.signature):
            raise EnvelopeSignatureError(
                f"signed envelope from {self.signer} does not verify for domain {domain!r} "
                "(tampered, or signed for another purpose)"
            )
