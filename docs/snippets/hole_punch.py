"""Hole punching: a relayed connection becomes a direct one, and the app learns how it went.

Every host runs DCUtR; there is nothing to start. This file runs the three roles on loopback
(tests/docs/test_snippets.py runs it), so loopback addresses must count as addresses a peer
can dial: ``AddressPolicy.local_testing()``. Across real NATs keep the default policy.
"""

from __future__ import annotations

import trio
from multiaddr import Multiaddr

from libp2p import AddressPolicy, Connection, Host, HostConfig, NetStream
from libp2p.relay.circuit_v2 import (
    HolePunchConfig,
    HolePunchFailed,
    HolePunchSucceeded,
    RelayConfig,
)

ECHO = "/echo/1.0.0"


async def echo(stream: NetStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.aclose()


async def connect_and_punch(
    host: Host, target: Multiaddr
) -> tuple[Connection, HolePunchSucceeded | HolePunchFailed]:
    """Connect through the relay, then wait for DCUtR's verdict on that connection."""
    # Subscribe before connecting: the hole punch starts as soon as the connection is up.
    with host.events.subscribe(HolePunchSucceeded, HolePunchFailed) as outcomes:
        relayed = await host.connect(target)
        async for outcome in outcomes:
            if outcome.peer == relayed.remote_peer:
                return relayed, outcome
    raise AssertionError("the event stream ended")  # only when the host closes


async def main() -> None:
    with trio.fail_after(30):
        await run()


async def run() -> None:
    # Dialer and listener must both listen: the punch leaves from the listen port.
    local = HostConfig(hole_punching=HolePunchConfig(address_policy=AddressPolicy.local_testing()))
    relay_config = HostConfig(relay_service=RelayConfig())
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=relay_config) as relay,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=local) as listener,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=local) as dialer,
    ):
        listener.set_stream_handler(ECHO, echo)  # direct connections only: no allow_limited
        relay_addr = f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}"
        (relayed_addr,) = await listener.listen(f"{relay_addr}/p2p-circuit")
        target = Multiaddr(f"{relayed_addr}/p2p/{listener.peer_id}")

        relayed, outcome = await connect_and_punch(dialer, target)
        if isinstance(outcome, HolePunchFailed):
            # The relayed connection still works, within its limits (allow_limited=True).
            print("no direct connection:", outcome.reason.value, "-", outcome.detail)
            print("still connected through", relayed.remote_addr)
            raise SystemExit(1)
        print(f"direct connection to {outcome.direct_addr} on attempt {outcome.attempt}")
        print(f"relayed -> direct in {outcome.elapsed * 1000:.0f} ms")

        # New streams now go to the direct connection; a protocol that did not opt in to
        # limited connections just works.
        stream = await dialer.new_stream(listener.peer_id, ECHO)
        assert not stream.connection.relayed
        await stream.send_all(b"hello, directly")
        await stream.send_eof()
        back = b""
        while data := await stream.receive_some():
            back += data
        print("echoed:", back.decode())


if __name__ == "__main__":
    trio.run(main)
