"""DCUtR's codec (the state machine has tests/unit/test_dcutr_machine.py)."""

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
    HolePunchFailure,
    MalformedHolePunch,
    decode_hole_punch,
    encode_hole_punch,
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
