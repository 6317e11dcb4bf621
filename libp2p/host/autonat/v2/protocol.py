"""AutoNAT v2 wire format: protocol IDs, status codes, typed messages and their codec.

Two protocols (libp2p specs ``autonat/autonat-v2.md``, r2):

* ``/libp2p/autonat/2/dial-request`` (client -> server): every message is a ``Message``
  oneof -- :class:`DialRequest`, :class:`DialDataRequest`, :class:`DialDataResponse`,
  :class:`DialResponse` -- uvarint-length-prefixed, at most :data:`MAX_MESSAGE_SIZE` bytes;
* ``/libp2p/autonat/2/dial-back`` (server -> client, on the dial-back connection):
  :class:`DialBack` and :class:`DialBackResponse` sent bare, at most
  :data:`MAX_DIAL_BACK_SIZE` bytes.

Protobuf objects never leave this module. Decoding is strict where a wrong value would be
acted on and lenient elsewhere:

* an empty ``Message`` (no oneof member: also what an unknown member decodes to), bytes that
  are no protobuf, a ``DialResponse`` with a status code we do not know (the spec: "discard"),
  or a ``DialResponse`` ``OK`` with a dial status we do not know, is a
  :class:`MalformedAutoNATv2Message`;
* an address that does not decode to a multiaddr stays in its place as ``None``, so that
  ``addrIdx`` keeps pointing at the right entry;
* the nonce is a ``fixed64``: 8 bytes little-endian, any value (0 included).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from multiaddr import Multiaddr

from ....exceptions import DecodeError, LocalUsageError
from ....io import BufferedStream
from ....peer.record import decode_multiaddr
from ....varint import encode_uvarint
from ..protocol import AutoNATError

if TYPE_CHECKING:
    from .pb import autonatv2_pb2

__all__ = [
    "DIAL_BACK_PROTOCOL",
    "DIAL_REQUEST_PROTOCOL",
    "MAX_DIAL_BACK_SIZE",
    "MAX_DIAL_DATA_CHUNK",
    "MAX_MESSAGE_SIZE",
    "DialBack",
    "DialBackResponse",
    "DialDataRequest",
    "DialDataResponse",
    "DialRequest",
    "DialResponse",
    "DialStatus",
    "MalformedAutoNATv2Message",
    "ResponseStatus",
    "decode_dial_back",
    "decode_dial_back_response",
    "decode_message",
    "encode_dial_back",
    "encode_dial_back_response",
    "encode_message",
    "read_dial_back",
    "read_dial_back_response",
    "read_message",
]

#: The request protocol, opened by the client on its connection to the server.
DIAL_REQUEST_PROTOCOL: Final = "/libp2p/autonat/2/dial-request"
#: The nonce's protocol, opened by the server on the dial-back connection.
DIAL_BACK_PROTOCOL: Final = "/libp2p/autonat/2/dial-back"
#: Largest message read on a dial-request stream (go and js: 8192; rust: 4104, so what we
#: send stays below that).
MAX_MESSAGE_SIZE: Final = 8192
#: Largest message read on a dial-back stream (go: 1024; both messages are <= 9 bytes).
MAX_DIAL_BACK_SIZE: Final = 1024
#: Largest ``DialDataResponse.data`` (the spec: "limited to 4096 bytes").
MAX_DIAL_DATA_CHUNK: Final = 4096
_NONCE_MAX: Final = (1 << 64) - 1


class ResponseStatus(enum.IntEnum):
    """``DialResponse.status``: whether the server handled the request."""

    #: Anything not covered below went wrong on the server.
    E_INTERNAL_ERROR = 0
    #: Rate limit, resource limit or blacklisting: the request was not considered.
    E_REQUEST_REJECTED = 100
    #: The server will not (or cannot) dial any of the addresses.
    E_DIAL_REFUSED = 101
    #: The server chose ``addrIdx`` and dialed it; ``dialStatus`` says how that went.
    OK = 200


class DialStatus(enum.IntEnum):
    """``DialResponse.dialStatus``: the outcome of the dial, with ``status == OK``."""

    #: Meaningless (any status but ``OK``).
    UNUSED = 0
    #: The server could not connect: evidence the address is not reachable.
    E_DIAL_ERROR = 100
    #: Connected, but delivering the nonce failed.
    E_DIAL_BACK_ERROR = 101
    #: Connected and delivered the nonce.
    OK = 200


class MalformedAutoNATv2Message(AutoNATError, DecodeError):
    """An AutoNAT v2 message that does not decode, or carries values we must not act on."""


@dataclass(frozen=True, slots=True)
class DialRequest:
    """Client -> server: "dial the first of these you can, and give me ``nonce``"."""

    #: Addresses in descending priority; ``None`` marks one that did not decode (received).
    addrs: tuple[Multiaddr | None, ...]
    #: The client's random 64-bit nonce.
    nonce: int


@dataclass(frozen=True, slots=True)
class DialDataRequest:
    """Server -> client: "send ``num_bytes`` of dial data before I dial ``addr_idx``"."""

    addr_idx: int
    num_bytes: int


@dataclass(frozen=True, slots=True)
class DialDataResponse:
    """Client -> server: one chunk of dial data (its content is meaningless)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class DialResponse:
    """Server -> client: the end of a request."""

    status: ResponseStatus
    #: With ``status == OK``: the index of the address dialed.
    addr_idx: int = 0
    #: With ``status == OK``: how the dial went.
    dial_status: DialStatus = DialStatus.UNUSED


