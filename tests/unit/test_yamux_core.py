"""The sans-I/O yamux core in pairs: two cores back to back, bytes shuttled between them."""

from __future__ import annotations

import tracemalloc

import pytest

from libp2p.exceptions import (
    ConnectionClosedError,
    LocalUsageError,
    RemoteProtocolError,
    ResourceLimitExceeded,
)
from libp2p.stream_muxer.yamux import (
    DEFAULT_MAX_FRAME_PAYLOAD,
    HEADER_SIZE,
    INITIAL_WINDOW,
    DataReceived,
    Flag,
    FrameType,
    GoAwayCode,
    GoAwayReceived,
    IllegalStreamTransition,
    KeepAliveTimeout,
    PingAcknowledged,
    PingReceived,
    RemoteGoAway,
    SendWindowUpdated,
    StreamAborted,
    StreamAcknowledged,
    StreamEnded,
    StreamOpened,
    StreamState,
    YamuxConfig,
    YamuxConnection,
    YamuxEvent,
    YamuxFrameError,
    YamuxProtocolError,
    decode_header,
    encode_header,
)

QUIET = YamuxConfig(measure_rtt=False, keepalive_interval=None)


def frame(kind: int, flags: int, stream_id: int, length: int, payload: bytes = b"") -> bytes:
    return encode_header(kind, flags, stream_id, length) + payload


