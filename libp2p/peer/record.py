"""Signed peer records (libp2p RFC 0003): a peer's own addresses, signed by that peer.

Addresses learned from third parties (a DHT, a relay, a gossiping peer) may be stale or
forged. A peer record lets a peer vouch for its own listen addresses: it is a small protobuf
(peer ID, sequence number, multiaddrs) sealed in a :mod:`signed envelope
<libp2p.peer.envelope>` with domain :data:`PEER_RECORD_DOMAIN` and payload type
:data:`PEER_RECORD_PAYLOAD_TYPE` (raw bytes ``03 01``, the ``libp2p-peer-record`` multicodec).
Identify carries one in its ``signedPeerRecord`` field.

Producing: :func:`seal_peer_record` (or :meth:`PeerRecord.seal`). The sequence number must grow
with every new record; like go we default to the current time in nanoseconds, bumped so it
strictly increases within the process even if the clock stalls or steps back
(:func:`timestamp_seq`).

Consuming: :func:`open_peer_record` checks, in this order, that the envelope parses, that its
payload type says "peer record", that the signature verifies for the peer-record domain, that
the payload decodes, and finally that the record's ``peer_id`` is the signer's own peer ID --
otherwise anyone could sign addresses for someone else. A receiver then keeps a record only if
its ``seq`` is greater than the last one it accepted for that peer (:func:`is_newer`), and
never reads ``seq`` as a time.

rust-libp2p signed its records with the RFC's original constants (domain
``libp2p-routing-state``, payload type ``/libp2p/routing-state-record``) until recently and
still accepts them. The payload schema is the same, so :func:`open_peer_record` accepts those
too unless ``allow_legacy=False``; we always *produce* the go/js form.

Addresses that do not decode as multiaddrs we understand are skipped rather than failing the
whole record (go does the same; js and rust reject the record). The signature covers the raw
payload, so skipping never weakens the check; callers that forward a record forward the
original envelope bytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import multiaddr.exceptions
from multiaddr import Multiaddr

from ..crypto.keys import PrivateKey
from ..exceptions import LocalUsageError
from .envelope import (
    MAX_ENVELOPE_SIZE,
    Envelope,
    EnvelopePayloadTypeError,
    InvalidEnvelope,
)
from .id import InvalidPeerIDError, PeerID

__all__ = [
    "LEGACY_PEER_RECORD_DOMAIN",
    "LEGACY_PEER_RECORD_PAYLOAD_TYPE",
    "PEER_RECORD_DOMAIN",
    "PEER_RECORD_PAYLOAD_TYPE",
    "InvalidRecord",
    "PeerRecord",
    "RecordSignerMismatch",
    "decode_multiaddr",
    "is_newer",
    "open_peer_record",
    "seal_peer_record",
    "timestamp_seq",
]

#: Envelope domain of peer records (go ``PeerRecordEnvelopeDomain``, js, rust).
PEER_RECORD_DOMAIN: Final = "libp2p-peer-record"
#: Envelope payload type of peer records: multicodec ``libp2p-peer-record`` (0x0301) as two raw
#: big-endian bytes, exactly as go, js and rust write it (not the uvarint ``81 06``).
PEER_RECORD_PAYLOAD_TYPE: Final = b"\x03\x01"
#: RFC 0003's original domain, still accepted by rust-libp2p; accepted here when reading only.
LEGACY_PEER_RECORD_DOMAIN: Final = "libp2p-routing-state"
#: RFC 0003's original payload type (a UTF-8 path), paired with the legacy domain.
LEGACY_PEER_RECORD_PAYLOAD_TYPE: Final = b"/libp2p/routing-state-record"

_MAX_SEQ: Final = (1 << 64) - 1


class InvalidRecord(InvalidEnvelope):
    """An envelope's payload is not a valid record of its type (after the signature checked out).

    Also raised by ``from_bytes`` of the record types themselves.
    """


class RecordSignerMismatch(InvalidEnvelope):
    """A record names a different peer than the key that signed it."""

    def __init__(self, what: str, claimed: PeerID, signer: PeerID) -> None:
        super().__init__(f"{what} is for peer {claimed} but was signed by peer {signer}")
        self.claimed = claimed
        self.signer = signer


# --------------------------------------------------------------------------------------------
# Sequence numbers
# --------------------------------------------------------------------------------------------

_seq_lock = threading.Lock()
_last_seq = 0


def timestamp_seq() -> int:
    """A sequence number for a new record: unix time in nanoseconds, strictly increasing.

    Time-based so a restarted process still issues numbers above its old ones without storing
    state (RFC 0003 allows this); bumped past the previous value when the clock has not moved
    forward, so two records made back to back never share a number (go ``TimestampSeq``).
    """
    global _last_seq
    now = time.time_ns()
    with _seq_lock:
        if now <= _last_seq:
            now = _last_seq + 1
        _last_seq = now
    return now


# --------------------------------------------------------------------------------------------
# Multiaddr decoding
# --------------------------------------------------------------------------------------------

# What py-multiaddr 0.2 raises for bytes it cannot decode: mostly its BinaryParseError (a
# ValueError), but fuzzing also turned up TypeError and OverflowError from codec internals.
_MULTIADDR_ERRORS = (
    multiaddr.exceptions.Error,
    ValueError,
    LookupError,
    TypeError,
    ArithmeticError,
)


def decode_multiaddr(raw: bytes) -> Multiaddr | None:
    """Decode a binary multiaddr strictly; ``None`` if it is empty, malformed or not canonical.

    py-multiaddr 0.2 decodes lazily and leniently: ``Multiaddr(raw)`` keeps the bytes and only
    fails later, in ``str()`` or ``items()``, and some truncated components read as valid
    (``04 01`` as ``/ip4/0.0.0.1``). So an address counts only if every component decodes and
    its text form encodes back to exactly ``raw`` -- then later use of it cannot fail.
    """
    if not raw:
        return None
    try:
        addr = Multiaddr(raw)
        for _ in addr.items():
            pass
        canonical = Multiaddr(str(addr)).to_bytes()
    except _MULTIADDR_ERRORS:
        return None
    return addr if canonical == raw else None


# --------------------------------------------------------------------------------------------
# PeerRecord
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """The payload of a signed peer record: who, which version, and where to reach them.

    ``addrs`` may be given as any iterable of multiaddrs; it is stored as a tuple.
    """

    peer_id: PeerID
    seq: int
    addrs: tuple[Multiaddr, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.peer_id, PeerID):
            raise LocalUsageError(f"peer_id must be a PeerID, not {type(self.peer_id).__name__}")
        if not isinstance(self.seq, int) or not 0 <= self.seq <= _MAX_SEQ:
            raise LocalUsageError(f"seq must be an integer in [0, 2**64), not {self.seq!r}")
        addrs = tuple(self.addrs)
        for addr in addrs:
            if not isinstance(addr, Multiaddr):
                raise LocalUsageError(f"addrs must be Multiaddr objects, not {type(addr).__name__}")
        object.__setattr__(self, "addrs", addrs)

    def to_bytes(self) -> bytes:
        """The ``PeerRecord`` protobuf (the envelope payload)."""
        from .pb import peer_record_pb2  # protobuf loads on first use, not with the package

        msg = peer_record_pb2.PeerRecord(peer_id=self.peer_id.to_bytes(), seq=self.seq)
        for addr in self.addrs:
            msg.addresses.add(multiaddr=addr.to_bytes())
        return msg.SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> PeerRecord:
        """Decode a ``PeerRecord`` protobuf; :class:`InvalidRecord` if it is malformed.

        Unknown fields are ignored (the format is meant to grow) and undecodable addresses are
        skipped (see the module docstring). Call this only on a payload whose envelope has
        been verified -- :func:`open_peer_record` does both.
        """
        from google.protobuf import message as _pb_message

        from .pb import peer_record_pb2

        msg = peer_record_pb2.PeerRecord()
        try:
            msg.ParseFromString(bytes(data))
        except _pb_message.Error as exc:
            raise InvalidRecord(f"malformed peer record protobuf: {exc}") from exc
        try:
            peer_id = PeerID.from_bytes(msg.peer_id)
        except InvalidPeerIDError as exc:
            raise InvalidRecord(f"peer record has an invalid peer ID: {exc}") from exc
        addrs = tuple(
            addr
            for addr in (decode_multiaddr(info.multiaddr) for info in msg.addresses)
            if addr is not None
        )
        return cls(peer_id, msg.seq, addrs)

    def seal(self, key: PrivateKey) -> Envelope:
        """Sign this record with ``key``, which must be the key of :attr:`peer_id`."""
        signer = PeerID.from_public_key(key.public_key)
        if signer != self.peer_id:
            raise LocalUsageError(
                f"cannot sign a peer record for {self.peer_id} with the key of {signer}"
            )
        return Envelope.seal(key, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, self.to_bytes())


def seal_peer_record(key: PrivateKey, addrs: Iterable[Multiaddr], seq: int | None = None) -> bytes:
    """A signed peer record for ``key``'s peer listing ``addrs``, as envelope bytes.

    ``seq`` defaults to :func:`timestamp_seq`. The result is what identify sends as
    ``signedPeerRecord``.
    """
    record = PeerRecord(
        PeerID.from_public_key(key.public_key),
        timestamp_seq() if seq is None else seq,
        tuple(addrs),
    )
    return record.seal(key).to_bytes()


def open_peer_record(
    data: bytes | bytearray | memoryview,
    *,
    allow_legacy: bool = True,
    max_size: int = MAX_ENVELOPE_SIZE,
) -> tuple[PeerRecord, Envelope]:
    """Verify a signed peer record from a peer and decode it.

    Returns the record and its verified envelope (keep the envelope to forward the record with
    its signature intact). Raises, all subclasses of :class:`InvalidEnvelope`:

    * :class:`~libp2p.peer.envelope.EnvelopeTooLarge` / :class:`InvalidEnvelope` -- input over
      ``max_size`` bytes, or not an envelope;
    * :class:`~libp2p.peer.envelope.EnvelopePayloadTypeError` -- not a peer record;
    * :class:`~libp2p.peer.envelope.EnvelopeSignatureError` -- altered, or signed for another
      domain;
    * :class:`InvalidRecord` -- the signed payload is not a valid peer record;
    * :class:`RecordSignerMismatch` -- the record is about another peer than its signer.

    With ``allow_legacy`` (the default) a record signed with rust's legacy constants
    (:data:`LEGACY_PEER_RECORD_DOMAIN`, :data:`LEGACY_PEER_RECORD_PAYLOAD_TYPE`) is accepted too.
    """
    envelope = Envelope.from_bytes(data, max_size=max_size)
    if envelope.payload_type == PEER_RECORD_PAYLOAD_TYPE:
        domain = PEER_RECORD_DOMAIN
    elif allow_legacy and envelope.payload_type == LEGACY_PEER_RECORD_PAYLOAD_TYPE:
        domain = LEGACY_PEER_RECORD_DOMAIN
    else:
        raise EnvelopePayloadTypeError(PEER_RECORD_PAYLOAD_TYPE, envelope.payload_type)
    envelope.verify(domain)
    record = PeerRecord.from_bytes(envelope.payload)
    signer = envelope.signer
    if record.peer_id != signer:
        raise RecordSignerMismatch("peer record", record.peer_id, signer)
    return record, envelope


def is_newer(new: PeerRecord, old: PeerRecord | None) -> bool:
    """Whether ``new`` should replace ``old``: yes if there is no ``old`` or ``new.seq`` is larger.

    Both must describe the same peer (:class:`~libp2p.exceptions.LocalUsageError` otherwise).
    An equal ``seq`` is not newer: a repeat of the record we hold changes nothing.
    """
    if old is None:
        return True
    if new.peer_id != old.peer_id:
        raise LocalUsageError(
            f"cannot order records of different peers ({new.peer_id}, {old.peer_id})"
        )
    return new.seq > old.seq
