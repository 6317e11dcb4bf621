"""A public Circuit Relay v2 relay: lets NATed peers reserve a slot and be dialed through it.

    python examples/nat/relay.py --key-file relay.key

It runs the relay service (hop), identify, ping and an AutoNAT server (which tells peers
whether they are reachable), prints its peer ID and the addresses to give to listeners, then
one line per reservation and circuit until Ctrl-C. It also asks its peers whether it is itself
reachable from outside, and says so. ``--json`` prints
one JSON object per line instead of text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import trio

from libp2p import (
    AutoNATClientConfig,
    AutoNATServerConfig,
    Host,
    HostConfig,
    Libp2pError,
    ReachabilityChanged,
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


def relay_config(args: argparse.Namespace) -> RelayConfig:
    if args.unlimited:
        return RelayConfig.unlimited()
    defaults = RelayConfig()
    return RelayConfig(
        max_reservations=args.max_reservations or defaults.max_reservations,
        circuit_duration=args.circuit_duration or defaults.circuit_duration,
        circuit_data=args.circuit_data or defaults.circuit_data,
    )


async def main(args: argparse.Namespace) -> int:
    out = Output("relay", args.json)
    config = HostConfig(
        relay_service=relay_config(args),
        hole_punching=None,
        autonat_server=AutoNATServerConfig(),
        autonat_client=AutoNATClientConfig(boot_delay=1.0),
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
            ReachabilityChanged,
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
                elif isinstance(ev, ReachabilityChanged):
                    status = ev.status.value
                    seen = f" at {ev.address}" if ev.address else ""
                    out("reachability", f"AutoNAT: this relay is {status}{seen}", status=status)
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


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)
    args.listen = args.listen or ["/ip4/0.0.0.0/tcp/4001"]
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
            print(f"relay: error: {error}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    run()
