"""Hypothesis: random and mutated yamux input never crashes, hangs or allocates without bound."""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libp2p.exceptions import LocalUsageError, RemoteProtocolError
from libp2p.stream_muxer.yamux import (
    HEADER_SIZE,
    CloseReason,
    DataReceived,
    FrameType,
    StreamAborted,
    StreamOpened,
    YamuxConfig,
    YamuxConnection,
    YamuxEvent,
    YamuxFrameError,
    YamuxSession,
    decode_header,
    encode_header,
)

QUIET = YamuxConfig(measure_rtt=False, keepalive_interval=None)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Output the core may queue in reply to peer input before it must refuse: ping replies are
# capped at 64 KiB, forced resets at the write buffer plus 1 MiB; one more frame may land.
OUTPUT_BOUND = 64 * 1024 + QUIET.write_buffer_size + 1024 * 1024 + 2 * HEADER_SIZE


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """Mostly well-formed frames with small IDs, interesting lengths and short payloads."""
    kind = draw(st.one_of(st.integers(0, 3), st.integers(0, 255)))
    flags = draw(st.one_of(st.integers(0, 15), st.integers(0, 0xFFFF)))
    stream_id = draw(st.one_of(st.integers(0, 8), st.just(0xFFFFFFFF)))
    length = draw(
        st.one_of(
            st.integers(0, 64),
            st.sampled_from([0x40000, 0x40001, 0x7FFFFFFF, 0xFFFFFFFF]),
            st.integers(0, 0xFFFFFFFF),
        )
    )
    version = draw(st.sampled_from([0, 0, 0, 0, 1, 255]))
    header = bytes([version, kind]) + encode_header(0, flags, stream_id, length)[2:]
    payload = b""
    if kind == FrameType.DATA:
        payload = draw(st.binary(max_size=min(length, 64)))
    return header + payload


@st.composite
def mutated_streams(draw: st.DrawFn) -> list[bytes]:
    data = bytearray(b"".join(draw(st.lists(frames(), max_size=25))))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        else:
            del data[pos : pos + draw(st.integers(1, 12))]
    # Cut into arbitrary reads.
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    chunks = []
    start = 0
    for cut in [*cuts, len(data)]:
        chunks.append(bytes(data[start:cut]))
        start = cut
    return chunks


def check_invariants(conn: YamuxConnection, events: list[YamuxEvent]) -> None:
    assert conn.output_size <= OUTPUT_BOUND
    for event in events:
        if isinstance(event, DataReceived):
            assert len(event.data) <= conn.config.max_window
    for st_ in conn._streams.values():
        # Unread data can never exceed what the window allowed the peer to send.
        assert 0 <= st_.unacked <= st_.recv_window
        assert 0 <= st_.recv_credit <= st_.recv_window


def feed(conn: YamuxConnection, chunks: list[bytes]) -> None:
    for chunk in chunks:
        try:
            events = conn.receive_data(chunk, 0.0)
        except RemoteProtocolError:
            assert conn.is_closed
            assert conn.receive_data(b"\x00" * 12, 0.0) == []
            return
        check_invariants(conn, events)


@FUZZ
@given(st.binary(max_size=40), st.integers(0, 40))
def test_decode_header_only_raises_frame_errors(data: bytes, offset: int) -> None:
    try:
        header = decode_header(data, offset)
    except YamuxFrameError:
        return
    assert header.encode() == data[offset : offset + HEADER_SIZE]


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=10), st.booleans())
def test_core_with_random_bytes(chunks: list[bytes], is_initiator: bool) -> None:
    feed(YamuxConnection(is_initiator=is_initiator, config=QUIET), chunks)


@FUZZ
@given(mutated_streams(), st.booleans())
def test_core_with_mutated_frames(chunks: list[bytes], is_initiator: bool) -> None:
    feed(YamuxConnection(is_initiator=is_initiator, config=QUIET), chunks)


@FUZZ
@given(mutated_streams())
def test_core_with_accepted_streams_and_a_reader(chunks: list[bytes]) -> None:
    """Same, but the application accepts every stream and consumes what arrives."""
    conn = YamuxConnection(is_initiator=True, config=QUIET)
    for chunk in chunks:
        try:
            events = conn.receive_data(chunk, 0.0)
        except RemoteProtocolError:
            return
        check_invariants(conn, events)
        for event in events:
            if isinstance(event, DataReceived):
                conn.acknowledge_received(event.stream_id, len(event.data), 0.0)
        for stream_id in list(conn._streams):
            conn.accept_stream(stream_id)
        conn.data_to_send()


