"""Hold N idle libp2p connections to a perf server, to measure memory per connection.

    python benchmarks/hold_conns.py --server MA/p2p/ID --connections N

Protocol on stdin/stdout (one JSON object per line), so the caller can measure the server
between the steps:

1. warm up: one connection and a 1-byte perf round trip, then close it (every code path has
   run once, on both sides); print ``{"event": "warm", "rss": BYTES}``;
2. wait for a line on stdin, then open N connections, each with a 1-byte perf round trip, and
   keep them open and idle; print ``{"event": "ready", "connections": N, "rss": BYTES}``;
3. exit when stdin closes (or on SIGTERM/SIGINT).

RSS is this process's resident set (``VmRSS``), read after a ``gc.collect()``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from libp2p import generate_ed25519, perf  # noqa: E402
from libp2p.network.connection import Connection  # noqa: E402
from libp2p.perf.cli import open_node  # noqa: E402


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process), from /proc."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/<pid>/status")


def _emit(obj: dict[str, object]) -> None:
    print(json.dumps(obj), flush=True)


async def _round_trip(conn: Connection) -> None:
    stream = await conn.new_stream(perf.PROTOCOL_ID)
    await perf.perf(stream, upload=1, download=1)
    await stream.aclose()


async def main_async(server: str, count: int) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_node(generate_ed25519()) as node, trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            warm = await node.swarm.dial(server)
            await _round_trip(warm)
            await warm.aclose()
            gc.collect()
            _emit({"event": "warm", "rss": rss_bytes()})
            line = b""
            while not line.endswith(b"\n"):
                chunk = await stdin.receive_some(1)
                if not chunk:
                    return
                line += chunk
            conns = []
            for _ in range(count):
                conn = await node.swarm.dial(server)
                await _round_trip(conn)
                conns.append(conn)
            gc.collect()
            _emit({"event": "ready", "connections": len(conns), "rss": rss_bytes()})
            while await stdin.receive_some(1024):
                pass
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, metavar="MA")
    parser.add_argument("--connections", type=int, default=200, metavar="N")
    args = parser.parse_args()
    trio.run(main_async, args.server, args.connections)


if __name__ == "__main__":
    main()
