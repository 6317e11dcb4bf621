"""The reachability report on real sockets: AutoNAT answers from servers in distinct groups.

Loopback has many addresses: servers listening on 127.0.0.2 and 127.0.0.3 are two server
groups (as two machines would be), two servers on one address are one.
"""

from __future__ import annotations

from typing import Any

import trio

from libp2p import AddressPolicy, Host, HostConfig
from libp2p.host.autonat import PROTOCOL_ID as AUTONAT_V1
from libp2p.host.autonat import (
    AutoNATClientConfig,
    AutoNATServerConfig,
    DialRequest,
    DialResponse,
    Reachability,
    ReachabilityChanged,
    ResponseStatus,
)
from libp2p.host.autonat.protocol import encode_message, read_message
from libp2p.host.autonat.v2 import AutoNATv2ServerConfig
from libp2p.host.reachability import (
    AddressSource,
    Expectation,
    ReachabilityConfig,
    ReachabilityReportChanged,
)
from libp2p.io import BufferedStream
from libp2p.network.connection import NetStream

TIMEOUT = 20.0
LOCAL = AddressPolicy.local_testing()
#: Probes only when the test asks (a boot delay no test waits for).
MANUAL = AutoNATClientConfig(boot_delay=3600.0, addresses=LOCAL, server_throttle=0.0)


def server(ip: str) -> Host:
    config = HostConfig(autonat_server=AutoNATServerConfig(addresses=LOCAL), hole_punching=None)
    return Host(listen=[f"/ip4/{ip}/tcp/0"], config=config)


def client(**report: Any) -> Host:
    report.setdefault("public_ranges", ("127.0.0.0/8",))
    config = HostConfig(
        autonat_client=MANUAL, hole_punching=None, reachability=ReachabilityConfig(**report)
    )
    return Host(listen=["/ip4/127.0.0.1/tcp/0"], config=config)


async def connect(a: Host, b: Host) -> None:
    conn = await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
    await a.identify.wait_identified(conn)


async def test_two_server_groups_make_the_host_public() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            server("127.0.0.2") as s1,
            server("127.0.0.2") as s1b,
            server("127.0.0.3") as s2,
            client() as host,
        ):
            assert host.autonat is not None
            for s in (s1, s1b, s2):
                await connect(host, s)
            (listen,) = host.listen_addrs
            entry = host.reachability.address(listen)
            assert entry is not None
            # No NAT: the observers saw our listen address itself.
            assert entry.source is AddressSource.OBSERVED
            assert entry.observed_by == 2
            assert entry.status is Reachability.UNKNOWN
            with host.events.subscribe(ReachabilityChanged, ReachabilityReportChanged) as events:
                await host.autonat.probe(s1.peer_id)
                await host.autonat.probe(s1b.peer_id)  # the same machine: one voice
                report = host.reachability
                assert report.status is Reachability.UNKNOWN
                entry = report.address(listen)
                assert entry is not None
                assert entry.v1_reachable_by == 1
                assert "AutoNAT v1 (unverified): 1 yes" in entry.reason
                await host.autonat.probe(s2.peer_id)
                report = host.reachability
                assert report.status is Reachability.PUBLIC
                assert report.expect is Expectation.DIRECT
                assert report.public_addrs == [listen]
                seen = []
                while not any(isinstance(e, ReachabilityChanged) for e in seen):
                    seen.append(await events.receive())
            flips = [e for e in seen if isinstance(e, ReachabilityChanged)]
            assert [(f.previous, f.status, f.server) for f in flips] == [
                (Reachability.UNKNOWN, Reachability.PUBLIC, None)
            ]
            changes = [e for e in seen if isinstance(e, ReachabilityReportChanged)]
            assert changes[-1].report.status is Reachability.PUBLIC


async def test_a_trusted_server_decides_alone() -> None:
    with trio.fail_after(TIMEOUT):
        async with server("127.0.0.2") as relay:  # noqa: SIM117 - the client needs its ID
            async with client(trusted_servers=(relay.peer_id,)) as host:
                assert host.autonat is not None
                await connect(host, relay)
                await host.autonat.probe(relay.peer_id)
                assert host.reachability.status is Reachability.PUBLIC
                assert "from 1 server group" in host.reachability.reason


def v2_server(ip: str) -> Host:
    config = HostConfig(
        autonat_v2_server=AutoNATv2ServerConfig(addresses=LOCAL, dial_data_wait=0.0),
        autonat_client=None,
        hole_punching=None,
    )
    return Host(listen=[f"/ip4/{ip}/tcp/0"], config=config)


async def test_autonat_v2_checks_run_by_themselves_and_decide() -> None:
    """No probe by hand: the service checks our address with a server of each group, and
    two nonce-verified dial-backs make it public."""
    with trio.fail_after(TIMEOUT):
        async with (
            v2_server("127.0.0.2") as s1,
            v2_server("127.0.0.3") as s2,
            client() as host,
        ):
            assert host.autonat_v2 is not None
            with host.events.subscribe(ReachabilityReportChanged) as changes:
                await connect(host, s1)
                await connect(host, s2)
                async for change in changes:
                    if change.report.status is Reachability.PUBLIC:
                        break
            (listen,) = host.listen_addrs
            entry = change.report.address(listen)
            assert entry is not None
            assert (entry.status, entry.confirmed_by, entry.refuted_by) == (
                Reachability.PUBLIC,
                2,
                0,
            )
            assert "AutoNAT v2 (nonce-verified dial-back) from 2 server group(s)" in entry.reason
            assert s1.autonat_v2_server is not None
            assert s2.autonat_v2_server is not None


async def test_unverifiable_v1_answers_cannot_overturn_v2() -> None:
    """Two v1 servers that say E_DIAL_ERROR (from two groups) against two v2 servers whose
    dial-backs carried our nonce: the address stays public."""
    with trio.fail_after(TIMEOUT):
        async with (
            v2_server("127.0.0.2") as s1,
            v2_server("127.0.0.3") as s2,
            liar("127.0.0.4") as l1,
            liar("127.0.0.5") as l2,
            client() as host,
        ):
            assert host.autonat is not None
            with host.events.subscribe(ReachabilityReportChanged) as changes:
                for peer in (s1, s2, l1, l2):
                    await connect(host, peer)
                async for change in changes:
                    if change.report.status is Reachability.PUBLIC:
                        break
            for peer in (l1, l2):
                probed = await host.autonat.probe(peer.peer_id)
                assert probed.response is ResponseStatus.E_DIAL_ERROR
            (listen,) = host.listen_addrs
            entry = host.reachability.address(listen)
            assert entry is not None
            assert entry.v1_unreachable_by == 2
            assert entry.status is Reachability.PUBLIC
            assert host.reachability.status is Reachability.PUBLIC


def liar(ip: str) -> Host:
    """A v1 server that answers E_DIAL_ERROR without dialing (a stock answer, scripted)."""
    host = Host(listen=[f"/ip4/{ip}/tcp/0"], config=HostConfig(hole_punching=None))

    async def handle(stream: NetStream) -> None:
        reader = BufferedStream.wrap(stream)
        request = await read_message(reader)
        assert isinstance(request, DialRequest)
        answer = DialResponse(ResponseStatus.E_DIAL_ERROR, "scripted", None)
        await reader.send_all(encode_message(answer))
        await reader.aclose()

    host.set_stream_handler(AUTONAT_V1, handle)
    return host
