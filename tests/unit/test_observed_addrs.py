"""ObservedAddrManager: which observations count, how observers are grouped, expiry, events."""

from __future__ import annotations

import ipaddress

import pytest
from multiaddr import Multiaddr

from libp2p.exceptions import LocalUsageError
from libp2p.identify import (
    DEFAULT_MIN_OBSERVERS,
    HOLE_PUNCH_MIN_OBSERVERS,
    AddressCandidateAdded,
    AddressCandidateRemoved,
    IPAddress,
    ObservedAddrManager,
    observer_group,
    public_ip_filter,
)

PUBLIC = "/ip4/198.51.100.20/tcp/4001"  # our NAT's mapping of the listen port
LOCAL = "/ip4/10.0.0.2/tcp/4001"  # our end of the connection, from the listen port
LISTEN = ("/ip4/0.0.0.0/tcp/4001",)
RELAY_ID = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def ma(text: str) -> Multiaddr:
    return Multiaddr(text)


def record(
    mgr: ObservedAddrManager,
    observed: str = PUBLIC,
    observer: str = "/ip4/203.0.113.1/tcp/4001",
    *,
    local: str | None = LOCAL,
    listen: tuple[str, ...] = LISTEN,
    now: float = 0.0,
) -> bool:
    return mgr.record(
        ma(observed),
        observer=ma(observer),
        local_addr=None if local is None else ma(local),
        listen_addrs=[ma(a) for a in listen],
        now=now,
    )


def test_defaults() -> None:
    assert (DEFAULT_MIN_OBSERVERS, HOLE_PUNCH_MIN_OBSERVERS) == (2, 1)


# -- agreement ---------------------------------------------------------------------------------


def test_distinct_observers_that_agree_make_a_candidate() -> None:
    mgr = ObservedAddrManager()
    assert record(mgr, observer="/ip4/203.0.113.1/tcp/4001")
    assert mgr.candidates(0.0) == []
    assert mgr.candidates(0.0, min_observers=HOLE_PUNCH_MIN_OBSERVERS) == [ma(PUBLIC)]
    assert record(mgr, observer="/ip4/203.0.113.2/tcp/4001")
    assert mgr.candidates(0.0) == [ma(PUBLIC)]
    assert mgr.observers_of(ma(PUBLIC)) == {"203.0.113.1", "203.0.113.2"}
    assert mgr.candidates(0.0, min_observers=3) == []


def test_candidates_are_ranked_by_observer_count() -> None:
    mgr = ObservedAddrManager(min_observers=1)
    other = "/ip4/198.51.100.99/tcp/4001"
    record(mgr, other, "/ip4/203.0.113.9/tcp/1")
    for i in range(3):
        record(mgr, PUBLIC, f"/ip4/203.0.113.{i + 1}/tcp/1")
    assert mgr.candidates(0.0) == [ma(PUBLIC), ma(other)]


def test_one_liar_with_many_connections_and_ports_counts_once() -> None:
    mgr = ObservedAddrManager()
    liar_claim = "/ip4/192.0.2.66/tcp/4001"
    for port in range(1000, 1050):
        assert record(mgr, liar_claim, f"/ip4/203.0.113.66/tcp/{port}")
    assert mgr.observers_of(ma(liar_claim)) == {"203.0.113.66"}
    assert mgr.candidates(0.0) == []
    assert len(mgr) == 1


def test_an_observer_that_changes_its_story_moves_its_vote() -> None:
    mgr = ObservedAddrManager()
    first, second = "/ip4/198.51.100.20/tcp/4001", "/ip4/198.51.100.21/tcp/4001"
    record(mgr, first, "/ip4/203.0.113.1/tcp/1", now=0.0)
    record(mgr, first, "/ip4/203.0.113.2/tcp/1", now=0.0)
    assert mgr.candidates(1.0) == [ma(first)]
    record(mgr, second, "/ip4/203.0.113.1/tcp/1", now=1.0)
    assert mgr.observers_of(ma(first)) == {"203.0.113.2"}
    assert mgr.observers_of(ma(second)) == {"203.0.113.1"}
    assert mgr.candidates(1.0) == []


