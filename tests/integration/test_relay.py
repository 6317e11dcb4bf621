"""Circuit Relay v2 acceptance tests among our own hosts, over real sockets on 127.0.0.1.

Time-dependent behaviour (reservation TTL, refresh, the circuit duration limit) runs under a
``MockClock`` without autojump: the clock only moves when a test calls ``jump``, and only once
every task is idle, so real loopback I/O never races it. A thread-based watchdog bounds those
tests in real time (``trio.fail_after`` would use the frozen mock clock).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing
from multiaddr import Multiaddr

from libp2p import Host, HostConfig, ping
from libp2p.crypto.keys import PrivateKey, generate_ed25519
from libp2p.events import ConnectionClosed, PeerIdentified
from libp2p.exceptions import (
    LimitedConnectionError,
    ProtocolNotSupported,
    StreamReset,
)
from libp2p.identify.protocol import PROTOCOL_ID as IDENTIFY_ID
from libp2p.identify.protocol import read_identify
from libp2p.io import BufferedStream
from libp2p.network.connection import Connection, ConnectionLimit, NetStream
from libp2p.peer.envelope import Envelope
from libp2p.peer.id import PeerID
from libp2p.peer.voucher import (
    RESERVATION_VOUCHER_DOMAIN,
    RESERVATION_VOUCHER_PAYLOAD_TYPE,
    ReservationVoucher,
    seal_reservation_voucher,
)
from libp2p.relay.circuit_v2 import (
    HOP_PROTOCOL_ID,
    STOP_PROTOCOL_ID,
    LimitKind,
    MalformedRelayMessage,
    RelayConfig,
    RelayLimitReached,
    RelayRefused,
    RelayService,
    ReservationLost,
    ReservationMade,
    ReservationRefreshed,
    Status,
)
from libp2p.relay.circuit_v2.pb import circuit_pb2
from libp2p.relay.circuit_v2.protocol import (
    HOP_CONNECT,
    HOP_RESERVE,
    HOP_STATUS,
    MAX_MESSAGE_SIZE,
    STOP_CONNECT,
    STOP_STATUS,
    frame,
    hop_message,
    read_hop,
    read_stop,
    stop_message,
)
from libp2p.relay.circuit_v2.relay import splice
from libp2p.varint import encode_uvarint

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
ECHO = "/test/echo/1.0.0"
ECHO_UNLIMITED_ONLY = "/test/echo-direct/1.0.0"
SINK = "/test/sink/1.0.0"
#: Real-time bound for tests (a hang fails instead of blocking the suite).
REAL_TIMEOUT = 20.0


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """A frozen mock clock (rate 0, no autojump): only ``clock.jump`` moves it.

    pytest-trio runs a test with any ``trio.abc.Clock`` fixture it requests as the run's clock.
    """
    return trio.testing.MockClock()


@contextlib.contextmanager
def real_time_limit(seconds: float = REAL_TIMEOUT) -> Iterator[None]:
    """Fail the block if it takes more than ``seconds`` of real (wall-clock) time.

    For tests under a frozen MockClock, where ``trio.fail_after`` would never fire.
    """
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
    """Let every task run until all are blocked and no I/O arrives for a while."""
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)


async def jump(clock: trio.testing.MockClock, seconds: float) -> None:
    """Advance the mock clock once the system is idle, then let the consequences run."""
    await settle()
    clock.jump(seconds)
    await settle()


def relay_host(config: RelayConfig | None = None) -> Host:
    return Host(listen=[LOOPBACK], config=HostConfig(relay_service=config or RelayConfig()))


def service(relay: Host) -> RelayService:
    assert relay.relay_service is not None
    return relay.relay_service


def relay_maddr(relay: Host) -> Multiaddr:
    return relay.listen_addrs[0].encapsulate(Multiaddr(f"/p2p/{relay.peer_id}"))


def circuit(relay: Host, target: PeerID | None = None) -> Multiaddr:
    addr = relay_maddr(relay).encapsulate(Multiaddr("/p2p-circuit"))
    if target is not None:
        addr = addr.encapsulate(Multiaddr(f"/p2p/{target}"))
    return addr


async def echo(stream: NetStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    out = bytearray()
    while data := await stream.receive_some():
        out += data
    return bytes(out)


async def echo_over(conn: Connection, payload: bytes = b"ping through the relay") -> None:
    """One echo round trip on ``conn``: proves the connection (and its circuit) works."""
    stream = await conn.new_stream(ECHO, allow_limited=True)
    await stream.send_all(payload)
    await stream.send_eof()
    assert await read_all(stream) == payload
    await stream.aclose()


async def next_event(channel: trio.MemoryReceiveChannel[Any], kind: type, **match: object) -> Any:
    """The next event of ``kind`` whose attributes equal ``match`` (others are skipped)."""
    async for event in channel:
        if isinstance(event, kind) and all(getattr(event, k) == v for k, v in match.items()):
            return event
    raise AssertionError(f"event channel closed before a {kind.__name__}")


async def open_hop(host: Host, relay: Host) -> BufferedStream:
    """A raw hop stream from ``host`` to ``relay`` over a direct connection."""
    conn = await host.connect(relay_maddr(relay))
    assert not conn.relayed
    return BufferedStream.wrap(await conn.new_stream(HOP_PROTOCOL_ID))


async def expect_hop_status(reader: BufferedStream, status: Status) -> None:
    """The relay answers exactly one hop STATUS with ``status``, then closes the stream."""
    msg = await read_hop(reader)
    assert msg.type == HOP_STATUS
    assert msg.status == status.value, Status.describe(msg.status)
    assert not msg.HasField("reservation")
    assert await reader.receive_some() == b""


async def expect_stop_status(reader: BufferedStream, status: Status) -> None:
    """The client answers exactly one stop STATUS with ``status``, then closes the stream."""
    msg = await read_stop(reader)
    assert msg.type == STOP_STATUS
    assert msg.status == status.value, Status.describe(msg.status)
    assert await reader.receive_some() == b""


@contextlib.asynccontextmanager
async def relay_listener_dialer(
    config: RelayConfig | None = None,
) -> AsyncIterator[tuple[Host, Host, Host, Connection]]:
    """A relay, a listener holding a maintained reservation on it (serving ECHO on limited
    connections), and a dialer with a relayed connection to the listener."""
    async with relay_host(config) as relay, Host() as listener, Host() as dialer:
        listener.set_stream_handler(ECHO, echo, allow_limited=True)
        await listener.listen(circuit(relay))
        conn = await dialer.connect(circuit(relay, listener.peer_id))
        assert conn.relayed
        yield relay, listener, dialer, conn


# -- 1. time: reservation TTL, refresh, circuit duration (MockClock) --------------------------


async def test_reservation_expires_at_the_relay_after_its_ttl(
    clock: trio.testing.MockClock,
) -> None:
    ttl = 600.0
    with real_time_limit():
        async with (
            relay_host(RelayConfig(reservation_ttl=ttl)) as relay,
            Host() as listener,
            Host() as dialer,
        ):
            start = trio.current_time()
            reservation = await listener.relay.reserve(relay.peer_id, relay_maddr(relay))
            assert reservation.relay == relay.peer_id
            assert reservation.expire == pytest.approx(time.time() + ttl, abs=2)
            assert service(relay).reservations() == {listener.peer_id: start + ttl}

            await jump(clock, ttl - 1)
            assert listener.peer_id in service(relay).reservations()
            await jump(clock, 2)
            assert service(relay).reservations() == {}
            assert service(relay).stats.reservations_active == 0
            # The listener is still connected to the relay: only the TTL ended it.
            assert any(not c.relayed for c in relay.connections_to(listener.peer_id))

            with pytest.raises(RelayRefused) as refused:
                await dialer.connect(circuit(relay, listener.peer_id))
            assert refused.value.status == Status.NO_RESERVATION
            assert service(relay).stats.circuits_refused["no_reservation"] == 1


async def test_maintained_reservation_is_refreshed_at_three_quarters(
    clock: trio.testing.MockClock,
) -> None:
    ttl = 600.0
    with real_time_limit():
        async with relay_host(RelayConfig(reservation_ttl=ttl)) as relay, Host() as listener:
            with listener.events.subscribe(ReservationRefreshed, ReservationLost) as events:
                start = trio.current_time()
                await listener.listen(circuit(relay))
                first = listener.relay.reservations[relay.peer_id]
                assert service(relay).reservations() == {listener.peer_id: start + ttl}

                # The client computes 3/4 of the remaining wall-clock lifetime, which is at
                # most ttl and more than ttl - 1 (expire is whole seconds): due in
                # (0.75 * (ttl - 1), 0.75 * ttl].
                await jump(clock, 0.75 * (ttl - 1) - 0.5)
                with pytest.raises(trio.WouldBlock):
                    events.receive_nowait()
                assert service(relay).reservations() == {listener.peer_id: start + ttl}

                await jump(clock, 0.75 * ttl - (0.75 * (ttl - 1) - 0.5))
                event = await events.receive()
                assert isinstance(event, ReservationRefreshed)
                assert event.reservation.relay == relay.peer_id
                assert event.reservation.expire >= first.expire
                now = trio.current_time()
                assert now == pytest.approx(start + 0.75 * ttl)
                # The relay's deadline moved: a whole TTL from the refresh.
                assert service(relay).reservations() == {listener.peer_id: now + ttl}
                assert service(relay).stats.reservations_accepted == 2
                assert service(relay).stats.reservations_active == 1

                # Past the original deadline the reservation still holds.
                await jump(clock, 0.25 * ttl + 1)
                assert listener.peer_id in service(relay).reservations()


async def test_idle_circuit_is_reset_at_its_duration_limit(
    clock: trio.testing.MockClock,
) -> None:
    with real_time_limit():
        async with relay_listener_dialer(RelayConfig(circuit_duration=120)) as (
            relay,
            _listener,
            dialer,
            conn,
        ):
            assert conn.limit == ConnectionLimit(duration=120, data=1 << 17)
            with dialer.events.subscribe(ConnectionClosed) as closed:
                await jump(clock, 119)
                assert not conn.is_closed
                await echo_over(conn)
                assert service(relay).stats.circuits_active == 1
                assert service(relay).stats.circuits_limited == 0

                await jump(clock, 1)
                event = await next_event(closed, ConnectionClosed, connection=conn)
                assert event.relayed
                assert conn.is_closed
                # The dialer knows why: the relay's time limit, reached exactly at 120 s.
                assert isinstance(conn.error, RelayLimitReached), repr(conn.error)
                assert conn.error.kind is LimitKind.DURATION
                assert service(relay).stats.circuits_limited == 1
                assert service(relay).stats.circuits_active == 0


async def test_relay_resets_a_hop_stream_that_stalls_past_hop_timeout(
    clock: trio.testing.MockClock,
) -> None:
    config = RelayConfig(hop_timeout=30)
    with real_time_limit():
        async with relay_host(config) as relay, Host() as client:
            reader = await open_hop(client, relay)
            await reader.send_all(b"\x05\x08")  # 2 of the 6 bytes of a message
            outcome: list[BaseException] = []

            async def read() -> None:
                try:
                    await reader.receive_some()
                except StreamReset as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await jump(clock, 29)
                assert outcome == []
                await jump(clock, 1)
            assert len(outcome) == 1
            assert service(relay).stats.reservations_accepted == 0


async def test_target_that_never_answers_the_stop_fails_the_circuit(
    clock: trio.testing.MockClock,
) -> None:
    config = RelayConfig(stop_timeout=45)
    with real_time_limit():
        async with relay_host(config) as relay, Host() as target, Host() as dialer:
            asked = trio.Event()

            async def silent_stop(stream: NetStream) -> None:
                asked.set()
                await trio.sleep_forever()

            target.set_stream_handler(STOP_PROTOCOL_ID, silent_stop, allow_limited=True)
            await target.listen(circuit(relay))
            async with trio.open_nursery() as nursery:
                outcome: list[BaseException] = []

                async def dial() -> None:
                    try:
                        await dialer.connect(circuit(relay, target.peer_id))
                    except RelayRefused as exc:
                        outcome.append(exc)

                nursery.start_soon(dial)
                await asked.wait()
                await jump(clock, 44)
                assert outcome == []
                assert service(relay).stats.circuits_active == 1
                await jump(clock, 1)
            (refused,) = outcome
            assert isinstance(refused, RelayRefused)
            assert refused.status == Status.CONNECTION_FAILED
            stats = service(relay).stats
            assert stats.circuits_refused["connection_failed"] == 1
            assert stats.circuits_active == 0
            assert list(service(relay).reservations()) == [target.peer_id]


# -- 2. data limit ---------------------------------------------------------------------------


class Ends:
    """Two memory-stream pairs joined by ``splice``: ``a`` and ``b`` are the outer ends."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.a, self.a_inner = trio.testing.memory_stream_pair()
        self.b_inner, self.b = trio.testing.memory_stream_pair()
        self.counted: list[int] = []
        self.outcome: str | None = None

    async def run(self) -> None:
        self.outcome = await splice(
            self.a_inner, self.b_inner, on_bytes=self.counted.append, **self.kwargs
        )


