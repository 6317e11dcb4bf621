"""Our small Redis client (libp2p/interop/redis.py) against a real redis-server on loopback,
and against a server that answers garbage."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest
import trio

from libp2p.exceptions import LocalUsageError, RemoteProtocolError
from libp2p.interop.redis import (
    RedisClient,
    RedisCommandError,
    RedisUnavailable,
    connect_when_ready,
    parse_redis_addr,
)
from libp2p.interop.resp import RespDecodeError, RespTooLarge
from tests.redisserver import RedisServer, free_loopback_port, require_redis


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    require_redis()
    with RedisServer("127.0.0.1", free_loopback_port()) as server:
        yield server


def test_parse_redis_addr() -> None:
    assert parse_redis_addr("redis:6379") == ("redis", 6379)
    assert parse_redis_addr("[2001:db8::1]:7000") == ("2001:db8::1", 7000)
    for bad in ("redis", ":6379", "redis:", "redis:0", "redis:70000", "redis:x"):
        with pytest.raises(LocalUsageError):
            parse_redis_addr(bad)


async def test_ping_rpush_blpop(redis: RedisServer) -> None:
    async with await RedisClient.connect(redis.bind, redis.port) as client:
        await client.ping()
        assert await client.rpush("K", "a", "b") == 2
        assert await client.blpop("K") == b"a"
        assert await client.blpop("K", 0) == b"b"
        # The server's own timeout: a null array, None here.
        assert await client.blpop("K", 0.1) is None


async def test_blpop_waits_for_a_push_from_another_connection(redis: RedisServer) -> None:
    got: list[bytes | None] = []
    async with (
        await RedisClient.connect(redis.bind, redis.port) as waiter,
        await RedisClient.connect(redis.bind, redis.port) as pusher,
        trio.open_nursery() as nursery,
    ):

        async def wait() -> None:
            got.append(await waiter.blpop("LISTEN_CLIENT_PEER_ID"))

        nursery.start_soon(wait)
        await pusher.rpush("LISTEN_CLIENT_PEER_ID", "12D3KooW")
    assert got == [b"12D3KooW"]


async def test_error_reply_is_a_typed_error(redis: RedisServer) -> None:
    async with await RedisClient.connect(redis.bind, redis.port) as client:
        await client.command("SET", "S", "x")
        with pytest.raises(RedisCommandError, match="WRONGTYPE"):
            await client.rpush("S", "y")
        await client.ping()  # the connection is still good


async def test_unreachable_server() -> None:
    with pytest.raises(RedisUnavailable):
        await RedisClient.connect("127.0.0.1", free_loopback_port())


async def test_connect_when_ready_waits_for_the_server() -> None:
    require_redis()
    port = free_loopback_port()
    server = RedisServer("127.0.0.1", port)
    try:
        async with trio.open_nursery() as nursery:
            clients: list[RedisClient] = []

            async def connect() -> None:
                clients.append(await connect_when_ready(f"127.0.0.1:{port}", retry_interval=0.02))

            nursery.start_soon(connect)
            await trio.to_thread.run_sync(server.__enter__)
        (client,) = clients
        async with client:
            assert await client.rpush("K", "v") == 1
    finally:
        server.stop()


async def serve_once(reply: bytes, stream: trio.SocketStream) -> None:
    await stream.receive_some(1024)
    await stream.send_all(reply)
    await stream.receive_some(1024)  # until the client closes


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", RespDecodeError),
        (b"$99999999\r\n", RespTooLarge),
        # Well-formed RESP, but not what PING answers.
        (b":1\r\n", RemoteProtocolError),
    ],
)
async def test_a_server_speaking_garbage(reply: bytes, error: type[Exception]) -> None:
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            partial(trio.serve_tcp, partial(serve_once, reply), 0, host="127.0.0.1")
        )
        port = listener.socket.getsockname()[1]
        client = await RedisClient.connect("127.0.0.1", port)
        with pytest.raises(error):
            await client.ping()
        await client.aclose()
        nursery.cancel_scope.cancel()
