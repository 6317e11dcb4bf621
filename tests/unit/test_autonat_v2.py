"""AutoNAT v2 cores: the codec (byte vectors), the server's policy, the dial data counter and
the client's judgement, each driven with explicit ``now`` values."""

from __future__ import annotations

import random

import pytest
from multiaddr import Multiaddr

from libp2p.crypto.keys import Ed25519PrivateKey
from libp2p.exceptions import LocalUsageError
from libp2p.host.autonat.v2 import (
    AutoNATv2ServerConfig,
    CheckOutcome,
    Dial,
    DialBackSeen,
    DialDataCounter,
    DialRequestPolicy,
    DialStatus,
    MalformedAutoNATv2Message,
    Reject,
    ResponseStatus,
    interpret,
)
from libp2p.host.autonat.v2.client_core import (
    consistent_local_addr,
    dial_data_chunks,
    dial_data_decision,
)
from libp2p.host.autonat.v2.protocol import (
    DialBack,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    decode_dial_back,
    decode_dial_back_response,
    decode_message,
    encode_dial_back,
    encode_dial_back_response,
    encode_message,
)
from libp2p.network.address_policy import AddressPolicy
from libp2p.peer.id import PeerID
from libp2p.transport.tcp import TcpTransport

KEYS = [Ed25519PrivateKey.from_seed(bytes([i]) * 32) for i in range(1, 4)]
ALICE, BOB, CAROL = (PeerID.from_public_key(k.public_key) for k in KEYS)
LOCAL = AddressPolicy.local_testing()
OBSERVED = Multiaddr("/ip4/192.0.2.1/tcp/40000")


def ma(text: str) -> Multiaddr:
    return Multiaddr(text)


# -- codec -------------------------------------------------------------------------------------


def test_dial_request_bytes() -> None:
    # Message{dialRequest{addrs=[/ip4/1.2.3.4/tcp/1], nonce=5}}: the nonce is a fixed64
    # (tag 0x11, 8 bytes little-endian).
    data = encode_message(DialRequest((ma("/ip4/1.2.3.4/tcp/1"),), 5))
    assert data.hex() == "15" + "0a13" + "0a08" + "0401020304060001" + "11" + "0500000000000000"
    assert decode_message(data[1:]) == DialRequest((ma("/ip4/1.2.3.4/tcp/1"),), 5)


def test_dial_back_bytes() -> None:
    assert encode_dial_back(DialBack(1)).hex() == "09" + "09" + "0100000000000000"
    assert decode_dial_back(bytes.fromhex("09ffffffffffffffff")) == DialBack((1 << 64) - 1)
    # DialBackResponse{OK}: OK is 0, so proto3 sends an empty body.
    assert encode_dial_back_response() == b"\x00"
    decode_dial_back_response(b"")
    with pytest.raises(MalformedAutoNATv2Message):
        decode_dial_back_response(b"\x08\x01")


def test_zero_response_still_names_its_member() -> None:
    # E_INTERNAL_ERROR / addrIdx 0 / UNUSED are all zeros: the oneof tag must still be there.
    data = encode_message(DialResponse(ResponseStatus.E_INTERNAL_ERROR))
    assert data == b"\x02\x12\x00"
    assert decode_message(data[1:]) == DialResponse(ResponseStatus.E_INTERNAL_ERROR)


@pytest.mark.parametrize(
    "msg",
    [
        DialDataRequest(3, 65_000),
        DialDataResponse(b"\x00" * 4096),
        DialResponse(ResponseStatus.OK, 2, DialStatus.E_DIAL_BACK_ERROR),
        DialResponse(ResponseStatus.E_REQUEST_REJECTED),
    ],
)
def test_round_trips(msg: object) -> None:
    data = encode_message(msg)  # type: ignore[arg-type]
    body = data[2:] if data[0] & 0x80 else data[1:]
    assert decode_message(body) == msg


def test_unknown_codes_and_empty_messages_are_malformed() -> None:
    with pytest.raises(MalformedAutoNATv2Message, match="without a known body"):
        decode_message(b"")
    with pytest.raises(MalformedAutoNATv2Message, match="unknown response status"):
        decode_message(bytes.fromhex("1202" + "0807"))  # status 7
    with pytest.raises(MalformedAutoNATv2Message, match="unknown dial status"):
        decode_message(bytes.fromhex("1205" + "08c801" + "1807"))  # OK, dialStatus 7
    # With another status the dial status is meaningless, and read as UNUSED.
    assert decode_message(bytes.fromhex("1204" + "0864" + "1807")) == DialResponse(
        ResponseStatus.E_REQUEST_REJECTED
    )
    with pytest.raises(MalformedAutoNATv2Message):
        decode_message(b"\x0a\x05\x01")


