"""Yamux frame codec byte vectors (hashicorp/yamux spec.md header layout) and the state table."""

from __future__ import annotations

import itertools

import pytest

from libp2p.exceptions import DecodeError, LocalUsageError, RemoteProtocolError
from libp2p.stream_muxer.yamux import (
    HEADER_SIZE,
    INITIAL_WINDOW,
    PROTOCOL_ID,
    Flag,
    FrameHeader,
    FrameType,
    GoAwayCode,
    IllegalStreamTransition,
    StreamEvent,
    StreamState,
    YamuxConfig,
    YamuxFrameError,
    decode_header,
    encode_header,
    next_state,
)
from libp2p.stream_muxer.yamux.state import TRANSITIONS

# (type, flags, stream ID, length) -> wire bytes: version | type | flags(2) | id(4) | length(4)
VECTORS = [
    # Data|SYN opening stream 1 with a 5-byte payload.
    ((FrameType.DATA, Flag.SYN, 1, 5), "00 00 0001 00000001 00000005"),
    # WindowUpdate|ACK on stream 2 granting 256 KiB.
    ((FrameType.WINDOW_UPDATE, Flag.ACK, 2, 262144), "00 01 0002 00000002 00040000"),
    # WindowUpdate|FIN half-close, no delta.
    ((FrameType.WINDOW_UPDATE, Flag.FIN, 7, 0), "00 01 0004 00000007 00000000"),
    # WindowUpdate|RST with a go-yamux error code in the length.
    ((FrameType.WINDOW_UPDATE, Flag.RST, 3, 42), "00 01 0008 00000003 0000002a"),
    # Ping request and its reply carry the same opaque value on stream 0.
    ((FrameType.PING, Flag.SYN, 0, 0x01020304), "00 02 0001 00000000 01020304"),
    ((FrameType.PING, Flag.ACK, 0, 0x01020304), "00 02 0002 00000000 01020304"),
    # GoAway with the protocol-error code.
    ((FrameType.GO_AWAY, Flag.NONE, 0, GoAwayCode.PROTOCOL_ERROR), "00 03 0000 00000000 00000001"),
    # Largest stream ID and length.
    ((FrameType.DATA, Flag.NONE, 0xFFFFFFFF, 0xFFFFFFFF), "00 00 0000 ffffffff ffffffff"),
]


def test_protocol_id_and_constants() -> None:
    assert PROTOCOL_ID == "/yamux/1.0.0"
    assert HEADER_SIZE == 12
    assert INITIAL_WINDOW == 256 * 1024


@pytest.mark.parametrize(("fields", "wire"), VECTORS)
def test_header_vectors(fields: tuple[int, int, int, int], wire: str) -> None:
    raw = bytes.fromhex(wire.replace(" ", ""))
    assert encode_header(*fields) == raw
    header = decode_header(raw)
    assert header == FrameHeader(FrameType(fields[0]), Flag(fields[1]), fields[2], fields[3])
    assert header.encode() == raw


def test_decode_at_offset_and_unknown_flag_bits_kept() -> None:
    raw = b"\xff" + bytes.fromhex("00 00 0015 00000009 00000000".replace(" ", ""))
    header = decode_header(raw, 1)
    assert header.flags == 0x15
    assert header.flags & Flag.FIN
    assert header.stream_id == 9


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("01 00 0000 00000001 00000000", "version"),
        ("00 04 0000 00000001 00000000", "type"),
        ("00 ff 0000 00000001 00000000", "type"),
        ("00 00 0000 00000001 000000", "12 bytes"),
    ],
)
def test_decode_rejects(wire: str, message: str) -> None:
    with pytest.raises(YamuxFrameError, match=message) as info:
        decode_header(bytes.fromhex(wire.replace(" ", "")))
    assert isinstance(info.value, DecodeError)
    assert isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize(
    "fields",
    [(0, 0, -1, 0), (0, 0, 1 << 32, 0), (0, 0, 1, 1 << 32), (0, 1 << 16, 1, 0)],
)
def test_encode_rejects_out_of_range(fields: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="bits"):
        encode_header(*fields)


# -- state table --------------------------------------------------------------------------

S = StreamState
E = StreamEvent


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (S.OPEN, E.SEND_FIN, S.HALF_CLOSED_LOCAL),
        (S.OPEN, E.RECV_FIN, S.HALF_CLOSED_REMOTE),
        (S.OPEN, E.CLOSE, S.LOCAL_CLOSED),
        (S.HALF_CLOSED_LOCAL, E.RECV_FIN, S.CLOSED),
        (S.HALF_CLOSED_REMOTE, E.SEND_FIN, S.CLOSED),
        (S.HALF_CLOSED_REMOTE, E.CLOSE, S.CLOSED),
        (S.HALF_CLOSED_REMOTE, E.RECV_FIN, S.HALF_CLOSED_REMOTE),
        (S.LOCAL_CLOSED, E.RECV_FIN, S.CLOSED),
        (S.LOCAL_CLOSED, E.RECV_DATA, S.LOCAL_CLOSED),
        (S.HALF_CLOSED_LOCAL, E.RECV_RST, S.RESET),
    ],
)
def test_legal_transitions(state: StreamState, event: StreamEvent, expected: StreamState) -> None:
    assert next_state(state, event) is expected


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.HALF_CLOSED_LOCAL, E.SEND_DATA),  # writing after our FIN
        (S.HALF_CLOSED_LOCAL, E.SEND_FIN),  # a second FIN
        (S.HALF_CLOSED_REMOTE, E.RECV_DATA),  # the peer writing after its FIN
        (S.LOCAL_CLOSED, E.SEND_DATA),
        (S.LOCAL_CLOSED, E.CLOSE),
    ],
)
def test_illegal_transitions_raise(state: StreamState, event: StreamEvent) -> None:
    with pytest.raises(IllegalStreamTransition) as info:
        next_state(state, event)
    assert isinstance(info.value, LocalUsageError)
    assert info.value.state is state
    assert info.value.event is event


@pytest.mark.parametrize(("state", "event"), list(itertools.product(S, E)))
def test_every_pair_is_in_the_table_or_raises(state: StreamState, event: StreamEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[state, event]
    else:
        with pytest.raises(IllegalStreamTransition):
            next_state(state, event)


def test_terminal_states_have_no_transitions() -> None:
    for state, event in itertools.product((S.CLOSED, S.RESET), E):
        with pytest.raises(IllegalStreamTransition):
            next_state(state, event)
    # RST is legal from every live state.
    for state in (S.OPEN, S.HALF_CLOSED_LOCAL, S.HALF_CLOSED_REMOTE, S.LOCAL_CLOSED):
        assert next_state(state, E.SEND_RST) is S.RESET
        assert next_state(state, E.RECV_RST) is S.RESET


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_window": INITIAL_WINDOW - 1},
        {"max_window": INITIAL_WINDOW - 1},
        {"max_frame_payload": 1024 * 1024 + 1},
        {"max_frame_payload": 0},
        {"accept_backlog": 0},
        {"keepalive_interval": 0.0},
        {"ping_timeout": 0.0},
    ],
)
def test_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalUsageError):
        YamuxConfig(**kwargs)  # type: ignore[arg-type]
