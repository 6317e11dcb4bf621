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
import ipaddress
import json
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
from libp2p.relay.circuit_v2 import (
    RelayCircuitClosed,
    RelayCircuitOpened,
    RelayConfig,
    RelayReservationAccepted,
)


class Output:
    """One line per event: text for people, or JSON objects with ``--json``."""

    def __init__(self, role: str, as_json: bool) -> None:
        self.role, self.as_json, self.start = role, as_json, time.monotonic()

    def __call__(self, event: str, text: str, **fields: Any) -> None:
        ms = round((time.monotonic() - self.start) * 1000)
        if self.as_json:
            line = json.dumps({"t": ms, "role": self.role, "event": event, **fields})
        else:
            line = f"[{ms:>6} ms] {text}"
        print(line, flush=True)


LOOPBACK_RANGES = ("127.0.0.0/8", "::1/128")

# What a user's mistake raises (a port in use ...): one line, no traceback.
USER_ERRORS = (Libp2pError, OSError)


def relay_config(args: argparse.Namespace) -> RelayConfig:
    if args.unlimited:
        return RelayConfig.unlimited()
    defaults = RelayConfig()
    return RelayConfig(
        max_reservations=args.max_reservations or defaults.max_reservations,
        circuit_duration=args.circuit_duration or defaults.circuit_duration,
        circuit_data=args.circuit_data or defaults.circuit_data,
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


async def main(args: argparse.Namespace) -> int:
    out = Output("relay", args.json)
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


class Parser(argparse.ArgumentParser):
    """argparse, with mistakes reported in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"relay: error: {message} (see --help)\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
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
    parser.add_argument("--json", action="store_true", help="print JSON lines")
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
    for name in ("max_reservations", "circuit_duration", "circuit_data", "min_servers"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``: trio wraps those of its tasks in groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def run() -> None:
    args = parse_args(sys.argv[1:])
    try:
        code = trio.run(main, args)
    except BaseException as exc:
        found = leaves(exc)
        errors = [e for e in found if not isinstance(e, KeyboardInterrupt)]
        if not errors:  # Ctrl-C
            code = 0
        elif all(isinstance(e, USER_ERRORS) for e in errors):
            print(f"relay: error: {'; '.join(map(str, errors))}", file=sys.stderr)
            code = 2
        else:
            raise  # a bug: let its traceback show
    sys.exit(code)


if __name__ == "__main__":
    run()