def test_ipv6_observers_are_grouped_by_slash_56() -> None:
    mgr = ObservedAddrManager()
    observed = "/ip6/2001:db8:aaaa::20/tcp/4001"
    local = "/ip6/2001:db8:aaaa::20/tcp/4001"
    listen = ("/ip6/::/tcp/4001",)
    # 2001:db8:0:100::/56 spans 2001:db8:0:100:: .. 2001:db8:0:1ff:ffff:...
    assert record(mgr, observed, "/ip6/2001:db8:0:100::1/tcp/1", local=local, listen=listen)
    assert record(mgr, observed, "/ip6/2001:db8:0:1ff::2/tcp/1", local=local, listen=listen)
    assert mgr.observers_of(ma(observed)) == {"2001:db8:0:100::/56"}
    assert mgr.candidates(0.0) == []
    assert record(mgr, observed, "/ip6/2001:db8:0:200::1/tcp/1", local=local, listen=listen)
    assert mgr.observers_of(ma(observed)) == {"2001:db8:0:100::/56", "2001:db8:0:200::/56"}
    assert mgr.candidates(0.0) == [ma(observed)]


def test_observer_group() -> None:
    assert observer_group(ma("/ip4/203.0.113.7/tcp/1")) == "203.0.113.7"
    assert observer_group(ma("/ip6/2001:db8:1:2ff::1/udp/1/quic-v1")) == "2001:db8:1:200::/56"
    assert observer_group(ma("/ip6/::ffff:203.0.113.7/tcp/1")) == "203.0.113.7"
    assert observer_group(ma("/dns4/example.com/tcp/1")) is None


def test_ipv4_mapped_observer_counts_as_its_ipv4_address() -> None:
    mgr = ObservedAddrManager()
    record(mgr, observer="/ip4/203.0.113.7/tcp/1")
    record(mgr, observer="/ip6/::ffff:203.0.113.7/tcp/2")
    assert mgr.observers_of(ma(PUBLIC)) == {"203.0.113.7"}


# -- what is ignored ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observed", "observer", "local"),
    [
        # The relay's view of a relayed connection.
        (f"/p2p/{RELAY_ID}/p2p-circuit", "/ip4/203.0.113.1/tcp/1", LOCAL),
        (PUBLIC + f"/p2p/{RELAY_ID}/p2p-circuit", "/ip4/203.0.113.1/tcp/1", LOCAL),
        # Relayed connection, judged by its remote or local address.
        (PUBLIC, f"/ip4/203.0.113.1/tcp/1/p2p/{RELAY_ID}/p2p-circuit", LOCAL),
        (PUBLIC, "/ip4/203.0.113.1/tcp/1", f"{LOCAL}/p2p/{RELAY_ID}/p2p-circuit"),
    ],
)
def test_relayed_observations_are_ignored(observed: str, observer: str, local: str) -> None:
    mgr = ObservedAddrManager(min_observers=1)
    assert not record(mgr, observed, observer, local=local)
    assert len(mgr) == 0


def test_connection_not_from_a_listen_port_produces_no_candidate() -> None:
    mgr = ObservedAddrManager(min_observers=1)
    # We dialed from an ephemeral port: the NAT mapping seen says nothing about port 4001.
    assert not record(mgr, "/ip4/198.51.100.20/tcp/51234", local="/ip4/10.0.0.2/tcp/51234")
    assert mgr.candidates(0.0) == []
    assert len(mgr) == 0


def test_unknown_local_address_produces_no_candidate() -> None:
    mgr = ObservedAddrManager(min_observers=1)
    assert not record(mgr, local=None)
    assert len(mgr) == 0


