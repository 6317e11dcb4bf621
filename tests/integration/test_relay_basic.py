"""Circuit Relay v2 among our own hosts on loopback: reserve, connect, carry data."""

from __future__ import annotations

import trio

from libp2p import Host, HostConfig
from libp2p.network.connection import ConnectionLimit, NetStream
from libp2p.relay.circuit_v2 import RelayConfig

ECHO = "/test/echo/1.0.0"


async def echo(stream: NetStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    out = bytearray()
    while data := await stream.receive_some():
        out += data
    return bytes(out)


async def test_reserve_connect_and_echo() -> None:
    async with (
        Host(
            listen=["/ip4/127.0.0.1/tcp/0"], config=HostConfig(relay_service=RelayConfig())
        ) as relay,
        Host(listen=["/ip4/127.0.0.1/tcp/0"]) as listener,
        Host() as dialer,
    ):
        listener.set_stream_handler(ECHO, echo, allow_limited=True)
        relay_addr = f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}"
        addrs = await listener.listen(f"{relay_addr}/p2p-circuit")
        assert addrs == [relay.listen_addrs[0].encapsulate(f"/p2p/{relay.peer_id}/p2p-circuit")]
        assert addrs[0] in listener.addrs
        conn = await dialer.connect(f"{addrs[0]}/p2p/{listener.peer_id}")
        assert conn.relayed
        assert conn.limited
        assert conn.limit == ConnectionLimit(duration=120, data=131072)
        stream = await dialer.new_stream(listener.peer_id, ECHO, allow_limited=True)
        await stream.send_all(b"hello through the relay")
        await stream.send_eof()
        assert await read_all(stream) == b"hello through the relay"
        stats = relay.relay_service.stats if relay.relay_service else None
        assert stats is not None
        assert stats.reservations_active == 1
        assert stats.circuits_opened == 1