async def test_splice_forwards_exactly_the_data_limit() -> None:
    ends = Ends(data_limit=100)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ends.run)
            await ends.a.send_all(b"x" * 60)
            assert await ends.b.receive_some() == b"x" * 60
            await ends.a.send_all(b"y" * 60)  # 40 of these fit
        assert ends.outcome == "limit"
        # splice leaves the streams open; close the inner ends to read what got through.
        await ends.b_inner.aclose()
        assert await read_all(ends.b) == b"y" * 40
        assert sum(ends.counted) == 100


async def test_splice_counts_each_direction_separately_and_propagates_eof() -> None:
    ends = Ends(data_limit=100)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ends.run)
            await ends.a.send_all(b"a" * 100)
            assert await ends.b.receive_some() == b"a" * 100
            await ends.b.send_all(b"b" * 100)  # 200 bytes in total, 100 per direction
            assert await ends.a.receive_some() == b"b" * 100
            # EOF from a reaches b as send_eof; b -> a keeps working.
            await ends.a.send_eof()
            assert await ends.b.receive_some() == b""
            await ends.b.send_all(b"")
            assert nursery.child_tasks  # still splicing
            await ends.b.send_eof()
            assert await ends.a.receive_some() == b""
        assert ends.outcome == "closed"
        assert sum(ends.counted) == 200


