"""The host over loopback: identity, listening, connecting, streams, events, shutdown."""

from __future__ import annotations

from pathlib import Path

import trio

from libp2p import ping
from libp2p.events import ConnectionClosed, ConnectionOpened
from libp2p.host import Host
from libp2p.peer.peerstore import PeerInfo


async def test_key_file_keeps_the_peer_id(tmp_path: Path) -> None:
    path = tmp_path / "relay.key"
    async with Host(key_file=path) as first:
        peer = first.peer_id
    async with Host(key_file=path) as second:
        assert second.peer_id == peer


async def test_listen_reports_bound_addresses() -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as host:
        (addr,) = host.listen_addrs
        assert str(addr).startswith("/ip4/127.0.0.1/tcp/")
        assert not str(addr).endswith("/tcp/0")


async def test_connect_forms_and_streams() -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b, Host() as a:
        b.set_stream_handler(ping.PROTOCOL_ID, ping.handle_ping)
        (addr,) = b.listen_addrs
        # Without /p2p: whoever answers.
        anon = await a.connect(addr)
        assert anon.remote_peer == b.peer_id
        # With /p2p: the existing connection is reused.
        again = await a.connect(f"{addr}/p2p/{b.peer_id}")
        assert again is anon
        # A PeerInfo works too, and the peerstore remembers the address.
        assert await a.connect(PeerInfo(b.peer_id, (addr,))) is anon
        assert addr in a.peerstore.addrs(b.peer_id)
        stream = await a.new_stream(b.peer_id, ping.PROTOCOL_ID)
        assert len(await ping.ping(stream, count=2)) == 2


async def test_new_stream_connects_through_peerstore() -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b, Host() as a:
        b.set_stream_handler(ping.PROTOCOL_ID, ping.handle_ping)
        a.peerstore.add_addrs(b.peer_id, b.listen_addrs, ttl=60)
        assert a.connections_to(b.peer_id) == []
        stream = await a.new_stream(b.peer_id, [ping.PROTOCOL_ID])
        assert len(await ping.ping(stream)) == 1
        assert len(a.connections_to(b.peer_id)) == 1


async def test_wait_for_connection_and_events() -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b, Host() as a:
        result = {}

        async def waiter() -> None:
            result["conn"] = await b.wait_for_connection(a.peer_id)

        with b.events.subscribe(ConnectionOpened, ConnectionClosed) as events:
            async with trio.open_nursery() as n:
                n.start_soon(waiter)
                await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
            assert result["conn"].remote_peer == a.peer_id
            opened = await events.receive()
            assert isinstance(opened, ConnectionOpened)
            await a.disconnect(b.peer_id)
            closed = await events.receive()
            assert isinstance(closed, ConnectionClosed)
            assert closed.peer == a.peer_id


async def test_shutdown_closes_connections_it_opened() -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b:
        with b.events.subscribe(ConnectionClosed) as closed:
            async with Host() as a:
                await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
                await b.wait_for_connection(a.peer_id)
            # Leaving a's block closed its connection: b sees it end.
            event = await closed.receive()
            assert event.peer == a.peer_id
        assert b.connections_to(a.peer_id) == []
