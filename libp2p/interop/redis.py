"""A minimal Redis client on trio: the commands the test-plans suites need (PING, RPUSH, BLPOP).

The protocol lives in ``resp.py`` (I/O-free); this module only opens the TCP connection, writes
encoded commands and feeds what it reads to the parser. One command at a time per connection
(a blocking BLPOP holds its connection until it returns, as in every Redis client).

Errors: :class:`RedisUnavailable` when the server cannot be reached or the connection breaks
(a :class:`~libp2p.exceptions.TransportError`), :class:`RedisCommandError` when the server
answers a command with an error reply, and the parser's
:class:`~libp2p.interop.resp.RespDecodeError` / :class:`~libp2p.interop.resp.RespTooLarge`
when its bytes are not RESP2 (the connection is closed then).
"""

from __future__ import annotations

import logging
from types import TracebackType

import trio

from ..exceptions import Libp2pError, LocalUsageError, RemoteProtocolError, TransportError
from .resp import (
    NEED_DATA,
    ErrorReply,
    NeedData,
    Reply,
    RespParser,
    SimpleString,
    encode_command,
)

__all__ = [
    "DEFAULT_REDIS_ADDR",
    "RedisClient",
    "RedisCommandError",
    "RedisUnavailable",
    "parse_redis_addr",
]

log = logging.getLogger(__name__)

#: Where the test-plans suites run Redis (a compose service named ``redis``, default port).
DEFAULT_REDIS_ADDR = "redis:6379"

_READ_SIZE = 16 * 1024


class RedisUnavailable(TransportError):
    """The Redis server could not be reached, or the connection to it broke."""


class RedisCommandError(Libp2pError):
    """The Redis server answered a command with an error reply (``-ERR ...``)."""


def parse_redis_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"`` for IPv6) as ``(host, port)``.

    Raises :class:`~libp2p.exceptions.LocalUsageError` for anything else.
    """
    host, sep, port_text = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise LocalUsageError(f"a Redis address is host:port, not {addr!r}")
    return host, int(port_text)


class RedisClient:
    """One connection to a Redis server; use :meth:`connect` and ``async with``."""

    def __init__(self, stream: trio.abc.Stream, *, parser: RespParser | None = None) -> None:
        self._stream = stream
        self._parser = parser or RespParser()
        self._lock = trio.Lock()

    @classmethod
    async def connect(cls, host: str, port: int) -> RedisClient:
        """Open a TCP connection to ``host:port`` (a name is resolved)."""
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise RedisUnavailable(f"cannot connect to Redis at {host}:{port}: {exc}") from exc
        return cls(stream)

    async def __aenter__(self) -> RedisClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection."""
        await self._stream.aclose()

    async def command(self, *args: str | bytes | int) -> Reply:
        """Send one command and return its reply; an error reply raises
        :class:`RedisCommandError`."""
        data = encode_command(*args)
        async with self._lock:
            try:
                await self._stream.send_all(data)
                reply = await self._read_reply()
            except (trio.BrokenResourceError, OSError) as exc:
                raise RedisUnavailable(f"connection to Redis broke: {exc}") from exc
            except RemoteProtocolError:
                await self._stream.aclose()
                raise
        if isinstance(reply, ErrorReply):
            raise RedisCommandError(f"Redis refused {args[0]!r}: {reply.text}")
        return reply

    async def _read_reply(self) -> Reply:
        while True:
            reply: Reply | NeedData = self._parser.next_reply()
            if reply is not NEED_DATA:
                assert not isinstance(reply, NeedData)
                return reply
            data = await self._stream.receive_some(_READ_SIZE)
            if not data:
                raise RedisUnavailable("Redis closed the connection before replying")
            self._parser.feed(bytes(data))

    async def ping(self) -> None:
        """PING; the server must answer PONG."""
        reply = await self.command("PING")
        if reply != SimpleString("PONG"):
            raise RemoteProtocolError(f"Redis answered PING with {reply!r}")

    async def rpush(self, key: str, *values: str | bytes) -> int:
        """RPUSH ``values`` to the list ``key``; returns the list's new length."""
        reply = await self.command("RPUSH", key, *values)
        if not isinstance(reply, int) or isinstance(reply, bool):
            raise RemoteProtocolError(f"Redis answered RPUSH with {reply!r}")
        return reply

    async def blpop(self, key: str, server_wait: float = 0) -> bytes | None:
        """BLPOP one value from ``key``; the server waits up to ``server_wait`` seconds (0: for
        ever, as the test-plans suites ask) and answers None when that runs out. (A limit on
        our side is a ``trio.fail_after`` around the call.)"""
        reply = await self.command("BLPOP", key, _seconds(server_wait))
        if reply is None:
            return None
        if (
            not isinstance(reply, list)
            or len(reply) != 2
            or not isinstance(reply[0], bytes)
            or not isinstance(reply[1], bytes)
        ):
            raise RemoteProtocolError(f"Redis answered BLPOP with {reply!r}")
        if reply[0] != key.encode():
            raise RemoteProtocolError(f"Redis answered BLPOP {key!r} for key {reply[0]!r}")
        return reply[1]


def _seconds(wait: float) -> str:
    if not wait >= 0:
        raise LocalUsageError(f"BLPOP wait must be >= 0 seconds, not {wait!r}")
    # Redis >= 6 takes a decimal timeout; an integer string works on every version.
    return str(int(wait)) if float(wait).is_integer() else f"{wait:.3f}"


async def connect_when_ready(addr: str, *, retry_interval: float = 0.1) -> RedisClient:
    """Connect to Redis at ``addr`` (``host:port``) and PING it, retrying until it answers.

    In the test-plans compose file the clients start alongside Redis, not after it is ready,
    so the first attempts may be refused or the name not resolve yet; this retries for as long
    as the caller lets it (put a ``trio.fail_after`` around it for a limit).
    """
    host, port = parse_redis_addr(addr)
    attempt = 0
    while True:
        attempt += 1
        try:
            client = await RedisClient.connect(host, port)
        except RedisUnavailable as exc:
            if attempt == 1 or attempt % 50 == 0:
                log.info("Redis not reachable yet (%s); retrying", exc)
        else:
            try:
                await client.ping()
            except RedisUnavailable as exc:
                await client.aclose()
                log.info("Redis not ready yet (%s); retrying", exc)
            except BaseException:
                await client.aclose()
                raise
            else:
                return client
        # Nothing to wait on but time: Redis gives no signal before it accepts connections.
        await trio.sleep(retry_interval)