@dataclass(frozen=True, slots=True)
class DialBack:
    """Server -> client on the dial-back connection: the nonce of the request."""

    nonce: int


@dataclass(frozen=True, slots=True)
class DialBackResponse:
    """Client -> server on the dial-back stream: received (the only status is ``OK``)."""


#: The messages of the dial-request stream.
Message = DialRequest | DialDataRequest | DialDataResponse | DialResponse


def _pb() -> type[autonatv2_pb2.Message]:
    from .pb import autonatv2_pb2

    return autonatv2_pb2.Message


def _framed(body: bytes) -> bytes:
    return encode_uvarint(len(body)) + body


def encode_message(msg: Message) -> bytes:
    """Serialize a dial-request stream message, with its length prefix."""
    pb = _pb()()
    if isinstance(msg, DialRequest):
        if not 0 <= msg.nonce <= _NONCE_MAX:
            raise LocalUsageError(f"nonce {msg.nonce} is not a 64-bit unsigned integer")
        raw = []
        for addr in msg.addrs:
            if addr is None:
                raise LocalUsageError("cannot send a DialRequest with an undecodable address")
            raw.append(addr.to_bytes())
        pb.dialRequest.addrs.extend(raw)
        pb.dialRequest.nonce = msg.nonce
    elif isinstance(msg, DialDataRequest):
        pb.dialDataRequest.addrIdx = msg.addr_idx
        pb.dialDataRequest.numBytes = msg.num_bytes
    elif isinstance(msg, DialDataResponse):
        if len(msg.data) > MAX_DIAL_DATA_CHUNK:
            raise LocalUsageError(f"dial data chunks are at most {MAX_DIAL_DATA_CHUNK} bytes")
        pb.dialDataResponse.data = msg.data
    else:
        # proto3 omits zero values: a response of all zeros still names its oneof member.
        pb.dialResponse.SetInParent()
        pb.dialResponse.status = msg.status.value  # type: ignore[assignment]
        pb.dialResponse.addrIdx = msg.addr_idx
        pb.dialResponse.dialStatus = msg.dial_status.value  # type: ignore[assignment]
    return _framed(pb.SerializeToString())


