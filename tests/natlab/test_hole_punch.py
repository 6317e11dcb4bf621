"""Hole punching through real NATs: the example scripts run in the NAT lab's namespaces.

relay.py runs on the public relay host, listener.py behind router B, dialer.py behind router A
(so the dialer is DCUtR's A and the listener its B). Through two endpoint-independent NATs the
dialer must end on a direct connection to router B's public address; through a symmetric NAT
the punch must fail with a reason while the relayed connection keeps working. In the other
topologies (``topology.py``) the direct connection must come too: over the LAN or by
hairpinning behind one NAT, through a CGNAT and a home NAT on each side, over IPv6 through
stateful firewalls.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from tests.examples.vocabulary import check_line
from tests.natlab.lab import NatLab, Program
from tests.natlab.topology import EIM_SHIFT_XOR, INTERNET_NET

pytestmark = pytest.mark.natlab

STEP = 20.0  # seconds any one step may take before the test fails


def start(lab: NatLab, host: str, script: str, *args: str) -> Program:
    return lab.spawn_example(host, script, *args)


# Keyed by the program itself, not id(program): an id is reused once a program of an earlier
# test is garbage-collected, and that program's held lines would then be handed to a new one.
_held: weakref.WeakKeyDictionary[Program, list[dict[str, Any]]] = weakref.WeakKeyDictionary()


def wait_for(program: Program, event: str, timeout: float = STEP) -> dict[str, Any]:
    """The first line of ``program`` with this ``event`` not yet taken; lines of other events
    are held for later calls."""
    held = _held.setdefault(program, [])
    for line in held:
        if line["event"] == event:
            held.remove(line)
            return line
    deadline = time.monotonic() + timeout
    while True:
        line = program.expect(deadline - time.monotonic())
        check_line(line)  # the --json vocabulary (tests/examples/vocabulary.py)
        if line["event"] == event:
            return line
        held.append(line)


def lines_until(program: Program, event: str, timeout: float = STEP) -> list[dict[str, Any]]:
    """Every line of ``program`` up to and including the first ``event`` line."""
    deadline = time.monotonic() + timeout
    out = []
    while True:
        line = program.expect(deadline - time.monotonic())
        check_line(line)
        out.append(line)
        if line["event"] == event:
            return out


def reachability_where(
    program: Program, wanted: Callable[[dict[str, Any]], bool], timeout: float = STEP
) -> dict[str, Any]:
    """The first ``reachability`` line that is ``wanted`` (the scripts print the report
    whenever it changes: first as addresses appear, then as answers decide)."""
    deadline = time.monotonic() + timeout
    while True:
        line = wait_for(program, "reachability", deadline - time.monotonic())
        if wanted(line):
            return line


def settled_reachability(program: Program, timeout: float) -> dict[str, Any]:
    """The first report whose status is no longer ``unknown``."""
    return reachability_where(program, lambda line: line["status"] != "unknown", timeout)


# The lab's internet is on documentation ranges, which are not globally routable: the scripts
# are told that they count as public, as a private network's users would tell them.
LAB_PUBLIC_RANGES = ("--public-range", INTERNET_NET, "--public-range", "2001:db8::/32")


def any_addr(ipv6: bool) -> str:
    return "/ip6/::" if ipv6 else "/ip4/0.0.0.0"


def relay_and_listener(lab: NatLab, *, ipv6: bool = False) -> tuple[Program, Program, str, int]:
    """Start the relay and a listener with a reservation; returns the listener's relayed
    address and its listen port. With ``ipv6`` all of it over IPv6 only."""
    # The listener is the relay's only AutoNAT server here: one server group must do.
    relay = start(
        lab,
        "relay",
        "relay.py",
        "--listen",
        f"{any_addr(ipv6)}/tcp/{lab.fresh_port()}",
        *LAB_PUBLIC_RANGES,
        "--min-servers",
        "1",
    )
    ready = wait_for(relay, "ready")
    relay_ip = f"/ip6/{lab.ip6('relay')}/" if ipv6 else f"/ip4/{lab.ip('relay')}/"
    (relay_addr,) = [a for a in ready["addrs"] if relay_ip in a]
    port = lab.fresh_port()
    listener = start(
        lab,
        "b",
        "listener.py",
        "--relay",
        relay_addr,
        "--listen",
        f"{any_addr(ipv6)}/tcp/{port}",
        *LAB_PUBLIC_RANGES,
    )
    reservation = wait_for(listener, "reservation")
    assert reservation["limits"] == {"duration": 120, "data": 131072}
    (relayed,) = reservation["relayed_addrs"]
    assert relayed.startswith(relay_addr + "/p2p-circuit/p2p/")
    return relay, listener, relayed, port


def run_dialer(
    lab: NatLab, target: str, timeout: float = 20.0, *extra: str, ipv6: bool = False
) -> tuple[int, list[dict[str, Any]]]:
    dialer = start(
        lab,
        "a",
        "dialer.py",
        "--target",
        target,
        "--listen",
        f"{any_addr(ipv6)}/tcp/{lab.fresh_port()}",
        "--timeout",
        str(timeout),
        *extra,
    )
    lines = lines_until(dialer, "result", timeout + STEP)
    return dialer.wait(STEP), lines


def by_event(lines: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        out.setdefault(line["event"], []).append(line)
    return out


# A public host asks the relay's AutoNAT server whether it is reachable on a port where
# nothing listens, and prints the answer.
ASK_CLOSED_PORT = """
import json, sys, trio
from multiaddr import Multiaddr
from libp2p import Host
from libp2p.peer.id import PeerID

