"""``python -m libp2p.perf``: a perf server and client on the command line.

::

    python -m libp2p.perf server --listen /ip4/0.0.0.0/tcp/4001 [--key-file PATH]
    python -m libp2p.perf client --server /ip4/1.2.3.4/tcp/4001/p2p/12D3Koo... \\
        --upload-bytes U --download-bytes D [--iterations K] [--reuse-connection]

Standard output carries only JSON, one object per line; logs go to standard error.

The server prints ``{"event": "ready", "peer_id": ..., "addrs": [...]}`` once it listens
(every address with its ``/p2p/<peer id>`` suffix, ready to paste into a client) and serves
``/perf/1.0.0`` until SIGTERM or SIGINT, then exits 0.

The client prints one line per iteration::

    {"event": "result", "iteration": 0, "time_seconds": ..., "connect_seconds": ...,
     "upload_bytes": U, "download_bytes": D, "upload_seconds": ..., "download_seconds": ...}

``time_seconds`` runs from the start of the dial to the last byte received, so it includes
the TCP and security handshakes; ``connect_seconds`` is the dial alone. Each iteration dials a
new connection unless ``--reuse-connection`` is given; then only the first iteration dials and
the others report ``connect_seconds`` 0 and time from opening the stream. On failure the client
writes ``{"event": "error", ...}`` to standard error and exits 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio
from multiaddr import Multiaddr

from ..crypto import PrivateKey, generate_ed25519, load_or_create_identity
from ..exceptions import Libp2pError
from ..host import Host
from ..log import LOG_LEVELS, configure_logging
from ..network.connection import Connection
from . import PROTOCOL_ID, handle_perf, perf

__all__ = ["build_parser", "main", "run_client", "run_server"]

logger = logging.getLogger("libp2p.perf.cli")

#: Exit status of a failed client run (argparse uses 2 for bad arguments).
EXIT_FAILURE = 1


@asynccontextmanager
async def open_node(key: PrivateKey) -> AsyncIterator[Host]:
    """The one place the CLI builds its libp2p node: a :class:`~libp2p.host.Host`.

    A host, not a bare swarm, so that both ends do what any node does on a new connection
    (identify, and ping for js's connection monitor), as the js peer it is compared with does.
    """
    async with Host(key) as node:
        yield node


def _emit(obj: dict[str, Any], *, file: Any = None) -> None:
    """Write one JSON object as one line and flush it (a reader may wait for it)."""
    out = sys.stdout if file is None else file
    out.write(json.dumps(obj) + "\n")
    out.flush()


# -- server -------------------------------------------------------------------------------------


async def run_server(listen: Sequence[str], key: PrivateKey) -> None:
    """Serve ``/perf/1.0.0`` on every ``listen`` address until SIGTERM or SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_node(key) as node:
            node.set_stream_handler(PROTOCOL_ID, handle_perf)
            bound = await node.listen(*listen)
            addrs = [f"{addr}/p2p/{node.peer_id}" for addr in bound]
            _emit({"event": "ready", "peer_id": str(node.peer_id), "addrs": addrs})
            logger.info("perf server %s listening on %s", node.peer_id, " ".join(addrs))
            async for signum in signals:
                logger.info("perf server stopping: %s", signal.Signals(signum).name)
                break


# -- client -------------------------------------------------------------------------------------


async def run_client(
    server: str,
    *,
    upload_bytes: int,
    download_bytes: int,
    iterations: int = 1,
    reuse_connection: bool = False,
    iteration_limit: float = math.inf,
) -> None:
    """Run ``iterations`` perf requests against ``server``, printing one JSON line each.

    Raises on the first failure (after printing the lines of the iterations that succeeded).
    """
    async with open_node(generate_ed25519()) as node:
        conn: Connection | None = None
        for iteration in range(iterations):
            with trio.fail_after(iteration_limit):
                start = trio.current_time()
                connect_seconds = 0.0
                if conn is None:
                    # swarm.dial, not host.connect: always a new connection (connect may return
                    # the one the last iteration is still closing), and its own error.
                    conn = await node.swarm.dial(server)
                    connect_seconds = trio.current_time() - start
                stream = await conn.new_stream(PROTOCOL_ID)
                result = await perf(stream, upload=upload_bytes, download=download_bytes)
                end = trio.current_time()
                await stream.aclose()
            _emit(
                {
                    "event": "result",
                    "iteration": iteration,
                    "time_seconds": end - start,
                    "connect_seconds": connect_seconds,
                    "upload_bytes": result.uploaded,
                    "download_bytes": result.downloaded,
                    "upload_seconds": result.upload_seconds,
                    "download_seconds": result.download_seconds,
                }
            )
            if not reuse_connection:
                await conn.aclose()
                conn = None


# -- command line -------------------------------------------------------------------------------


def _byte_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _positive_int(text: str) -> int:
    value = _byte_count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _multiaddr(text: str) -> str:
    try:
        Multiaddr(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid multiaddr {text!r}: {exc}") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m libp2p.perf`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m libp2p.perf",
        description="libp2p perf (/perf/1.0.0) server and client. JSON lines on stdout, "
        "logs on stderr.",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=LOG_LEVELS,
        help="level of this library's logs (the libp2p loggers) on stderr; other "
        "packages' loggers are left alone (default WARNING)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("server", help="serve /perf/1.0.0 until SIGTERM/SIGINT")
    server.add_argument(
        "--listen",
        action="append",
        required=True,
        type=_multiaddr,
        metavar="MA",
        help="multiaddr to listen on, e.g. /ip4/0.0.0.0/tcp/4001 (repeatable)",
    )
    server.add_argument(
        "--key-file",
        metavar="PATH",
        help="private key file for a stable peer ID (created if missing); default: a new key",
    )

    client = sub.add_parser("client", help="run perf requests against a server")
    client.add_argument(
        "--server",
        required=True,
        type=_multiaddr,
        metavar="MA",
        help="server multiaddr; a /p2p/<peer id> suffix makes the peer ID checked",
    )
    client.add_argument(
        "--upload-bytes", required=True, type=_byte_count, metavar="U", help="bytes to send"
    )
    client.add_argument(
        "--download-bytes",
        required=True,
        type=_byte_count,
        metavar="D",
        help="bytes to receive",
    )
    client.add_argument(
        "--iterations", type=_positive_int, default=1, metavar="K", help="runs (default 1)"
    )
    client.add_argument(
        "--reuse-connection",
        action="store_true",
        help="dial once and run every iteration on that connection",
    )
    client.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="S",
        help="give up on an iteration after S seconds (default: no limit)",
    )
    return parser


#: Failures the client reports as a JSON error line (anything else is a bug: traceback).
_CLIENT_FAILURES: tuple[type[Exception], ...] = (
    Libp2pError,
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)

#: What ``main`` catches: those failures, alone or wrapped in nursery exception groups.
_CAUGHT: tuple[type[Exception], ...] = (*_CLIENT_FAILURES, ExceptionGroup)


def _single_failure(exc: BaseException) -> Exception | None:
    """The one expected failure inside ``exc`` (nurseries wrap errors in groups), if any."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, _CLIENT_FAILURES) else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    # Our loggers only: the root logger would also turn on third-party packages' debug
    # output (multiaddr logs every parse).
    configure_logging(args.log_level, sys.stderr)
    if args.command == "server":
        try:
            key = load_or_create_identity(args.key_file) if args.key_file else generate_ed25519()
        except (Libp2pError, OSError) as exc:
            _emit({"event": "error", "error": f"cannot load key file: {exc}"}, file=sys.stderr)
            return EXIT_FAILURE
        try:
            trio.run(run_server, args.listen, key)
        except _CAUGHT as exc:
            failure = _single_failure(exc)
            if failure is None:
                raise
            _emit(
                {"event": "error", "error": str(failure), "type": type(failure).__name__},
                file=sys.stderr,
            )
            return EXIT_FAILURE
        return 0

    try:
        trio.run(
            lambda: run_client(
                args.server,
                upload_bytes=args.upload_bytes,
                download_bytes=args.download_bytes,
                iterations=args.iterations,
                reuse_connection=args.reuse_connection,
                iteration_limit=args.timeout if args.timeout is not None else math.inf,
            )
        )
    except _CAUGHT as exc:
        failure = _single_failure(exc)
        if failure is None:
            raise
        error = str(failure) or type(failure).__name__
        if isinstance(failure, trio.TooSlowError):
            error = f"an iteration took longer than --timeout {args.timeout} s"
        _emit({"event": "error", "error": error, "type": type(failure).__name__}, file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _emit({"event": "error", "error": "interrupted"}, file=sys.stderr)
        return 130
    return 0
