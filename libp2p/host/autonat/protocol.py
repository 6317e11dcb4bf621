"""AutoNAT v1 wire format: the protocol ID, status codes, typed messages and their codec.

One request and one response per stream, each a uvarint-length-prefixed protobuf of at most
:data:`MAX_MESSAGE_SIZE` bytes (go's limit). Protobuf objects never leave this module: a
decoded message is a :class:`DialRequest` or a :class:`DialResponse`. ``type`` is always
written, even ``DIAL = 0``: proto2 readers may insist on it (design §5).

Decoding is strict about what the protocol needs and lenient about what it does not:

* no ``type``, an unknown ``type``, or a body that does not match it (a ``DIAL`` without a
  peer ID that parses, a ``DIAL_RESPONSE`` without a known ``status``) is a
  :class:`MalformedAutoNATMessage` -- a server answers it with ``E_BAD_REQUEST``;
* addresses that do not decode to a canonical multiaddr are skipped, as go skips them;
  a response's ``addr`` that does not decode reads as ``None``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from multiaddr import Multiaddr

from ...exceptions import DecodeError, Libp2pError
from ...io import BufferedStream
from ...peer.id import InvalidPeerIDError, PeerID
from ...peer.record import decode_multiaddr
from ...varint import encode_uvarint

if TYPE_CHECKING:
    from .pb import autonat_pb2

__all__ = [
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_ID",
    "AutoNATError",
    "DialRequest",
    "DialResponse",
    "MalformedAutoNATMessage",
    "ResponseStatus",
    "decode_message",
    "encode_message",
    "read_message",
]

#: The protocol ID (libp2p specs ``autonat/autonat-v1.md``).
PROTOCOL_ID: Final = "/libp2p/autonat/1.0.0"
#: Largest message read (go: 4096; the spec sets none).
MAX_MESSAGE_SIZE: Final = 4096

# ``Message.MessageType``, fixed by the spec.
_DIAL: Final = 0
_DIAL_RESPONSE: Final = 1


class ResponseStatus(enum.IntEnum):
    """``DialResponse.status`` codes."""

    #: The server dialed us back at ``addr``.
    OK = 0
    #: The server tried every address and none answered: evidence that we are not reachable.
    E_DIAL_ERROR = 100
    #: The server would not try (rate limit, relayed connection, no address it may dial).
    E_DIAL_REFUSED = 101
    #: The server could not make sense of the request.
    E_BAD_REQUEST = 200
    #: The server failed on its own.
    E_INTERNAL_ERROR = 300


class AutoNATError(Libp2pError):
    """Base of the AutoNAT errors."""


class MalformedAutoNATMessage(AutoNATError, DecodeError):
    """An AutoNAT message that does not decode, or lacks what its type requires."""


@dataclass(frozen=True, slots=True)
class DialRequest:
    """``DIAL``: "dial me back at these addresses"."""

    #: The peer to dial back (the requester names itself; servers check it).
    peer: PeerID
    #: Addresses to try, in the requester's order (undecodable ones already dropped).
    addrs: tuple[Multiaddr, ...] = ()


@dataclass(frozen=True, slots=True)
class DialResponse:
    """``DIAL_RESPONSE``: the outcome of a dial-back."""

    status: ResponseStatus
    #: Free-form explanation from the server (may be empty).
    text: str = ""
    #: With ``OK``: the address the server reached us at (``None`` if absent or invalid).
    addr: Multiaddr | None = None


AutoNATMessage = DialRequest | DialResponse


def _pb() -> type[autonat_pb2.Message]:
    from .pb import autonat_pb2

    return autonat_pb2.Message


def encode_message(msg: AutoNATMessage) -> bytes:
    """Serialize ``msg`` with its uvarint length prefix."""
    pb = _pb()()
    if isinstance(msg, DialRequest):
        pb.type = _DIAL  # type: ignore[assignment]
        pb.dial.peer.id = msg.peer.to_bytes()
        pb.dial.peer.addrs.extend(a.to_bytes() for a in msg.addrs)
    else:
        pb.type = _DIAL_RESPONSE  # type: ignore[assignment]
        pb.dialResponse.status = msg.status.value  # type: ignore[assignment]
        if msg.text:
            pb.dialResponse.statusText = msg.text
        if msg.addr is not None:
            pb.dialResponse.addr = msg.addr.to_bytes()
    body = pb.SerializeToString()
    return encode_uvarint(len(body)) + body


def decode_message(data: bytes) -> AutoNATMessage:
    """Decode one message body (without its length prefix)."""
    from google.protobuf import message as pb_message

    pb = _pb()()
    try:
        pb.ParseFromString(data)
    except pb_message.DecodeError as exc:
        raise MalformedAutoNATMessage(f"malformed AutoNAT message: {exc}") from exc
    if not pb.HasField("type"):
        raise MalformedAutoNATMessage("AutoNAT message without a type")
    if pb.type == _DIAL:
        if not pb.HasField("dial") or not pb.dial.HasField("peer"):
            raise MalformedAutoNATMessage("DIAL without peer info")
        if not pb.dial.peer.HasField("id"):
            raise MalformedAutoNATMessage("DIAL without a peer ID")
        try:
            peer = PeerID.from_bytes(pb.dial.peer.id)
        except InvalidPeerIDError as exc:
            raise MalformedAutoNATMessage(f"DIAL with an invalid peer ID: {exc}") from exc
        addrs = [decode_multiaddr(raw) for raw in pb.dial.peer.addrs]
        return DialRequest(peer, tuple(a for a in addrs if a is not None))
    if pb.type == _DIAL_RESPONSE:
        if not pb.HasField("dialResponse") or not pb.dialResponse.HasField("status"):
            raise MalformedAutoNATMessage("DIAL_RESPONSE without a status")
        try:
            status = ResponseStatus(pb.dialResponse.status)
        except ValueError as exc:  # pragma: no cover - proto2 keeps unknown enums unset
            raise MalformedAutoNATMessage(f"unknown status {pb.dialResponse.status}") from exc
        addr = decode_multiaddr(pb.dialResponse.addr) if pb.dialResponse.HasField("addr") else None
        return DialResponse(status, _text(pb.dialResponse.statusText), addr)
    raise MalformedAutoNATMessage(f"AutoNAT message of unknown type {pb.type}")  # pragma: no cover


def _text(value: object) -> str:
    # proto2 ``string`` fields are not UTF-8-checked: python protobuf hands back ``bytes``
    # when a peer sent invalid UTF-8.
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


async def read_message(stream: BufferedStream) -> AutoNATMessage:
    """Read one framed message (:class:`~libp2p.exceptions.MessageTooLarge` past 4 KiB)."""
    return decode_message(await stream.read_lp(MAX_MESSAGE_SIZE))
