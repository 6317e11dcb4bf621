"""AutoNAT v1 and auto-relay among our own hosts, over real sockets on 127.0.0.1.

Loopback is reachable from everywhere on the machine, so "private" is produced in two honest
ways: a client that does not listen at all (nothing answers the dial-back), or a scripted
server that answers what the test says. Periodic behaviour runs under a frozen ``MockClock``
moved by ``jump`` once every task is idle (as in ``test_relay.py``), with a real-time
watchdog.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from multiaddr import Multiaddr

from libp2p import AddressPolicy, Host, HostConfig
from libp2p.events import ConnectionClosed, ConnectionOpened
from libp2p.exceptions import LocalUsageError, PeerIDMismatch, TransportError
from libp2p.host.autonat import (
    PROTOCOL_ID,
    AutoNATClientConfig,
    AutoNATServerConfig,
    DialRequest,
    DialResponse,
    Reachability,
    ReachabilityChanged,
    ReachabilityProbed,
    ResponseStatus,
)
from libp2p.host.autonat.protocol import encode_message, read_message
from libp2p.host.reachability import ReachabilityConfig
from libp2p.io import BufferedStream
from libp2p.network.connection import Connection, Direction, NetStream
from libp2p.peer.id import PeerID
from libp2p.relay.circuit_v2 import (
    RelayConfig,
    ReservationAttemptFailed,
    ReservationLost,
    ReservationMade,
)

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
REAL_TIMEOUT = 20.0
LOCAL = AddressPolicy.local_testing()
#: A client that only probes when told to (tests call ``probe``).
MANUAL_CLIENT = AutoNATClientConfig(addresses=LOCAL, boot_delay=1e9)


def server_config(**kw: Any) -> HostConfig:
    return HostConfig(
        autonat_server=AutoNATServerConfig(addresses=LOCAL, **kw),
        autonat_client=None,
        hole_punching=None,
    )


#: The report on loopback: loopback counts as public, and one server decides (these tests
#: drive the v1 client; tests/integration/test_reachability.py weighs several servers).
LOOPBACK_REPORT = ReachabilityConfig(public_ranges=("127.0.0.0/8",), min_servers=1)


def client_config(autonat: AutoNATClientConfig = MANUAL_CLIENT, **kw: Any) -> HostConfig:
    kw.setdefault("reachability", LOOPBACK_REPORT)
    return HostConfig(autonat_client=autonat, hole_punching=None, **kw)


def full(host: Host) -> Multiaddr:
    return host.listen_addrs[0].encapsulate(Multiaddr(f"/p2p/{host.peer_id}"))


async def connect(client: Host, server: Host) -> Connection:
    conn = await client.connect(full(server))
    await client.identify.wait_identified(conn)
    return conn


def autonat(host: Host) -> Any:
    assert host.autonat is not None
    return host.autonat


def server_stats(host: Host) -> Any:
    assert host.autonat_server is not None
    return host.autonat_server.stats


async def ask_raw(conn: Connection, request: DialRequest, **kw: Any) -> DialResponse:
    stream = BufferedStream.wrap(await conn.new_stream(PROTOCOL_ID, **kw))
    await stream.send_all(encode_message(request))
    msg = await read_message(stream)
    assert isinstance(msg, DialResponse)
    assert await stream.receive_some() == b""
    return msg


async def drain(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some():
        pass


async def next_event(channel: trio.MemoryReceiveChannel[Any], kind: type, **match: object) -> Any:
    async for event in channel:
        if isinstance(event, kind) and all(getattr(event, k) == v for k, v in match.items()):
            return event
    raise AssertionError(f"event channel closed before a {kind.__name__}")


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """A frozen mock clock: only ``jump`` moves it."""
    return trio.testing.MockClock()


@contextlib.contextmanager
def real_time_limit(seconds: float = REAL_TIMEOUT) -> Iterator[None]:
    token = trio.lowlevel.current_trio_token()
    with trio.CancelScope() as scope:

        def expire() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(scope.cancel)

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
    if scope.cancelled_caught:
        raise AssertionError(f"did not finish within {seconds} s of real time")


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)


async def jump(clock: trio.testing.MockClock, seconds: float) -> None:
    await settle()
    clock.jump(seconds)
    await settle()


# -- dial-back outcomes -------------------------------------------------------------------------


async def test_server_dials_back_and_the_client_becomes_public() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=server_config(throttle_per_peer=10)) as server,
            Host(listen=[LOOPBACK], config=client_config()) as client,
        ):
            await connect(client, server)
            assert autonat(client).servers() == [server.peer_id]
            (listen,) = client.listen_addrs
            assert autonat(client).candidate_addrs() == [listen]
            assert client.reachability.status is Reachability.UNKNOWN
            with client.events.subscribe(ReachabilityChanged, ReachabilityProbed) as events:
                probed = await autonat(client).probe()
                assert probed.response is ResponseStatus.OK
                assert probed.address == listen
                changed = await next_event(events, ReachabilityChanged)
                assert (changed.status, changed.previous) == (
                    Reachability.PUBLIC,
                    Reachability.UNKNOWN,
                )
                assert changed.address == listen
                assert changed.server is None  # the report's flip weighs every answer
            assert client.reachability.status is Reachability.PUBLIC
            assert autonat(client).public_addr == listen
            # Confirmations raise confidence to the maximum, no further.
            for expected in (1, 2, 3, 3):
                probed = await autonat(client).probe(server.peer_id)
                assert (probed.reachability, probed.confidence) == (Reachability.PUBLIC, expected)
            assert server_stats(server).answered["OK"] == 5


async def test_dial_back_is_a_new_connection_from_an_ephemeral_port() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=server_config()) as server,
            Host(listen=[LOOPBACK], config=client_config()) as client,
        ):
            original = await connect(client, server)
            with client.events.subscribe(ConnectionOpened, ConnectionClosed) as events:
                probed = await autonat(client).probe(server.peer_id)
                assert probed.response is ResponseStatus.OK
                opened = await next_event(events, ConnectionOpened, peer=server.peer_id)
                dial_back = opened.connection
                assert dial_back is not original
                assert opened.direction is Direction.INBOUND
                # From an ephemeral port: neither the server's listen port nor the port of
                # the connection the request came over.
                server_port = server.listen_addrs[0].value_for_protocol("tcp")
                port = opened.remote_addr.value_for_protocol("tcp")
                assert port != server_port
                assert original.remote_addr is not None
                assert port != original.remote_addr.value_for_protocol("tcp")
                # The server closes it once the handshakes are done.
                closed = await next_event(events, ConnectionClosed, peer=server.peer_id)
                assert closed.connection is dial_back
            # The server never registered it: only the original connection is there.
            (server_side,) = server.connections_to(client.peer_id)
            assert server_side.remote_addr == original.local_addr
            assert client.connections_to(server.peer_id) == [original]


async def test_nothing_listening_means_dial_error_and_private() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=server_config(hide_failure_timing=False)) as server,
            Host(config=client_config()) as client,  # listens nowhere
        ):
            await connect(client, server)
            assert autonat(client).candidate_addrs() == []
            probed = await autonat(client).probe(server.peer_id)
            assert probed.response is ResponseStatus.E_DIAL_ERROR
            assert probed.address is None
            assert probed.reachability is autonat(client).status is Reachability.PRIVATE
            # The host's report has no address of ours to call private.
            assert client.reachability.status is Reachability.UNKNOWN
            assert autonat(client).public_addr is None
            # The server tried the address it saw the request come from.
            ((dialed,),) = server_stats(server).dialed
            assert dialed.value_for_protocol("ip4") == "127.0.0.1"
            assert server_stats(server).answered["E_DIAL_ERROR"] == 1


async def test_dial_error_comes_only_after_the_dial_timeout(clock: trio.testing.MockClock) -> None:
    with real_time_limit():
        async with (
            Host(listen=[LOOPBACK], config=server_config()) as server,
            Host(config=client_config()) as client,
        ):
            await connect(client, server)
            result: list[ReachabilityProbed] = []

            async def probe() -> None:
                result.append(await autonat(client).probe(server.peer_id))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe)
                await jump(clock, 14.9)
                assert result == []  # the dial failed at once, but the answer waits
                await jump(clock, 0.1)
            assert result[0].response is ResponseStatus.E_DIAL_ERROR


async def test_addresses_with_a_foreign_ip_are_not_dialed() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=server_config(rewrite_foreign_ips=False)) as server,
            Host(listen=[LOOPBACK], config=server_config()) as rewriting,
            Host(listen=[LOOPBACK], config=client_config()) as client,
        ):
            port = client.listen_addrs[0].value_for_protocol("tcp")
            foreign = Multiaddr(f"/ip4/192.0.2.1/tcp/{port}")
            for srv in (server, rewriting):
                conn = await connect(client, srv)
                response = await ask_raw(conn, DialRequest(client.peer_id, (foreign,)))
                assert response.status is ResponseStatus.OK
                assert response.addr == client.listen_addrs[0]
                for addrs in server_stats(srv).dialed:
                    assert all(a.value_for_protocol("ip4") == "127.0.0.1" for a in addrs)
            # Dropped by one, dialed at the observed IP by the other.
            assert [list(a) for a in server_stats(server).dialed] == [[client.listen_addrs[0]]]
            assert [list(a) for a in server_stats(rewriting).dialed] == [[client.listen_addrs[0]]]


async def test_client_sends_candidates_and_listen_addresses() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=server_config()) as server,
            Host(listen=[LOOPBACK, "/ip4/0.0.0.0/tcp/0"], config=client_config()) as client,
            Host(listen=[LOOPBACK], config=client_config()) as default_policy,
        ):
            await connect(client, server)
            # Loopback allowed by the test policy; the unspecified listen address never.
            assert autonat(client).candidate_addrs() == [client.listen_addrs[0]]
            assert HostConfig().autonat_client is not None
            # The default policy leaves loopback out.
            plain = Host(config=HostConfig())
            assert plain.autonat is not None
            assert plain.autonat.config.addresses == AddressPolicy()
            assert default_policy.autonat is not None


# -- refusals -----------------------------------------------------------------------------------


async def test_rate_limits_refuse_with_dial_refused() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        config = server_config(throttle_per_peer=2, throttle_global=3)
        async with (
            Host(listen=[LOOPBACK], config=config) as server,
            Host(listen=[LOOPBACK], config=client_config()) as c1,
            Host(listen=[LOOPBACK], config=client_config()) as c2,
        ):
            conn1 = await connect(c1, server)
            conn2 = await connect(c2, server)
            ok = ResponseStatus.OK
            refused = ResponseStatus.E_DIAL_REFUSED
            statuses = []
            for conn, host in ((conn1, c1), (conn1, c1), (conn1, c1), (conn2, c2), (conn2, c2)):
                response = await ask_raw(conn, DialRequest(host.peer_id, ()))
                statuses.append(response.status)
            assert statuses == [ok, ok, refused, ok, refused]
            stats = server_stats(server)
            assert stats.refused == {"peer rate limit": 1, "global rate limit": 1}
            # A refusal is no evidence: the client's status does not move.
            probed = await autonat(c1).probe(server.peer_id)
            assert probed.response is refused
            assert (autonat(c1).status, autonat(c1).confidence) == (Reachability.UNKNOWN, 0)


async def test_peer_id_mismatch_is_a_bad_request() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=server_config()) as server,
            Host(listen=[LOOPBACK], config=client_config()) as client,
        ):
            conn = await connect(client, server)
            response = await ask_raw(conn, DialRequest(server.peer_id, ()))
            assert response.status is ResponseStatus.E_BAD_REQUEST
            assert server_stats(server).dialed == type(server_stats(server).dialed)(maxlen=64)


@pytest.mark.parametrize("limited", [True, False])
async def test_requests_over_relayed_connections_are_refused(limited: bool) -> None:
    relay_config = RelayConfig() if limited else RelayConfig.unlimited()
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(
                listen=[LOOPBACK],
                config=HostConfig(relay_service=relay_config, hole_punching=None),
            ) as relay,
            Host(config=server_config()) as server,
            Host(config=client_config()) as client,
        ):
            await server.listen(f"{full(relay)}/p2p-circuit")
            conn = await client.connect(f"{full(relay)}/p2p-circuit/p2p/{server.peer_id}")
            assert conn.relayed
            assert conn.limited is limited
            response = await ask_raw(conn, DialRequest(client.peer_id, ()), allow_limited=True)
            assert response.status is ResponseStatus.E_DIAL_REFUSED
            assert server_stats(server).refused == {"relayed connection": 1}
            assert len(server_stats(server).dialed) == 0
            # The client never picks a server it only reaches through a relay.
            assert autonat(client).servers() == []


async def test_oversized_request_resets_the_stream() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=server_config()) as server,
            Host(listen=[LOOPBACK], config=client_config()) as client,
        ):
            conn = await connect(client, server)
            stream = await conn.new_stream(PROTOCOL_ID)
            await stream.send_all(b"\x81\x20" + b"\x00" * 100)  # announces 4097 bytes
            with pytest.raises(trio.BrokenResourceError):
                await drain(stream)
            # The server carries on.
            response = await ask_raw(conn, DialRequest(client.peer_id, ()))
            assert response.status is ResponseStatus.OK


# -- scheduling ---------------------------------------------------------------------------------


async def test_probes_follow_the_schedule(clock: trio.testing.MockClock) -> None:
    with real_time_limit():
        config = AutoNATClientConfig(addresses=LOCAL, server_throttle=0.0)
        async with (
            Host(listen=[LOOPBACK], config=server_config()) as server,
            Host(listen=[LOOPBACK], config=client_config(config)) as client,
        ):
            with client.events.subscribe(ReachabilityProbed, ReachabilityChanged) as events:
                await connect(client, server)
                await jump(clock, 14.0)
                with pytest.raises(trio.WouldBlock):
                    events.receive_nowait()
                # Boot delay (15 s): the first probe, which flips us to public.
                await jump(clock, 1.0)
                assert events.receive_nowait().response is ResponseStatus.OK
                assert events.receive_nowait().status is Reachability.PUBLIC
                # Retry interval (90 s) while confidence builds up to 3.
                for confidence in (1, 2, 3):
                    await jump(clock, 89.0)
                    with pytest.raises(trio.WouldBlock):
                        events.receive_nowait()
                    await jump(clock, 1.0)
                    assert events.receive_nowait().confidence == confidence
                # Then the refresh interval (15 min).
                await jump(clock, 90.0)
                with pytest.raises(trio.WouldBlock):
                    events.receive_nowait()
                await jump(clock, 15 * 60.0 - 90.0)
                probed = events.receive_nowait()
                assert (probed.reachability, probed.confidence) == (Reachability.PUBLIC, 3)


async def test_a_server_connecting_later_is_asked_without_waiting(
    clock: trio.testing.MockClock,
) -> None:
    with real_time_limit():
        config = AutoNATClientConfig(addresses=LOCAL)
        async with (
            Host(listen=[LOOPBACK], config=server_config()) as server,
            Host(listen=[LOOPBACK], config=client_config(config)) as client,
        ):
            with client.events.subscribe(ReachabilityProbed) as events:
                await jump(clock, 20.0)  # boot delay passed: nobody to ask
                with pytest.raises(trio.WouldBlock):
                    events.receive_nowait()
                await connect(client, server)
                await settle()
                assert events.receive_nowait().server == server.peer_id


# -- host wiring ------------------------------------------------------------------------------


async def test_host_wiring() -> None:
    async with Host(config=HostConfig(autonat_client=None)) as off:
        assert off.autonat is None
        assert off.reachability.status is Reachability.UNKNOWN
        assert off.autonat_server is None
        assert PROTOCOL_ID not in off.protocols
    async with Host(config=server_config()) as server:
        assert PROTOCOL_ID in server.protocols
    with pytest.raises(LocalUsageError):
        Host(config=HostConfig(static_relays=("/ip4/127.0.0.1/tcp/1",)))


# -- auto-relay -------------------------------------------------------------------------------


class ScriptedServer:
    """An AutoNAT server that answers what the test says, without dialing."""

    def __init__(self) -> None:
        self.status = ResponseStatus.E_DIAL_ERROR

    async def handle(self, stream: NetStream) -> None:
        reader = BufferedStream.wrap(stream)
        request = await read_message(reader)
        assert isinstance(request, DialRequest)
        addr = stream.connection.remote_addr if self.status is ResponseStatus.OK else None
        await reader.send_all(encode_message(DialResponse(self.status, "scripted", addr)))
        await reader.aclose()


async def test_auto_relay_reserves_when_private_and_releases_when_public() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(
                listen=[LOOPBACK],
                config=HostConfig(relay_service=RelayConfig(), hole_punching=None),
            ) as relay,
            Host(listen=[LOOPBACK], config=HostConfig(hole_punching=None)) as fake,
        ):
            script = ScriptedServer()
            fake.set_stream_handler(PROTOCOL_ID, script.handle)
            config = client_config(static_relays=(str(full(relay)),))
            async with Host(listen=[LOOPBACK], config=config) as listener:
                assert listener.auto_relay is not None
                assert listener.auto_relay.relays == [relay.peer_id]
                await connect(listener, fake)
                with listener.events.subscribe(ReservationMade, ReservationLost) as events:
                    # Reachability unknown at start: reserve until found public.
                    if relay.peer_id not in listener.relay.reservations:
                        made = await next_event(events, ReservationMade)
                        assert made.reservation.relay == relay.peer_id
                    relayed = list(listener.relay.reservations[relay.peer_id].addrs)
                    probed = await autonat(listener).probe(fake.peer_id)
                    assert probed.reachability is Reachability.PRIVATE
                    assert all(a in listener.addrs for a in relayed)
                    assert listener.auto_relay.active

                    script.status = ResponseStatus.OK
                    probed = await autonat(listener).probe(fake.peer_id)
                    assert probed.reachability is Reachability.PUBLIC
                    lost = await next_event(events, ReservationLost)
                    assert lost.relay == relay.peer_id
                    assert listener.relay.reservations == {}
                    assert not any(a in listener.addrs for a in relayed)
                    assert not listener.auto_relay.active

                    # Private again: reserved again.
                    script.status = ResponseStatus.E_DIAL_ERROR
                    await autonat(listener).probe(fake.peer_id)
                    assert listener.reachability.status is Reachability.PRIVATE
                    await next_event(events, ReservationMade)


async def test_auto_relay_retries_an_unreachable_relay(
    clock: trio.testing.MockClock,
) -> None:
    with real_time_limit():
        async with Host(listen=[LOOPBACK], config=HostConfig(hole_punching=None)) as fake:
            script = ScriptedServer()
            fake.set_stream_handler(PROTOCOL_ID, script.handle)
            # Nothing listens at the relay's address (this host's key, never started).
            missing = Host()
            dead = f"/ip4/127.0.0.1/tcp/1/p2p/{missing.peer_id}"
            config = client_config(static_relays=(dead,))
            async with Host(listen=[LOOPBACK], config=config) as listener:
                with listener.events.subscribe(ReservationAttemptFailed) as events:
                    # Unknown reachability at start: auto-relay tries at once, and fails.
                    first = await next_event(events, ReservationAttemptFailed)
                    assert (first.relay, first.retry_in) == (missing.peer_id, 1.0)
                    await connect(listener, fake)
                    await jump(clock, 1.0)
                    assert events.receive_nowait().retry_in == 2.0
                    # Public: the retries stop.
                    script.status = ResponseStatus.OK
                    await autonat(listener).probe(fake.peer_id)
                    assert listener.reachability.status is Reachability.PUBLIC
                    await jump(clock, 100.0)
                    with pytest.raises(trio.WouldBlock):
                        events.receive_nowait()


# -- Swarm.dial_isolated -------------------------------------------------------------------------


async def test_dial_isolated() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=client_config()) as a,
            Host(listen=[LOOPBACK], config=client_config()) as b,
        ):
            existing = await a.connect(full(b))
            dead = Multiaddr("/ip4/127.0.0.1/tcp/1")
            async with a.swarm.dial_isolated(b.peer_id, [dead, full(b)]) as conn:
                assert conn is not existing
                assert a.connections_to(b.peer_id) == [existing]
                assert conn.remote_addr == b.listen_addrs[0]
                assert conn.local_addr is not None
                assert conn.local_addr != a.listen_addrs[0]
                assert not conn.is_closed
            assert conn.is_closed
            assert a.connections_to(b.peer_id) == [existing]
            with pytest.raises(TransportError):
                async with a.swarm.dial_isolated(b.peer_id, [dead]):
                    pass  # pragma: no cover
            with pytest.raises(TransportError, match="could not connect"):
                async with a.swarm.dial_isolated(b.peer_id, [dead, dead]):
                    pass  # pragma: no cover
            other = PeerID.from_public_key(Host().key.public_key)
            with pytest.raises(PeerIDMismatch):
                async with a.swarm.dial_isolated(other, b.listen_addrs):
                    pass  # pragma: no cover
            with pytest.raises(LocalUsageError):
                async with a.swarm.dial_isolated(b.peer_id, []):
                    pass  # pragma: no cover


async def test_dial_isolated_to_a_peer_that_never_answers_is_a_transport_error() -> None:
    """TCP connects, then nothing: the handshake timeout is a typed TransportError (not a bare
    trio.TooSlowError), with one address as with several."""
    with trio.fail_after(REAL_TIMEOUT):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        held: list[trio.SocketStream] = []

        async def hold(stream: trio.SocketStream) -> None:
            held.append(stream)
            await trio.sleep_forever()

        async with (
            trio.open_nursery() as nursery,
            Host(listen=[LOOPBACK], config=client_config(dial_timeout=0.2)) as a,
        ):
            nursery.start_soon(trio.serve_listeners, hold, listeners)
            port = listeners[0].socket.getsockname()[1]
            silent = Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
            peer = PeerID.from_public_key(Host().key.public_key)
            with pytest.raises(TransportError, match="handshakes did not finish"):
                async with a.swarm.dial_isolated(peer, [silent]):
                    pass  # pragma: no cover
            nursery.cancel_scope.cancel()