def split_frames(data: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """Decode a byte string of whole frames into (type, flags, id, length, payload)."""
    frames: list[tuple[int, int, int, int, bytes]] = []
    pos = 0
    while pos < len(data):
        header = decode_header(data, pos)
        pos += HEADER_SIZE
        payload = b""
        if header.type == FrameType.DATA:
            payload = data[pos : pos + header.length]
            pos += header.length
        frames.append((header.type, header.flags, header.stream_id, header.length, payload))
    return frames


class Pair:
    """A client (initiator) and a server core wired back to back."""

    def __init__(
        self, client_config: YamuxConfig = QUIET, server_config: YamuxConfig = QUIET
    ) -> None:
        self.client = YamuxConnection(is_initiator=True, config=client_config)
        self.server = YamuxConnection(is_initiator=False, config=server_config)
        self.now = 0.0

    def shuttle(self) -> tuple[list[YamuxEvent], list[YamuxEvent]]:
        """Deliver bytes both ways until neither side has output; return each side's events."""
        client_events: list[YamuxEvent] = []
        server_events: list[YamuxEvent] = []
        while True:
            to_server = bytes(self.client.data_to_send())
            to_client = bytes(self.server.data_to_send())
            if not to_server and not to_client:
                return client_events, server_events
            if to_server:
                server_events += self.server.receive_data(to_server, self.now)
            if to_client:
                client_events += self.client.receive_data(to_client, self.now)

    def open_accepted(self) -> int:
        stream_id = self.client.open_stream()
        _, server_events = self.shuttle()
        assert server_events == [StreamOpened(stream_id)]
        self.server.accept_stream(stream_id)
        client_events, _ = self.shuttle()
        assert client_events == [StreamAcknowledged(stream_id)]
        return stream_id


def data_of(events: list[YamuxEvent], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


# -- opening --------------------------------------------------------------------------------


def test_open_sends_window_update_syn_and_ack_follows_accept() -> None:
    pair = Pair()
    assert pair.client.open_stream() == 1
    assert bytes(pair.client.data_to_send()) == frame(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0)
    events = pair.server.receive_data(frame(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0), 0.0)
    assert events == [StreamOpened(1)]
    assert pair.server.data_to_send() == b""  # no ACK before the application accepts
    pair.server.accept_stream(1)
    assert bytes(pair.server.data_to_send()) == frame(FrameType.WINDOW_UPDATE, Flag.ACK, 1, 0)


def test_stream_id_parity_follows_the_role_argument() -> None:
    pair = Pair()
    assert [pair.client.open_stream() for _ in range(3)] == [1, 3, 5]
    assert [pair.server.open_stream() for _ in range(3)] == [2, 4, 6]
    _, server_events = pair.shuttle()
    assert [e.stream_id for e in server_events if isinstance(e, StreamOpened)] == [1, 3, 5]


def test_data_may_follow_syn_before_the_ack() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    assert pair.client.send_data(sid, b"hello") == 5
    _, server_events = pair.shuttle()
    assert server_events == [StreamOpened(sid), DataReceived(sid, b"hello")]


def test_larger_initial_window_is_announced_with_syn_and_ack() -> None:
    big = YamuxConfig(initial_window=1 << 20, measure_rtt=False, keepalive_interval=None)
    pair = Pair(big, big)
    sid = pair.client.open_stream()
    assert bytes(pair.client.data_to_send()) == frame(
        FrameType.WINDOW_UPDATE, Flag.SYN, sid, (1 << 20) - INITIAL_WINDOW
    )
    pair.server.receive_data(
        frame(FrameType.WINDOW_UPDATE, Flag.SYN, sid, (1 << 20) - INITIAL_WINDOW), 0
    )
    assert pair.server.send_window(sid) == 1 << 20
    pair.server.accept_stream(sid)
    pair.shuttle()
    assert pair.client.send_window(sid) == 1 << 20
    assert pair.client.receive_window(sid) == 1 << 20


# -- data, FIN, RST ---------------------------------------------------------------------------


def test_data_both_ways_then_fin_both_ways_forgets_the_stream() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    pair.client.send_data(sid, b"ping")
    pair.server.send_data(sid, b"pong")
    client_events, server_events = pair.shuttle()
    assert client_events == [DataReceived(sid, b"pong")]
    assert server_events == [DataReceived(sid, b"ping")]

    pair.client.send_eof(sid)
    _, server_events = pair.shuttle()
    assert server_events == [StreamEnded(sid)]
    assert pair.client.stream_state(sid) is StreamState.HALF_CLOSED_LOCAL
    assert pair.server.stream_state(sid) is StreamState.HALF_CLOSED_REMOTE
    pair.server.send_data(sid, b"still open this way")
    pair.server.send_eof(sid)
    client_events, _ = pair.shuttle()
    assert client_events == [DataReceived(sid, b"still open this way"), StreamEnded(sid)]
    assert pair.client.num_streams == pair.server.num_streams == 0


def test_fin_is_queued_after_the_data() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    pair.client.send_data(sid, b"abc")
    pair.client.send_eof(sid)
    frames = split_frames(bytes(pair.client.data_to_send()))
    assert [(f[0], f[1]) for f in frames] == [
        (FrameType.DATA, 0),
        (FrameType.WINDOW_UPDATE, Flag.FIN),
    ]


def test_data_with_fin_flag_delivers_then_ends() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    events = pair.server.receive_data(frame(FrameType.DATA, Flag.FIN, sid, 3, b"end"), 0.0)
    assert events == [DataReceived(sid, b"end"), StreamEnded(sid)]


def test_sending_after_our_fin_is_local_misuse() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    pair.client.send_eof(sid)
    with pytest.raises(IllegalStreamTransition):
        pair.client.send_data(sid, b"late")
    with pytest.raises(IllegalStreamTransition):
        pair.client.send_eof(sid)


def test_reset_carries_error_code_and_later_frames_are_drained() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    pair.server.send_data(sid, b"in flight")
    pair.client.reset_stream(sid, error_code=7)
    assert pair.client.num_streams == 0
    client_events, server_events = pair.shuttle()
    assert server_events == [StreamAborted(sid, 7, True, "reset by the peer")]
    assert client_events == []  # the in-flight data for the reset stream was drained
    with pytest.raises(LocalUsageError):
        pair.server.send_data(sid, b"x")
    # A Data frame for the unknown stream, then a Ping: the payload is skipped exactly.
    raw = frame(FrameType.DATA, 0, sid, 5, b"xxxxx") + frame(FrameType.PING, Flag.SYN, 0, 9)
    assert pair.client.receive_data(raw, 0.0) == [PingReceived(9)]


def test_rst_window_update_length_is_an_error_code_not_a_delta() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    events = pair.server.receive_data(
        frame(FrameType.WINDOW_UPDATE, Flag.RST, sid, 0xDEADBEEF), 0.0
    )
    assert events == [StreamAborted(sid, 0xDEADBEEF, True, "reset by the peer")]
    assert not pair.server.is_closed


def test_rst_refuses_a_stream_we_opened() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    assert pair.client.ack_backlog == 1
    events = pair.client.receive_data(frame(FrameType.WINDOW_UPDATE, Flag.RST, sid, 0), 0.0)
    assert events == [StreamAborted(sid, 0, True, "reset by the peer")]
    assert pair.client.ack_backlog == 0


def test_local_close_then_peer_data_is_answered_with_rst() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    pair.server.close_stream(sid)  # the application's aclose(): FIN + stop reading
    assert pair.server.stream_state(sid) is StreamState.LOCAL_CLOSED
    client_events, server_events = pair.shuttle()
    assert client_events == [StreamEnded(sid)]
    pair.client.send_data(sid, b"nobody reads this")
    client_events, server_events = pair.shuttle()
    assert server_events == [
        StreamAborted(sid, 0, False, "data arrived after the stream was closed")
    ]
    assert client_events == [StreamAborted(sid, 0, True, "reset by the peer")]
    assert pair.client.num_streams == pair.server.num_streams == 0


def test_local_close_then_peer_fin_closes_cleanly() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    pair.server.close_stream(sid)
    pair.shuttle()
    pair.client.send_eof(sid)
    client_events, server_events = pair.shuttle()
    # The server's application closed the stream, but the driver still learns that it is
    # over (to drop its record of it).
    assert client_events == []
    assert server_events == [StreamEnded(sid)]
    assert pair.client.num_streams == pair.server.num_streams == 0


def test_local_close_with_data_and_fin_in_flight_needs_no_rst() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    pair.server.close_stream(sid)
    events = pair.server.receive_data(frame(FrameType.DATA, Flag.FIN, sid, 4, b"last"), 0.0)
    assert events == [StreamEnded(sid)]  # the bytes are dropped unread, the end reported
    assert split_frames(bytes(pair.server.data_to_send())) == [
        (FrameType.WINDOW_UPDATE, Flag.FIN, sid, 0, b"")
    ]
    assert pair.server.num_streams == 0


def test_peer_data_after_its_fin_resets_only_that_stream() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    other = pair.open_accepted()
    events = pair.server.receive_data(
        frame(FrameType.WINDOW_UPDATE, Flag.FIN, sid, 0) + frame(FrameType.DATA, 0, sid, 2, b"no"),
        0.0,
    )
    assert events == [
        StreamEnded(sid),
        StreamAborted(sid, 0, False, "the peer sent data after its FIN"),
    ]
    assert not pair.server.is_closed
    assert pair.server.has_stream(other)


# -- flow control -----------------------------------------------------------------------------


def test_send_window_limits_and_half_window_update_reopens_it() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    payload = bytes(range(256)) * (INITIAL_WINDOW // 256 + 10)
    sent = pair.client.send_data(sid, payload)
    assert sent == INITIAL_WINDOW
    assert pair.client.send_window(sid) == 0
    assert pair.client.send_data(sid, b"more") == 0
    _, server_events = pair.shuttle()
    assert data_of(server_events, sid) == payload[:INITIAL_WINDOW]

    # Consuming less than half the window sends nothing: updates are batched.
    assert not pair.server.acknowledge_received(sid, INITIAL_WINDOW // 2 - 1, 0.0)
    assert pair.server.data_to_send() == b""
    assert pair.server.acknowledge_received(sid, 1, 0.0)
    client_events, _ = pair.shuttle()
    assert client_events == [SendWindowUpdated(sid, INITIAL_WINDOW // 2)]
    assert pair.client.send_window(sid) == INITIAL_WINDOW // 2


def test_data_beyond_the_window_is_a_protocol_error_with_goaway() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    pair.client.send_data(sid, b"x" * 1000)
    pair.shuttle()
    header = encode_header(FrameType.DATA, 0, sid, INITIAL_WINDOW - 1000 + 1)
    with pytest.raises(YamuxProtocolError, match="exceeds the receive window"):
        pair.server.receive_data(header, 0.0)
    assert pair.server.is_closed
    assert pair.server.local_goaway == GoAwayCode.PROTOCOL_ERROR
    assert bytes(pair.server.data_to_send()) == frame(
        FrameType.GO_AWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR
    )
    assert pair.server.receive_data(b"anything", 0.0) == []


def test_a_4_gib_data_header_is_rejected_without_allocating() -> None:
    server = YamuxConnection(is_initiator=False, config=QUIET)
    tracemalloc.start()
    try:
        with pytest.raises(YamuxProtocolError):
            server.receive_data(encode_header(FrameType.DATA, Flag.SYN, 1, 0xFFFFFFFF), 0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_data_is_split_into_frames_of_at_most_max_frame_payload() -> None:
    small = YamuxConfig(max_frame_payload=1000, measure_rtt=False, keepalive_interval=None)
    for config, expected in ((QUIET, DEFAULT_MAX_FRAME_PAYLOAD), (small, 1000)):
        pair = Pair(config, QUIET)
        sid = pair.open_accepted()
        payload = bytes(200_000)
        assert pair.client.send_data(sid, payload) == 200_000
        frames = split_frames(bytes(pair.client.data_to_send()))
        assert max(f[3] for f in frames) == expected
        assert sum(f[3] for f in frames) == 200_000
        assert all(f[3] <= 1 << 20 for f in frames)


def test_window_auto_tuning_doubles_when_the_reader_keeps_up() -> None:
    cfg = YamuxConfig(max_window=1 << 20, measure_rtt=False, keepalive_interval=None)
    pair = Pair(cfg, QUIET)
    # Measure an RTT of 10 ms.
    pair.now = 0.0
    opaque = pair.client.send_ping(0.0)
    pair.now = 0.010
    client_events, _ = pair.shuttle()
    assert client_events == [PingAcknowledged(opaque, pytest.approx(0.010))]  # type: ignore[arg-type]
    assert pair.client.rtt == pytest.approx(0.010)

    sid = pair.client.open_stream()
    pair.shuttle()
    pair.server.accept_stream(sid)
    pair.shuttle()
    window = INITIAL_WINDOW
    received = 0
    t = 0.010
    # Each half window is consumed within 4 RTTs: the window doubles until the maximum.
    while True:
        sent = pair.server.send_data(sid, bytes(pair.server.send_window(sid)))
        pair.shuttle()
        received += sent
        t += 0.001
        pair.now = t
        assert pair.client.acknowledge_received(sid, sent, t)
        client_window = pair.client.receive_window(sid)
        assert client_window == min(window * 2, 1 << 20)
        pair.shuttle()
        assert pair.server.send_window(sid) == client_window
        if client_window == 1 << 20:
            break
        window = client_window
    # A slow reader (updates further apart than 4 RTTs) does not grow the window further,
    # and the window never exceeds the configured maximum.
    sent = pair.server.send_data(sid, bytes(pair.server.send_window(sid)))
    pair.shuttle()
    pair.now = t + 10.0
    assert pair.client.acknowledge_received(sid, sent, t + 10.0)
    assert pair.client.receive_window(sid) == 1 << 20


def test_window_growth_is_capped_session_wide() -> None:
    # Two streams may each grow to 1 MiB, but together only to 1.5 MiB.
    cfg = YamuxConfig(
        max_window=1 << 20,
        max_session_window=(1 << 20) + (1 << 19),
        measure_rtt=False,
        keepalive_interval=None,
    )
    pair = Pair(cfg, QUIET)
    pair.now = 0.0
    pair.client.send_ping(0.0)
    pair.now = 0.010
    pair.shuttle()
    sids = []
    for _ in range(2):
        sid = pair.client.open_stream()
        pair.shuttle()
        pair.server.accept_stream(sid)
        pair.shuttle()
        sids.append(sid)
    t = 0.010
    for _ in range(6):
        for sid in sids:
            sent = pair.server.send_data(sid, bytes(pair.server.send_window(sid)))
            pair.shuttle()
            t += 0.001
            pair.now = t
            pair.client.acknowledge_received(sid, sent, t)
            pair.shuttle()
    windows = [pair.client.receive_window(sid) for sid in sids]
    assert sum(windows) <= cfg.max_session_window
    assert max(windows) > INITIAL_WINDOW  # growth happened, up to the shared cap


def test_no_growth_without_an_rtt_measurement() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    for _ in range(4):
        sent = pair.server.send_data(sid, bytes(pair.server.send_window(sid)))
        pair.shuttle()
        assert pair.client.acknowledge_received(sid, sent, 0.0)
        pair.shuttle()
        assert pair.client.receive_window(sid) == INITIAL_WINDOW


# -- session frames ---------------------------------------------------------------------------


def test_ping_is_answered_with_the_same_opaque_value_ahead_of_stream_data() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    pair.server.send_data(sid, b"queued stream data")
    events = pair.server.receive_data(frame(FrameType.PING, Flag.SYN, 0, 0xCAFE), 0.0)
    assert events == [PingReceived(0xCAFE)]
    frames = split_frames(bytes(pair.server.data_to_send()))
    assert frames[0] == (FrameType.PING, Flag.ACK, 0, 0xCAFE, b"")
    assert frames[1][0] == FrameType.DATA


def test_ping_rtt_and_unsolicited_ack_ignored() -> None:
    pair = Pair()
    assert pair.client.receive_data(frame(FrameType.PING, Flag.ACK, 0, 77), 0.0) == []
    opaque = pair.client.send_ping(5.0)
    pair.now = 5.25
    client_events, server_events = pair.shuttle()
    assert server_events == [PingReceived(opaque)]
    assert client_events == [PingAcknowledged(opaque, pytest.approx(0.25))]  # type: ignore[arg-type]


def test_goaway_stops_new_streams_but_existing_ones_continue() -> None:
    pair = Pair()
    sid = pair.open_accepted()
    pair.server.receive_data(b"", 0.0)
    events = pair.client.receive_data(frame(FrameType.GO_AWAY, 0, 0, GoAwayCode.NORMAL), 0.0)
    assert events == [GoAwayReceived(0)]
    assert not pair.client.can_open_stream
    with pytest.raises(RemoteGoAway) as info:
        pair.client.open_stream()
    assert isinstance(info.value, ConnectionClosedError)
    pair.client.send_data(sid, b"still flowing")
    _, server_events = pair.shuttle()
    assert server_events == [DataReceived(sid, b"still flowing")]


def test_local_close_sends_goaway_and_refuses_further_use() -> None:
    pair = Pair()
    pair.server.close(GoAwayCode.INTERNAL_ERROR)
    assert bytes(pair.server.data_to_send()) == frame(FrameType.GO_AWAY, 0, 0, 2)
    with pytest.raises(ConnectionClosedError):
        pair.server.open_stream()


# -- limits -----------------------------------------------------------------------------------


def test_accept_backlog_refuses_excess_inbound_streams_with_rst() -> None:
    server = YamuxConfig(accept_backlog=2, measure_rtt=False, keepalive_interval=None)
    pair = Pair(QUIET, server)
    ids = [pair.client.open_stream() for _ in range(3)]
    client_events, server_events = pair.shuttle()
    assert server_events == [StreamOpened(ids[0]), StreamOpened(ids[1])]
    assert client_events == [StreamAborted(ids[2], 0, True, "reset by the peer")]
    pair.server.accept_stream(ids[0])
    fourth = pair.client.open_stream()
    _, server_events = pair.shuttle()
    assert server_events == [StreamOpened(fourth)]


def test_max_inbound_streams_counts_live_accepted_streams() -> None:
    server = YamuxConfig(max_inbound_streams=1, measure_rtt=False, keepalive_interval=None)
    pair = Pair(QUIET, server)
    first = pair.open_accepted()
    second = pair.client.open_stream()
    client_events, _ = pair.shuttle()
    assert client_events == [StreamAborted(second, 0, True, "reset by the peer")]
    pair.client.reset_stream(first)
    pair.shuttle()
    third = pair.client.open_stream()
    _, server_events = pair.shuttle()
    assert server_events == [StreamOpened(third)]


def test_ack_backlog_caps_unacknowledged_outbound_streams() -> None:
    client = YamuxConfig(max_ack_backlog=2, measure_rtt=False, keepalive_interval=None)
    pair = Pair(client, QUIET)
    first = pair.client.open_stream()
    pair.client.open_stream()
    assert not pair.client.can_open_stream
    with pytest.raises(ResourceLimitExceeded):
        pair.client.open_stream()
    pair.shuttle()
    pair.server.accept_stream(first)
    client_events, _ = pair.shuttle()
    assert client_events == [StreamAcknowledged(first)]
    assert pair.client.ack_backlog == 1
    assert pair.client.can_open_stream


# -- protocol errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (frame(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0) * 2, YamuxProtocolError, "duplicate"),
        (frame(FrameType.WINDOW_UPDATE, Flag.SYN, 2, 0), YamuxProtocolError, "parity"),
        (frame(FrameType.DATA, 0, 0, 0), YamuxProtocolError, "session ID 0"),
        (bytes.fromhex("0100000000000001 00000000".replace(" ", "")), YamuxFrameError, "version"),
        (bytes.fromhex("0004000000000001 00000000".replace(" ", "")), YamuxFrameError, "type"),
    ],
)
def test_protocol_errors_close_with_goaway(raw: bytes, error: type[Exception], match: str) -> None:
    server = YamuxConnection(is_initiator=False, config=QUIET)
    with pytest.raises(error, match=match) as info:
        server.receive_data(raw, 0.0)
    assert isinstance(info.value, RemoteProtocolError)
    assert server.is_closed
    assert split_frames(bytes(server.data_to_send()))[-1][:4] == (
        FrameType.GO_AWAY,
        0,
        0,
        GoAwayCode.PROTOCOL_ERROR,
    )


def test_frames_fed_one_byte_at_a_time() -> None:
    pair = Pair()
    sid = pair.client.open_stream()
    pair.client.send_data(sid, b"split across reads")
    pair.client.send_eof(sid)
    raw = bytes(pair.client.data_to_send())
    events: list[YamuxEvent] = []
    for i in range(len(raw)):
        events += pair.server.receive_data(raw[i : i + 1], 0.0)
    assert events[0] == StreamOpened(sid)
    assert data_of(events, sid) == b"split across reads"
    assert events[-1] == StreamEnded(sid)


# -- keep-alive -------------------------------------------------------------------------------


def test_keepalive_ping_and_timeout() -> None:
    config = YamuxConfig(keepalive_interval=30.0, ping_timeout=10.0, measure_rtt=False)
    conn = YamuxConnection(is_initiator=True, config=config)
    conn.start(100.0)
    assert conn.get_timer() == 130.0
    conn.handle_timer(129.0)
    assert conn.data_to_send() == b""
    conn.handle_timer(130.0)
    (ping,) = split_frames(bytes(conn.data_to_send()))
    assert ping[:2] == (FrameType.PING, Flag.SYN)
    assert conn.get_timer() == 140.0
    # Other incoming bytes prove the peer alive and push the deadline out.
    conn.receive_data(frame(FrameType.PING, Flag.ACK, 0, 12345), 135.0)
    assert conn.get_timer() == 145.0
    conn.handle_timer(144.9)
    with pytest.raises(KeepAliveTimeout):
        conn.handle_timer(145.0)
    assert conn.is_closed
    assert conn.get_timer() is None


def test_keepalive_answered_schedules_the_next_ping() -> None:
    config = YamuxConfig(keepalive_interval=30.0, ping_timeout=10.0)
    pair = Pair(config, QUIET)
    pair.client.start(0.0)  # measure_rtt: the first ping goes out at once
    pair.now = 0.5
    client_events, _ = pair.shuttle()
    assert [type(e) for e in client_events] == [PingAcknowledged]
    assert pair.client.rtt == pytest.approx(0.5)
    assert pair.client.get_timer() == 30.5


def test_no_timer_without_keepalive() -> None:
    conn = YamuxConnection(is_initiator=True, config=YamuxConfig(keepalive_interval=None))
    conn.start(0.0)
    assert conn.get_timer() is None
    conn.handle_timer(1e9)
    assert not conn.is_closed
