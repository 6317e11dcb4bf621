"""hole-punch-client's roles on loopback, coordinated through a real redis-server.

Listening on loopback only, there is no address to offer for hole punching (loopback ones
never are): the whole choreography runs (relay address in Redis, reservation, peer ID in
Redis, relayed connection, DCUtR) and the dialer fails with a reason instead of printing a
result. Bad values in Redis are refused with a typed error. The real runs, behind NATs, are in
tests/natlab/test_hole_punch_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest
import trio

from libp2p.interop.hole_punch_client import (
    LISTEN_CLIENT_PEER_ID,
    RELAY_TCP_ADDRESS,
    ContractDataError,
    ContractSettings,
    run_dialer,
    run_listener,
    run_relay,
)
from libp2p.interop.redis import RedisClient
from libp2p.relay.circuit_v2 import HolePunchError
from tests.redisserver import RedisServer, free_loopback_port, require_redis


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    require_redis()
    with RedisServer("127.0.0.1", free_loopback_port()) as server:
        yield server


async def test_the_choreography_on_loopback(redis: RedisServer) -> None:
    listen = ContractSettings("listen", "tcp", redis.addr)
    dial = ContractSettings("dial", "tcp", redis.addr)
    async with trio.open_nursery() as nursery:
        relay_addr = await nursery.start(run_relay, redis.addr, ["/ip4/127.0.0.1/tcp/0"])
        listener_id = await nursery.start(
            partial(run_listener, listen, listen=["/ip4/127.0.0.1/tcp/0"])
        )
        # Both values went through Redis: the relay pushed its address twice, the listener
        # took one and pushed its peer ID, which the dialer takes.
        async with await RedisClient.connect(redis.bind, redis.port) as client:
            assert await client.command("LRANGE", RELAY_TCP_ADDRESS, 0, -1) == [
                str(relay_addr).encode()
            ]
            assert await client.command("LRANGE", LISTEN_CLIENT_PEER_ID, 0, -1) == [
                str(listener_id).encode()
            ]
        with trio.fail_after(30), pytest.raises(HolePunchError) as info:
            await run_dialer(dial, listen=["/ip4/127.0.0.1/tcp/0"])
        # The listener had only loopback addresses, which are never offered to a peer.
        assert info.value.reason.value in ("peer_no_address", "no_public_address")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("key", "value", "mode"),
    [
        (RELAY_TCP_ADDRESS, b"not a multiaddr", "listen"),
        (RELAY_TCP_ADDRESS, b"/ip4/127.0.0.1/tcp/1", "dial"),  # no /p2p/<relay id>
        (RELAY_TCP_ADDRESS, b"\xff\xfe", "dial"),
    ],
)
async def test_bad_values_in_redis_are_typed_errors(
    redis: RedisServer, key: str, value: bytes, mode: str
) -> None:
    async with await RedisClient.connect(redis.bind, redis.port) as client:
        await client.rpush(key, value)
    settings = ContractSettings(mode, "tcp", redis.addr)
    role = run_listener if mode == "listen" else run_dialer
    with trio.fail_after(10), pytest.raises(ContractDataError):
        await role(settings)


async def test_a_bad_peer_id_in_redis_is_a_typed_error(redis: RedisServer) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(run_relay, redis.addr, ["/ip4/127.0.0.1/tcp/0"])
        async with await RedisClient.connect(redis.bind, redis.port) as client:
            await client.rpush(LISTEN_CLIENT_PEER_ID, "12D3KooWnotapeerid")
        with trio.fail_after(10), pytest.raises(ContractDataError):
            await run_dialer(ContractSettings("dial", "tcp", redis.addr))
        nursery.cancel_scope.cancel()


async def test_a_relay_on_ipv6_only_pushes_its_ipv6_address(redis: RedisServer) -> None:
    async with trio.open_nursery() as nursery:
        relay_addr = await nursery.start(run_relay, redis.addr, ["/ip6/::1/tcp/0"])
        assert str(relay_addr).startswith("/ip6/::1/tcp/")
        async with await RedisClient.connect(redis.bind, redis.port) as client:
            assert (
                await client.command("LRANGE", RELAY_TCP_ADDRESS, 0, -1)
                == [str(relay_addr).encode()] * 2
            )
        nursery.cancel_scope.cancel()