async def test_splice_limit_applies_to_the_other_direction_too() -> None:
    ends = Ends(data_limit=10)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ends.run)
            await ends.a.send_all(b"1" * 10)
            assert await ends.b.receive_some() == b"1" * 10
            await ends.b.send_all(b"2" * 11)
        assert ends.outcome == "limit"
        await ends.a_inner.aclose()
        assert await read_all(ends.a) == b"2" * 10


async def test_splice_without_limits_reports_a_broken_stream() -> None:
    ends = Ends()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ends.run)
            await ends.a.send_all(b"z" * 1000)
            assert await ends.b.receive_some() == b"z" * 1000
            await ends.b.aclose()  # b vanishes: forwarding a -> b must fail
            await ends.a.send_all(b"more")
        assert ends.outcome == "broken"


async def test_splice_duration(autojump_clock: trio.testing.MockClock) -> None:
    ends = Ends(duration=30)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ends.run)
        start = trio.current_time()
    assert ends.outcome == "limit"
    assert trio.current_time() - start == pytest.approx(30)


async def test_data_limit_resets_a_big_transfer_end_to_end() -> None:
    limit = 64 * 1024
    results: trio.MemorySendChannel[tuple[int, BaseException]]
    results, received = trio.open_memory_channel[tuple[int, BaseException]](1)

    async def sink(stream: NetStream) -> None:
        count = 0
        try:
            while data := await stream.receive_some():
                count += len(data)
        except trio.BrokenResourceError as exc:
            results.send_nowait((count, exc))
            raise
        results.send_nowait((count, AssertionError("clean EOF instead of a reset")))

    config = RelayConfig(circuit_duration=None, circuit_data=limit)
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer(config) as (relay, listener, _dialer, conn):
            listener.set_stream_handler(SINK, sink, allow_limited=True)
            assert conn.limit == ConnectionLimit(duration=None, data=limit)
            stream = await conn.new_stream(SINK, allow_limited=True)
            with pytest.raises(trio.BrokenResourceError):  # noqa: PT012 (which send breaks varies)
                for _ in range(64):
                    await stream.send_all(b"\xab" * 16384)  # 1 MiB in all
            count, exc = await received.receive()
            assert isinstance(exc, StreamReset), repr(exc)
            # Noise and Yamux framing count against the limit too.
            assert 0 < count < limit
            assert conn.is_closed or await _closes(conn)
            assert service(relay).stats.circuits_limited == 1


