"""AutoNAT: learn whether peers can dial us directly, and react when that changes.

A host asks peers that serve AutoNAT (relays usually do) to dial it back. ``PUBLIC``: others
can dial us, no relay needed. ``PRIVATE``: we are behind a NAT or a firewall; reserve on a
relay (``HostConfig(static_relays=[...])`` does that by itself). On loopback, as here, the
server must be allowed to dial loopback back: ``AddressPolicy.local_testing()``.
"""

from __future__ import annotations

import trio

from libp2p import (
    AddressPolicy,
    AutoNATClientConfig,
    AutoNATServerConfig,
    Host,
    HostConfig,
    Reachability,
    ReachabilityChanged,
)


async def watch_reachability(host: Host) -> ReachabilityChanged:
    """Wait for AutoNAT's first verdict (it keeps checking, and publishes every flip)."""
    with host.events.subscribe(ReachabilityChanged) as changes:
        async for change in changes:
            where = f" at {change.address}" if change.address else ""
            print(f"reachability: {change.previous.value} -> {change.status.value}{where}")
            return change
    raise AssertionError("the event stream ended")  # only when the host closes


async def main() -> None:
    with trio.fail_after(30):
        await run()


async def run() -> None:
    local = AddressPolicy.local_testing()
    server_config = HostConfig(autonat_server=AutoNATServerConfig(addresses=local))
    # The first check a second after start (go's default waits 15 s).
    client_config = HostConfig(autonat_client=AutoNATClientConfig(boot_delay=1.0, addresses=local))
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config) as server,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config) as host,
    ):
        assert host.reachability is Reachability.UNKNOWN
        async with trio.open_nursery() as nursery:
            nursery.start_soon(host.connect, f"{server.listen_addrs[0]}/p2p/{server.peer_id}")
            change = await watch_reachability(host)
        assert change.status is Reachability.PUBLIC
        print("host.reachability is", host.reachability.value)


if __name__ == "__main__":
    trio.run(main)
