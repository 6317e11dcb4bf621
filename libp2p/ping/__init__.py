"""Ping (``/ipfs/ping/1.0.0``): measure the round trip of a connection.

The dialer writes 32 random bytes; the listener echoes them; the dialer checks the echo and
times the round trip. The dialer may repeat on the same stream and closes its write side after
the last ping; the listener echoes until it sees that EOF and then closes. There is no framing.
"""

from __future__ import annotations

import secrets

import trio

from ..exceptions import RemoteProtocolError, UnexpectedEOF
from ..io import BufferedStream

__all__ = ["PING_LENGTH", "PROTOCOL_ID", "handle_ping", "ping"]

#: The ping protocol ID.
PROTOCOL_ID = "/ipfs/ping/1.0.0"
#: Size of one ping payload, fixed by the protocol.
PING_LENGTH = 32


async def handle_ping(stream: trio.abc.Stream) -> None:
    """Serve pings on ``stream`` until the dialer closes its side, then close ours."""
    reader = BufferedStream.wrap(stream)
    try:
        while True:
            first = await reader.receive_some(PING_LENGTH)
            if not first:
                break
            missing = PING_LENGTH - len(first)
            rest = await reader.read_exactly(missing) if missing else b""
            await reader.send_all(bytes(first) + rest)
    finally:
        await reader.aclose()


async def ping(stream: trio.abc.Stream, count: int = 1) -> list[float]:
    """Send ``count`` pings on ``stream``; return each round-trip time in seconds.

    Uses ``trio.current_time()``, so RTTs follow a ``MockClock`` in tests. Raises
    :class:`RemoteProtocolError` if an echo does not match. The stream stays open: close it
    (``send_eof``/``aclose``) when done.
    """
    reader = BufferedStream.wrap(stream)
    rtts: list[float] = []
    for _ in range(count):
        payload = secrets.token_bytes(PING_LENGTH)
        start = trio.current_time()
        await reader.send_all(payload)
        try:
            echo = await reader.read_exactly(PING_LENGTH)
        except UnexpectedEOF as exc:
            raise RemoteProtocolError("peer closed the ping stream before echoing") from exc
        rtts.append(trio.current_time() - start)
        if echo != payload:
            raise RemoteProtocolError("ping echo does not match what was sent")
    return rtts