async def _closes(conn: Connection) -> bool:
    await conn.wait_closed()
    return True


# -- 3. slots --------------------------------------------------------------------------------


async def test_reservation_slot_is_released_on_disconnect() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_host() as relay, Host() as listener:
            await listener.relay.reserve(relay.peer_id, relay_maddr(relay))
            assert service(relay).stats.reservations_active == 1
            with relay.events.subscribe(ConnectionClosed) as closed:
                await listener.disconnect(relay.peer_id)
                await next_event(closed, ConnectionClosed, peer=listener.peer_id)
            assert service(relay).stats.reservations_active == 0
            assert service(relay).reservations() == {}


async def test_reservations_per_ip_are_capped() -> None:
    config = RelayConfig(max_reservations_per_ip=2)
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_host(config) as relay, Host() as a, Host() as b, Host() as c:
            await a.relay.reserve(relay.peer_id, relay_maddr(relay))
            await b.relay.reserve(relay.peer_id, relay_maddr(relay))
            with pytest.raises(RelayRefused) as refused:
                await c.relay.reserve(relay.peer_id, relay_maddr(relay))
            assert refused.value.status == Status.RESERVATION_REFUSED
            stats = service(relay).stats
            assert stats.reservations_refused["max_reservations_per_ip"] == 1
            assert stats.reservations_active == 2
            assert set(service(relay).reservations()) == {a.peer_id, b.peer_id}
            # A peer already holding one may still refresh it.
            await a.relay.reserve(relay.peer_id)
            assert service(relay).stats.reservations_accepted == 3


async def test_max_reservations_caps_the_relay_and_frees_slots() -> None:
    config = RelayConfig(max_reservations=2)
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_host(config) as relay, Host() as a, Host() as b, Host() as c:
            await a.relay.reserve(relay.peer_id, relay_maddr(relay))
            await b.relay.reserve(relay.peer_id, relay_maddr(relay))
            with pytest.raises(RelayRefused) as refused:
                await c.relay.reserve(relay.peer_id, relay_maddr(relay))
            assert refused.value.status == Status.RESERVATION_REFUSED
            assert service(relay).stats.reservations_refused["max_reservations"] == 1
            with relay.events.subscribe(ConnectionClosed) as closed:
                await a.disconnect(relay.peer_id)
                await next_event(closed, ConnectionClosed, peer=a.peer_id)
            await c.relay.reserve(relay.peer_id)
            assert set(service(relay).reservations()) == {b.peer_id, c.peer_id}


async def test_one_reservation_per_peer() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_host(RelayConfig(max_reservations=1)) as relay, Host() as listener:
            await listener.relay.reserve(relay.peer_id, relay_maddr(relay))
            await listener.relay.reserve(relay.peer_id, relay_maddr(relay))
            stats = service(relay).stats
            assert stats.reservations_accepted == 2
            assert stats.reservations_active == 1
            assert not stats.reservations_refused
            assert list(service(relay).reservations()) == [listener.peer_id]


async def test_circuits_per_peer_are_capped() -> None:
    config = RelayConfig(max_circuits_per_peer=1)
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            relay_listener_dialer(config) as (relay, listener, _dialer, conn),
            Host() as second,
        ):
            with pytest.raises(RelayRefused) as refused:
                await second.connect(circuit(relay, listener.peer_id))
            assert refused.value.status == Status.RESOURCE_LIMIT_EXCEEDED
            stats = service(relay).stats
            assert stats.circuits_refused["max_circuits_per_peer"] == 1
            assert stats.circuits_active == 1
            # The first circuit is untouched.
            await echo_over(conn)


