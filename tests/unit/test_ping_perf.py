"""Ping and perf over trio memory streams, with a mock clock for exact RTTs."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from libp2p import perf, ping
from libp2p.exceptions import RemoteProtocolError


async def test_ping_echo_and_close() -> None:
    a, b = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(ping.handle_ping, b)
        rtts = await ping.ping(a, count=5)
        assert len(rtts) == 5
        assert all(r >= 0 for r in rtts)
        await a.send_eof()
        # The listener closes after our EOF.
        assert await a.receive_some() == b""


async def test_ping_rtt_follows_clock(autojump_clock: trio.testing.MockClock) -> None:
    a, b = trio.testing.memory_stream_pair()

    async def slow_echo() -> None:
        data = await b.receive_some(32)
        await trio.sleep(0.25)
        await b.send_all(data)

    async with trio.open_nursery() as n:
        n.start_soon(slow_echo)
        assert await ping.ping(a) == [pytest.approx(0.25)]


async def test_ping_bad_echo() -> None:
    a, b = trio.testing.memory_stream_pair()

    async def liar() -> None:
        await b.receive_some(32)
        await b.send_all(bytes(32))

    async with trio.open_nursery() as n:
        n.start_soon(liar)
        with pytest.raises(RemoteProtocolError, match="match"):
            await ping.ping(a)


async def test_ping_peer_closes() -> None:
    a, b = trio.testing.memory_stream_pair()
    await b.send_eof()
    with pytest.raises(RemoteProtocolError, match="closed"):
        await ping.ping(a)


async def test_perf_roundtrip() -> None:
    a, b = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(perf.handle_perf, b)
        result = await perf.perf(a, upload=3_000_000, download=5_000_001)
    assert result.uploaded == 3_000_000
    assert result.downloaded == 5_000_001


async def test_perf_short_download_detected() -> None:
    a, b = trio.testing.memory_stream_pair()

    async def short_server() -> None:
        await b.receive_some(8)
        await b.send_all(b"x" * 10)
        await b.aclose()

    async with trio.open_nursery() as n:
        n.start_soon(short_server)
        with pytest.raises(RemoteProtocolError, match="10 bytes"):
            await perf.perf(a, upload=0, download=100)
