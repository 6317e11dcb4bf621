"""The limits of a relayed connection: protocols opt in, and the relay cuts the circuit.

A relay with limits (go-libp2p's defaults: 2 minutes and 128 KiB each way) resets the
circuit when either runs out. Only protocols that say so (``allow_limited=True``) run on
such a connection; everything else waits for a direct one. This file runs on loopback with a
deliberately small data limit (tests/docs/test_snippets.py runs it).
"""

from __future__ import annotations

import trio

from libp2p import Host, HostConfig, Libp2pError, LimitedConnectionError, NetStream
from libp2p.relay.circuit_v2 import RelayCircuitClosed, RelayConfig

ECHO = "/echo/1.0.0"


async def echo(stream: NetStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.aclose()


async def main() -> None:
    with trio.fail_after(30):
        await run()


async def run() -> None:
    small = HostConfig(relay_service=RelayConfig(circuit_duration=60, circuit_data=4096))
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=small) as relay,
        Host(listen=["/ip4/127.0.0.1/tcp/0"]) as listener,
        Host() as dialer,
    ):
        listener.set_stream_handler(ECHO, echo, allow_limited=True)
        relay_addr = f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}"
        (relayed_addr,) = await listener.listen(f"{relay_addr}/p2p-circuit")
        conn = await dialer.connect(f"{relayed_addr}/p2p/{listener.peer_id}")
        print("limited:", conn.limited, "-", conn.limit)

        # 1. A protocol that did not opt in is refused locally, with the reason.
        try:
            await dialer.new_stream(listener.peer_id, ECHO)
        except LimitedConnectionError as exc:
            print("refused:", str(exc).split(";")[0])

        # 2. One that did runs, until the relay's data limit closes the circuit.
        with relay.events.subscribe(RelayCircuitClosed) as closed:
            stream = await dialer.new_stream(listener.peer_id, ECHO, allow_limited=True)
            sent = 0
            try:
                while True:
                    await stream.send_all(b"x" * 1024)
                    sent += 1024
                    await stream.receive_some()
            except Libp2pError as exc:  # StreamReset, or ConnectionClosedError
                print(f"circuit cut after {sent} bytes: {type(exc).__name__}")
            event = await closed.receive()
            print(f"relay: circuit closed ({event.reason}), {event.bytes} bytes relayed")


if __name__ == "__main__":
    trio.run(main)
