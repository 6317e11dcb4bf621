"""Yamux (``/yamux/1.0.0``): many flow-controlled streams over one connection.

Layout: :mod:`.frame` (the 12-byte header), :mod:`.state` (the per-stream transition table),
:mod:`.connection` (the sans-I/O core: bytes in, events and bytes out, time passed in),
:mod:`.session` (the trio driver). Start with :class:`YamuxSession`::

    session = YamuxSession(secured_stream, is_initiator=noise_initiator)
    await nursery.start(session.run)
    stream = await session.open_stream()     # or: await session.accept_stream()
"""

from __future__ import annotations

from .config import DEFAULT_MAX_FRAME_PAYLOAD, YamuxConfig
from .connection import YamuxConnection
from .errors import (
    IllegalStreamTransition,
    KeepAliveTimeout,
    OutputBacklogExceeded,
    RemoteGoAway,
    StreamIDsExhausted,
    YamuxFrameError,
    YamuxProtocolError,
)
from .events import (
    DataReceived,
    GoAwayReceived,
    PingAcknowledged,
    PingReceived,
    SendWindowUpdated,
    StreamAborted,
    StreamAcknowledged,
    StreamEnded,
    StreamOpened,
    YamuxEvent,
)
from .frame import (
    HEADER,
    HEADER_SIZE,
    INITIAL_WINDOW,
    Flag,
    FrameHeader,
    FrameType,
    GoAwayCode,
    decode_header,
    encode_header,
)
from .session import CloseReason, YamuxSession, YamuxStream, open_yamux_session
from .state import StreamEvent, StreamState, next_state

#: The multistream-select protocol ID of this muxer.
PROTOCOL_ID = "/yamux/1.0.0"

__all__ = [
    "DEFAULT_MAX_FRAME_PAYLOAD",
    "HEADER",
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "PROTOCOL_ID",
    "CloseReason",
    "DataReceived",
    "Flag",
    "FrameHeader",
    "FrameType",
    "GoAwayCode",
    "GoAwayReceived",
    "IllegalStreamTransition",
    "KeepAliveTimeout",
    "OutputBacklogExceeded",
    "PingAcknowledged",
    "PingReceived",
    "RemoteGoAway",
    "SendWindowUpdated",
    "StreamAborted",
    "StreamAcknowledged",
    "StreamEnded",
    "StreamEvent",
    "StreamIDsExhausted",
    "StreamOpened",
    "StreamState",
    "YamuxConfig",
    "YamuxConnection",
    "YamuxEvent",
    "YamuxFrameError",
    "YamuxProtocolError",
    "YamuxSession",
    "YamuxStream",
    "decode_header",
    "encode_header",
    "next_state",
    "open_yamux_session",
]
