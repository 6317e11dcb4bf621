"""Swarm connection management over loopback: events, merged dials, caps, DNS names."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from multiaddr import Multiaddr

from libp2p import ping
from libp2p.crypto.keys import generate_ed25519
from libp2p.events import ConnectionClosed, ConnectionOpened, EventBus
from libp2p.exceptions import LocalUsageError, PeerIDMismatch, TransportError
from libp2p.network.connection import ConnectionLimit, Direction
from libp2p.network.swarm import Swarm
from libp2p.peer.id import PeerID


async def test_events_for_open_and_close() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        with (
            a.events.subscribe(ConnectionOpened, ConnectionClosed) as events_a,
            b.events.subscribe(ConnectionOpened) as events_b,
        ):
            conn = await a.dial(f"{addr}/p2p/{b.peer_id}")
            opened = await events_a.receive()
            assert isinstance(opened, ConnectionOpened)
            assert opened.connection is conn
            assert opened.peer == b.peer_id
            assert opened.direction is Direction.OUTBOUND
            assert not opened.relayed
            assert not opened.limited
            inbound = await events_b.receive()
            assert inbound.direction is Direction.INBOUND
            assert inbound.peer == a.peer_id
            await conn.aclose()
            closed = await events_a.receive()
            assert isinstance(closed, ConnectionClosed)
            assert closed.connection is conn
            assert closed.duration >= 0


async def test_concurrent_dials_are_merged() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        results = []

        async def dial() -> None:
            results.append(await a.dial_peer(b.peer_id, [addr]))

        async with trio.open_nursery() as n:
            for _ in range(5):
                n.start_soon(dial)
        assert len(results) == 5
        assert all(c is results[0] for c in results)
        assert len(a.connections_to(b.peer_id)) == 1
        # Once connected, further calls reuse the connection without dialing.
        assert await a.dial_peer(b.peer_id, [addr]) is results[0]
        assert await a.dial_peer(b.peer_id, []) is results[0]


async def test_dial_peer_tries_addresses_in_order() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        (good,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        dead = await _dead_address()
        conn = await a.dial_peer(b.peer_id, [dead, good])
        assert conn.remote_peer == b.peer_id
        with pytest.raises(LocalUsageError, match="no address"):
            await a.dial_peer(generate_peer(), [])
        # One address: its own error; several: every address with its reason.
        with pytest.raises(TransportError, match="refused"):
            await a.dial_peer(generate_peer(), [dead])
        with pytest.raises(TransportError, match="could not connect"):
            await a.dial_peer(generate_peer(), [dead, dead])
        # A remote that proves another identity is the remote's fault, not the network's.
        with pytest.raises(PeerIDMismatch):
            await a.dial_peer(generate_peer(), [dead, good])


async def test_dns_names_are_resolved() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        b.set_stream_handler(ping.PROTOCOL_ID, ping.handle_ping)
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        port = str(addr).split("/")[4]
        conn = await a.dial(f"/dns4/localhost/tcp/{port}/p2p/{b.peer_id}")
        assert str(conn.remote_addr) == f"/ip4/127.0.0.1/tcp/{port}"
        stream = await conn.new_stream(ping.PROTOCOL_ID)
        assert len(await ping.ping(stream)) == 1


async def test_unresolvable_name_is_transport_error() -> None:
    async with Swarm(generate_ed25519()) as a:
        with pytest.raises(TransportError, match="resolve"):
            await a.dial("/dns4/name.invalid/tcp/1")


async def test_inbound_connection_cap() -> None:
    async with Swarm(generate_ed25519(), max_inbound_connections=1) as b:
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        async with Swarm(generate_ed25519()) as a1, Swarm(generate_ed25519()) as a2:
            await a1.dial(f"{addr}/p2p/{b.peer_id}")
            with pytest.raises((TransportError, trio.BrokenResourceError)):
                await a2.dial(f"{addr}/p2p/{b.peer_id}")
            assert len(b.connections) == 1


async def test_best_connection_prefers_direct() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        direct = await a.dial(f"{addr}/p2p/{b.peer_id}")
        # A second, "relayed" connection beside it (any byte stream can carry one).
        left, right = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as n:
            n.start_soon(
                lambda: b.upgrade_stream(right, initiator=False, direction=Direction.INBOUND)
            )
            relayed = await a.upgrade_stream(
                left,
                initiator=True,
                direction=Direction.OUTBOUND,
                relayed=True,
                limit=ConnectionLimit(120, 131072),
            )
        assert relayed.opened_at >= direct.opened_at
        assert a.best_connection(b.peer_id) is direct
        await direct.aclose()
        await direct.wait_closed()
        assert a.best_connection(b.peer_id) is relayed


def test_event_bus_drops_for_slow_subscriber() -> None:
    bus = EventBus()
    with bus.subscribe(int, buffer=2) as recv:
        for i in range(5):
            bus.publish(i)
        bus.publish("not an int")
        assert [recv.receive_nowait(), recv.receive_nowait()] == [0, 1]
        with pytest.raises(trio.WouldBlock):
            recv.receive_nowait()
    assert bus.subscriber_count == 0


def generate_peer() -> PeerID:
    return PeerID.from_public_key(generate_ed25519().public_key)


async def _dead_address() -> Multiaddr:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    return Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