async def main(relay_addr, ip, port):
    # No listener: the address the server observes is an ephemeral port, closed too.
    async with Host() as host:
        conn = await host.connect(relay_addr)
        assert host.autonat is not None
        answer = await host.autonat.ask(conn.remote_peer, [Multiaddr(f"/ip4/{ip}/tcp/{port}")])
        print(json.dumps({"event": "answer", "status": answer.status.name}), flush=True)

trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
def test_hole_punch_through_two_eim_nats_ten_times_in_a_row(lab: NatLab) -> None:
    relay, listener, relayed, listener_port = relay_and_listener(lab)
    relay_addr = relayed.split("/p2p-circuit")[0]
    asker = lab.spawn_python(
        "relay2", ASK_CLOSED_PORT, relay_addr, lab.ip("relay2"), str(lab.fresh_port())
    )
    for run in range(10):
        code, lines = run_dialer(lab, relayed)
        events = by_event(lines)
        (result,) = events["result"]
        assert code == 0, (run, lines, listener.stderr)
        assert result["ok"], (run, result)
        # The direct connection goes to router B's public address, on the port the listener
        # listens on (router B keeps ports): a punched path, not a relayed one.
        assert result["direct_addr"] == f"/ip4/{lab.public_ip('b')}/tcp/{listener_port}"
        assert [e["via"] for e in events["echo"]] == ["relayed", "direct"]
        assert all(e["ok"] for e in events["echo"])
        (punch,) = events["hole_punch"]
        assert punch["ok"]
        assert punch["attempt"] >= 1  # a real punch, not B dialing A plainly
        # The listener saw the same hole punch, and the relay closes the circuit.
        listener_punch = wait_for(listener, "hole_punch")
        assert listener_punch["ok"], listener_punch
        closed = wait_for(relay, "circuit_closed")
        assert closed["dst"] == punch["peer"]
    # The reachability reports: the listener behind its NAT learned it is private (its own
    # relay, which it trusts, dialed router B's address back and was dropped), so a dialer
    # should expect a hole punch; the relay learned it is public (the listener dialed it
    # back); and a port where nothing listens is reported as not reachable.
    mine = settled_reachability(listener, 40.0)
    assert (mine["status"], mine["expect"], mine["filtering"]) == (
        "private",
        "hole punch",
        "filtered",
    ), mine
    observed = f"/ip4/{lab.public_ip('b')}/tcp/{listener_port}"
    (entry,) = [a for a in mine["addresses"] if a["addr"] == observed]
    assert (entry["status"], entry["source"]) == ("private", "observed"), mine
    assert "refuted by AutoNAT v2 (the dial-back failed)" in entry["reason"], entry
    assert all(a["status"] == "private" for a in mine["addresses"]), mine
    relays = settled_reachability(relay, 40.0)
    assert (relays["status"], relays["expect"]) == ("public", "direct"), relays
    relay_port = relayed.split("/tcp/")[1].split("/")[0]
    (entry,) = [a for a in relays["addresses"] if a["status"] == "public"]
    assert entry["addr"] == f"/ip4/{lab.ip('relay')}/tcp/{relay_port}", relays
    # The listener serves AutoNAT v1 and v2: whichever answered first decided (v2 then holds).
    assert "confirmed by AutoNAT v" in entry["reason"], entry
    assert "from 1 server group(s)" in entry["reason"], entry
    assert asker.expect(40.0) == {"event": "answer", "status": "E_DIAL_ERROR"}


