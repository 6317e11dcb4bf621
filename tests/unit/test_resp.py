"""The RESP2 encoder and decoder (libp2p/interop/resp.py): vectors, limits and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libp2p.exceptions import DecodeError, LocalUsageError, MessageTooLarge, RemoteProtocolError
from libp2p.interop.resp import (
    NEED_DATA,
    ErrorReply,
    Reply,
    RespDecodeError,
    RespParser,
    RespTooLarge,
    SimpleString,
    encode_command,
)
from tests.fuzzing import mutate


def parse_all(data: bytes, **limits: int) -> list[Reply]:
    parser = RespParser(**limits)
    parser.feed(data)
    out: list[Reply] = []
    while (reply := parser.next_reply()) is not NEED_DATA:
        out.append(reply)  # type: ignore[arg-type]
    assert parser.buffered == 0, "bytes left after the last whole reply"
    return out


def encode_reply(reply: Reply) -> bytes:
    """Our own reference encoder of replies, to build vectors and round trips."""
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, SimpleString):
        return b"+" + reply.text.encode() + b"\r\n"
    if isinstance(reply, ErrorReply):
        return b"-" + reply.text.encode() + b"\r\n"
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if isinstance(reply, bytes):
        return b"$%d\r\n" % len(reply) + reply + b"\r\n"
    return b"*%d\r\n" % len(reply) + b"".join(encode_reply(r) for r in reply)


def test_encode_command() -> None:
    assert encode_command("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert encode_command("BLPOP", "KEY", 0) == b"*3\r\n$5\r\nBLPOP\r\n$3\r\nKEY\r\n$1\r\n0\r\n"
    assert encode_command("RPUSH", b"k", "é") == (
        b"*3\r\n$5\r\nRPUSH\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n"
    )
    # An argument with CRLF inside goes as bytes of a bulk string: nothing to escape.
    assert encode_command("SET", "a\r\nb") == b"*2\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n"


@pytest.mark.parametrize("bad", [(), (True,), (1.5,), (None,)])
def test_encode_command_refuses_misuse(bad: tuple[object, ...]) -> None:
    with pytest.raises(LocalUsageError):
        encode_command(*bad)  # type: ignore[arg-type]


def test_reply_vectors() -> None:
    assert parse_all(b"+PONG\r\n") == [SimpleString("PONG")]
    assert parse_all(b"-ERR unknown command\r\n") == [ErrorReply("ERR unknown command")]
    assert parse_all(b":2\r\n:-7\r\n") == [2, -7]
    assert parse_all(b"$0\r\n\r\n$-1\r\n") == [b"", None]
    assert parse_all(b"$4\r\na\r\nb\r\n") == [b"a\r\nb"]
    # BLPOP's two answers: [key, value], and the null array on a timeout.
    assert parse_all(b"*2\r\n$1\r\nk\r\n$3\r\nval\r\n*-1\r\n") == [[b"k", b"val"], None]
    assert parse_all(b"*0\r\n*2\r\n*1\r\n:1\r\n+OK\r\n") == [[], [[1], SimpleString("OK")]]


def test_byte_by_byte() -> None:
    data = b"*2\r\n$17\r\nRELAY_TCP_ADDRESS\r\n$5\r\n/ip4/\r\n:3\r\n"
    parser = RespParser()
    replies: list[Reply] = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        reply = parser.next_reply()
        if reply is not NEED_DATA:
            replies.append(reply)  # type: ignore[arg-type]
    assert replies == [[b"RELAY_TCP_ADDRESS", b"/ip4/"], 3]


@pytest.mark.parametrize(
    "data",
    [
        b"!5\r\nhello\r\n",  # a RESP3 type: not spoken here
        b"x\r\n",
        b":12a\r\n",
        b":+5\r\n",
        b": 5\r\n",
        b":\r\n",
        b":-\r\n",
        b":99999999999999999999\r\n",
        b"$-2\r\n",
        b"$3\r\nabcd\r\n",  # no CRLF after the announced length
        b"*-5\r\n",
        b"*1\r\n?\r\n",
        b"+a\rb\r\n",  # a bare CR inside a line
        b"+a\nb\r\n",
        b"+\xff\r\n",  # not UTF-8
        b"$\xd9\xa1\r\n",  # a non-ASCII digit
    ],
)
def test_malformed_replies_raise_decode_errors(data: bytes) -> None:
    parser = RespParser()
    parser.feed(data)
    with pytest.raises(RespDecodeError) as info:
        parser.next_reply()
    assert isinstance(info.value, DecodeError)
    assert isinstance(info.value, RemoteProtocolError)
    # The stream cannot be trusted any more: the same error on every later call.
    parser.feed(b"+OK\r\n")
    with pytest.raises(RespDecodeError):
        parser.next_reply()
    assert parser.failed is info.value


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (b"$2000000\r\n", {}),  # announced, refused before the bytes arrive
        (b"$11\r\n", {"max_bulk": 10}),
        (b"*5\r\n", {"max_array": 4}),
        (b"*1\r\n*1\r\n*1\r\n:1\r\n", {"max_depth": 2}),
        (b"+" + b"a" * 100, {"max_line": 64}),  # a line that never ends
        (b"*4\r\n" + b"$5\r\nhello\r\n" * 3, {"max_buffer": 32}),  # slowly growing reply
    ],
)
def test_oversized_replies_raise_too_large(data: bytes, limits: dict[str, int]) -> None:
    parser = RespParser(**limits)
    parser.feed(data)
    with pytest.raises(RespTooLarge) as info:
        parser.next_reply()
    assert isinstance(info.value, MessageTooLarge)


def test_limits_are_inclusive() -> None:
    assert parse_all(b"$10\r\n0123456789\r\n", max_bulk=10) == [b"0123456789"]
    assert parse_all(b"*1\r\n*1\r\n:1\r\n", max_depth=2) == [[[1]]]
    assert parse_all(b"+" + b"a" * 64 + b"\r\n", max_line=64) == [SimpleString("a" * 64)]


replies: st.SearchStrategy[Reply] = st.recursive(
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.binary(max_size=64)
    | st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
    ).map(SimpleString)
    | st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
    ).map(ErrorReply),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)


@given(st.lists(replies, max_size=5), st.data())
def test_round_trip_in_random_chunks(expected: list[Reply], data: st.DataObject) -> None:
    wire = b"".join(encode_reply(r) for r in expected)
    parser = RespParser()
    got: list[Reply] = []
    pos = 0
    while pos < len(wire):
        size = data.draw(st.integers(1, 16))
        parser.feed(wire[pos : pos + size])
        pos += size
        while (reply := parser.next_reply()) is not NEED_DATA:
            got.append(reply)  # type: ignore[arg-type]
    assert got == expected
    assert parser.buffered == 0


@st.composite
def mutated_wire(draw: st.DrawFn) -> bytes:
    wire = b"".join(encode_reply(r) for r in draw(st.lists(replies, max_size=4)))
    return mutate(draw, wire, 6)


@settings(max_examples=300)
@given(st.one_of(mutated_wire(), st.binary(max_size=200)))
def test_fuzz_never_crashes_nor_hangs(data: bytes) -> None:
    """Random and mutated bytes give replies, NEED_DATA or a typed error, nothing else, and
    the parser never holds more than it was fed."""
    parser = RespParser(max_bulk=64, max_array=8, max_depth=4, max_line=64, max_buffer=256)
    parser.feed(data)
    try:
        for _ in range(len(data) + 1):  # each reply takes at least 3 bytes
            if parser.next_reply() is NEED_DATA:
                break
        else:
            raise AssertionError("more replies than bytes")
    except (RespDecodeError, RespTooLarge):
        return
    assert parser.buffered <= len(data)
