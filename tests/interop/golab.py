"""The stock go-libp2p peer (p2pd, go-libp2p v0.32.1) hole punching in the NAT lab.

go registers ``/libp2p/dcutr`` only once identify has given it an observed address of its own
that ``manet.IsPublicAddr`` (go-multiaddr v0.12) deems public, and it trusts an observed
address only after ``ActivationThresh`` = 4 distinct observers reported it (v0.32.1's
``observerGroup`` is the observer's whole IP address; later versions group IPv6 by /56), on
connections whose local address is one of its listen addresses (go dials from its listen port,
so its outbound connections count). The IPv4 documentation ranges are not public to go;
2001:db8::/32 is. So go runs in the lab's ``"ipv6"`` topology with ``observers=4``
(``NatLab(topology="ipv6", observers=4)``): :func:`lab_observers` starts four of our hosts on
the observers host, one per observer address (distinct /56s), and every go peer here connects
to all four before it takes part (:func:`learn_public_address`). Observers report what go's
identify and identify-push tell them, which is how we see ``/libp2p/dcutr`` appear (go pushes
its protocols when a handler is added) and go's relayed address after it reserved.

Roles (DCUtR's A dials through the relay, B received that relayed connection):

* :func:`go_relay`: p2pd on the public relay host, with ``-relayService=false``: its hop
  service is then only the one p2pd always starts (``relay.New`` with go's default limits:
  2 minutes, 128 KiB per direction). Without that flag p2pd has a second relay service, built
  from its flags, that go-libp2p's relay manager starts once AutoNAT finds the host public
  (in the lab: as soon as one of our peers that serves AutoNAT dials it back, ~1 s); it takes
  over the hop protocol's handler, and every reservation made before is gone: the next
  CONNECT to a peer that reserved gets NO_RESERVATION while that peer still holds a valid
  reservation (go log: "autonat NAT status is public", then "relay error: NO_RESERVATION").
  A p2pd bug (two relay services), on go's side.
* :func:`go_listener` (B): ``-autonat -forceReachabilityPrivate -autoRelay -trustedRelays
  RELAY -relayDiscovery=false -dhtClient`` (p2pd wants a DHT for auto-relay). go starts its
  hole puncher (the B side) only after AutoNAT said "private", and auto-relay reserves only
  then; AutoNAT v1 would need servers that dial back and a 15 s boot delay, so the flag says
  it at once (the daemon's own option for a peer known to be behind a NAT). It serves
  ``/echo/1.0.0`` through the daemon's stream handler, but p2pd closes that unix socket as soon
  as the remote half-closes, so a client that sends, half-closes, then reads (our
  examples/nat/dialer.py) gets the stream reset. While private with auto-relay, go announces
  only relayed addresses. Before hole punching, go's B dials A's public-looking addresses
  directly (up to 5 s, ``holepunch.dialTimeout``: the whole timeout when A's firewall drops).
* :func:`go_dialer` (A): ``-autonat`` (AutoNAT service and hole punching); it dials the
  listener's relayed address with the control protocol's CONNECT.

go before v0.41 has the TCP roles on the punched connection swapped: its B initiates
multistream-select, Noise and Yamux (``WithSimultaneousConnect(isClient=true)``), its A acts
as the server (go's TCP transport upgrades an outbound simultaneous-connect dial with
``isClient=false`` as inbound). Two go peers agree with each other; with a peer that follows
the spec, both ends initiate (go B, spec A: go logs "noise: message is too short") or both wait
(spec B, go A) unless that peer adapts, as ours do (the punched connection's role is settled
on the connection: ``libp2p.multistream.negotiate_either_role``).

Direct connections are seen in go's own view: LIST_PEERS has one entry per connection with its
remote address (a ``/p2p-circuit`` one is relayed). p2pd runs with its ``p2p-holepunch`` logger
at debug level; each of its lines wakes :func:`wait_direct`, which then asks LIST_PEERS. The
dialer's time is from go's CONNECT returning (the relayed connection upgraded and identified)
to the log line after which LIST_PEERS first shows the direct connection.

:func:`go_dialer_run`, :func:`go_relay` and :func:`go_listener` return / yield what
``benchmarks/holepunch.py`` uses (its ``Result`` dict: ``ok``, ``ms``, ``reason``, plus
``detail`` and ``addr``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from libp2p.peer.id import PeerID
from tests.interop.go.p2pd_control_pb2 import StreamInfo
from tests.interop.gopeer import GoPeer, GoPeerError, go_peer
from tests.natlab.lab import LabError, NatLab, Program

REPO_ROOT = Path(__file__).resolve().parents[2]

DCUTR = "/libp2p/dcutr"
HOP = "/libp2p/circuit/relay/0.2.0/hop"
ECHO = "/echo/1.0.0"
#: go's loggers that say what its hole punching does (debug: each step, with the peer).
HOLEPUNCH_LOGS = {"p2p-holepunch": "debug"}
#: How many observers go needs (identify's ActivationThresh in v0.32.1).
GO_OBSERVERS = 4

#: ``benchmarks/holepunch.py``'s result of one run: {"ok", "ms", "reason"; "detail", "addr"}.
Result = dict[str, Any]

# The observers program: one of our hosts per address in argv[1:] (each "/ip6/<ip>/tcp/<port>"),
# no hole punching, no AutoNAT client. Prints {"event": "ready", "addrs": [...]} with each
# host's full address, then one line per identify or identify-push a host received:
# {"event": "identified", "observer": i, "peer", "protocols", "addrs", "observed"}. Exits on
# stdin EOF.
_OBSERVERS = """
import json, sys
sys.path.insert(0, {root!r})
import trio
from libp2p import Host, HostConfig
from libp2p.events import PeerIdentified