@pytest.mark.parametrize(
    ("local", "listen", "accepted"),
    [
        (LOCAL, ("/ip4/10.0.0.2/tcp/4001",), True),
        (LOCAL, ("/ip4/10.0.0.3/tcp/4001",), False),  # another interface
        (LOCAL, ("/ip4/0.0.0.0/tcp/4002",), False),  # another port
        (LOCAL, ("/ip4/0.0.0.0/udp/4001/quic-v1",), False),  # another transport
        (LOCAL, ("/ip6/::/tcp/4001",), True),  # dual-stack wildcard
        (LOCAL, ("/ip6/::1/tcp/4001",), False),
        (LOCAL, ("/ip4/0.0.0.0/tcp/0",), False),  # not yet bound
        (LOCAL, (f"/ip4/10.0.0.2/tcp/4001/p2p/{RELAY_ID}",), True),
        (LOCAL, (), False),
        ("/ip6/2001:db8::2/tcp/4001", ("/ip4/0.0.0.0/tcp/4001",), False),
    ],
)
def test_listen_address_matching(local: str, listen: tuple[str, ...], accepted: bool) -> None:
    mgr = ObservedAddrManager()
    observed = PUBLIC if local.startswith("/ip4") else "/ip6/2001:db8::20/tcp/4001"
    assert record(mgr, observed, local=local, listen=listen) is accepted


@pytest.mark.parametrize(
    ("observed", "local", "listen"),
    [
        ("/ip4/198.51.100.20/udp/4001/quic-v1", LOCAL, LISTEN),  # UDP seen, TCP used
        (
            "/ip4/198.51.100.20/tcp/4001",
            "/ip4/10.0.0.2/udp/4001/quic-v1",
            ("/ip4/0.0.0.0/udp/4001/quic-v1",),
        ),
        ("/ip4/198.51.100.20/tcp/4001/ws", LOCAL, LISTEN),  # WebSocket seen, plain TCP used
        ("/dns4/example.com/tcp/4001", LOCAL, LISTEN),  # not an IP
    ],
)
def test_transport_mismatch_is_ignored(observed: str, local: str, listen: tuple[str, ...]) -> None:
    mgr = ObservedAddrManager(min_observers=1)
    assert not record(mgr, observed, local=local, listen=listen)


@pytest.mark.parametrize(
    "observed",
    [
        "/ip4/0.0.0.0/tcp/4001",
        "/ip4/198.51.100.20/tcp/0",
        "/ip4/224.0.0.1/tcp/4001",
        "/ip6/64:ff9b::c633:6414/tcp/4001",  # NAT64 for 198.51.100.20
    ],
)
def test_unusable_addresses_are_ignored(observed: str) -> None:
    mgr = ObservedAddrManager(min_observers=1)
    if "/ip4/" in observed:
        local, listen, usable = LOCAL, LISTEN, PUBLIC
    else:
        local, listen, usable = (
            "/ip6/::2/tcp/4001",
            ("/ip6/::/tcp/4001",),
            "/ip6/2001:db8::20/tcp/1",
        )
    assert not record(mgr, observed, local=local, listen=listen)
    # Control: the same connection with a usable address counts.
    assert record(mgr, usable, local=local, listen=listen)


def test_loopback_counts_only_when_the_observer_is_on_loopback() -> None:
    mgr = ObservedAddrManager(min_observers=1)
    loop = "/ip4/127.0.0.1/tcp/4001"
    assert not record(mgr, loop, "/ip4/203.0.113.1/tcp/1", local=loop)
    assert not record(mgr, "/ip6/::ffff:127.0.0.1/tcp/4001", "/ip4/203.0.113.1/tcp/1", local=loop)
    assert record(mgr, loop, "/ip4/127.0.0.1/tcp/50000", local=loop)
    assert mgr.candidates(0.0) == [ma(loop)]


