"""The reachability report's core, without I/O: weighing, hysteresis, reasons, schedule."""

from __future__ import annotations

from multiaddr import Multiaddr

from libp2p.crypto.keys import generate_ed25519
from libp2p.host.autonat import Reachability
from libp2p.host.reachability import (
    AddressSource,
    Expectation,
    Filtering,
    ReachabilityConfig,
    ReachabilityCore,
)
from libp2p.identify.nat_mapping import NatMapping, NatMappingStatus
from libp2p.peer.id import PeerID

LAB = ("198.51.100.0/24",)
EXTERNAL = Multiaddr("/ip4/198.51.100.1/tcp/4001")
LAN = Multiaddr("/ip4/10.0.0.2/tcp/4001")
CGNAT = Multiaddr("/ip4/100.64.1.2/tcp/4001")


def peer() -> PeerID:
    return PeerID.from_public_key(generate_ed25519().public_key)


def core(**kw: object) -> ReachabilityCore:
    kw.setdefault("public_ranges", LAB)
    c = ReachabilityCore(ReachabilityConfig(**kw), now=0.0)  # type: ignore[arg-type]
    c.set_listen_addrs([LAN], 0.0)
    c.set_observed([(EXTERNAL, 2)], 0.0)
    return c


def status(c: ReachabilityCore, addr: Multiaddr = EXTERNAL, now: float = 10.0) -> Reachability:
    entry = c.report(now).address(addr)
    assert entry is not None
    return entry.status


def test_one_server_never_decides_alone() -> None:
    c = core()
    s1, s2 = peer(), peer()
    c.v2_result(EXTERNAL, s1, "198.51.100.10", True, 1.0)
    assert status(c) is Reachability.UNKNOWN
    report = c.report(2.0)
    assert report.status is Reachability.UNKNOWN
    assert "reachable from 1" in report.reason
    assert "2 needed" in report.reason
    # The same group again (another peer ID on the same machine) still counts once.
    c.v2_result(EXTERNAL, s2, "198.51.100.10", True, 2.0)
    assert status(c) is Reachability.UNKNOWN
    c.v2_result(EXTERNAL, s2, "198.51.100.11", True, 3.0)
    assert status(c) is Reachability.PUBLIC
    report = c.report(4.0)
    assert report.status is Reachability.PUBLIC
    assert report.expect is Expectation.DIRECT
    assert report.public_addrs == [EXTERNAL]
    assert report.nat.filtering is Filtering.OPEN


def test_a_trusted_server_decides_alone() -> None:
    relay = peer()
    c = core(trusted_servers=(relay,))
    c.v2_result(EXTERNAL, relay, "198.51.100.10", False, 1.0)
    assert status(c) is Reachability.PRIVATE
    report = c.report(2.0)
    # The LAN address is private by its range; the external one refuted: the host is private.
    assert report.status is Reachability.PRIVATE
    assert report.expect is Expectation.HOLE_PUNCH
    assert report.nat.filtering is Filtering.FILTERED


def test_hysteresis_one_odd_answer_does_not_flip() -> None:
    c = core()
    a, b, liar = peer(), peer(), peer()
    c.v2_result(EXTERNAL, a, "g-a", False, 1.0)
    c.v2_result(EXTERNAL, b, "g-b", False, 2.0)
    assert status(c) is Reachability.PRIVATE
    c.v2_result(EXTERNAL, liar, "g-liar", True, 3.0)  # confidence -1: stays private
    assert status(c) is Reachability.PRIVATE
    c.v2_result(EXTERNAL, a, "g-a", True, 4.0)  # a changed its mind: confidence +1
    assert status(c) is Reachability.PRIVATE
    c.v2_result(EXTERNAL, b, "g-b", True, 5.0)  # +3: public
    assert status(c) is Reachability.PUBLIC


def test_v1_cannot_flip_what_v2_found() -> None:
    c = core()
    relay, liar1, liar2 = peer(), peer(), peer()
    c.v2_result(EXTERNAL, relay, "g-relay", False, 1.0)
    # Two v1 servers say OK for the address (py-libp2p 0.8.1 answers OK for closed ports).
    c.v1_result(liar1, "g-l1", True, EXTERNAL, [EXTERNAL], 2.0)
    c.v1_result(liar2, "g-l2", True, EXTERNAL, [EXTERNAL], 3.0)
    assert status(c) is Reachability.UNKNOWN
    entry = c.report(4.0).address(EXTERNAL)
    assert entry is not None
    assert entry.v1_reachable_by == 2
    assert entry.refuted_by == 1


def test_v1_decides_only_with_distinct_groups() -> None:
    c = core()
    liar = peer()
    c.v1_result(liar, "g-liar", True, EXTERNAL, [EXTERNAL], 1.0)
    assert status(c) is Reachability.UNKNOWN
    c.v1_result(peer(), "g-liar", True, EXTERNAL, [EXTERNAL], 2.0)
    assert status(c) is Reachability.UNKNOWN
    c.v1_result(peer(), "g-other", True, EXTERNAL, [EXTERNAL], 3.0)
    assert status(c) is Reachability.PUBLIC
    assert "AutoNAT v1" in c.report(4.0).reason


