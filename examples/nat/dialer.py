"""The NATed peer that reaches out: connects through the relay, then hole punches.

    python examples/nat/dialer.py \\
        --target /ip4/203.0.113.5/tcp/4001/p2p/RELAY_ID/p2p-circuit/p2p/LISTENER_ID

It connects to the listener through the relay, echoes a message over the relayed (limited)
connection, waits for DCUtR to turn it into a direct connection through both NATs, echoes
again over that, and exits 0. If the hole punch fails it says why and exits 1 (the relayed
echo still done). ``--json`` prints one JSON object per line instead of text. A mistake (a
target that is not a relayed address, a relay that is down, a wrong peer ID, a port in use)
gets one line on stderr and exit code 2.

``--protocol`` names the application protocol of the exchange (default ``/echo/1.0.0``): the
dialer sends the message, half-closes and reads the reply. Only ``/echo/1.0.0`` must answer
with the message itself; another protocol may reply with anything (py-libp2p's NAT example
speaks ``/nat-example/1.0.0`` and answers with a greeting). A listener that does not serve
the protocol does not change the result: the hole punch is what this script is about, so it
reports the punch, says the protocol was not served, and exits as the punch went.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

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
    ProtocolNotSupported,
)
from libp2p.console import EXIT_CODES_HELP, ArgumentParser, Console, UsageError
from libp2p.log import configure_logging
from libp2p.network.addrs import is_loopback_addr
from libp2p.relay.circuit_v2 import (
    HolePunchConfig,
    HolePunchFailed,
    HolePunchSucceeded,
    RelayRefused,
)

ECHO = "/echo/1.0.0"
MAX_REPLY = 64 * 1024  # bytes of a reply kept; a protocol that streams on is cut off here


async def connect(host: Host, target: str, seconds: float) -> Connection:
    """The relayed connection to the listener; a :class:`~libp2p.console.UsageError` that
    says why if not.

    The relay first, then the listener through it, within ``seconds`` seconds: a relay
    that accepts TCP connections but never completes the libp2p handshake is an error, as
    one that is down is, not a silent wait for the overall ``--seconds``.
    """
    relay = target.partition("/p2p-circuit")[0]
    reached_relay = False
    try:
        with trio.move_on_after(seconds):
            await host.connect(relay)
            reached_relay = True
            return await host.connect(target)
        if reached_relay:
            hint = (
                f"the relay did not connect us to the listener within {seconds:g} s "
                "(--connect-timeout)"
            )
        else:
            hint = (
                f"no libp2p handshake within {seconds:g} s (--connect-timeout): something "
                "accepts connections at the relay's address, but is it a libp2p relay?"
            )
    except PeerIDMismatch as exc:
        hint = f"{exc} (is the relay's /p2p/ part of --target right?)"
    except (RelayRefused, LocalUsageError) as exc:
        hint = str(exc)
    except Libp2pError as exc:
        hint = f"{exc} (is the relay running, and reachable from here?)"
    raise UsageError(f"cannot connect through the relay: {hint}")


@dataclass(frozen=True)
class Exchange:
    """One message sent on a new stream of the application protocol, and what came back."""

    protocol: str
    served: bool  # False: the peer refused the protocol (multistream-select said "na")
    reply: bytes | None  # None when not served
    seconds: float

    def outcome(self, message: bytes) -> str:
        """``echoed`` (the message came back), ``replied`` (something else came back, from
        a protocol that is not an echo) or ``not_served``."""
        if not self.served:
            return "not_served"
        return "echoed" if self.reply == message else "replied"

    def failed(self, message: bytes) -> bool:
        """Only the echo protocol promises the message back: anything else from it is a bug."""
        return self.protocol == ECHO and self.outcome(message) != "echoed"


async def exchange(conn: Connection, protocol: str, message: bytes) -> Exchange:
    """Send ``message`` on a new ``protocol`` stream of ``conn``, half-close, read the reply."""
    start = trio.current_time()
    try:
        stream = await conn.new_stream(protocol, allow_limited=True)
    except ProtocolNotSupported:
        return Exchange(protocol, False, None, trio.current_time() - start)
    try:
        await stream.send_all(message)
        await stream.send_eof()
        back = bytearray()
        while len(back) < MAX_REPLY and (data := await stream.receive_some()):
            back += data
    finally:
        await stream.aclose()
    return Exchange(protocol, True, bytes(back[:MAX_REPLY]), trio.current_time() - start)


def report_exchange(console: Console, done: Exchange, message: bytes, via: str) -> None:
    """One ``echo`` line: whether the peer served the protocol and what came back."""
    outcome = done.outcome(message)
    took = f"{done.seconds * 1000:.1f} ms"
    if outcome == "not_served":
        text = f"the listener does not serve {done.protocol} over the {via} connection"
    elif outcome == "echoed":
        text = f"echo over the {via} connection: ok ({len(message)} bytes, {took})"
    else:
        assert done.reply is not None
        shown = done.reply[:60].decode(errors="replace")
        text = (
            f"{done.protocol} over the {via} connection: "
            + ("MISMATCH, " if done.failed(message) else "")
            + f"{len(done.reply)} bytes back ({took}): {shown!r}"
        )
    console.say(
        "echo",
        text,
        via=via,
        ok=outcome == "echoed",
        bytes=len(message),
        protocol=done.protocol,
        served=done.served,
        reply_bytes=None if done.reply is None else len(done.reply),
    )


async def main(args: argparse.Namespace, console: Console) -> int:
    message = args.message.encode()
    # On one machine (a relay on loopback) loopback addresses are the ones to punch with.
    local = is_loopback_addr(Multiaddr(args.target))
    policy = AddressPolicy.local_testing() if local else AddressPolicy()
    config = HostConfig(hole_punching=HolePunchConfig(address_policy=policy))
    result: dict[str, Any] = {
        "ok": False,
        "relayed_ms": None,
        "direct_ms": None,
        "echo_direct_ms": None,
        "direct_addr": None,
        "reason": None,
        "protocol": args.protocol,
        "app": None,
    }
    towards = "to"  # the direct connection, as the result line names it
    async with Host(key_file=args.key_file, listen=args.listen, config=config) as host:
        console.say(
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
                    raise UsageError(f"cannot connect to --peer {peer}: {exc}") from exc
                await host.identify.wait_identified(conn)
            console.event(host.nat_mapping_status)
        with host.events.subscribe(HolePunchSucceeded, HolePunchFailed) as outcomes:
            with trio.move_on_after(args.timeout) as deadline:
                start = trio.current_time()
                relayed = await connect(host, args.target, args.connect_timeout)
                result["relayed_ms"] = round((trio.current_time() - start) * 1000)
                limit = relayed.limit
                console.say(
                    "relayed_connection",
                    f"relayed connection to {relayed.remote_peer} in {result['relayed_ms']} ms "
                    f"(limits: {limit or 'none'}) through {relayed.remote_addr}",
                    peer=str(relayed.remote_peer),
                    remote_addr=str(relayed.remote_addr),
                    limits=None
                    if limit is None
                    else {"duration": limit.duration, "data": limit.data},
                )
                done = await exchange(relayed, args.protocol, message)
                report_exchange(console, done, message, "relayed")
                result["app"] = done.outcome(message)
                async for outcome in outcomes:
                    if outcome.peer != relayed.remote_peer:
                        continue
                    console.event(outcome)  # one line: how it went, and why
                    if isinstance(outcome, HolePunchFailed):
                        result["reason"] = outcome.reason.value
                        break
                    direct = outcome.connection
                    # "from" when the listener alone dialed (its connection reversal): the
                    # address is then the listener's end of a connection it opened.
                    towards = "from" if outcome.peer_dialed else "to"
                    result["direct_ms"] = round(outcome.elapsed * 1000)
                    result["direct_addr"] = str(direct.remote_addr)
                    console.say(
                        "direct_connection",
                        f"direct connection {towards} {direct.remote_addr} "
                        f"(relayed: {direct.relayed}, limited: {direct.limited})",
                        remote_addr=result["direct_addr"],
                    )
                    # Tried again even if the relayed try was refused: a peer may serve a
                    # protocol on direct connections only (js and go refuse streams on
                    # limited connections unless the protocol opts in).
                    done = await exchange(direct, args.protocol, message)
                    report_exchange(console, done, message, "direct")
                    result["app"] = done.outcome(message)
                    if done.served:
                        result["echo_direct_ms"] = round(done.seconds * 1000, 1)
                    result["ok"] = not done.failed(message)
                    if done.failed(message):
                        result["reason"] = "echo_mismatch"
                    break
            if deadline.cancelled_caught:
                result["reason"] = result["reason"] or "timeout"
    if result["ok"]:
        summary = f"direct connection {towards} {result['direct_addr']}"
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
    if result["app"] == "not_served":
        summary += f" (the listener does not serve {args.protocol}: no exchange)"
    console.say("result", f"result: {summary}", **result)
    return 0 if result["ok"] else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, checked; a mistake ends the program with one line and exit 2."""
    parser = ArgumentParser(
        "dialer",
        description=__doc__.split("\n")[0],
        epilog="Exit code: 0 direct connection (and, if the listener serves --protocol, the "
        "exchange over it), 1 no direct connection (or /echo/1.0.0 did not echo), "
        + EXIT_CODES_HELP,
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
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds the relay, and then the listener through it, have to answer; "
        "no answer is an error (exit 2) (default 10)",
    )
    parser.add_argument("--message", default="hello through the NAT", help="text to echo")
    parser.add_argument(
        "--protocol",
        default=ECHO,
        metavar="ID",
        help=f"application protocol of the exchange (default {ECHO}); one the listener does "
        "not serve is reported, and the result is still the hole punch's",
    )
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
    if args.connect_timeout <= 0:
        parser.error("--connect-timeout must be positive")
    if not args.protocol.startswith("/") or "\n" in args.protocol:
        parser.error(f"--protocol {args.protocol!r}: a protocol ID starts with / (e.g. {ECHO})")
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


def run() -> None:
    args = parse_args(sys.argv[1:])
    configure_logging(args.log_level)  # the library's loggers only, not other packages'
    console = Console("dialer", json=args.json)
    sys.exit(console.run(main, args, console))


if __name__ == "__main__":
    run()
