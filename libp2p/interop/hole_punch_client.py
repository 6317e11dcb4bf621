"""``hole-punch-client``: this library's client for the libp2p test-plans hole-punch suite.

The suite (``hole-punch-interop`` in libp2p/test-plans) runs two clients of any pair of
implementations behind two NAT routers, with a relay and a Redis server on the "internet"
between them, and checks that the dialing client gets a direct connection through DCUtR. What a
client must do (the suite's README, and what its rust and go clients do):

1. Read ``MODE`` (``listen`` or ``dial``) and ``TRANSPORT`` (the suite knows ``tcp`` and
   ``quic``; this library speaks TCP only, so anything but ``tcp`` is an error, exit 2).
2. Connect to Redis (``redis:6379`` in the suite; ``REDIS_ADDR=host:port`` overrides it here)
   and ``BLPOP RELAY_TCP_ADDRESS`` with no timeout: the relay pushes its address
   (``/ip4/.../tcp/.../p2p/<relay id>``) there, once for each client.
3. Connect to the relay; identify tells us our address as the relay sees it (the NAT's
   mapping of our listen port, which is what a hole punch needs).
4. ``listen``: reserve a slot on the relay, ``RPUSH LISTEN_CLIENT_PEER_ID <own peer id>``,
   and stay up until killed (the listener answers the dialer's relayed connection with DCUtR,
   as role B). It never exits on its own.
5. ``dial``: ``BLPOP LISTEN_CLIENT_PEER_ID``, dial ``<relay>/p2p-circuit/p2p/<listener>``,
   wait for the hole punch, ping the listener over the direct connection (twice on one
   stream, the first carrying the 0-RTT protocol negotiation; the second is the result) and
   print
   ``{"rtt_to_holepunched_peer_millis":N}`` on stdout (whole milliseconds, rounded down, as
   the rust and go clients do; compact JSON as they print it), then exit 0. A hole punch that
   fails exits 1.

Everything else (logs, errors) goes to stderr: the suite reads the dialer's last stdout line as
its result. The suite kills a run after 60 s.

``hole-punch-relay`` (:func:`relay_main`) is the other half of a run: a Circuit Relay v2 relay
that pushes its address to ``RELAY_TCP_ADDRESS`` twice, as the suite's own relay does, so a run
can be made of this library's parts alone (``examples/hole-punch-interop/`` and
``tests/natlab/contract.py`` do).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import trio
from multiaddr import Multiaddr

from .. import ping as ping_protocol
from ..exceptions import Libp2pError, LocalUsageError, RemoteProtocolError
from ..host import Host, HostConfig
from ..peer.id import InvalidPeerIDError, PeerID
from ..relay.circuit_v2 import (
    HolePunchConfig,
    HolePunchError,
    HolePunchFailed,
    HolePunchFailure,
    HolePunchSucceeded,
    RelayConfig,
)
from .redis import DEFAULT_REDIS_ADDR, RedisClient, connect_when_ready, parse_redis_addr

__all__ = [
    "LISTEN_CLIENT_PEER_ID",
    "RELAY_TCP_ADDRESS",
    "REPORT_KEY",
    "ContractConfigError",
    "ContractDataError",
    "ContractSettings",
    "main",
    "parse_report",
    "relay_main",
    "report_line",
    "run_dialer",
    "run_listener",
    "run_relay",
]

log = logging.getLogger("hole-punch-client")
relay_log = logging.getLogger("hole-punch-relay")

#: The Redis list the relay pushes its TCP address to (the suite's name).
RELAY_TCP_ADDRESS: Final = "RELAY_TCP_ADDRESS"
#: The Redis list the listener pushes its peer ID to (the suite's name).
LISTEN_CLIENT_PEER_ID: Final = "LISTEN_CLIENT_PEER_ID"
#: The one key of the dialer's result line.
REPORT_KEY: Final = "rtt_to_holepunched_peer_millis"
#: Where the clients listen: every interface, a port the OS picks (as the suite's clients do).
LISTEN_ADDR: Final = "/ip4/0.0.0.0/tcp/0"
#: The same in IPv6, for a relay whose pushed address is IPv6 (the suite's is IPv4): a client
#: listens in the relay's IP version, so that it reaches the relay from its listen port and
#: the relay observes the address a hole punch needs.
LISTEN_ADDR6: Final = "/ip6/::/tcp/0"
#: How many times the relay pushes its address: once for each client's BLPOP.
RELAY_ADDRESS_PUSHES: Final = 2
#: Seconds the dialer waits for the hole punch's outcome after the relayed connection opened
#: (DCUtR gives up by itself well before; this only guards against a listener that never
#: starts it, so that the dialer fails with a reason inside the suite's 60 s).
OUTCOME_TIMEOUT: Final = 45.0

#: Exit codes.
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2


class ContractConfigError(LocalUsageError):
    """The environment does not describe a run this client can do (``MODE``, ``TRANSPORT``,
    ``REDIS_ADDR``)."""


class ContractDataError(RemoteProtocolError):
    """A value read from Redis (the relay's address, the listener's peer ID) is malformed."""


@dataclass(frozen=True, slots=True)
class ContractSettings:
    """What a client is asked to do, from its environment (:meth:`from_env`)."""

    #: ``"listen"`` or ``"dial"``.
    mode: str
    #: Always ``"tcp"`` (the only transport of this library).
    transport: str
    #: ``host:port`` of the Redis server.
    redis_addr: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ContractSettings:
        """Read ``MODE``, ``TRANSPORT`` and ``REDIS_ADDR``; :class:`ContractConfigError`
        says what is wrong."""
        mode = env.get("MODE", "")
        if mode not in ("listen", "dial"):
            raise ContractConfigError(f"MODE must be 'listen' or 'dial', not {mode!r}")
        transport = env.get("TRANSPORT", "")
        if transport != "tcp":
            what = "is not set" if not transport else f"is {transport!r}"
            raise ContractConfigError(
                f"TRANSPORT {what}: this client speaks only 'tcp' (no QUIC in this library)"
            )
        redis_addr = env.get("REDIS_ADDR") or DEFAULT_REDIS_ADDR
        try:
            parse_redis_addr(redis_addr)
        except LocalUsageError as exc:
            raise ContractConfigError(f"REDIS_ADDR: {exc}") from None
        return cls(mode, transport, redis_addr)


def report_line(rtt_seconds: float) -> str:
    """The dialer's result line for a round trip of ``rtt_seconds``.

    Whole milliseconds rounded down (rust's ``Duration::as_millis``, go's
    ``Duration.Milliseconds``), as compact JSON (``serde_json`` and ``encoding/json`` print no
    spaces): ``{"rtt_to_holepunched_peer_millis":201}``.
    """
    if not rtt_seconds >= 0:  # also refuses NaN
        raise LocalUsageError(f"a round-trip time is >= 0 s, not {rtt_seconds!r}")
    return json.dumps({REPORT_KEY: int(rtt_seconds * 1000)}, separators=(",", ":"))


def parse_report(stdout: str) -> int:
    """The RTT (ms) in a dialer's whole stdout, which must be exactly one result line.

    Stricter than the suite (which takes the last line): the output must be one line, a JSON
    object with :data:`REPORT_KEY` alone, whose value is a non-negative integer. Raises
    ``ValueError`` saying what is wrong otherwise.
    """
    lines = stdout.splitlines()
    if len(lines) != 1 or not stdout.endswith("\n"):
        raise ValueError(f"want exactly one line on stdout, got {stdout!r}")
    try:
        value = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise ValueError(f"stdout is not JSON: {lines[0]!r} ({exc})") from None
    if not isinstance(value, dict) or set(value) != {REPORT_KEY}:
        raise ValueError(f"want an object with {REPORT_KEY!r} alone, got {lines[0]!r}")
    rtt = value[REPORT_KEY]
    if not isinstance(rtt, int) or isinstance(rtt, bool) or rtt < 0:
        raise ValueError(f"{REPORT_KEY} must be a non-negative integer, got {rtt!r}")
    return rtt


def _host_config() -> HostConfig:
    # AutoNAT is left out: the suite's relay does not serve it, and the clients know they are
    # behind NATs. Hole punching is on with the default address policy, which keeps private
    # ranges (the suite's docker networks are private 172.16.0.0/12 subnets).
    return HostConfig(hole_punching=HolePunchConfig(), autonat_client=None)


def _relay_addr(raw: bytes) -> Multiaddr:
    try:
        addr = Multiaddr(raw.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractDataError(f"{RELAY_TCP_ADDRESS}: not a multiaddr: {raw[:200]!r}") from exc
    names = [proto.name for proto, _ in addr.items()]
    if "p2p-circuit" in names or not names or names[-1] != "p2p" or "tcp" not in names:
        raise ContractDataError(
            f"{RELAY_TCP_ADDRESS}: want the relay's TCP address ending in /p2p/<id>, got {addr}"
        )
    return addr


def _peer_id(raw: bytes) -> PeerID:
    try:
        return PeerID.from_string(raw.decode())
    except (UnicodeDecodeError, InvalidPeerIDError) as exc:
        raise ContractDataError(f"{LISTEN_CLIENT_PEER_ID}: not a peer ID: {raw[:200]!r}") from exc


async def _pop(redis: RedisClient, key: str) -> bytes:
    log.info("waiting for %s in Redis", key)
    value = await redis.blpop(key, 0)
    if value is None:  # BLPOP with timeout 0 only returns with a value
        raise RemoteProtocolError(f"Redis answered BLPOP {key} 0 with a timeout")
    log.info("%s = %s", key, value.decode(errors="replace"))
    return value


def _listen_for(relay: Multiaddr, listen: Sequence[str] | None) -> list[str]:
    """``listen`` if given, else every interface in the IP version of the relay's address."""
    if listen is not None:
        return list(listen)
    return [LISTEN_ADDR6 if str(relay).startswith("/ip6/") else LISTEN_ADDR]


