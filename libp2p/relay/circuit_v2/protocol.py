"""Circuit Relay v2 wire format: protocol IDs, status codes, and the message codec.

Both protocols frame one protobuf per message with a uvarint length prefix, at most
:data:`MAX_MESSAGE_SIZE` bytes (go and rust use 4096). ``type`` is always written, since proto2
implementations require it. Decoding is strict: an absent or unknown ``type`` or a peer ID that
does not parse is a :class:`MalformedRelayMessage`, which the receiving side answers with
``MALFORMED_MESSAGE``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

import trio
from multiaddr import Multiaddr

from ...exceptions import (
    ConnectionClosedError,
    DecodeError,
    Libp2pError,
    StreamReset,
    TransportError,
)
from ...io import BufferedStream
from ...network.connection import ConnectionLimit
from ...peer.id import InvalidPeerIDError, PeerID
from ...varint import encode_uvarint

if TYPE_CHECKING:
    from .pb import circuit_pb2

__all__ = [
    "HOP_PROTOCOL_ID",
    "MAX_MESSAGE_SIZE",
    "STOP_PROTOCOL_ID",
    "CircuitRelayError",
    "LimitKind",
    "MalformedRelayMessage",
    "NotARelay",
    "RelayLimitReached",
    "RelayRefused",
    "RelayTimeout",
    "Status",
]

#: The relay's protocol: clients RESERVE and CONNECT on it.
HOP_PROTOCOL_ID: Final = "/libp2p/circuit/relay/0.2.0/hop"
#: The target's protocol: the relay announces an incoming circuit on it.
STOP_PROTOCOL_ID: Final = "/libp2p/circuit/relay/0.2.0/stop"
#: Largest hop or stop message accepted (go and rust: 4096).
MAX_MESSAGE_SIZE: Final = 4096

# Message types (``HopMessage.Type`` and ``StopMessage.Type``), fixed by the spec.
HOP_RESERVE: Final = 0
HOP_CONNECT: Final = 1
HOP_STATUS: Final = 2
STOP_CONNECT: Final = 0
STOP_STATUS: Final = 1


class Status(enum.IntEnum):
    """Status codes of hop and stop ``STATUS`` messages."""

    OK = 100
    RESERVATION_REFUSED = 200
    RESOURCE_LIMIT_EXCEEDED = 201
    PERMISSION_DENIED = 202
    CONNECTION_FAILED = 203
    NO_RESERVATION = 204
    MALFORMED_MESSAGE = 400
    UNEXPECTED_MESSAGE = 401

    @classmethod
    def describe(cls, code: int) -> str:
        """A status code's name and what it means, for error messages."""
        try:
            status = cls(code)
        except ValueError:
            return f"unknown status {code}"
        return f"{status.name} ({_MEANING[status]})"


_MEANING: Final = {
    Status.OK: "accepted",
    Status.RESERVATION_REFUSED: "the relay has no reservation slot for us: it is full, or too "
    "many reservations come from our IP address",
    Status.RESOURCE_LIMIT_EXCEEDED: "a relay resource limit was hit, such as the circuits per peer",
    Status.PERMISSION_DENIED: "the relay does not allow this, for example over a relayed "
    "connection",
    Status.CONNECTION_FAILED: "the relay could not reach the target over its connection, or "
    "the target refused the circuit",
    Status.NO_RESERVATION: "the target holds no reservation on this relay: is it listening "
    "through this relay, and still connected to it?",
    Status.MALFORMED_MESSAGE: "the other side could not parse our message",
    Status.UNEXPECTED_MESSAGE: "the other side did not expect this message",
}


class CircuitRelayError(Libp2pError):
    """Base of the errors of the relay client and service."""


class MalformedRelayMessage(CircuitRelayError, DecodeError):
    """A hop or stop message that does not decode, or lacks a required field."""


class RelayRefused(CircuitRelayError):
    """A relay (or a circuit's target) answered with a status other than ``OK``."""

    def __init__(self, what: str, status: int) -> None:
        super().__init__(f"{what}: {Status.describe(status)}")
        #: The status code received (a :class:`Status` member when it is a known code).
        self.status = status


