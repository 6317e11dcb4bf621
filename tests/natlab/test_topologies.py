"""The NAT lab's topologies and mapping modes checked with plain sockets (see ``topology.py``).

"same-nat" (one LAN, with and without hairpinning), "double-nat" (a CGNAT in front of each home
NAT), "ipv6" (dual stack, stateful IPv6 firewalls without translation), UDP mappings, and the
delaying switch in those topologies. As in ``test_lab.py``, small programs run inside the
namespaces and report JSON lines; every wait is for a line with a deadline.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

import pytest

from tests.natlab.lab import NatLab, Program, require_lab
from tests.natlab.test_lab import (
    CLIENT,
    PROBE,
    _assert_punched,
    _env,
    _program,
    _punchers,
    _start_server,
    hard_timeout,
)
from tests.natlab.topology import EIM_SHIFT_XOR, TOPOLOGIES

pytestmark = pytest.mark.natlab

# Listens on argv[1] and, from the same port, connects to the observer at argv[2]:argv[3]
# (a host with a mapping that also accepts connections on it, as a libp2p host with port
# reuse does); reports the observed address, then tells each client that connects the address
# it sees it from and reports it. Exits on stdin EOF.
MAPPED_SERVER = _program("""
port = int(sys.argv[1])
listener = reusable_socket(port)
listener.listen(16)
out = reusable_socket(port)
out.settimeout(5)
out.connect((sys.argv[2], int(sys.argv[3])))
say(observed=json.loads(read_line(out))["observed"])
kept = [out]

def serve():
    while True:
        conn, addr = listener.accept()
        conn.sendall((json.dumps({"observed": list(addr)[:2]}) + "\\n").encode())
        kept.append(conn)
        say(accepted=list(addr)[:2])

threading.Thread(target=serve, daemon=True).start()
exit_on_stdin_eof()
""")

# UDP observer on argv[1]: answers each datagram with the address it came from. With an
# observer "ip:port" as argv[2], it first asks that one (making a mapping for its port) and
# reports what it saw.
UDP_SERVER = _program("""
s = socket.socket(FAMILY, socket.SOCK_DGRAM)
s.bind((ANY, int(sys.argv[1])))
if len(sys.argv) > 2:
    ip, port = sys.argv[2].rsplit(":", 1)
    s.settimeout(0.5)
    for _ in range(20):
        s.sendto(b"?", (ip, int(port)))
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        break
    s.settimeout(None)
    say(observed=json.loads(data)["observed"])
say(listening=int(sys.argv[1]))

def serve():
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(json.dumps({"observed": list(addr)[:2]}).encode(), addr)

threading.Thread(target=serve, daemon=True).start()
exit_on_stdin_eof()
""")

# From UDP port argv[1], asks each "ip:port" observer in argv[2:] what it sees (resending until
# answered) and reports it.
UDP_CLIENT = _program("""
s = socket.socket(FAMILY, socket.SOCK_DGRAM)
s.bind((ANY, int(sys.argv[1])))
s.settimeout(0.5)
for target in sys.argv[2:]:
    ip, port = target.rsplit(":", 1)
    for _ in range(20):
        s.sendto(b"?", (ip, int(port)))
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        break
    say(target=target, observed=json.loads(data)["observed"])
exit_on_stdin_eof()
""")

# Times argv[3] TCP connects (SYN to SYN-ACK) to argv[1]:argv[2] after one warm-up connection
# (neighbour resolution through the switch).
CONNECT_TIMES = _program("""
import time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
warm = socket.socket(FAMILY)
warm.settimeout(10)
warm.connect((ip, port))
read_line(warm)
times = []
for _ in range(n):
    s = socket.socket(FAMILY)
    s.settimeout(10)
    began = time.monotonic()
    s.connect((ip, port))
    times.append(time.monotonic() - began)
    s.close()
