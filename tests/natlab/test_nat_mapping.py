"""The host learns its NAT's mapping type through real NATs.

Host a, behind router A, listens on a fresh port and dials the peers on relay and relay2 (two
public hosts at two IPs) from that port; both connections stay open. Behind an "eim" router
(port-preserving masquerade) both peers see router A's address with a's listen port: the host
ends up endpoint-independent. Behind a "symmetric" router (``masquerade fully-random``) they
see two random ports: endpoint-dependent, with a NatMappingChanged event that names both.

Host a runs in this process, its sockets created inside namespace a (``lab.netns``); the two
peers are separate processes in their namespaces.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import Host, NatMapping, NatMappingChanged
from tests.natlab.lab import NatLab, Program

pytestmark = pytest.mark.natlab

STEP = 10.0  # seconds any one step may take before the test fails

# A public peer: listens, prints its peer ID, runs until its stdin closes.
PEER = """
import json, sys, trio
from libp2p import Host

async def main(port):
    async with Host(listen=[f"/ip4/0.0.0.0/tcp/{port}"]) as host:
        print(json.dumps({"event": "ready", "peer": str(host.peer_id)}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)

trio.run(main, int(sys.argv[1]))
"""


def start_peer(lab: NatLab, where: str) -> tuple[Program, str]:
    port = lab.fresh_port()
    program = lab.spawn_python(where, PEER, str(port))
    return program, f"/ip4/{lab.ip(where)}/tcp/{port}"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("eim", NatMapping.ENDPOINT_INDEPENDENT), ("symmetric", NatMapping.ENDPOINT_DEPENDENT)],
)
def test_mapping_type_from_two_public_observers(
    nat_lab: Callable[..., NatLab], mode: str, expected: NatMapping
) -> None:
    lab = nat_lab(a=mode)
    peers = [start_peer(lab, "relay"), start_peer(lab, "relay2")]
    targets = [f"{addr}/p2p/{program.expect(STEP)['peer']}" for program, addr in peers]
    port = lab.fresh_port()
    observed: dict[str, object] = {}

    async def host_a() -> None:
        async with Host(listen=[f"/ip4/0.0.0.0/tcp/{port}"]) as host:
            hooked: list[NatMappingChanged] = []
            host.identify.on_nat_mapping_changed.append(hooked.append)
            with host.events.subscribe(NatMappingChanged) as changes:
                for target in targets:
                    await host.connect(target)
                with trio.fail_after(STEP):
                    observed["event"] = await changes.receive()
            observed["hooked"] = hooked
            observed["status"] = host.nat_mapping_status
            observed["mapping"] = host.nat_mapping

    with lab.netns("a"):
        trio.run(host_a)
    for program, _addr in peers:
        program.close_stdin()

    event = observed["event"]
    assert isinstance(event, NatMappingChanged)
    assert (event.previous, event.current) == (NatMapping.UNKNOWN, expected)
    assert observed["hooked"] == [event]
    assert observed["mapping"] is expected
    assert event.observers == (lab.ip("relay"), lab.ip("relay2"))
    (verdict,) = event.verdicts
    assert verdict.local_addr == Multiaddr(f"/ip4/{lab.ip('a')}/tcp/{port}")
    public = lab.public_ip("a")
    ips = {str(addr).split("/")[2] for addr in verdict.external}
    assert ips == {public}
    ports = [int(str(addr).split("/")[4]) for addr in verdict.external]
    if expected is NatMapping.ENDPOINT_INDEPENDENT:
        # Router A kept the listen port for both destinations.
        assert ports == [port, port]
        assert event.reason.startswith("endpoint-independent: ")
    else:
        assert len(set(ports)) == 2
        assert event.reason.startswith("endpoint-dependent: ")
        assert "on connections open at the same time" in event.reason