def test_undecodable_addresses_keep_their_index() -> None:
    from libp2p.host.autonat.v2.pb import autonatv2_pb2

    pb = autonatv2_pb2.Message()
    pb.dialRequest.addrs.extend([b"\xff\xff", ma("/ip4/192.0.2.1/tcp/4001").to_bytes()])
    pb.dialRequest.nonce = 9
    decoded = decode_message(pb.SerializeToString())
    assert decoded == DialRequest((None, ma("/ip4/192.0.2.1/tcp/4001")), 9)


def test_encoder_rejects_what_it_cannot_send() -> None:
    with pytest.raises(LocalUsageError):
        encode_message(DialRequest((ma("/ip4/1.2.3.4/tcp/1"),), 1 << 64))
    with pytest.raises(LocalUsageError):
        encode_message(DialDataResponse(b"\x00" * 4097))
    with pytest.raises(LocalUsageError):
        encode_message(DialRequest((None,), 1))


# -- the server's policy -------------------------------------------------------------------------


def policy(**kw: object) -> DialRequestPolicy:
    config = AutoNATv2ServerConfig(addresses=LOCAL, **kw)  # type: ignore[arg-type]
    return DialRequestPolicy(config, can_dial=TcpTransport.can_dial, rng=random.Random(7))


def request(*addrs: str) -> DialRequest:
    return DialRequest(tuple(ma(a) for a in addrs), 42)


def test_first_dialable_address_is_chosen() -> None:
    p = policy()
    req = DialRequest(
        (
            None,
            ma(f"/ip4/192.0.2.9/tcp/1/p2p/{BOB}/p2p-circuit"),
            ma("/dns4/example.com/tcp/1"),
            ma(f"/ip4/192.0.2.1/tcp/2/p2p/{BOB}"),
            ma("/ip4/192.0.2.1/udp/1/quic-v1"),
            ma("/ip4/192.0.2.1/tcp/3"),
            ma("/ip4/192.0.2.1/tcp/4"),
        ),
        1,
    )
    p = DialRequestPolicy(
        AutoNATv2ServerConfig(addresses=LOCAL),
        can_dial=lambda a: "quic" not in str(a),
        rng=random.Random(1),
    )
    assert p.choose(req, peer=ALICE, observed=OBSERVED, now=0) == Dial(
        5, ma("/ip4/192.0.2.1/tcp/3"), 0
    )
    # Our own /p2p suffix is fine and stripped.
    req2 = request(f"/ip4/192.0.2.1/tcp/2/p2p/{ALICE}")
    assert p.choose(req2, peer=ALICE, observed=OBSERVED, now=0) == Dial(
        0, ma("/ip4/192.0.2.1/tcp/2"), 0
    )


def test_nothing_dialable_is_refused() -> None:
    p = DialRequestPolicy(AutoNATv2ServerConfig())  # loopback not allowed by default
    decision = p.choose(request("/ip4/127.0.0.1/tcp/1"), peer=ALICE, observed=OBSERVED, now=0)
    assert decision == Reject(ResponseStatus.E_DIAL_REFUSED, "no dialable address")
    assert p.choose(DialRequest((), 1), peer=ALICE, observed=OBSERVED, now=0) == decision


def test_only_the_first_max_addresses_are_considered() -> None:
    p = policy(max_addresses=2)
    req = request("/ip4/127.0.0.1/udp/1", "/ip4/127.0.0.1/udp/2", "/ip4/192.0.2.1/tcp/1")
    assert isinstance(p.choose(req, peer=ALICE, observed=OBSERVED, now=0), Reject)