say(times=times)
""")


def _probe(
    lab: NatLab, host: str, targets: list[dict[str, Any]], *, ipv6: bool = False
) -> list[str]:
    probe = lab.spawn_python(host, PROBE, json.dumps(targets), name=f"probe@{host}", env=_env(ipv6))
    return [probe.expect(15)["result"] for _ in targets]


def _observe(
    lab: NatLab, host: str, local_port: int, targets: list[str], *, ipv6: bool = False
) -> list[dict[str, Any]]:
    client = lab.spawn_python(
        host, CLIENT, str(local_port), *targets, name=f"client@{host}", env=_env(ipv6)
    )
    return [client.expect(10) for _ in targets]


def _mapped_server(
    lab: NatLab, host: str, port: int, observer_port: int, *, ipv6: bool = False
) -> tuple[Program, list[Any]]:
    relay = lab.ip6("relay") if ipv6 else lab.relay_ip
    server = lab.spawn_python(
        host,
        MAPPED_SERVER,
        str(port),
        relay,
        str(observer_port),
        name=f"mapped@{host}",
        env=_env(ipv6),
    )
    observed: list[Any] = server.expect(10)["observed"]
    return server, observed


def _routes(lab: NatLab, host: str) -> str:
    """The host's IPv4 and IPv6 routing tables."""
    v4: str = lab.run(host, ["ip", "route"]).stdout
    v6: str = lab.run(host, ["ip", "-6", "route"]).stdout
    return v4 + v6


# --- topologies --------------------------------------------------------------------------------

EXPECTED_ROUTERS = {
    "two-nats": ["ra", "rb"],
    "same-nat": ["ra"],
    "double-nat": ["ca", "cb", "ra", "rb"],
    "ipv6": ["ra", "rb"],
}


