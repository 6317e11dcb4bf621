"""The NATed peer that reaches out: connects through the relay, then hole punches.

    python examples/nat/dialer.py \\
        --target /ip4/203.0.113.5/tcp/4001/p2p/RELAY_ID/p2p-circuit/p2p/LISTENER_ID

It connects to the listener through the relay, echoes a message over the relayed (limited)
connection, waits for DCUtR to turn it into a direct connection through both NATs, echoes
again over that, and exits 0. If the hole punch fails it says why and exits 1 (the relayed
echo still done). ``--json`` prints one JSON object per line instead of text. A mistake (a
target that is not a relayed address, a relay that is down, a wrong peer ID, a port in use)
gets one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, NoReturn

import trio
from multiaddr import Multiaddr

from libp2p import (
    AddressPolicy,
    Connection,
    Host,
    HostConfig,
    Libp2pError,
    LocalUsageError,
    PeerIDMismatch,
)
from libp2p.relay.circuit_v2 import (
    HolePunchConfig,
    HolePunchFailed,
    HolePunchSucceeded,
    RelayRefused,
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


class UserError(Exception):
    """A mistake in the command line or its addresses: reported in one line, no traceback."""


# What a user's mistake raises (a dial refused, a port in use ...): one line, no traceback.
USER_ERRORS = (Libp2pError, UserError, OSError)


async def connect(host: Host, target: str) -> Connection:
    """The relayed connection to the listener; a :class:`UserError` that says why if not."""
    try:
        return await host.connect(target)
    except PeerIDMismatch as exc:
        hint = f"{exc} (is the relay's /p2p/ part of --target right?)"
    except (RelayRefused, LocalUsageError) as exc:
        hint = str(exc)
    except Libp2pError as exc:
        hint = f"{exc} (is the relay running, and reachable from here?)"
    raise UserError(f"cannot connect through the relay: {hint}")


async def echo(conn: Connection, message: bytes) -> tuple[bool, float]:
    """Send ``message`` on a new echo stream of ``conn``; returns (echoed intact, seconds)."""
    start = trio.current_time()
    stream = await conn.new_stream(ECHO, allow_limited=True)
    await stream.send_all(message)
    await stream.send_eof()
    back = bytearray()
    while data := await stream.receive_some():
        back += data
    await stream.aclose()
    return bytes(back) == message, trio.current_time() - start


async def main(args: argparse.Namespace) -> int:
    out = Output("dialer", args.json)
    message = args.message.encode()
    # On one machine (a relay on loopback) loopback addresses are the ones to punch with.
    local = args.target.startswith(("/ip4/127.", "/ip6/::1/"))
    policy = AddressPolicy.local_testing() if local else AddressPolicy()
    config = HostConfig(hole_punching=HolePunchConfig(address_policy=policy))
    result: dict[str, Any] = {
        "ok": False,
        "relayed_ms": None,
        "direct_ms": None,
        "echo_direct_ms": None,
        "direct_addr": None,
        "reason": None,
    }
    async with Host(key_file=args.key_file, listen=args.listen, config=config) as host:
        out(
            "ready",
            f"peer {host.peer_id} listening on " + ", ".join(str(a) for a in host.listen_addrs),
            peer_id=str(host.peer_id),
            addrs=[str(a) for a in host.addrs],
        )
        if args.peer:
            # Peers that observe our address: with two or more the host learns whether its
            # NAT keeps one mapping for every destination (see host.nat_mapping).
            for peer in args.peer:
                try:
                    conn = await host.connect(peer)
                except Libp2pError as exc:
                    raise UserError(f"cannot connect to --peer {peer}: {exc}") from exc
                await host.identify.wait_identified(conn)
            status = host.nat_mapping_status
            out(
                "nat_mapping",
                f"NAT mapping: {status.mapping.value} ({status.reason})",
                mapping=status.mapping.value,
            )
        with host.events.subscribe(HolePunchSucceeded, HolePunchFailed) as outcomes:
            with trio.move_on_after(args.timeout) as deadline:
                start = trio.current_time()
                relayed = await connect(host, args.target)
                result["relayed_ms"] = round((trio.current_time() - start) * 1000)
                limit = relayed.limit
                out(
                    "relayed_connection",
                    f"relayed connection to {relayed.remote_peer} in {result['relayed_ms']} ms "
                    f"(limits: {limit or 'none'}) through {relayed.remote_addr}",
                    peer=str(relayed.remote_peer),
                    remote_addr=str(relayed.remote_addr),
                    limits=None
                    if limit is None
                    else {"duration": limit.duration, "data": limit.data},
                )
                ok, took = await echo(relayed, message)
                out(
                    "echo",
                    f"echo over the relayed connection: {'ok' if ok else 'MISMATCH'} "
                    f"({len(message)} bytes, {took * 1000:.1f} ms)",
                    via="relayed",
                    ok=ok,
                    bytes=len(message),
                )
                async for outcome in outcomes:
                    if outcome.peer != relayed.remote_peer:
                        continue
                    if isinstance(outcome, HolePunchFailed):
                        result["reason"] = outcome.reason.value
                        out(
                            "hole_punch",
                            f"hole punch failed after {outcome.attempts} attempt(s): "
                            f"{outcome.reason.value} ({outcome.detail})",
                            peer=str(outcome.peer),
                            ok=False,
                            attempt=outcome.attempts,
                            elapsed_ms=round(outcome.elapsed * 1000),
                            reason=outcome.reason.value,
                        )
                        break
                    direct = outcome.connection
                    result["direct_ms"] = round(outcome.elapsed * 1000)
                    result["direct_addr"] = str(direct.remote_addr)
                    out(
                        "hole_punch",
                        (
                            f"hole punch succeeded on attempt {outcome.attempt}"
                            if outcome.attempt
                            else "direct connection without a punch: the listener dialed us "
                            "back (connection reversal: we are reachable)"
                        )
                        + f" in {result['direct_ms']} ms after the relayed connection",
                        peer=str(outcome.peer),
                        ok=True,
                        attempt=outcome.attempt,
                        elapsed_ms=result["direct_ms"],
                        direct_addr=result["direct_addr"],
                    )
                    out(
                        "direct_connection",
                        f"direct connection to {direct.remote_addr} "
                        f"(relayed: {direct.relayed}, limited: {direct.limited})",
                        remote_addr=result["direct_addr"],
                    )
                    ok, took = await echo(direct, message)
                    result["echo_direct_ms"] = round(took * 1000, 1)
                    out(
                        "echo",
                        f"echo over the direct connection: {'ok' if ok else 'MISMATCH'} "
                        f"({len(message)} bytes, {took * 1000:.1f} ms)",
                        via="direct",
                        ok=ok,
                        bytes=len(message),
                    )
                    result["ok"] = ok
                    if not ok:
                        result["reason"] = "echo_mismatch"
                    break
            if deadline.cancelled_caught:
                result["reason"] = result["reason"] or "timeout"
    if result["ok"]:
        summary = f"direct connection to {result['direct_addr']}"
    elif result["reason"] == "timeout" and result["relayed_ms"] is None:
        summary = f"timeout: no relayed connection within {args.timeout:g} s"
    elif result["reason"] == "timeout":
        # The listener starts DCUtR; when it has no address to offer it says so, not us.
        summary = (
            f"timeout: no hole punch within {args.timeout:g} s (the listener starts it: "
            "see its output for why it did not)"
        )
    else:
        summary = f"no direct connection: {result['reason']}; the relayed connection worked"
    out("result", f"result: {summary}", **result)
    return 0 if result["ok"] else 1


class Parser(argparse.ArgumentParser):
    """argparse, with mistakes reported in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"dialer: error: {message} (see --help)\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(
        description=__doc__.split("\n")[0],
        epilog="Exit code: 0 direct connection and echo, 1 no direct connection, 2 error.",
    )
    parser.add_argument(
        "--target",
        required=True,
        metavar="MULTIADDR",
        help="the listener's relayed address: "
        "<relay addr>/p2p/<relay id>/p2p-circuit/p2p/<listener id>",
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="MULTIADDR",
        help="listen address (repeatable; default /ip4/0.0.0.0/tcp/0); hole "
        "punching dials from this port",
    )
    parser.add_argument("--key-file", metavar="PATH", help="keep this peer's identity in PATH")
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="connect to this peer first (repeatable): peers observe our address, and with "
        "two or more we learn whether our NAT maps per destination (then a hole punch fails "
        "at once, with reason symmetric_nat)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="give up after S seconds (default 30)",
    )
    parser.add_argument("--message", default="hello through the NAT", help="text to echo")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)
    try:
        target = str(Multiaddr(args.target))
    except ValueError as exc:
        parser.error(f"--target {args.target}: not a multiaddr ({exc})")
    head, sep, tail = target.partition("/p2p-circuit")
    if not sep or "/p2p/" not in head or not tail.startswith("/p2p/"):
        parser.error(
            f"--target {args.target}: give the listener's relayed address, "
            "<relay addr>/p2p/<relay id>/p2p-circuit/p2p/<listener id>, "
            "as the listener printed it"
        )
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    for peer in args.peer:
        try:
            Multiaddr(peer)
        except ValueError as exc:
            parser.error(f"--peer {peer}: not a multiaddr ({exc})")
        if "/p2p/" not in peer:
            parser.error(f"--peer {peer}: give the peer's address ending in /p2p/<peer id>")
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


def run() -> None:
    args = parse_args(sys.argv[1:])
    try:
        code = trio.run(main, args)
    except BaseException as exc:
        found = leaves(exc)
        errors = [e for e in found if not isinstance(e, KeyboardInterrupt)]
        if not errors:  # Ctrl-C
            code = 130
        elif all(isinstance(e, USER_ERRORS) for e in errors):
            print(f"dialer: error: {'; '.join(map(str, errors))}", file=sys.stderr)
            code = 2
        else:
            raise  # a bug: let its traceback show
    sys.exit(code)


if __name__ == "__main__":
    run()
