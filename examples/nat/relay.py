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
import sys

from multiaddr import Multiaddr

from libp2p import (
    AddressPolicy,
    AutoNATClientConfig,
    AutoNATServerConfig,
    AutoNATv2ServerConfig,
    Host,
    HostConfig,
    ReachabilityConfig,
    ReachabilityReportChanged,
)
from libp2p.console import EXIT_CODES_HELP, ArgumentParser, Console
from libp2p.log import configure_logging
from libp2p.network.addrs import is_loopback_addr, with_peer_id
from libp2p.relay.circuit_v2 import (
    RelayCircuitClosed,
    RelayCircuitOpened,
    RelayConfig,
    RelayReservationAccepted,
)

LOOPBACK_RANGES = ("127.0.0.0/8", "::1/128")

#: What the relay prints: each event describes itself (``event.describe()``, and with --json
#: ``event.to_dict()``).
EVENTS = (
    RelayReservationAccepted,
    RelayCircuitOpened,
    RelayCircuitClosed,
    ReachabilityReportChanged,
)


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


async def main(args: argparse.Namespace, console: Console) -> int:
    # On one machine (listening on loopback only) loopback addresses are the ones AutoNAT
    # dials back and asks about.
    local = all(is_loopback_addr(Multiaddr(a)) for a in args.listen)
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
        addrs = [str(with_peer_id(a, host.peer_id)) for a in host.addrs]
        console.say(
            "ready",
            f"relay {host.peer_id} ready; listeners use --relay with one of:\n    "
            + "\n    ".join(addrs),
            peer_id=str(host.peer_id),
            addrs=addrs,
        )
        with host.events.subscribe(*EVENTS) as events:
            await console.follow(events)
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, checked; a mistake ends the program with one line and exit 2."""
    parser = ArgumentParser(
        "relay",
        description=__doc__.split("\n")[0],
        epilog="It runs until Ctrl-C. Exit code: " + EXIT_CODES_HELP,
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
    parser.add_reachability_options()
    args = parser.parse_args(argv)
    args.listen = args.listen or ["/ip4/0.0.0.0/tcp/4001"]
    for listen in args.listen:
        try:
            Multiaddr(listen)
        except ValueError as exc:
            parser.error(f"--listen {listen}: not a multiaddr ({exc})")
        if "/p2p" in listen:
            parser.error(f"--listen {listen}: give a local address, e.g. /ip4/0.0.0.0/tcp/4001")
    names = ("max_reservations", "circuit_duration", "circuit_data")
    for name in (*names, "reservation_ttl"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def run() -> None:
    args = parse_args(sys.argv[1:])
    configure_logging(args.log_level)  # the library's loggers only, not other packages'
    console = Console("relay", json=args.json)
    sys.exit(console.run(main, args, console))


if __name__ == "__main__":
    run()
