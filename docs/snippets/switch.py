"""Keep talking across the switch from a relayed to a direct connection.

An app usually starts on the relayed connection (a protocol that may run there opts in with
``allow_limited=True``), waits for the direct connection, and opens its new streams there;
a stream already open on the relayed connection runs to its end, and only then is the relayed
connection closed (``HolePunchConfig.relay_close_grace`` after its last stream). The three
roles run here on loopback (tests/docs/test_snippets.py runs this file), so loopback addresses
must count as dialable: ``AddressPolicy.local_testing()``; across real NATs keep the default.
"""

from __future__ import annotations

import trio

from libp2p import AddressPolicy, Host, HostConfig, NetStream
from libp2p.relay.circuit_v2 import HolePunchConfig, HolePunchSucceeded, RelayConfig

CHAT = "/chat/1.0.0"


async def chat(stream: NetStream) -> None:
    """The listener's side: answer every message (an echo stands in for the app)."""
    while data := await stream.receive_some():
        await stream.send_all(b"re: " + data)
    await stream.aclose()


async def say(stream: NetStream, text: str) -> str:
    await stream.send_all(text.encode())
    return bytes(await stream.receive_some()).decode()


async def talk_across_the_switch(dialer: Host, target: str) -> None:
    """Connect through the relay, chat there, and carry on over the direct connection."""
    with dialer.events.subscribe(HolePunchSucceeded) as punched:
        relayed = await dialer.connect(target)
        peer = relayed.remote_peer
        # A stream on the relayed connection itself: limited, so the protocol opts in.
        early = await relayed.new_stream(CHAT, allow_limited=True)
        print("relayed:", await say(early, "hello over the relay"))

        # Wait for the direct connection (a hole punch, or a plain dial where one side is
        # reachable); the event says how it came about. Give up after a while: the relayed
        # connection keeps working if no direct one comes (then HolePunchFailed says why).
        with trio.fail_after(15):
            direct = await dialer.wait_for_connection(peer, direct=True)
            event = await punched.receive()
        print(f"direct connection to {direct.remote_addr} (attempt {event.attempt})")

    # New streams go to the direct connection; no allow_limited needed there.
    late = await dialer.new_stream(peer, CHAT)
    print("direct:", await say(late, "hello directly"), "| relayed:", late.connection.relayed)
    # The stream opened before the switch is still on the relayed connection, and works.
    print("early stream:", await say(early, "still here?"), "| relayed:", early.connection.relayed)
    await early.aclose()
    await late.aclose()
    # With its last stream gone, the relayed connection is closed after the grace.
    await relayed.wait_closed()
    print("relayed connection closed once idle")


async def main() -> None:
    local = HostConfig(
        hole_punching=HolePunchConfig(
            address_policy=AddressPolicy.local_testing(), relay_close_grace=0.5
        )
    )
    relay_config = HostConfig(relay_service=RelayConfig())
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=relay_config) as relay,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=local) as listener,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=local) as dialer,
    ):
        listener.set_stream_handler(CHAT, chat, allow_limited=True)
        relay_addr = f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}"
        (relayed_addr,) = await listener.listen(f"{relay_addr}/p2p-circuit")
        with trio.fail_after(30):
            await talk_across_the_switch(dialer, f"{relayed_addr}/p2p/{listener.peer_id}")


if __name__ == "__main__":
    trio.run(main)
