"""The NATed peer that waits to be reached: reserves on a relay and answers hole punches.

    python examples/nat/listener.py --relay /ip4/203.0.113.5/tcp/4001/p2p/12D3KooW...

It reserves a slot on each relay, prints the relayed address to give to the dialer, reports
whether AutoNAT finds it reachable from outside, serves an echo protocol (``/echo/1.0.0``,
allowed on relayed connections), and reports every incoming connection and every hole punch
(DCUtR, run by the host on its own) until Ctrl-C.
``--json`` prints one JSON object per line instead of text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import trio
from multiaddr import Multiaddr

from libp2p import (
    AddressPolicy,
    AutoNATClientConfig,
    AutoNATServerConfig,
    ConnectionOpened,
    Host,
    HostConfig,
    Libp2pError,
    NetStream,
    ReachabilityChanged,
)
from libp2p.relay.circuit_v2 import (
    HolePunchConfig,
    HolePunchFailed,
    HolePunchSucceeded,
    ReservationLost,
    ReservationMade,
    ReservationRefreshed,
)

ECHO = "/echo/1.0.0"


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


def is_loopback(addr: str) -> bool:
    return addr.startswith(("/ip4/127.", "/ip6/::1/"))


async def serve_echo(stream: NetStream, out: Output) -> None:
    total = 0
    while data := await stream.receive_some():
        total += len(data)
        await stream.send_all(data)
    await stream.send_eof()
    via = "relayed" if stream.connection.relayed else "direct"
    out(
        "echo_served",
        f"echoed {total} bytes to {stream.remote_peer} ({via})",
        peer=str(stream.remote_peer),
        bytes=total,
        via=via,
    )


async def report(host: Host, out: Output) -> None:
    types = (
        ConnectionOpened,
        HolePunchSucceeded,
        HolePunchFailed,
        ReservationMade,
        ReservationRefreshed,
        ReservationLost,
        ReachabilityChanged,
    )
    with host.events.subscribe(*types) as events:
        async for ev in events:
            if isinstance(ev, ConnectionOpened):
                kind = "relayed" if ev.relayed else "direct"
                limits = f", limited: {ev.connection.limit}" if ev.limited else ""
                out(
                    "connection_opened",
                    f"{ev.direction.value} {kind} connection from {ev.peer} "
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
                    f"hole punch with {ev.peer} succeeded on attempt {ev.attempt} in "
                    f"{ev.elapsed * 1000:.0f} ms: direct connection to {ev.direct_addr}",
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
            elif isinstance(ev, ReachabilityChanged):
                status = ev.status.value
                why = {
                    "private": "not reachable from outside: peers reach it through the relay",
                    "public": f"reachable from outside at {ev.address}",
                }.get(status, "reachability unknown")
                out("reachability", f"AutoNAT: {status}, {why}", status=status)
            elif isinstance(ev, ReservationLost):
                out(
                    "reservation_lost",
                    f"reservation on {ev.relay} lost: {ev.reason}",
                    relay=str(ev.relay),
                    reason=ev.reason,
                )
            elif isinstance(ev, ReservationRefreshed):
                r = ev.reservation
                out(
                    "reservation_refreshed",
                    f"reservation on {r.relay} refreshed",
                    relay=str(r.relay),
                    expires=r.expire,
                )


async def main(args: argparse.Namespace) -> int:
    out = Output("listener", args.json)
    # On one machine (a relay on loopback) loopback addresses are the ones to punch with.
    local = all(is_loopback(r) for r in args.relay)
    policy = AddressPolicy.local_testing() if local else AddressPolicy()
    config = HostConfig(
        hole_punching=HolePunchConfig(address_policy=policy),
        # Learn whether we are reachable (first check a second after start), and answer
        # such checks for others (the relay learns it is public from its listeners).
        autonat_client=AutoNATClientConfig(boot_delay=1.0, addresses=policy),
        autonat_server=AutoNATServerConfig(addresses=policy),
    )
    async with Host(key_file=args.key_file, listen=args.listen, config=config) as host:
        host.set_stream_handler(ECHO, lambda s: serve_echo(s, out), allow_limited=True)
        host.nursery.start_soon(report, host, out)
        out(
            "ready",
            f"peer {host.peer_id} listening on " + ", ".join(str(a) for a in host.listen_addrs),
            peer_id=str(host.peer_id),
            addrs=[str(a) for a in host.addrs],
        )
        for relay in args.relay:
            with host.events.subscribe(ReservationMade) as made:
                relayed = await host.listen(f"{relay}/p2p-circuit")
                r = (await made.receive()).reservation
            full = [f"{a}/p2p/{host.peer_id}" for a in relayed]
            out(
                "reservation",
                f"reserved on {r.relay} until {time.strftime('%H:%M:%S', time.localtime(r.expire))}"
                f" (limits: {r.limit or 'none'}); dial me at:\n    " + "\n    ".join(full),
                relay=str(r.relay),
                relayed_addrs=full,
                expires=r.expire,
                limits=None
                if r.limit is None
                else {"duration": r.limit.duration, "data": r.limit.data},
            )
        await trio.sleep_forever()
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--relay",
        action="append",
        required=True,
        metavar="MULTIADDR",
        help="relay address with /p2p/<relay id> (repeatable)",
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="MULTIADDR",
        help="listen address (repeatable; default /ip4/0.0.0.0/tcp/0)",
    )
    parser.add_argument("--key-file", metavar="PATH", help="keep this peer's identity in PATH")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)
    for relay in args.relay:
        try:
            addr = Multiaddr(relay)
        except ValueError as exc:
            parser.error(f"--relay {relay}: not a multiaddr ({exc})")
        if "/p2p/" not in str(addr) or "/p2p-circuit" in relay:
            parser.error(f"--relay {relay}: give the relay's address ending in /p2p/<relay id>")
    args.listen = args.listen or ["/ip4/0.0.0.0/tcp/0"]
    return args


def libp2p_errors(exc: BaseException) -> list[Libp2pError] | None:
    """The library errors inside ``exc`` (trio wraps them in groups), or ``None`` if anything
    else is in there too (a bug: let its traceback show)."""
    if isinstance(exc, Libp2pError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found: list[Libp2pError] = []
        for inner in exc.exceptions:
            errors = libp2p_errors(inner)
            if errors is None:
                return None
            found += errors
        return found
    return None


def run() -> None:
    args = parse_args(sys.argv[1:])
    try:
        code = trio.run(main, args)
    except KeyboardInterrupt:
        code = 0
    except BaseException as exc:
        errors = libp2p_errors(exc)
        if errors is None:
            raise
        for error in errors:
            print(f"listener: error: {error}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    run()
