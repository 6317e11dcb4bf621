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
    ConnectionOpened,
    Direction,
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
    ReachabilityReport,
    ReachabilityReportChanged,
)
from libp2p.log import LOG_LEVELS, configure_logging
from libp2p.relay.circuit_v2 import (
    HolePunchConfig,
    HolePunchFailed,
    HolePunchSucceeded,
    RelayRefused,
    Reservation,
    ReservationAttemptFailed,
    ReservationLost,
    ReservationMade,
    ReservationRefreshed,
    ReservationRefused,
)

ECHO = "/echo/1.0.0"
LOOPBACK_RANGES = ("127.0.0.0/8", "::1/128")
EXIT_INTERRUPTED = 130  # the shell's code for a program ended by Ctrl-C (128 + SIGINT)


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


class UserError(Exception):
    """A mistake in the command line or its addresses: reported in one line, no traceback."""


# What a user's mistake raises (a dial refused, a port in use ...): one line, no traceback.
USER_ERRORS = (Libp2pError, UserError, OSError)


def is_loopback(addr: str) -> bool:
    return addr.startswith(("/ip4/127.", "/ip6/::1/"))


def relay_peer_id(relay: str) -> PeerID:
    """The peer ID at the end of a ``--relay`` address (``.../p2p/<id>``)."""
    return PeerID.from_string(relay.rsplit("/p2p/", 1)[1])


async def serve_echo(stream: NetStream, protocol: str, out: Output) -> None:
    """Write back every byte until the other side half-closes, then close our side."""
    total = 0
    while data := await stream.receive_some():
        total += len(data)
        await stream.send_all(data)
    await stream.send_eof()
    via = "relayed" if stream.connection.relayed else "direct"
    out(
        "echo_served",
        f"echoed {total} bytes to {stream.remote_peer} ({via}, {protocol})",
        peer=str(stream.remote_peer),
        bytes=total,
        via=via,
        protocol=protocol,
    )


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


def report_reservation(host: Host, r: Reservation, out: Output, *, refreshed: bool) -> None:
    full = [f"{a}/p2p/{host.peer_id}" for a in r.addrs]
    until = time.strftime("%H:%M:%S", time.localtime(r.expire))
    what = "reservation refreshed" if refreshed else "reserved"
    out(
        "reservation",
        f"{what} on {r.relay} until {until} (limits: {r.limit or 'none'}); dial me at:\n    "
        + "\n    ".join(full),
        relay=str(r.relay),
        relayed_addrs=full,
        expires=r.expire,
        limits=None if r.limit is None else {"duration": r.limit.duration, "data": r.limit.data},
    )


