"""DCUtR among our own hosts on loopback: the exchange, the roles, the outcome events.

Loopback has no NAT, so these tests check the protocol and the driver; the NAT lab
(tests/natlab) checks real hole punches through NATs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import Host, HostConfig, ping
from libp2p.host.autonat import AutoNATClientConfig, AutoNATServerConfig
from libp2p.host.reachability import Expectation, ReachabilityConfig
from libp2p.network.address_policy import AddressPolicy
from libp2p.network.connection import NetStream
from libp2p.relay.circuit_v2 import RelayConfig
from libp2p.relay.circuit_v2.dcutr import (
    PROTOCOL_ID,
    HolePunchAttemptFailed,
    HolePunchConfig,
    HolePunchFailed,
    HolePunchFailure,
    HolePunchRole,
    HolePunchSucceeded,
)

TIMEOUT = 20
ECHO = "/test/echo/1.0.0"
LOOPBACK_PUNCH = HolePunchConfig(
    address_policy=AddressPolicy.local_testing(),
    connection_reversal=False,
    direct_dial=False,
    reversal_timeout=0.3,
    relay_close_grace=0.2,
)


async def echo(stream: NetStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


def host_config(punch: HolePunchConfig | None = LOOPBACK_PUNCH) -> HostConfig:
    return HostConfig(hole_punching=punch)


@contextlib.asynccontextmanager
async def three_hosts(
    listener_punch: HolePunchConfig | None = LOOPBACK_PUNCH,
    dialer_punch: HolePunchConfig | None = LOOPBACK_PUNCH,
) -> AsyncIterator[tuple[Host, Host, Host]]:
    """A relay, a listener with a reservation on it, and a dialer; all on loopback."""
    async with (
        Host(
            listen=["/ip4/127.0.0.1/tcp/0"],
            config=HostConfig(relay_service=RelayConfig(), hole_punching=None),
        ) as relay,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config(listener_punch)) as listener,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config(dialer_punch)) as dialer,
    ):
        listener.set_stream_handler(ECHO, echo, allow_limited=True)
        await listener.listen(f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}/p2p-circuit")
        # The dialer knows the relay first, as a user's app would (it also gets observed).
        await dialer.connect(f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}")
        yield relay, listener, dialer


def circuit_to(relay: Host, target: Host) -> str:
    return f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}/p2p-circuit/p2p/{target.peer_id}"


async def next_outcome(
    events: trio.MemoryReceiveChannel[HolePunchSucceeded | HolePunchFailed],
) -> HolePunchSucceeded | HolePunchFailed:
    return await events.receive()


async def test_hole_punch_on_loopback_gives_a_direct_connection_with_spec_roles() -> None:
    with trio.fail_after(TIMEOUT):
        async with three_hosts() as (relay, listener, dialer):
            with (
                listener.events.subscribe(HolePunchSucceeded, HolePunchFailed) as l_events,
                dialer.events.subscribe(HolePunchSucceeded, HolePunchFailed) as d_events,
            ):
                relayed = await dialer.connect(circuit_to(relay, listener))
                assert relayed.relayed
                l_outcome = await l_events.receive()
                d_outcome = await d_events.receive()
            assert isinstance(l_outcome, HolePunchSucceeded), l_outcome
            assert isinstance(d_outcome, HolePunchSucceeded), d_outcome
            assert l_outcome.role is HolePunchRole.LISTENER
            assert d_outcome.role is HolePunchRole.DIALER
            assert l_outcome.attempt == 1
            assert d_outcome.attempt == 1
            assert d_outcome.relayed is relayed
            assert l_outcome.rtt is not None
            assert l_outcome.elapsed > 0
            # A (the dialer through the relay) is the initiator on the direct connection.
            assert d_outcome.connection.is_initiator
            assert not l_outcome.connection.is_initiator
            assert not d_outcome.connection.relayed
            assert d_outcome.direct_addr == listener.listen_addrs[0]
            # New streams take the direct connection, and the relayed one is closed.
            stream = await dialer.new_stream(listener.peer_id, ECHO)
            assert stream.connection is d_outcome.connection
            await stream.send_all(b"direct")
            await stream.send_eof()
            assert await stream.receive_some() == b"direct"
            await relayed.wait_closed()
            assert all(not c.relayed for c in dialer.connections_to(listener.peer_id))


async def test_the_listener_responds_on_its_own_punch() -> None:
    # A scripted A that never dials: it answers CONNECT with a plain TCP listener's address,
    # takes SYNC, accepts the listener's punch there and initiates on it (A's role). Only the
    # listener's punch can connect, and only if the listener responds on its dialed socket.
    from libp2p.io import BufferedStream
    from libp2p.network.upgrader import upgrade
    from libp2p.relay.circuit_v2.dcutr import CONNECT, MAX_MESSAGE_SIZE, encode_hole_punch

    with trio.fail_after(TIMEOUT):
        async with (
            Host(
                listen=["/ip4/127.0.0.1/tcp/0"],
                config=HostConfig(relay_service=RelayConfig(), hole_punching=None),
            ) as relay,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config()) as listener,
            Host(config=HostConfig(hole_punching=None)) as a,
        ):
            await listener.listen(f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}/p2p-circuit")
            (raw_listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = raw_listener.socket.getsockname()[1]
            upgraded = []

            async def answer(stream: NetStream) -> None:
                reader = BufferedStream(stream)
                await reader.read_lp(MAX_MESSAGE_SIZE)  # the listener's CONNECT
                here = Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
                await stream.send_all(encode_hole_punch(CONNECT, [here]))
                await reader.read_lp(MAX_MESSAGE_SIZE)  # SYNC
                raw = await raw_listener.accept()
                upgraded.append(
                    await upgrade(raw, a.key, initiator=True, expected_peer=listener.peer_id)
                )

            a.set_stream_handler(PROTOCOL_ID, answer, allow_limited=True)
            with listener.events.subscribe(HolePunchSucceeded, HolePunchFailed) as events:
                await a.connect(circuit_to(relay, listener))
                outcome = await events.receive()
            assert isinstance(outcome, HolePunchSucceeded), outcome
            assert outcome.attempt == 1
            assert not outcome.connection.is_initiator
            assert outcome.direct_addr == Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
            (conn,) = upgraded
            assert conn.remote_peer == listener.peer_id
            await raw_listener.aclose()


async def test_peer_without_dcutr_is_reported_as_no_stream() -> None:
    with trio.fail_after(TIMEOUT):
        async with three_hosts(dialer_punch=None) as (relay, listener, dialer):
            assert PROTOCOL_ID not in dialer.protocols
            with listener.events.subscribe(HolePunchSucceeded, HolePunchFailed) as events:
                await dialer.connect(circuit_to(relay, listener))
                outcome = await events.receive()
            assert isinstance(outcome, HolePunchFailed)
            assert outcome.reason is HolePunchFailure.NO_STREAM
            assert outcome.role is HolePunchRole.LISTENER
            assert outcome.attempts == 1
            assert outcome.detail == f"{dialer.peer_id} does not speak {PROTOCOL_ID}"
            # The relayed connection keeps working.
            stream = await dialer.new_stream(listener.peer_id, ECHO, allow_limited=True)
            await stream.send_all(b"still relayed")
            await stream.send_eof()
            assert await stream.receive_some() == b"still relayed"


async def test_no_address_to_offer_is_reported() -> None:
    # The default policy leaves loopback out: on loopback the listener has nothing to offer.
    default = HolePunchConfig(connection_reversal=False, direct_dial=False)
    with trio.fail_after(TIMEOUT):
        async with three_hosts(listener_punch=default) as (relay, listener, dialer):
            with listener.events.subscribe(HolePunchSucceeded, HolePunchFailed) as events:
                await dialer.connect(circuit_to(relay, listener))
                outcome = await events.receive()
            assert isinstance(outcome, HolePunchFailed)
            assert outcome.reason is HolePunchFailure.NO_PUBLIC_ADDRESS


async def test_peer_with_no_dialable_address_is_reported() -> None:
    with trio.fail_after(TIMEOUT):
        async with three_hosts() as (relay, listener, dialer):
            assert dialer.dcutr is not None
            dialer.dcutr._our_addrs = list  # type: ignore[method-assign]  # offers nothing
            with (
                listener.events.subscribe(HolePunchSucceeded, HolePunchFailed) as l_events,
                dialer.events.subscribe(HolePunchSucceeded, HolePunchFailed) as d_events,
            ):
                await dialer.connect(circuit_to(relay, listener))
                l_outcome = await l_events.receive()
                d_outcome = await d_events.receive()
            # The dialer sent an empty CONNECT: the listener has nothing to dial and stops.
            assert isinstance(l_outcome, HolePunchFailed)
            assert l_outcome.reason is HolePunchFailure.PEER_NO_ADDRESS
            assert l_outcome.attempts == 1
            assert isinstance(d_outcome, HolePunchFailed)
            assert d_outcome.role is HolePunchRole.DIALER
            assert d_outcome.reason is HolePunchFailure.NO_PUBLIC_ADDRESS


async def test_a_dialer_that_does_not_listen_is_told_why_it_cannot_punch() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            Host(
                listen=["/ip4/127.0.0.1/tcp/0"],
                config=HostConfig(relay_service=RelayConfig(), hole_punching=None),
            ) as relay,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config()) as listener,
            Host(config=host_config()) as dialer,  # no listener: nothing to punch from
        ):
            await listener.listen(f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}/p2p-circuit")
            with dialer.events.subscribe(HolePunchSucceeded, HolePunchFailed) as events:
                relayed = await dialer.connect(circuit_to(relay, listener))
                outcome = await events.receive()
            assert isinstance(outcome, HolePunchFailed)
            assert outcome.reason is HolePunchFailure.NO_PUBLIC_ADDRESS
            assert "listen" in outcome.detail
            assert not relayed.is_closed


async def test_dialer_refusing_the_listeners_addresses_stops_the_punch() -> None:
    # The dialer's default policy leaves loopback out, so the listener's CONNECT is useless.
    default = HolePunchConfig(connection_reversal=False, direct_dial=False, reversal_timeout=0.3)
    with trio.fail_after(TIMEOUT):
        async with three_hosts(dialer_punch=default) as (relay, listener, dialer):
            with (
                listener.events.subscribe(HolePunchSucceeded, HolePunchFailed) as l_events,
                dialer.events.subscribe(HolePunchSucceeded, HolePunchFailed) as d_events,
            ):
                await dialer.connect(circuit_to(relay, listener))
                l_outcome = await l_events.receive()
                d_outcome = await d_events.receive()
            assert isinstance(d_outcome, HolePunchFailed)
            assert d_outcome.reason is HolePunchFailure.PEER_NO_ADDRESS
            assert isinstance(l_outcome, HolePunchFailed)
            assert l_outcome.reason is HolePunchFailure.PROTOCOL_ERROR
            assert "reset" in l_outcome.detail


async def drain(stream: NetStream) -> None:
    while await stream.receive_some():
        pass


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_all_attempts_failing_is_reported_on_both_sides() -> None:
    with trio.fail_after(TIMEOUT):
        async with three_hosts() as (relay, listener, dialer):
            # Each side offers only an address where nothing listens: every dial is refused.
            for host in (listener, dialer):
                assert host.dcutr is not None
                dead = Multiaddr(f"/ip4/127.0.0.1/tcp/{closed_port()}")
                host.dcutr._our_addrs = lambda dead=dead: [dead]  # type: ignore[method-assign]
            with (
                listener.events.subscribe(
                    HolePunchSucceeded, HolePunchFailed, HolePunchAttemptFailed
                ) as l_events,
                dialer.events.subscribe(HolePunchSucceeded, HolePunchFailed) as d_events,
            ):
                relayed = await dialer.connect(circuit_to(relay, listener))
                attempts = [await l_events.receive() for _ in range(3)]
                l_outcome = await l_events.receive()
                d_outcome = await d_events.receive()
            assert [type(e) for e in attempts] == [HolePunchAttemptFailed] * 3
            assert [e.attempt for e in attempts] == [1, 2, 3]  # type: ignore[union-attr]
            assert isinstance(l_outcome, HolePunchFailed)
            assert l_outcome.reason is HolePunchFailure.ALL_ATTEMPTS_FAILED
            assert l_outcome.attempts == 3
            assert isinstance(d_outcome, HolePunchFailed)
            assert d_outcome.reason is HolePunchFailure.ALL_ATTEMPTS_FAILED
            assert d_outcome.attempts == 3
            assert not relayed.is_closed


async def test_dcutr_started_by_the_wrong_side_is_refused_and_named() -> None:
    # B (the listener) starts DCUtR; here A also opens it on its outbound relayed connection.
    with trio.fail_after(TIMEOUT):
        async with three_hosts() as (relay, listener, dialer):
            # Every punch dial is refused, so the listener's own run fails after 3 attempts.
            for host in (listener, dialer):
                assert host.dcutr is not None
                dead = Multiaddr(f"/ip4/127.0.0.1/tcp/{closed_port()}")
                host.dcutr._our_addrs = lambda dead=dead: [dead]  # type: ignore[method-assign]
            with listener.events.subscribe(HolePunchSucceeded, HolePunchFailed) as events:
                relayed = await dialer.connect(circuit_to(relay, listener))
                stream = await relayed.new_stream(PROTOCOL_ID, lazy=True, allow_limited=True)
                await stream.send_all(b"\x00")
                with pytest.raises(trio.BrokenResourceError):
                    await drain(stream)  # refused
                outcome = await events.receive()
            assert isinstance(outcome, HolePunchFailed)
            assert outcome.reason is HolePunchFailure.PEER_ROLE_MISMATCH
            assert outcome.attempts == 3
            assert "all_attempts_failed" in outcome.detail
            assert not relayed.is_closed


async def test_connection_reversal_when_the_dialer_is_reachable() -> None:
    # The dialer listens on an address the listener can reach: B's plain dial does it.
    reversal = HolePunchConfig(address_policy=AddressPolicy.local_testing(), relay_close_grace=0.2)
    # (The dialer's own direct dial would reach the listener too: not this test's subject.)
    no_direct = dataclasses.replace(reversal, direct_dial=False)
    with trio.fail_after(TIMEOUT):
        async with three_hosts(listener_punch=reversal, dialer_punch=no_direct) as (
            relay,
            listener,
            dialer,
        ):
            # The dialer offers nothing to punch with, so only the reversal can succeed (the
            # listener's exchange fails at once while its reversal dial goes on).
            assert dialer.dcutr is not None
            dialer.dcutr._our_addrs = list  # type: ignore[method-assign]
            with (
                listener.events.subscribe(HolePunchSucceeded, HolePunchFailed) as l_events,
                dialer.events.subscribe(HolePunchSucceeded, HolePunchFailed) as d_events,
            ):
                relayed = await dialer.connect(circuit_to(relay, listener))
                l_outcome = await l_events.receive()
                d_outcome = await d_events.receive()
            assert isinstance(l_outcome, HolePunchSucceeded), l_outcome
            assert isinstance(d_outcome, HolePunchSucceeded), d_outcome
            assert (l_outcome.attempt, d_outcome.attempt) == (0, 0)
            # B dialed A plainly: B is the initiator of that connection.
            assert l_outcome.connection.is_initiator
            assert l_outcome.direct_addr == dialer.listen_addrs[0]
            await relayed.wait_closed()


async def test_a_reachable_listener_waits_for_the_dialers_direct_dial() -> None:
    """A listener whose report says it is reachable does not punch: the dialer's plain dial
    (after identify on the relayed connection) reaches it within the grace."""
    local = AddressPolicy.local_testing()
    punch = HolePunchConfig(address_policy=local, relay_close_grace=0.2, direct_grace=TIMEOUT)
    with trio.fail_after(TIMEOUT):
        async with Host(
            listen=["/ip4/127.0.0.1/tcp/0"],
            config=HostConfig(
                relay_service=RelayConfig(),
                hole_punching=None,
                autonat_server=AutoNATServerConfig(addresses=local),
            ),
        ) as relay:
            report = ReachabilityConfig(
                public_ranges=("127.0.0.0/8",), trusted_servers=(relay.peer_id,)
            )
            manual = AutoNATClientConfig(boot_delay=3600.0, addresses=local)
            listener_config = HostConfig(
                hole_punching=punch, reachability=report, autonat_client=manual
            )
            async with (
                Host(listen=["/ip4/127.0.0.1/tcp/0"], config=listener_config) as listener,
                Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config(punch)) as dialer,
            ):
                relay_addr = f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}"
                await listener.listen(f"{relay_addr}/p2p-circuit")
                conn = await listener.connect(relay_addr)
                await listener.identify.wait_identified(conn)
                assert listener.autonat is not None
                await listener.autonat.probe(relay.peer_id)
                assert listener.reachability.expect is Expectation.DIRECT
                with (
                    listener.events.subscribe(HolePunchSucceeded, HolePunchFailed) as l_events,
                    dialer.events.subscribe(HolePunchSucceeded, HolePunchFailed) as d_events,
                ):
                    relayed = await dialer.connect(circuit_to(relay, listener))
                    d_outcome = await d_events.receive()
                    l_outcome = await l_events.receive()
                assert isinstance(d_outcome, HolePunchSucceeded), d_outcome
                assert isinstance(l_outcome, HolePunchSucceeded), l_outcome
                # No punch: attempt 0 on both sides, no round trip measured (no exchange).
                assert (d_outcome.attempt, l_outcome.attempt) == (0, 0)
                assert (d_outcome.rtt, l_outcome.rtt) == (None, None)
                # A dialed B plainly: A initiates that connection, to B's listen address.
                assert d_outcome.connection.is_initiator
                assert d_outcome.direct_addr == listener.listen_addrs[0]
                await relayed.wait_closed()


async def test_a_answers_a_b_that_initiates_on_a_punch() -> None:
    """go B's before v0.41 initiate on every attempt: A's punch dial becomes the responder
    (through the driver: the punch's socket, the swarm, the connection's role)."""
    from libp2p.crypto.keys import generate_ed25519
    from libp2p.network.upgrader import upgrade
    from libp2p.peer.id import PeerID
    from libp2p.relay.circuit_v2.dcutr_core import role_patience

    b_key = generate_ed25519()
    b_peer = PeerID.from_public_key(b_key.public_key)
    with trio.fail_after(TIMEOUT):
        async with Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config()) as a:
            assert a.dcutr is not None
            (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listener.socket.getsockname()[1]
            upgraded = []

            async def b_as_initiator() -> None:
                raw = await listener.accept()
                upgraded.append(await upgrade(raw, b_key, initiator=True, expected_peer=a.peer_id))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(b_as_initiator)
                conn = await a.dcutr._punch_dial(
                    Multiaddr(f"/ip4/127.0.0.1/tcp/{port}"),
                    b_peer,
                    initiator=True,
                    connect_within=5.0,
                    role_patience=role_patience(0.0),
                )
            assert not conn.is_initiator  # A answered as the responder
            assert conn.remote_peer == b_peer
            assert upgraded[0].remote_peer == a.peer_id
            await listener.aclose()


async def test_b_initiates_when_a_stays_a_responder() -> None:
    """go A's before v0.41 wait as the responder: B's punch dial proposes once A has been
    silent for the patience, on any attempt, and the connection carries streams."""
    with trio.fail_after(TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config()) as a,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config()) as b,
        ):
            assert b.dcutr is not None
            # a's listener upgrades as the responder and waits for a proposal.
            conn = await b.dcutr._punch_dial(
                a.listen_addrs[0],
                a.peer_id,
                initiator=False,
                connect_within=5.0,
                role_patience=0.1,
            )
            assert conn.is_initiator
            stream = await conn.new_stream(ping.PROTOCOL_ID)
            (rtt,) = await ping.ping(stream)
            assert rtt >= 0
            await stream.aclose()


async def test_a_initiates_when_b_is_a_responder() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config()) as a,
            Host(listen=["/ip4/127.0.0.1/tcp/0"], config=host_config()) as b,
        ):
            assert a.dcutr is not None
            # b's listener upgrades as the responder: a's header gets b's header alone.
            conn = await a.dcutr._punch_dial(
                b.listen_addrs[0], b.peer_id, initiator=True, connect_within=5.0, role_patience=0.0
            )
            assert conn.is_initiator
            stream = await conn.new_stream(ping.PROTOCOL_ID)
            (rtt,) = await ping.ping(stream)
            assert rtt >= 0
            await stream.aclose()