def test_other_ip_costs_dial_data_in_range_and_is_rate_limited() -> None:
    p = policy(dial_data_rate=2)
    req = request("/ip4/198.51.100.7/tcp/1")
    amounts = []
    for now in (0.0, 1.0):
        decision = p.choose(req, peer=ALICE, observed=OBSERVED, now=now)
        assert isinstance(decision, Dial)
        amounts.append(decision.dial_data)
    assert all(30_000 <= a <= 100_000 for a in amounts)
    assert p.choose(req, peer=ALICE, observed=OBSERVED, now=2.0) == Reject(
        ResponseStatus.E_REQUEST_REJECTED, "dial data rate limit"
    )
    # Same IP as observed: free, and not counted.
    assert p.choose(request("/ip4/192.0.2.1/tcp/9"), peer=ALICE, observed=OBSERVED, now=2.0) == (
        Dial(0, ma("/ip4/192.0.2.1/tcp/9"), 0)
    )
    # The window slides.
    assert isinstance(p.choose(req, peer=ALICE, observed=OBSERVED, now=60.5), Dial)


def test_unknown_observed_address_always_pays() -> None:
    decision = policy().choose(request("/ip4/192.0.2.1/tcp/1"), peer=ALICE, observed=None, now=0)
    assert isinstance(decision, Dial)
    assert decision.dial_data >= 30_000


@pytest.mark.parametrize(("relayed", "limited"), [(True, False), (False, True), (True, True)])
def test_relayed_connections_are_rejected(relayed: bool, limited: bool) -> None:
    assert policy().admit(ALICE, relayed=relayed, limited=limited, now=0) == Reject(
        ResponseStatus.E_REQUEST_REJECTED, "relayed connection"
    )


def test_rate_limits_per_peer_global_and_in_progress() -> None:
    p = policy(peer_rate=3, global_rate=4, max_concurrent_per_peer=2)
    assert p.admit(ALICE, relayed=False, limited=False, now=0) is None
    assert p.admit(ALICE, relayed=False, limited=False, now=1) is None
    assert p.admit(ALICE, relayed=False, limited=False, now=2) == Reject(
        ResponseStatus.E_REQUEST_REJECTED, "too many requests in progress"
    )
    p.finish(ALICE)
    assert p.admit(ALICE, relayed=False, limited=False, now=3) is None
    p.finish(ALICE)
    p.finish(ALICE)
    assert p.in_progress(ALICE) == 0
    assert p.admit(ALICE, relayed=False, limited=False, now=4) == Reject(
        ResponseStatus.E_REQUEST_REJECTED, "peer rate limit"
    )
    assert p.admit(BOB, relayed=False, limited=False, now=5) is None
    assert p.admit(CAROL, relayed=False, limited=False, now=6) == Reject(
        ResponseStatus.E_REQUEST_REJECTED, "global rate limit"
    )
    # After the window, the oldest admissions no longer count.
    assert p.recent_requests() == 4
    assert p.admit(CAROL, relayed=False, limited=False, now=60.5) is None
    assert p.recent_requests(ALICE) == 2


def test_default_limits_are_gos() -> None:
    c = AutoNATv2ServerConfig()
    assert (c.global_rate, c.peer_rate, c.dial_data_rate, c.max_concurrent_per_peer) == (
        60,
        12,
        12,
        2,
    )
    assert (c.stream_timeout, c.dial_timeout, c.dial_back_stream_timeout) == (15.0, 10.0, 5.0)
    assert c.dial_data_range == (30_000, 100_000)
    assert c.max_addresses == 50


# -- dial data ---------------------------------------------------------------------------------


def test_dial_data_counter() -> None:
    counter = DialDataCounter(10_000, min_chunk=100)
    assert not counter.feed(4096)
    assert not counter.feed(4096)
    assert counter.feed(4096)  # the last chunk may overshoot
    assert counter.received == 12_288


def test_dial_data_counter_rejects_tiny_and_huge_chunks() -> None:
    with pytest.raises(MalformedAutoNATv2Message, match="below the minimum"):
        DialDataCounter(10_000).feed(99)
    with pytest.raises(MalformedAutoNATv2Message, match="exceeds"):
        DialDataCounter(10_000).feed(4097)
    # A small chunk that completes the amount is fine.
    counter = DialDataCounter(150)
    assert not counter.feed(100)
    assert counter.feed(50)


def test_client_dial_data_decision_and_chunks() -> None:
    addrs = (ma("/ip4/192.0.2.1/tcp/1"),)
    assert dial_data_decision(DialDataRequest(0, 50_000), addrs, max_dial_data=100_000) is None
    assert "we pay up to" in str(
        dial_data_decision(DialDataRequest(0, 100_001), addrs, max_dial_data=100_000)
    )
    assert "address #1" in str(
        dial_data_decision(DialDataRequest(1, 1), addrs, max_dial_data=100_000)
    )
    assert dial_data_chunks(10_000, 4096) == [4096, 4096, 1808]
    assert dial_data_chunks(8192, 4096) == [4096, 4096]
    assert dial_data_chunks(0, 4096) == []


