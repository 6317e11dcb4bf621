"""Port mapping against real router software: miniupnpd 2.3.1 (Debian's miniupnpd-nftables)
on the lab's home router ``ra``, speaking UPnP IGD, NAT-PMP and PCP.

Our host runs in ``a`` (behind ``ra``) with one protocol forced at a time, gets a mapping,
and a host on the internet (``relay``) connects to the mapped external address: a libp2p
connection that proves the peer behind it is ours. The lease is short (4 s), so it is renewed
within the test; after the host shuts down, miniupnpd no longer has the mapping (asked with
UPnP ``GetSpecificPortMappingEntry``, which lists NAT-PMP and PCP mappings too: they are the
same nftables rules) and its nftables chain has no DNAT rule left.

miniupnpd refuses to forward while its external address is in a reserved range, and all of
the lab's are (``getifaddr.c``: 198.51.100.0/24 is "RFC5737 Documentation (TEST-NET-2)").
``ext_perform_stun=yes`` is how it works here: it asks the lab's STUN server (stund, two
addresses) with four CHANGE-REQUEST combinations; when all four answers come back unchanged
(``upnpstun.c``: not "restrictive"), ``update_ext_ip_addr_from_stun`` sets
``disable_port_forwarding = restrictive_nat`` (0) and never checks the STUN address against
the reserved list, so forwarding is enabled with external address 198.51.100.1.

Behind the carrier-grade NAT (``double-nat``: ``ra``'s WAN is 100.64.1.2) miniupnpd refuses
every mapping; the host reports why, per protocol.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.natlab.lab import NatLab, Program, require_port_mapping

pytestmark = pytest.mark.natlab

STEP = 20.0
LEASE = 4

#: Our host in the lab: listens, maps with the protocols given, prints every port-mapping
#: event as a JSON line, and shuts down when stdin closes.
HOST = r"""
import json, sys, time, trio
from libp2p import (
    Host, HostConfig, PortMappingChanged, PortMappingConfig, PortMappingProtocol,
)

