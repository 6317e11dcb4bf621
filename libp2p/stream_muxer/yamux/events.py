"""Events returned by the sans-I/O core (:class:`~.connection.YamuxConnection`).

The core turns received bytes into these typed, immutable events; the trio driver turns them
into wake-ups of the tasks that wait on streams, pings and the accept queue. Frames that need
an answer (Ping requests, refused streams, window updates) are answered by the core itself:
the reply bytes are already queued when the event is returned.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DataReceived",
    "GoAwayReceived",
    "PingAcknowledged",
    "PingReceived",
    "SendWindowUpdated",
    "StreamAborted",
    "StreamAcknowledged",
    "StreamEnded",
    "StreamOpened",
    "YamuxEvent",
]


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream (SYN). It waits in the accept backlog until accepted."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamAcknowledged:
    """The peer accepted (ACK) a stream we opened; it no longer counts in the ACK backlog."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Payload bytes for a stream. Call ``acknowledge_received`` once they are consumed."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed the stream (FIN): no more data will arrive on it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamAborted:
    """The stream was reset, by the peer's RST or by the core after a peer violation.

    ``error_code`` is the code a go-yamux >= v5 peer put in a WindowUpdate|RST (usually 0).
    """

    stream_id: int
    error_code: int
    by_remote: bool
    reason: str


@dataclass(frozen=True, slots=True)
class SendWindowUpdated:
    """The peer granted more send window on a stream."""

    stream_id: int
    window: int


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged us; the reply is already queued."""

    opaque: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged:
    """The peer answered one of our pings after ``rtt`` seconds."""

    opaque: int
    rtt: float


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer will accept no new streams. Existing streams continue."""

    code: int


YamuxEvent = (
    StreamOpened
    | StreamAcknowledged
    | DataReceived
    | StreamEnded
    | StreamAborted
    | SendWindowUpdated
    | PingReceived
    | PingAcknowledged
    | GoAwayReceived
)
