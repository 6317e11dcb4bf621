"""Circuit Relay v2 reservation vouchers: a relay's signed promise to relay for a peer.

When a relay accepts a reservation it may include, in the ``Reservation.voucher`` field of its
``HopMessage``, a signed envelope (:mod:`libp2p.peer.envelope`) with domain
:data:`RESERVATION_VOUCHER_DOMAIN` and payload type :data:`RESERVATION_VOUCHER_PAYLOAD_TYPE`
(raw bytes ``03 02``, the ``libp2p-relay-rsvp`` multicodec) whose payload says::

    ReservationVoucher { relay = 1 (relay peer ID), peer = 2 (reserving peer ID),
                         expiration = 3 (unix seconds) }

Vouchers are advisory -- rust relays send none, go relays send one -- but a go client that gets
one checks it: the signer must be ``relay``, ``peer`` must be itself, and domain and payload
type must match; a bad voucher fails the reservation. :func:`open_reservation_voucher` does the
same checks (plus the expected relay, when the caller knows it). Whether the voucher has
expired is the caller's decision: time is passed in elsewhere, never read here.

We always write all three fields, even a zero expiration, and require all three when reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..crypto.keys import PrivateKey
from ..exceptions import LocalUsageError
from .envelope import MAX_ENVELOPE_SIZE, Envelope, InvalidEnvelope
from .id import InvalidPeerIDError, PeerID
from .record import InvalidRecord, RecordSignerMismatch

__all__ = [
    "RESERVATION_VOUCHER_DOMAIN",
    "RESERVATION_VOUCHER_PAYLOAD_TYPE",
    "ReservationVoucher",
    "VoucherMismatch",
    "open_reservation_voucher",
    "seal_reservation_voucher",
]

#: Envelope domain of reservation vouchers (circuit-v2 spec; go ``proto.RecordDomain``).
RESERVATION_VOUCHER_DOMAIN: Final = "libp2p-relay-rsvp"
#: Envelope payload type: multicodec ``libp2p-relay-rsvp`` (0x0302) as two raw big-endian bytes.
RESERVATION_VOUCHER_PAYLOAD_TYPE: Final = b"\x03\x02"

_MAX_U64: Final = (1 << 64) - 1


class VoucherMismatch(InvalidEnvelope):
    """A valid voucher, but for another peer or from another relay than the caller expects."""

    def __init__(self, field: str, expected: PeerID, actual: PeerID) -> None:
        super().__init__(f"reservation voucher names {field} {actual}, expected {expected}")
        self.field = field
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class ReservationVoucher:
    """The payload of a reservation voucher: ``relay`` will relay for ``peer`` until ``expiration``.

    ``expiration`` is a unix time in whole seconds (UTC), as in ``Reservation.expire``.
    """

    relay: PeerID
    peer: PeerID
    expiration: int

    def __post_init__(self) -> None:
        for name in ("relay", "peer"):
            value = getattr(self, name)
            if not isinstance(value, PeerID):
                raise LocalUsageError(f"{name} must be a PeerID, not {type(value).__name__}")
        if not isinstance(self.expiration, int) or not 0 <= self.expiration <= _MAX_U64:
            raise LocalUsageError(
                f"expiration must be an integer in [0, 2**64), not {self.expiration!r}"
            )

    def to_bytes(self) -> bytes:
        """The ``ReservationVoucher`` protobuf, all three fields written, in tag order."""
        from .pb import voucher_pb2  # protobuf loads on first use, not with the package

        msg = voucher_pb2.ReservationVoucher(
            relay=self.relay.to_bytes(), peer=self.peer.to_bytes(), expiration=self.expiration
        )
        return msg.SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> ReservationVoucher:
        """Decode a ``ReservationVoucher``; :class:`~.record.InvalidRecord` if malformed.

        All three fields must be present and both peer IDs valid; unknown fields are ignored.
        """
        from google.protobuf import message as _pb_message

        from .pb import voucher_pb2

        msg = voucher_pb2.ReservationVoucher()
        try:
            msg.ParseFromString(bytes(data))
        except _pb_message.Error as exc:
            raise InvalidRecord(f"malformed reservation voucher protobuf: {exc}") from exc
        missing = [f for f in ("relay", "peer", "expiration") if not msg.HasField(f)]
        if missing:
            raise InvalidRecord(f"reservation voucher lacks {', '.join(missing)}")
        try:
            relay = PeerID.from_bytes(msg.relay)
            peer = PeerID.from_bytes(msg.peer)
        except InvalidPeerIDError as exc:
            raise InvalidRecord(f"reservation voucher has an invalid peer ID: {exc}") from exc
        return cls(relay, peer, msg.expiration)

    def seal(self, key: PrivateKey) -> Envelope:
        """Sign this voucher with ``key``, which must be the relay's key."""
        signer = PeerID.from_public_key(key.public_key)
        if signer != self.relay:
            raise LocalUsageError(
                f"a voucher from relay {self.relay} cannot be signed with the key of {signer}"
            )
        return Envelope.seal(
            key, RESERVATION_VOUCHER_DOMAIN, RESERVATION_VOUCHER_PAYLOAD_TYPE, self.to_bytes()
        )


def seal_reservation_voucher(relay_key: PrivateKey, peer: PeerID, expiration: int) -> bytes:
    """A voucher, signed by the relay holding ``relay_key``, for ``peer`` until ``expiration``.

    Returns the envelope bytes for ``Reservation.voucher``.
    """
    relay = PeerID.from_public_key(relay_key.public_key)
    return ReservationVoucher(relay, peer, expiration).seal(relay_key).to_bytes()


def open_reservation_voucher(
    data: bytes | bytearray | memoryview,
    *,
    peer: PeerID | None = None,
    relay: PeerID | None = None,
    max_size: int = MAX_ENVELOPE_SIZE,
) -> tuple[ReservationVoucher, Envelope]:
    """Verify a voucher received from a relay and decode it.

    Checks the envelope (size, payload type, signature under the voucher domain), the payload,
    that the signer is the voucher's ``relay``, and -- when given -- that the voucher is for
    ``peer`` (pass our own peer ID, as go does) and from ``relay`` (the relay we reserved with).
    Every failure is an :class:`~.envelope.InvalidEnvelope`: a signer other than ``relay`` is a
    :class:`~.record.RecordSignerMismatch`, an unexpected peer or relay a
    :class:`VoucherMismatch`.
    """
    envelope = Envelope.open(
        data,
        RESERVATION_VOUCHER_DOMAIN,
        payload_type=RESERVATION_VOUCHER_PAYLOAD_TYPE,
        max_size=max_size,
    )
    voucher = ReservationVoucher.from_bytes(envelope.payload)
    signer = envelope.signer
    if voucher.relay != signer:
        raise RecordSignerMismatch("reservation voucher", voucher.relay, signer)
    if relay is not None and voucher.relay != relay:
        raise VoucherMismatch("relay", relay, voucher.relay)
    if peer is not None and voucher.peer != peer:
        raise VoucherMismatch("peer", peer, voucher.peer)
    return voucher, envelope