# -- the client's judgement ---------------------------------------------------------------------

TESTED = (ma("/ip4/192.0.2.1/tcp/4001"), ma("/ip6/2001:db8::1/tcp/4001"))
FRESH = DialBackSeen(ma("/ip4/10.0.0.2/tcp/4001"), CAROL, fresh=True)


def ok(status: DialStatus, idx: int = 0) -> DialResponse:
    return DialResponse(ResponseStatus.OK, idx, status)


def test_reachable_needs_the_nonce_on_a_fresh_consistent_connection() -> None:
    assert interpret(ok(DialStatus.OK), TESTED, FRESH) == (
        CheckOutcome.REACHABLE,
        TESTED[0],
        True,
        "",
    )
    outcome, addr, verified, detail = interpret(ok(DialStatus.OK), TESTED, None)
    assert (outcome, addr, verified) == (CheckOutcome.ERROR, TESTED[0], False)
    assert "never arrived" in detail
    stale = DialBackSeen(FRESH.local_addr, BOB, fresh=False)
    assert interpret(ok(DialStatus.OK), TESTED, stale)[0] is CheckOutcome.ERROR
    # The nonce came over IPv4 but the server claims it dialed the IPv6 address.
    outcome, _, verified, detail = interpret(ok(DialStatus.OK, 1), TESTED, FRESH)
    assert (outcome, verified) == (CheckOutcome.ERROR, False)
    assert "inconsistent" in detail


def test_other_statuses() -> None:
    assert interpret(ok(DialStatus.E_DIAL_ERROR), TESTED, None)[0] is CheckOutcome.UNREACHABLE
    assert interpret(ok(DialStatus.E_DIAL_ERROR), TESTED, FRESH)[0] is CheckOutcome.ERROR
    assert interpret(ok(DialStatus.E_DIAL_BACK_ERROR), TESTED, FRESH)[:3] == (
        CheckOutcome.DIAL_BACK_ERROR,
        TESTED[0],
        True,
    )
    assert interpret(ok(DialStatus.E_DIAL_BACK_ERROR), TESTED, None)[2] is False
    assert interpret(ok(DialStatus.UNUSED), TESTED, FRESH)[0] is CheckOutcome.ERROR
    assert interpret(ok(DialStatus.OK, 2), TESTED, FRESH)[:2] == (CheckOutcome.ERROR, None)
    for status, outcome in [
        (ResponseStatus.E_DIAL_REFUSED, CheckOutcome.REFUSED),
        (ResponseStatus.E_REQUEST_REJECTED, CheckOutcome.REJECTED),
        (ResponseStatus.E_INTERNAL_ERROR, CheckOutcome.ERROR),
    ]:
        assert interpret(DialResponse(status), TESTED, FRESH)[:3] == (outcome, None, False)


@pytest.mark.parametrize(
    ("local", "tested", "expected"),
    [
        ("/ip4/10.0.0.2/tcp/4001", "/ip4/192.0.2.1/tcp/5555", True),  # NAT: port differs
        ("/ip4/10.0.0.2/tcp/4001", f"/ip4/192.0.2.1/tcp/1/p2p/{ALICE}", True),
        ("/ip4/10.0.0.2/tcp/4001", "/dns4/example.com/tcp/1", True),
        ("/ip4/10.0.0.2/tcp/4001", "/dns/example.com/tcp/1", True),
        ("/ip4/10.0.0.2/tcp/4001", "/dns6/example.com/tcp/1", False),
        ("/ip4/10.0.0.2/tcp/4001", "/ip6/2001:db8::1/tcp/1", False),
        ("/ip4/10.0.0.2/tcp/4001", "/ip4/192.0.2.1/udp/1/quic-v1", False),
        ("/ip4/10.0.0.2/tcp/4001", "/ip4/192.0.2.1/tcp/1/ws", False),
    ],
)
def test_consistent_local_addr(local: str, tested: str, expected: bool) -> None:
    assert consistent_local_addr(ma(local), ma(tested)) is expected
    assert consistent_local_addr(None, ma(tested)) is False