async def _join_relay(host: Host, relay: Multiaddr) -> None:
    """Connect to the relay and let identify tell us how it sees us."""
    conn = await host.connect(relay)
    await host.identify.wait_identified(conn)
    log.info(
        "connected to the relay %s; it sees us at %s",
        conn.remote_peer,
        ", ".join(map(str, host.address_candidates(min_observers=1))) or "(no address)",
    )


async def run_listener(
    settings: ContractSettings,
    *,
    listen: Sequence[str] | None = None,
    task_status: trio.TaskStatus[PeerID] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The ``listen`` role: reserve on the relay, publish our peer ID, serve until cancelled.

    ``listen``: our listen addresses (by default the contract's: every interface, any port,
    in the IP version of the relay's address).
    ``task_status.started`` gets our peer ID once it is in Redis (for ``nursery.start``).
    """
    redis = await connect_when_ready(settings.redis_addr)
    async with redis:
        relay = _relay_addr(await _pop(redis, RELAY_TCP_ADDRESS))
        async with Host(listen=_listen_for(relay, listen), config=_host_config()) as host:
            log.info("peer %s listening on %s", host.peer_id, host.listen_addrs)
            await _join_relay(host, relay)
            with host.events.subscribe(HolePunchSucceeded, HolePunchFailed) as outcomes:
                relayed = await host.listen(f"{relay}/p2p-circuit")
                log.info("reserved on the relay: %s", ", ".join(map(str, relayed)))
                await redis.rpush(LISTEN_CLIENT_PEER_ID, str(host.peer_id))
                log.info("pushed our peer ID to %s", LISTEN_CLIENT_PEER_ID)
                task_status.started(host.peer_id)
                # The host answers relayed connections with DCUtR by itself; report outcomes.
                async for outcome in outcomes:
                    if isinstance(outcome, HolePunchSucceeded):
                        log.info(
                            "hole punch with %s succeeded (attempt %d, %.0f ms): %s",
                            outcome.peer,
                            outcome.attempt,
                            outcome.elapsed * 1000,
                            outcome.direct_addr,
                        )
                    else:
                        log.warning(
                            "hole punch with %s failed after %d attempt(s): %s (%s)",
                            outcome.peer,
                            outcome.attempts,
                            outcome.reason.value,
                            outcome.detail,
                        )


async def run_dialer(settings: ContractSettings, *, listen: Sequence[str] | None = None) -> float:
    """The ``dial`` role: hole punch to the listener, then ping it over the direct connection.

    ``listen``: our listen addresses (by default the contract's: every interface, any port,
    in the IP version of the relay's address).

    Returns the round trip in seconds; raises :class:`~libp2p.relay.circuit_v2.HolePunchError`
    when no direct connection came of the relayed one.
    """
    redis = await connect_when_ready(settings.redis_addr)
    async with redis:
        relay = _relay_addr(await _pop(redis, RELAY_TCP_ADDRESS))
        async with Host(listen=_listen_for(relay, listen), config=_host_config()) as host:
            log.info("peer %s listening on %s", host.peer_id, host.listen_addrs)
            await _join_relay(host, relay)
            listener = _peer_id(await _pop(redis, LISTEN_CLIENT_PEER_ID))
            target = f"{relay}/p2p-circuit/p2p/{listener}"
            with host.events.subscribe(HolePunchSucceeded, HolePunchFailed) as outcomes:
                relayed = await host.connect(target)
                log.info("relayed connection to %s through %s", listener, relayed.remote_addr)
                outcome: HolePunchSucceeded | HolePunchFailed | None = None
                with trio.move_on_after(OUTCOME_TIMEOUT):
                    async for event in outcomes:
                        if event.peer == listener:
                            outcome = event
                            break
            if outcome is None:
                raise HolePunchError(
                    HolePunchFailure.TIMEOUT,
                    f"no hole punch outcome within {OUTCOME_TIMEOUT:.0f} s of the relayed "
                    "connection (the listener starts DCUtR)",
                )
            if isinstance(outcome, HolePunchFailed):
                raise HolePunchError(
                    outcome.reason, f"after {outcome.attempts} attempt(s): {outcome.detail}"
                )
            direct = outcome.connection
            log.info(
                "hole punch succeeded (attempt %d, %.0f ms after the relayed connection): %s",
                outcome.attempt,
                outcome.elapsed * 1000,
                direct.remote_addr,
            )
            # 0-RTT negotiation (the suite asks for it) when identify says the listener serves
            # ping: the protocol proposal travels with the first ping, so that round trip also
            # times how the listener answers a proposal with data behind it (js-libp2p takes
            # two round trips there). The second ping times the connection alone, as the rust
            # client's does (its ping runs on an already negotiated stream): that one is the
            # result.
            lazy = host.peerstore.supports(listener, ping_protocol.PROTOCOL_ID)
            stream = await direct.new_stream(ping_protocol.PROTOCOL_ID, lazy=lazy)
            try:
                first, rtt = await ping_protocol.ping(stream, 2)
            finally:
                await stream.aclose()
            log.info(
                "ping over the direct connection: %.1f ms (first ping, with the negotiation: "
                "%.1f ms)",
                rtt * 1000,
                first * 1000,
            )
    return rtt


async def run_relay(
    redis_addr: str,
    listen: Sequence[str] = (LISTEN_ADDR,),
    *,
    task_status: trio.TaskStatus[Multiaddr] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A relay for a contract run: serve Circuit Relay v2 and push our address to Redis.

    The address pushed is our first non-loopback IPv4 TCP address (when we listen on no
    IPv4 address, our first global IPv6 one; loopback when we listen on nothing else) with
    ``/p2p/<id>``, pushed
    ``RELAY_ADDRESS_PUSHES`` (2) times, one per client, as the suite's relay does. Runs until
    cancelled; ``task_status.started`` gets the address.
    """
    config = HostConfig(relay_service=RelayConfig(), hole_punching=None, autonat_client=None)
    redis = await connect_when_ready(redis_addr)
    async with redis, Host(listen=list(listen), config=config) as host:
        ipv4 = [a for a in host.addrs if str(a).startswith("/ip4/")]
        ipv6 = [a for a in host.addrs if str(a).startswith("/ip6/")]
        # IPv6 only when we listen on no IPv4 address (a lab run over IPv6); loopback only when
        # it is all we listen on (a run on one machine).
        candidates = (
            [a for a in ipv4 if not str(a).startswith("/ip4/127.")]
            or [a for a in ipv6 if not str(a).startswith(("/ip6/::1/", "/ip6/fe80:"))]
            or ipv4
            or ipv6
        )
        if not candidates:
            raise ContractConfigError(f"the relay has no TCP address: {host.addrs}")
        addr = Multiaddr(f"{candidates[0]}/p2p/{host.peer_id}")
        for _ in range(RELAY_ADDRESS_PUSHES):
            await redis.rpush(RELAY_TCP_ADDRESS, str(addr))
        relay_log.info("relay %s pushed %s to %s", host.peer_id, addr, RELAY_TCP_ADDRESS)
        task_status.started(addr)
        await trio.sleep_forever()


def _setup_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``: trio wraps those of its tasks in groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _run(name: str, fn: Callable[[], Awaitable[int]]) -> int:
    """Run ``trio.run(fn)``; map errors to exit codes with one line on stderr."""
    try:
        result = trio.run(fn)
    except BaseException as exc:  # sorted below; anything unexpected is re-raised
        errors = [e for e in _leaves(exc) if not isinstance(e, KeyboardInterrupt)]
        if not errors:
            return EXIT_OK  # Ctrl-C
        if all(isinstance(e, Libp2pError) for e in errors):
            code = EXIT_USAGE if all(isinstance(e, LocalUsageError) for e in errors) else 1
            print(f"{name}: error: {'; '.join(map(str, errors))}", file=sys.stderr)
            return code
        raise
    return result


def main(env: Mapping[str, str] | None = None) -> int:
    """The ``hole-punch-client`` console script; returns the exit code."""
    _setup_logging()
    try:
        settings = ContractSettings.from_env(os.environ if env is None else env)
    except ContractConfigError as exc:
        print(f"hole-punch-client: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    log.info(
        "MODE=%s TRANSPORT=%s REDIS_ADDR=%s", settings.mode, settings.transport, settings.redis_addr
    )

    async def client() -> int:
        if settings.mode == "listen":
            await run_listener(settings)
            return EXIT_OK
        rtt = await run_dialer(settings)
        # The one line on stdout, flushed before the exit the suite waits for.
        sys.stdout.write(report_line(rtt) + "\n")
        sys.stdout.flush()
        return EXIT_OK

    return _run("hole-punch-client", client)


def relay_main(env: Mapping[str, str] | None = None) -> int:
    """The ``hole-punch-relay`` console script (``REDIS_ADDR``, ``RELAY_LISTEN``)."""
    _setup_logging()
    environ = os.environ if env is None else env
    redis_addr = environ.get("REDIS_ADDR") or DEFAULT_REDIS_ADDR
    listen = environ.get("RELAY_LISTEN") or LISTEN_ADDR
    try:
        parse_redis_addr(redis_addr)
        Multiaddr(listen)
    except (LocalUsageError, ValueError) as exc:
        print(f"hole-punch-relay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def relay() -> int:
        await run_relay(redis_addr, [listen])
        return EXIT_OK

    return _run("hole-punch-relay", relay)


if __name__ == "__main__":
    # ``python -m libp2p.interop.hole_punch_client [relay]``: the two console scripts.
    sys.exit(relay_main() if sys.argv[1:] == ["relay"] else main())