class RelayTimeout(CircuitRelayError, TransportError, trio.TooSlowError):
    """A relay did not answer a hop request in time, or the handshakes of a relayed connection
    through it did not finish in time (a relay, or a peer behind it, that stalls).

    Also a :class:`trio.TooSlowError`, which code written before it existed caught.
    """


class NotARelay(RelayRefused):
    """The peer asked to relay does not serve the hop protocol: it is up, but not a relay.

    Found from the protocols it announced in identify, or from its ``na`` to our hop
    proposal. ``status`` is :attr:`Status.PERMISSION_DENIED` (no status message was
    exchanged: the peer never spoke the relay protocol).
    """

    def __init__(self, peer: PeerID, how: str) -> None:
        CircuitRelayError.__init__(
            self,
            f"{peer} is not a relay: {how} (it does not serve {HOP_PROTOCOL_ID}; is this "
            "the right address, and does that peer run a relay service?)",
        )
        self.status = Status.PERMISSION_DENIED
        #: The peer that is not a relay.
        self.peer = peer


class LimitKind(enum.Enum):
    """Which of a relay's circuit limits was reached."""

    #: The bytes forwarded in one direction (``Limit.data``).
    DATA = "data"
    #: The time the circuit was open (``Limit.duration``).
    DURATION = "duration"


class RelayLimitReached(CircuitRelayError, StreamReset, ConnectionClosedError):
    """The relay reset the circuit under a relayed connection because its data or time limit
    was reached (the limit it announced when the circuit opened).

    Raised by reads and writes on every stream of that connection, and by opening a stream
    on it; it is also :attr:`Connection.error <libp2p.network.connection.Connection.error>`.
    It is a :class:`~libp2p.exceptions.StreamReset` (code that treats any reset alike keeps
    working) and a :class:`~libp2p.exceptions.ConnectionClosedError` (the whole connection
    ended). Move traffic to a direct connection (hole punching) or a relay without limits.
    """

    def __init__(
        self, kind: LimitKind, limit: ConnectionLimit, relay: PeerID | None = None
    ) -> None:
        if kind is LimitKind.DATA:
            what = f"its data limit ({limit.data} bytes per direction)"
        else:
            what = f"its time limit ({limit.duration} s)"
        name = f"relay {relay}" if relay is not None else "the relay"
        StreamReset.__init__(self, f"{name} reset the circuit: {what} was reached")
        #: Which limit: :attr:`LimitKind.DATA` or :attr:`LimitKind.DURATION`.
        self.kind = kind
        #: The limits the relay announced for the circuit.
        self.limit = limit
        #: The relay (``None`` when unknown).
        self.relay = relay

    def __reduce__(self) -> tuple[type[RelayLimitReached], tuple[object, ...]]:
        # Each stream of the connection raises its own copy (copy.copy goes through here).
        return type(self), (self.kind, self.limit, self.relay)


# -- codec ----------------------------------------------------------------------------------


def _pb() -> type[circuit_pb2.HopMessage]:
    from .pb import circuit_pb2

    return circuit_pb2.HopMessage


def _stop_pb() -> type[circuit_pb2.StopMessage]:
    from .pb import circuit_pb2

    return circuit_pb2.StopMessage


def frame(msg: circuit_pb2.HopMessage | circuit_pb2.StopMessage) -> bytes:
    """Serialize ``msg`` with its uvarint length prefix."""
    body = msg.SerializeToString()
    return encode_uvarint(len(body)) + body


def _parse(cls: type[_M], data: bytes, what: str) -> _M:
    from google.protobuf import message as pb_message

    msg = cls()
    try:
        msg.ParseFromString(data)
    except pb_message.DecodeError as exc:
        raise MalformedRelayMessage(f"malformed {what}: {exc}") from exc
    return msg


if TYPE_CHECKING:
    from typing import TypeVar

    _M = TypeVar("_M", circuit_pb2.HopMessage, circuit_pb2.StopMessage)


def decode_hop(data: bytes) -> circuit_pb2.HopMessage:
    """Decode a ``HopMessage`` and check its ``type`` is present and known."""
    msg = _parse(_pb(), data, "hop message")
    if not msg.HasField("type"):
        raise MalformedRelayMessage("hop message without a type")
    if msg.type not in (HOP_RESERVE, HOP_CONNECT, HOP_STATUS):
        raise MalformedRelayMessage(f"hop message of unknown type {msg.type}")
    return msg