def say(**fields):
    print(json.dumps(fields), flush=True)

async def watch(i, host):
    with host.events.subscribe(PeerIdentified) as events:
        async for ev in events:
            say(event="identified", observer=i, peer=str(ev.peer),
                protocols=sorted(host.peerstore.protocols(ev.peer)),
                addrs=[str(a) for a in host.peerstore.addrs(ev.peer)],
                observed=None if ev.observed_addr is None else str(ev.observed_addr))

async def main():
    config = HostConfig(hole_punching=None, autonat_client=None)
    async with trio.open_nursery() as nursery:
        hosts = []
        for i, listen in enumerate(sys.argv[1:]):
            host = Host(listen=[listen], config=config)
            await nursery.start(run, host)
            hosts.append(host)
            nursery.start_soon(watch, i, host)
        say(event="ready", addrs=[f"{{h.listen_addrs[0]}}/p2p/{{h.peer_id}}" for h in hosts])
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
        nursery.cancel_scope.cancel()

async def run(host, task_status):
    async with host:
        task_status.started()
        await trio.sleep_forever()

trio.run(main)
"""


@dataclass
class Observers:
    """Our observer hosts on the lab's observers host, and what go told them.

    Loop-independent (the program's lines are read through a thread): one set of observers can
    serve several trio runs (tests) in one lab.
    """

    program: Program
    addrs: list[str]
    #: Every "identified" line so far, in order.
    seen: list[dict[str, Any]] = field(default_factory=list)

    def latest(self, peer: str) -> dict[str, Any] | None:
        """The last identify (or push) any observer got from ``peer``."""
        for line in reversed(self.seen):
            if line["peer"] == peer:
                return line
        return None

    async def wait_for(
        self, peer: str, predicate: Callable[[dict[str, Any]], bool], within: float
    ) -> dict[str, Any]:
        """The first identify/push from ``peer`` (already seen or to come) that satisfies
        ``predicate``; :class:`LabError` after ``within`` seconds."""
        for line in self.seen:
            if line["peer"] == peer and predicate(line):
                return line
        deadline = time.monotonic() + within
        while True:
            line = await trio.to_thread.run_sync(
                self.program.expect, deadline - time.monotonic(), abandon_on_cancel=True
            )
            if line.get("event") != "identified":
                continue
            self.seen.append(line)
            if line["peer"] == peer and predicate(line):
                return line


def start_observers(lab: NatLab, count: int = GO_OBSERVERS, timeout: float = 20.0) -> Observers:
    """Start ``count`` observer hosts (ours) on the lab's observers host, one per observer
    address (IPv6 where the lab has it, else IPv4), each on a fresh port; blocking (call it
    before trio runs, or from a thread). The lab ends the program on teardown."""
    if len(lab.observers) < count:
        raise LabError(f"the lab has {len(lab.observers)} observer addresses, {count} wanted")
    if lab.has_ipv6:
        listens = [f"/ip6/{ip}/tcp/{lab.fresh_port()}" for ip in lab.observer_ip6s()[:count]]
    else:
        listens = [f"/ip4/{ip}/tcp/{lab.fresh_port()}" for ip in lab.observer_ips()[:count]]
    program = lab.spawn_python(
        "observers", _OBSERVERS.format(root=str(REPO_ROOT)), *listens, name="observers"
    )
    ready = program.expect(timeout)
    if ready.get("event") != "ready":
        raise LabError(f"observers: expected the ready line, got {ready}")
    return Observers(program, list(ready["addrs"]))


async def learn_public_address(go: GoPeer, observers: Observers, within: float = 20.0) -> None:
    """Connect ``go`` to every observer and wait until it serves ``/libp2p/dcutr`` (it pushes
    its protocols to them when it adds the handler, once an observed address is public)."""
    async with trio.open_nursery() as nursery:
        for addr in observers.addrs:
            peer = PeerID.from_string(addr.rsplit("/p2p/", 1)[1])
            nursery.start_soon(go.connect, peer, [addr.rsplit("/p2p/", 1)[0]])
    try:
        await observers.wait_for(go.peer_id, lambda line: DCUTR in line["protocols"], within)
    except LabError as exc:
        latest = observers.latest(go.peer_id)
        raise GoPeerError(
            f"go never served {DCUTR} after connecting to {len(observers.addrs)} observers "
            f"({exc.args[0].splitlines()[0]}); last identify: {latest}",
            stderr=go.stderr,
        ) from None


def _listen(lab: NatLab, host: str, ip: int) -> str:
    if ip == 6:
        return f"/ip6/{lab.ip6(host)}/tcp/{lab.fresh_port()}"
    return f"/ip4/{lab.ip(host)}/tcp/{lab.fresh_port()}"


@contextlib.asynccontextmanager
async def go_relay(lab: NatLab, ip: int = 6, host: str = "relay") -> AsyncIterator[str]:
    """p2pd as a relay on ``host``, listening on its IP version ``ip`` address; yields its
    address with ``/p2p/``."""
    async with go_peer(
        # One relay service only (module docstring): the one p2pd starts itself.
        "-relayService=false",
        host_addrs=[_listen(lab, host, ip)],
        command_prefix=lab.exec_argv(host, []),
    ) as go:
        yield go.addr


async def _echo(info: StreamInfo, stream: trio.abc.HalfCloseableStream) -> None:
    # p2pd closes our socket once the remote half-closes: echo as bytes arrive.
    while chunk := await stream.receive_some(65536):
        await stream.send_all(chunk)


@dataclass
class GoListener:
    """A go listener (DCUtR's B) with a reservation: :attr:`target` is its relayed address."""

    go: GoPeer
    target: str
    #: Its TCP listen address (without ``/p2p/``): a punch reaches it there.
    listen: str


@contextlib.asynccontextmanager
async def go_listener(
    lab: NatLab,
    relay_addr: str,
    observers: Observers,
    ip: int = 6,
    host: str = "b",
    within: float = 30.0,
) -> AsyncIterator[GoListener]:
    """p2pd behind ``host``'s router as a DCUtR listener: it learns its address from the
    observers, reserves on ``relay_addr`` (auto-relay with that one static relay), serves
    ``/echo/1.0.0``; yields once both are done (go pushed ``/libp2p/dcutr`` and an address
    through the relay to the observers), with its relayed address."""
    flags = [
        "-autonat",
        "-forceReachabilityPrivate",
        "-autoRelay",
        "-trustedRelays",
        relay_addr,
        "-relayDiscovery=false",
        # p2pd refuses auto-relay without a DHT; a client that never bootstraps (no -b) makes
        # no connections of its own.
        "-dhtClient",
    ]
    listen = _listen(lab, host, ip)
    async with go_peer(
        *flags,
        host_addrs=[listen],
        command_prefix=lab.exec_argv(host, []),
        log_levels=HOLEPUNCH_LOGS,
        # Private with auto-relay, go announces only relayed addresses: none before it reserved.
        require_addrs=False,
    ) as go:
        await go.stream_handler([ECHO], _echo)
        with trio.fail_after(within):
            await learn_public_address(go, observers, within)

            def reserved(line: dict[str, Any]) -> bool:
                return any(a.startswith(f"{relay_addr}/p2p-circuit") for a in line["addrs"])

            try:
                line = await observers.wait_for(go.peer_id, reserved, within)
            except LabError:
                raise GoPeerError(
                    f"go listener did not announce a relayed address through {relay_addr}; "
                    f"last identify: {observers.latest(go.peer_id)}",
                    stderr=go.stderr,
                ) from None
        relayed = next(a for a in line["addrs"] if a.startswith(f"{relay_addr}/p2p-circuit"))
        target = relayed if "/p2p/" + go.peer_id in relayed else f"{relayed}/p2p/{go.peer_id}"
        yield GoListener(go, target, listen)


@dataclass(frozen=True)
class Direct:
    """A direct connection go holds: its remote address, and when we learned of it."""

    addr: str
    seen_at: float


async def direct_connections(go: GoPeer, peer: str) -> list[str]:
    """Remote addresses of go's direct (not ``/p2p-circuit``) connections to ``peer``."""
    return [addr for p, addr in await go.connections() if p == peer and "/p2p-circuit" not in addr]


async def wait_direct(go: GoPeer, peer: str, since: int = 0) -> Direct:
    """Wait until go holds a direct connection to ``peer``: LIST_PEERS is asked now and after
    each log line of go's hole punching (from log index ``since``); no time limit of its own."""
    index = since
    seen_at = trio.current_time()
    while True:
        found = await direct_connections(go, peer)
        if found:
            return Direct(found[0], seen_at)
        line = await go.wait_log(index, lambda _line: True)
        index = go.logs.index(line) + 1
        seen_at = line.read_at


def holepunch_outcomes(go: GoPeer, since: int = 0) -> list[str]:
    """go's hole-punch log messages from log index ``since`` (for failure reports)."""
    return [
        f"{line.msg} {json.dumps(line.fields, default=str)}"
        for line in go.logs[since:]
        if line.logger == "p2p-holepunch"
    ]


@contextlib.asynccontextmanager
async def go_dialer(
    lab: NatLab, observers: Observers, ip: int = 6, host: str = "a", within: float = 30.0
) -> AsyncIterator[GoPeer]:
    """p2pd behind ``host``'s router, ready to be DCUtR's A: it learned its address from the
    observers and serves ``/libp2p/dcutr``. Dial with :func:`dial_and_wait_direct`."""
    async with go_peer(
        "-autonat",
        host_addrs=[_listen(lab, host, ip)],
        command_prefix=lab.exec_argv(host, []),
        log_levels=HOLEPUNCH_LOGS,
    ) as go:
        with trio.fail_after(within):
            await learn_public_address(go, observers, within)
        yield go


async def dial_and_wait_direct(go: GoPeer, target: str, limit: float) -> Result:
    """Make ``go`` dial ``target`` (a relayed address ending in the listener's ``/p2p/``) and
    wait up to ``limit`` seconds for a direct connection to the listener, in go's view.

    Returns a ``Result``: ``ms`` from go's CONNECT returning to the direct connection; a
    failure's ``reason`` is ``"relayed_dial_failed"`` or ``"timeout"`` (``detail``: go's
    hole-punch log lines)."""
    listener = target.rsplit("/p2p/", 1)[1]
    since = len(go.logs)
    began = trio.current_time()
    try:
        with trio.fail_after(limit):
            await go.connect(
                PeerID.from_string(listener), [target.rsplit("/p2p/", 1)[0]], int(limit)
            )
    except (GoPeerError, trio.TooSlowError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {"ok": False, "ms": None, "reason": "relayed_dial_failed", "detail": reason[:200]}
    relayed_at = trio.current_time()
    with trio.move_on_at(began + limit):
        direct = await wait_direct(go, listener, since)
        return {
            "ok": True,
            "ms": (direct.seen_at - relayed_at) * 1000,
            "reason": None,
            "detail": None,
            "addr": direct.addr,
        }
    return {
        "ok": False,
        "ms": None,
        "reason": "timeout",
        "detail": "; ".join(holepunch_outcomes(go, since))[-600:] or "go logged no hole punch",
    }


async def go_dialer_run(
    lab: NatLab,
    target: str,
    observers: Observers,
    limit: float = 30.0,
    ip: int = 6,
    host: str = "a",
) -> Result:
    """One run of a fresh go dialer (new process, identity and port) against ``target``: for
    the hole-punch benchmarks (``benchmarks/holepunch.py``'s ``Result``). Start-up and learning
    its address are not timed; a start-up that fails is a failed run (``"go_error"``)."""
    try:
        async with go_dialer(lab, observers, ip=ip, host=host) as go:
            result = await dial_and_wait_direct(go, target, limit)
    except (GoPeerError, trio.TooSlowError, LabError) as exc:
        return {"ok": False, "ms": None, "reason": "go_error", "detail": str(exc)[:200]}
    return result


# Our dialer without examples/nat/dialer.py's echo: p2pd serves protocols through its control
# socket and closes that socket as soon as the remote half-closes, so the example's echo (send,
# half-close, read) gets its stream reset by a go listener (go-libp2p-daemon's stream pipe, not
# DCUtR). Connects to argv[1] (a relayed address) from listen address argv[2] and prints the
# hole punch's outcome: {"event": "result", "ok": true, "ms" (from the relayed connection's
# opening to the direct one), "addr", "attempt"} or {"ok": false, "reason", "detail"}.
OUR_DIALER = """
import json, sys
sys.path.insert(0, {root!r})
import trio
from libp2p import Host
from libp2p.relay.circuit_v2 import HolePunchFailed, HolePunchSucceeded

async def main():
    async with Host(listen=[sys.argv[2]]) as host:
        with host.events.subscribe(HolePunchSucceeded, HolePunchFailed) as outcomes:
            relayed = await host.connect(sys.argv[1])
            async for ev in outcomes:
                if ev.peer != relayed.remote_peer:
                    continue
                if isinstance(ev, HolePunchSucceeded):
                    out = dict(ok=True, ms=ev.elapsed * 1000, addr=str(ev.direct_addr),
                               attempt=ev.attempt)
                else:
                    out = dict(ok=False, reason=ev.reason.value, detail=str(ev.detail),
                               attempts=ev.attempts)
                print(json.dumps(dict(event="result", **out)), flush=True)
                return

trio.run(main)
"""


def start_our_plain_dialer(lab: NatLab, target: str, listen: str, host: str = "a") -> Program:
    """:data:`OUR_DIALER` in ``host``, dialing ``target`` from ``listen``."""
    return lab.spawn_python(
        host, OUR_DIALER.format(root=str(REPO_ROOT)), target, listen, name=f"dialer@{host}"
    )


async def our_plain_dialer_run(
    lab: NatLab, target: str, limit: float = 30.0, ip: int = 6, host: str = "a"
) -> Result:
    """One run of :data:`OUR_DIALER` (a fresh process, identity and port) against ``target``,
    bounded by ``limit`` seconds: a ``Result``."""
    listen = (
        f"/ip6/::/tcp/{lab.fresh_port()}" if ip == 6 else f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}"
    )
    program = start_our_plain_dialer(lab, target, listen, host)
    try:
        deadline = time.monotonic() + limit
        while True:
            line = await trio.to_thread.run_sync(program.expect, deadline - time.monotonic())
            if line.get("event") == "result":
                break
    except LabError as exc:
        reason = "run_timeout" if "no output within" in str(exc) else "dialer_exited"
        return {"ok": False, "ms": None, "reason": reason, "detail": str(exc)[-200:]}
    finally:
        if program.popen.poll() is None:
            program.popen.kill()
    if line["ok"]:
        return {
            "ok": True,
            "ms": line["ms"],
            "reason": None,
            "detail": f"attempt {line['attempt']}",
            "addr": line["addr"],
        }
    return {"ok": False, "ms": None, "reason": line["reason"], "detail": line["detail"]}


def relay_addr_in(addrs: Sequence[str], lab: NatLab, ip: int = 6) -> str:
    """The one of ``addrs`` on the relay's public address in IP version ``ip``."""
    public = lab.ip6("relay") if ip == 6 else lab.ip("relay")
    return next(a for a in addrs if f"/{public}/" in a)