async def test_a_dialing_peer_takes_no_reservation_slot() -> None:
    config = RelayConfig(max_reservations=1)
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer(config) as (relay, listener, dialer, conn):
            await echo_over(conn)
            assert list(service(relay).reservations()) == [listener.peer_id]
            assert service(relay).stats.reservations_active == 1
            assert any(not c.relayed for c in relay.connections_to(dialer.peer_id))
            assert dialer.relay.reservations == {}


async def test_target_refusing_the_stop_protocol_fails_the_circuit() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_host() as relay, Host() as target, Host() as dialer:
            await target.listen(circuit(relay))
            target.remove_stream_handler(STOP_PROTOCOL_ID)
            with pytest.raises(RelayRefused) as refused:
                await dialer.connect(circuit(relay, target.peer_id))
            assert refused.value.status == Status.CONNECTION_FAILED
            stats = service(relay).stats
            assert stats.circuits_refused["connection_failed"] == 1
            assert stats.circuits_opened == 0
            assert stats.circuits_active == 0
            assert list(service(relay).reservations()) == [target.peer_id]
            assert dialer.connections_to(target.peer_id) == []


# -- 4. never a circuit over a circuit --------------------------------------------------------


async def test_hop_requests_over_a_relayed_connection_are_denied() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            relay_host() as r1,
            relay_host() as r2,
            Host() as target,
            Host() as x,
        ):
            # r2 is reachable through r1; target holds a reservation on r2.
            await r2.listen(circuit(r1))
            await target.listen(circuit(r2))
            relayed = await x.connect(circuit(r1, r2.peer_id))
            assert relayed.relayed
            assert relayed.limited
            assert not [c for c in x.connections_to(r2.peer_id) if not c.relayed]

            reserve = BufferedStream.wrap(
                await relayed.new_stream(HOP_PROTOCOL_ID, allow_limited=True)
            )
            await reserve.send_all(frame(hop_message(HOP_RESERVE)))
            await expect_hop_status(reserve, Status.PERMISSION_DENIED)

            connect = BufferedStream.wrap(
                await relayed.new_stream(HOP_PROTOCOL_ID, allow_limited=True)
            )
            await connect.send_all(frame(hop_message(HOP_CONNECT, peer=target.peer_id)))
            await expect_hop_status(connect, Status.PERMISSION_DENIED)

            stats = service(r2).stats
            assert stats.reservations_refused["relayed connection"] == 1
            assert stats.circuits_refused["relayed connection"] == 1
            assert stats.circuits_opened == 0
            assert list(service(r2).reservations()) == [target.peer_id]


async def test_stop_stream_over_a_relayed_connection_is_denied() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer() as (_relay, listener, dialer, conn):
            stop = BufferedStream.wrap(await conn.new_stream(STOP_PROTOCOL_ID, allow_limited=True))
            await stop.send_all(frame(stop_message(STOP_CONNECT, peer=dialer.peer_id)))
            await expect_stop_status(stop, Status.PERMISSION_DENIED)
            # Only the genuine relayed connection exists between them.
            assert listener.connections_to(dialer.peer_id) != []
            assert all(c.relayed for c in listener.connections_to(dialer.peer_id))
            await echo_over(conn)


# -- 5. malformed and unexpected messages ------------------------------------------------------


def raw_hop(**fields: Any) -> bytes:
    return frame(circuit_pb2.HopMessage(**fields))


def raw_stop(**fields: Any) -> bytes:
    return frame(circuit_pb2.StopMessage(**fields))


def lp(body: bytes) -> bytes:
    return encode_uvarint(len(body)) + body


BAD_HOP = {
    "garbage protobuf": (lp(b"\x0a\xff\xff\x01"), Status.MALFORMED_MESSAGE),
    "no type": (lp(b""), Status.MALFORMED_MESSAGE),
    "unknown type": (raw_hop(type=7), Status.MALFORMED_MESSAGE),
    "STATUS": (frame(hop_message(HOP_STATUS, status=Status.OK)), Status.UNEXPECTED_MESSAGE),
    "CONNECT without peer": (frame(hop_message(HOP_CONNECT)), Status.MALFORMED_MESSAGE),
    "CONNECT without peer id": (
        raw_hop(type=HOP_CONNECT, peer=circuit_pb2.Peer(addrs=[b"x"])),
        Status.MALFORMED_MESSAGE,
    ),
    "CONNECT with an invalid peer id": (
        raw_hop(type=HOP_CONNECT, peer=circuit_pb2.Peer(id=b"\x12\x20abc")),
        Status.MALFORMED_MESSAGE,
    ),
    "CONNECT with an empty peer id": (
        raw_hop(type=HOP_CONNECT, peer=circuit_pb2.Peer(id=b"")),
        Status.MALFORMED_MESSAGE,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_HOP))
