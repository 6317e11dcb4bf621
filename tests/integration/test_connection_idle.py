"""Which streams keep a connection in use, and closing it once idle (``wait_idle``,
``close_when_idle``): two swarms over a memory stream, under an autojump MockClock, so that
grace periods are measured exactly and without waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from libp2p import ping
from libp2p.crypto.keys import generate_ed25519
from libp2p.exceptions import StreamReset
from libp2p.network.connection import NEGOTIATE_TIMEOUT, Connection, Direction, NetStream
from libp2p.network.swarm import Swarm
from tests.interop.interop_protocols import ECHO, echo_handler

GRACE = 2.0
#: Answers once the opener has closed its side, whatever the opener does then.
LATE = "/test/late-answer/1.0.0"


async def late_answer(stream: NetStream) -> None:
    while await stream.receive_some():
        pass
    await stream.send_all(b"too late")  # the opener closed with aclose(): it will reset this
    await stream.receive_some()  # raises StreamReset once the reset arrives


@asynccontextmanager
async def connection_pair(
    *, ping_background: bool = True
) -> AsyncIterator[tuple[Connection, Connection]]:
    """A connection between two swarms that serve echo and ping (a background protocol,
    unless ``ping_background`` is false: then marked and unmarked again)."""
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        for swarm in (a, b):
            swarm.set_stream_handler(ECHO, echo_handler)
            swarm.set_stream_handler(LATE, late_answer)
            swarm.set_stream_handler(ping.PROTOCOL_ID, ping.handle_ping)
            swarm.set_background(ping.PROTOCOL_ID)
            if not ping_background:
                swarm.set_background(ping.PROTOCOL_ID, False)
            assert (ping.PROTOCOL_ID in swarm.background_protocols) is ping_background
        left, right = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: b.upgrade_stream(right, initiator=False, direction=Direction.INBOUND)
            )
            ours = await a.upgrade_stream(left, initiator=True, direction=Direction.OUTBOUND)
        (theirs,) = b.connections_to(a.peer_id)
        with trio.fail_after(600):  # virtual seconds: a bug fails the test, it never hangs
            yield ours, theirs


async def echo_once(stream: NetStream, data: bytes) -> bytes:
    await stream.send_all(data)
    got = b""
    while len(got) < len(data):
        got += await stream.receive_some()
    return got


async def finish(stream: NetStream) -> None:
    """End an echo stream cleanly: FIN, the peer's FIN back, then close."""
    await stream.send_eof()
    assert await stream.receive_some() == b""
    await stream.aclose()


async def test_a_stream_keeps_both_ends_busy_until_it_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection_pair() as (ours, theirs):
        assert ours.active_streams == theirs.active_streams == 0
        stream = await ours.new_stream(ECHO)
        assert ours.active_streams == 1
        assert await echo_once(stream, b"before") == b"before"
        assert theirs.active_streams == 1  # the peer served it, so it has accepted it
        idle_at: dict[str, float] = {}

        async def wait(conn: Connection, name: str) -> None:
            await conn.wait_idle(GRACE)
            idle_at[name] = trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, ours, "ours")
            nursery.start_soon(wait, theirs, "theirs")
            # The duration under test: far longer than the grace, with the stream open.
            await trio.sleep(10 * GRACE)
            assert idle_at == {}
            assert await echo_once(stream, b"still there") == b"still there"
            await finish(stream)
            ended = trio.current_time()
        assert ours.active_streams == theirs.active_streams == 0
        # Idle exactly one grace after the stream ended, on both sides; and still open.
        assert idle_at == {"ours": ended + GRACE, "theirs": ended + GRACE}
        assert not ours.is_closed
        assert not theirs.is_closed


async def test_close_when_idle_waits_for_a_stream_the_peer_opens_meanwhile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection_pair() as (ours, theirs):
        ours.close_when_idle(GRACE)
        await trio.sleep(GRACE / 2)
        # The peer still uses the connection: its new stream is served and keeps it open.
        stream = await theirs.new_stream(ECHO)
        assert await echo_once(stream, b"from the peer") == b"from the peer"
        assert ours.active_streams == 1
        await trio.sleep(5 * GRACE)
        assert not ours.is_closed
        assert await echo_once(stream, b"later") == b"later"
        await finish(stream)
        ended = trio.current_time()
        await ours.wait_closed()
        assert trio.current_time() == ended + GRACE
        await theirs.wait_closed()  # the peer saw the close (GoAway)


async def test_close_when_idle_closes_after_the_grace_with_no_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection_pair() as (ours, _theirs):
        start = trio.current_time()
        ours.close_when_idle(GRACE)
        ours.close_when_idle(GRACE / 4)  # a later call replaces the grace
        await ours.wait_closed()
        assert trio.current_time() == start + GRACE / 4


async def test_background_streams_do_not_keep_a_connection_busy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection_pair() as (ours, theirs):
        pinging = await ours.new_stream(ping.PROTOCOL_ID)
        await ping.ping(pinging)  # open and served on both sides, and left open
        assert ours.active_streams == theirs.active_streams == 0
        start = trio.current_time()
        ours.close_when_idle(GRACE)
        await ours.wait_closed()
        assert trio.current_time() == start + GRACE
        with pytest.raises(trio.BrokenResourceError):
            await ping.ping(pinging)


async def test_a_stream_we_closed_stops_counting_before_the_peers_fin(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection_pair() as (ours, theirs):
        stream = await ours.new_stream(LATE)
        await stream.send_all(b"hello")
        await stream.aclose()  # FIN, and we read nothing more
        assert ours.active_streams == 0
        # The peer's stream stays in use until its late answer is reset by our side.
        await theirs.wait_idle()
        assert theirs.active_streams == 0


async def test_a_connection_the_peer_closes_ends_the_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection_pair() as (ours, theirs):
        stream = await ours.new_stream(ECHO)
        assert await echo_once(stream, b"x") == b"x"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ours.wait_idle, GRACE)
            await theirs.aclose()
        assert ours.is_closed
        with pytest.raises(StreamReset):
            await stream.receive_some()


async def test_an_inbound_stream_counts_while_it_negotiates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection_pair() as (ours, theirs):
        # The peer opens a stream and has not named its protocol yet: it may be the peer's
        # next application stream, so it counts until the negotiation times out.
        await theirs._up.muxer.open_stream()  # the muxer's own stream: the SYN, no protocol
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        assert ours.active_streams == 1
        await ours.wait_idle()
        assert trio.current_time() == start + NEGOTIATE_TIMEOUT
        assert ours.active_streams == 0


async def test_a_protocol_can_stop_being_background(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with connection_pair(ping_background=False) as (ours, theirs):
        pinging = await ours.new_stream(ping.PROTOCOL_ID)
        await ping.ping(pinging)
        assert ours.active_streams == theirs.active_streams == 1
