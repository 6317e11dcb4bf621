"""The relayed pipe turns the relay's limit cut (a reset, or go's EOF after the data limit) into
RelayLimitReached, and leaves every other reset and EOF alone (a scripted stream underneath,
time from a MockClock)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from libp2p.exceptions import StreamReset
from libp2p.io import BufferedStream
from libp2p.network.connection import ConnectionLimit
from libp2p.relay.circuit_v2.pipe import CircuitMeter, RelayedPipe
from libp2p.relay.circuit_v2.protocol import LimitKind, RelayLimitReached


class Scripted(trio.abc.HalfCloseableStream):
    """Gives ``incoming`` once, then ends as told (``"reset"``, ``"local reset"`` or
    ``"eof"``); writes succeed until ``reset_after`` bytes were written, then reset."""

    def __init__(self, incoming: bytes, end: str, reset_after: int | None = None) -> None:
        self.incoming = incoming
        self.end = end
        self.reset_after = reset_after
        self.written = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if self.incoming:
            data, self.incoming = self.incoming, b""
            return data
        if self.end == "eof":
            return b""
        raise StreamReset("reset", by_remote=self.end == "reset")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self.reset_after is not None and self.written >= self.reset_after:
            raise StreamReset("reset", by_remote=True)
        self.written += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def pipe(inner: Scripted, limit: ConnectionLimit) -> RelayedPipe:
    meter = CircuitMeter(limit, started_at=trio.current_time())
    return RelayedPipe(BufferedStream(inner), inner, meter, relay=None)


async def read_all(p: RelayedPipe) -> bytes:
    out = b""
    while chunk := await p.receive_some():
        out += chunk
    return out


DATA = ConnectionLimit(duration=None, data=100)


async def test_a_reset_after_sending_the_data_limit_is_the_data_limit() -> None:
    p = pipe(Scripted(b"", "reset", reset_after=100), DATA)
    await p.send_all(b"x" * 60)
    await p.send_all(b"x" * 40)
    with pytest.raises(RelayLimitReached) as caught:
        await p.send_all(b"x")
    assert caught.value.kind is LimitKind.DATA
    assert isinstance(caught.value.__cause__, StreamReset)


async def test_a_reset_after_receiving_the_data_limit_is_the_data_limit() -> None:
    p = pipe(Scripted(b"y" * 100, "reset"), DATA)
    with pytest.raises(RelayLimitReached):
        await read_all(p)


async def test_a_reset_below_the_limits_stays_a_reset() -> None:
    p = pipe(Scripted(b"y" * 99, "reset"), DATA)
    with pytest.raises(StreamReset) as caught:
        await read_all(p)
    assert not isinstance(caught.value, RelayLimitReached)


async def test_our_own_reset_is_never_the_relays_limit() -> None:
    p = pipe(Scripted(b"y" * 500, "local reset"), DATA)
    with pytest.raises(StreamReset) as caught:
        await read_all(p)
    assert not isinstance(caught.value, RelayLimitReached)


async def test_an_eof_after_the_data_limit_is_the_data_limit() -> None:
    # go's relay half-closes the receiving side after exactly Limit.data bytes.
    p = pipe(Scripted(b"y" * 100, "eof"), DATA)
    with pytest.raises(RelayLimitReached):
        await read_all(p)


async def test_an_eof_below_the_data_limit_is_a_clean_end() -> None:
    p = pipe(Scripted(b"y" * 99, "eof"), DATA)
    assert await read_all(p) == b"y" * 99


async def test_a_reset_at_the_duration_is_the_time_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = ConnectionLimit(duration=120, data=None)
    early = pipe(Scripted(b"", "reset"), limit)
    await trio.sleep(119.9)
    with pytest.raises(StreamReset) as caught:
        await early.receive_some()
    assert not isinstance(caught.value, RelayLimitReached)

    on_time = pipe(Scripted(b"", "reset"), limit)
    await trio.sleep(120)
    with pytest.raises(RelayLimitReached) as limited:
        await on_time.receive_some()
    assert limited.value.kind is LimitKind.DURATION
