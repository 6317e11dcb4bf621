"""A js-libp2p peer behind the test-plans hole-punch contract: an adapter of ours.

    MODE=listen|dial TRANSPORT=tcp REDIS_ADDR=host:port python -m tests.interop.js_contract_client

js-libp2p has no client in the test-plans hole-punch suite. This adapter follows the contract
(env, Redis, stdout) on js's behalf, the way ``hole-punch-client`` does for our library, and
leaves the libp2p work to the pinned js peer (``tests/interop/js/peer.mjs``):

- ``listen``: BLPOP the relay's address, run ``peer.mjs listen --relay <relay> --dcutr``
  (DCUtR role B), RPUSH js's peer ID once its reservation shows in its addresses, and run
  until SIGTERM (which stops the js peer too).
- ``dial``: BLPOP the relay's address and the listener's peer ID, run ``peer.mjs listen
  --connect <relay>/p2p-circuit/p2p/<listener> --dcutr --ping-direct`` (role A), wait for
  js's ping over the direct connection and print its RTT as the contract's one stdout line
  (whole milliseconds rounded down), then exit 0; exit 1 when js reports no direct ping within
  the time limit.

``JS_HOLEPUNCH=stock`` runs stock @libp2p/dcutr; the default is ``fixed`` (the four fixes
js needs to hole punch, see tests/interop/jspeer.py: JsHolePunch). Everything but the result
line goes to stderr, the js peer's own log and event lines included.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any

import trio

from libp2p.interop.hole_punch_client import (
    LISTEN_CLIENT_PEER_ID,
    RELAY_TCP_ADDRESS,
    ContractConfigError,
    ContractSettings,
    report_line,
)
from libp2p.interop.redis import RedisClient, connect_when_ready
from tests.interop.jspeer import JsHolePunch, JsServingPeer, js_serving_peer

log = logging.getLogger("js-contract-client")

#: Seconds the dialer waits for js's direct ping after the relayed connection was asked for.
DIRECT_TIMEOUT = 45.0


async def _pop(redis: RedisClient, key: str) -> str:
    log.info("waiting for %s in Redis", key)
    value = await redis.blpop(key, 0)
    assert value is not None  # BLPOP with no timeout answers with a value
    log.info("%s = %s", key, value.decode(errors="replace"))
    return value.decode()


def _holepunch() -> JsHolePunch:
    kind = os.environ.get("JS_HOLEPUNCH", "fixed")
    if kind not in ("fixed", "stock"):
        raise ContractConfigError(f"JS_HOLEPUNCH must be 'fixed' or 'stock', not {kind!r}")
    return JsHolePunch.fixed() if kind == "fixed" else JsHolePunch.stock()


def _dump(peer: JsServingPeer) -> None:
    for event in peer.events:
        print(f"js event: {json.dumps(event)}", file=sys.stderr)
    print(f"js stderr (tail):\n{peer.stderr[-8000:]}", file=sys.stderr, flush=True)


async def listen(settings: ContractSettings, holepunch: JsHolePunch) -> int:
    redis = await connect_when_ready(settings.redis_addr)
    async with redis:
        relay = await _pop(redis, RELAY_TCP_ADDRESS)
        async with js_serving_peer(
            "listen",
            "--relay",
            relay,
            listen="/ip4/0.0.0.0/tcp/0",
            holepunch=holepunch,
            report_connections=True,
        ) as peer:
            try:
                log.info("js listener %s reserved: %s", peer.peer_id, peer.relayed_addrs)
                await redis.rpush(LISTEN_CLIENT_PEER_ID, peer.peer_id)
                await trio.sleep_forever()  # until main() cancels us on SIGTERM
            finally:
                _dump(peer)
    return 0


async def dial(settings: ContractSettings, holepunch: JsHolePunch) -> int:
    redis = await connect_when_ready(settings.redis_addr)
    async with redis:
        relay = await _pop(redis, RELAY_TCP_ADDRESS)
        listener = await _pop(redis, LISTEN_CLIENT_PEER_ID)
    async with js_serving_peer(
        "listen",
        "--connect",
        f"{relay}/p2p-circuit/p2p/{listener}",
        "--ping-direct",
        listen="/ip4/0.0.0.0/tcp/0",
        holepunch=holepunch,
        report_connections=True,
    ) as peer:
        pinged: dict[str, Any] | None = None
        with trio.move_on_after(DIRECT_TIMEOUT):
            pinged = await peer.wait_event("ping-direct", remotePeer=listener)
        _dump(peer)
    if pinged is None:
        log.error("js reported no ping over a direct connection within %.0f s", DIRECT_TIMEOUT)
        return 1
    log.info("js pinged %s over %s: %.1f ms", listener, pinged["remoteAddr"], pinged["rttMs"])
    sys.stdout.write(report_line(pinged["rttMs"] / 1000) + "\n")
    sys.stdout.flush()
    return 0


async def main() -> int:
    try:
        settings = ContractSettings.from_env(os.environ)
        holepunch = _holepunch()
    except ContractConfigError as exc:
        print(f"js-contract-client: error: {exc}", file=sys.stderr)
        return 2
    role = listen if settings.mode == "listen" else dial
    code = 1
    # SIGTERM (how the suite, and tests/natlab/contract.py, end a client) cancels the role,
    # whose clean-up stops the js peer: node must not outlive us.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def run_role() -> None:
                nonlocal code
                code = await role(settings, holepunch)
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
