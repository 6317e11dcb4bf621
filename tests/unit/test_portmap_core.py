"""The port mapper's I/O-free core, driven with explicit times."""

from __future__ import annotations

import ipaddress
import math

import pytest

from libp2p.network.address_policy import AddressPolicy
from libp2p.portmap import (
    PortMappingChange,
    PortMappingChanged,
    PortMappingConfig,
    PortMappingFailed,
    PortMappingFailure,
    PortMappingProtocol,
    classify_external,
    order_answers,
)
from libp2p.portmap.mapper import (
    Discover,
    GatewayAnswer,
    Map,
    MapError,
    MapperCore,
    MapSuccess,
    Unmap,
)

UPNP, PCP, NATPMP = PortMappingProtocol.UPNP, PortMappingProtocol.PCP, PortMappingProtocol.NAT_PMP
GW = "192.0.2.1"
ME = "192.0.2.2"
EXT = ipaddress.IPv4Address("198.51.100.1")
CONFIG = PortMappingConfig(lease=100.0, retry_min=5.0, retry_max=40.0)


def answer(protocol: PortMappingProtocol, at: float, server: str = GW) -> GatewayAnswer:
    return GatewayAnswer(protocol, server, at)


def test_first_answer_wins_but_pcp_goes_before_nat_pmp_from_the_same_server() -> None:
    assert [a.protocol for a in order_answers([answer(PCP, 2), answer(NATPMP, 1)])] == [
        PCP,
        NATPMP,
    ]
    assert [
        a.protocol for a in order_answers([answer(NATPMP, 1), answer(PCP, 3), answer(UPNP, 2)])
    ] == [PCP, NATPMP, UPNP]
    assert [a.protocol for a in order_answers([answer(UPNP, 0.5), answer(NATPMP, 1)])] == [
        UPNP,
        NATPMP,
    ]
    # A PCP server elsewhere does not take the place of this server's NAT-PMP.
    got = order_answers([answer(NATPMP, 1), answer(PCP, 2, server="192.0.2.9")])
    assert [a.protocol for a in got] == [NATPMP, PCP]


@pytest.mark.parametrize(
    ("ip", "public", "why"),
    [
        ("198.51.100.1", True, ""),  # documentation ranges are the lab's internet
        ("100.64.1.2", False, "shared address space (RFC 6598): a carrier-grade NAT is in front"),
        ("192.168.1.1", False, "private (RFC 1918): another NAT is in front"),
        ("10.1.2.3", False, "private (RFC 1918)"),
        ("0.0.0.0", False, "not usable by remote peers"),
        ("127.0.0.1", False, "not usable by remote peers"),
        ("240.0.0.1", False, "not routable"),
        (None, False, "did not report"),
    ],
)
def test_classify_external(ip: str | None, public: bool, why: str) -> None:
    got = classify_external(ipaddress.ip_address(ip) if ip else None, CONFIG)
    assert got[0] is public
    assert why in got[1]


def test_the_policy_can_allow_a_private_external_address() -> None:
    config = PortMappingConfig(addresses=AddressPolicy(allow=("100.64.0.0/10",)))
    assert classify_external(ipaddress.ip_address("100.64.1.2"), config) == (True, "")
    config = PortMappingConfig(addresses=AddressPolicy(deny=("198.51.100.0/24",)))
    assert classify_external(EXT, config)[0] is False


def started(now: float = 0.0) -> MapperCore:
    core = MapperCore(CONFIG, now, GW)
    core.set_ports(ME, {4001}, now)
    return core


def test_no_gateway_answers_then_backoff_then_discovery_again() -> None:
    core = started()
    assert core.poll(0.0) == [Discover()]
    assert core.poll(0.0) == []  # discovery in flight
    (failed,) = core.discovered([], 3.0)
    assert isinstance(failed, PortMappingFailed)
    assert failed.failure is PortMappingFailure.NO_GATEWAY
    assert failed.reason.startswith("no gateway answered")
    assert failed.retry_at == 8.0
    assert core.next_deadline == 8.0
    assert core.poll(7.9) == []
    assert core.poll(8.0) == [Discover()]
    (failed,) = core.discovered([], 9.0)
    assert isinstance(failed, PortMappingFailed)
    assert failed.retry_at == 19.0  # 5 s, then 10 s