async def test_relay_answers_bad_hop_messages_and_keeps_working(case: str) -> None:
    payload, status = BAD_HOP[case]
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer() as (relay, listener, _dialer, conn), Host() as m:
            reader = await open_hop(m, relay)
            await reader.send_all(payload)
            await expect_hop_status(reader, status)
            await echo_over(conn)
            assert list(service(relay).reservations()) == [listener.peer_id]
            assert relay.peer_id in listener.relay.reservations
            assert service(relay).stats.circuits_active == 1


async def test_relay_resets_an_oversized_hop_message() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer() as (relay, listener, _dialer, conn), Host() as m:
            reader = await open_hop(m, relay)
            body = bytes(frame(hop_message(HOP_RESERVE))[1:]) + b"\x00" * MAX_MESSAGE_SIZE
            await reader.send_all(lp(body))
            with pytest.raises(StreamReset):
                await reader.receive_some()
            assert service(relay).stats.reservations_accepted == 1  # the listener's only
            await echo_over(conn)
            assert list(service(relay).reservations()) == [listener.peer_id]


BAD_STOP = {
    "garbage protobuf": (lp(b"\x0a\xff\xff\x01"), Status.MALFORMED_MESSAGE),
    "no type": (lp(b""), Status.MALFORMED_MESSAGE),
    "unknown type": (raw_stop(type=5), Status.MALFORMED_MESSAGE),
    "STATUS": (frame(stop_message(STOP_STATUS, status=Status.OK)), Status.UNEXPECTED_MESSAGE),
    "CONNECT without peer": (frame(stop_message(STOP_CONNECT)), Status.MALFORMED_MESSAGE),
    "CONNECT with an invalid peer id": (
        raw_stop(type=STOP_CONNECT, peer=circuit_pb2.Peer(id=b"\xff\xff")),
        Status.MALFORMED_MESSAGE,
    ),
    "CONNECT without peer id": (
        raw_stop(type=STOP_CONNECT, peer=circuit_pb2.Peer(addrs=[b"x"])),
        Status.MALFORMED_MESSAGE,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STOP))
async def test_client_answers_bad_stop_messages_and_keeps_working(case: str) -> None:
    payload, status = BAD_STOP[case]
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer() as (relay, listener, _dialer, conn):
            listener_addr = await listener.listen(LOOPBACK)
            async with Host() as fake_relay:
                direct = await fake_relay.connect(
                    listener_addr[0].encapsulate(Multiaddr(f"/p2p/{listener.peer_id}"))
                )
                stop = BufferedStream.wrap(await direct.new_stream(STOP_PROTOCOL_ID))
                await stop.send_all(payload)
                await expect_stop_status(stop, status)
                assert [c for c in listener.connections_to(fake_relay.peer_id) if c.relayed] == []
            await echo_over(conn)
            assert relay.peer_id in listener.relay.reservations
            assert list(service(relay).reservations()) == [listener.peer_id]


async def test_client_resets_an_oversized_stop_message() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer() as (relay, listener, _dialer, conn):
            listener_addr = await listener.listen(LOOPBACK)
            async with Host() as fake_relay:
                direct = await fake_relay.connect(
                    listener_addr[0].encapsulate(Multiaddr(f"/p2p/{listener.peer_id}"))
                )
                stop = BufferedStream.wrap(await direct.new_stream(STOP_PROTOCOL_ID))
                await stop.send_all(lp(b"\x08\x00" + b"\x00" * MAX_MESSAGE_SIZE))
                with pytest.raises(StreamReset):
                    await stop.receive_some()
            await echo_over(conn)
            assert relay.peer_id in listener.relay.reservations


VoucherMaker = Callable[[Host, PeerID, int], bytes]


def _voucher_signed_by_another_key(relay: Host, peer: PeerID, expire: int) -> bytes:
    # Names the relay, but another key signs it.
    other: PrivateKey = generate_ed25519()
    payload = ReservationVoucher(relay.peer_id, peer, expire).to_bytes()
    return Envelope.seal(
        other, RESERVATION_VOUCHER_DOMAIN, RESERVATION_VOUCHER_PAYLOAD_TYPE, payload
    ).to_bytes()


def _voucher_of_another_relay(relay: Host, peer: PeerID, expire: int) -> bytes:
    return seal_reservation_voucher(generate_ed25519(), peer, expire)


def _voucher_for_another_peer(relay: Host, peer: PeerID, expire: int) -> bytes:
    other = PeerID.from_public_key(generate_ed25519().public_key)
    return seal_reservation_voucher(relay.key, other, expire)


def _voucher_garbage(relay: Host, peer: PeerID, expire: int) -> bytes:
    return b"\x0a\x03abc"


BAD_VOUCHERS: dict[str, VoucherMaker] = {
    "signed by another key": _voucher_signed_by_another_key,
    "of another relay": _voucher_of_another_relay,
    "for another peer": _voucher_for_another_peer,
    "garbage": _voucher_garbage,
}