def test_documentation_and_private_ranges_count_by_default() -> None:
    # Labs run on documentation ranges; private networks are real networks.
    mgr = ObservedAddrManager(min_observers=1)
    assert record(mgr, "/ip4/192.0.2.7/tcp/4001", "/ip4/192.0.2.1/tcp/1")
    assert record(mgr, "/ip4/10.1.2.3/tcp/4001", "/ip4/10.1.0.1/tcp/1")
    assert set(mgr.candidates(0.0)) == {ma("/ip4/192.0.2.7/tcp/4001"), ma("/ip4/10.1.2.3/tcp/4001")}


def test_public_ip_filter() -> None:
    go_like = public_ip_filter()
    lab = public_ip_filter(["198.51.100.0/24", ipaddress.ip_network("2001:db8::/32")])
    for text, go_ok, lab_ok in [
        ("8.8.8.8", True, True),
        ("198.51.100.20", False, True),
        ("2001:db8::1", False, True),
        ("192.168.1.1", False, False),
        ("::ffff:8.8.8.8", True, True),
    ]:
        ip = ipaddress.ip_address(text)
        assert (go_like(ip), lab(ip)) == (go_ok, lab_ok), text

    mgr = ObservedAddrManager(min_observers=1, accept_ip=go_like)
    assert not record(mgr)
    mgr = ObservedAddrManager(min_observers=1, accept_ip=lab)
    assert record(mgr)


def test_accept_ip_hook_sees_the_observed_ip() -> None:
    seen: list[IPAddress] = []

    def hook(ip: IPAddress) -> bool:
        seen.append(ip)
        return False

    mgr = ObservedAddrManager(accept_ip=hook)
    assert not record(mgr)
    assert seen == [ipaddress.ip_address("198.51.100.20")]


# -- candidate shape ---------------------------------------------------------------------------


def test_candidate_keeps_our_transport_stack() -> None:
    mgr = ObservedAddrManager(min_observers=1)
    certhash = "/certhash/uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g"
    local = "/ip4/10.0.0.2/udp/4001/quic-v1/webtransport" + certhash
    listen = ("/ip4/0.0.0.0/udp/4001/quic-v1/webtransport" + certhash,)
    # The observer does not know our certificate hash; the candidate carries ours.
    assert record(
        mgr, "/ip4/198.51.100.20/udp/40001/quic-v1/webtransport", local=local, listen=listen
    )
    assert mgr.candidates(0.0) == [
        ma("/ip4/198.51.100.20/udp/40001/quic-v1/webtransport" + certhash)
    ]


def test_trailing_peer_id_of_the_observation_is_dropped() -> None:
    mgr = ObservedAddrManager(min_observers=1)
    assert record(mgr, f"{PUBLIC}/p2p/{RELAY_ID}")
    assert mgr.candidates(0.0) == [ma(PUBLIC)]


def test_nat_mapped_port_is_kept() -> None:
    # A NAT that does not preserve ports maps our 4001 to 61000: that is what peers must dial.
    mgr = ObservedAddrManager(min_observers=1)
    assert record(mgr, "/ip4/198.51.100.20/tcp/61000")
    assert mgr.candidates(0.0) == [ma("/ip4/198.51.100.20/tcp/61000")]


# -- time --------------------------------------------------------------------------------------


def test_observations_expire_after_the_ttl_unless_refreshed() -> None:
    mgr = ObservedAddrManager(ttl=100.0)
    record(mgr, observer="/ip4/203.0.113.1/tcp/1", now=0.0)
    record(mgr, observer="/ip4/203.0.113.2/tcp/1", now=10.0)
    assert mgr.next_deadline() == 100.0
    assert mgr.candidates(99.999) == [ma(PUBLIC)]
    assert mgr.candidates(100.0) == []  # the first observation lapsed exactly at its deadline
    assert mgr.observers_of(ma(PUBLIC), now=100.0) == {"203.0.113.2"}
    assert mgr.observers_of(ma(PUBLIC)) == {"203.0.113.1", "203.0.113.2"}  # tracked until purged

    record(mgr, observer="/ip4/203.0.113.1/tcp/1", now=100.0)  # refreshed
    assert mgr.candidates(100.0) == [ma(PUBLIC)]
    assert mgr.next_deadline() == 110.0
    assert mgr.candidates(110.0) == []
    assert mgr.candidates(110.0, min_observers=1) == [ma(PUBLIC)]
    assert mgr.poll_events(200.0) == []  # purges; nothing was reported before
    assert len(mgr) == 0
    assert mgr.next_deadline() is None


