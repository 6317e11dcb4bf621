"""Printing what a program's host does, for people or as JSON lines, and running it until Ctrl-C.

Every event the host publishes describes itself (:class:`~libp2p.events.Describes`), so
printing them takes one call, whichever way they are wanted::

    console = Console("listener", json=False)
    with host.events.subscribe(HolePunchSucceeded, HolePunchFailed) as events:
        async for event in events:
            console.event(event)

prints ``[   3.044 s] hole punch with 12D3KooW... succeeded on attempt 1 in 10 ms: direct
connection to /ip4/198.51.100.1/tcp/46401``, and with ``json=True``
``{"t": 3044, "role": "listener", "event": "hole_punch", "peer": ..., "ok": true, ...}``.

The example scripts (``examples/nat``) are built on this module: :class:`ArgumentParser` adds
their common options (``--json``, ``--log-level``) and reports a mistake in the command line in
one line, and :meth:`Console.run` runs the program's ``main`` with trio and turns how it ended
into an exit code: its own, 2 for a mistake (:data:`USER_ERRORS`: one line on stderr, no
traceback), 130 for Ctrl-C (a last ``interrupted`` line). A bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TextIO

import trio

from .events import Describes
from .exceptions import Libp2pError, LocalUsageError
from .log import LOG_LEVELS

__all__ = [
    "EXIT_CODES_HELP",
    "EXIT_INTERRUPTED",
    "EXIT_MISTAKE",
    "USER_ERRORS",
    "ArgumentParser",
    "Console",
    "UsageError",
]

#: The exit code after Ctrl-C: the shell's code for a program ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
#: The exit code after a mistake (a bad argument, a peer that is down, a port in use).
EXIT_MISTAKE = 2


#: The exit codes a program run by :meth:`Console.run` has besides its own, for its
#: ``--help``.
EXIT_CODES_HELP = (
    "2 a mistake (one line on stderr; with --json also an "
    '{"event": "error", "message": ...} line on stdout), 130 Ctrl-C (a last line '
    '"interrupted"; with --json {"event": "interrupted"}).'
)


class UsageError(Exception):
    """A mistake in how the program was called or what it was given (an address, a relay
    that does not answer): reported in one line, no traceback, exit code 2."""


#: What a user's mistake raises: a libp2p error (a dial refused, a peer ID that does not
#: match), a :class:`UsageError`, or an OS error (a port in use, a key file not writable).
USER_ERRORS: tuple[type[BaseException], ...] = (Libp2pError, UsageError, OSError)


#: The keys every JSON line has; an event's fields must not use them.
_RESERVED = frozenset({"t", "role", "event"})


class Console:
    """One line per event on ``stream`` (standard output by default): text for people,
    ``[   1.234 s] ...`` with the seconds since the console was made, or with ``json=True``
    one JSON object per line with ``t`` (milliseconds since then), ``role`` and ``event``
    (the event's :attr:`~libp2p.events.Describes.kind`) and the event's own fields."""

    def __init__(self, role: str, *, json: bool = False, stream: TextIO | None = None) -> None:
        self.role = role
        self.json = json
        self._stream = stream
        self._start = time.monotonic()

    def event(self, event: Describes) -> None:
        """Print an event (or anything else that describes itself, such as
        ``host.reachability``)."""
        self.say(event.kind, event.describe(), **event.to_dict())

    async def follow(self, events: trio.abc.ReceiveChannel[Any]) -> None:
        """Print every event that arrives on ``events`` (a ``host.events.subscribe``
        channel) until it closes."""
        async for event in events:
            self.event(event)

    def say(self, kind: str, text: str, **fields: Any) -> None:
        """Print one line of the program's own: ``text`` for people, or a JSON object of
        ``fields`` under the event name ``kind``."""
        taken = _RESERVED.intersection(fields)
        if taken:
            raise LocalUsageError(f"fields {sorted(taken)} are the console's own: rename them")
        elapsed = time.monotonic() - self._start
        if self.json:
            record = {"t": round(elapsed * 1000), "role": self.role, "event": kind, **fields}
            line = json.dumps(record)
        else:
            line = f"[{elapsed:>8.3f} s] {text}"
        # One write per event, newline included: print() writes the text and the newline
        # separately, and a reader (or stderr merged into the same pipe) could see them apart.
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def error(self, message: str) -> None:
        """A mistake: one line on stderr, and with ``json`` an ``error`` line on the console
        too (a program reading the JSON lines learns why it ends)."""
        if self.json:
            self.say("error", message, message=message)
        print(f"{self.role}: error: {message}", file=sys.stderr, flush=True)

    def run(self, main: Callable[..., Awaitable[int]], *args: Any) -> int:
        """Run ``main(*args)`` with trio and return the exit code for how it ended.

        ``main``'s own code when it returns; :data:`EXIT_MISTAKE` when it raised only
        :data:`USER_ERRORS` (printed with :meth:`error`); :data:`EXIT_INTERRUPTED` on Ctrl-C,
        after an ``interrupted`` line. Anything else is a bug and propagates.

        Ctrl-C arrives through a trio signal receiver that cancels ``main`` at its next
        checkpoint, so it never lands half-way through an operation (with trio's default,
        KeyboardInterrupt can leave a task started but never run).
        """
        try:
            return trio.run(_until_interrupted, main, args)
        except BaseException as exc:
            errors = [e for e in _leaves(exc) if not isinstance(e, KeyboardInterrupt)]
            if not errors:
                self.say("interrupted", "interrupted")
                return EXIT_INTERRUPTED
            if all(isinstance(e, USER_ERRORS) for e in errors):
                self.error("; ".join(map(str, errors)))
                return EXIT_MISTAKE
            raise


class ArgumentParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` with the options every example script has,
    ``--json`` and ``--log-level``, and a mistake in the command line reported as
    :meth:`Console.error` does (one line, with ``--json`` an ``error`` line too), exit 2."""

    def __init__(self, role: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.role = role
        self._json = False
        self.add_argument(
            "--log-level",
            default="WARNING",
            type=str.upper,
            choices=LOG_LEVELS,
            metavar="LEVEL",
            help="level of the library's logs (the libp2p loggers) on stderr; other "
            "packages' loggers stay quiet (default WARNING)",
        )
        self.add_argument("--json", action="store_true", help="print JSON lines")

    def add_reachability_options(self) -> None:
        """``--public-range CIDR`` (repeatable: IP ranges that count as public besides
        globally routable ones) and ``--min-servers N`` (AutoNAT server groups that must
        agree), for :class:`~libp2p.host.reachability.ReachabilityConfig`'s
        ``public_ranges`` and ``min_servers``; a value that is not one is a mistake."""
        self.add_argument(
            "--public-range",
            action="append",
            default=[],
            type=_ip_range,
            metavar="CIDR",
            help="an IP range that counts as public for reachability besides globally "
            "routable ones, e.g. 198.51.100.0/24 in a lab (repeatable)",
        )
        self.add_argument(
            "--min-servers",
            type=_positive_int,
            default=2,
            metavar="N",
            help="AutoNAT server groups (distinct IPs) that must agree on reachability (default 2)",
        )

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse's, noting first whether ``--json`` is among ``args``: a mistake found
        while parsing is then reported as a JSON line too."""
        argv = list(sys.argv[1:] if args is None else args)
        self._json = "--json" in argv  # so that a mistake before it is parsed is JSON too
        return super().parse_known_args(argv, namespace)

    def error(self, message: str) -> NoReturn:
        """Report a mistake in the command line in one line (see :meth:`Console.error`) and
        exit with :data:`EXIT_MISTAKE`."""
        Console(self.role, json=self._json).error(f"{message} (see --help)")
        self.exit(EXIT_MISTAKE)


def _ip_range(text: str) -> str:
    try:
        ipaddress.ip_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an IP range: {exc}") from exc
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``: trio wraps those of its tasks in groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def _until_interrupted(main: Callable[..., Awaitable[int]], args: Sequence[Any]) -> int:
    code: list[int] = []
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def body() -> None:
                code.append(await main(*args))
                nursery.cancel_scope.cancel()

            nursery.start_soon(body)
            async for _signal in signals:
                nursery.cancel_scope.cancel()
                break
    if not code:
        raise KeyboardInterrupt
    return code[0]
