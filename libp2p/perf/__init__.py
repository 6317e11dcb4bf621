"""Perf (``/perf/1.0.0``): measure throughput between two peers.

The client opens a stream and writes an 8-byte big-endian unsigned integer: how many bytes it
wants back. It then uploads any number of bytes and closes its write side. The server reads the
header, drains the upload to EOF, writes the requested number of bytes and closes. Upload and
download are timed by the client.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import trio

from ..exceptions import RemoteProtocolError
from ..io import BufferedStream

__all__ = ["PROTOCOL_ID", "PerfResult", "handle_perf", "perf"]

#: The perf protocol ID.
PROTOCOL_ID = "/perf/1.0.0"

_U64 = struct.Struct(">Q")
_BLOCK = bytes(256 * 1024)
_READ = 256 * 1024


@dataclass(frozen=True, slots=True)
class PerfResult:
    """Outcome of one perf run, as measured by the client."""

    uploaded: int
    downloaded: int
    upload_seconds: float
    download_seconds: float

    @property
    def upload_bps(self) -> float:
        """Upload throughput in bytes per second."""
        return self.uploaded / self.upload_seconds if self.upload_seconds else 0.0

    @property
    def download_bps(self) -> float:
        """Download throughput in bytes per second."""
        return self.downloaded / self.download_seconds if self.download_seconds else 0.0


async def _send_zeros(stream: trio.abc.SendStream, count: int) -> None:
    view = memoryview(_BLOCK)
    while count > 0:
        n = min(count, len(_BLOCK))
        await stream.send_all(view[:n])
        count -= n


async def _drain(stream: trio.abc.ReceiveStream) -> int:
    total = 0
    while True:
        chunk = await stream.receive_some(_READ)
        if not chunk:
            return total
        total += len(chunk)


async def handle_perf(stream: trio.abc.HalfCloseableStream) -> None:
    """Serve one perf request on ``stream``."""
    reader = BufferedStream.wrap(stream)
    try:
        (wanted,) = _U64.unpack(await reader.read_exactly(8))
        await _drain(reader)
        await _send_zeros(reader, wanted)
    finally:
        await reader.aclose()


async def perf(stream: trio.abc.HalfCloseableStream, upload: int, download: int) -> PerfResult:
    """Run one perf request: upload ``upload`` bytes, then receive ``download`` bytes."""
    start = trio.current_time()
    await stream.send_all(_U64.pack(download))
    await _send_zeros(stream, upload)
    await stream.send_eof()
    mid = trio.current_time()
    received = await _drain(stream)
    end = trio.current_time()
    if received != download:
        raise RemoteProtocolError(f"perf server sent {received} bytes, {download} were asked")
    return PerfResult(upload, received, mid - start, end - mid)
