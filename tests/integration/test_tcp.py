"""TCP transport over real loopback sockets: port reuse, NODELAY, IPv4 and IPv6."""

from __future__ import annotations

import socket

import pytest
import trio
from multiaddr import Multiaddr

from libp2p.exceptions import LocalUsageError, TransportError
from libp2p.transport.tcp import TcpListener, TcpTransport, parse_tcp_multiaddr


def _ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def _accept_one(listener: TcpListener, results: list[tuple[str, int]], n: int = 1) -> None:
    for _ in range(n):
        stream = await listener.accept()
        peer = stream.socket.getpeername()
        results.append((peer[0], peer[1]))
        await stream.send_all(b"ok")
        await stream.aclose()


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        pytest.param(
            "::1",
            marks=pytest.mark.skipif(
                not _ipv6_loopback_available(), reason="no IPv6 loopback here"
            ),
        ),
    ],
)
async def test_dial_leaves_from_listen_port(ip: str) -> None:
    fam = "ip4" if ":" not in ip else "ip6"
    a, b = TcpTransport(), TcpTransport()
    la = await a.listen(Multiaddr(f"/{fam}/{ip}/tcp/0"))
    lb = await b.listen(Multiaddr(f"/{fam}/{ip}/tcp/0"))
    seen: list[tuple[str, int]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_accept_one, lb, seen)
        stream = await a.dial(lb.multiaddr)
        assert await stream.receive_some(2) == b"ok"
        assert stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await stream.aclose()
    assert seen == [(ip, la.port)]
    await la.aclose()
    await lb.aclose()


async def test_dial_without_listener_uses_ephemeral_port() -> None:
    server, client = TcpTransport(), TcpTransport()
    ls = await server.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))
    seen: list[tuple[str, int]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_accept_one, ls, seen)
        stream = await client.dial(ls.multiaddr)
        assert await stream.receive_some(2) == b"ok"
        await stream.aclose()
    assert seen[0][1] != ls.port
    await ls.aclose()


async def test_second_dial_to_same_target_falls_back() -> None:
    # Two connections from the same listen port to the same target would share a 4-tuple:
    # the second one must still succeed, from another port.
    a, b = TcpTransport(), TcpTransport()
    la = await a.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))
    lb = await b.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))
    seen: list[tuple[str, int]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_accept_one, lb, seen, 2)
        s1 = await a.dial(lb.multiaddr)
        s2 = await a.dial(lb.multiaddr)
        assert await s1.receive_some(2) == b"ok"
        assert await s2.receive_some(2) == b"ok"
        await s1.aclose()
        await s2.aclose()
    ports = sorted(p for _, p in seen)
    assert la.port in ports
    assert len(set(ports)) == 2
    await la.aclose()
    await lb.aclose()


async def test_refused_dial_is_transport_error() -> None:
    t = TcpTransport()
    probe = await t.listen(Multiaddr("/ip4/127.0.0.1/tcp/0"))
    port = probe.port
    await t.close_listener(probe)
    with pytest.raises(TransportError, match="dial"):
        await TcpTransport().dial(Multiaddr(f"/ip4/127.0.0.1/tcp/{port}"))


def test_parse_rejects_non_tcp() -> None:
    with pytest.raises(LocalUsageError):
        parse_tcp_multiaddr(Multiaddr("/ip4/127.0.0.1/udp/1"))
    assert parse_tcp_multiaddr(Multiaddr("/ip6/::1/tcp/5"))[1:] == ("::1", 5)
