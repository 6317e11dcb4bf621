"""Identify and identify-push on a stream: who writes, who reads, when the stream ends.

Message flow::

    identify (/ipfs/id/1.0.0)                 push (/ipfs/id/push/1.0.0)
    querier            responder              sender               receiver
      | -- open stream --> |                    | -- open stream --> |
      | <-- Identify ----- |  send_identify     | --- Identify ----> |  read_identify
      | <-- (Identify) --- |  (go may split)    | --- EOF ---------> |
      | <-- EOF ---------- |                    |
      read_identify

The side that *opens* the stream differs (the querier for identify, the sender for push), but
in both cases one side writes and closes its write half, the other reads until EOF, so the
same two functions serve both protocols. Both peers of a connection usually identify each
other at once, over two separate streams.

Reading follows go and js: a response may arrive as up to :data:`MAX_MESSAGES` length-prefixed
messages of at most :data:`~libp2p.identify.message.MAX_MESSAGE_SIZE` bytes each -- go sends
its signed peer record in a second message when the first would exceed 2 KiB -- and they are
combined with protobuf merge rules. Writing follows rust's limit: exactly one message of at
most 4 KiB (:func:`~libp2p.identify.message.encode_identify`).

Timeouts are the caller's: a peer that never sends EOF keeps :func:`read_identify` waiting
until the caller's cancel scope fires (go uses 5 s for both protocols).
"""

from __future__ import annotations

from typing import Final

import trio

from ..exceptions import RemoteProtocolError, UnexpectedEOF
from ..io import BufferedStream
from ..varint import encode_lp
from .message import MAX_MESSAGE_SIZE, IdentifyInfo, decode_identify, encode_identify
from .message import protobuf_merge as _protobuf_merge

__all__ = [
    "MAX_MESSAGES",
    "PROTOCOL_ID",
    "PUSH_PROTOCOL_ID",
    "read_identify",
    "send_identify",
]

#: The identify protocol: the responder describes itself and closes.
PROTOCOL_ID: Final = "/ipfs/id/1.0.0"
#: Identify-push: the sender announces changes (addresses, protocols) unasked.
PUSH_PROTOCOL_ID: Final = "/ipfs/id/push/1.0.0"
#: Most length-prefixed messages one identify response may consist of (go ``maxMessages``).
MAX_MESSAGES: Final = 10


async def send_identify(stream: trio.abc.HalfCloseableStream, info: IdentifyInfo) -> None:
    """Write ``info`` as one length-prefixed message, then close our write side.

    Serves both the identify responder and the push sender. The stream is not closed for
    reading; the caller still owns it and should ``aclose()`` it afterwards.
    """
    await stream.send_all(encode_lp(encode_identify(info)))
    await stream.send_eof()


async def read_identify(stream: trio.abc.Stream) -> IdentifyInfo:
    """Read one identify response or push: every message until EOF, merged.

    Raises, all within :class:`RemoteProtocolError`:

    * :class:`~libp2p.exceptions.MessageTooLarge` for a message over 8 KiB;
    * :class:`RemoteProtocolError` for more than :data:`MAX_MESSAGES` messages;
    * :class:`~libp2p.exceptions.UnexpectedEOF` if the stream ends inside a message, or before
      the first one (an empty response tells us nothing; go would accept it, js would not);
    * :class:`~libp2p.exceptions.DecodeError` if a message is malformed
      (see :func:`~libp2p.identify.message.decode_identify`).

    Transport failures (a reset stream) propagate unchanged. The stream is left open.
    """
    reader = BufferedStream.wrap(stream)
    info: IdentifyInfo | None = None
    for _ in range(MAX_MESSAGES):
        data = await reader.read_lp_or_eof(MAX_MESSAGE_SIZE)
        if data is None:
            break
        part = decode_identify(data)
        info = part if info is None else _protobuf_merge(info, part)
    else:
        if await reader.receive_some(1):
            raise RemoteProtocolError(f"identify response has more than {MAX_MESSAGES} messages")
    if info is None:
        raise UnexpectedEOF("identify stream closed before the first message")
    return info
