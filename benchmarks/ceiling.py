"""The throughput ceiling for a Python libp2p: trio TCP + ChaCha20-Poly1305 in Noise-sized frames.

The same exchange as ``/perf/1.0.0`` (u64be download size, upload to EOF, download to EOF), with
every byte after the size header carried in Noise transport frames -- u16be length, then at most
65535 bytes of ChaCha20-Poly1305 ciphertext, nonces counting up from zero -- encrypted and
decrypted with ``cryptography`` straight into preallocated buffers, written and read in large
chunks. There is no handshake (the key is fixed), no multiplexer and no protocol negotiation:
whatever libp2p adds on top of this costs throughput, so this is what our stack can aim for.

    python benchmarks/ceiling.py server [--listen HOST:PORT]
        prints {"event": "ready", "addr": "HOST:PORT"}; serves until SIGTERM/SIGINT (exit 0)
    python benchmarks/ceiling.py client --server HOST:PORT --upload-bytes U --download-bytes D
        [--iterations K]
        prints one JSON line per iteration, as ``python -m libp2p.perf client`` does
"""

from __future__ import annotations

import argparse
import json
import signal
import struct
import sys

import trio
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

KEY = bytes(range(32))
TAG = 16
MAX_FRAME = 65535
MAX_PLAINTEXT = MAX_FRAME - TAG
#: Frames encrypted into one buffer per send_all (about 1 MiB, as our Noise session batches).
BATCH_FRAMES = 16
READ_SIZE = 256 * 1024

_U64 = struct.Struct(">Q")
_NONCE = struct.Struct("<4xQ")
_ZEROS = bytes(BATCH_FRAMES * MAX_PLAINTEXT)


class FrameSender:
    """Encrypts zeros into Noise frames, a batch at a time."""

    def __init__(self, stream: trio.abc.SendStream) -> None:
        self.stream = stream
        self.aead = ChaCha20Poly1305(KEY)
        self.nonce = 0
        self.buffer = bytearray(BATCH_FRAMES * (2 + MAX_FRAME))

    async def send_zeros(self, count: int) -> None:
        plain = memoryview(_ZEROS)
        out = memoryview(self.buffer)
        encrypt_into = self.aead.encrypt_into
        while count > 0:
            pos = 0
            for _ in range(BATCH_FRAMES):
                if count <= 0:
                    break
                n = min(count, MAX_PLAINTEXT)
                length = n + TAG
                out[pos] = length >> 8
                out[pos + 1] = length & 0xFF
                encrypt_into(
                    _NONCE.pack(self.nonce), plain[:n], None, out[pos + 2 : pos + 2 + length]
                )
                self.nonce += 1
                pos += 2 + length
                count -= n
            await self.stream.send_all(out[:pos])


class FrameReceiver:
    """Decrypts Noise frames until EOF and counts the plaintext bytes.

    Complete frames are decrypted straight out of the received chunk; only a frame split
    across two reads is copied aside, and completed with just its missing bytes.
    """

    def __init__(self, stream: trio.abc.ReceiveStream, initial: bytes = b"") -> None:
        self.stream = stream
        self.aead = ChaCha20Poly1305(KEY)
        self.nonce = 0
        self.initial = initial
        self.partial = bytearray()
        self.plain = memoryview(bytearray(MAX_PLAINTEXT))
        self.total = 0

    def _decrypt(self, frame: memoryview) -> None:
        size = len(frame) - TAG
        self.aead.decrypt_into(_NONCE.pack(self.nonce), frame, None, self.plain[:size])
        self.nonce += 1
        self.total += size

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos, end = 0, len(view)
        partial = self.partial
        if partial:
            if len(partial) < 2:
                pos = min(2 - len(partial), end)
                partial += view[:pos]
                if len(partial) < 2:
                    return
            missing = 2 + ((partial[0] << 8) | partial[1]) - len(partial)
            take = min(missing, end - pos)
            partial += view[pos : pos + take]
            pos += take
            if take < missing:
                return
            self._decrypt(memoryview(partial)[2:])
            self.partial = bytearray()
        while end - pos >= 2:
            frame_end = pos + 2 + ((view[pos] << 8) | view[pos + 1])
            if frame_end > end:
                break
            self._decrypt(view[pos + 2 : frame_end])
            pos = frame_end
        if pos < end:
            self.partial = bytearray(view[pos:])

    async def receive_all(self) -> int:
        if self.initial:
            self.feed(self.initial)
        while chunk := await self.stream.receive_some(READ_SIZE):
            self.feed(chunk)
        if self.partial:
            raise RuntimeError(f"EOF inside a frame ({len(self.partial)} bytes of it received)")
        return self.total


async def _read_header(stream: trio.abc.ReceiveStream) -> tuple[int, bytes]:
    data = b""
    while len(data) < 8:
        chunk = await stream.receive_some(READ_SIZE)
        if not chunk:
            raise RuntimeError("EOF before the size header")
        data += chunk
    return _U64.unpack(data[:8])[0], data[8:]


async def _serve_one(stream: trio.SocketStream) -> None:
    async with stream:
        wanted, rest = await _read_header(stream)
        await FrameReceiver(stream, rest).receive_all()
        await FrameSender(stream).send_zeros(wanted)


async def run_server(host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound_host, bound_port = listeners[0].socket.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, _serve_one, listeners)
            print(json.dumps({"event": "ready", "addr": f"{bound_host}:{bound_port}"}), flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


async def run_client(server: str, upload: int, download: int, iterations: int) -> None:
    host, port = server.rsplit(":", 1)
    for iteration in range(iterations):
        start = trio.current_time()
        stream = await trio.open_tcp_stream(host, int(port))
        connected = trio.current_time()
        async with stream:
            await stream.send_all(_U64.pack(download))
            await FrameSender(stream).send_zeros(upload)
            await stream.send_eof()
            uploaded = trio.current_time()
            received = await FrameReceiver(stream).receive_all()
            end = trio.current_time()
        if received != download:
            raise RuntimeError(f"received {received} bytes, asked for {download}")
        print(
            json.dumps(
                {
                    "event": "result",
                    "iteration": iteration,
                    "time_seconds": end - start,
                    "connect_seconds": connected - start,
                    "upload_bytes": upload,
                    "download_bytes": received,
                    "upload_seconds": uploaded - connected,
                    "download_seconds": end - uploaded,
                }
            ),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server")
    server.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    client = sub.add_parser("client")
    client.add_argument("--server", required=True, metavar="HOST:PORT")
    client.add_argument("--upload-bytes", type=int, required=True)
    client.add_argument("--download-bytes", type=int, required=True)
    client.add_argument("--iterations", type=int, default=1)
    args = parser.parse_args()
    if args.command == "server":
        host, port = args.listen.rsplit(":", 1)
        trio.run(run_server, host, int(port))
    else:
        trio.run(run_client, args.server, args.upload_bytes, args.download_bytes, args.iterations)
    sys.exit(0)


if __name__ == "__main__":
    main()
