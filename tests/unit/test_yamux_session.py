"""The trio driver: sessions over trio.testing.memory_stream_pair, and against a raw peer."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from libp2p.exceptions import ConnectionClosedError, StreamReset
from libp2p.io import BufferedStream
from libp2p.stream_muxer.yamux import (
    INITIAL_WINDOW,
    CloseReason,
    Flag,
    FrameType,
    GoAwayCode,
    KeepAliveTimeout,
    RemoteGoAway,
    YamuxConfig,
    YamuxProtocolError,
    YamuxSession,
    YamuxStream,
    decode_header,
    encode_header,
    open_yamux_session,
)

QUIET = YamuxConfig(measure_rtt=False, keepalive_interval=None)


@asynccontextmanager
async def session_pair(
    client_config: YamuxConfig | None = None,
    server_config: YamuxConfig | None = None,
    *,
    deadline: float = 60.0,
) -> AsyncIterator[tuple[YamuxSession, YamuxSession]]:
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = YamuxSession(client_raw, is_initiator=True, config=client_config)
    server = YamuxSession(server_raw, is_initiator=False, config=server_config)
    with trio.fail_after(deadline):  # a bug fails the test instead of hanging it
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            await nursery.start(server.run)
            yield client, server
            nursery.cancel_scope.cancel()


class RawPeer:
    """The other end of a session, speaking hand-made frames."""

    def __init__(self, stream: trio.abc.HalfCloseableStream) -> None:
        self.stream = stream
        self.reader = BufferedStream(stream)

    async def send(self, *frames: bytes) -> None:
        await self.stream.send_all(b"".join(frames))

    async def read_frame(self) -> tuple[int, int, int, int, bytes]:
        header = decode_header(await self.reader.read_exactly(12))
        payload = b""
        if header.type == FrameType.DATA and header.length:
            payload = await self.reader.read_exactly(header.length)
        return header.type, header.flags, header.stream_id, header.length, payload

    async def read_until_eof(self) -> list[tuple[int, int, int, int, bytes]]:
        frames: list[tuple[int, int, int, int, bytes]] = []
        while True:
            if not self.reader.buffered:
                chunk = await self.stream.receive_some()
                if not chunk:
                    return frames
                self.reader.unread(chunk)
            frames.append(await self.read_frame())


@asynccontextmanager
async def raw_session(
    *, is_initiator: bool = True, config: YamuxConfig = QUIET
) -> AsyncIterator[tuple[YamuxSession, RawPeer]]:
    ours, theirs = trio.testing.memory_stream_pair()
    session = YamuxSession(ours, is_initiator=is_initiator, config=config)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(session.run)
            yield session, RawPeer(theirs)
            nursery.cancel_scope.cancel()


def frame(kind: int, flags: int, stream_id: int, length: int, payload: bytes = b"") -> bytes:
    return encode_header(kind, flags, stream_id, length) + payload


async def read_all(stream: YamuxStream) -> bytes:
    chunks = []
    while chunk := await stream.receive_some():
        chunks.append(chunk)
    return b"".join(chunks)


# -- the generic trio stream contract -----------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        None,
        # Small frames, a one-byte write buffer (every frame waits for the writer task) and
        # reads that split headers and payloads at arbitrary points.
        YamuxConfig(max_frame_payload=1000, write_buffer_size=1, read_size=997),
    ],
    ids=["default", "tiny-buffers"],
)
async def test_check_half_closeable_stream(config: YamuxConfig | None) -> None:
    async with session_pair(config, config) as (client, server):

        async def maker() -> tuple[YamuxStream, YamuxStream]:
            return await client.open_stream(), await server.accept_stream()

        async def clogged_maker() -> tuple[YamuxStream, YamuxStream]:
            # Fill the window both ways: send_all now blocks until the other side reads.
            left, right = await maker()
            await left.send_all(b"x" * INITIAL_WINDOW)
            await right.send_all(b"x" * INITIAL_WINDOW)
            return left, right

        with trio.fail_after(30):
            await trio.testing.check_half_closeable_stream(maker, clogged_maker)
        # Every stream the check created is finished on both sides.
        await trio.testing.wait_all_tasks_blocked()
        assert client.num_streams == 0
        assert server.num_streams == 0
        assert not client.is_closed
        assert not server.is_closed


# -- many streams, slow readers ---------------------------------------------------------------


def pattern(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def test_many_concurrent_streams_both_directions_arrive_intact() -> None:
    size = 3 * 1024 * 1024
    per_side = 4

    async def send(stream: YamuxStream, seed: int) -> None:
        data = memoryview(pattern(seed, size))
        rng = random.Random(seed)
        while data:
            n = rng.randint(1, 300_000)
            await stream.send_all(data[:n])
            data = data[n:]
        await stream.send_eof()

    async def receive(stream: YamuxStream, seed: int) -> None:
        digest = hashlib.sha256()
        total = 0
        while chunk := await stream.receive_some(random.Random(seed).randint(1, 100_000)):
            digest.update(chunk)
            total += len(chunk)
        assert total == size
        assert digest.digest() == hashlib.sha256(pattern(seed, size)).digest()

    async def exchange(stream: YamuxStream) -> None:
        # Outbound data is seeded by (stream ID, direction) so both ends know what to expect.
        mine = stream.stream_id * 2 + (stream.session.is_initiator ^ (stream.stream_id & 1 == 0))
        theirs = stream.stream_id * 2 + (not (mine & 1))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, stream, mine)
            nursery.start_soon(receive, stream, theirs)
        await stream.aclose()

    async with session_pair() as (client, server):
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:

                async def open_side(session: YamuxSession) -> None:
                    for _ in range(per_side):
                        nursery.start_soon(exchange, await session.open_stream())

                async def accept_side(session: YamuxSession) -> None:
                    for _ in range(per_side):
                        nursery.start_soon(exchange, await session.accept_stream())

                nursery.start_soon(open_side, client)
                nursery.start_soon(open_side, server)
                nursery.start_soon(accept_side, client)
                nursery.start_soon(accept_side, server)
        await trio.testing.wait_all_tasks_blocked()
        assert client.num_streams == server.num_streams == 0


async def test_slow_reader_neither_stalls_other_streams_nor_grows_memory() -> None:
    fast_total = 24 * 1024 * 1024
    slow_total = 4 * 1024 * 1024
    async with session_pair() as (client, server):
        slow_out = await client.open_stream()
        slow_in = await server.accept_stream()
        fast_out = await client.open_stream()
        fast_in = await server.accept_stream()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_out.send_all, bytes(slow_total))

            async def fast_writer() -> None:
                await fast_out.send_all(bytes(fast_total))
                await fast_out.send_eof()

            nursery.start_soon(fast_writer)
            received = 0
            max_slow_buffer = 0
            while chunk := await fast_in.receive_some():
                received += len(chunk)
                max_slow_buffer = max(max_slow_buffer, slow_in.buffered_bytes)
            # The fast stream delivered everything while nobody read the slow one ...
            assert received == fast_total
            await trio.testing.wait_all_tasks_blocked()
            # ... whose unread bytes are capped by its (never grown) receive window.
            assert slow_in.buffered_bytes == INITIAL_WINDOW
            assert max_slow_buffer <= INITIAL_WINDOW
            assert slow_in.receive_window == INITIAL_WINDOW
            # The session still answers pings while that application is stuck.
            assert await client.ping() >= 0
            assert await server.ping() >= 0
            # Reading the slow stream releases its writer.
            got = 0
            while got < slow_total:
                got += len(await slow_in.receive_some())
                assert slow_in.buffered_bytes <= slow_in.receive_window
        assert got == slow_total


async def test_window_grows_for_a_fast_reader() -> None:
    async with session_pair(YamuxConfig(keepalive_interval=None), None) as (client, server):
        # The first RTT measurement happens when the session starts.
        while client.rtt is None:
            await client.ping()
        out = await server.open_stream()
        inp = await client.accept_stream()
        total = 32 * 1024 * 1024

        async def writer() -> None:
            await out.send_all(bytes(total))
            await out.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            largest = 0
            got = 0
            while chunk := await inp.receive_some():
                got += len(chunk)
                largest = max(largest, inp.receive_window)
                assert inp.buffered_bytes <= max(inp.receive_window, INITIAL_WINDOW)
        assert got == total
        assert largest > INITIAL_WINDOW
        assert largest <= client.config.max_window


async def test_cancelled_send_all_leaves_the_session_intact() -> None:
    async with session_pair() as (client, server):
        out = await client.open_stream()
        inp = await server.accept_stream()
        with trio.CancelScope() as scope:

            async def cancel_when_blocked() -> None:
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_when_blocked)
                await out.send_all(bytes(4 * INITIAL_WINDOW))  # blocks on the window
        assert scope.cancelled_caught
        # Exactly one window of whole frames went out; the session and other streams work.
        got = b""
        while len(got) < INITIAL_WINDOW:
            got += await inp.receive_some()
        assert len(got) == INITIAL_WINDOW
        other = await server.open_stream()
        await other.send_all(b"fine")
        assert await (await client.accept_stream()).receive_some() == b"fine"
        assert not client.is_closed


# -- limits -----------------------------------------------------------------------------------


async def test_inbound_streams_beyond_the_accept_backlog_are_reset() -> None:
    server_config = YamuxConfig(accept_backlog=3, measure_rtt=False, keepalive_interval=None)
    async with session_pair(QUIET, server_config) as (client, server):
        outs = [await client.open_stream() for _ in range(5)]
        for stream in outs:
            await stream.send_all(b"hi")
        await trio.testing.wait_all_tasks_blocked()
        for stream in outs[3:]:
            with pytest.raises(StreamReset) as info:
                await stream.receive_some()
            assert info.value.by_remote
        accepted = [await server.accept_stream() for _ in range(3)]
        assert [s.stream_id for s in accepted] == [s.stream_id for s in outs[:3]]
        for stream in accepted:
            assert await stream.receive_some() == b"hi"
        # A slot is free again once one was accepted.
        late = await client.open_stream()
        await late.send_all(b"late")
        assert await (await server.accept_stream()).receive_some() == b"late"


async def test_open_stream_waits_for_acks_beyond_the_ack_backlog() -> None:
    client_config = YamuxConfig(max_ack_backlog=2, measure_rtt=False, keepalive_interval=None)
    async with session_pair(client_config, QUIET) as (client, server):
        await client.open_stream()
        await client.open_stream()
        opened: list[YamuxStream] = []

        async with trio.open_nursery() as nursery:

            async def third() -> None:
                opened.append(await client.open_stream())

            nursery.start_soon(third)
            await trio.testing.wait_all_tasks_blocked()
            assert opened == []  # two unacknowledged streams: the third waits
            await server.accept_stream()  # sends the ACK
        assert [s.stream_id for s in opened] == [5]


# -- ping, GoAway, keep-alive -----------------------------------------------------------------


async def test_ping_measures_rtt_concurrently() -> None:
    async with session_pair(QUIET, QUIET) as (client, server):
        results: list[float] = []
        async with trio.open_nursery() as nursery:
            for session in (client, server, client, server):

                async def one(s: YamuxSession = session) -> None:
                    results.append(await s.ping())

                nursery.start_soon(one)
        assert len(results) == 4
        assert all(0 <= rtt < 10 for rtt in results)
        assert client.rtt is not None


async def test_ping_is_answered_while_the_application_is_blocked() -> None:
    async with raw_session(is_initiator=False) as (_, peer):
        # The peer opens a stream and fills its window; nobody accepts or reads it.
        await peer.send(frame(FrameType.DATA, Flag.SYN, 1, INITIAL_WINDOW, bytes(INITIAL_WINDOW)))
        await peer.send(frame(FrameType.PING, Flag.SYN, 0, 0x5EED))
        assert await peer.read_frame() == (FrameType.PING, Flag.ACK, 0, 0x5EED, b"")


async def test_goaway_stops_new_streams_existing_ones_continue() -> None:
    async with raw_session() as (session, peer):
        stream = await session.open_stream()
        await stream.send_all(b"req")
        assert await peer.read_frame() == (FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0, b"")
        assert await peer.read_frame() == (FrameType.DATA, 0, 1, 3, b"req")
        await peer.send(
            frame(FrameType.DATA, Flag.ACK, 1, 4, b"resp"),
            frame(FrameType.GO_AWAY, 0, 0, GoAwayCode.NORMAL),
        )
        assert await stream.receive_some() == b"resp"
        with pytest.raises(RemoteGoAway) as info:
            await session.open_stream()
        assert info.value.code == 0
        assert isinstance(info.value, ConnectionClosedError)
        assert session.remote_goaway == 0
        assert not session.is_closed
        await stream.send_all(b"more")
        assert await peer.read_frame() == (FrameType.DATA, 0, 1, 4, b"more")


async def test_aclose_sends_goaway_normal_then_closes() -> None:
    async with raw_session() as (session, peer):
        await session.aclose()
        assert session.closed_reason is CloseReason.LOCAL
        assert session.error is None
        assert await peer.read_until_eof() == [(FrameType.GO_AWAY, 0, 0, 0, b"")]
        with pytest.raises(ConnectionClosedError):
            await session.open_stream()
        with pytest.raises(ConnectionClosedError):
            await session.accept_stream()
        with pytest.raises(ConnectionClosedError):
            await session.ping()


async def test_keepalive_timeout_closes_the_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = YamuxConfig(keepalive_interval=30.0, ping_timeout=10.0, measure_rtt=False)
    async with raw_session(config=config) as (session, peer):
        start = trio.current_time()
        with pytest.raises(ConnectionClosedError):
            await session.accept_stream()
        assert session.closed_reason is CloseReason.KEEPALIVE_TIMEOUT
        assert isinstance(session.error, KeepAliveTimeout)
        assert trio.current_time() - start == pytest.approx(40.0)
        frames = await peer.read_until_eof()
        assert [f[:2] for f in frames] == [(FrameType.PING, Flag.SYN)]


async def test_keepalive_keeps_an_answering_session_alive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = YamuxConfig(keepalive_interval=30.0, ping_timeout=10.0)
    async with session_pair(config, config, deadline=10_000) as (client, server):
        await trio.sleep(1000)  # virtual time: ~33 keep-alive rounds each way
        assert not client.is_closed
        assert not server.is_closed
        assert client.rtt is not None


# -- resets and ends --------------------------------------------------------------------------


@pytest.mark.parametrize("resetter", ["client", "server"])
async def test_reset_both_ways(resetter: str) -> None:
    async with session_pair(QUIET, QUIET) as (client, server):
        out = await client.open_stream()
        await out.send_all(b"x")
        inp = await server.accept_stream()
        assert await inp.receive_some() == b"x"
        local, remote = (out, inp) if resetter == "client" else (inp, out)
        await local.reset()
        with pytest.raises(StreamReset) as info:
            await local.receive_some()
        assert not info.value.by_remote
        with pytest.raises(StreamReset):
            await local.send_all(b"y")
        with pytest.raises(StreamReset) as info:
            await remote.receive_some()
        assert info.value.by_remote
        assert isinstance(info.value, trio.BrokenResourceError)
        with pytest.raises(StreamReset):
            await remote.send_all(b"y")
        await trio.testing.wait_all_tasks_blocked()
        assert client.num_streams == server.num_streams == 0


async def test_reads_after_rst_raise_even_with_buffered_data_and_code_is_reported() -> None:
    async with raw_session(is_initiator=False) as (session, peer):
        # Before the application accepts it, a reset stream is simply dropped.
        await peer.send(
            frame(FrameType.DATA, Flag.SYN, 3, 4, b"gone"),
            frame(FrameType.WINDOW_UPDATE, Flag.RST, 3, 0),
        )
        await peer.send(frame(FrameType.DATA, Flag.SYN, 1, 5, b"lost!"))
        stream = await session.accept_stream()
        await peer.send(frame(FrameType.WINDOW_UPDATE, Flag.RST, 1, 0x2A))
        await trio.testing.wait_all_tasks_blocked()
        assert stream.buffered_bytes == 0
        with pytest.raises(StreamReset, match="error code 42"):
            await stream.receive_some()
        assert not session.is_closed


async def test_rst_after_fin_keeps_the_received_bytes() -> None:
    async with raw_session(is_initiator=False) as (session, peer):
        await peer.send(frame(FrameType.DATA, Flag.SYN | Flag.FIN, 1, 4, b"kept"))
        stream = await session.accept_stream()
        await peer.send(frame(FrameType.WINDOW_UPDATE, Flag.RST, 1, 0))
        await trio.testing.wait_all_tasks_blocked()
        assert await read_all(stream) == b"kept"
        with pytest.raises(StreamReset):
            await stream.send_all(b"the peer reset its side")


async def test_stream_aclose_sends_fin_and_answers_later_data_with_rst() -> None:
    async with raw_session(is_initiator=False) as (session, peer):
        await peer.send(frame(FrameType.DATA, Flag.SYN, 1, 3, b"abc"))
        stream = await session.accept_stream()
        assert await peer.read_frame() == (FrameType.WINDOW_UPDATE, Flag.ACK, 1, 0, b"")
        await stream.aclose()  # "abc" was never read
        assert await peer.read_frame() == (FrameType.WINDOW_UPDATE, Flag.FIN, 1, 0, b"")
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_some()
        await peer.send(frame(FrameType.DATA, 0, 1, 3, b"def"))
        assert await peer.read_frame() == (FrameType.WINDOW_UPDATE, Flag.RST, 1, 0, b"")
        assert session.num_streams == 0


async def test_bare_eof_ends_the_session_normally() -> None:
    async with raw_session(is_initiator=False) as (session, peer):
        await peer.send(
            frame(FrameType.DATA, Flag.SYN | Flag.FIN, 1, 4, b"done"),
            frame(FrameType.DATA, Flag.SYN, 3, 4, b"half"),
        )
        finished = await session.accept_stream()
        unfinished = await session.accept_stream()
        await peer.stream.aclose()
        with pytest.raises(ConnectionClosedError):
            await session.accept_stream()
        assert session.closed_reason is CloseReason.REMOTE_EOF
        assert session.error is None
        assert session.num_streams == 0
        # FIN arrived before the end: its bytes and EOF are still delivered.
        assert await read_all(finished) == b"done"
        with pytest.raises(StreamReset, match="closed the connection"):
            await unfinished.receive_some()
        with pytest.raises(StreamReset):
            await finished.send_all(b"too late")


@pytest.mark.parametrize(
    ("garbage", "match"),
    [
        (encode_header(FrameType.DATA, Flag.SYN, 1, INITIAL_WINDOW + 1), "receive window"),
        (b"\x01" + bytes(11), "version"),
        (bytes([0, 9]) + bytes(10), "type"),
        (frame(FrameType.WINDOW_UPDATE, Flag.SYN, 2, 0), "parity"),
        (frame(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0) * 2, "duplicate"),
    ],
)
async def test_protocol_error_closes_with_goaway_and_run_returns(
    garbage: bytes, match: str
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    session = YamuxSession(ours, is_initiator=False, config=QUIET)
    peer = RawPeer(theirs)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(session.run)
            await peer.send(garbage)
            frames = await peer.read_until_eof()
    # run() returned by itself: the nursery exited without an error or a cancel.
    assert session.closed_reason is CloseReason.PROTOCOL_ERROR
    assert isinstance(session.error, YamuxProtocolError)
    assert match in str(session.error)
    assert frames[-1] == (FrameType.GO_AWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR, b"")


async def test_transport_failure_is_recorded_not_raised() -> None:
    ours, _ = trio.testing.memory_stream_pair()
    session = YamuxSession(ours, is_initiator=True, config=QUIET)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.run)
        stream = await session.open_stream()
        await trio.aclose_forcefully(ours)
    assert session.closed_reason is CloseReason.TRANSPORT_ERROR
    assert isinstance(session.error, trio.ClosedResourceError)
    with pytest.raises(StreamReset):
        await stream.receive_some()


async def test_open_yamux_session_context_manager() -> None:
    client_raw, server_raw = trio.testing.memory_stream_pair()
    async with (
        open_yamux_session(client_raw, is_initiator=True) as client,
        open_yamux_session(server_raw, is_initiator=False) as server,
    ):
        out = await server.open_stream()
        assert out.stream_id == 2
        await out.send_all(b"even IDs for the responder")
        await out.send_eof()
        assert await read_all(await client.accept_stream()) == b"even IDs for the responder"
    # The server's block exits first: it closes locally, the client then sees the EOF.
    assert server.closed_reason is CloseReason.LOCAL
    assert client.closed_reason is CloseReason.REMOTE_EOF


async def test_run_only_once() -> None:
    async with session_pair(QUIET, QUIET) as (client, _):
        with pytest.raises(Exception, match="only be called once"):
            await client.run()


async def test_receive_some_joins_queued_frames_up_to_max_bytes() -> None:
    config = YamuxConfig(max_frame_payload=1000, measure_rtt=False, keepalive_interval=None)
    async with session_pair(config, config) as (client, server):
        out = await client.open_stream()
        data = pattern(7, 5500)  # six frames: 5 x 1000 + 500
        await out.send_all(data)
        await out.send_eof()
        inp = await server.accept_stream()
        await trio.testing.wait_all_tasks_blocked()
        assert inp.buffered_bytes == 5500
        assert await inp.receive_some(300) == data[:300]  # part of the first frame
        assert await inp.receive_some(2500) == data[300:2800]  # joins into the fourth frame
        assert await inp.receive_some(200) == data[2800:3000]
        assert await inp.receive_some() == data[3000:]  # everything else, joined
        assert await inp.receive_some() == b""
        assert inp.buffered_bytes == 0


@pytest.mark.parametrize("garbage", [b"\x01" + bytes(11), bytes([0, 9]) + bytes(10)])
async def test_goaway_is_flushed_even_when_the_owner_cancels_at_once(garbage: bytes) -> None:
    # The connection that owns the session cancels its nursery as soon as accept_stream()
    # says the session is over. The GoAway telling the peer why must still go out (the
    # hostile-peer tier found it lost whenever the owner's cancel came first).
    # A real socket pair: a small write completes at once, as on a connection.
    a, b = trio.socket.socketpair()
    ours, theirs = trio.SocketStream(a), trio.SocketStream(b)
    session = YamuxSession(ours, is_initiator=False, config=QUIET)
    peer = RawPeer(theirs)

    async def owner(nursery: trio.Nursery) -> None:
        with pytest.raises(ConnectionClosedError):
            await session.accept_stream()
        nursery.cancel_scope.cancel()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(session.run)
            nursery.start_soon(owner, nursery)
            await trio.testing.wait_all_tasks_blocked()
            await peer.send(garbage)
        # Read what the session wrote before it closed (the owner cancelled everything).
        frames = await peer.read_until_eof()
    assert session.closed_reason is CloseReason.PROTOCOL_ERROR
    assert frames[-1] == (FrameType.GO_AWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR, b"")


# -- when a stream is finished ----------------------------------------------------------------


class Finished:
    """Records ``call_when_finished`` callbacks and lets a test wait for one."""

    def __init__(self) -> None:
        self.streams: list[YamuxStream] = []
        self.event = trio.Event()

    def __call__(self, stream: YamuxStream) -> None:
        self.streams.append(stream)
        self.event.set()


async def test_stream_is_finished_once_both_fins_crossed() -> None:
    async with session_pair(QUIET, QUIET) as (client, server):
        ours = await client.open_stream()
        await ours.send_all(b"x")
        theirs = await server.accept_stream()
        ours_done, theirs_done = Finished(), Finished()
        ours.call_when_finished(ours_done)
        theirs.call_when_finished(theirs_done)
        await ours.send_eof()
        assert await read_all(theirs) == b"x"
        # Half-closed is not finished: the server may still answer.
        assert not theirs.is_finished
        assert not ours.is_finished
        await theirs.send_all(b"answer")
        await theirs.send_eof()
        await theirs_done.event.wait()
        assert await read_all(ours) == b"answer"
        await ours_done.event.wait()
        assert ours_done.streams == [ours]
        assert theirs_done.streams == [theirs]
        assert ours.is_finished
        assert theirs.is_finished
        assert client.num_streams == server.num_streams == 0


async def test_stream_closed_locally_is_finished_and_forgotten_when_the_peers_fin_arrives() -> None:
    # We close first (aclose: FIN, stop reading); the peer's FIN comes later. The session
    # used to keep the stream's record forever in that order (a leak per ping we sent, and
    # per identify we answered); now the stream is finished and dropped.
    async with session_pair(QUIET, QUIET) as (client, server):
        ours = await client.open_stream()
        await ours.send_all(b"x")
        theirs = await server.accept_stream()
        done = Finished()
        ours.call_when_finished(done)
        await ours.aclose()
        assert not ours.is_finished  # the peer has not finished sending
        assert await read_all(theirs) == b"x"
        await theirs.aclose()
        await done.event.wait()
        assert ours.is_finished
        assert client._streams == {}  # the session's own table
        assert client.num_streams == server.num_streams == 0


async def test_reset_finishes_the_stream_on_both_sides() -> None:
    async with session_pair(QUIET, QUIET) as (client, server):
        ours = await client.open_stream()
        await ours.send_all(b"x")
        theirs = await server.accept_stream()
        ours_done, theirs_done = Finished(), Finished()
        ours.call_when_finished(ours_done)
        theirs.call_when_finished(theirs_done)
        await ours.reset()
        assert ours.is_finished  # at once: a local reset needs no answer
        await theirs_done.event.wait()
        assert theirs.is_finished
        # Registering after the fact calls back at once.
        late = Finished()
        theirs.call_when_finished(late)
        assert late.streams == [theirs]


async def test_end_of_session_finishes_every_stream() -> None:
    async with session_pair(QUIET, QUIET) as (client, server):
        streams = [await client.open_stream() for _ in range(3)]
        done = Finished()
        for stream in streams:
            stream.call_when_finished(done)
        for _ in streams:
            await server.accept_stream()
        await server.aclose()
        await done.event.wait()
        # All at once: the session ends every stream in one step.
        assert sorted(s.stream_id for s in done.streams) == [1, 3, 5]
        assert all(s.is_finished for s in streams)