@contextlib.asynccontextmanager
async def fake_relay(make_voucher: VoucherMaker) -> AsyncIterator[tuple[Host, Host]]:
    """A host whose own hop handler accepts RESERVE with ``make_voucher``'s voucher, and a
    client to reserve on it."""
    async with Host(listen=[LOOPBACK]) as fake, Host() as client:

        async def hop(stream: NetStream) -> None:
            reader = BufferedStream.wrap(stream)
            request = await read_hop(reader)
            assert request.type == HOP_RESERVE
            expire = int(time.time()) + 3600
            reply = hop_message(HOP_STATUS, status=Status.OK)
            reply.reservation.expire = expire
            reply.reservation.addrs.append(relay_maddr(fake).to_bytes())
            reply.reservation.voucher = make_voucher(fake, client.peer_id, expire)
            await reader.send_all(frame(reply))
            await reader.aclose()

        fake.set_stream_handler(HOP_PROTOCOL_ID, hop)
        yield fake, client


@pytest.mark.parametrize("case", sorted(BAD_VOUCHERS))
async def test_a_bad_voucher_fails_the_reservation(case: str) -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with fake_relay(BAD_VOUCHERS[case]) as (fake, client):
            with pytest.raises(MalformedRelayMessage, match="voucher"):
                await client.relay.reserve(fake.peer_id, relay_maddr(fake))
            with pytest.raises(MalformedRelayMessage, match="voucher"):
                await client.listen(circuit(fake))
            assert client.relay.reservations == {}
            assert client.relay.relayed_addrs == []


async def test_a_good_voucher_from_the_fake_relay_is_accepted() -> None:
    # The control for the cases above: the fake relay itself is sound.
    with trio.fail_after(REAL_TIMEOUT):
        async with fake_relay(
            lambda relay, peer, expire: seal_reservation_voucher(relay.key, peer, expire)
        ) as (fake, client):
            reservation = await client.relay.reserve(fake.peer_id, relay_maddr(fake))
            assert reservation.has_voucher
            assert reservation.addrs == (circuit(fake),)


# -- 6. the relayed pipe is a trio half-closeable stream --------------------------------------


async def test_relayed_pipe_passes_check_half_closeable_stream() -> None:
    async with relay_host(RelayConfig.unlimited()) as relay, Host() as a, Host() as b:
        handed, taken = trio.open_memory_channel[tuple[Any, BufferedStream]](0)

        async def stop_handler(stream: NetStream) -> None:
            reader = BufferedStream.wrap(stream)
            request = await read_stop(reader)
            await reader.send_all(frame(stop_message(STOP_STATUS, status=Status.OK)))
            await handed.send((request, reader))

        b.set_stream_handler(STOP_PROTOCOL_ID, stop_handler, allow_limited=True)
        await b.relay.reserve(relay.peer_id, relay_maddr(relay))
        to_relay = await a.connect(relay_maddr(relay))

        async def maker() -> tuple[BufferedStream, BufferedStream]:
            with trio.fail_after(REAL_TIMEOUT):
                a_side = BufferedStream.wrap(await to_relay.new_stream(HOP_PROTOCOL_ID))
                await a_side.send_all(frame(hop_message(HOP_CONNECT, peer=b.peer_id)))
                reply = await read_hop(a_side)
                assert reply.type == HOP_STATUS
                assert reply.status == Status.OK.value
                assert not reply.HasField("limit")
                request, b_side = await taken.receive()
                assert request.type == STOP_CONNECT
                assert PeerID.from_bytes(request.peer.id) == a.peer_id
                assert not request.HasField("limit")
            return a_side, b_side

        with trio.fail_after(60):
            await trio.testing.check_half_closeable_stream(maker, None)
        assert service(relay).stats.circuits_limited == 0


# -- 7. limited connections --------------------------------------------------------------------


async def test_limited_connection_refuses_protocols_that_did_not_opt_in() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer() as (_relay, listener, dialer, conn):
            listener.set_stream_handler(ECHO_UNLIMITED_ONLY, echo)
            assert conn.limited
            with pytest.raises(LimitedConnectionError, match=ECHO_UNLIMITED_ONLY):
                await conn.new_stream(ECHO_UNLIMITED_ONLY)
            with pytest.raises(LimitedConnectionError):
                await dialer.new_stream(listener.peer_id, ECHO_UNLIMITED_ONLY)

            # Opening it anyway: the listener does not serve it on a limited connection.
            with pytest.raises(ProtocolNotSupported):
                await conn.new_stream(ECHO_UNLIMITED_ONLY, allow_limited=True)

            # Identify and ping opted in, in both directions.
            for host, peer in ((dialer, listener), (listener, dialer)):
                (relayed,) = host.connections_to(peer.peer_id)
                assert relayed.limited
                ping_stream = await relayed.new_stream(ping.PROTOCOL_ID, allow_limited=True)
                (rtt,) = await ping.ping(ping_stream)
                assert rtt >= 0
                await ping_stream.aclose()
                id_stream = await relayed.new_stream(IDENTIFY_ID, allow_limited=True)
                info = await read_identify(id_stream)
                assert info.public_key == peer.key.public_key
                assert STOP_PROTOCOL_ID in info.protocols
            await echo_over(conn)