def test_events_follow_the_candidate_set() -> None:
    mgr = ObservedAddrManager(ttl=100.0)
    assert mgr.poll_events(0.0) == []
    record(mgr, observer="/ip4/203.0.113.1/tcp/1", now=0.0)
    assert mgr.poll_events(0.0) == []
    record(mgr, observer="/ip4/203.0.113.2/tcp/1", now=5.0)
    assert mgr.poll_events(5.0) == [AddressCandidateAdded(ma(PUBLIC), observers=2)]
    record(mgr, observer="/ip4/203.0.113.3/tcp/1", now=6.0)
    assert mgr.poll_events(6.0) == []  # still the same candidate
    deadline = mgr.next_deadline()
    assert deadline == 100.0
    assert mgr.poll_events(deadline) == []  # two observers left
    assert mgr.next_deadline() == 105.0
    assert mgr.poll_events(105.0) == [AddressCandidateRemoved(ma(PUBLIC))]
    assert mgr.poll_events(105.0) == []


# -- bounds and arguments ----------------------------------------------------------------------


def test_memory_is_bounded_and_the_oldest_observations_go_first() -> None:
    mgr = ObservedAddrManager(max_observations=3, min_observers=1)
    for i in range(10):
        assert record(mgr, f"/ip4/198.51.100.{i}/tcp/4001", f"/ip4/203.0.113.{i}/tcp/1", now=i)
    assert len(mgr) == 3
    assert set(mgr.candidates(10.0)) == {ma(f"/ip4/198.51.100.{i}/tcp/4001") for i in (7, 8, 9)}


def test_expired_observations_make_room_before_live_ones_are_evicted() -> None:
    mgr = ObservedAddrManager(max_observations=2, min_observers=1, ttl=10.0)
    record(mgr, "/ip4/198.51.100.1/tcp/4001", "/ip4/203.0.113.1/tcp/1", now=0.0)
    record(mgr, "/ip4/198.51.100.2/tcp/4001", "/ip4/203.0.113.2/tcp/1", now=5.0)
    record(mgr, "/ip4/198.51.100.3/tcp/4001", "/ip4/203.0.113.3/tcp/1", now=12.0)
    assert len(mgr) == 2
    assert set(mgr.candidates(12.0)) == {
        ma("/ip4/198.51.100.2/tcp/4001"),
        ma("/ip4/198.51.100.3/tcp/4001"),
    }


def test_refreshing_an_observation_does_not_grow_memory() -> None:
    mgr = ObservedAddrManager(max_observations=2)
    for t in range(20):
        record(mgr, observer="/ip4/203.0.113.1/tcp/1", now=float(t))
        record(mgr, observer="/ip4/203.0.113.2/tcp/1", now=float(t))
    assert len(mgr) == 2
    assert mgr.candidates(20.0) == [ma(PUBLIC)]


@pytest.mark.parametrize("kwargs", [{"min_observers": 0}, {"ttl": 0.0}, {"max_observations": 0}])
def test_invalid_configuration_is_a_local_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(LocalUsageError):
        ObservedAddrManager(**kwargs)  # type: ignore[arg-type]


def test_invalid_threshold_is_a_local_error() -> None:
    with pytest.raises(LocalUsageError):
        ObservedAddrManager().candidates(0.0, min_observers=0)
