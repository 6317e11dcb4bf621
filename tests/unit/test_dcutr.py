"""DCUtR's codec and I/O-free attempt logic: cores wired back to back, times passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiaddr import Multiaddr

from libp2p.exceptions import DecodeError
from libp2p.network.address_policy import AddressPolicy
from libp2p.relay.circuit_v2.dcutr import (
    CONNECT,
    MAX_PEER_ADDRS,
    SYNC,
    HolePunchError,
    HolePunchFailure,
    HolePunchInitiator,
    HolePunchResponder,
    MalformedHolePunch,
    decode_hole_punch,
    encode_hole_punch,
    punch_dial_timeout,
)
from libp2p.varint import decode_uvarint

A_ADDRS = [Multiaddr("/ip4/198.51.100.1/tcp/4001"), Multiaddr("/ip4/192.0.2.2/tcp/4001")]
B_ADDRS = [Multiaddr("/ip4/198.51.100.2/tcp/4002")]
PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def body(framed: bytes) -> bytes:
    decoded = decode_uvarint(framed)
    assert decoded is not None
    length, offset = decoded
    assert len(framed) == offset + length
    return framed[offset:]


def test_a_whole_exchange_back_to_back() -> None:
    b = HolePunchInitiator()
    a = HolePunchResponder()
    connect = b.start_attempt(B_ADDRS, now=10.0)
    assert b.attempt == 1
    reply = a.on_connect(body(connect), A_ADDRS, now=10.05)
    assert a.peer_addrs == B_ADDRS
    sync, dial_at, to_dial = b.on_message(body(reply), now=10.2)
    # RTT = CONNECT out to CONNECT back; B dials half an RTT after sending SYNC.
    assert b.rtt == pytest.approx(0.2)
    assert dial_at == pytest.approx(10.3)
    assert to_dial == A_ADDRS
    assert a.on_sync(body(sync), now=10.3) == B_ADDRS
    assert a.rtt == pytest.approx(0.25)


def test_messages_match_the_spec_bytes() -> None:
    # HolePunch{type=SYNC}: field 1 varint 300 -> 08 ac 02.
    assert encode_hole_punch(SYNC) == bytes([3, 0x08, 0xAC, 0x02])
    # CONNECT (100 -> 08 64) with one address in field 2.
    addr = Multiaddr("/ip4/198.51.100.2/tcp/4002")
    raw = addr.to_bytes()
    assert encode_hole_punch(CONNECT, [addr]) == bytes(
        [4 + len(raw), 0x08, 0x64, 0x12, len(raw), *raw]
    )


def test_decode_skips_circuit_and_bad_addresses_and_strips_peer_ids() -> None:
    good = Multiaddr(f"/ip4/198.51.100.2/tcp/4002/p2p/{PEER}")
    circuit = Multiaddr(f"/ip4/198.51.100.10/tcp/4001/p2p/{PEER}/p2p-circuit")
    bare = Multiaddr(f"/p2p/{PEER}")
    from libp2p.relay.circuit_v2.pb import dcutr_pb2

    msg = dcutr_pb2.HolePunch(type=CONNECT)  # type: ignore[arg-type]
    msg.ObsAddrs.extend([good.to_bytes(), circuit.to_bytes(), bare.to_bytes(), b"\xff\xff"])
    type_, addrs = decode_hole_punch(msg.SerializeToString())
    assert type_ == CONNECT
    assert addrs == [Multiaddr("/ip4/198.51.100.2/tcp/4002")]


def test_decode_keeps_only_the_first_addresses_of_a_long_connect() -> None:
    # Every address a CONNECT names is dialed at once: a peer must not be able to make us
    # open ~300 connections (a 4 KiB message's worth) to wherever it likes.
    from libp2p.relay.circuit_v2.pb import dcutr_pb2

    many = [Multiaddr(f"/ip4/198.51.100.{i % 250 + 1}/tcp/{4000 + i}") for i in range(300)]
    msg = dcutr_pb2.HolePunch(type=CONNECT)  # type: ignore[arg-type]
    msg.ObsAddrs.extend(a.to_bytes() for a in many)
    _type, addrs = decode_hole_punch(msg.SerializeToString())
    assert addrs == many[:MAX_PEER_ADDRS]


@pytest.mark.parametrize("data", [b"", b"\x08\x01", b"\x12\x00", b"\xff"])
def test_missing_unknown_or_broken_type_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedHolePunch) as caught:
        decode_hole_punch(data)
    assert caught.value.reason is HolePunchFailure.PROTOCOL_ERROR
    assert isinstance(caught.value, DecodeError)


def test_b_without_addresses_does_not_start() -> None:
    b = HolePunchInitiator()
    loopback_only = [Multiaddr("/ip4/127.0.0.1/tcp/1")]
    with pytest.raises(HolePunchError) as caught:
        b.start_attempt(loopback_only, now=0.0)
    assert caught.value.reason is HolePunchFailure.NO_PUBLIC_ADDRESS
    assert b.attempt == 0
    # A policy that allows loopback (peers on one machine) makes it an address.
    local = HolePunchInitiator(policy=AddressPolicy.local_testing())
    local.start_attempt(loopback_only, now=0.0)


def test_b_stops_when_a_offers_nothing_dialable() -> None:
    b = HolePunchInitiator()
    b.start_attempt(B_ADDRS, now=0.0)
    useless = encode_hole_punch(CONNECT, [Multiaddr("/ip4/127.0.0.1/tcp/1")])
    with pytest.raises(HolePunchError) as caught:
        b.on_message(body(useless), now=0.1)
    assert caught.value.reason is HolePunchFailure.PEER_NO_ADDRESS


def test_b_refuses_sync_as_an_answer_and_a_refuses_it_first() -> None:
    b = HolePunchInitiator()
    b.start_attempt(B_ADDRS, now=0.0)
    with pytest.raises(HolePunchError) as caught:
        b.on_message(body(encode_hole_punch(SYNC)), now=0.1)
    assert caught.value.reason is HolePunchFailure.PROTOCOL_ERROR
    a = HolePunchResponder()
    with pytest.raises(HolePunchError):
        a.on_connect(body(encode_hole_punch(SYNC)), A_ADDRS, now=0.0)
    with pytest.raises(HolePunchError):
        a.on_sync(body(encode_hole_punch(SYNC)), now=0.0)  # no CONNECT yet


def test_three_attempts_then_all_attempts_failed() -> None:
    b = HolePunchInitiator()
    for attempt in (1, 2, 3):
        b.start_attempt(B_ADDRS, now=float(attempt))
        assert b.attempt == attempt
        b.on_message(body(encode_hole_punch(CONNECT, A_ADDRS)), now=attempt + 0.1)
        more = b.attempt_failed()
        assert more is (attempt < 3)
    with pytest.raises(HolePunchError) as caught:
        b.start_attempt(B_ADDRS, now=4.0)
    assert caught.value.reason is HolePunchFailure.ALL_ATTEMPTS_FAILED


def test_each_attempt_measures_its_own_rtt() -> None:
    b = HolePunchInitiator()
    b.start_attempt(B_ADDRS, now=0.0)
    _sync, dial_at, _ = b.on_message(body(encode_hole_punch(CONNECT, A_ADDRS)), now=0.4)
    assert dial_at == pytest.approx(0.6)
    b.attempt_failed()
    b.start_attempt(B_ADDRS, now=5.0)
    _sync, dial_at, _ = b.on_message(body(encode_hole_punch(CONNECT, A_ADDRS)), now=5.1)
    assert b.rtt == pytest.approx(0.1)
    assert dial_at == pytest.approx(5.15)


def test_a_answer_from_an_unasked_b_is_refused() -> None:
    b = HolePunchInitiator()
    with pytest.raises(HolePunchError):
        b.on_message(body(encode_hole_punch(CONNECT, A_ADDRS)), now=0.0)


def test_punch_dial_timeout_follows_the_rtt_within_bounds() -> None:
    assert punch_dial_timeout(0.001) == 1.5
    assert punch_dial_timeout(0.3) == pytest.approx(3.0)
    assert punch_dial_timeout(2.0) == 5.0


def test_address_policy_defaults_and_overrides() -> None:
    policy = AddressPolicy()
    assert policy.accepts(Multiaddr("/ip4/192.0.2.1/tcp/1"))  # documentation range counts
    assert policy.accepts(Multiaddr("/ip4/10.1.2.3/tcp/1"))  # so do private ones
    assert not policy.accepts(Multiaddr("/ip4/127.0.0.1/tcp/1"))
    assert not policy.accepts(Multiaddr("/ip4/0.0.0.0/tcp/1"))
    assert not policy.accepts(Multiaddr("/ip4/169.254.1.1/tcp/1"))
    assert not policy.accepts(Multiaddr("/ip6/fe80::1/tcp/1"))
    assert policy.accepts(Multiaddr("/dns4/example.org/tcp/1"))
    strict = AddressPolicy(deny=("10.0.0.0/8",))
    assert not strict.accepts(Multiaddr("/ip4/10.1.2.3/tcp/1"))
    assert strict.accepts(Multiaddr("/ip4/11.1.2.3/tcp/1"))
    both = AddressPolicy(allow=("127.0.0.0/8",), deny=("127.0.0.2/32",))
    assert both.accepts(Multiaddr("/ip4/127.0.0.1/tcp/1"))
    assert not both.accepts(Multiaddr("/ip4/127.0.0.2/tcp/1"))
    dup = Multiaddr("/ip4/192.0.2.1/tcp/1")
    assert policy.filter([dup, dup, Multiaddr("/ip4/127.0.0.1/tcp/1")]) == [dup]


# -- fuzzing -------------------------------------------------------------------------------------


@given(st.binary(max_size=600))
def test_decode_never_crashes(data: bytes) -> None:
    try:
        type_, addrs = decode_hole_punch(data)
    except MalformedHolePunch:
        return
    assert type_ in (CONNECT, SYNC)
    assert all("p2p-circuit" not in str(a) for a in addrs)


@given(
    st.lists(st.binary(max_size=60), max_size=8),
    st.sampled_from([CONNECT, SYNC]),
)
def test_decode_mutated_valid_messages(raw_addrs: list[bytes], type_: int) -> None:
    from libp2p.relay.circuit_v2.pb import dcutr_pb2

    msg = dcutr_pb2.HolePunch(type=type_)  # type: ignore[arg-type]
    msg.ObsAddrs.extend([*raw_addrs, B_ADDRS[0].to_bytes()])
    got_type, addrs = decode_hole_punch(msg.SerializeToString())
    assert got_type == type_
    assert B_ADDRS[0] in addrs


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_cores_answer_any_bytes_with_a_reasoned_error_or_a_result(
    first: bytes, second: bytes
) -> None:
    a = HolePunchResponder()
    reasons: list[HolePunchFailure] = []
    try:
        a.on_connect(first, A_ADDRS, now=0.0)
        a.on_sync(second, now=0.1)
    except HolePunchError as exc:
        reasons.append(exc.reason)
    b = HolePunchInitiator()
    b.start_attempt(B_ADDRS, now=0.0)
    try:
        _sync, dial_at, addrs = b.on_message(first, now=0.2)
    except HolePunchError as exc:
        reasons.append(exc.reason)
    else:
        assert dial_at == pytest.approx(0.3)
        assert addrs
    assert all(isinstance(r, HolePunchFailure) for r in reasons)
