"""The exception hierarchy: every error says whose fault it is.

All errors raised by this library derive from :class:`Libp2pError`. Below it, four families
answer the question a caller actually has when something goes wrong:

* :class:`LocalUsageError` -- *we* did something wrong: misuse of the API, an operation on a
  closed object, invalid arguments.
* :class:`RemoteProtocolError` -- the *remote peer* broke the protocol: malformed frames,
  impossible state transitions, failed authentication. The affected stream or connection is
  reset or closed; the host keeps running.
* :class:`ResourceLimitExceeded` -- a configured limit was hit (too many streams, too much
  buffered data, oversized message).
* :class:`TransportError` -- the network failed underneath us (connection refused, reset, timed
  out). OS errors are mapped to this once, at the socket edge.

Stream- and connection-level terminal conditions (:class:`StreamReset`,
:class:`ConnectionClosedError`) sit beside them.
"""

from __future__ import annotations

import trio

__all__ = [
    "ConnectionBrokenError",
    "ConnectionClosedError",
    "ConnectionRefused",
    "DecodeError",
    "HandshakeError",
    "Libp2pError",
    "LimitedConnectionError",
    "LocalUsageError",
    "MessageTooLarge",
    "PeerIDMismatch",
    "ProtocolNotSupported",
    "RemoteProtocolError",
    "ResourceLimitExceeded",
    "StreamReset",
    "TransportError",
    "UnexpectedEOF",
]


class Libp2pError(Exception):
    """Root of every exception raised by this library."""


class LocalUsageError(Libp2pError):
    """The local application misused the API (bad argument, closed object, wrong state)."""


class LimitedConnectionError(LocalUsageError):
    """A stream was asked for on a relay-limited connection by a protocol that did not opt in.

    Relayed connections whose relay imposes limits (duration, bytes) are for coordination:
    identify, ping, hole punching. Protocols that may run over them say so with
    ``allow_limited=True`` (on ``set_stream_handler`` and on ``new_stream``).
    """


class RemoteProtocolError(Libp2pError):
    """The remote peer violated a protocol: its bytes or its behaviour were invalid."""


class DecodeError(RemoteProtocolError):
    """Bytes received from the network could not be decoded (varint, protobuf, frame, ...)."""


class UnexpectedEOF(RemoteProtocolError):
    """The peer closed its side in the middle of a message."""


class HandshakeError(RemoteProtocolError):
    """A security handshake failed: bad signature, bad key, unexpected message."""


class PeerIDMismatch(HandshakeError):
    """The remote proved a different peer ID than the one we dialed."""

    def __init__(self, expected: object, actual: object) -> None:
        super().__init__(f"dialed peer {expected} but the remote proved it is {actual}")
        self.expected = expected
        self.actual = actual


class ProtocolNotSupported(Libp2pError):
    """multistream-select found no protocol both sides support."""


class ResourceLimitExceeded(Libp2pError):
    """A configured limit (streams, buffered bytes, message size, ...) was exceeded."""


class MessageTooLarge(ResourceLimitExceeded, RemoteProtocolError):
    """A peer sent (or announced) a message larger than the protocol allows."""


class TransportError(Libp2pError):
    """The underlying transport failed: refused, reset, unreachable, timed out."""


class ConnectionRefused(TransportError):
    """A dial was refused: the peer (or a router or firewall on the way) answered the SYN
    with an RST, or with an ICMP port-unreachable.

    Hole punching dials again on it (a router that rejects an early punch SYN refuses it
    this way); for other dials it means nothing listens there.
    """


class ConnectionBrokenError(TransportError, trio.BrokenResourceError):
    """The transport connection failed underneath us: reset by the peer (or a router on the
    way), broken pipe, or timed out in the kernel.

    Raised by reads and writes on a TCP connection; the socket's OS error is its
    ``__cause__``. It is also a :class:`trio.BrokenResourceError`, so code written against
    plain trio streams treats it like any other broken stream.
    """


class ConnectionClosedError(Libp2pError):
    """The connection is closed (locally, by the peer, or by a failure)."""


class StreamReset(Libp2pError, trio.BrokenResourceError):
    """The stream was reset (aborted in both directions) by either side.

    It is also a :class:`trio.BrokenResourceError`, so code written against plain trio
    streams treats a reset like any other broken stream.
    """

    def __init__(self, message: str = "stream reset", *, by_remote: bool = True) -> None:
        super().__init__(message)
        self.by_remote = by_remote
