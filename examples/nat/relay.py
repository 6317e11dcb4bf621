"""A public Circuit Relay v2 relay: lets NATed peers reserve a slot and be dialed through it.

    python examples/nat/relay.py --key-file relay.key

It runs the relay service (hop), identify, ping and an AutoNAT server (which tells peers
whether they are reachable), prints its peer ID and the addresses to give to listeners, then
one line per reservation and circuit until Ctrl-C. It also asks its peers whether it is itself
reachable from outside, and prints its reachability report whenever it changes
(``host.reachability``): answers from ``--min-servers`` server groups (distinct IPs, default
2) must agree before it is public, and ``--public-range`` names IP ranges that count as public
besides globally routable ones (a lab's documentation ranges). ``--json`` prints one JSON
object per line instead of text. A mistake (a bad address, a port in use) gets one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import signal
import sys
import time
from typing import Any, NoReturn

import trio
from multiaddr import Multiaddr

from libp2p import (
    AddressPolicy,
    AutoNATClientConfig,
    AutoNATServerConfig,
    AutoNATv2ServerConfig,
    Host,
    HostConfig,
    Libp2pError,
    ReachabilityConfig,
    ReachabilityReport,
    ReachabilityReportChanged,
)
from libp2p.log import LOG_LEVELS, configure_logging
from libp2p.relay.circuit_v2 import (
    RelayCircuitClosed,
    RelayCircuitOpened,
    RelayConfig,
    RelayReservationAccepted,
)


class Output:
    """One line per event: text for people (``[   1.234 s] ...``: seconds since the start),
    or JSON objects with ``--json`` (``t``: milliseconds since the start)."""

    def __init__(self, role: str, as_json: bool) -> None:
        self.role, self.as_json, self.start = role, as_json, time.monotonic()

    def __call__(self, event: str, text: str, **fields: Any) -> None:
        elapsed = time.monotonic() - self.start
        if self.as_json:
            t = round(elapsed * 1000)
            line = json.dumps({"t": t, "role": self.role, "event": event, **fields})
        else:
            line = f"[{elapsed:>8.3f} s] {text}"
        print(line, flush=True)

    def error(self, message: str) -> None:
        """A mistake: one line on stderr, and with ``--json`` an ``error`` line on stdout too
        (a program reading stdout learns why it ends)."""
        if self.as_json:
            self("error", message, message=message)
        print(f"{self.role}: error: {message}", file=sys.stderr, flush=True)


LOOPBACK_RANGES = ("127.0.0.0/8", "::1/128")
EXIT_INTERRUPTED = 130  # the shell's code for a program ended by Ctrl-C (128 + SIGINT)

# What a user's mistake raises (a port in use ...): one line, no traceback.
USER_ERRORS = (Libp2pError, OSError)


def relay_config(args: argparse.Namespace) -> RelayConfig:
    if args.unlimited:
        unlimited = RelayConfig.unlimited()
        ttl = args.reservation_ttl or unlimited.reservation_ttl
        return dataclasses.replace(unlimited, reservation_ttl=ttl)
    defaults = RelayConfig()
    return RelayConfig(
        max_reservations=args.max_reservations or defaults.max_reservations,
        circuit_duration=args.circuit_duration or defaults.circuit_duration,
        circuit_data=args.circuit_data or defaults.circuit_data,
        reservation_ttl=args.reservation_ttl or defaults.reservation_ttl,
    )


def is_loopback(addr: str) -> bool:
    return addr.startswith(("/ip4/127.", "/ip6/::1/"))


def report_reachability(report: ReachabilityReport, out: Output) -> None:
    """One line for a changed reachability report (and, in text, one more per address when
    there are several: the reason names the address that decided)."""
    status, expect = report.status.value, report.expect.value
    # The reason starts with the status, which the text already gave.
    why = report.reason.removeprefix(f"{status}: ")
    more = report.addresses if len(report.addresses) > 1 else ()
    out(
        "reachability",
        f"reachability: {status}, expect {expect} — {why}"
        + "".join(f"\n    {a.addr}: {a.status.value} ({a.reason})" for a in more),
        status=status,
        expect=expect,
        nat_mapping=report.nat.mapping.value,
        filtering=report.nat.filtering.value,
        reason=report.reason,
        port_mapping=report.port_mapping,
        addresses=[
            {
                "addr": str(a.addr),
                "status": a.status.value,
                "source": a.source.value,
                "reason": a.reason,
            }
            for a in report.addresses
        ],
    )


async def main(args: argparse.Namespace, out: Output) -> int:
    # On one machine (listening on loopback only) loopback addresses are the ones AutoNAT
    # dials back and asks about.
    local = all(is_loopback(a) for a in args.listen)
    policy = AddressPolicy.local_testing() if local else AddressPolicy()
    # Loopback counts as public on one machine, as it does for AutoNAT's dial-backs.
    public_ranges = [*args.public_range, *(LOOPBACK_RANGES if local else ())]
    config = HostConfig(
        relay_service=relay_config(args),
        hole_punching=None,
        autonat_server=AutoNATServerConfig(addresses=policy),
        autonat_v2_server=AutoNATv2ServerConfig(addresses=policy),
        autonat_client=AutoNATClientConfig(boot_delay=1.0, addresses=policy),
        reachability=ReachabilityConfig(
            public_ranges=tuple(public_ranges), min_servers=args.min_servers
        ),
    )
    async with Host(key_file=args.key_file, listen=args.listen, config=config) as host:
        addrs = [f"{a}/p2p/{host.peer_id}" for a in host.addrs]
        out(
            "ready",
            f"relay {host.peer_id} ready; listeners use --relay with one of:\n    "
            + "\n    ".join(addrs),
            peer_id=str(host.peer_id),
            addrs=addrs,
        )
        types = (
            RelayReservationAccepted,
            RelayCircuitOpened,
            RelayCircuitClosed,
            ReachabilityReportChanged,
        )
        with host.events.subscribe(*types) as events:
            async for ev in events:
                if isinstance(ev, RelayReservationAccepted):
                    what = "refreshed" if ev.refresh else "made"
                    out(
                        "reservation",
                        f"reservation for {ev.peer} {what} ({ev.ttl:.0f} s)",
                        peer=str(ev.peer),
                    )
                elif isinstance(ev, ReachabilityReportChanged):
                    report_reachability(ev.report, out)
                elif isinstance(ev, RelayCircuitOpened):
                    out(
                        "circuit_opened",
                        f"circuit {ev.src} -> {ev.dst} opened",
                        src=str(ev.src),
                        dst=str(ev.dst),
                    )
                else:
                    out(
                        "circuit_closed",
                        f"circuit {ev.src} -> {ev.dst} closed ({ev.reason}) after "
                        f"{ev.duration:.1f} s, {ev.bytes} bytes relayed",
                        src=str(ev.src),
                        dst=str(ev.dst),
                        bytes=ev.bytes,
                        reason=ev.reason,
                    )
    return 0


EPILOG_CODES = (
    "2 a mistake (one line on stderr; with --json also an "
    '{"event": "error", "message": ...} line on stdout), 130 Ctrl-C (a last line '
    '"interrupted"; with --json {"event": "interrupted"}).'
)


class Parser(argparse.ArgumentParser):
    """argparse, with mistakes reported in one line (and a JSON ``error`` line with --json)."""

    as_json = False

    def error(self, message: str) -> NoReturn:
        Output("relay", self.as_json).error(f"{message} (see --help)")
        self.exit(2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(
        description=__doc__.split("\n")[0],
        epilog="It runs until Ctrl-C. Exit code: " + EPILOG_CODES,
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="MULTIADDR",
        help="listen address (repeatable; default /ip4/0.0.0.0/tcp/4001)",
    )
    parser.add_argument(
        "--key-file",
        metavar="PATH",
        help="keep the relay's identity (its peer ID) in PATH across restarts",
    )
    parser.add_argument(
        "--max-reservations", type=int, metavar="N", help="reservations held at once (default 128)"
    )
    parser.add_argument(
        "--circuit-duration",
        type=int,
        metavar="S",
        help="seconds a relayed connection may last (default 120)",
    )
    parser.add_argument(
        "--circuit-data",
        type=int,
        metavar="BYTES",
        help="bytes a relayed connection may carry each way (default 131072)",
    )
    parser.add_argument(
        "--reservation-ttl",
        type=float,
        metavar="S",
        help="seconds a reservation lasts unless the listener refreshes it (default 3600)",
    )
    parser.add_argument(
        "--unlimited", action="store_true", help="no limits at all (a private relay)"
    )
    parser.add_argument(
        "--public-range",
        action="append",
        default=[],
        metavar="CIDR",
        help="an IP range that counts as public for reachability besides globally routable "
        "ones, e.g. 198.51.100.0/24 in a lab (repeatable)",
    )
    parser.add_argument(
        "--min-servers",
        type=int,
        default=2,
        metavar="N",
        help="AutoNAT server groups (distinct IPs) that must agree on reachability (default 2)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="level of the library's logs (the libp2p loggers) on stderr; other packages' "
        "loggers stay quiet (default WARNING)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.as_json = "--json" in argv
    args = parser.parse_args(argv)
    args.listen = args.listen or ["/ip4/0.0.0.0/tcp/4001"]
    for listen in args.listen:
        try:
            Multiaddr(listen)
        except ValueError as exc:
            parser.error(f"--listen {listen}: not a multiaddr ({exc})")
        if "/p2p" in listen:
            parser.error(f"--listen {listen}: give a local address, e.g. /ip4/0.0.0.0/tcp/4001")
    for cidr in args.public_range:
        try:
            ipaddress.ip_network(cidr)
        except ValueError as exc:
            parser.error(f"--public-range {cidr}: not an IP range ({exc})")
    names = ("max_reservations", "circuit_duration", "circuit_data", "min_servers")
    for name in (*names, "reservation_ttl"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``: trio wraps those of its tasks in groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


async def until_interrupted(args: argparse.Namespace, out: Output) -> int:
    """:func:`main`, ended cleanly by Ctrl-C: SIGINT cancels it at its next checkpoint and
    then raises KeyboardInterrupt here, instead of trio raising it wherever the code is
    (which can leave a task half-started)."""
    code: list[int] = []
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def body() -> None:
                code.append(await main(args, out))
                nursery.cancel_scope.cancel()

            nursery.start_soon(body)
            async for _signal in signals:
                nursery.cancel_scope.cancel()
                break
    if not code:
        raise KeyboardInterrupt
    return code[0]


def run() -> None:
    args = parse_args(sys.argv[1:])
    # Our loggers only (the libp2p hierarchy): other packages' debug output stays off.
    configure_logging(args.log_level)
    out = Output("relay", args.json)
    try:
        code = trio.run(until_interrupted, args, out)
    except BaseException as exc:
        found = leaves(exc)
        errors = [e for e in found if not isinstance(e, KeyboardInterrupt)]
        if not errors:  # Ctrl-C
            out("interrupted", "interrupted")
            code = EXIT_INTERRUPTED
        elif all(isinstance(e, USER_ERRORS) for e in errors):
            out.error("; ".join(map(str, errors)))
            code = 2
        else:
            raise  # a bug: let its traceback show
    sys.exit(code)


if __name__ == "__main__":
    run()