async def report(host: Host, events: trio.abc.ReceiveChannel[Any], out: Output) -> None:
    async for ev in events:
        if isinstance(ev, ConnectionOpened):
            kind = "relayed" if ev.relayed else "direct"
            limits = f", limited: {ev.connection.limit}" if ev.limited else ""
            # Who dialed whom: we dialed out "to" a peer, a peer dialed in "from" its side.
            towards = "to" if ev.direction is Direction.OUTBOUND else "from"
            out(
                "connection_opened",
                f"{ev.direction.value} {kind} connection {towards} {ev.peer} "
                f"({ev.remote_addr}{limits})",
                peer=str(ev.peer),
                remote_addr=str(ev.remote_addr),
                relayed=ev.relayed,
                limited=ev.limited,
                direction=ev.direction.value,
            )
        elif isinstance(ev, HolePunchSucceeded):
            out(
                "hole_punch",
                (
                    f"hole punch with {ev.peer} succeeded on attempt {ev.attempt}"
                    if ev.attempt
                    else f"{ev.peer} dialed us directly (its direct dial: we are reachable)"
                    if ev.connection.direction is Direction.INBOUND
                    else f"dialed {ev.peer} back directly (connection reversal: it is reachable)"
                )
                + f" in {ev.elapsed * 1000:.0f} ms: direct connection to {ev.direct_addr}",
                peer=str(ev.peer),
                ok=True,
                attempt=ev.attempt,
                elapsed_ms=round(ev.elapsed * 1000),
                direct_addr=str(ev.direct_addr),
            )
        elif isinstance(ev, HolePunchFailed):
            out(
                "hole_punch",
                f"hole punch with {ev.peer} failed after {ev.attempts} attempt(s): "
                f"{ev.reason.value} ({ev.detail}); the relayed connection stays",
                peer=str(ev.peer),
                ok=False,
                attempt=ev.attempts,
                elapsed_ms=round(ev.elapsed * 1000),
                reason=ev.reason.value,
            )
        elif isinstance(ev, PortMappingChanged):
            m = ev.mapping
            public = "" if m.external_is_public else f" (not public: {m.not_public_reason})"
            out(
                "port_mapping",
                f"port mapping {ev.change.value} by {m.protocol.value} on {m.gateway}: "
                f"{m.external} -> {m.internal}, lease {m.lease:.0f} s{public}",
                change=ev.change.value,
                protocol=m.protocol.value,
                external=str(m.external),
                internal=str(m.internal),
                external_is_public=m.external_is_public,
            )
        elif isinstance(ev, PortMappingFailed):
            out(
                "port_mapping_failed",
                f"port mapping failed: {ev.reason}",
                failure=ev.failure.name,
                reason=ev.reason,
            )
        elif isinstance(ev, NatMappingChanged):
            out(
                "nat_mapping",
                f"NAT mapping: {ev.current.value} ({ev.reason})",
                mapping=ev.current.value,
            )
        elif isinstance(ev, ReachabilityReportChanged):
            report_reachability(ev.report, out)
        elif isinstance(ev, ReservationMade | ReservationRefreshed):
            refreshed = isinstance(ev, ReservationRefreshed)
            report_reservation(host, ev.reservation, out, refreshed=refreshed)
        elif isinstance(ev, ReservationLost):
            out(
                "reservation_lost",
                f"reservation on {ev.relay} lost: {ev.reason}; trying to reserve again",
                relay=str(ev.relay),
                reason=ev.reason,
            )
        elif isinstance(ev, ReservationRefused | ReservationAttemptFailed):
            out(
                "reservation_failed",
                f"reserving on {ev.relay} again failed: {ev.reason}; next try in "
                f"{ev.retry_in:.0f} s",
                relay=str(ev.relay),
                reason=ev.reason,
                retry_in=ev.retry_in,
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
    raise UserError(f"cannot reserve on relay {relay}: {hint}")


async def main(args: argparse.Namespace, out: Output) -> int:
    # On one machine (a relay on loopback) loopback addresses are the ones to punch with.
    local = all(is_loopback(r) for r in args.relay)
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
    types = (
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
    async with Host(key_file=args.key_file, listen=args.listen, config=config) as host:
        host.set_stream_handler(
            args.protocol, lambda s: serve_echo(s, args.protocol, out), allow_limited=True
        )
        out(
            "ready",
            f"peer {host.peer_id} listening on " + ", ".join(str(a) for a in host.listen_addrs),
            peer_id=str(host.peer_id),
            addrs=[str(a) for a in host.addrs],
        )
        with host.events.subscribe(*types) as events:
            host.nursery.start_soon(report, host, events, out)
            for relay in args.relay:
                await reserve(host, relay, args.connect_timeout)
            await trio.sleep_forever()
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
        Output("listener", self.as_json).error(f"{message} (see --help)")
        self.exit(2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(
        description=__doc__.split("\n")[0],
        epilog="It runs until Ctrl-C. Exit code: " + EPILOG_CODES,
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
        "--port-mapping",
        action="store_true",
        help="ask the LAN's router to forward the listen port (UPnP IGD, PCP, NAT-PMP)",
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
    for cidr in args.public_range:
        try:
            ipaddress.ip_network(cidr)
        except ValueError as exc:
            parser.error(f"--public-range {cidr}: not an IP range ({exc})")
    if args.min_servers <= 0:
        parser.error("--min-servers must be positive")
    if args.connect_timeout <= 0:
        parser.error("--connect-timeout must be positive")
    args.listen = args.listen or ["/ip4/0.0.0.0/tcp/0"]
    for listen in args.listen:
        try:
            Multiaddr(listen)
        except ValueError as exc:
            parser.error(f"--listen {listen}: not a multiaddr ({exc})")
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
    out = Output("listener", args.json)
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
