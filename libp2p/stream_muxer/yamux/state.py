"""The per-stream state machine: every legal transition in one table.

A yamux stream has two independent directions. Each side half-closes its sending direction
with FIN; RST aborts both directions at once. On top of the spec we track one local-only
state, :attr:`StreamState.LOCAL_CLOSED`: the application called ``aclose()`` -- we sent FIN
*and* stopped reading -- while the peer has not finished sending. In that state incoming
data has no reader, so the core answers it with RST (like a TCP socket closed with unread
data), which tells a peer that keeps writing that nobody listens instead of letting it block
on a window that never reopens.

::

                       SEND_FIN               RECV_FIN
     HALF_CLOSED_LOCAL <-------- OPEN ------------> HALF_CLOSED_REMOTE
          |    \\                  | CLOSE                |
          |     \\ CLOSE           v                      | SEND_FIN / CLOSE
          |      `-------> LOCAL_CLOSED                   |
          | RECV_FIN               | RECV_FIN             |
          `------------------> CLOSED <-------------------'

    any non-terminal state --SEND_RST / RECV_RST--> RESET

``CLOSED`` and ``RESET`` are terminal: the core forgets the stream, and later frames for its
ID are drained and ignored (normal after a local reset).

The opening handshake (SYN / ACK) is orthogonal to these states and tracked by two flags on
the stream record in :mod:`.connection`: whether our next frame must carry ACK, and whether
the stream still counts against the ACK backlog.
"""

from __future__ import annotations

import enum

from .errors import IllegalStreamTransition

__all__ = ["TERMINAL_STATES", "TRANSITIONS", "StreamEvent", "StreamState", "next_state"]


class StreamState(enum.Enum):
    OPEN = "open"
    #: We sent FIN; the peer may still send.
    HALF_CLOSED_LOCAL = "half-closed (local)"
    #: The peer sent FIN; we may still send.
    HALF_CLOSED_REMOTE = "half-closed (remote)"
    #: We sent FIN and abandoned reading; waiting for the peer's FIN.
    LOCAL_CLOSED = "closed locally"
    #: Both sides sent FIN.
    CLOSED = "closed"
    #: Either side sent RST.
    RESET = "reset"


class StreamEvent(enum.Enum):
    SEND_DATA = "send data"
    RECV_DATA = "receive data"
    SEND_FIN = "send FIN"
    RECV_FIN = "receive FIN"
    SEND_RST = "send RST"
    RECV_RST = "receive RST"
    #: The application closed the stream object: FIN (if not yet sent) and stop reading.
    CLOSE = "close"


_S = StreamState
_E = StreamEvent

#: (state, event) -> new state. Anything not listed is illegal.
TRANSITIONS: dict[tuple[StreamState, StreamEvent], StreamState] = {
    (_S.OPEN, _E.SEND_DATA): _S.OPEN,
    (_S.OPEN, _E.RECV_DATA): _S.OPEN,
    (_S.OPEN, _E.SEND_FIN): _S.HALF_CLOSED_LOCAL,
    (_S.OPEN, _E.RECV_FIN): _S.HALF_CLOSED_REMOTE,
    (_S.OPEN, _E.CLOSE): _S.LOCAL_CLOSED,
    (_S.OPEN, _E.SEND_RST): _S.RESET,
    (_S.OPEN, _E.RECV_RST): _S.RESET,
    (_S.HALF_CLOSED_LOCAL, _E.RECV_DATA): _S.HALF_CLOSED_LOCAL,
    (_S.HALF_CLOSED_LOCAL, _E.RECV_FIN): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _E.CLOSE): _S.LOCAL_CLOSED,
    (_S.HALF_CLOSED_LOCAL, _E.SEND_RST): _S.RESET,
    (_S.HALF_CLOSED_LOCAL, _E.RECV_RST): _S.RESET,
    (_S.HALF_CLOSED_REMOTE, _E.SEND_DATA): _S.HALF_CLOSED_REMOTE,
    (_S.HALF_CLOSED_REMOTE, _E.SEND_FIN): _S.CLOSED,
    # go-yamux ignores a repeated FIN; so do we.
    (_S.HALF_CLOSED_REMOTE, _E.RECV_FIN): _S.HALF_CLOSED_REMOTE,
    (_S.HALF_CLOSED_REMOTE, _E.CLOSE): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _E.SEND_RST): _S.RESET,
    (_S.HALF_CLOSED_REMOTE, _E.RECV_RST): _S.RESET,
    # Data arriving here has no reader: the core discards it and resets (SEND_RST).
    (_S.LOCAL_CLOSED, _E.RECV_DATA): _S.LOCAL_CLOSED,
    (_S.LOCAL_CLOSED, _E.RECV_FIN): _S.CLOSED,
    (_S.LOCAL_CLOSED, _E.SEND_RST): _S.RESET,
    (_S.LOCAL_CLOSED, _E.RECV_RST): _S.RESET,
}

TERMINAL_STATES = frozenset({StreamState.CLOSED, StreamState.RESET})


def next_state(state: StreamState, event: StreamEvent) -> StreamState:
    """Return the state after ``event``; raise :class:`IllegalStreamTransition` if illegal."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise IllegalStreamTransition(state, event) from None
