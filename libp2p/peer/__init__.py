"""Peer identities and what peers sign about themselves.

:class:`PeerID` is derived from a peer's public key. :class:`Envelope` (RFC 0002) carries a
payload signed by a peer for one purpose (its *domain*); :class:`PeerRecord` (RFC 0003) is a
peer's signed list of its own addresses, and :class:`ReservationVoucher` a relay's signed
promise to relay for a peer.
"""

from .envelope import (
    MAX_ENVELOPE_SIZE,
    Envelope,
    EnvelopePayloadTypeError,
    EnvelopeSignatureError,
    EnvelopeTooLarge,
    InvalidEnvelope,
)
from .id import MAX_INLINE_KEY_LENGTH, InvalidPeerIDError, PeerID
from .record import (
    PEER_RECORD_DOMAIN,
    PEER_RECORD_PAYLOAD_TYPE,
    InvalidRecord,
    PeerRecord,
    RecordSignerMismatch,
    is_newer,
    open_peer_record,
    seal_peer_record,
)
from .voucher import (
    RESERVATION_VOUCHER_DOMAIN,
    RESERVATION_VOUCHER_PAYLOAD_TYPE,
    ReservationVoucher,
    VoucherMismatch,
    open_reservation_voucher,
    seal_reservation_voucher,
)

__all__ = [
    "MAX_ENVELOPE_SIZE",
    "MAX_INLINE_KEY_LENGTH",
    "PEER_RECORD_DOMAIN",
    "PEER_RECORD_PAYLOAD_TYPE",
    "RESERVATION_VOUCHER_DOMAIN",
    "RESERVATION_VOUCHER_PAYLOAD_TYPE",
    "Envelope",
    "EnvelopePayloadTypeError",
    "EnvelopeSignatureError",
    "EnvelopeTooLarge",
    "InvalidEnvelope",
    "InvalidPeerIDError",
    "InvalidRecord",
    "PeerID",
    "PeerRecord",
    "RecordSignerMismatch",
    "ReservationVoucher",
    "VoucherMismatch",
    "is_newer",
    "open_peer_record",
    "open_reservation_voucher",
    "seal_peer_record",
    "seal_reservation_voucher",
]
