"""A host that no peer can crash, wedge or confuse (issue 10's items, over real sockets).

Each test plays a misbehaving peer with plain sockets, or a peer that follows the specs
without our workarounds, and checks that the failure is a typed error on that one operation
while the host keeps running.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import Host, HostConfig, multistream, ping
from libp2p.crypto.keys import generate_ed25519
from libp2p.events import ConnectionOpened
from libp2p.exceptions import (
    ConnectionBrokenError,
    Libp2pError,
    ProtocolNotSupported,
    TransportError,
)
from libp2p.io import BufferedStream
from libp2p.multistream import LazyNegotiatedStream
from libp2p.network.address_policy import AddressPolicy
from libp2p.peer.id import PeerID
from libp2p.relay.circuit_v2 import RelayConfig
from libp2p.relay.circuit_v2.dcutr import HolePunchConfig
from libp2p.security.noise import noise_handshake
from libp2p.transport.tcp import TcpStream, TcpTransport


def _reset(sock: trio.socket.SocketType) -> None:
    """Close ``sock`` with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@asynccontextmanager
async def resetting_server(read_first: int) -> AsyncIterator[int]:
    """A TCP server that accepts, reads ``read_first`` bytes (0: none), then resets."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]

    async def serve() -> None:
        while True:
            conn, _ = await listener.accept()
            got = 0
            while got < read_first:
                chunk = await conn.recv(read_first - got)
                if not chunk:
                    break
                got += len(chunk)
            _reset(conn)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        try:
            yield port
        finally:
            nursery.cancel_scope.cancel()
            listener.close()


@pytest.mark.parametrize("read_first", [0, 1, 40])
async def test_reset_during_the_handshake_fails_only_that_dial(read_first: int) -> None:
    # Issue 10, item 1: connect() raised a bare AssertionError and the host's `async with`
    # died with an ExceptionGroup holding BrokenResourceError.
    other = PeerID.from_public_key(generate_ed25519().public_key)
    async with (
        resetting_server(read_first) as port,
        Host(listen=["/ip4/127.0.0.1/tcp/0"]) as good,
        Host() as host,
    ):
        for _ in range(3):  # through dial_peer (with /p2p) and plain dial (without)
            with pytest.raises(TransportError):
                await host.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{other}")
            with pytest.raises(TransportError):
                await host.connect(f"/ip4/127.0.0.1/tcp/{port}")
        # The host is still up and connects to a well-behaved peer.
        conn = await host.connect(f"{good.listen_addrs[0]}/p2p/{good.peer_id}")
        assert conn.remote_peer == good.peer_id
        assert host.connections == [conn]


@pytest.mark.parametrize("send_first", [b"", b"\x13/multistream/1.0.0\n", b"\x13/multi"])
async def test_reset_during_an_inbound_handshake_costs_only_that_connection(
    send_first: bytes,
) -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as host, Host() as good:
        port = int(str(host.listen_addrs[0]).rsplit("/", 1)[1])
        for _ in range(5):
            sock = trio.socket.socket()
            await sock.connect(("127.0.0.1", port))
            if send_first:
                await sock.send(send_first)
            _reset(sock)
        conn = await good.connect(f"{host.listen_addrs[0]}/p2p/{host.peer_id}")
        assert conn.remote_peer == host.peer_id


async def test_a_broken_connection_is_a_typed_transport_error() -> None:
    # Reads on a socket the peer reset raise ConnectionBrokenError, which is both a libp2p
    # TransportError and a trio.BrokenResourceError.
    async def drain(stream: TcpStream) -> None:
        while await stream.receive_some():
            pass

    async with resetting_server(1) as port:
        stream = await TcpTransport().dial(Multiaddr(f"/ip4/127.0.0.1/tcp/{port}"))
        await stream.send_all(b"x")
        with pytest.raises(ConnectionBrokenError) as info:
            await drain(stream)
        assert isinstance(info.value, trio.BrokenResourceError)
        assert isinstance(info.value.__cause__, trio.BrokenResourceError | OSError)
        await stream.aclose()


async def test_an_error_in_the_body_comes_out_as_itself() -> None:
    # Issue 10, item 9: `except ValueError` around `async with Host()` must catch it.
    async def connect_then_fail() -> None:
        async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b, Host() as a:
            await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
            raise ValueError("from the body")

    async def fail_at_once() -> None:
        async with Host():
            raise KeyError("k")

    with pytest.raises(ValueError, match="from the body"):
        await connect_then_fail()
    with pytest.raises(KeyError):
        await fail_at_once()


async def test_wait_identified_returns_after_identify_finished() -> None:
    # Issue 10, item 7: it hung forever when called after identify had finished.
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b, Host() as a:
        conn = await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
        with trio.fail_after(10):
            await a.identify.wait_identified(conn)
        assert a.peerstore.supports(b.peer_id, ping.PROTOCOL_ID)
        with trio.fail_after(10):  # a second call, long after: at once
            await a.identify.wait_identified(conn)
        await conn.aclose()
        with trio.fail_after(10):  # and on a closed connection
            await a.identify.wait_identified(conn)


def _drop_every_event(host: Host) -> None:
    """What a public bus whose subscribers all fell behind does: deliver nothing."""
    host.events.publish = lambda event: None  # type: ignore[method-assign]


async def test_services_do_not_ride_the_public_event_bus() -> None:
    # Issue 10, item 8: a dropped "connection opened" meant no identify and no hole punch.
    punch = HolePunchConfig(address_policy=AddressPolicy.local_testing())
    config = HostConfig(hole_punching=punch)
    async with (
        Host(
            listen=["/ip4/127.0.0.1/tcp/0"], config=HostConfig(relay_service=RelayConfig())
        ) as relay,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=config) as listener,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=config) as dialer,
    ):
        for host in (relay, listener, dialer):
            _drop_every_event(host)
        (relayed,) = await listener.listen(
            f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}/p2p-circuit"
        )
        conn = await dialer.connect(f"{relayed}/p2p/{listener.peer_id}")
        with trio.fail_after(20):
            await dialer.identify.wait_identified(conn)
            direct = await dialer.wait_for_connection(listener.peer_id, direct=True)
        assert dialer.peerstore.supports(listener.peer_id, ping.PROTOCOL_ID)
        assert not direct.relayed


async def test_subscribe_is_typed_by_what_it_asks_for() -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b, Host() as a:
        with a.events.subscribe(ConnectionOpened) as opened:
            await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
            event = await opened.receive()
        # mypy sees ConnectionOpened here (no cast, no isinstance needed).
        assert event.connection.remote_peer == b.peer_id


async def test_a_protocol_the_peer_lacks_is_refused_by_new_stream() -> None:
    # Issue 10, item 4: a lazy proposal to a peer without the protocol let go-libp2p read our
    # request as a second proposal and reset; we now wait for the answer unless identify
    # says the peer supports the protocol, so the refusal is ProtocolNotSupported, here.
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b, Host() as a:
        conn = await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
        for _ in range(5):
            with pytest.raises(ProtocolNotSupported):
                await a.new_stream(b.peer_id, "/nope/1.0.0")
        await a.identify.wait_identified(conn)
        # Known from identify: lazy, and it works at once.
        stream = await a.new_stream(b.peer_id, ping.PROTOCOL_ID)
        assert isinstance(stream._stream, LazyNegotiatedStream)
        assert len(await ping.ping(stream)) == 1


@asynccontextmanager
async def mplex_only_peer(inline: bool) -> AsyncIterator[tuple[int, PeerID]]:
    """A peer whose only muxer is mplex: it lists it inside Noise (``inline``) or not, and
    refuses yamux in multistream-select."""
    key = generate_ed25519()
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    async def serve_one(sock: trio.socket.SocketType) -> None:
        raw = BufferedStream(trio.SocketStream(sock))
        try:
            await multistream.handle(raw, ("/noise",))
            secure = await noise_handshake(
                raw, key, initiator=False, muxers=("/mplex/6.7.0",) if inline else ()
            )
            await multistream.handle(BufferedStream(secure), ("/mplex/6.7.0",))
        except (Libp2pError, trio.BrokenResourceError):
            pass  # the dialer gave up on us, as it should
        finally:
            sock.close()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            while True:
                sock, _ = await listener.accept()
                nursery.start_soon(serve_one, sock)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        try:
            yield listener.getsockname()[1], PeerID.from_public_key(key.public_key)
        finally:
            nursery.cancel_scope.cancel()
            listener.close()


@pytest.mark.parametrize("inline", [True, False], ids=["listed-in-noise", "multistream"])
async def test_no_muxer_in_common_fails_connect(inline: bool) -> None:
    # Issue 10, item 5: connect() succeeded, and the first stream failed (and dialed again).
    async with mplex_only_peer(inline) as (port, peer), Host() as host:
        with pytest.raises(ProtocolNotSupported, match="muxer"):
            await host.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}")
        assert host.connections == []


async def test_listening_on_a_port_another_socket_holds_fails() -> None:
    # Issue 10, item 6: a second listener on the same port succeeded (SO_REUSEPORT) and the
    # kernel split connections between the two.
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as first:
        with pytest.raises(TransportError, match="already in use"):
            async with Host(listen=[first.listen_addrs[0]]):
                pass
        # A socket of another program, without SO_REUSEPORT, is refused just the same.
        other = trio.socket.socket()
        await other.bind(("127.0.0.1", 0))
        other.listen(1)
        taken = other.getsockname()[1]
        with pytest.raises(TransportError, match="already in use"):
            await TcpTransport().listen(Multiaddr(f"/ip4/127.0.0.1/tcp/{taken}"))
        other.close()
        # The first host's own dials from its listen port still work.
        async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as second:
            conn = await first.connect(f"{second.listen_addrs[0]}/p2p/{second.peer_id}")
            assert conn.local_addr == first.listen_addrs[0]


async def test_a_port_freed_by_a_closed_host_can_be_listened_on_again() -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as first, Host() as peer:
        addr = first.listen_addrs[0]
        await peer.connect(f"{addr}/p2p/{first.peer_id}")
    # Connections of the first run linger in TIME_WAIT; that must not block a restart.
    async with Host(listen=[addr]) as again:
        assert again.listen_addrs == [addr]


async def test_connect_after_disconnect_dials_anew() -> None:
    # Found by benchmarks/load.py: disconnect() returned while the connection still looked
    # open, and the next connect() was handed the dying connection.
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b, Host() as a:
        addr = f"{b.listen_addrs[0]}/p2p/{b.peer_id}"
        seen = []
        for _ in range(5):
            conn = await a.connect(addr)
            assert conn not in seen
            seen.append(conn)
            stream = await conn.new_stream([ping.PROTOCOL_ID])
            assert len(await ping.ping(stream)) == 1
            await a.disconnect(b.peer_id)
            assert conn.is_closed
            assert a.connections_to(b.peer_id) == []