def test_refusals_move_to_the_next_protocol_then_report_all() -> None:
    core = started()
    core.poll(0.0)
    assert core.discovered([answer(NATPMP, 1.0), answer(UPNP, 1.2), answer(PCP, 1.1)], 1.5) == []
    (first,) = core.poll(1.5)
    assert isinstance(first, Map)
    assert first.answer.protocol is PCP
    assert first.suggested_external_port == 4001
    assert (
        core.mapped(first, MapError(PortMappingFailure.REFUSED, "router refused: PCP 8"), 1.6) == []
    )
    (second,) = core.poll(1.6)
    assert isinstance(second, Map)
    assert second.answer.protocol is NATPMP
    core.mapped(second, MapError(PortMappingFailure.NO_EXTERNAL_ADDRESS, "disabled: 3"), 1.7)
    (third,) = core.poll(1.7)
    assert isinstance(third, Map)
    assert third.answer.protocol is UPNP
    (failed,) = core.mapped(third, MapError(PortMappingFailure.REFUSED, "upnp 501"), 1.8)
    assert isinstance(failed, PortMappingFailed)
    # The router saying it has no external address explains the others.
    assert failed.failure is PortMappingFailure.NO_EXTERNAL_ADDRESS
    assert failed.protocol is NATPMP
    assert failed.details == (
        "pcp: router refused: PCP 8",
        "nat-pmp: disabled: 3",
        "upnp: upnp 501",
    )
    assert failed.retry_at == 6.8
    assert core.poll(6.8) == [Discover()]  # the next round starts with discovery


def test_refusals_read_the_same_whichever_protocol_answered_first() -> None:
    """Details in a fixed order (PCP, NAT-PMP, UPnP), and the same main reason: the order of
    the answers (here NAT-PMP first, PCP from another of the router's addresses) is a race."""
    core = started()
    core.poll(0.0)
    pcp_elsewhere = answer(PCP, 1.1, server="192.0.2.254")
    core.discovered([answer(NATPMP, 1.0), answer(UPNP, 1.2), pcp_elsewhere], 1.5)
    now, failed = 1.5, None
    errors = {
        PCP: MapError(PortMappingFailure.REFUSED, "router refused: PCP 8"),
        NATPMP: MapError(PortMappingFailure.REFUSED, "router refused: NAT-PMP 2"),
        UPNP: MapError(PortMappingFailure.REFUSED, "upnp 718"),
    }
    tried = []
    while failed is None:
        (action,) = core.poll(now)
        assert isinstance(action, Map)
        tried.append(action.answer.protocol)
        now += 0.1
        events = core.mapped(action, errors[action.answer.protocol], now)
        failed = events[0] if events else None
    assert tried == [NATPMP, PCP, UPNP]  # tried as they came
    assert isinstance(failed, PortMappingFailed)
    assert failed.details == (
        "pcp: router refused: PCP 8",
        "nat-pmp: router refused: NAT-PMP 2",
        "upnp: upnp 718",
    )
    assert (failed.protocol, failed.reason) == (PCP, "router refused: PCP 8")


def mapped(core: MapperCore, now: float, lease: float = 100.0) -> Map:
    """Map port 4001 with NAT-PMP (after a discovery, if the core asks for one)."""
    actions = core.poll(now)
    if actions == [Discover()]:
        core.discovered([answer(NATPMP, now)], now)
        actions = core.poll(now)
    (action,) = actions
    assert isinstance(action, Map)
    (event,) = core.mapped(action, MapSuccess(EXT, 4001, lease), now)
    assert isinstance(event, PortMappingChanged)
    assert event.change is PortMappingChange.ADDED
    return action


def test_mapping_renewed_at_half_the_lease_and_updated_when_the_address_changes() -> None:
    core = started(10.0)
    mapped(core, 10.0)
    (mapping,) = core.mappings
    assert str(mapping.internal) == "/ip4/192.0.2.2/tcp/4001"
    assert str(mapping.external) == "/ip4/198.51.100.1/tcp/4001"
    assert (mapping.lease, mapping.expires, mapping.gateway) == (100.0, 110.0, GW)
    assert mapping.external_is_public
    assert core.next_deadline == 60.0
    assert core.poll(59.0) == []
    (renew,) = core.poll(60.0)
    assert isinstance(renew, Map)
    assert renew.suggested_external_port == 4001
    assert renew.expires == 110.0  # the driver gives the renewal up when the lease ends
    (event,) = core.mapped(renew, MapSuccess(EXT, 4001, 100.0), 60.5)
    assert isinstance(event, PortMappingChanged)
    assert event.change is PortMappingChange.RENEWED
    assert event.previous == mapping
    (renew,) = core.poll(110.5)
    assert isinstance(renew, Map)
    (event,) = core.mapped(
        renew, MapSuccess(ipaddress.IPv4Address("198.51.100.7"), 4444, 100.0), 111
    )
    assert isinstance(event, PortMappingChanged)
    assert event.change is PortMappingChange.UPDATED
    assert "198.51.100.7/tcp/4444" in event.reason