@hard_timeout(40)
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_topology_plan(nat_lab: Callable[..., NatLab], topology: str) -> None:
    lab = nat_lab(topology=topology)
    assert lab.routers == EXPECTED_ROUTERS[topology]
    assert lab.hosts == ["internet", "relay", "relay2", *lab.routers, "a", "b"]
    assert len(set(lab.namespaces)) == len(lab.hosts)
    for router in lab.routers:
        # No way out of the lab: no default route, in either family.
        assert "default" not in _routes(lab, router), router
        assert lab.run(router, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
    for host in ("internet", "relay", "relay2", "a", "b"):
        assert lab.run(host, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "0"
    for host in ("relay", "relay2"):
        assert "default" not in _routes(lab, host)

    # Every host reaches the relay and is seen at its public address.
    port = lab.fresh_port()
    server = _start_server(lab, "relay", port)
    for host in ("a", "b"):
        (report,) = _observe(lab, host, lab.fresh_port(), [f"{lab.relay_ip}:{port}"])
        assert report["local"][0] == lab.ip(host)
        assert report["observed"][0] == lab.public_ip(host)
        assert server.expect(10)["accepted"][0] == lab.public_ip(host)
    assert lab.public_ip("a") == "198.51.100.1"
    assert lab.public_ip("b") == ("198.51.100.1" if topology == "same-nat" else "198.51.100.2")
    if topology == "double-nat":
        assert (lab.ip("ra"), lab.ip("rb")) == ("100.64.1.2", "100.64.2.2")
        assert (lab.router_of("a"), lab.router_of("ra")) == ("ra", "ca")
        assert lab.public_ip("ra") == lab.ip("ca") == "198.51.100.1"
        assert "198.51.100.0/24 via 100.64.1.1 " in lab.run("ra", ["ip", "route"]).stdout
        assert lab.switch_ports == ["relay", "relay2", "ca", "cb"]
    if topology == "same-nat":
        assert lab.router_of("a") == lab.router_of("b") == "ra"
        assert lab.switch_ports == ["relay", "relay2", "ra"]

    # Nothing beyond the lab is reachable: the (innermost) router says so.
    unreachable = ("ENETUNREACH", "EHOSTUNREACH")
    target = {"proto": "tcp", "ip": "203.0.113.7", "port": 80, "timeout": 2}
    assert _probe(lab, "a", [target])[0] in unreachable
    if topology == "ipv6":
        target6 = {**target, "ip": "2001:db8:ffff::7"}
        assert _probe(lab, "a", [target6], ipv6=True)[0] in unreachable
        assert (
            "net.ipv6.conf.all.forwarding = 1"
            in lab.run("ra", ["sysctl", "net.ipv6.conf.all.forwarding"]).stdout
        )
    else:
        with pytest.raises(ValueError, match="has no IPv6"):
            lab.ip6("a")


def test_bad_topology_options_are_refused() -> None:
    require_lab()
    with pytest.raises(ValueError, match="topology must be one of"):
        NatLab(topology="triple-nat")
    with pytest.raises(ValueError, match="share one router"):
        NatLab("eim", "symmetric", topology="same-nat")
    with pytest.raises(ValueError, match="neither a site nor a router"):
        NatLab(filtering={"ca": "drop"})  # no CGNAT in two-nats
    with pytest.raises(ValueError, match="cgnat"):
        NatLab(topology="double-nat", cgnat="full-cone")
    with pytest.raises(ValueError, match="not a public host"):
        NatLab(topology="double-nat", delays={"ra": 0.01})
    with pytest.raises(ValueError, match="client_isolation"):
        NatLab(client_isolation=True)
    with pytest.raises(ValueError, match="only the double-nat topology has CGNATs"):
        NatLab(cgnat="symmetric")
    with pytest.raises(ValueError, match="home routers' modes"):
        NatLab(topology="double-nat", cgnat={"ra": "symmetric"})
    lab = NatLab("symmetric", topology="same-nat", filtering={"a": "reject"})
    assert lab.mapping == {"ra": "symmetric"}
    assert lab.modes == {"a": "symmetric", "b": "symmetric"}
    lab = NatLab(topology="double-nat", cgnat={"b": "symmetric"}, filtering={"a": "reject"})
    assert lab.mapping == {"ca": "eim", "cb": "symmetric", "ra": "eim", "rb": "eim"}
    assert lab.router_filtering == {"ca": "reject", "cb": "drop", "ra": "reject", "rb": "drop"}
    lab = NatLab(topology="double-nat", filtering={"a": "reject", "ca": "none"})
    assert lab.router_filtering == {"ca": "none", "cb": "drop", "ra": "reject", "rb": "drop"}


# --- mapping over UDP --------------------------------------------------------------------------


@hard_timeout(30)
@pytest.mark.parametrize("mode", ["eim", "eim-shifted", "symmetric"])
def test_udp_mapping(nat_lab: Callable[..., NatLab], mode: str) -> None:
    lab = nat_lab(a=mode)
    port = lab.fresh_port()
    for host in ("relay", "relay2"):
        server = lab.spawn_python(host, UDP_SERVER, str(port), name=f"udp@{host}")
        assert server.expect(10) == {"listening": port}
    local_port = lab.fresh_port()
    client = lab.spawn_python(
        "a",
        UDP_CLIENT,
        str(local_port),
        f"{lab.relay_ip}:{port}",
        f"{lab.relay2_ip}:{port}",
        name="udp@a",
    )
    seen = [client.expect(15)["observed"] for _ in range(2)]
    assert [ip for ip, _ in seen] == [lab.public_ip("a")] * 2
    ports = [p for _, p in seen]
    if mode == "eim":
        assert ports == [local_port, local_port]
    elif mode == "eim-shifted":
        assert ports == [local_port ^ EIM_SHIFT_XOR] * 2
    else:
        assert ports[0] != ports[1]


# --- same NAT ----------------------------------------------------------------------------------


@hard_timeout(40)
def test_same_nat_hosts_share_a_public_address_and_a_lan(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(topology="same-nat")
    port = lab.fresh_port()
    _start_server(lab, "relay", port)
    seen = {
        host: _observe(lab, host, lab.fresh_port(), [f"{lab.relay_ip}:{port}"])[0]["observed"]
        for host in ("a", "b")
    }
    assert seen["a"][0] == seen["b"][0] == lab.public_ip("a")
    # Over the LAN a reaches b directly, from its own LAN address (no translation, no router).
    server_b = _start_server(lab, "b", port)
    local_port = lab.fresh_port()
    (report,) = _observe(lab, "a", local_port, [f"{lab.ip('b')}:{port}"])
    assert report["observed"] == [lab.ip("a"), local_port]
    assert server_b.expect(10)["accepted"] == [lab.ip("a"), local_port]
    assert lab.dropped("ra")["forward"] == 0  # bridged, never routed


@hard_timeout(40)
@pytest.mark.parametrize("mode", ["eim", "eim-shifted"])
def test_hairpinning_reaches_the_host_that_owns_the_mapping(
    nat_lab: Callable[..., NatLab], mode: str
) -> None:
    lab = nat_lab(mode, topology="same-nat", hairpin=True)
    observer_port = lab.fresh_port()
    _start_server(lab, "relay", observer_port)
    port_b = lab.fresh_port()
    server_b, mapped_b = _mapped_server(lab, "b", port_b, observer_port)
    shift = EIM_SHIFT_XOR if mode == "eim-shifted" else 0
    assert mapped_b == [lab.public_ip("b"), port_b ^ shift]
    # a connects to b's public mapping; the router loops it back to b, which sees a's
    # public mapping (the one the relay would see), not a's LAN address.
    port_a = lab.fresh_port()
    (report,) = _observe(lab, "a", port_a, [f"{mapped_b[0]}:{mapped_b[1]}"])
    assert report["observed"] == [lab.public_ip("a"), port_a ^ shift]
    assert server_b.expect(10)["accepted"] == [lab.public_ip("a"), port_a ^ shift]
    counts = lab.counters("ra")
    assert counts["hairpinned"] == 1
    assert counts["loopback_dropped"] == counts["loopback_rejected"] == 0


@hard_timeout(30)
def test_hairpinning_udp(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab("eim-shifted", topology="same-nat", hairpin=True)
    port = lab.fresh_port()
    observer = lab.spawn_python("relay", UDP_SERVER, str(port), name="udp@relay")
    assert observer.expect(10) == {"listening": port}
    port_b = lab.fresh_port()
    server_b = lab.spawn_python(
        "b", UDP_SERVER, str(port_b), f"{lab.relay_ip}:{port}", name="udp@b"
    )
    mapped_b = server_b.expect(10)["observed"]
    assert mapped_b == [lab.public_ip("b"), port_b ^ EIM_SHIFT_XOR]
    assert server_b.expect(10) == {"listening": port_b}
    port_a = lab.fresh_port()
    client = lab.spawn_python(
        "a", UDP_CLIENT, str(port_a), f"{mapped_b[0]}:{mapped_b[1]}", name="udp@a"
    )
    # b answered, and saw a's public mapping.
    assert client.expect(15)["observed"] == [lab.public_ip("a"), port_a ^ EIM_SHIFT_XOR]
    assert lab.counters("ra")["hairpinned"] == 1


@hard_timeout(40)
def test_client_isolation_leaves_hairpinning_as_the_only_path(
    nat_lab: Callable[..., NatLab],
) -> None:
    lab = nat_lab(topology="same-nat", hairpin=True, client_isolation=True)
    observer_port = lab.fresh_port()
    _start_server(lab, "relay", observer_port)
    port_b = lab.fresh_port()
    _server_b, mapped_b = _mapped_server(lab, "b", port_b, observer_port)
    targets = [
        # b's LAN address: the bridge does not forward between isolated ports.
        {"proto": "tcp", "ip": lab.ip("b"), "port": port_b, "timeout": 1.5},
        # b's public mapping, looped back by the router (whose bridge port is not isolated).
        {"proto": "tcp", "ip": mapped_b[0], "port": mapped_b[1], "timeout": 5.0},
    ]
    assert _probe(lab, "a", targets) == ["timeout", "connected"]
    assert lab.counters("ra")["hairpinned"] == 1
    links = lab.run("ra", ["ip", "-d", "link", "show", "master", "lan0"]).stdout
    assert links.count("isolated on") == 2


@hard_timeout(40)
@pytest.mark.parametrize("filtering", ["drop", "reject", "none"])
def test_without_hairpinning_the_router_filters_it(
    nat_lab: Callable[..., NatLab], filtering: str
) -> None:
    lab = nat_lab(topology="same-nat", filtering=filtering)
    observer_port = lab.fresh_port()
    _start_server(lab, "relay", observer_port)
    _server_b, mapped_b = _mapped_server(lab, "b", lab.fresh_port(), observer_port)
    wan = lab.public_ip("a")
    timeout = 1.5 if filtering == "drop" else 5.0
    targets = [
        {"proto": "tcp", "ip": wan, "port": mapped_b[1], "timeout": timeout},
        {"proto": "udp", "ip": wan, "port": lab.fresh_port(), "timeout": timeout},
    ]
    results = _probe(lab, "a", targets)
    counts = lab.counters("ra")
    assert counts["hairpinned"] == 0
    if filtering == "drop":
        assert results == ["timeout", "timeout"]
        assert counts["loopback_dropped"] >= 2
    else:
        # Refused: by the firewall (counted), or with no filter by the router's own stack.
        assert results == ["refused", "refused"]
        assert counts["loopback_rejected"] == (2 if filtering == "reject" else 0)
        assert counts["loopback_dropped"] == 0


@hard_timeout(40)
def test_a_hairpinned_syn_is_not_filtered(nat_lab: Callable[..., NatLab]) -> None:
    """Hairpinned packets pass the router unfiltered (both legs are the same packet: there is
    no earlier outgoing packet of b's that a filter could wait for), so a SYN for b's mapping
    that arrives while b is not connecting to a is refused by b's own stack, as through a NAT
    without a filter. That is what makes a TCP simultaneous open by hairpinning at no delay
    hard: the first SYN to arrive is refused unless the other SYN has already left."""
    lab = nat_lab(topology="same-nat", hairpin=True, filtering="drop")
    observer_port = lab.fresh_port()
    _start_server(lab, "relay", observer_port)
    # b has a mapping (its connection to the observer) but nothing listens on that port.
    (report,) = _observe(lab, "b", lab.fresh_port(), [f"{lab.relay_ip}:{observer_port}"])
    mapped_b = report["observed"]
    target = {"proto": "tcp", "ip": mapped_b[0], "port": mapped_b[1], "timeout": 5.0}
    assert _probe(lab, "a", [target]) == ["refused"]
    counts = lab.counters("ra")
    assert counts["hairpinned"] == 1
    assert counts["loopback_dropped"] == counts["loopback_rejected"] == 0


# --- double NAT --------------------------------------------------------------------------------


@hard_timeout(30)
@pytest.mark.parametrize(
    ("home", "cgnat", "expect"),
    [
        ("eim", "eim", "preserved"),
        ("eim", "eim-shifted", "shifted"),
        ("eim-shifted", "eim-shifted", "preserved"),  # shifted twice: both layers translate
        ("eim", "symmetric", "dependent"),
    ],
)
def test_double_nat_mapping(
    nat_lab: Callable[..., NatLab], home: str, cgnat: str, expect: str
) -> None:
    lab = nat_lab(home, topology="double-nat", cgnat=cgnat)
    port = lab.fresh_port()
    _start_server(lab, "relay", port)
    _start_server(lab, "relay2", port)
    local_port = lab.fresh_port()
    reports = _observe(lab, "a", local_port, [f"{lab.relay_ip}:{port}", f"{lab.relay2_ip}:{port}"])
    assert [r["observed"][0] for r in reports] == ["198.51.100.1"] * 2
    ports = [r["observed"][1] for r in reports]
    if expect == "preserved":
        assert ports == [local_port] * 2
    elif expect == "shifted":
        assert ports == [local_port ^ EIM_SHIFT_XOR] * 2
    else:
        assert ports[0] != ports[1]


@hard_timeout(30)
def test_double_nat_filters_per_layer(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(topology="double-nat", filtering={"ca": "reject", "ra": "none", "cb": "drop"})
    targets = [
        {"proto": "tcp", "ip": lab.public_ip("a"), "port": lab.fresh_port(), "timeout": 3.0},
        {"proto": "udp", "ip": lab.public_ip("a"), "port": lab.fresh_port(), "timeout": 3.0},
        {"proto": "tcp", "ip": lab.public_ip("b"), "port": lab.fresh_port(), "timeout": 1.5},
    ]
    assert _probe(lab, "relay2", targets) == ["refused", "refused", "timeout"]
    assert lab.dropped("ca")["wan_in_rejected"] == 2
    assert lab.dropped("cb")["wan_in"] >= 1
    # The home routers behind never saw those; from the CGNAT's side (the ISP) home router A,
    # with no filter, answers itself.
    assert lab.dropped("ra")["wan_in"] == lab.dropped("rb")["wan_in"] == 0
    inside = {"proto": "tcp", "ip": lab.ip("ra"), "port": lab.fresh_port(), "timeout": 3.0}
    assert _probe(lab, "ca", [inside]) == ["refused"]
    assert lab.dropped("ra") == dict.fromkeys(lab.dropped("ra"), 0)


@hard_timeout(40)
def test_simultaneous_open_through_two_double_nats(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(topology="double-nat")
    relay_port = lab.fresh_port()
    _start_server(lab, "relay", relay_port)
    a, b, observed = _punchers(lab, relay_port)
    a.send({"peer": observed["b"], "attempts": 3, "timeout": 3})
    b.send({"peer": observed["a"], "attempts": 3, "timeout": 3})
    assert a.expect(5) == {"connecting": True}
    assert b.expect(5) == {"connecting": True}
    _assert_punched(a.expect(15), b.expect(15), lab, observed)


# --- IPv6 --------------------------------------------------------------------------------------


@hard_timeout(30)
def test_ipv6_is_not_translated_and_ipv4_still_is(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(topology="ipv6")
    assert (lab.ip6("a"), lab.ip6("b")) == ("2001:db8:a::2", "2001:db8:b::2")
    assert (lab.ip6("relay"), lab.ip6("relay2"), lab.ip6("ra")) == (
        "2001:db8::10",
        "2001:db8::11",
        "2001:db8::1",
    )
    port = lab.fresh_port()
    server6 = _start_server(lab, "relay", port, ipv6=True)
    server4 = _start_server(lab, "relay2", port)
    for host in ("a", "b"):
        local_port = lab.fresh_port()
        (report,) = _observe(lab, host, local_port, [f"{lab.ip6('relay')}:{port}"], ipv6=True)
        assert report["observed"] == report["local"] == [lab.ip6(host), local_port]
        assert server6.expect(10)["accepted"] == [lab.ip6(host), local_port]
        (report,) = _observe(lab, host, local_port, [f"{lab.relay2_ip}:{port}"])
        assert report["observed"] == [lab.public_ip(host), local_port]
        assert server4.expect(10)["accepted"][0] == lab.public_ip(host)


@hard_timeout(40)
@pytest.mark.parametrize("filtering", ["drop", "reject", "none"])
def test_ipv6_unsolicited_inbound(nat_lab: Callable[..., NatLab], filtering: str) -> None:
    # Router A filters per `filtering`; router B always drops.
    lab = nat_lab(topology="ipv6", filtering={"a": filtering})
    listening = lab.fresh_port()
    _start_server(lab, "a", listening, ipv6=True)
    timeout = 1.5 if filtering == "drop" else 5.0
    targets = [
        {"proto": "tcp", "ip": lab.ip6("a"), "port": listening, "timeout": timeout},
        {"proto": "tcp", "ip": lab.ip6("a"), "port": lab.fresh_port(), "timeout": timeout},
        {"proto": "udp", "ip": lab.ip6("a"), "port": lab.fresh_port(), "timeout": timeout},
        {"proto": "tcp", "ip": lab.ip6("b"), "port": lab.fresh_port(), "timeout": 1.5},
    ]
    results = _probe(lab, "relay2", targets, ipv6=True)
    counts = lab.dropped("ra", ipv6=True)
    expected = {
        "drop": ["timeout", "timeout", "timeout"],
        "reject": ["refused", "refused", "refused"],
        # No filter: the packets reach host a, whose listener accepts and whose stack refuses.
        "none": ["connected", "refused", "refused"],
    }[filtering]
    assert results == [*expected, "timeout"]
    if filtering == "drop":
        assert counts["wan_in"] >= 3
    assert counts["wan_in_rejected"] == (3 if filtering == "reject" else 0)
    if filtering != "drop":
        assert counts["wan_in"] == 0
    assert lab.dropped("rb", ipv6=True)["wan_in"] >= 1
    # The IPv4 NAT is untouched by all this.
    assert lab.dropped("ra")["wan_in"] == lab.dropped("ra")["wan_in_rejected"] == 0


@hard_timeout(40)
def test_simultaneous_open_through_two_ipv6_firewalls(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(topology="ipv6")
    relay_port = lab.fresh_port()
    _start_server(lab, "relay", relay_port, ipv6=True)
    a, b, observed = _punchers(lab, relay_port, ipv6=True)
    a.send({"peer": observed["b"], "attempts": 3, "timeout": 3})
    b.send({"peer": observed["a"], "attempts": 3, "timeout": 3})
    assert a.expect(5) == {"connecting": True}
    assert b.expect(5) == {"connecting": True}
    _assert_punched(a.expect(15), b.expect(15), lab, observed, ipv6=True)


# --- observers -----------------------------------------------------------------------------------


@hard_timeout(40)
@pytest.mark.parametrize("topology", ["ipv6", "two-nats"])
def test_observers_are_distinct_public_addresses(
    nat_lab: Callable[..., NatLab], topology: str
) -> None:
    lab = nat_lab(topology=topology, observers=4)
    assert lab.hosts == ["internet", "relay", "relay2", "observers", *lab.routers, "a", "b"]
    assert lab.observer_ips() == [f"198.51.100.{n}" for n in (21, 22, 23, 24)]
    ipv6 = topology == "ipv6"
    if ipv6:
        ip6s = lab.observer_ip6s()
        assert ip6s == ["2001:db8:100::1", "2001:db8:200::1", "2001:db8:300::1", "2001:db8:400::1"]
        assert len({ip.split(":")[2] for ip in ip6s}) == 4  # four /56s (and /48s)
    else:
        with pytest.raises(ValueError, match="has no IPv6"):
            lab.observer_ip6s()
    # One server on every address of the observers host: each observer address reaches it and
    # sees the host from the same address and port (from one local port, as a peer that dials
    # from its listen port), translated for IPv4, untranslated for IPv6.
    port = lab.fresh_port()
    server = _start_server(lab, "observers", port, ipv6=ipv6)
    targets = lab.observer_ip6s() if ipv6 else lab.observer_ips()
    for host in ("a", "b"):
        local_port = lab.fresh_port()
        reports = _observe(lab, host, local_port, [f"{ip}:{port}" for ip in targets], ipv6=ipv6)
        seen = [lab.ip6(host) if ipv6 else lab.public_ip(host), local_port]
        assert [r["target"] for r in reports] == [f"{ip}:{port}" for ip in targets]
        assert [r["observed"] for r in reports] == [seen] * 4
        assert [server.expect(10)["accepted"] for _ in targets] == [seen] * 4
    if ipv6:
        # The relay reaches the observers too (a route per /56 on every public host).
        (report,) = _observe(lab, "relay", lab.fresh_port(), [f"{targets[3]}:{port}"], ipv6=True)
        assert report["observed"][0] == lab.ip6("relay")


def test_bad_observer_counts_are_refused() -> None:
    require_lab()
    with pytest.raises(ValueError, match="observers"):
        NatLab(observers=17)
    with pytest.raises(ValueError, match="observers"):
        NatLab(observers=-1)


# --- the delaying switch in other topologies ---------------------------------------------------

SLACK = 0.040  # above the configured RTT: the switch's loop and two busy CPUs


@hard_timeout(60)
@pytest.mark.parametrize("topology", ["same-nat", "double-nat", "ipv6"])
def test_delays_in_other_topologies(nat_lab: Callable[..., NatLab], topology: str) -> None:
    internet_routers = {"same-nat": ["ra"], "double-nat": ["ca", "cb"], "ipv6": ["ra", "rb"]}
    delays = {"relay": 0.0125, **dict.fromkeys(internet_routers[topology], 0.025)}
    lab = nat_lab(topology=topology, delays=delays)
    rtt = lab.rtt("a", "relay")
    assert rtt == pytest.approx(0.075)
    assert lab.rtt("a", "b") == (0.0 if topology == "same-nat" else pytest.approx(0.1))
    ipv6 = topology == "ipv6"
    port = lab.fresh_port()
    _start_server(lab, "relay", port, ipv6=ipv6)
    relay = lab.ip6("relay") if ipv6 else lab.relay_ip
    timer = lab.spawn_python("a", CONNECT_TIMES, relay, str(port), "10", env=_env(ipv6))
    times = timer.expect(30)["times"]
    assert min(times) >= rtt, times  # never early
    assert statistics.median(times) < rtt + SLACK, times
    if topology != "same-nat":
        a, b, observed = _punchers(lab, port, ipv6=ipv6)
        a.send({"peer": observed["b"], "attempts": 3, "timeout": 3})
        b.send({"peer": observed["a"], "attempts": 3, "timeout": 3})
        assert a.expect(5) == {"connecting": True}
        assert b.expect(5) == {"connecting": True}
        _assert_punched(a.expect(15), b.expect(15), lab, observed, ipv6=ipv6)
    stats = lab.switch_stats()
    problems = ("truncated", "rx_errors", "tx_errors", "socket_drops")
    assert {key: stats[key] for key in problems} == dict.fromkeys(problems, 0), stats