async def main(port, protocols, lease, retry):
    config = PortMappingConfig(
        protocols=tuple(PortMappingProtocol(p) for p in protocols.split(",")),
        lease=float(lease), retry_min=float(retry),
    )
    host = Host(
        listen=[f"/ip4/0.0.0.0/tcp/{port}"],
        config=HostConfig(port_mapping=config, autonat_client=None, hole_punching=None),
    )
    began = time.monotonic()

    def report(event):
        line = {"event": type(event).__name__, "t": time.monotonic() - began}
        if isinstance(event, PortMappingChanged):
            m = event.mapping
            line.update(
                change=event.change.value, protocol=m.protocol.value, internal=str(m.internal),
                external=str(m.external), lease=m.lease, public=m.external_is_public,
                not_public_reason=m.not_public_reason, gateway=m.gateway,
            )
        else:
            line.update(failure=event.failure.name, reason=event.reason,
                        details=list(event.details))
        print(json.dumps(line), flush=True)

    host.port_mapper.on_mappings_changed.append(report)
    async with host:
        print(json.dumps({"event": "ready", "peer": str(host.peer_id)}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
    print(json.dumps({"event": "closed", "mappings": len(host.port_mapper.mappings)}), flush=True)

trio.run(main, *sys.argv[1:])
"""

#: A host on the internet that dials an address and says whom it reached.
DIALER = r"""
import json, sys, trio
from libp2p import Host

async def main(addr):
    async with Host() as host:
        with trio.fail_after(10):
            conn = await host.connect(addr)
        print(json.dumps({"event": "connected", "peer": str(conn.remote_peer),
                          "remote": str(conn.remote_addr)}), flush=True)

trio.run(main, *sys.argv[1:])
"""

#: Asks the router's miniupnpd, over UPnP, what it maps on an external port.
QUERY = r"""
import json, sys, trio
from libp2p.portmap import upnp
from libp2p.portmap.client import gateway_deadline, http_request, upnp_call

async def main(location, port):
    with gateway_deadline(5, "description"):
        response = await http_request("GET", location)
    service = upnp.parse_description(response.body, location)[0]
    with gateway_deadline(5, "GetSpecificPortMappingEntry"):
        result = await upnp_call(service, "GetSpecificPortMappingEntry", [
            ("NewRemoteHost", ""), ("NewExternalPort", port), ("NewProtocol", "TCP")])
    if isinstance(result, upnp.UpnpFault):
        print(json.dumps({"fault": result.code, "description": result.description}))
    else:
        print(json.dumps({"entry": result}))

trio.run(main, *sys.argv[1:])
"""


def until(program: Program, event: str, within: float = STEP, **match: Any) -> dict[str, Any]:
    """The next line of ``program`` with this ``event`` (and these fields)."""
    deadline = time.monotonic() + within
    while True:
        line = program.expect(max(deadline - time.monotonic(), 0.01))
        if line["event"] == event and all(line.get(k) == v for k, v in match.items()):
            return line


def mapping_on_router(lab: NatLab, external_port: int) -> dict[str, Any]:
    """miniupnpd's own answer about ``external_port`` (UPnP GetSpecificPortMappingEntry)."""
    location = f"http://{lab.router_lan_ip('a')}:5000/rootDesc.xml"
    done = lab.run("a", [*_python(), "-c", QUERY, location, str(external_port)])
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def _python() -> list[str]:
    import sys

    return [sys.executable]


@pytest.fixture(autouse=True)
def _need_miniupnpd() -> None:
    require_port_mapping()


@pytest.mark.parametrize("protocol", ["upnp", "nat-pmp", "pcp"])
def test_each_protocol_maps_renews_and_removes_with_miniupnpd(nat_lab: Any, protocol: str) -> None:
    began = time.monotonic()
    # PCP clamps lifetimes to min_lifetime (120 s by default); 2 s lets the short lease stand.
    lab: NatLab = nat_lab(port_mapping=("ra",), port_mapping_options={"min_lifetime": "2"})
    started = time.monotonic()
    port = lab.fresh_port()
    host = lab.spawn_python("a", HOST, str(port), protocol, str(LEASE), "1")
    peer = until(host, "ready")["peer"]
    added = until(host, "PortMappingChanged", change="added")
    public_ip = lab.public_ip("a")
    assert added["protocol"] == protocol
    assert added["internal"] == f"/ip4/{lab.ip('a')}/tcp/{port}"
    assert added["external"] == f"/ip4/{public_ip}/tcp/{port}"  # miniupnpd keeps the port
    assert added["gateway"] == lab.router_lan_ip("a")
    assert added["lease"] == LEASE
    assert added["public"], added

    # From the internet, through the router's mapping, to our host.
    dialer = lab.spawn_python("relay", DIALER, f"{added['external']}/p2p/{peer}")
    connected = until(dialer, "connected")
    assert connected["peer"] == peer
    assert lab.miniupnpd_redirects("ra") == {port: f"{lab.ip('a')}:{port}"}
    entry = mapping_on_router(lab, port)["entry"]
    assert entry["NewInternalClient"] == lab.ip("a")
    assert entry["NewInternalPort"] == str(port)

    renewed = until(host, "PortMappingChanged", within=LEASE + 5, change="renewed")
    assert renewed["external"] == added["external"]
    # Renewed at half the lease (the clock starts at the ADDED event).
    assert LEASE / 2 - 0.5 <= renewed["t"] - added["t"] <= LEASE / 2 + 1.5, (added, renewed)

    host.close_stdin()
    removed = until(host, "PortMappingChanged", change="removed")
    assert removed["external"] == added["external"]
    assert until(host, "closed")["mappings"] == 0
    assert host.wait(10) == 0
    assert lab.miniupnpd_redirects("ra") == {}
    gone = mapping_on_router(lab, port)
    assert gone.get("fault") == 714, gone  # NoSuchEntryInArray
    print(
        f"{protocol}: lab+miniupnpd {started - began:.2f} s; mapping {added['t']:.3f} s after "
        f"the host started; renewed after {renewed['t'] - added['t']:.2f} s (lease {LEASE} s)"
    )


def test_all_protocols_answer_and_pcp_is_preferred_over_nat_pmp(nat_lab: Any) -> None:
    lab: NatLab = nat_lab(port_mapping=("ra",))
    port = lab.fresh_port()
    host = lab.spawn_python("a", HOST, str(port), "upnp,pcp,nat-pmp", "600", "1")
    added = until(host, "PortMappingChanged", change="added")
    # miniupnpd answers NAT-PMP and PCP on port 5351 in the same instant, and the SSDP answer
    # after its own short delay: PCP is used, whatever the order of the first two answers.
    assert added["protocol"] in ("pcp", "upnp"), added
    print(f"all protocols: {added['protocol']} mapped {added['t']:.3f} s after the host started")
    host.close_stdin()
    until(host, "PortMappingChanged", change="removed")
    assert host.wait(10) == 0


@pytest.mark.parametrize("stun", [False, True], ids=["wan-address", "stun"])
def test_behind_a_carrier_grade_nat_miniupnpd_refuses_and_we_say_why(
    nat_lab: Any, stun: bool
) -> None:
    began = time.monotonic()
    lab: NatLab = nat_lab(topology="double-nat", port_mapping=("ra",), port_mapping_stun=stun)
    started = time.monotonic()
    log = "\n".join(lab.miniupnpd("ra").lines)
    if stun:
        # Its STUN test gets one answer of four through the CGNAT: "restrictive".
        assert "1 response out of 4 received" in log
        assert "Port forwarding is now disabled" in log
    else:
        assert "Reserved / private IP address 100.64.1.2 on ext interface wan0" in log
    port = lab.fresh_port()
    host = lab.spawn_python("a", HOST, str(port), "upnp,pcp,nat-pmp", "600", "30")
    failed = until(host, "PortMappingFailed")
    assert failed["failure"] == "NO_EXTERNAL_ADDRESS", failed
    details = "\n".join(failed["details"])
    assert "upnp: router refused: UPnP 501 ActionFailed" in details or (
        "upnp: port forwarding disabled on router: UPnP 501" in details
    ), details
    assert "nat-pmp: port forwarding disabled on router: NAT-PMP result 3" in details, details
    if not stun:
        # Without STUN it reports its WAN address, 100.64.1.2, and we say what that means.
        assert (
            "router's external address 100.64.1.2 is in the shared address space (RFC 6598): "
            "a carrier-grade NAT is in front" in details
        ), details
    host.close_stdin()
    assert host.wait(10) == 0
    print(f"double-nat (stun={stun}): lab+miniupnpd {started - began:.2f} s; {failed}")


@pytest.mark.parametrize(
    ("protocol", "options"),
    [
        ("upnp", {}),  # IGD v2: AddAnyPortMapping, miniupnpd picks the port
        ("upnp", {"force_igd_desc_v1": "yes"}),  # IGD v1: we try random ports
        ("nat-pmp", {}),
        ("pcp", {}),
    ],
    ids=["upnp-igd2", "upnp-igd1", "nat-pmp", "pcp"],
)
def test_two_hosts_behind_one_router_want_the_same_port(
    nat_lab: Any, protocol: str, options: dict[str, str]
) -> None:
    """a holds external port P; b listens on P too and gets another external port, which
    reaches b (not a) from the internet."""
    lab: NatLab = nat_lab(topology="same-nat", port_mapping=("ra",), port_mapping_options=options)
    port = lab.fresh_port()
    first = lab.spawn_python("a", HOST, str(port), protocol, "600", "1")
    first_added = until(first, "PortMappingChanged", change="added")
    assert first_added["external"] == f"/ip4/{lab.public_ip('a')}/tcp/{port}"
    second = lab.spawn_python("b", HOST, str(port), protocol, "600", "1")
    peer_b = until(second, "ready")["peer"]
    second_added = until(second, "PortMappingChanged", change="added")
    external = second_added["external"]
    assert external.startswith(f"/ip4/{lab.public_ip('b')}/tcp/")
    assert external != first_added["external"]
    redirects = lab.miniupnpd_redirects("ra")
    other = int(external.rsplit("/", 1)[1])
    assert redirects == {port: f"{lab.ip('a')}:{port}", other: f"{lab.ip('b')}:{port}"}
    dialer = lab.spawn_python("relay", DIALER, f"{external}/p2p/{peer_b}")
    assert until(dialer, "connected")["peer"] == peer_b
    for host in (first, second):
        host.close_stdin()
        until(host, "PortMappingChanged", change="removed")
        assert host.wait(10) == 0
    assert lab.miniupnpd_redirects("ra") == {}
    print(f"{protocol} {options}: second host got {external}")


def test_a_router_that_stops_answering_loses_the_mapping_and_it_comes_back(
    nat_lab: Any,
) -> None:
    """miniupnpd is stopped (SIGTERM, by PID): the renewal at half the lease gets no answer,
    the lease runs out and the mapping is LOST; once miniupnpd runs again, the mapper
    discovers it anew and maps again. (miniupnpd 2.3.1 leaves its nftables rules behind when it
    exits -- its shutdown only rewrites the lease file -- so LOST says that nobody renews the
    lease any more, not that packets stop at once.)"""
    lab: NatLab = nat_lab(port_mapping=("ra",))
    port = lab.fresh_port()
    host = lab.spawn_python("a", HOST, str(port), "nat-pmp", str(LEASE), "1")
    added = until(host, "PortMappingChanged", change="added")
    assert lab.stop_miniupnpd("ra") == 0
    assert lab.miniupnpd_redirects("ra") == {port: f"{lab.ip('a')}:{port}"}
    failed = until(host, "PortMappingFailed", within=LEASE + 5)
    assert failed["reason"] == "renewal failed: nat-pmp: no answer before the lease ended"
    lost = until(host, "PortMappingChanged", within=LEASE + 5, change="lost")
    assert lost["external"] == added["external"]
    # When the lease runs out: not before, and not a request timeout later.
    assert LEASE <= lost["t"] - added["t"] <= LEASE + 0.5, (added, lost)
    lab.start_miniupnpd("ra")
    again = until(host, "PortMappingChanged", within=STEP, change="added")
    assert again["external"] == added["external"]
    host.close_stdin()
    until(host, "PortMappingChanged", change="removed")
    assert host.wait(10) == 0
    print(
        f"lost {lost['t'] - added['t']:.2f} s after the mapping (lease {LEASE} s); "
        f"mapped again {again['t'] - lost['t']:.2f} s after that"
    )


def test_the_listener_example_reports_its_port_mapping(nat_lab: Any) -> None:
    """``listener.py --port-mapping`` behind a miniupnpd router prints the mapping."""
    from tests.examples.vocabulary import check_line

    lab: NatLab = nat_lab(port_mapping=("ra",))
    relay = lab.spawn_example(
        "relay", "relay.py", "--listen", f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}"
    )
    ready = until(relay, "ready")
    relay_addr = next(a for a in ready["addrs"] if f"/ip4/{lab.ip('relay')}/" in a)
    port = lab.fresh_port()
    listener = lab.spawn_example(
        "a", "listener.py", "--relay", relay_addr, "--listen", f"/ip4/0.0.0.0/tcp/{port}",
        "--port-mapping",
    )  # fmt: skip
    line = until(listener, "port_mapping")
    check_line(line, "listener")
    assert line["change"] == "added"
    assert line["external"] == f"/ip4/{lab.public_ip('a')}/tcp/{port}"
    assert line["external_is_public"] is True
    assert lab.miniupnpd_redirects("ra") == {port: f"{lab.ip('a')}:{port}"}