async def test_host_new_stream_names_the_protocol_when_limited() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer() as (_relay, listener, dialer, _conn):
            with pytest.raises(LimitedConnectionError, match=ECHO_UNLIMITED_ONLY):
                await dialer.new_stream(listener.peer_id, ECHO_UNLIMITED_ONLY)


async def test_unlimited_relay_gives_an_unlimited_connection() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer(RelayConfig.unlimited()) as (
            _relay,
            listener,
            dialer,
            conn,
        ):
            listener.set_stream_handler(ECHO_UNLIMITED_ONLY, echo)
            assert conn.relayed
            assert not conn.limited
            assert conn.limit is None
            stream = await dialer.new_stream(listener.peer_id, ECHO_UNLIMITED_ONLY)
            assert stream.connection is conn
            await stream.send_all(b"x" * 300_000)  # beyond the default data limit
            await stream.send_eof()
            assert await read_all(stream) == b"x" * 300_000


async def test_new_stream_prefers_a_direct_connection() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_listener_dialer() as (_relay, listener, dialer, relayed):
            listener.set_stream_handler(ECHO_UNLIMITED_ONLY, echo)
            (listen_addr,) = await listener.listen(LOOPBACK)
            # The only connection is limited, but a direct address is known: new_stream
            # dials it rather than failing or using the circuit.
            dialer.peerstore.add_addrs(listener.peer_id, [listen_addr], 3600)
            stream = await dialer.new_stream(listener.peer_id, ECHO_UNLIMITED_ONLY)
            direct = stream.connection
            assert not direct.relayed
            assert not direct.limited
            await stream.aclose()
            assert set(dialer.connections_to(listener.peer_id)) == {relayed, direct}
            # With both open, even opted-in protocols go direct.
            stream = await dialer.new_stream(listener.peer_id, ECHO, allow_limited=True)
            assert stream.connection is direct
            await stream.aclose()


# -- 8. reservation lifecycle with real time ---------------------------------------------------


async def test_reservation_is_lost_and_remade_when_the_relay_drops_us() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_host() as relay, Host() as listener:
            with listener.events.subscribe(ReservationMade, ReservationLost) as events:
                (addr,) = await listener.listen(circuit(relay))
                made = await events.receive()
                assert isinstance(made, ReservationMade)
                assert addr in listener.addrs

                await relay.disconnect(listener.peer_id)
                lost = await events.receive()
                assert isinstance(lost, ReservationLost), lost
                assert lost.relay == relay.peer_id
                assert addr not in listener.addrs
                assert listener.relay.relayed_addrs == []

                again = await events.receive()
                assert isinstance(again, ReservationMade), again
                assert again.reservation.addrs == (addr,)
                assert addr in listener.addrs
                assert list(service(relay).reservations()) == [listener.peer_id]
                assert service(relay).stats.reservations_accepted == 2


async def test_refused_first_reservation_fails_listen() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_host(RelayConfig(max_reservations=0)) as relay, Host() as listener:
            with pytest.raises(RelayRefused) as refused:
                await listener.listen(circuit(relay))
            assert refused.value.status == Status.RESERVATION_REFUSED
            assert "RESERVATION_REFUSED" in str(refused.value)
            assert listener.relay.reservations == {}
            assert service(relay).stats.reservations_refused["max_reservations"] == 1


async def test_connected_peer_learns_the_relayed_address_by_identify_push() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            relay_host() as relay,
            Host(listen=[LOOPBACK]) as listener,
            Host() as peer,
        ):
            with (
                peer.events.subscribe(PeerIdentified) as peer_seen,
                listener.events.subscribe(PeerIdentified) as listener_seen,
            ):
                conn = await peer.connect(
                    listener.listen_addrs[0].encapsulate(Multiaddr(f"/p2p/{listener.peer_id}"))
                )
                await next_event(peer_seen, PeerIdentified, peer=listener.peer_id)
                await next_event(listener_seen, PeerIdentified, peer=peer.peer_id)
                (addr,) = await listener.listen(circuit(relay))
                full = addr.encapsulate(Multiaddr(f"/p2p/{listener.peer_id}"))
                assert addr not in peer.peerstore.addrs(listener.peer_id)
                while True:
                    pushed = await next_event(peer_seen, PeerIdentified, peer=listener.peer_id)
                    if addr in pushed.listen_addrs or full in pushed.listen_addrs:
                        break
                assert pushed.connection is conn
                known = peer.peerstore.addrs(listener.peer_id)
                assert addr in known or full in known
                assert peer.connections_to(listener.peer_id) == [conn]


async def test_stop_listening_withdraws_the_relayed_addresses() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with relay_host() as relay, Host() as listener:
            with listener.events.subscribe(ReservationMade, ReservationLost) as events:
                (addr,) = await listener.listen(circuit(relay))
                assert addr in listener.addrs
                await listener.relay.stop_listening(relay.peer_id)
                assert addr not in listener.addrs
                assert listener.relay.reservations == {}
                # Listening again makes a new reservation.
                assert await listener.listen(circuit(relay)) == [addr]
                kinds = [type(events.receive_nowait()) for _ in range(2)]
                assert kinds == [ReservationMade, ReservationMade]
