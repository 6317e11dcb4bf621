"""Our side of the js peer's test protocols (echo, sink, source), for interop tests."""

from __future__ import annotations

import hashlib
import struct

import trio

from libp2p.network.connection import NetStream

ECHO = "/interop/echo/1.0.0"
SINK = "/interop/sink/1.0.0"
SOURCE = "/interop/source/1.0.0"

_U64 = struct.Struct(">Q")


async def echo_handler(stream: NetStream) -> None:
    """Echo every byte until the remote half-closes, then half-close and finish."""
    while chunk := await stream.receive_some(65536):
        await stream.send_all(chunk)
    await stream.send_eof()
    await stream.aclose()


async def sink_handler(stream: NetStream) -> None:
    """Read to EOF, then answer with the byte count (u64 BE) and SHA-256 of what arrived."""
    digest = hashlib.sha256()
    total = 0
    while chunk := await stream.receive_some(65536):
        digest.update(chunk)
        total += len(chunk)
    await stream.send_all(_U64.pack(total) + digest.digest())
    await stream.aclose()


async def echo_roundtrip(stream: trio.abc.HalfCloseableStream, data: bytes) -> bytes:
    """Write ``data`` while reading the echo concurrently; return what came back."""
    received = bytearray()

    async def reader() -> None:
        while chunk := await stream.receive_some(65536):
            received.extend(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        view = memoryview(data)
        for i in range(0, len(data), 100_000):
            await stream.send_all(view[i : i + 100_000])
        await stream.send_eof()
    return bytes(received)
