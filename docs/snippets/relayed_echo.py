"""Reach a peer through a relay: a relay, a listener that reserves on it, a dialer.

In a real deployment each role runs on its own machine; here all three run on loopback so
that the test suite can run this file (tests/docs/test_snippets.py).
"""

from __future__ import annotations

import trio
from multiaddr import Multiaddr

from libp2p import AutoNATServerConfig, AutoNATv2ServerConfig, Host, HostConfig, NetStream
from libp2p.relay.circuit_v2 import RelayConfig

ECHO = "/echo/1.0.0"


# -- the relay (a public machine) --------------------------------------------------------------
def relay_host(listen: str) -> Host:
    """A relay with go-libp2p's limits, which also tells peers whether they are reachable."""
    config = HostConfig(
        relay_service=RelayConfig(),
        autonat_v2_server=AutoNATv2ServerConfig(),
        autonat_server=AutoNATServerConfig(),  # AutoNAT v1, for older peers
    )
    return Host(listen=[listen], config=config)


# -- the listener (behind a NAT) -----------------------------------------------------------------
async def echo(stream: NetStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.aclose()


async def listen_through(host: Host, relay_addr: str) -> list[Multiaddr]:
    """Serve /echo/1.0.0, also on relayed connections, and reserve a slot on the relay."""
    host.set_stream_handler(ECHO, echo, allow_limited=True)
    # "<relay addr>/p2p/<relay id>/p2p-circuit": reserve, and keep the reservation up.
    relayed = await host.listen(f"{relay_addr}/p2p-circuit")
    return [Multiaddr(f"{addr}/p2p/{host.peer_id}") for addr in relayed]


# -- the dialer (anywhere) ---------------------------------------------------------------------
async def dial_and_echo(host: Host, target: Multiaddr, message: bytes) -> bytes:
    """Connect to the listener's relayed address and echo ``message`` over the connection."""
    conn = await host.connect(target)
    print("relayed:", conn.relayed, "limits:", conn.limit)
    stream = await conn.new_stream(ECHO, allow_limited=True)
    await stream.send_all(message)
    await stream.send_eof()
    back = b""
    while data := await stream.receive_some():
        back += data
    return back


async def main() -> None:
    with trio.fail_after(30):
        await run()


async def run() -> None:
    async with (
        relay_host("/ip4/127.0.0.1/tcp/0") as relay,
        Host(listen=["/ip4/127.0.0.1/tcp/0"]) as listener,
        Host() as dialer,
    ):
        relay_addr = f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}"
        (target,) = await listen_through(listener, relay_addr)
        print("dial the listener at", target)
        back = await dial_and_echo(dialer, target, b"hello through the relay")
        assert back == b"hello through the relay", back
        print("echoed:", back.decode())


if __name__ == "__main__":
    trio.run(main)
