"""The reachability report: whether peers can dial us, on which address, and what they should
expect.

``host.reachability`` is a :class:`~libp2p.ReachabilityReport`: the host's status (``PUBLIC``,
``PRIVATE`` or ``UNKNOWN``), every address of ours with its own status and how it is known,
our NAT's type, what a dialer should expect (dial us directly, hole punch, only a relay) and
the whole picture in one line. Every change is published as a ``ReachabilityReportChanged``.

The evidence here comes from one AutoNAT server on this machine, serving v2 (a dial-back on a
fresh connection that carries our nonce: proof) and v1 (for older peers). Two settings make that
enough, and are for a test on one machine only: loopback counts as public
(``public_ranges``; by default only globally routable addresses are worth checking), and one
server group decides (``min_servers=1``; by default two servers at different IPs must agree,
or one you trust, such as your own relay, named in ``trusted_servers``). The server must also
be allowed to dial loopback back: ``AddressPolicy.local_testing()``.
"""

from __future__ import annotations

import trio

from libp2p import (
    AddressPolicy,
    AutoNATClientConfig,
    AutoNATServerConfig,
    AutoNATv2ServerConfig,
    Expectation,
    Host,
    HostConfig,
    Reachability,
    ReachabilityConfig,
    ReachabilityReport,
    ReachabilityReportChanged,
)


async def watch_reachability(host: Host) -> ReachabilityReport:
    """Print each change of the report until the host's status is decided (the host keeps
    checking, and publishes every later change too)."""
    with host.events.subscribe(ReachabilityReportChanged) as changes:
        async for change in changes:
            report = change.report
            print(f"reachability: {report.status.value}, expect {report.expect.value}")
            print(f"  why: {report.reason}")
            for entry in report.addresses:
                print(f"  {entry.addr}: {entry.status.value} ({entry.reason})")
            if report.status is not Reachability.UNKNOWN:
                return report
    raise AssertionError("the event stream ended")  # only when the host closes


async def main() -> None:
    with trio.fail_after(30):
        await run()


async def run() -> None:
    local = AddressPolicy.local_testing()
    server_config = HostConfig(
        autonat_v2_server=AutoNATv2ServerConfig(addresses=local),
        autonat_server=AutoNATServerConfig(addresses=local),  # v1, for older peers
    )
    client_config = HostConfig(
        # The AutoNAT v2 client is on by default. v1's first check a second after start
        # (go's default waits 15 s).
        autonat_client=AutoNATClientConfig(boot_delay=1.0, addresses=local),
        # On one machine only: loopback is public, and one server decides.
        reachability=ReachabilityConfig(public_ranges=("127.0.0.0/8",), min_servers=1),
    )
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config) as server,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=client_config) as host,
    ):
        assert host.reachability.status is Reachability.UNKNOWN
        async with trio.open_nursery() as nursery:
            nursery.start_soon(host.connect, f"{server.listen_addrs[0]}/p2p/{server.peer_id}")
            report = await watch_reachability(host)
        assert report.status is Reachability.PUBLIC
        assert report.expect is Expectation.DIRECT
        # host.reachability is always the latest report.
        print("dial me at:", ", ".join(str(a) for a in host.reachability.public_addrs))


if __name__ == "__main__":
    trio.run(main)