@pytest.mark.parametrize("filtering", ["reject", "none"])
@pytest.mark.parametrize("one_way", [0.0, 0.0005], ids=["0ms", "2ms"])
def test_hole_punch_through_routers_that_refuse_an_early_syn(
    nat_lab: Callable[..., NatLab], filtering: str, one_way: float
) -> None:
    # Routers that answer an unsolicited SYN with an RST (OpenWrt's firewall rejects; a box
    # that only does SNAT has its own stack answer), at round trips where the two punch SYNs
    # leave a scheduling jitter apart: the first SYN to arrive is refused, and the RST also
    # ends the mapping it made. The benchmark (benchmarks/holepunch.py) runs 20 of each.
    delays = {"ra": one_way, "rb": one_way, "relay": one_way} if one_way else None
    lab = nat_lab(filtering=filtering, delays=delays)
    _relay, listener, relayed, listener_port = relay_and_listener(lab)
    for run in range(2):
        code, lines = run_dialer(lab, relayed)
        events = by_event(lines)
        (result,) = events["result"]
        assert code == 0, f"run {run}: {events.get('hole_punch')} {result} {listener.stderr}"
        assert result["direct_addr"] == f"/ip4/{lab.public_ip('b')}/tcp/{listener_port}"
        (punch,) = events["hole_punch"]
        assert punch["attempt"] >= 1
        assert wait_for(listener, "hole_punch")["ok"]
    if filtering == "reject" and not one_way:
        # The routers did refuse punch SYNs (microseconds apart is what it takes to avoid it).
        refused = lab.dropped("ra")["wan_in_rejected"] + lab.dropped("rb")["wan_in_rejected"]
        assert refused > 0


@pytest.mark.parametrize("lab", [("eim", "symmetric"), ("symmetric", "eim")], indirect=True)
def test_hole_punch_through_a_symmetric_nat_fails_with_a_reason(lab: NatLab) -> None:
    _relay, listener, relayed, _port = relay_and_listener(lab)
    started = time.monotonic()
    code, lines = run_dialer(lab, relayed, timeout=30.0)
    took = time.monotonic() - started
    events = by_event(lines)
    (result,) = events["result"]
    assert code == 1, lines
    assert not result["ok"]
    assert result["reason"] == "all_attempts_failed", result
    # The relayed connection worked all along.
    assert [e["via"] for e in events["echo"]] == ["relayed"]
    assert events["echo"][0]["ok"]
    listener_punch = wait_for(listener, "hole_punch")
    assert not listener_punch["ok"]
    assert listener_punch["reason"] == "all_attempts_failed"
    assert listener_punch["attempt"] == 3
    # It gave up on its own, well before the dialer's 30 s timeout.
    assert took < 30.0


def second_relay(lab: NatLab) -> str:
    relay2 = start(lab, "relay2", "relay.py", "--listen", f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}")
    (addr,) = [a for a in wait_for(relay2, "ready")["addrs"] if f"/ip4/{lab.ip('relay2')}/" in a]
    return addr