# -- two honest cores: random local operations never make the peer see a protocol error -----

OPS = st.lists(
    st.tuples(
        st.sampled_from(["open", "send", "eof", "close", "reset", "consume", "ping", "shuttle"]),
        st.booleans(),  # which side acts
        st.integers(0, 5),  # which of its streams
        st.integers(0, 400_000),  # how many bytes
    ),
    max_size=40,
)


@FUZZ
@given(OPS)
def test_random_operations_between_two_honest_cores(ops: list[tuple[str, bool, int, int]]) -> None:
    client = YamuxConnection(is_initiator=True, config=QUIET)
    server = YamuxConnection(is_initiator=False, config=QUIET)
    sides = {True: client, False: server}
    known: dict[bool, list[int]] = {True: [], False: []}
    unread: dict[tuple[bool, int], int] = {}
    sent: dict[tuple[bool, int], int] = {}
    got: dict[tuple[bool, int], int] = {}
    aborted: set[int] = set()

    def shuttle() -> None:
        for _ in range(50):
            moved = False
            for me in (True, False):
                out = bytes(sides[me].data_to_send())
                if not out:
                    continue
                moved = True
                peer = not me
                events = sides[peer].receive_data(out, 0.0)  # must never raise
                for event in events:
                    if isinstance(event, DataReceived):
                        key = (peer, event.stream_id)
                        unread[key] = unread.get(key, 0) + len(event.data)
                        got[key] = got.get(key, 0) + len(event.data)
                    elif isinstance(event, StreamAborted):
                        aborted.add(event.stream_id)
                    elif isinstance(event, StreamOpened):
                        known[peer].append(event.stream_id)
                        sides[peer].accept_stream(event.stream_id)
            if not moved:
                return

    for op, who, index, nbytes in ops:
        conn = sides[who]
        stream_id = known[who][index % len(known[who])] if known[who] else None
        try:
            if op == "open":
                known[who].append(conn.open_stream())
            elif op == "shuttle":
                shuttle()
            elif op == "ping":
                conn.send_ping(0.0)
            elif stream_id is None:
                continue
            elif op == "send":
                n = conn.send_data(stream_id, bytes(nbytes))
                sent[(who, stream_id)] = sent.get((who, stream_id), 0) + n
            elif op == "eof":
                conn.send_eof(stream_id)
            elif op == "close":
                # The application stops reading: bytes still in flight are discarded.
                aborted.add(stream_id)
                conn.close_stream(stream_id)
            elif op == "reset":
                aborted.add(stream_id)
                conn.reset_stream(stream_id)
            elif op == "consume":
                n = min(nbytes, unread.get((who, stream_id), 0))
                unread[(who, stream_id)] = unread.get((who, stream_id), 0) - n
                conn.acknowledge_received(stream_id, n, 0.0)
        except LocalUsageError:
            pass  # illegal local operations (e.g. send after FIN) are refused, nothing breaks
    shuttle()
    assert not client.is_closed
    assert not server.is_closed
    # Every byte sent on a stream that was neither reset nor closed by its reader arrived, in
    # full, exactly once.
    for (who, stream_id), n in sent.items():
        if stream_id not in aborted:
            assert got.get((not who, stream_id), 0) == n
    for (who, stream_id), n in got.items():
        assert n <= sent.get((not who, stream_id), 0)


# -- a whole session fed garbage ends cleanly -------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(mutated_streams(), st.booleans())
def test_session_survives_garbage(chunks: list[bytes], is_initiator: bool) -> None:
    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        session = YamuxSession(ours, is_initiator=is_initiator, config=QUIET)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(session.run)
                for chunk in chunks:
                    try:
                        await theirs.send_all(chunk)
                    except trio.BrokenResourceError:
                        break
                await trio.testing.wait_all_tasks_blocked()
                await theirs.aclose()
        assert session.closed_reason in (CloseReason.PROTOCOL_ERROR, CloseReason.REMOTE_EOF)
        if session.closed_reason is CloseReason.PROTOCOL_ERROR:
            assert isinstance(session.error, RemoteProtocolError)

    trio.run(main)
