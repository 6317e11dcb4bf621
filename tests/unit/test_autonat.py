"""AutoNAT v1 cores: the codec, the server's dial-back policy and the client's reachability
tracker, with time passed in as plain numbers."""

from __future__ import annotations

import pytest
from multiaddr import Multiaddr

from libp2p.crypto.keys import Ed25519PrivateKey
from libp2p.host.autonat import (
    AutoNATClientConfig,
    AutoNATServerConfig,
    DialBack,
    DialBackPolicy,
    DialRequest,
    DialResponse,
    MalformedAutoNATMessage,
    Reachability,
    ReachabilityChanged,
    ReachabilityProbed,
    ReachabilityTracker,
    Refuse,
    ResponseStatus,
)
from libp2p.host.autonat.pb import autonat_pb2
from libp2p.host.autonat.protocol import decode_message, encode_message
from libp2p.network.address_policy import AddressPolicy
from libp2p.peer.id import PeerID
from libp2p.transport.tcp import TcpTransport
from libp2p.varint import decode_uvarint

KEYS = [Ed25519PrivateKey.from_seed(bytes([i]) * 32) for i in range(1, 5)]
A, B, C, D = (PeerID.from_public_key(k.public_key) for k in KEYS)
M = Multiaddr


def body(framed: bytes) -> bytes:
    parsed = decode_uvarint(framed)
    assert parsed is not None
    length, offset = parsed
    assert len(framed) == offset + length
    return framed[offset:]


# -- codec --------------------------------------------------------------------------------------


def test_dial_request_round_trips_and_always_carries_its_type() -> None:
    req = DialRequest(A, (M("/ip4/192.0.2.1/tcp/4001"), M("/ip6/2001:db8::1/tcp/4001")))
    raw = body(encode_message(req))
    # type = DIAL (0) is on the wire: field 1, varint, value 0.
    assert raw.startswith(b"\x08\x00")
    assert decode_message(raw) == req
    pb = autonat_pb2.Message()
    pb.ParseFromString(raw)
    assert pb.HasField("type")
    assert pb.dial.peer.id == A.to_bytes()


@pytest.mark.parametrize(
    "resp",
    [
        DialResponse(ResponseStatus.OK, "", M("/ip4/198.51.100.7/tcp/4001")),
        DialResponse(ResponseStatus.E_DIAL_ERROR, "dial failed"),
        DialResponse(ResponseStatus.E_DIAL_REFUSED, "too many dials"),
        DialResponse(ResponseStatus.E_BAD_REQUEST),
        DialResponse(ResponseStatus.E_INTERNAL_ERROR, "oops"),
    ],
)
def test_dial_response_round_trips(resp: DialResponse) -> None:
    raw = body(encode_message(resp))
    assert raw.startswith(b"\x08\x01")
    assert decode_message(raw) == resp
    pb = autonat_pb2.Message()
    pb.ParseFromString(raw)
    # status is written even when it is OK (0).
    assert pb.dialResponse.HasField("status")


def test_dial_request_bytes() -> None:
    # {type: DIAL, dial: {peer: {id: <A>, addrs: [/ip4/192.0.2.1/tcp/4001]}}}
    peer_id = A.to_bytes()
    addr = M("/ip4/192.0.2.1/tcp/4001").to_bytes()
    peer = b"\x0a" + bytes([len(peer_id)]) + peer_id + b"\x12" + bytes([len(addr)]) + addr
    dial = b"\x0a" + bytes([len(peer)]) + peer
    expected = b"\x08\x00" + b"\x12" + bytes([len(dial)]) + dial
    assert body(encode_message(DialRequest(A, (M("/ip4/192.0.2.1/tcp/4001"),)))) == expected


def raw(**fields: object) -> bytes:
    return autonat_pb2.Message(**fields).SerializeToString()  # type: ignore[arg-type]


