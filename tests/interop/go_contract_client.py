"""A go-libp2p peer behind the test-plans hole-punch contract: an adapter of ours.

    MODE=listen|dial TRANSPORT=tcp REDIS_ADDR=host:port NATLAB_OBSERVERS="<addr> ..." \\
        python -m tests.interop.go_contract_client

test-plans has a go client of its own (built on a newer go-libp2p); the pinned go peer here is
the stock daemon, p2pd (go-libp2p v0.32.1, ``tests/interop/gopeer.py``), which knows nothing of
Redis. This adapter follows the contract (env, Redis, stdout) on go's behalf, as
``tests/interop/js_contract_client.py`` does for js, and leaves the libp2p work to p2pd,
driven over its control socket:

- ``listen`` (DCUtR's B): BLPOP the relay's address, run p2pd with the listener flags of
  ``tests/interop/golab.py`` (auto-relay with that one static relay, AutoNAT told "private"),
  let it learn its public address (below), wait until its addresses include one through the
  relay (its reservation), RPUSH its peer ID, and run until SIGTERM (which stops p2pd too).
- ``dial`` (A): BLPOP the relay's address, run p2pd (``-autonat``), let it learn its public
  address, BLPOP the listener's peer ID, CONNECT to ``<relay>/p2p-circuit/p2p/<listener>``,
  wait until go holds a direct connection to the listener (LIST_PEERS, asked after each of
  go's hole-punch log lines), then ping over it and print the contract's one stdout line;
  exit 0. Exit 1 when no direct connection came within :data:`DIRECT_TIMEOUT` or the ping did
  not go over a direct connection.

Both listen on every interface, any port, in the IP version of the relay's address.

The RTT: p2pd's control protocol has no ping, so the adapter opens a ``/ipfs/ping/1.0.0``
stream through the daemon (STREAM_OPEN) and pings by hand: 32 random bytes out, the same 32
back, twice on the stream. go negotiates the protocol lazily (identify told it the listener
serves ping), so the first ping carries the negotiation; the second is the result, as with our
client. The figure includes, besides the round trip over the direct connection, the adapter's
unix-socket hop to p2pd and p2pd's copying between that socket and the libp2p stream, both
ways (local, well under a millisecond). go opens streams on its best connection and never on a
relayed (limited) one unless asked; to be sure, while the stream is open the adapter has p2pd
list its connections with their streams (SIGUSR1) and refuses a ping whose stream is not on a
direct connection.

Our lab's addition, not part of the contract: ``NATLAB_OBSERVERS``, the full addresses (with
``/p2p/``, space-separated) of the lab's observer hosts (``golab.start_observers``).
go v0.32.1 serves ``/libp2p/dcutr`` only once four distinct observers reported the same public
address of its own (``golab``'s module docstring), which the suite's two peers and relay cannot
give. Before anything else, p2pd connects to every observer and the adapter waits for go's log
line "Host now has a public address. Starting holepunch protocol." Without the variable go is
left as it is (and will not hole punch).

Everything but the result line goes to stderr: the adapter's log, then p2pd's log (its
``p2p-holepunch`` and ``autorelay`` loggers at debug) when the adapter ends.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping

import trio

from libp2p.interop.hole_punch_client import (
    LISTEN_CLIENT_PEER_ID,
    RELAY_TCP_ADDRESS,
    ContractConfigError,
    ContractSettings,
    report_line,
)
from libp2p.interop.redis import RedisClient, connect_when_ready
from libp2p.peer.id import PeerID
from tests.interop import golab
from tests.interop.gopeer import GoPeer, GoPeerError, go_peer

log = logging.getLogger("go-contract-client")

#: Our lab's addition to the contract (module docstring).
OBSERVERS_ENV = "NATLAB_OBSERVERS"
#: Seconds go may take to learn its public address from the observers. go checks its observed
#: addresses 0.25, 0.75, 1.75, 3.75, 7.75 s, ... after it started (doubling, capped at 5 s).
LEARN_TIMEOUT = 20.0
#: Seconds the listener waits for its reservation to show in its addresses.
RESERVE_TIMEOUT = 20.0
#: Seconds the dialer waits for the direct connection after asking for the relayed one.
DIRECT_TIMEOUT = 40.0
PING = "/ipfs/ping/1.0.0"
PING_SIZE = 32
#: go's loggers whose lines say what it does (and wake the waits on go's state).
GO_LOGS = {"p2p-holepunch": "debug", "autorelay": "debug"}
_PUBLIC = "Starting holepunch protocol"


class GoContractError(Exception):
    """go did not do its part of the run (the message says which)."""


async def _pop(redis: RedisClient, key: str) -> str:
    log.info("waiting for %s in Redis", key)
    value = await redis.blpop(key, 0)
    assert value is not None  # BLPOP with no timeout answers with a value
    log.info("%s = %s", key, value.decode(errors="replace"))
    return value.decode()


def _observers(environ: Mapping[str, str]) -> list[str]:
    addrs = environ.get(OBSERVERS_ENV, "").split()
    for addr in addrs:
        if "/p2p/" not in addr:
            raise ContractConfigError(f"{OBSERVERS_ENV}: want addresses with /p2p/, got {addr!r}")
    return addrs


def _listen(relay: str) -> str:
    return "/ip6/::/tcp/0" if relay.startswith("/ip6/") else "/ip4/0.0.0.0/tcp/0"


async def _learn_public_address(go: GoPeer, observers: list[str]) -> None:
    """Connect go to every observer; wait until it starts its hole-punch service."""
    if not observers:
        log.warning("no %s: go will not learn a public address (no hole punch)", OBSERVERS_ENV)
        return
    async with trio.open_nursery() as nursery:
        for addr in observers:
            base, peer = addr.rsplit("/p2p/", 1)
            nursery.start_soon(go.connect, PeerID.from_string(peer), [base])
    with trio.move_on_after(LEARN_TIMEOUT):
        await go.wait_log(0, lambda line: _PUBLIC in line.msg)
        log.info("go learned its public address: it serves %s", golab.DCUTR)
        return
    raise GoContractError(
        f"go did not start its hole-punch service within {LEARN_TIMEOUT:.0f} s of connecting "
        f"to {len(observers)} observers"
    )


async def _wait_reserved(go: GoPeer, relay: str) -> str:
    """go's address through ``relay``, once its reservation shows in its addresses."""
    index = 0
    with trio.move_on_after(RESERVE_TIMEOUT):
        while True:
            _peer, addrs = await go.identify()
            relayed = [a for a in addrs if a.startswith(f"{relay}/p2p-circuit")]
            if relayed:
                return relayed[0]
            # Re-asked after each of go's auto-relay / hole-punch log lines, and at least once
            # a second: go logs "adding new relay" before it stores the reservation and
            # recomputes its addresses (another goroutine), and logs nothing after that.
            with trio.move_on_after(1.0):
                line = await go.wait_log(index, lambda _line: True)
                index = go.logs.index(line) + 1
    raise GoContractError(f"go announced no address through {relay} within {RESERVE_TIMEOUT} s")