def test_failed_renewals_until_the_lease_ends_lose_the_mapping() -> None:
    core = started()
    mapped(core, 0.0, lease=20.0)
    (renew,) = core.poll(10.0)
    assert isinstance(renew, Map)
    (failed,) = core.mapped(renew, MapError(PortMappingFailure.TIMEOUT, "no answer"), 10.0)
    assert isinstance(failed, PortMappingFailed)
    assert failed.reason == "renewal failed: no answer"
    assert failed.retry_at == 15.0  # backoff 5 s, within half the time left
    assert len(core.mappings) == 1  # still there until the lease ends
    (renew,) = core.poll(15.0)
    assert isinstance(renew, Map)
    (failed,) = core.mapped(renew, MapError(PortMappingFailure.TIMEOUT, "no answer"), 15.0)
    assert isinstance(failed, PortMappingFailed)
    assert failed.retry_at == 17.5
    assert core.expire(19.9) == []
    (lost,) = core.expire(20.0)
    assert isinstance(lost, PortMappingChanged)
    assert lost.change is PortMappingChange.LOST
    assert "the lease ran out: no answer" in lost.reason
    assert core.mappings == []
    assert core.poll(20.0) == [Discover()]


def test_ports_no_longer_wanted_and_shutdown_remove_mappings() -> None:
    core = started()
    mapped(core, 0.0)
    core.set_ports(ME, set(), 1.0)
    (unmap,) = core.poll(1.0)
    assert isinstance(unmap, Unmap)
    (event,) = core.unmapped(unmap, 1.1)
    assert isinstance(event, PortMappingChanged)
    assert event.change is PortMappingChange.REMOVED
    assert core.mappings == []
    assert core.next_deadline == math.inf
    core.set_ports(ME, {4001}, 2.0)
    mapped(core, 2.0)
    (unmap,) = core.shutdown()
    assert unmap.mapping.external is not None
    assert core.poll(3.0) == [unmap]  # nothing new is mapped while closing


def test_permanent_mappings_are_not_renewed() -> None:
    core = started()
    mapped(core, 0.0, lease=0.0)
    (mapping,) = core.mappings
    assert mapping.permanent
    assert core.next_deadline == math.inf
    assert core.expire(1e9) == []


def test_a_cgnat_address_is_mapped_but_not_public() -> None:
    core = started()
    core.poll(0.0)
    core.discovered([answer(PCP, 0.0)], 0.0)
    (action,) = core.poll(0.0)
    assert isinstance(action, Map)
    (event,) = core.mapped(action, MapSuccess(ipaddress.IPv4Address("100.64.1.2"), 4001, 50), 0)
    assert isinstance(event, PortMappingChanged)
    assert str(event.mapping.external) == "/ip4/100.64.1.2/tcp/4001"
    assert not event.mapping.external_is_public
    assert event.mapping.not_public_reason == (
        "router's external address 100.64.1.2 is in the shared address space (RFC 6598): "
        "a carrier-grade NAT is in front"
    )


ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t4102000A\t0003\t0\t0\t200\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\tC0FFFFFF\t0\t0\t0
eth2\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0
garbage line
eth3\t00000000\tZZZZ\t0003\t0\t0\t0\t00000000\t0\t0\t0
"""


def test_default_gateways_from_proc_net_route() -> None:
    from libp2p.portmap.gateway import parse_proc_net_route

    # Lowest metric first; a default route without RTF_GATEWAY and garbage are skipped.
    assert parse_proc_net_route(ROUTES) == [("eth0", "192.0.2.1"), ("eth1", "10.0.2.65")]
    assert parse_proc_net_route("") == []
