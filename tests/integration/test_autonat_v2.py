"""AutoNAT v2 among our own hosts, over real sockets on loopback.

Reachable: the client listens on the address it asks about. Unreachable: an address where
nothing listens any more (a listener opened, its port noted, then closed). The amplification
guard: the client connects to the server from 127.0.0.1 and asks about an address on
127.0.0.2 (both loopback, different IPs), so the server asks for dial data first.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import AddressPolicy, Host, HostConfig
from libp2p.host.autonat.v2 import (
    DIAL_REQUEST_PROTOCOL,
    AddressCheck,
    AutoNATv2Client,
    AutoNATv2ClientConfig,
    AutoNATv2Server,
    AutoNATv2ServerConfig,
    CheckOutcome,
)
from libp2p.host.autonat.v2.protocol import (
    DialRequest,
    DialResponse,
    ResponseStatus,
    encode_message,
    read_message,
)
from libp2p.io import BufferedStream
from libp2p.network.connection import Connection, Direction
from libp2p.relay.circuit_v2 import RelayConfig

LOCAL = AddressPolicy.local_testing()
REAL_TIMEOUT = 20.0


def server_config(**kw: Any) -> HostConfig:
    kw.setdefault("dial_data_wait", 0.0)
    return HostConfig(
        autonat_v2_server=AutoNATv2ServerConfig(addresses=LOCAL, **kw),
        autonat_client=None,
        hole_punching=None,
    )


def client_config(**kw: Any) -> HostConfig:
    return HostConfig(
        autonat_client=None, hole_punching=None, autonat_v2_client=AutoNATv2ClientConfig(**kw)
    )


def full(host: Host) -> Multiaddr:
    return host.listen_addrs[0].encapsulate(Multiaddr(f"/p2p/{host.peer_id}"))


async def connect(client: Host, server: Host) -> Connection:
    conn = await client.connect(full(server))
    await client.identify.wait_identified(conn)
    return conn


def v2(host: Host) -> AutoNATv2Client:
    assert host.autonat_v2 is not None
    return host.autonat_v2


def v2_server(host: Host) -> AutoNATv2Server:
    assert host.autonat_v2_server is not None
    return host.autonat_v2_server


def served_once(host: Host) -> trio.Event:
    """An event set when the server's handler has finished its next request."""
    done = trio.Event()
    server = v2_server(host)

    async def handle(stream: Any) -> None:
        try:
            await server.handle(stream)
        finally:
            done.set()

    host.set_stream_handler(DIAL_REQUEST_PROTOCOL, handle, allow_limited=True)
    return done


class InboundWatch:
    """A swarm observer: ``opened`` is set when an inbound connection opens."""

    def __init__(self) -> None:
        self.opened = trio.Event()

    def connection_opened(self, conn: Connection) -> None:
        if conn.direction is Direction.INBOUND:
            self.opened.set()

    def connection_closed(self, conn: Connection) -> None:
        pass


def closed_port_addr(ip: str = "127.0.0.1") -> Multiaddr:
    """An address where nothing listens: a port bound and released at once."""
    with socket.socket() as sock:
        sock.bind((ip, 0))
        port = sock.getsockname()[1]
    return Multiaddr(f"/ip4/{ip}/tcp/{port}")


async def test_reachable_address_is_verified_by_nonce() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config()) as server,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config()) as client,
        ):
            await connect(client, server)
            assert v2(client).servers() == [server.peer_id]
            check = await v2(client).check(server.peer_id, client.listen_addrs)
            assert check.outcome is CheckOutcome.REACHABLE, check
            assert check.verified
            assert check.addr == client.listen_addrs[0]
            assert check.dial_data == 0
            assert check.server == server.peer_id
            stats = v2_server(server).stats
            assert stats.answered["OK"] == 1
            assert stats.dial_status["OK"] == 1
            # The dial-back came from the server's throwaway identity, on its own
            # connection, which is gone again.
            assert v2_server(server).dial_back_peer_id != server.peer_id
            assert len(client.connections_to(server.peer_id)) == 1


async def test_closed_port_is_unreachable() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config()) as server,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config()) as client,
        ):
            await connect(client, server)
            closed = closed_port_addr()
            check = await v2(client).check(server.peer_id, [closed, *client.listen_addrs])
            # Only the first dialable address is tried: the closed one.
            assert check.outcome is CheckOutcome.UNREACHABLE, check
            assert check.addr == closed
            assert not check.verified
            assert v2_server(server).stats.dial_status["E_DIAL_ERROR"] == 1


async def test_listener_closed_becomes_unreachable() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config()) as server,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config()) as client,
        ):
            await connect(client, server)
            (tested,) = await client.listen("/ip4/127.0.0.1/tcp/0")
            first = await v2(client).check(server.peer_id, [tested])
            assert first.outcome is CheckOutcome.REACHABLE, first
            (listener,) = [
                lst for lst in client.swarm.transport.listeners if lst.multiaddr == tested
            ]
            await listener.aclose()
            second = await v2(client).check(server.peer_id, [tested])
            assert second.outcome is CheckOutcome.UNREACHABLE, second
            assert not second.verified


async def test_other_ip_pays_dial_data_first() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config()) as server,
            Host(
                listen=["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.2/tcp/0"], config=client_config()
            ) as client,
        ):
            await connect(client, server)
            other = [a for a in client.listen_addrs if "127.0.0.2" in str(a)]
            check = await v2(client).check(server.peer_id, other)
            assert check.outcome is CheckOutcome.REACHABLE, check
            assert check.addr == other[0]
            assert 30_000 <= check.dial_data <= 100_000
            assert v2_server(server).stats.dial_data_bytes == check.dial_data


