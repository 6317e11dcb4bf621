"""A Python perf/raw-TCP peer run as a separate process by the benchmarks.

Running the far end in its own process gives both ends a core of their own, as the js peer
has, so the comparison is fair.

    python benchmarks/py_peer.py libp2p   # prints {"peerId", "addrs"}; serves /perf/1.0.0
    python benchmarks/py_peer.py raw      # prints {"addr": "host:port"}; raw TCP perf-like server

Either exits when its standard input closes.
"""

from __future__ import annotations

import json
import struct
import sys

import trio

from libp2p import perf
from libp2p.crypto.keys import generate_ed25519
from libp2p.network.connection import NetStream
from libp2p.network.swarm import Swarm

_U64 = struct.Struct(">Q")
_BLOCK = bytes(256 * 1024)


async def _wait_stdin_closed() -> None:
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    while await stdin.receive_some(1024):
        pass


async def serve_libp2p() -> None:
    async with Swarm(generate_ed25519()) as swarm:

        async def handler(stream: NetStream) -> None:
            await perf.handle_perf(stream)

        swarm.set_stream_handler(perf.PROTOCOL_ID, handler)
        addrs = await swarm.listen("/ip4/127.0.0.1/tcp/0")
        print(
            json.dumps(
                {"peerId": str(swarm.peer_id), "addrs": [f"{a}/p2p/{swarm.peer_id}" for a in addrs]}
            ),
            flush=True,
        )
        await _wait_stdin_closed()


async def _raw_conn(stream: trio.SocketStream) -> None:
    buf = b""
    while len(buf) < 8:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        buf += chunk
    (wanted,) = _U64.unpack(buf[:8])
    while await stream.receive_some(256 * 1024):
        pass
    view = memoryview(_BLOCK)
    while wanted > 0:
        n = min(wanted, len(_BLOCK))
        await stream.send_all(view[:n])
        wanted -= n
    await stream.aclose()


async def serve_raw() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    host, port = listeners[0].socket.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, _raw_conn, listeners)
        print(json.dumps({"addr": f"{host}:{port}"}), flush=True)
        await _wait_stdin_closed()
        nursery.cancel_scope.cancel()


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "libp2p"
    trio.run(serve_libp2p if mode == "libp2p" else serve_raw)


if __name__ == "__main__":
    main()
