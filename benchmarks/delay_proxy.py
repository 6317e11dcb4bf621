"""A user-space TCP proxy that adds a fixed round-trip time, for latency benchmarks on loopback.

This kernel has no ``sch_netem``, so delay is added here: every chunk read from one side is
written to the other side ``rtt/2`` later, in order, in both directions. Reading never waits
for writing (each direction is a reader task and a writer task joined by a queue), so the
delay does not throttle a stream that sends several chunks in a row. End of stream (FIN) is
delayed like data.

A user-space proxy cannot delay the TCP handshake: the client's ``connect()`` completes
against the proxy's own listening socket at once. With ``--handshake-rtt`` (on by default) the
first bytes from the client are held one extra RTT, which is exactly where a real handshake
would have put them when the client speaks first, as a libp2p dialer does (multistream header,
``/noise`` and the first Noise message leave as soon as ``connect()`` returns). Measured from
the start of the dial to the last byte, a client then sees the same timeline as over a real
path with that RTT.

    python benchmarks/delay_proxy.py --target HOST:PORT --rtt-ms 50 [--listen HOST:PORT]
        prints {"event": "ready", "addr": "HOST:PORT"}; runs until SIGTERM/SIGINT (exit 0)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import signal

import trio

READ_SIZE = 256 * 1024


class _DelayLine:
    """One direction: chunks (b"" for EOF) released ``delay`` seconds after they were read."""

    def __init__(self) -> None:
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.ready = trio.Event()

    def put(self, deadline: float, chunk: bytes) -> None:
        self.queue.append((deadline, chunk))
        self.ready.set()

    async def get(self) -> tuple[float, bytes]:
        while not self.queue:
            self.ready = trio.Event()
            await self.ready.wait()
        return self.queue.popleft()


async def _pump(
    source: trio.SocketStream,
    sink: trio.SocketStream,
    delay: float,
    first_extra: float,
) -> None:
    line = _DelayLine()

    async def reader() -> None:
        extra = first_extra
        while True:
            try:
                chunk = await source.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            line.put(trio.current_time() + delay + extra, chunk)
            extra = 0.0
            if not chunk:
                return

    async def writer() -> None:
        while True:
            deadline, chunk = await line.get()
            await trio.sleep_until(deadline)
            if not chunk:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await sink.send_eof()
                return
            await sink.send_all(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(writer)


class DelayProxy:
    """Forwards each accepted connection to ``target`` with ``rtt`` seconds of round trip."""

    def __init__(self, target: tuple[str, int], rtt: float, *, handshake_rtt: bool = True) -> None:
        self.target = target
        self.rtt = rtt
        self.handshake_rtt = handshake_rtt

    async def handle(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(*self.target)
        except OSError:
            await client.aclose()
            return
        half = self.rtt / 2
        first_extra = self.rtt if self.handshake_rtt else 0.0
        try:
            async with client, upstream, trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client, upstream, half, first_extra)
                nursery.start_soon(_pump, upstream, client, half, 0.0)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # one side reset the connection: drop the pair, as a router would

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            # trio.SocketStream sets TCP_NODELAY on both legs: chunks are not held back.
            nursery.start_soon(trio.serve_listeners, self.handle, listeners)
            task_status.started((bound[0], bound[1]))


def _hostport(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


async def main_async(args: argparse.Namespace) -> None:
    proxy = DelayProxy(_hostport(args.target), args.rtt_ms / 1000, handshake_rtt=args.handshake_rtt)
    host, port = _hostport(args.listen)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(proxy.serve, host, port)
            print(json.dumps({"event": "ready", "addr": f"{bound[0]}:{bound[1]}"}), flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, metavar="HOST:PORT")
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    parser.add_argument("--rtt-ms", type=float, required=True, help="added round-trip time")
    parser.add_argument(
        "--handshake-rtt",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold the client's first bytes one extra RTT for the TCP handshake (default on)",
    )
    trio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