async def test_client_declines_dial_data_above_its_cap() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config()) as server,
            Host(
                listen=["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.2/tcp/0"],
                config=client_config(max_dial_data=1000),
            ) as client,
        ):
            await connect(client, server)
            handled = served_once(server)
            other = [a for a in client.listen_addrs if "127.0.0.2" in str(a)]
            check = await v2(client).check(server.peer_id, other)
            assert check.outcome is CheckOutcome.ERROR
            assert "declined" in check.detail
            assert check.dial_data == 0
            # The server saw the reset and dialed nothing.
            await handled.wait()
            assert sum(v2_server(server).stats.aborted.values()) == 1
            assert not v2_server(server).stats.dialed


async def test_rate_limit_rejects() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config(peer_rate=2)) as server,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config()) as client,
        ):
            await connect(client, server)
            results: list[AddressCheck] = []
            for _ in range(3):
                results.append(await v2(client).check(server.peer_id, client.listen_addrs))
            assert [r.outcome for r in results] == [
                CheckOutcome.REACHABLE,
                CheckOutcome.REACHABLE,
                CheckOutcome.REJECTED,
            ]
            assert v2_server(server).stats.rejected["peer rate limit"] == 1


async def test_refused_when_nothing_dialable() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(
                listen=["/ip4/127.0.0.1/tcp/0"],
                config=HostConfig(
                    autonat_v2_server=AutoNATv2ServerConfig(),  # loopback not allowed
                    autonat_client=None,
                    hole_punching=None,
                ),
            ) as server,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config()) as client,
        ):
            await connect(client, server)
            check = await v2(client).check(
                server.peer_id, [*client.listen_addrs, Multiaddr("/ip4/127.0.0.1/udp/1")]
            )
            assert check.outcome is CheckOutcome.REFUSED, check
            assert check.addr is None


async def test_servers_needs_the_protocol() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config()) as plain,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config()) as client,
        ):
            await connect(client, plain)
            assert v2(client).servers() == []
            assert not client.peerstore.supports(plain.peer_id, DIAL_REQUEST_PROTOCOL)
            check = await v2(client).check(plain.peer_id, client.listen_addrs)
            assert check.outcome is CheckOutcome.ERROR
            assert "no stream" in check.detail


@pytest.mark.parametrize("count", [1])
async def test_check_needs_an_address(count: int) -> None:
    async with Host(config=client_config()) as client:
        from libp2p.exceptions import LocalUsageError

        with pytest.raises(LocalUsageError):
            await v2(client).check(client.peer_id, [])


async def test_a_connection_the_peer_closed_is_not_used_for_new_streams() -> None:
    # A server dialing back with the client's own view of its identity (js does) leaves a
    # second, newer connection that it closes at once; until our side has wound it down,
    # new streams to that peer must not pick it (they did: "yamux session closed").
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config()) as server,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config()) as client,
        ):
            await connect(client, server)
            inbound = InboundWatch()
            client.swarm.observe(inbound)
            async with server.swarm.dial_isolated(client.peer_id, client.listen_addrs):
                await inbound.opened.wait()
            stream = await client.new_stream(server.peer_id, DIAL_REQUEST_PROTOCOL)
            await stream.reset()


async def test_a_long_address_list_is_cut_to_what_servers_read() -> None:
    # 400 IPv6 addresses encode to over 9 kB, past every server's limit (go and ours 8 KiB,
    # rust 4104 bytes): the client sends the longest prefix that fits in 4096.
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config()) as server,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config()) as client,
        ):
            await connect(client, server)
            many = [Multiaddr(f"/ip6/2001:db8::{i:x}/tcp/4001") for i in range(1, 401)]
            check = await v2(client).check(server.peer_id, [*client.listen_addrs, *many])
            assert check.outcome is CheckOutcome.REACHABLE, check


@pytest.mark.parametrize("limited", [True, False])
async def test_requests_over_relayed_connections_are_rejected(limited: bool) -> None:
    relay_config = RelayConfig() if limited else RelayConfig.unlimited()
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(
                listen=["/ip4/127.0.0.1/tcp/0"],
                config=HostConfig(relay_service=relay_config, hole_punching=None),
            ) as relay,
            Host(config=server_config()) as server,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config()) as client,
        ):
            await server.listen(f"{full(relay)}/p2p-circuit")
            conn = await client.connect(f"{full(relay)}/p2p-circuit/p2p/{server.peer_id}")
            assert conn.relayed
            assert conn.limited is limited
            await client.identify.wait_identified(conn)
            # The client never picks a server it only reaches through a relay...
            assert v2(client).servers() == []
            # ... and a request sent over one anyway is rejected unread.
            stream = await conn.new_stream([DIAL_REQUEST_PROTOCOL], allow_limited=True)
            reader = BufferedStream.wrap(stream)
            await reader.send_all(encode_message(DialRequest(tuple(client.listen_addrs), 1)))
            answer = await read_message(reader)
            assert answer == DialResponse(ResponseStatus.E_REQUEST_REJECTED)
            stats = v2_server(server).stats
            assert stats.rejected == {"relayed connection": 1}
            assert not stats.dialed