def _dump(go: GoPeer) -> None:
    print(f"p2pd log (tail):\n{go.stderr[-12000:]}", file=sys.stderr, flush=True)


async def listen(settings: ContractSettings, observers: list[str]) -> int:
    redis = await connect_when_ready(settings.redis_addr)
    async with redis:
        relay = await _pop(redis, RELAY_TCP_ADDRESS)
        async with go_peer(
            "-autonat",
            "-forceReachabilityPrivate",
            "-autoRelay",
            "-trustedRelays",
            relay,
            "-relayDiscovery=false",
            "-dhtClient",
            host_addrs=[_listen(relay)],
            log_levels=GO_LOGS,
            require_addrs=False,
        ) as go:
            try:
                log.info("go listener %s", go.peer_id)
                await _learn_public_address(go, observers)
                relayed = await _wait_reserved(go, relay)
                log.info("go reserved on the relay: %s", relayed)
                await redis.rpush(LISTEN_CLIENT_PEER_ID, go.peer_id)
                log.info("pushed go's peer ID to %s", LISTEN_CLIENT_PEER_ID)
                await trio.sleep_forever()  # until main() cancels us on SIGTERM
            finally:
                _dump(go)
    return 0


async def _ping(stream: trio.abc.HalfCloseableStream) -> float:
    payload = secrets.token_bytes(PING_SIZE)
    began = time.perf_counter()
    await stream.send_all(payload)
    echoed = b""
    while len(echoed) < PING_SIZE:
        chunk = await stream.receive_some(PING_SIZE - len(echoed))
        if not chunk:
            raise GoContractError("the ping stream closed before the echo")
        echoed += chunk
    rtt = time.perf_counter() - began
    if echoed != payload:
        raise GoContractError("the listener echoed other bytes than the ping's")
    return rtt