def decode_message(data: bytes) -> Message:
    """Decode one dial-request stream message body (without its length prefix)."""
    from google.protobuf import message as pb_message

    pb = _pb()()
    try:
        pb.ParseFromString(data)
    except (pb_message.DecodeError, ValueError) as exc:
        raise MalformedAutoNATv2Message(f"malformed AutoNAT v2 message: {exc}") from exc
    kind = pb.WhichOneof("msg")
    if kind == "dialRequest":
        addrs = tuple(decode_multiaddr(raw) for raw in pb.dialRequest.addrs)
        return DialRequest(addrs, pb.dialRequest.nonce)
    if kind == "dialDataRequest":
        return DialDataRequest(pb.dialDataRequest.addrIdx, pb.dialDataRequest.numBytes)
    if kind == "dialDataResponse":
        return DialDataResponse(bytes(pb.dialDataResponse.data))
    if kind == "dialResponse":
        resp = pb.dialResponse
        try:
            status = ResponseStatus(resp.status)
        except ValueError as exc:
            raise MalformedAutoNATv2Message(f"unknown response status {resp.status}") from exc
        try:
            dial_status = DialStatus(resp.dialStatus)
        except ValueError as exc:
            if status is ResponseStatus.OK:
                raise MalformedAutoNATv2Message(f"unknown dial status {resp.dialStatus}") from exc
            dial_status = DialStatus.UNUSED  # meaningless without OK
        return DialResponse(status, resp.addrIdx, dial_status)
    raise MalformedAutoNATv2Message("AutoNAT v2 message without a known body")


def encode_dial_back(msg: DialBack) -> bytes:
    """Serialize a ``DialBack`` (bare, with its length prefix)."""
    from .pb import autonatv2_pb2

    if not 0 <= msg.nonce <= _NONCE_MAX:
        raise LocalUsageError(f"nonce {msg.nonce} is not a 64-bit unsigned integer")
    return _framed(autonatv2_pb2.DialBack(nonce=msg.nonce).SerializeToString())


def encode_dial_back_response(msg: DialBackResponse | None = None) -> bytes:
    """Serialize a ``DialBackResponse{status=OK}`` (an empty body: OK is 0 in proto3)."""
    from .pb import autonatv2_pb2

    return _framed(autonatv2_pb2.DialBackResponse(status=0).SerializeToString())  # type: ignore[arg-type]


def decode_dial_back(data: bytes) -> DialBack:
    """Decode a ``DialBack`` body (a missing nonce reads as 0, as proto3 says)."""
    from google.protobuf import message as pb_message

    from .pb import autonatv2_pb2

    pb = autonatv2_pb2.DialBack()
    try:
        pb.ParseFromString(data)
    except (pb_message.DecodeError, ValueError) as exc:
        raise MalformedAutoNATv2Message(f"malformed DialBack: {exc}") from exc
    return DialBack(pb.nonce)


def decode_dial_back_response(data: bytes) -> DialBackResponse:
    """Decode a ``DialBackResponse`` body; a status other than ``OK`` is malformed."""
    from google.protobuf import message as pb_message

    from .pb import autonatv2_pb2

    pb = autonatv2_pb2.DialBackResponse()
    try:
        pb.ParseFromString(data)
    except (pb_message.DecodeError, ValueError) as exc:
        raise MalformedAutoNATv2Message(f"malformed DialBackResponse: {exc}") from exc
    if pb.status != 0:
        raise MalformedAutoNATv2Message(f"unknown DialBackResponse status {pb.status}")
    return DialBackResponse()


async def read_message(stream: BufferedStream) -> Message:
    """Read one dial-request stream message (:class:`~libp2p.exceptions.MessageTooLarge`
    past :data:`MAX_MESSAGE_SIZE`)."""
    return decode_message(await stream.read_lp(MAX_MESSAGE_SIZE))


async def read_dial_back(stream: BufferedStream) -> DialBack:
    """Read the ``DialBack`` of a dial-back stream."""
    return decode_dial_back(await stream.read_lp(MAX_DIAL_BACK_SIZE))


async def read_dial_back_response(stream: BufferedStream) -> DialBackResponse:
    """Read the ``DialBackResponse`` of a dial-back stream."""
    return decode_dial_back_response(await stream.read_lp(MAX_DIAL_BACK_SIZE))