@pytest.mark.parametrize("lab", [("eim", "symmetric"), ("symmetric", "eim")], indirect=True)
def test_a_peer_that_knows_its_nat_is_symmetric_fails_at_once_and_tells_the_other(
    lab: NatLab,
) -> None:
    # Two observers (the relay and a second public peer) let the symmetric side learn that
    # its NAT maps per destination; then no attempt is spent and both sides get a reason.
    relay2 = second_relay(lab)
    relay = start(lab, "relay", "relay.py", "--listen", f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}")
    (relay_addr,) = [
        a for a in wait_for(relay, "ready")["addrs"] if f"/ip4/{lab.ip('relay')}/" in a
    ]
    listener_relays = ["--relay", relay_addr]
    dialer_peers: list[str] = []
    if lab.modes["b"] == "symmetric":
        listener_relays += ["--relay", relay2]
    else:
        dialer_peers += ["--peer", relay2, "--peer", relay_addr]
    listener = start(
        lab,
        "b",
        "listener.py",
        *listener_relays,
        "--listen",
        f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
    )
    reservation = wait_for(listener, "reservation")
    relayed = next(a for a in reservation["relayed_addrs"] if a.startswith(relay_addr))
    if lab.modes["b"] == "symmetric":
        wait_for(listener, "reservation")  # the second relay observed it too
        assert wait_for(listener, "nat_mapping")["mapping"] == "endpoint-dependent"
        # The report says what a dialer should expect: a relay, no hole punch.
        report = reachability_where(listener, lambda r: r["nat_mapping"] == "endpoint-dependent")
        assert report["expect"] == "relay only", report
        assert "hole punching cannot work" in report["reason"], report
    code, lines = run_dialer(lab, relayed, 30.0, *dialer_peers)
    events = by_event(lines)
    assert code == 1, lines
    listener_punch = wait_for(listener, "hole_punch")
    (dialer_punch,) = events["hole_punch"]
    if lab.modes["b"] == "symmetric":
        assert listener_punch["reason"] == "symmetric_nat", listener_punch
        assert dialer_punch["reason"] == "peer_no_address", dialer_punch
    else:
        assert [e["mapping"] for e in events["nat_mapping"]] == ["endpoint-dependent"]
        assert dialer_punch["reason"] == "symmetric_nat", dialer_punch
        assert listener_punch["reason"] == "peer_no_address", listener_punch
    # One exchange, no dials: not the three attempts of a punch that cannot work.
    assert listener_punch["attempt"] == 1
    assert dialer_punch["attempt"] == 1
    assert [e["via"] for e in events["echo"]] == ["relayed"]
    assert events["echo"][0]["ok"]


# Each topology's direct path: where the dialer's direct connection must go ("lan": b's LAN
# address; "public": b's public mapping, router B's or the CGNAT's or, in "same-nat", the one
# router's address, looped back by hairpinning; "ipv6": b's own IPv6 address; "shifted": the
# mapping of b's listen port by an endpoint-independent NAT that does not keep ports).
OTHER_TOPOLOGIES = [
    pytest.param({"topology": "same-nat"}, {"lan"}, id="same-nat"),
    pytest.param(
        {"topology": "same-nat", "hairpin": True}, {"lan", "public"}, id="same-nat-hairpin"
    ),
    pytest.param(
        {"topology": "same-nat", "hairpin": True, "client_isolation": True},
        {"public"},
        id="same-nat-isolated-hairpin",
    ),
    pytest.param({"topology": "double-nat"}, {"public"}, id="double-nat"),
    pytest.param({"a": "eim-shifted", "b": "eim-shifted"}, {"shifted"}, id="two-eim-shifted"),
    pytest.param({"topology": "ipv6"}, {"ipv6"}, id="ipv6-only"),
]


@pytest.mark.parametrize(("lab", "paths"), OTHER_TOPOLOGIES, indirect=["lab"])
def test_hole_punch_in_other_topologies(lab: NatLab, paths: set[str]) -> None:
    ipv6 = lab.topology == "ipv6"
    _relay, listener, relayed, listener_port = relay_and_listener(lab, ipv6=ipv6)
    code, lines = run_dialer(lab, relayed, ipv6=ipv6)
    events = by_event(lines)
    (result,) = events["result"]
    assert code == 0, (lines, listener.stderr)
    assert result["ok"], result
    # Over the LAN, b may dial a plainly first (attempt 0, connection reversal), from an
    # ephemeral port; any other direct path is a punch from the listen port.
    addrs = {
        "lan": f"/ip4/{lab.ip('b')}/tcp/",
        "public": f"/ip4/{lab.public_ip('b')}/tcp/{listener_port}",
        "ipv6": f"/ip6/{lab.ip6('b') if ipv6 else ''}/tcp/{listener_port}",
        # Endpoint-independent but not port-preserving: the listen port's mapping.
        "shifted": f"/ip4/{lab.public_ip('b')}/tcp/{listener_port ^ EIM_SHIFT_XOR}",
    }
    direct = result["direct_addr"]
    assert any(
        direct.startswith(addrs[path]) if path == "lan" else direct == addrs[path] for path in paths
    ), result
    assert [e["via"] for e in events["echo"]] == ["relayed", "direct"]
    assert all(e["ok"] for e in events["echo"])
    (punch,) = events["hole_punch"]
    assert punch["ok"]
    assert wait_for(listener, "hole_punch")["ok"]
    if result["direct_addr"] == addrs["public"] and lab.topology == "same-nat":
        assert lab.counters("ra")["hairpinned"] >= 1