async def _ping_direct(go: GoPeer, listener: str) -> float:
    """Two pings on one stream that go opened on a direct connection; the second's RTT."""
    _info, stream = await go.stream_open(PeerID.from_string(listener), [PING])
    async with stream:
        first = await _ping(stream)
        rtt = await _ping(stream)
        carriers = [
            conn.multiaddr
            for conn in await go.dump_connections()
            if conn.peer_id == listener and PING in conn.streams
        ]
    log.info("ping streams to the listener on: %s", carriers)
    if not carriers or any("/p2p-circuit" in addr for addr in carriers):
        raise GoContractError(f"the ping stream is not on a direct connection: {carriers}")
    log.info(
        "ping over %s: %.1f ms (first ping, with the negotiation: %.1f ms)",
        carriers[0],
        rtt * 1000,
        first * 1000,
    )
    return rtt


async def dial(settings: ContractSettings, observers: list[str]) -> int:
    redis = await connect_when_ready(settings.redis_addr)
    async with redis:
        relay = await _pop(redis, RELAY_TCP_ADDRESS)
        async with go_peer("-autonat", host_addrs=[_listen(relay)], log_levels=GO_LOGS) as go:
            try:
                log.info("go dialer %s", go.peer_id)
                await _learn_public_address(go, observers)
                listener = await _pop(redis, LISTEN_CLIENT_PEER_ID)
                result = await golab.dial_and_wait_direct(
                    go, f"{relay}/p2p-circuit/p2p/{listener}", DIRECT_TIMEOUT
                )
                if not result["ok"]:
                    log.error("no direct connection: %s (%s)", result["reason"], result["detail"])
                    return 1
                log.info(
                    "direct connection to %s %.0f ms after the relayed one",
                    result["addr"],
                    result["ms"],
                )
                rtt = await _ping_direct(go, listener)
            finally:
                _dump(go)
    sys.stdout.write(report_line(rtt) + "\n")
    sys.stdout.flush()
    return 0


async def main() -> int:
    try:
        settings = ContractSettings.from_env(os.environ)
        observers = _observers(os.environ)
    except ContractConfigError as exc:
        print(f"go-contract-client: error: {exc}", file=sys.stderr)
        return 2
    role = listen if settings.mode == "listen" else dial
    code = 1
    # SIGTERM (how the suite, and tests/natlab/contract.py, end a client) cancels the role,
    # whose clean-up stops p2pd: it must not outlive us.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def run_role() -> None:
                nonlocal code
                try:
                    code = await role(settings, observers)
                except (GoContractError, GoPeerError) as exc:
                    log.error("%s", exc)
                    code = 1
                nursery.cancel_scope.cancel()

            nursery.start_soon(run_role)
            async for signum in signals:
                log.info("signal %d: stopping", signum)
                code = 0 if settings.mode == "listen" else 1
                nursery.cancel_scope.cancel()
                break
    return code


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    sys.exit(trio.run(main))
