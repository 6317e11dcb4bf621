"""Identify: the message codec, its size and validation policies, merging, and the stream level."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from multiaddr import Multiaddr

from libp2p.crypto.keys import Ed25519PublicKey, generate_ed25519
from libp2p.exceptions import (
    DecodeError,
    LocalUsageError,
    MessageTooLarge,
    RemoteProtocolError,
    UnexpectedEOF,
)
from libp2p.identify import (
    MAX_MESSAGE_SIZE,
    MAX_MESSAGES,
    MAX_OWN_MESSAGE_SIZE,
    PROTOCOL_ID,
    PUSH_PROTOCOL_ID,
    IdentifyInfo,
    decode_identify,
    encode_identify,
    merge,
    parse_multiaddr_bytes,
    protobuf_merge,
    read_identify,
    send_identify,
)
from libp2p.varint import encode_lp, encode_uvarint

# RFC 8032 test 1 public key.
PUB = Ed25519PublicKey.from_bytes(
    bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
)

# An Identify message written out field by field (tag = field number << 3 | 2), in field-number
# order as go and we encode it.
VECTOR = bytes.fromhex(
    "".join(
        [
            # 1 publicKey: PublicKey{Type: Ed25519, Data: <32 bytes>}
            "0a24",
            "08011220d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            # 2 listenAddrs: /ip4/192.0.2.42/tcp/443 and /ip4/192.0.2.1/udp/4001/quic-v1
            "1208",
            "04c000022a0601bb",
            "120b",
            "04c000020191020fa1cd03",
            # 3 protocols
            "1a0e",
            b"/ipfs/id/1.0.0".hex(),
            "1a0d",
            b"/libp2p/dcutr".hex(),
            # 4 observedAddr: /ip4/198.51.100.7/tcp/4001
            "2208",
            "04c6336407060fa1",
            # 5 protocolVersion, 6 agentVersion
            "2a0a",
            b"ipfs/0.1.0".hex(),
            "320b",
            b"py-test/1.0".hex(),
            # 8 signedPeerRecord (opaque here)
            "4203",
            "010203",
        ]
    )
)

VECTOR_INFO = IdentifyInfo(
    protocol_version="ipfs/0.1.0",
    agent_version="py-test/1.0",
    public_key=PUB,
    listen_addrs=(
        Multiaddr("/ip4/192.0.2.42/tcp/443"),
        Multiaddr("/ip4/192.0.2.1/udp/4001/quic-v1"),
    ),
    observed_addr=Multiaddr("/ip4/198.51.100.7/tcp/4001"),
    protocols=("/ipfs/id/1.0.0", "/libp2p/dcutr"),
    signed_peer_record=b"\x01\x02\x03",
)


def test_protocol_ids() -> None:
    assert PROTOCOL_ID == "/ipfs/id/1.0.0"
    assert PUSH_PROTOCOL_ID == "/ipfs/id/push/1.0.0"
    assert (MAX_MESSAGE_SIZE, MAX_MESSAGES, MAX_OWN_MESSAGE_SIZE) == (8192, 10, 4096)


# -- codec -------------------------------------------------------------------------------------


def test_hand_built_message_decodes() -> None:
    assert decode_identify(VECTOR) == VECTOR_INFO


def test_encoding_matches_hand_built_bytes() -> None:
    assert encode_identify(VECTOR_INFO) == VECTOR


def test_fields_in_any_order_decode() -> None:
    # protobuf does not fix field order; rust and js may write another one.
    reordered = bytes.fromhex("2a0a" + b"ipfs/0.1.0".hex() + "2208" + "04c6336407060fa1")
    info = decode_identify(reordered)
    assert info.protocol_version == "ipfs/0.1.0"
    assert info.observed_addr == Multiaddr("/ip4/198.51.100.7/tcp/4001")


def test_round_trip_with_a_generated_key() -> None:
    info = IdentifyInfo(
        protocol_version="ipfs/0.1.0",
        agent_version="trio-libp2p/0.1",
        public_key=generate_ed25519().public_key,
        listen_addrs=(Multiaddr("/ip6/2001:db8::1/tcp/4001"), Multiaddr("/dns4/a.example/tcp/1")),
        observed_addr=Multiaddr("/ip4/203.0.113.5/tcp/50000"),
        protocols=("/ipfs/ping/1.0.0",),
        signed_peer_record=b"\x00" * 100,
    )
    assert decode_identify(encode_identify(info)) == info


def test_empty_message_means_every_field_absent() -> None:
    assert encode_identify(IdentifyInfo()) == b""
    assert decode_identify(b"") == IdentifyInfo()


def test_present_but_empty_fields_stay_present() -> None:
    info = IdentifyInfo(protocol_version="", agent_version="", signed_peer_record=b"")
    data = encode_identify(info)
    assert data == bytes.fromhex("2a00" + "3200" + "4200")
    assert decode_identify(data) == info


def test_unknown_fields_are_ignored() -> None:
    # Field 7 (varint) and field 99 (bytes) are not ours; a newer peer may send them.
    data = bytes.fromhex("3801") + bytes.fromhex("9a0602abcd") + bytes.fromhex("2a00")
    assert decode_identify(data) == IdentifyInfo(protocol_version="")


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a",  # tag without length
        b"\x0a\x05ab",  # length past the end
        b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # absurd length
        b"\x2a\x03ab",  # truncated string
        b"\x0f",  # wire type 7 does not exist
        b"\x08",  # varint field without its value
    ],
)
def test_malformed_protobuf_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_identify(data)


@pytest.mark.parametrize(
    "key",
    [
        b"",
        b"\x08\x01\x12\x03abc",  # Ed25519 key of 3 bytes
        b"\x08\x09\x12\x20" + bytes(32),  # unknown key type
        b"\xff\xff",  # not a PublicKey protobuf
    ],
)
def test_bad_public_key_is_a_decode_error(key: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_identify(b"\x0a" + encode_uvarint(len(key)) + key)


BAD_ADDRS = [
    bytes.fromhex("04c0"),  # truncated ip4 (py-multiaddr alone reads it as /ip4/0.0.0.192)
    bytes.fromhex("04c000022a06"),  # tcp without its port
    bytes.fromhex("ffff03"),  # unknown protocol code
    bytes.fromhex("8400c000022a"),  # non-minimal varint for ip4
    bytes.fromhex("3503ff6162"),  # dns with invalid UTF-8
    bytes.fromhex("a50303010203"),  # p2p value that is not a multihash
    b"",
]


@pytest.mark.parametrize("addr", BAD_ADDRS)
def test_parse_multiaddr_bytes_rejects_invalid(addr: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_multiaddr_bytes(addr)


@pytest.mark.parametrize(
    "text",
    [
        "/ip4/192.0.2.42/tcp/443",
        "/ip6/2001:db8::1/udp/4001/quic-v1",
        "/dns4/example.com/tcp/443/wss",
        "/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
        "/ip4/192.0.2.1/tcp/4001/p2p/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC/p2p-circuit",
        "/ip4/1.2.3.4/udp/1/quic-v1/webtransport/certhash/uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g",
    ],
)
def test_parse_multiaddr_bytes_accepts_valid(text: str) -> None:
    addr = Multiaddr(text)
    assert parse_multiaddr_bytes(addr.to_bytes()) == addr


def test_invalid_listen_addrs_are_skipped_not_fatal() -> None:
    good = Multiaddr("/ip4/192.0.2.42/tcp/443").to_bytes()
    data = b"".join(
        b"\x12" + encode_uvarint(len(a)) + a for a in [BAD_ADDRS[0], good, BAD_ADDRS[2]]
    )
    data += b"\x0a\x24" + PUB.serialize()
    info = decode_identify(data)
    assert info.listen_addrs == (Multiaddr(good),)
    assert info.public_key == PUB
    with pytest.raises(DecodeError, match="listenAddrs"):
        decode_identify(data, strict=True)


def test_invalid_observed_addr_reads_as_absent() -> None:
    data = b"\x22\x02" + BAD_ADDRS[0] + b"\x2a\x00"
    assert decode_identify(data) == IdentifyInfo(protocol_version="")
    with pytest.raises(DecodeError, match="observedAddr"):
        decode_identify(data, strict=True)


def test_invalid_utf8_strings_decode_with_replacement() -> None:
    data = b"\x1a\x02\xff\xfe" + b"\x32\x01\x80"
    info = decode_identify(data)
    assert info.protocols == ("\ufffd\ufffd",)
    assert info.agent_version == "\ufffd"


# -- the 4 KiB write limit ---------------------------------------------------------------------


def _addrs(n: int) -> tuple[Multiaddr, ...]:
    return tuple(Multiaddr(f"/ip4/198.51.100.{i % 256}/tcp/{1000 + i}") for i in range(n))


def test_signed_record_is_kept_when_everything_fits() -> None:
    info = IdentifyInfo(public_key=PUB, listen_addrs=_addrs(10), signed_peer_record=b"r" * 3000)
    data = encode_identify(info)
    assert len(data) <= MAX_OWN_MESSAGE_SIZE
    assert decode_identify(data) == info


def test_signed_record_is_dropped_first() -> None:
    # 200 addresses take 2000 bytes: they fit alone, but not with a 3000-byte record.
    info = IdentifyInfo(public_key=PUB, listen_addrs=_addrs(200), signed_peer_record=b"r" * 3000)
    data = encode_identify(info)
    assert len(data) <= MAX_OWN_MESSAGE_SIZE
    decoded = decode_identify(data)
    assert decoded.signed_peer_record is None
    assert decoded.listen_addrs == info.listen_addrs
    assert decoded.public_key == PUB


def test_listen_addrs_are_trimmed_to_the_longest_prefix_that_fits() -> None:
    info = IdentifyInfo(public_key=PUB, protocols=("/ipfs/id/1.0.0",), listen_addrs=_addrs(1000))
    data = encode_identify(info)
    assert len(data) <= MAX_OWN_MESSAGE_SIZE
    decoded = decode_identify(data)
    kept = len(decoded.listen_addrs)
    assert 0 < kept < 1000
    assert decoded.listen_addrs == info.listen_addrs[:kept]
    assert decoded.protocols == info.protocols
    assert decoded.public_key == PUB
    # Maximal: each of these addresses is a 10-byte field, and one more would not have fitted.
    assert len(data) + 10 > MAX_OWN_MESSAGE_SIZE


def test_message_that_cannot_fit_is_a_local_error() -> None:
    info = IdentifyInfo(protocols=tuple(f"/proto/{i:04d}/1.0.0" for i in range(300)))
    with pytest.raises(LocalUsageError):
        encode_identify(info)


# -- merging -----------------------------------------------------------------------------------


def test_merge_replaces_present_fields_and_keeps_absent_ones() -> None:
    old = VECTOR_INFO
    push = IdentifyInfo(listen_addrs=(Multiaddr("/ip4/203.0.113.1/tcp/1"),), agent_version="x/2")
    merged = merge(old, push)
    assert merged.listen_addrs == push.listen_addrs  # replaced, not appended
    assert merged.agent_version == "x/2"
    assert merged.protocols == old.protocols
    assert merged.public_key == old.public_key
    assert merged.signed_peer_record == old.signed_peer_record
    assert merged.observed_addr == old.observed_addr
    assert merge(old, IdentifyInfo()) == old


def test_protobuf_merge_concatenates_repeated_fields() -> None:
    first = IdentifyInfo(protocols=("/a",), listen_addrs=_addrs(1), agent_version="x")
    second = IdentifyInfo(protocols=("/b",), listen_addrs=_addrs(2)[1:], agent_version="y")
    combined = protobuf_merge(first, second)
    assert combined.protocols == ("/a", "/b")
    assert combined.listen_addrs == _addrs(2)
    assert combined.agent_version == "y"
    # The defining property: merging equals decoding the concatenated messages.
    assert combined == decode_identify(encode_identify(first) + encode_identify(second))


# -- streams -----------------------------------------------------------------------------------


async def _read_from(raw: bytes, *, eof: bool = True) -> IdentifyInfo:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(raw)
    if eof:
        await left.send_eof()
    return await read_identify(right)


async def test_send_then_read_over_a_memory_stream() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_identify, left, VECTOR_INFO)
        assert await read_identify(right) == VECTOR_INFO
    # send_identify closed its write side and nothing more arrives.
    assert await right.receive_some() == b""
    # Our direction is still open: the querier may keep using the stream.
    await right.send_all(b"still open")
    assert await left.receive_some() == b"still open"


async def test_two_message_response_like_go() -> None:
    # go splits a response over 2 KiB: the second message carries only signedPeerRecord.
    without_record = IdentifyInfo(
        public_key=PUB, listen_addrs=_addrs(3), protocols=("/ipfs/id/1.0.0",)
    )
    record_only = IdentifyInfo(signed_peer_record=b"\x0a" * 2500)
    raw = encode_lp(encode_identify(without_record)) + encode_lp(encode_identify(record_only))
    info = await _read_from(raw)
    assert info == IdentifyInfo(
        public_key=PUB,
        listen_addrs=_addrs(3),
        protocols=("/ipfs/id/1.0.0",),
        signed_peer_record=b"\x0a" * 2500,
    )


async def test_ten_messages_are_accepted() -> None:
    parts = [IdentifyInfo(protocols=(f"/p/{i}",)) for i in range(MAX_MESSAGES)]
    info = await _read_from(b"".join(encode_lp(encode_identify(p)) for p in parts))
    assert info.protocols == tuple(f"/p/{i}" for i in range(MAX_MESSAGES))


async def test_eleven_messages_are_rejected() -> None:
    part = encode_lp(encode_identify(IdentifyInfo(agent_version="a")))
    with pytest.raises(RemoteProtocolError, match="more than 10"):
        await _read_from(part * (MAX_MESSAGES + 1))


async def test_eleventh_message_is_rejected_without_waiting_for_eof() -> None:
    part = encode_lp(encode_identify(IdentifyInfo(agent_version="a")))
    with pytest.raises(RemoteProtocolError, match="more than 10"):
        await _read_from(part * (MAX_MESSAGES + 1), eof=False)


async def test_message_of_exactly_8_kib_is_accepted() -> None:
    payload = b"\x42\xfd\x3f" + b"s" * (MAX_MESSAGE_SIZE - 3)  # field 8, length 8189
    assert len(payload) == MAX_MESSAGE_SIZE
    info = await _read_from(encode_lp(payload))
    assert info.signed_peer_record == b"s" * (MAX_MESSAGE_SIZE - 3)


async def test_message_over_8_kib_is_rejected_from_its_length_alone() -> None:
    # Only the length prefix is sent, and no EOF: the limit applies before any payload is read.
    with pytest.raises(MessageTooLarge):
        await _read_from(encode_uvarint(MAX_MESSAGE_SIZE + 1), eof=False)


async def test_eof_before_any_message() -> None:
    with pytest.raises(UnexpectedEOF):
        await _read_from(b"")


async def test_eof_inside_a_message() -> None:
    with pytest.raises(UnexpectedEOF):
        await _read_from(encode_lp(VECTOR)[:-1])


async def test_malformed_message_on_the_stream() -> None:
    with pytest.raises(DecodeError):
        await _read_from(encode_lp(b"\x0a\x05ab"))


async def test_empty_message_then_eof_is_an_empty_identify() -> None:
    assert await _read_from(b"\x00") == IdentifyInfo()