def decode_stop(data: bytes) -> circuit_pb2.StopMessage:
    """Decode a ``StopMessage`` and check its ``type`` is present and known."""
    msg = _parse(_stop_pb(), data, "stop message")
    if not msg.HasField("type"):
        raise MalformedRelayMessage("stop message without a type")
    if msg.type not in (STOP_CONNECT, STOP_STATUS):
        raise MalformedRelayMessage(f"stop message of unknown type {msg.type}")
    return msg


async def read_hop(stream: BufferedStream) -> circuit_pb2.HopMessage:
    """Read one hop message; :class:`~libp2p.exceptions.UnexpectedEOF` if the stream ends."""
    return decode_hop(await stream.read_lp(MAX_MESSAGE_SIZE))


async def read_stop(stream: BufferedStream) -> circuit_pb2.StopMessage:
    """Read one stop message."""
    return decode_stop(await stream.read_lp(MAX_MESSAGE_SIZE))


def hop_message(
    type_: int,
    *,
    status: Status | None = None,
    peer: PeerID | None = None,
    limit: ConnectionLimit | None = None,
) -> circuit_pb2.HopMessage:
    """A ``HopMessage`` (without a reservation; set that field on the result)."""
    msg = _pb()(type=type_)  # type: ignore[arg-type]
    if status is not None:
        msg.status = status.value  # type: ignore[assignment]
    if peer is not None:
        msg.peer.id = peer.to_bytes()
    if limit is not None:
        encode_limit(limit, msg.limit)
    return msg


def stop_message(
    type_: int,
    *,
    status: Status | None = None,
    peer: PeerID | None = None,
    limit: ConnectionLimit | None = None,
) -> circuit_pb2.StopMessage:
    """A ``StopMessage``."""
    msg = _stop_pb()(type=type_)  # type: ignore[arg-type]
    if status is not None:
        msg.status = status.value  # type: ignore[assignment]
    if peer is not None:
        msg.peer.id = peer.to_bytes()
    if limit is not None:
        encode_limit(limit, msg.limit)
    return msg


async def send_hop_status(stream: trio.abc.Stream, status: Status) -> None:
    """Write a hop ``STATUS`` message."""
    await stream.send_all(frame(hop_message(HOP_STATUS, status=status)))


async def send_stop_status(stream: trio.abc.Stream, status: Status) -> None:
    """Write a stop ``STATUS`` message."""
    await stream.send_all(frame(stop_message(STOP_STATUS, status=status)))


def encode_limit(limit: ConnectionLimit, out: circuit_pb2.Limit) -> None:
    """Fill the ``Limit`` message ``out`` from ``limit`` (unlimited parts left out)."""
    out.SetInParent()
    if limit.duration is not None:
        out.duration = limit.duration
    if limit.data is not None:
        out.data = limit.data


def decode_limit(
    msg: circuit_pb2.HopMessage | circuit_pb2.StopMessage,
) -> ConnectionLimit | None:
    """The limit a message announces; ``None`` when it has none (absent, or all zero)."""
    if not msg.HasField("limit"):
        return None
    duration = msg.limit.duration if msg.limit.HasField("duration") else 0
    data = msg.limit.data if msg.limit.HasField("data") else 0
    if not duration and not data:
        return None
    return ConnectionLimit(duration=duration or None, data=data or None)


def decode_peer_id(raw: bytes, what: str) -> PeerID:
    """A peer ID from a message field, or :class:`MalformedRelayMessage`."""
    try:
        return PeerID.from_bytes(raw)
    except InvalidPeerIDError as exc:
        raise MalformedRelayMessage(f"{what} is not a valid peer ID: {exc}") from exc


def decode_addrs(raw: list[bytes] | tuple[bytes, ...]) -> list[Multiaddr]:
    """Multiaddrs from their binary form, skipping those that do not decode."""
    from ...peer.record import decode_multiaddr

    out = []
    for item in raw:
        addr = decode_multiaddr(item)
        if addr is not None:
            out.append(addr)
    return out
