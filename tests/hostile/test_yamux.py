"""Yamux: bad frames, window violations, stream and ping floods, GoAway, resets mid-transfer,
and a peer that stops answering keep-alive pings. Every case runs in both roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from libp2p.exceptions import (
    ConnectionClosedError,
    Libp2pError,
    RemoteProtocolError,
    StreamReset,
)
from libp2p.peer.id import PeerID
from libp2p.stream_muxer.yamux import CloseReason, YamuxConfig

from .harness import PATIENCE, PROBE, RawYamux, fast_config, hostile_case, raw_peer

DATA, WINDOW_UPDATE, PING, GO_AWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 0x1, 0x2, 0x4, 0x8
ROLES = pytest.mark.parametrize("host_dials", [True, False], ids=["host_dials", "peer_dials"])


def _bad_frames(raw: RawYamux, sid: int) -> dict[str, bytes]:
    f = raw.frame
    ours = 2 if raw.next_id % 2 else 1  # an ID of the host's parity
    return {
        "bad_version": f(DATA, 0, sid, 0, version=1),
        "bad_type": f(9, 0, sid, 0),
        "data_on_session_id": f(DATA, 0, 0, 4) + b"abcd",
        "window_update_on_session_id": f(WINDOW_UPDATE, 0, 0, 100),
        "syn_with_the_hosts_parity": f(WINDOW_UPDATE, SYN, ours + 100, 0),
        "duplicate_syn": f(WINDOW_UPDATE, SYN | ACK, sid, 0),
        "window_exceeded": f(DATA, ACK, sid, 256 * 1024 + 1) + b"x" * 1024,
        "window_exceeded_4gib": f(DATA, ACK, sid, 0xFFFF_FFFF),
    }


BAD_FRAMES = [
    "bad_version",
    "bad_type",
    "data_on_session_id",
    "window_update_on_session_id",
    "syn_with_the_hosts_parity",
    "duplicate_syn",
    "window_exceeded",
    "window_exceeded_4gib",
]


@ROLES
@pytest.mark.parametrize("bad", BAD_FRAMES)
async def test_a_bad_frame_closes_that_connection_with_a_protocol_error(
    bad: str, host_dials: bool
) -> None:
    goaway: list[int] = []

    async def behaviour(raw: RawYamux) -> None:
        sid = await raw.wait_for_proposal(PROBE)
        await raw.send(_bad_frames(raw, sid)[bad])
        # The host says why it closes: GoAway with "protocol error" (1).
        while (frame := await raw.read_frame()) is not None:
            if frame.type == GO_AWAY:
                goaway.append(frame.length)

    async def body(peer: PeerID, raw: RawYamux) -> None:
        (conn,) = case.host.connections_to(peer)
        await case.fails(
            (StreamReset, ConnectionClosedError, RemoteProtocolError),
            lambda: case.host.new_stream(peer, PROBE),
        )
        with trio.fail_after(PATIENCE):
            await conn.wait_closed()
        muxer = conn._up.muxer
        assert muxer.closed_reason is CloseReason.PROTOCOL_ERROR, muxer.closed_reason
        assert isinstance(muxer.error, RemoteProtocolError), repr(muxer.error)

    async with hostile_case() as case:
        await raw_peer(case, host_dials=host_dials, behaviour=behaviour, body=body)
    assert goaway == [1]


async def _open_probe(raw: RawYamux) -> int:
    sid = await raw.wait_for_proposal(PROBE)
    await raw.accept_proposal(sid)
    return sid


StreamCase = Callable[[RawYamux], Awaitable[None]]


@ROLES
@pytest.mark.parametrize("when", ["while_reading", "while_writing"])
async def test_reset_mid_transfer_fails_only_that_stream(when: str, host_dials: bool) -> None:
    async def behaviour(raw: RawYamux) -> None:
        sid = await _open_probe(raw)
        if when == "while_reading":
            await raw.data(sid, b"partial " * 100)
        else:
            while len(raw.received.get(sid, b"")) < 100_000:
                assert await raw.read_frame() is not None
        await raw.send_frame(WINDOW_UPDATE, RST, sid, 7)  # with a go-yamux error code
        # A second stream on the same connection still works.
        sid2 = await _open_probe(raw)
        await raw.data(sid2, b"second stream", flags=FIN)

    async def body(peer: PeerID, raw: RawYamux) -> None:
        if when == "while_reading":
            got = b""

            async def read_all() -> None:
                nonlocal got
                # The answer, the data and the reset may arrive in one read: a reset aborts,
                # and bytes not yet read when it arrived may be dropped (go too), the answer
                # to the proposal included; then new_stream itself fails.
                stream = await case.host.new_stream(peer, PROBE)
                while chunk := await stream.receive_some():
                    got += chunk

            error = await case.fails(StreamReset, read_all)
            assert (b"partial " * 100).startswith(got)
        else:
            stream = await case.host.new_stream(peer, PROBE)

            async def write_all() -> None:
                for _ in range(100):
                    await stream.send_all(b"w" * 65536)

            error = await case.fails(StreamReset, write_all)
        assert isinstance(error, StreamReset)
        assert error.by_remote
        second = await case.host.new_stream(peer, PROBE)
        got2 = b""
        while chunk := await second.receive_some():
            got2 += chunk
        assert got2 == b"second stream"
        await second.aclose()

    async with hostile_case() as case:
        await raw_peer(case, host_dials=host_dials, behaviour=behaviour, body=body)


STREAM_ABUSE = [
    "data_after_fin",
    "fin_twice",
    "rst_then_data",
    "frames_for_unknown_streams",
    "window_update_overflow",
    "ack_for_unknown_stream",
]


@ROLES
@pytest.mark.parametrize("abuse", STREAM_ABUSE)
async def test_stream_level_abuse_costs_at_most_that_stream(abuse: str, host_dials: bool) -> None:
    async def behaviour(raw: RawYamux) -> None:
        sid = await _open_probe(raw)
        f = raw.frame
        if abuse == "data_after_fin":
            await raw.send(f(DATA, FIN, sid, 3) + b"end" + f(DATA, 0, sid, 5) + b"after")
        elif abuse == "fin_twice":
            await raw.send(f(DATA, FIN, sid, 3) + b"end" + f(WINDOW_UPDATE, FIN, sid, 0))
        elif abuse == "rst_then_data":
            await raw.send(f(WINDOW_UPDATE, RST, sid, 0) + f(DATA, 0, sid, 5) + b"after")
        elif abuse == "frames_for_unknown_streams":
            await raw.send(
                f(DATA, 0, 999, 5)
                + b"ghost"
                + f(WINDOW_UPDATE, 0, 1001, 100)
                + f(WINDOW_UPDATE, RST, 1003, 0)
                + f(DATA, FIN, sid, 3)
                + b"end"
            )
        elif abuse == "window_update_overflow":
            await raw.send(
                f(WINDOW_UPDATE, 0, sid, 0xFFFF_FFFF) * 4 + f(DATA, FIN, sid, 3) + b"end"
            )
        elif abuse == "ack_for_unknown_stream":
            await raw.send(f(WINDOW_UPDATE, ACK, 1005, 0) + f(DATA, FIN, sid, 3) + b"end")
        # The connection still carries a new stream.
        sid2 = await _open_probe(raw)
        await raw.data(sid2, b"second stream", flags=FIN)

    async def body(peer: PeerID, raw: RawYamux) -> None:
        try:
            stream = await case.host.new_stream(peer, PROBE)
            while await stream.receive_some():
                pass
            if abuse == "window_update_overflow":
                await stream.send_all(b"still writable")
            await stream.aclose()
        except StreamReset:
            pass  # the peer's abuse may cost this stream, never the connection
        second = await case.host.new_stream(peer, PROBE)
        got = b""
        while chunk := await second.receive_some():
            got += chunk
        assert got == b"second stream"
        await second.aclose()

    async with hostile_case() as case:
        await raw_peer(case, host_dials=host_dials, behaviour=behaviour, body=body)


# -- floods -------------------------------------------------------------------------------------


@ROLES
@pytest.mark.parametrize("flood", ["syn", "syn_with_proposals", "ping", "window_updates"])
async def test_a_flood_is_bounded(flood: str, host_dials: bool) -> None:
    config = fast_config()
    limit = config.yamux.max_inbound_streams
    peak = 0

    async def behaviour(raw: RawYamux) -> None:
        f = raw.frame
        if flood == "syn":
            await raw.send(b"".join(f(WINDOW_UPDATE, SYN, raw.new_id(), 0) for _ in range(2000)))
        elif flood == "syn_with_proposals":
            from libp2p.multistream import encode_message

            from .harness import MS_HEADER

            proposal = MS_HEADER + encode_message("/not/served/1.0.0")
            frames = []
            for _ in range(1000):
                sid = raw.new_id()
                frames.append(f(WINDOW_UPDATE, SYN, sid, 0) + f(DATA, 0, sid, len(proposal)))
                frames.append(proposal)
            await raw.send(b"".join(frames))
        elif flood == "ping":
            await raw.send(f(PING, SYN, 0, 7) * 20_000)
        else:
            await raw.send(f(WINDOW_UPDATE, 0, 0x7FFF_FFFF, 1) * 20_000)
        # Never read what the host answers; the connection must still serve a stream.
        sid = await _open_probe(raw)
        await raw.data(sid, b"after the flood", flags=FIN)

    async def body(peer: PeerID, raw: RawYamux) -> None:
        nonlocal peak
        (conn,) = case.host.connections_to(peer)
        muxer = conn._up.muxer
        try:
            stream = await case.host.new_stream(peer, PROBE)
            got = b""
            while chunk := await stream.receive_some():
                got += chunk
                peak = max(peak, muxer.num_streams)
            assert got == b"after the flood"
            await stream.aclose()
        except Libp2pError:
            # The host may also give up on a peer that floods it without reading its replies,
            # provided it says so with a typed error that blames the peer.
            with trio.fail_after(PATIENCE):
                await conn.wait_closed()
            assert isinstance(muxer.error, RemoteProtocolError), repr(muxer.error)
        peak = max(peak, muxer.num_streams)

    async with hostile_case(config) as case:
        await raw_peer(case, host_dials=host_dials, behaviour=behaviour, body=body)
    assert peak <= limit + 1


# -- GoAway and keep-alive -----------------------------------------------------------------------


@ROLES
@pytest.mark.parametrize("code", [0, 1, 2, 0xFFFF_FFFF])
async def test_goaway_stops_new_streams_not_open_ones(code: int, host_dials: bool) -> None:
    async def behaviour(raw: RawYamux) -> None:
        sid = await _open_probe(raw)
        await raw.send_frame(GO_AWAY, 0, 0, code)
        await raw.data(sid, b"after goaway", flags=FIN)

    async def body(peer: PeerID, raw: RawYamux) -> None:
        stream = await case.host.new_stream(peer, PROBE)
        got = b""
        while chunk := await stream.receive_some():
            got += chunk
        assert got == b"after goaway"
        await stream.aclose()
        await case.fails(ConnectionClosedError, lambda: case.host.new_stream(peer, PROBE))

    async with hostile_case() as case:
        await raw_peer(case, host_dials=host_dials, behaviour=behaviour, body=body)


@ROLES
async def test_a_peer_that_never_answers_keepalive_is_dropped(host_dials: bool) -> None:
    config = fast_config(
        yamux=YamuxConfig(keepalive_interval=0.2, ping_timeout=0.3, close_timeout=0.2)
    )

    async def behaviour(raw: RawYamux) -> None:
        await raw.drain()  # reads everything, answers nothing

    async def body(peer: PeerID, raw: RawYamux) -> None:
        (conn,) = case.host.connections_to(peer)
        with trio.fail_after(PATIENCE):
            await conn.wait_closed()
        assert conn._up.muxer.closed_reason is CloseReason.KEEPALIVE_TIMEOUT

    async with hostile_case(config) as case:
        await raw_peer(case, host_dials=host_dials, behaviour=behaviour, body=body)


INBOUND_ABUSE = [
    "syn_rst",
    "syn_fin_with_proposal",
    "rst_before_the_answer",
    "data_syn_oversized_id",
]


@ROLES
@pytest.mark.parametrize("abuse", INBOUND_ABUSE)
async def test_inbound_stream_abuse_costs_at_most_that_stream(abuse: str, host_dials: bool) -> None:
    from libp2p.multistream import encode_message

    from .harness import MS_HEADER

    ping_proposal = MS_HEADER + encode_message("/ipfs/ping/1.0.0")
    echoed = trio.Event()

    async def behaviour(raw: RawYamux) -> None:
        f = raw.frame
        sid = raw.new_id()
        if abuse == "syn_rst":
            await raw.send(f(WINDOW_UPDATE, SYN | RST, sid, 0))
        elif abuse == "syn_fin_with_proposal":
            await raw.send(f(DATA, SYN | FIN, sid, len(ping_proposal)) + ping_proposal)
        elif abuse == "rst_before_the_answer":
            await raw.send(
                f(DATA, SYN, sid, len(ping_proposal))
                + ping_proposal
                + f(WINDOW_UPDATE, RST, sid, 0)
            )
        else:
            # The largest ID of the peer's own parity: IDs need not be opened in order.
            big = 0xFFFF_FFFF if raw.next_id % 2 else 0xFFFF_FFFE
            await raw.send(f(DATA, SYN, big, len(ping_proposal)) + ping_proposal)
        # A well-formed stream still gets its ping echoed.
        sid = raw.new_id()
        await raw.send(f(DATA, SYN, sid, len(ping_proposal) + 32) + ping_proposal + b"p" * 32)
        with trio.fail_after(PATIENCE):
            while b"p" * 32 not in raw.received.get(sid, b""):
                assert await raw.read_frame() is not None, "the host closed the connection"
        echoed.set()

    async def body(peer: PeerID, raw: RawYamux) -> None:
        (conn,) = case.host.connections_to(peer)
        # The peer's script checks the echo; here the connection must simply survive it.
        with trio.fail_after(PATIENCE):
            await echoed.wait()
        assert not conn.is_closed

    async with hostile_case() as case:
        await raw_peer(case, host_dials=host_dials, behaviour=behaviour, body=body)
