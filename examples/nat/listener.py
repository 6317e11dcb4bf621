"""The NATed peer that waits to be reached: reserves on a relay and answers hole punches.

    python examples/nat/listener.py --relay /ip4/203.0.113.5/tcp/4001/p2p/12D3KooW...

It reserves a slot on each relay, prints the relayed address to give to the dialer, prints
its reachability report whenever it changes (``host.reachability``: public / private /
unknown, address by address and how it is known, the NAT type, and what a dialer should
expect), serves an echo protocol (``/echo/1.0.0``,
or the protocol ID ``--protocol`` names, with the same echo behaviour; allowed on relayed
connections), and reports every connection and every upgrade of a relayed
connection to a direct one (DCUtR hole punching, run by the host on its own) until Ctrl-C.
The relays given with ``--relay`` are taken to be the user's own: their AutoNAT answers
decide reachability alone (``ReachabilityConfig.trusted_servers``; ``--no-trust-relay``
makes them count as one server among others, so that answers from two server groups are
needed). ``--public-range`` names IP ranges that count as public besides globally routable
ones (a lab or a private network on documentation or RFC 1918 ranges).
``--port-mapping`` asks the LAN's router to forward the listen port (UPnP IGD, PCP or
NAT-PMP) and reports the mapping (``port_mapping`` events); whether that makes the peer
reachable is for the reachability report to find out. ``--json`` prints one JSON object per
line instead of text. A mistake (a bad address, a relay
that is down or has another peer ID, a port in use) gets one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

import trio
from multiaddr import Multiaddr

from libp2p import (
    AddressPolicy,
    AutoNATClientConfig,
    AutoNATServerConfig,
    AutoNATv2ServerConfig,
    ConnectionOpened,
    Host,
    HostConfig,
    Libp2pError,
    NatMappingChanged,
    NetStream,
    PeerID,
    PeerIDMismatch,
    PortMappingChanged,
    PortMappingConfig,
    PortMappingFailed,
    ReachabilityConfig,
    ReachabilityReportChanged,
)
from libp2p.console import EXIT_CODES_HELP, ArgumentParser, Console, UsageError
from libp2p.log import configure_logging
from libp2p.network.addrs import is_loopback_addr
from libp2p.relay.circuit_v2 import (
    HolePunchConfig,
    HolePunchFailed,
    HolePunchSucceeded,
    RelayRefused,
    ReservationAttemptFailed,
    ReservationLost,
    ReservationMade,
    ReservationRefreshed,
    ReservationRefused,
)

ECHO = "/echo/1.0.0"
LOOPBACK_RANGES = ("127.0.0.0/8", "::1/128")

#: What the listener prints: every event of these kinds describes itself in one line (or,
#: with --json, a JSON object); see ``event.describe()`` and ``event.to_dict()``.
EVENTS = (
    ConnectionOpened,
    HolePunchSucceeded,
    HolePunchFailed,
    ReservationMade,
    ReservationRefreshed,
    ReservationLost,
    ReservationRefused,
    ReservationAttemptFailed,
    ReachabilityReportChanged,
    NatMappingChanged,
    PortMappingChanged,
    PortMappingFailed,
)


def relay_peer_id(relay: str) -> PeerID:
    """The peer ID at the end of a ``--relay`` address (``.../p2p/<id>``)."""
    return PeerID.from_string(relay.rsplit("/p2p/", 1)[1])


async def serve_echo(stream: NetStream, protocol: str, console: Console) -> None:
    """Write back every byte until the other side half-closes, then close our side."""
    total = 0
    while data := await stream.receive_some():
        total += len(data)
        await stream.send_all(data)
    await stream.send_eof()
    via = "relayed" if stream.connection.relayed else "direct"
    console.say(
        "echo_served",
        f"echoed {total} bytes to {stream.remote_peer} ({via}, {protocol})",
        peer=str(stream.remote_peer),
        bytes=total,
        via=via,
        protocol=protocol,
    )


async def reserve(host: Host, relay: str, seconds: float) -> None:
    """Reserve on ``relay`` within ``seconds`` seconds (the host keeps the reservation up from
    then on); a relay that accepts TCP connections and never answers is an error."""
    hint = ""
    try:
        with trio.move_on_after(seconds):
            await host.listen(f"{relay}/p2p-circuit")
            return
    except PeerIDMismatch as exc:
        hint = f"{exc} (is the /p2p/ part of --relay right?)"
    except RelayRefused as exc:
        hint = str(exc)
    except Libp2pError as exc:
        hint = f"{exc} (is the relay running, and reachable from here?)"
    else:
        hint = (
            f"no answer within {seconds:g} s (--connect-timeout): something accepts "
            "connections at that address, but is it a libp2p relay?"
        )
    raise UsageError(f"cannot reserve on relay {relay}: {hint}")


async def main(args: argparse.Namespace, console: Console) -> int:
    # On one machine (a relay on loopback) loopback addresses are the ones to punch with.
    local = all(is_loopback_addr(Multiaddr(r)) for r in args.relay)
    policy = AddressPolicy.local_testing() if local else AddressPolicy()
    # Loopback counts as public on one machine, as it does for hole punching.
    public_ranges = [*args.public_range, *(LOOPBACK_RANGES if local else ())]
    # The relays we reserve on are our own: their dial-backs decide alone (unless told not
    # to trust them), so a NATed listener connected to nothing else still learns the truth.
    trusted = () if args.no_trust_relay else tuple(relay_peer_id(r) for r in args.relay)
    config = HostConfig(
        hole_punching=HolePunchConfig(address_policy=policy),
        # Learn whether we are reachable (first check a second after start), and answer
        # such checks for others (the relay learns it is public from its listeners).
        autonat_client=AutoNATClientConfig(boot_delay=1.0, addresses=policy),
        autonat_server=AutoNATServerConfig(addresses=policy),
        autonat_v2_server=AutoNATv2ServerConfig(addresses=policy),
        reachability=ReachabilityConfig(
            trusted_servers=trusted,
            public_ranges=tuple(public_ranges),
            min_servers=args.min_servers,
        ),
        port_mapping=PortMappingConfig(addresses=policy) if args.port_mapping else None,
    )
    async with Host(key_file=args.key_file, listen=args.listen, config=config) as host:
        host.set_stream_handler(
            args.protocol, lambda s: serve_echo(s, args.protocol, console), allow_limited=True
        )
        console.say(
            "ready",
            f"peer {host.peer_id} listening on " + ", ".join(str(a) for a in host.listen_addrs),
            peer_id=str(host.peer_id),
            addrs=[str(a) for a in host.addrs],
        )
        with host.events.subscribe(*EVENTS) as events:
            host.nursery.start_soon(console.follow, events)
            for relay in args.relay:
                await reserve(host, relay, args.connect_timeout)
            await trio.sleep_forever()
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, checked; a mistake ends the program with one line and exit 2."""
    parser = ArgumentParser(
        "listener",
        description=__doc__.split("\n")[0],
        epilog="It runs until Ctrl-C. Exit code: " + EXIT_CODES_HELP,
    )
    parser.add_argument(
        "--relay",
        action="append",
        required=True,
        metavar="MULTIADDR",
        help="relay address with /p2p/<relay id>, as the relay printed it (repeatable)",
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="MULTIADDR",
        help="listen address (repeatable; default /ip4/0.0.0.0/tcp/0); hole punching "
        "dials from this port",
    )
    parser.add_argument("--key-file", metavar="PATH", help="keep this peer's identity in PATH")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds each relay has to connect and accept the reservation; no answer is "
        "an error (exit 2) (default 10)",
    )
    parser.add_argument(
        "--protocol",
        default=ECHO,
        metavar="ID",
        help=f"serve this application protocol, as an echo (default {ECHO})",
    )
    parser.add_argument(
        "--no-trust-relay",
        action="store_true",
        help="count the relays' AutoNAT answers as any server's (by default they are your "
        "own and decide reachability alone)",
    )
    parser.add_reachability_options()
    parser.add_argument(
        "--port-mapping",
        action="store_true",
        help="ask the LAN's router to forward the listen port (UPnP IGD, PCP, NAT-PMP)",
    )
    args = parser.parse_args(argv)
    if not args.protocol.startswith("/") or "\n" in args.protocol:
        parser.error(f"--protocol {args.protocol!r}: a protocol ID starts with / (e.g. {ECHO})")
    for relay in args.relay:
        try:
            Multiaddr(relay)
        except ValueError as exc:
            parser.error(f"--relay {relay}: not a multiaddr ({exc})")
        if "/p2p-circuit" in relay or "/p2p/" not in relay:
            parser.error(f"--relay {relay}: give the relay's address ending in /p2p/<relay id>")
        try:
            relay_peer_id(relay)
        except ValueError as exc:
            parser.error(f"--relay {relay}: the /p2p/ part is not a peer ID ({exc})")
    if args.connect_timeout <= 0:
        parser.error("--connect-timeout must be positive")
    args.listen = args.listen or ["/ip4/0.0.0.0/tcp/0"]
    for listen in args.listen:
        try:
            Multiaddr(listen)
        except ValueError as exc:
            parser.error(f"--listen {listen}: not a multiaddr ({exc})")
    return args


def run() -> None:
    args = parse_args(sys.argv[1:])
    configure_logging(args.log_level)  # the library's loggers only, not other packages'
    console = Console("listener", json=args.json)
    sys.exit(console.run(main, args, console))


if __name__ == "__main__":
    run()
