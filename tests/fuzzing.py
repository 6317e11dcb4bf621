"""Helpers shared by the hypothesis tests of decoders and stream handlers."""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import strategies as st

from libp2p.peer.id import PeerID


def mutate(draw: st.DrawFn, data: bytes, max_edits: int = 4) -> bytes:
    """``data`` with up to ``max_edits`` random byte flips, insertions and deletions."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, max_edits))):
        if not buf:
            buf += draw(st.binary(min_size=1, max_size=4))
            continue
        pos = draw(st.integers(0, len(buf) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            buf[pos] ^= draw(st.integers(1, 255))
        elif action == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del buf[pos : pos + draw(st.integers(1, 8))]
    return bytes(buf)


class FakeStream(trio.abc.HalfCloseableStream):
    """A NetStream stand-in over a trio memory stream, on a fake ``connection`` (anything
    with the attributes the handler under test reads); records whether it was reset."""

    def __init__(self, inner: trio.abc.HalfCloseableStream, connection: Any) -> None:
        self._inner = inner
        self.connection = connection
        self.was_reset = False

    @property
    def remote_peer(self) -> PeerID:
        peer: PeerID = self.connection.remote_peer
        return peer

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def reset(self) -> None:
        self.was_reset = True
        await trio.aclose_forcefully(self._inner)
