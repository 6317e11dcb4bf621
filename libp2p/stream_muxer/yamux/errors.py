"""Yamux-specific exceptions, each placed in the library's whose-fault-is-it hierarchy.

* The peer broke the protocol: :class:`YamuxProtocolError` (and :class:`YamuxFrameError` for
  undecodable headers). The session answers with GoAway(protocol error) and closes.
* The peer floods us with frames that need answers while never reading ours:
  :class:`OutputBacklogExceeded` (a resource limit *and* the peer's fault).
* The peer went quiet: :class:`KeepAliveTimeout` (a transport failure).
* The peer said GoAway: :class:`RemoteGoAway` when we try to open a new stream afterwards.
* We misused a stream: :class:`IllegalStreamTransition` (a local usage error).
"""

from __future__ import annotations

from ...exceptions import (
    ConnectionClosedError,
    DecodeError,
    LocalUsageError,
    RemoteProtocolError,
    ResourceLimitExceeded,
    TransportError,
)

__all__ = [
    "IllegalStreamTransition",
    "KeepAliveTimeout",
    "OutputBacklogExceeded",
    "RemoteGoAway",
    "StreamIDsExhausted",
    "YamuxFrameError",
    "YamuxProtocolError",
]


class YamuxProtocolError(RemoteProtocolError):
    """The peer violated the yamux protocol; the session is closed with GoAway code 1."""


class YamuxFrameError(YamuxProtocolError, DecodeError):
    """A frame header could not be decoded (unknown version or type, short buffer)."""


class OutputBacklogExceeded(ResourceLimitExceeded, RemoteProtocolError):
    """The peer keeps triggering replies (pings, resets) while not reading what we send."""


class KeepAliveTimeout(TransportError):
    """A keep-alive ping got no answer, and nothing else arrived, within the timeout."""


class RemoteGoAway(ConnectionClosedError):
    """The peer sent GoAway: no new streams may be opened on this session.

    Streams that were already open keep working until they finish.
    """

    def __init__(self, code: int) -> None:
        super().__init__(f"the peer sent GoAway (code {code}); no new streams on this session")
        self.code = code


class StreamIDsExhausted(ResourceLimitExceeded):
    """All 2**31 stream IDs of our parity have been used; open a new connection."""


class IllegalStreamTransition(LocalUsageError):
    """A stream event that its current state does not allow (see :mod:`.state`).

    The core catches this for events caused by the *peer* and turns them into a stream reset
    or a :class:`YamuxProtocolError`; it surfaces directly only for local misuse.
    """

    def __init__(self, state: object, event: object) -> None:
        super().__init__(f"stream event {event} is not allowed in state {state}")
        self.state = state
        self.event = event