def test_mapped_address_behind_a_carrier_grade_nat() -> None:
    c = core()
    c.set_mapped([(CGNAT, "upnp")], 1.0)
    entry = c.report(2.0).address(CGNAT)
    assert entry is not None
    assert entry.source is AddressSource.MAPPED
    assert entry.mapped_by == "upnp"
    assert entry.status is Reachability.PRIVATE
    assert not entry.advertised
    assert "shared address space (RFC 6598)" in entry.reason
    assert "carrier-grade NAT" in entry.reason
    assert c.mapped_public() == []
    # Never checked: not public.
    servers = [(peer(), "g1"), (peer(), "g2")]
    pick = c.next_check(servers, 5.0)
    assert pick is not None
    assert pick[1] == EXTERNAL


def test_mapped_address_advertised_only_once_confirmed() -> None:
    c = core()
    c.set_mapped([(EXTERNAL, "pcp")], 1.0)
    entry = c.report(1.0).address(EXTERNAL)
    assert entry is not None
    assert entry.source is AddressSource.MAPPED
    assert not entry.advertised
    assert "not advertised until confirmed" in entry.reason
    assert c.mapped_public() == []
    c.v2_result(EXTERNAL, peer(), "g1", True, 2.0)
    c.v2_result(EXTERNAL, peer(), "g2", True, 3.0)
    assert c.mapped_public() == [EXTERNAL]
    entry = c.report(4.0).address(EXTERNAL)
    assert entry is not None
    assert entry.advertised
    assert "mapped by PCP" in entry.reason
    # Filtering says nothing about a mapped address (the mapping opened it).
    assert c.report(4.0).nat.filtering is Filtering.UNKNOWN


def test_symmetric_nat_means_relay_only() -> None:
    relay = peer()
    c = core(trusted_servers=(relay,))
    c.set_nat_mapping(NatMappingStatus(NatMapping.ENDPOINT_DEPENDENT, "two ports", (), ()))
    c.v2_result(EXTERNAL, relay, "g", False, 1.0)
    report = c.report(2.0)
    assert report.expect is Expectation.RELAY_ONLY
    assert "hole punching cannot work" in report.reason


def test_schedule_asks_distinct_groups_then_refreshes() -> None:
    cfg = dict(first_check_delay=0.5, retry_interval=30.0, refresh_interval=900.0)
    c = core(**cfg)
    s1, s1b, s2 = peer(), peer(), peer()
    servers = [(s1, "g1"), (s1b, "g1"), (s2, "g2")]
    assert c.next_check(servers, 0.2) is None  # the first-check delay
    assert c.next_deadline(0.2) == 0.5
    pick = c.next_check(servers, 0.5)
    assert pick is not None
    server, addr = pick
    assert addr == EXTERNAL
    group = dict(servers)[server]
    c.check_started(server, addr, 0.5, group)
    # Undecided: a second check at once, of the other group (min_servers = 2 are needed),
    # never of the group already asked; then no third.
    second = c.next_check(servers, 0.6)
    assert second is not None
    assert dict(servers)[second[0]] != group
    c.check_started(second[0], EXTERNAL, 0.6, dict(servers)[second[0]])
    assert c.next_check(servers, 0.7) is None
    c.v2_result(addr, server, group, True, 1.0)
    assert c.next_check(servers, 1.0) is None  # the other group answers next; g1 did
    c.v2_result(EXTERNAL, second[0], dict(servers)[second[0]], True, 2.0)
    assert status(c, now=2.0) is Reachability.PUBLIC
    # Decided: the next check is the refresh, with the group whose answer is oldest.
    assert c.next_check(servers, 3.0) is None
    assert c.next_deadline(3.0) == 2.0 + 900.0
    assert c.next_check(servers, 901.0) is None
    pick = c.next_check(servers, 902.0)
    assert pick is not None
    assert dict(servers)[pick[0]] == group


def test_no_evidence_is_retried_after_the_retry_interval() -> None:
    c = core()
    s1 = peer()
    servers = [(s1, "g1")]
    c.check_started(s1, EXTERNAL, 1.0)
    c.v2_result(EXTERNAL, s1, "g1", None, 1.5)  # refused
    assert c.next_check(servers, 2.0) is None
    assert c.next_check(servers, 31.0) == (s1, EXTERNAL)


def test_answers_expire() -> None:
    c = core(result_ttl=100.0, min_servers=1)
    c.v2_result(EXTERNAL, peer(), "g1", True, 1.0)
    assert status(c, now=50.0) is Reachability.PUBLIC
    assert status(c, now=102.0) is Reachability.UNKNOWN


def test_report_change_events_only_on_summary_changes() -> None:
    c = core(min_servers=1)
    first = c.poll(0.0)  # our addresses appeared
    assert first is not None
    assert len(first.report.addresses) == 2
    assert c.poll(0.0) is None
    c.v2_result(EXTERNAL, peer(), "g1", True, 1.0)
    change = c.poll(1.0)
    assert change is not None
    assert change.previous.status is Reachability.UNKNOWN
    assert change.report.status is Reachability.PUBLIC
    c.v2_result(EXTERNAL, peer(), "g2", True, 2.0)  # another answer: the reason says so
    change = c.poll(2.0)
    assert change is not None
    assert change.report.status is change.previous.status is Reachability.PUBLIC
    assert "from 2 server group(s)" in change.report.reason
    c.set_observed([(EXTERNAL, 3)], 3.0)  # one more observer: no event
    assert c.poll(3.0) is None