BAD = {
    "garbage": b"\x0a\xff\xff\x01",
    "no type": b"",
    "unknown type": b"\x08\x07",
    "DIAL without dial": raw(type=0),
    "DIAL without peer": raw(type=0, dial=autonat_pb2.Message.Dial()),
    "DIAL without peer id": raw(
        type=0, dial=autonat_pb2.Message.Dial(peer=autonat_pb2.Message.PeerInfo(addrs=[b"x"]))
    ),
    "DIAL with a bad peer id": raw(
        type=0, dial=autonat_pb2.Message.Dial(peer=autonat_pb2.Message.PeerInfo(id=b"\x12\x20ab"))
    ),
    "response without body": raw(type=1),
    "response without status": raw(type=1, dialResponse=autonat_pb2.Message.DialResponse()),
    "response with an unknown status": b"\x08\x01\x1a\x02\x08\x37",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_messages_are_rejected(case: str) -> None:
    with pytest.raises(MalformedAutoNATMessage):
        decode_message(BAD[case])


def test_undecodable_addresses_are_skipped() -> None:
    good = M("/ip4/192.0.2.1/tcp/4001")
    msg = autonat_pb2.Message(type=0)  # type: ignore[arg-type]
    msg.dial.peer.id = A.to_bytes()
    msg.dial.peer.addrs.extend([b"\x04\x01", good.to_bytes(), b""])
    decoded = decode_message(msg.SerializeToString())
    assert decoded == DialRequest(A, (good,))
    response = autonat_pb2.Message(type=1)  # type: ignore[arg-type]
    response.dialResponse.status = 0  # type: ignore[assignment]
    response.dialResponse.addr = b"\x04\x01"
    assert decode_message(response.SerializeToString()) == DialResponse(ResponseStatus.OK)


# -- server policy ---------------------------------------------------------------------------

OBSERVED = M("/ip4/203.0.113.5/tcp/50000")


def policy(**kw: object) -> DialBackPolicy:
    return DialBackPolicy(AutoNATServerConfig(**kw), can_dial=TcpTransport.can_dial)  # type: ignore[arg-type]


def decide(
    pol: DialBackPolicy,
    addrs: list[str],
    *,
    peer: PeerID = A,
    remote: PeerID = A,
    observed: Multiaddr | None = OBSERVED,
    relayed: bool = False,
    limited: bool = False,
    now: float = 0.0,
) -> DialBack | Refuse:
    request = DialRequest(peer, tuple(M(a) for a in addrs))
    return pol.decide(
        request, remote_peer=remote, observed=observed, relayed=relayed, limited=limited, now=now
    )


def test_observed_address_first_then_same_ip_addresses() -> None:
    out = decide(policy(), ["/ip4/203.0.113.5/tcp/4001", "/ip4/203.0.113.5/tcp/4002"])
    assert out == DialBack(
        (OBSERVED, M("/ip4/203.0.113.5/tcp/4001"), M("/ip4/203.0.113.5/tcp/4002"))
    )


def test_foreign_ips_are_rewritten_to_the_observed_ip() -> None:
    out = decide(
        policy(),
        ["/ip4/192.0.2.99/tcp/4001", "/ip6/2001:db8::1/tcp/4002", "/ip4/10.0.0.1/tcp/4001"],
    )
    assert isinstance(out, DialBack)
    assert out.addrs == (
        OBSERVED,
        M("/ip4/203.0.113.5/tcp/4001"),
        M("/ip4/203.0.113.5/tcp/4002"),
    )
    assert all("203.0.113.5" in str(a) for a in out.addrs)


def test_foreign_ips_are_dropped_without_rewriting() -> None:
    out = decide(
        policy(rewrite_foreign_ips=False),
        ["/ip4/192.0.2.99/tcp/4001", "/ip4/203.0.113.5/tcp/4003"],
    )
    assert out == DialBack((OBSERVED, M("/ip4/203.0.113.5/tcp/4003")))


def test_circuit_dns_foreign_peer_and_undialable_addresses_are_skipped() -> None:
    out = decide(
        policy(),
        [
            f"/ip4/203.0.113.5/tcp/4001/p2p/{B}/p2p-circuit",
            f"/ip4/203.0.113.9/tcp/4001/p2p/{B}/p2p-circuit/p2p/{A}",
            "/dns4/example.com/tcp/4001",
            f"/ip4/203.0.113.5/tcp/4004/p2p/{B}",
            "/ip4/203.0.113.5/udp/4001/quic-v1",
            f"/ip4/203.0.113.5/tcp/4005/p2p/{A}",
            "/ip4/203.0.113.5/tcp/50000",
        ],
    )
    assert out == DialBack((OBSERVED, M("/ip4/203.0.113.5/tcp/4005")))


def test_at_most_sixteen_addresses() -> None:
    out = decide(policy(), [f"/ip4/203.0.113.5/tcp/{4000 + i}" for i in range(40)])
    assert isinstance(out, DialBack)
    assert len(out.addrs) == 16
    assert out.addrs[0] == OBSERVED
    assert decide(policy(max_addresses=2), ["/ip4/1.2.3.4/tcp/1"]) == DialBack(
        (OBSERVED, M("/ip4/203.0.113.5/tcp/1"))
    )


@pytest.mark.parametrize(("relayed", "limited"), [(True, False), (False, True), (True, True)])
def test_relayed_or_limited_connections_are_refused(relayed: bool, limited: bool) -> None:
    out = decide(policy(), ["/ip4/203.0.113.5/tcp/4001"], relayed=relayed, limited=limited)
    assert out == Refuse(ResponseStatus.E_DIAL_REFUSED, "relayed connection")


def test_circuit_observed_address_is_refused() -> None:
    out = decide(policy(), [], observed=M(f"/ip4/198.51.100.1/tcp/1/p2p/{B}/p2p-circuit"))
    assert isinstance(out, Refuse)
    assert out.status is ResponseStatus.E_DIAL_REFUSED


def test_peer_id_mismatch_is_a_bad_request() -> None:
    out = decide(policy(), ["/ip4/203.0.113.5/tcp/4001"], peer=B, remote=A)
    assert out == Refuse(ResponseStatus.E_BAD_REQUEST, "peer id mismatch")


def test_blocked_observed_addresses_are_refused() -> None:
    loopback = M("/ip4/127.0.0.1/tcp/5000")
    assert decide(policy(), [], observed=loopback) == Refuse(
        ResponseStatus.E_DIAL_REFUSED, "observed address blocked"
    )
    allowed = decide(policy(addresses=AddressPolicy.local_testing()), [], observed=loopback)
    assert allowed == DialBack((loopback,))
    denied = policy(addresses=AddressPolicy(deny=("203.0.113.0/24",)))
    assert isinstance(decide(denied, []), Refuse)
    # Documentation and private ranges count by default (design §5).
    assert isinstance(decide(policy(), [], observed=M("/ip4/10.1.2.3/tcp/1")), DialBack)
    assert isinstance(decide(policy(), [], observed=M("/ip4/192.0.2.1/tcp/1")), DialBack)


def test_per_peer_rate_limit_with_a_sliding_window() -> None:
    pol = policy()
    addrs = ["/ip4/203.0.113.5/tcp/4001"]
    for t in (0.0, 10.0, 20.0):
        assert isinstance(decide(pol, addrs, now=t), DialBack)
    assert decide(pol, addrs, now=30.0) == Refuse(ResponseStatus.E_DIAL_REFUSED, "peer rate limit")
    # Another peer is not affected.
    assert isinstance(decide(pol, addrs, peer=B, remote=B, now=30.0), DialBack)
    assert pol.recent_dials(A) == 3
    # The first dial leaves the window at t=60: one more is allowed, then refused again.
    assert isinstance(decide(pol, addrs, now=59.9), Refuse)
    assert isinstance(decide(pol, addrs, now=60.0), DialBack)
    assert isinstance(decide(pol, addrs, now=61.0), Refuse)
    assert isinstance(decide(pol, addrs, now=120.0), DialBack)
    assert pol.recent_dials(A) == 1  # 60 and 120 remain; 60 is out at exactly 120
    # Refused and bad requests do not count.
    assert isinstance(decide(pol, addrs, peer=C, remote=A, now=121.0), Refuse)
    assert pol.recent_dials(A) == 1


def test_global_rate_limit() -> None:
    pol = policy(throttle_global=30, throttle_per_peer=100)
    addrs = ["/ip4/203.0.113.5/tcp/4001"]
    peers = [A, B, C, D]
    for i in range(30):
        peer = peers[i % 4]
        assert isinstance(decide(pol, addrs, peer=peer, remote=peer, now=float(i)), DialBack)
    assert decide(pol, addrs, peer=D, remote=D, now=30.0) == Refuse(
        ResponseStatus.E_DIAL_REFUSED, "global rate limit"
    )
    assert isinstance(decide(pol, addrs, peer=D, remote=D, now=60.0), DialBack)
    assert pol.recent_dials() == 30
    unlimited = policy(throttle_global=None, throttle_per_peer=1000)
    for i in range(100):
        assert isinstance(decide(unlimited, addrs, now=0.0 + i * 0.01), DialBack)


def test_default_limits_are_gos() -> None:
    config = AutoNATServerConfig()
    assert (config.throttle_per_peer, config.throttle_global, config.throttle_period) == (
        3,
        30,
        60.0,
    )
    assert (config.dial_timeout, config.max_addresses) == (15.0, 16)


# -- client reachability tracker ----------------------------------------------------------------

ADDR = M("/ip4/198.51.100.7/tcp/4001")
OK = DialResponse(ResponseStatus.OK, "", ADDR)
FAIL = DialResponse(ResponseStatus.E_DIAL_ERROR, "dial failed")


def statuses(events: list[ReachabilityProbed | ReachabilityChanged]) -> list[Reachability]:
    return [e.status for e in events if isinstance(e, ReachabilityChanged)]


def test_first_probe_after_the_boot_delay() -> None:
    tracker = ReachabilityTracker(now=100.0)
    assert tracker.status is Reachability.UNKNOWN
    assert tracker.next_check == 115.0
    assert not tracker.due(114.9)
    assert tracker.due(115.0)


def test_agreeing_results_raise_confidence_up_to_three() -> None:
    tracker = ReachabilityTracker(now=0.0)
    events = tracker.record(A, OK, 15.0)
    assert statuses(events) == [Reachability.PUBLIC]
    changed = events[1]
    assert isinstance(changed, ReachabilityChanged)
    assert (changed.previous, changed.address, changed.server) == (Reachability.UNKNOWN, ADDR, A)
    assert (tracker.status, tracker.confidence, tracker.public_addr) == (
        Reachability.PUBLIC,
        0,
        ADDR,
    )
    # Not sure yet: retry interval.
    assert tracker.next_check == 15.0 + 90.0
    for expected in (1, 2, 3, 3):
        assert statuses(tracker.record(B, OK, 200.0)) == []
        assert tracker.confidence == expected
    # Sure: refresh interval.
    assert tracker.next_check == 200.0 + 15 * 60.0


def test_disagreeing_results_lower_confidence_and_flip_only_at_zero() -> None:
    tracker = ReachabilityTracker(now=0.0)
    tracker.record(A, OK, 0.0)
    for _ in range(3):
        tracker.record(A, OK, 0.0)
    assert tracker.confidence == 3
    for expected in (2, 1, 0):
        assert statuses(tracker.record(B, FAIL, 1.0)) == []
        assert tracker.status is Reachability.PUBLIC
        assert tracker.confidence == expected
        assert tracker.next_check == 1.0 + 90.0
    events = tracker.record(B, FAIL, 2.0)
    assert statuses(events) == [Reachability.PRIVATE]
    assert (tracker.status, tracker.confidence, tracker.public_addr) == (
        Reachability.PRIVATE,
        0,
        None,
    )
    # An agreeing answer raises confidence again; one disagreeing answer then does not flip.
    tracker.record(C, FAIL, 3.0)
    assert tracker.confidence == 1
    assert statuses(tracker.record(A, OK, 4.0)) == []
    assert tracker.status is Reachability.PRIVATE
    assert statuses(tracker.record(A, OK, 5.0)) == [Reachability.PUBLIC]


@pytest.mark.parametrize(
    "response",
    [
        None,
        DialResponse(ResponseStatus.E_DIAL_REFUSED, "too many dials"),
        DialResponse(ResponseStatus.E_BAD_REQUEST),
        DialResponse(ResponseStatus.E_INTERNAL_ERROR),
        DialResponse(ResponseStatus.OK),  # OK without an address
    ],
)
def test_answers_that_are_no_evidence_change_nothing(response: DialResponse | None) -> None:
    tracker = ReachabilityTracker(now=0.0)
    detail = "stream reset" if response is None else ""
    events = tracker.record(A, response, 20.0, detail=detail)
    assert statuses(events) == []
    assert (tracker.status, tracker.confidence) == (Reachability.UNKNOWN, 0)
    assert tracker.next_check == 20.0 + 90.0
    probed = events[0]
    assert isinstance(probed, ReachabilityProbed)
    assert probed.response == (response.status if response is not None else None)
    assert probed.detail == (response.text if response is not None else "stream reset")
    tracker.record(A, OK, 21.0)
    tracker.record(A, OK, 21.0)
    assert tracker.confidence == 1
    tracker.record(A, response, 22.0)
    assert (tracker.status, tracker.confidence) == (Reachability.PUBLIC, 1)


def test_servers_are_throttled_and_least_recently_asked_first() -> None:
    tracker = ReachabilityTracker(now=0.0)
    assert tracker.pick_server([], 15.0) is None
    assert tracker.pick_server([A, B], 15.0) == A
    tracker.probe_started(A, 15.0)
    assert tracker.next_check == 15.0 + 90.0  # no second probe while one is out
    assert tracker.pick_server([A, B], 16.0) == B
    tracker.probe_started(B, 16.0)
    assert tracker.pick_server([A, B], 100.0) is None
    assert tracker.pick_server([A, B], 105.0) == A
    assert tracker.pick_server([B, A], 106.0) == A
    assert tracker.pick_server([A, B, C], 106.0) == C


def test_waiting_for_a_server() -> None:
    tracker = ReachabilityTracker(now=0.0)
    tracker.no_server(15.0)
    assert tracker.next_check == 105.0
    tracker.server_available(20.0)
    assert tracker.next_check == 20.0
    # Only once: a second announcement does not pull the schedule in again.
    tracker.record(A, OK, 20.0)
    tracker.server_available(21.0)
    assert tracker.next_check == 110.0
    # Before the boot delay is over, a server appearing does not start probing early.
    early = ReachabilityTracker(now=0.0)
    early.no_server(1.0)
    early.server_available(2.0)
    assert early.next_check == 15.0


def test_address_change_probes_again_soon_and_costs_full_confidence() -> None:
    config = AutoNATClientConfig(boot_delay=5.0, retry_interval=30.0, refresh_interval=600.0)
    tracker = ReachabilityTracker(config, now=0.0)
    tracker.addresses_changed(1.0)
    assert tracker.next_check == 5.0
    for _ in range(4):
        tracker.record(A, OK, 10.0)
    assert (tracker.confidence, tracker.next_check) == (3, 610.0)
    tracker.addresses_changed(50.0)
    assert (tracker.confidence, tracker.next_check) == (2, 50.0)
    tracker.addresses_changed(51.0)
    assert tracker.confidence == 2


def test_client_defaults_are_gos_and_rusts() -> None:
    config = AutoNATClientConfig()
    assert (config.boot_delay, config.retry_interval, config.refresh_interval) == (
        15.0,
        90.0,
        900.0,
    )
    assert (config.request_timeout, config.server_throttle, config.confidence_max) == (
        30.0,
        90.0,
        3,
    )


def test_invalid_utf8_status_text_is_replaced() -> None:
    # proto2 strings are not UTF-8-checked on parse: the text must still be a str.
    decoded = decode_message(b"\x08\x01\x1a\x06\x08\x00\x12\x02\x00\x80")
    assert decoded == DialResponse(ResponseStatus.OK, "\x00\ufffd")
    assert decode_message(body(encode_message(decoded))) == decoded
