"""AutoNAT v2 through a real NAT: our server on the lab's internet, our clients behind router
A and on a public host.

* Behind an endpoint-independent NAT that drops unsolicited packets, the client's observed
  address (its listen port, mapped by the NAT for the connection to the server) is
  UNREACHABLE: the server dials back from another port, which the NAT's filter drops --
  although our client dialed the server from that very listen port (port reuse), so a
  dial-back from the server's listen port would have slipped through the mapping.
  With a router that rejects (RST) instead, the answer comes at once.
* A public host's listen address is REACHABLE.
* The amplification guard with real, distinct IPs: a client behind A asks about the public
  host's address (not its own IP): it pays the dial data first, and the server's dial then
  finds another peer there (E_DIAL_ERROR -- no third party is harmed and we learn nothing).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.natlab.lab import NatLab, Program

pytestmark = pytest.mark.natlab

STEP = 20.0

SERVER = """
import json, sys, trio
from libp2p import Host, HostConfig
from libp2p.host.autonat.v2 import AutoNATv2ServerConfig

async def main(port):
    config = HostConfig(
        autonat_client=None,
        hole_punching=None,
        # A short dial timeout: an unreachable address costs the test this much.
        autonat_v2_server=AutoNATv2ServerConfig(dial_timeout=2.0, dial_data_wait=0.0),
    )
    async with Host(listen=[f"/ip4/0.0.0.0/tcp/{port}"], config=config) as host:
        print(json.dumps({"event": "ready", "peer": str(host.peer_id),
                          "addrs": [str(a) for a in host.addrs]}), flush=True)
        await trio.wrap_file(sys.stdin).readline()
        stats = host.autonat_v2_server.stats
        print(json.dumps({"event": "stats", "dial_status": dict(stats.dial_status),
                          "dial_data_bytes": stats.dial_data_bytes}), flush=True)

trio.run(main, int(sys.argv[1]))
"""

CLIENT = """
import json, sys, trio
from multiaddr import Multiaddr
from libp2p import Host, HostConfig

async def main(server, port, asked):
    config = HostConfig(autonat_client=None, hole_punching=None)
    async with Host(listen=[f"/ip4/0.0.0.0/tcp/{port}"], config=config) as host:
        conn = await host.connect(server)
        await host.identify.wait_identified(conn)
        observed = host.address_candidates(min_observers=1)
        addrs = [Multiaddr(a) for a in json.loads(asked)] or observed
        check = await host.autonat_v2.check(conn.remote_peer, addrs)
        print(json.dumps({"event": "check", "observed": [str(a) for a in observed],
                          "addr": str(check.addr) if check.addr else None,
                          "outcome": check.outcome.value, "verified": check.verified,
                          "dial_data": check.dial_data, "detail": check.detail,
                          "elapsed": check.elapsed}), flush=True)

trio.run(main, sys.argv[1], int(sys.argv[2]), sys.argv[3])
"""


def start_server(lab: NatLab) -> tuple[Program, str]:
    server = lab.spawn_python("relay", SERVER, str(lab.fresh_port()), name="v2-server")
    ready = server.expect(STEP)
    (addr,) = [a for a in ready["addrs"] if lab.ip("relay") in a]
    return server, f"{addr}/p2p/{ready['peer']}"


def run_client(lab: NatLab, host: str, server: str, asked: list[str] | None = None) -> Any:
    import json

    port = lab.fresh_port()
    client = lab.spawn_python(host, CLIENT, server, str(port), json.dumps(asked or []))
    line = client.expect(STEP)
    assert line["event"] == "check", line
    client.wait(STEP)
    line["port"] = port
    return line


def finish(server: Program) -> dict[str, Any]:
    server.close_stdin()
    stats = server.expect(STEP)
    server.wait(STEP)
    return stats


@pytest.mark.parametrize(
    "lab", [{"a": "eim", "filtering": "drop"}, {"a": "eim", "filtering": "reject"}], indirect=True
)
def test_behind_a_nat_the_observed_address_is_unreachable(lab: NatLab) -> None:
    server, server_addr = start_server(lab)
    result = run_client(lab, "a", server_addr)
    public_a = lab.public_ip("a")
    assert result["observed"] == [f"/ip4/{public_a}/tcp/{result['port']}"], result
    assert result["outcome"] == "unreachable", result
    assert result["addr"] == result["observed"][0]
    assert result["verified"] is False
    assert result["dial_data"] == 0  # the observed IP itself: no dial data
    public = run_client(lab, "relay2", server_addr)
    assert public["outcome"] == "reachable", public
    assert public["verified"] is True
    assert public["addr"] == f"/ip4/{lab.ip('relay2')}/tcp/{public['port']}"
    stats = finish(server)
    assert stats["dial_status"] == {"E_DIAL_ERROR": 1, "OK": 1}, stats
    print(
        f"\nlab ({lab.filtering['a']}): unreachable behind NAT in {result['elapsed']:.3f} s "
        "(server dial timeout 2 s), "
        f"reachable public host in {public['elapsed'] * 1000:.1f} ms"
    )


@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
def test_another_ip_costs_dial_data_first(lab: NatLab) -> None:
    server, server_addr = start_server(lab)
    victim = f"/ip4/{lab.ip('relay2')}/tcp/{lab.fresh_port()}"
    result = run_client(lab, "a", server_addr, [victim])
    assert 30_000 <= result["dial_data"] <= 100_000, result
    assert result["addr"] == victim
    # Nothing of ours listens there: the server's dial fails, and says so.
    assert result["outcome"] == "unreachable", result
    stats = finish(server)
    assert stats["dial_data_bytes"] == result["dial_data"]
