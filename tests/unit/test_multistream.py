"""multistream-select: byte vectors, negotiation pairs over trio memory streams, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from libp2p import multistream as mss
from libp2p.exceptions import DecodeError, ProtocolNotSupported, RemoteProtocolError
from libp2p.io import BufferedStream


def test_byte_vectors() -> None:
    # digest section 1
    assert mss.encode_message("/multistream/1.0.0") == bytes.fromhex(
        "13" + b"/multistream/1.0.0".hex() + "0a"
    )
    assert mss.encode_message("na") == bytes.fromhex("036e610a")
    assert mss.encode_message("ls") == bytes.fromhex("036c730a")
    assert mss.encode_message("/noise") == bytes.fromhex("072f6e6f6973650a")
    assert mss.encode_message("/yamux/1.0.0") == bytes.fromhex("0d2f79616d75782f312e302e300a")
    assert mss.encode_message("/ipfs/id/1.0.0")[0] == 0x0F
    assert mss.encode_message("/libp2p/dcutr")[0] == 0x0E


def _pair() -> tuple[BufferedStream, BufferedStream]:
    a, b = trio.testing.memory_stream_pair()
    return BufferedStream(a), BufferedStream(b)


async def test_select_and_handle_agree() -> None:
    a, b = _pair()
    results: dict[str, str] = {}

    async def responder() -> None:
        results["r"] = await mss.handle(b, {"/b", "/c"})

    async with trio.open_nursery() as n:
        n.start_soon(responder)
        results["i"] = await mss.select(a, ["/a", "/b", "/c"])
    assert results == {"i": "/b", "r": "/b"}


async def test_select_all_refused() -> None:
    a, b = _pair()

    async def responder() -> None:
        with pytest.raises(ProtocolNotSupported):
            await mss.handle(b, {"/x"})

    async with trio.open_nursery() as n:
        n.start_soon(responder)
        with pytest.raises(ProtocolNotSupported):
            await mss.select(a, ["/a", "/b"])
        await a.aclose()


async def test_lazy_pipelined_data_reaches_protocol() -> None:
    a, b = _pair()
    got: list[bytes] = []

    async def responder() -> None:
        assert await mss.handle(b, lambda p: p == "/echo") == "/echo"
        # Data the initiator pipelined behind its proposal is still there.
        got.append(await b.read_exactly(5))
        await b.send_all(b"world")

    async with trio.open_nursery() as n:
        n.start_soon(responder)
        s = await mss.select_lazy(a, "/echo")
        await s.send_all(b"hello")
        assert await BufferedStream(s).read_exactly(5) == b"world"
    assert got == [b"hello"]


async def test_lazy_refused_surfaces_on_read() -> None:
    a, b = _pair()

    async def responder() -> None:
        with pytest.raises(ProtocolNotSupported):
            # The initiator closes after seeing "na".
            await mss.handle(b, {"/other"})

    async with trio.open_nursery() as n:
        n.start_soon(responder)
        s = await mss.select_lazy(a, "/missing")
        with pytest.raises(ProtocolNotSupported):
            await s.receive_some()
        await s.aclose()


async def test_responder_answers_ls_with_na() -> None:
    a, b = _pair()

    async def responder() -> None:
        await mss.handle(b, {"/p"})

    async with trio.open_nursery() as n:
        n.start_soon(responder)
        await a.send_all(mss.encode_message(mss.PROTOCOL_ID) + mss.encode_message("ls"))
        assert await mss.read_message(a) == mss.PROTOCOL_ID
        assert await mss.read_message(a) == "na"
        await a.send_all(mss.encode_message("/p"))
        assert await mss.read_message(a) == "/p"


async def test_wrong_header_rejected() -> None:
    a, b = _pair()
    await a.send_all(mss.encode_message("/multistream/2.0.0") + mss.encode_message("/p"))
    with pytest.raises(DecodeError, match="header"):
        await mss.handle(b, {"/p"})


async def test_missing_newline_rejected() -> None:
    a, b = _pair()
    await a.send_all(b"\x03abc")
    with pytest.raises(DecodeError, match="newline"):
        await mss.handle(b, {"/p"})


async def test_oversized_message_rejected() -> None:
    a, b = _pair()
    await a.send_all(b"\x80\x40" + b"x" * 10)  # announces 8192 bytes
    with pytest.raises(RemoteProtocolError):
        await mss.handle(b, {"/p"})


async def test_too_many_proposals() -> None:
    a, b = _pair()
    msgs = mss.encode_message(mss.PROTOCOL_ID) + mss.encode_message("/nope") * (
        mss.MAX_PROPOSALS + 1
    )

    async def initiator() -> None:
        await a.send_all(msgs)
        while await a.receive_some():
            pass

    async with trio.open_nursery() as n:
        n.start_soon(initiator)
        with pytest.raises(DecodeError, match="proposals"):
            await mss.handle(b, {"/p"})
        await b.aclose()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_responder(data: bytes) -> None:
    async def main() -> None:
        a, b = _pair()
        await a.send_all(data)
        await a.send_eof()

        async def drain() -> None:
            while await a.receive_some():
                pass

        async with trio.open_nursery() as n:
            n.start_soon(drain)
            with trio.fail_after(5):
                with contextlib.suppress(RemoteProtocolError, ProtocolNotSupported):
                    await mss.handle(b, {"/p"})
            await b.aclose()

    trio.run(main)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([mss.PROTOCOL_ID, "/p", "na", "ls", "", "x" * 300]), max_size=6),
    st.binary(max_size=64),
)
def test_fuzz_initiator_replies(replies: list[str], tail: bytes) -> None:
    async def main() -> None:
        a, b = _pair()
        await b.send_all(b"".join(mss.encode_message(r) for r in replies) + tail)
        await b.send_eof()
        with trio.fail_after(5):
            try:
                proto = await mss.select(a, ["/q", "/p"])
            except (RemoteProtocolError, ProtocolNotSupported):
                return
        assert proto in ("/q", "/p")

    trio.run(main)


async def test_lazy_eof_waits_for_the_echo() -> None:
    # js-libp2p loses a request whose FIN arrives together with the proposal: the FIN of
    # every lazily negotiated stream leaves only after the responder's answer came back
    # (issue 10, item 2: it was so only towards peers that looked like js).
    a, b = _pair()
    order: list[str] = []

    async def responder() -> None:
        await mss.read_message(b)  # header
        await mss.read_message(b)  # proposal
        assert await b.read_exactly(3) == b"req"
        order.append("echo sent")
        await b.send_all(mss.encode_message(mss.PROTOCOL_ID) + mss.encode_message("/p"))
        assert await b.receive_some() == b""
        order.append("eof seen")

    async with trio.open_nursery() as n:
        n.start_soon(responder)
        s = await mss.select_lazy(a, "/p")
        await s.send_all(b"req")
        await s.send_eof()
        order.append("send_eof returned")
    assert order[0] == "echo sent"
    assert "eof seen" in order


async def test_lazy_close_waits_for_the_answer() -> None:
    # Issue 10, item 3: "write then close" closed before the answer arrived; on a muxed
    # stream the late answer is then answered with a reset and the peer drops the request.
    a, b = _pair()
    order: list[str] = []

    async def responder() -> None:
        await mss.read_message(b)  # header
        await mss.read_message(b)  # proposal
        assert await b.read_exactly(4) == b"push"
        order.append("answer sent")
        await b.send_all(mss.encode_message(mss.PROTOCOL_ID) + mss.encode_message("/p"))
        assert await b.receive_some() == b""

    async with trio.open_nursery() as n:
        n.start_soon(responder)
        s = await mss.select_lazy(a, "/p")
        await s.send_all(b"push")
        await s.aclose()
        order.append("closed")
    assert order == ["answer sent", "closed"]


async def test_lazy_close_reports_a_refusal() -> None:
    a, b = _pair()

    async def responder() -> None:
        await mss.read_message(b)
        await mss.read_message(b)
        await b.send_all(mss.encode_message(mss.PROTOCOL_ID) + mss.encode_message("na"))

    async with trio.open_nursery() as n:
        n.start_soon(responder)
        s = await mss.select_lazy(a, "/p")
        await s.send_all(b"lost")
        with pytest.raises(ProtocolNotSupported):
            await s.aclose()


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(mss.RoleRule)),
    st.lists(st.sampled_from([mss.PROTOCOL_ID, "/p", "/q", "na", "ls", "", "x" * 300]), max_size=5),
    st.binary(max_size=64),
)
def test_fuzz_either_role(rule: mss.RoleRule, messages: list[str], tail: bytes) -> None:
    """Whatever a peer of a punched connection sends, settling the role either succeeds
    (and then says which role and that only "/p" was agreed) or fails with a typed error."""

    async def main() -> None:
        a, b = _pair()
        await b.send_all(b"".join(mss.encode_message(m) for m in messages) + tail)
        await b.send_eof()

        async def drain() -> None:
            while await b.receive_some():
                pass

        async with trio.open_nursery() as n:
            n.start_soon(drain)
            with trio.fail_after(5):
                try:
                    initiator, channel = await mss.negotiate_either_role(
                        a, "/p", rule=rule, patience=0.01
                    )
                    if initiator:
                        await channel.receive_some()  # checks the answer to our proposal
                except (RemoteProtocolError, ProtocolNotSupported):
                    pass
            await a.aclose()

    trio.run(main)
