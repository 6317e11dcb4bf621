"""Buffered reading over any trio stream, with leftovers that survive layer hand-offs.

Every layer of the stack (multistream-select, the Noise handshake, relay hop/stop messages)
reads framed messages from a byte stream and then hands the stream to the next layer. Peers
that pipeline (lazy multistream-select, 0-RTT data after a relay STATUS) put the next layer's
bytes in the same TCP segment, so whatever a layer read past its last message must reach the
next layer. :class:`BufferedStream` keeps those bytes: it is itself a trio
``HalfCloseableStream`` that returns buffered bytes before reading from the wrapped stream, so
a layer passes the same object on and nothing is lost.

Reads go to the wrapped stream in large chunks; small framed reads are served from the buffer.
"""

from __future__ import annotations

import trio

from .exceptions import LocalUsageError, MessageTooLarge, UnexpectedEOF
from .varint import MAX_VARINT_BYTES, decode_uvarint

__all__ = ["BufferedStream"]

_READ_CHUNK = 65536


class BufferedStream(trio.abc.HalfCloseableStream):
    """A trio stream with a read buffer and framed-read helpers.

    ``send_eof`` is forwarded when the wrapped stream supports it, and raises
    :class:`trio.ClosedResourceError`-compatible errors as the wrapped stream does.
    """

    __slots__ = ("_buf", "_pos", "stream")

    def __init__(self, stream: trio.abc.Stream, initial: bytes | bytearray = b"") -> None:
        #: The wrapped stream.
        self.stream = stream
        self._buf = bytearray(initial)
        self._pos = 0

    @classmethod
    def wrap(cls, stream: trio.abc.Stream) -> BufferedStream:
        """Return ``stream`` itself when it is already buffered, otherwise wrap it."""
        if isinstance(stream, BufferedStream):
            return stream
        return cls(stream)

    # -- buffer management -------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Number of bytes read from the wrapped stream but not yet consumed."""
        return len(self._buf) - self._pos

    def unread(self, data: bytes | bytearray) -> None:
        """Put ``data`` back in front of the buffer."""
        if data:
            self._buf[self._pos : self._pos] = data

    async def wait_buffered(self, n: int) -> None:
        """Read until at least ``n`` bytes are buffered, consuming none of them.

        Safe to cancel: whatever arrived stays buffered. :class:`UnexpectedEOF` if the stream
        ends first."""
        while self.buffered < n:
            await self._fill("buffered bytes", n)

    def take_buffered(self) -> bytes:
        """Remove and return every buffered byte."""
        data = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return data

    def _consume(self, n: int) -> bytes:
        start = self._pos
        data = bytes(self._buf[start : start + n])
        self._pos = start + n
        if self._pos >= len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536:
            del self._buf[: self._pos]
            self._pos = 0
        return data

    async def _fill(self, what: str, want: int) -> None:
        chunk = await self.stream.receive_some(max(_READ_CHUNK, want - self.buffered))
        if not chunk:
            raise UnexpectedEOF(
                f"stream ended while reading {what} ({self.buffered} of {want} bytes)"
            )
        self._buf += chunk

    # -- framed reads --------------------------------------------------------------------

    async def read_exactly(self, n: int) -> bytes:
        """Read exactly ``n`` bytes; :class:`UnexpectedEOF` if the stream ends first."""
        while self.buffered < n:
            await self._fill("a fixed-size field", n)
        return self._consume(n)

    async def read_uvarint(self) -> int:
        """Read one unsigned varint."""
        while True:
            result = decode_uvarint(self._buf, self._pos)
            if result is not None:
                value, end = result
                self._consume(end - self._pos)
                return value
            await self._fill("a varint", min(self.buffered + 1, MAX_VARINT_BYTES))

    async def read_lp(self, max_size: int) -> bytes:
        """Read one uvarint-length-prefixed message of at most ``max_size`` bytes."""
        length = await self.read_uvarint()
        if length > max_size:
            raise MessageTooLarge(f"message of {length} bytes exceeds the limit of {max_size}")
        return await self.read_exactly(length)

    async def read_lp_or_eof(self, max_size: int) -> bytes | None:
        """Like :meth:`read_lp`, but return ``None`` on a clean EOF before the length prefix."""
        if not self.buffered:
            chunk = await self.stream.receive_some(_READ_CHUNK)
            if not chunk:
                return None
            self._buf += chunk
        return await self.read_lp(max_size)

    # -- trio stream interface ------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.buffered:
            n = self.buffered if max_bytes is None else min(max_bytes, self.buffered)
            return self._consume(n)
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self.stream, "send_eof", None)
        if send_eof is None:
            raise LocalUsageError("the wrapped stream cannot half-close")
        await send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()
