"""How long one AutoNAT v2 check takes on loopback, ours against ours and against js.

Cases (each ``--runs`` times, one server connection reused; the server's per-peer rate
limit is lifted for the measurement):

* ``reachable``    -- the client asks about its own listen address;
* ``unreachable``  -- an address where nothing listens (connection refused at once);
* ``dial-data``    -- an address on 127.0.0.2 while the request comes from 127.0.0.1: the
  server asks 30-100 kB of dial data first (its random wait before dialing set to 0);
* ``js-reachable`` / ``js-dial-data`` -- the same against @libp2p/autonat-v2 as the server
  (the ``public_ranges`` js peer: stock js refuses loopback), when node is available.

Prints one line per case: median, p90 and max of ``AddressCheck.elapsed`` in ms, and the
outcome counts. Usage: ``python benchmarks/autonat_v2.py [--runs 50] [--no-js]``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from multiaddr import Multiaddr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from libp2p import AddressPolicy, Host, HostConfig
from libp2p.host.autonat.v2 import (
    AddressCheck,
    AutoNATv2ClientConfig,
    AutoNATv2ServerConfig,
)
from libp2p.peer.id import PeerID


def report(name: str, checks: list[AddressCheck]) -> None:
    ms = sorted(c.elapsed * 1000 for c in checks)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    outcomes = Counter(c.outcome.value for c in checks)
    paid = statistics.mean(c.dial_data for c in checks)
    print(
        f"{name:<14} n={len(ms):<4} median {statistics.median(ms):7.2f} ms  p90 {p90:7.2f} ms"
        f"  max {ms[-1]:7.2f} ms  dial data {paid:8.0f} B  {dict(outcomes)}"
    )


def closed_port() -> Multiaddr:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return Multiaddr(f"/ip4/127.0.0.1/tcp/{sock.getsockname()[1]}")


async def measure(runs: int, check: Callable[[], Awaitable[AddressCheck]]) -> list[AddressCheck]:
    return [await check() for _ in range(runs)]


async def main(runs: int, with_js: bool) -> None:
    server_config = HostConfig(
        autonat_client=None,
        hole_punching=None,
        autonat_v2_server=AutoNATv2ServerConfig(
            addresses=AddressPolicy.local_testing(),
            peer_rate=10**6,
            global_rate=10**6,
            dial_data_rate=10**6,
            dial_data_wait=0.0,
        ),
    )
    client_config = HostConfig(
        autonat_client=None, hole_punching=None, autonat_v2_client=AutoNATv2ClientConfig()
    )
    listen = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.2/tcp/0"]
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=server_config) as server,
        Host(listen=listen, config=client_config) as client,
    ):
        assert client.autonat_v2 is not None
        v2 = client.autonat_v2
        conn = await client.connect(f"{server.listen_addrs[0]}/p2p/{server.peer_id}")
        await client.identify.wait_identified(conn)
        own, other = client.listen_addrs
        closed = closed_port()
        report("reachable", await measure(runs, lambda: v2.check(server.peer_id, [own])))
        report("unreachable", await measure(runs, lambda: v2.check(server.peer_id, [closed])))
        report("dial-data", await measure(runs, lambda: v2.check(server.peer_id, [other])))
        if with_js:
            from tests.interop.jspeer import js_peer_available, js_serving_peer

            ok, why = js_peer_available()
            if not ok:
                print(f"js: skipped ({why})")
                return
            async with js_serving_peer("listen", autonat_v2=True, public_ranges=True) as js:
                jconn = await client.connect(js.addr)
                await client.identify.wait_identified(jconn)
                peer: PeerID = jconn.remote_peer
                report("js-reachable", await measure(runs, lambda: v2.check(peer, [own])))
                report("js-dial-data", await measure(runs, lambda: v2.check(peer, [other])))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--no-js", action="store_true")
    args = parser.parse_args()
    trio.run(main, args.runs, not args.no_js)
