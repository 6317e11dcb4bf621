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

from libp2p import Host
from libp2p.crypto.keys import generate_ed25519
from libp2p.exceptions import ConnectionBrokenError, TransportError
from libp2p.peer.id import PeerID
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
