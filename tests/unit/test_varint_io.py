"""Unsigned varints (spec vectors, minimality, length cap) and BufferedStream framing."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from libp2p.exceptions import DecodeError, MessageTooLarge, UnexpectedEOF
from libp2p.io import BufferedStream
from libp2p.varint import decode_uvarint, encode_lp, encode_uvarint

VECTORS = [(1, "01"), (127, "7f"), (128, "8001"), (255, "ff01"), (300, "ac02"), (16384, "808001")]


@pytest.mark.parametrize(("value", "hexstr"), VECTORS)
def test_vectors(value: int, hexstr: str) -> None:
    assert encode_uvarint(value) == bytes.fromhex(hexstr)
    assert decode_uvarint(bytes.fromhex(hexstr)) == (value, len(hexstr) // 2)


def test_non_minimal_rejected() -> None:
    with pytest.raises(DecodeError, match="non-minimal"):
        decode_uvarint(bytes.fromhex("8100"))


def test_too_long_rejected() -> None:
    with pytest.raises(DecodeError, match="9 bytes"):
        decode_uvarint(b"\xff" * 9 + b"\x01")
    assert decode_uvarint(b"\xff" * 8 + b"\x7f") == ((1 << 63) - 1, 9)


def test_incomplete_returns_none() -> None:
    assert decode_uvarint(b"\x80\x80") is None
    assert decode_uvarint(b"") is None


def test_encode_range() -> None:
    with pytest.raises(ValueError, match="negative"):
        encode_uvarint(-1)
    with pytest.raises(ValueError, match="2\\*\\*63"):
        encode_uvarint(1 << 63)


@given(st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_roundtrip(value: int) -> None:
    enc = encode_uvarint(value)
    assert decode_uvarint(enc + b"tail") == (value, len(enc))


@settings(max_examples=500)
@given(st.binary(max_size=16))
def test_fuzz_decode(data: bytes) -> None:
    try:
        result = decode_uvarint(data)
    except DecodeError:
        return
    if result is not None:
        value, end = result
        assert encode_uvarint(value) == data[:end]


async def test_buffered_stream_framing_and_leftover() -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = BufferedStream(b)
    await a.send_all(encode_lp(b"hello") + encode_lp(b"") + b"rest")
    assert await reader.read_lp(16) == b"hello"
    assert await reader.read_lp(16) == b""
    # The bytes after the last frame are the next layer's: receive_some hands them on.
    assert await reader.receive_some() == b"rest"


async def test_buffered_stream_limits_and_eof() -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = BufferedStream(b)
    await a.send_all(encode_uvarint(1000))
    with pytest.raises(MessageTooLarge):
        await reader.read_lp(999)
    await a.send_all(encode_uvarint(10) + b"abc")
    await a.send_eof()
    with pytest.raises(UnexpectedEOF, match="3 of 10"):
        await reader.read_lp(100)


async def test_read_lp_or_eof() -> None:
    a, b = trio.testing.memory_stream_pair()
    reader = BufferedStream(b)
    await a.send_all(encode_lp(b"x"))
    await a.send_eof()
    assert await reader.read_lp_or_eof(10) == b"x"
    assert await reader.read_lp_or_eof(10) is None


async def test_unread_and_take() -> None:
    _a, b = trio.testing.memory_stream_pair()
    reader = BufferedStream(b, b"abc")
    reader.unread(b"01")
    assert reader.buffered == 5
    assert await reader.read_exactly(3) == b"01a"
    assert reader.take_buffered() == b"bc"
    assert reader.buffered == 0
    assert BufferedStream.wrap(reader) is reader
