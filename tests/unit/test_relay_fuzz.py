"""Hypothesis: Circuit Relay v2 decoding, and the relay's and client's handlers, fed anything.

The decoders raise only :class:`MalformedRelayMessage` and accept only what re-encodes to the
same message. The relay's hop handler and the client's stop handler, fed arbitrary bytes on a
stream (then EOF), never hang, never raise outside the library's error family (the
connection resets the stream for those), and answer exactly what the first message calls
for: one ``STATUS`` with the right code and then EOF -- or, for a valid ``CONNECT``, the
circuit's handshake and nothing else.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from multiaddr import Multiaddr

from libp2p import Host
from libp2p.crypto.keys import Ed25519PrivateKey
from libp2p.exceptions import Libp2pError, MessageTooLarge, UnexpectedEOF
from libp2p.network.connection import ConnectionLimit, Direction
from libp2p.peer.id import PeerID
from libp2p.peer.voucher import open_reservation_voucher
from libp2p.relay.circuit_v2 import (
    STOP_PROTOCOL_ID,
    MalformedRelayMessage,
    RelayConfig,
    RelayService,
    Status,
)
from libp2p.relay.circuit_v2.pb import circuit_pb2
from libp2p.relay.circuit_v2.protocol import (
    HOP_CONNECT,
    HOP_RESERVE,
    HOP_STATUS,
    MAX_MESSAGE_SIZE,
    STOP_CONNECT,
    STOP_STATUS,
    decode_addrs,
    decode_hop,
    decode_limit,
    decode_peer_id,
    decode_stop,
    frame,
    hop_message,
)
from libp2p.varint import decode_uvarint, encode_uvarint
from tests.fuzzing import FakeStream, mutate

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HANDLER_FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

KEYS = [Ed25519PrivateKey.from_seed(bytes([i]) * 32) for i in range(1, 4)]
PEERS = [PeerID.from_public_key(k.public_key) for k in KEYS]
#: The peer holding a reservation in the hop-handler harness, and the peer sending requests.
TARGET, SOURCE, OTHER = PEERS

ADDR_TEXTS = [
    "/ip4/192.0.2.42/tcp/4001",
    "/ip6/2001:db8::1/udp/4001/quic-v1",
    "/dns4/relay.example.com/tcp/443/wss",
    f"/ip4/198.51.100.7/tcp/4001/p2p/{TARGET}",
    f"/ip4/198.51.100.7/tcp/4001/p2p/{TARGET}/p2p-circuit",
]
ADDR_BYTES = [Multiaddr(t).to_bytes() for t in ADDR_TEXTS]


peer_id_bytes = st.sampled_from([p.to_bytes() for p in PEERS]) | st.binary(max_size=40)
addr_bytes = st.sampled_from(ADDR_BYTES) | st.binary(max_size=30)
statuses = st.sampled_from([s.value for s in Status]) | st.integers(0, 1000)


def _fill_limit(draw: st.DrawFn, limit: circuit_pb2.Limit) -> None:
    limit.SetInParent()
    if draw(st.booleans()):
        limit.duration = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        limit.data = draw(st.integers(0, 2**64 - 1))


def _fill_peer(draw: st.DrawFn, peer: circuit_pb2.Peer) -> None:
    peer.SetInParent()
    if draw(st.booleans()):
        peer.id = draw(peer_id_bytes)
    peer.addrs.extend(draw(st.lists(addr_bytes, max_size=3)))


@st.composite
def hop_messages(draw: st.DrawFn) -> circuit_pb2.HopMessage:
    msg = circuit_pb2.HopMessage()
    if draw(st.integers(0, 9)):
        msg.type = draw(st.sampled_from([HOP_RESERVE, HOP_CONNECT, HOP_STATUS]))  # type: ignore[assignment]
    if draw(st.booleans()):
        _fill_peer(draw, msg.peer)
    if draw(st.booleans()):
        msg.reservation.SetInParent()
        if draw(st.booleans()):
            msg.reservation.expire = draw(st.integers(0, 2**64 - 1))
        msg.reservation.addrs.extend(draw(st.lists(addr_bytes, max_size=3)))
        if draw(st.booleans()):
            msg.reservation.voucher = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        _fill_limit(draw, msg.limit)
    if draw(st.booleans()):
        msg.status = draw(statuses)  # type: ignore[assignment]
    return msg


@st.composite
def stop_messages(draw: st.DrawFn) -> circuit_pb2.StopMessage:
    msg = circuit_pb2.StopMessage()
    if draw(st.integers(0, 9)):
        msg.type = draw(st.sampled_from([STOP_CONNECT, STOP_STATUS]))  # type: ignore[assignment]
    if draw(st.booleans()):
        _fill_peer(draw, msg.peer)
    if draw(st.booleans()):
        _fill_limit(draw, msg.limit)
    if draw(st.booleans()):
        msg.status = draw(statuses)  # type: ignore[assignment]
    return msg


@st.composite
def mutated_hop(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(hop_messages()).SerializeToString())


@st.composite
def mutated_stop(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(stop_messages()).SerializeToString())


# -- decoders ----------------------------------------------------------------------------------


def check_limit(msg: circuit_pb2.HopMessage | circuit_pb2.StopMessage) -> None:
    limit = decode_limit(msg)
    duration = msg.limit.duration if msg.HasField("limit") else 0
    data = msg.limit.data if msg.HasField("limit") else 0
    if not duration and not data:
        assert limit is None
    else:
        assert limit == ConnectionLimit(duration=duration or None, data=data or None)


def check_peer(msg: circuit_pb2.HopMessage | circuit_pb2.StopMessage) -> None:
    if not msg.peer.HasField("id"):
        return
    try:
        peer = decode_peer_id(msg.peer.id, "peer")
    except MalformedRelayMessage:
        return
    assert peer.to_bytes() == msg.peer.id
    assert decode_addrs(list(msg.peer.addrs)) is not None


@FUZZ
@given(st.binary(max_size=200) | mutated_hop())
def test_decode_hop(data: bytes) -> None:
    try:
        msg = decode_hop(data)
    except MalformedRelayMessage:
        return
    assert msg.HasField("type")
    assert msg.type in (HOP_RESERVE, HOP_CONNECT, HOP_STATUS)
    assert decode_hop(msg.SerializeToString()) == msg
    check_limit(msg)
    check_peer(msg)


@FUZZ
@given(st.binary(max_size=200) | mutated_stop())
def test_decode_stop(data: bytes) -> None:
    try:
        msg = decode_stop(data)
    except MalformedRelayMessage:
        return
    assert msg.HasField("type")
    assert msg.type in (STOP_CONNECT, STOP_STATUS)
    assert decode_stop(msg.SerializeToString()) == msg
    check_limit(msg)
    check_peer(msg)


@FUZZ
@given(hop_messages())
def test_well_formed_hop_messages_round_trip(msg: circuit_pb2.HopMessage) -> None:
    data = msg.SerializeToString()
    if not msg.HasField("type"):
        with pytest.raises(MalformedRelayMessage):
            decode_hop(data)
        return
    assert decode_hop(data) == msg
    # ``type`` is always on the wire, even RESERVE = 0 (rust requires it).
    assert data.startswith(b"\x08")


@FUZZ
@given(st.integers(0, 2**32 - 1) | st.none(), st.integers(0, 2**64 - 1) | st.none())
def test_decode_limit(duration: int | None, data: int | None) -> None:
    msg = circuit_pb2.StopMessage(type=STOP_CONNECT)  # type: ignore[arg-type]
    msg.limit.SetInParent()
    if duration is not None:
        msg.limit.duration = duration
    if data is not None:
        msg.limit.data = data
    limit = decode_stop(msg.SerializeToString())
    check_limit(limit)
    decoded = decode_limit(limit)
    if not duration and not data:
        assert decoded is None
    else:
        assert decoded is not None
        assert decoded.duration == (duration or None)
        assert decoded.data == (data or None)


@st.composite
def addr_lists(draw: st.DrawFn) -> list[bytes]:
    items = st.sampled_from(ADDR_BYTES) | st.binary(max_size=30)
    raw = draw(st.lists(items, max_size=8))
    return [mutate(draw, item, max_edits=2) if draw(st.booleans()) else item for item in raw]


@FUZZ
@given(addr_lists())
def test_decode_addrs(raw: list[bytes]) -> None:
    addrs = decode_addrs(raw)
    # Only inputs that are canonical multiaddrs survive, in order.
    remaining = iter(raw)
    for addr in addrs:
        data = addr.to_bytes()
        assert any(item == data for item in remaining)
        assert Multiaddr(str(addr)).to_bytes() == data
    for item in raw:
        if item in ADDR_BYTES:
            assert Multiaddr(item) in addrs


@FUZZ
@given(peer_id_bytes | st.builds(lambda b: b"\x00" + b, st.binary(max_size=50)))
def test_decode_peer_id(raw: bytes) -> None:
    try:
        peer = decode_peer_id(raw, "peer")
    except MalformedRelayMessage:
        return
    assert peer.to_bytes() == raw


# -- handlers ----------------------------------------------------------------------------------


class FakeConnection:
    """What the handlers read from a stream's connection."""

    def __init__(self, peer: PeerID, *, relayed: bool = False, target_input: bytes = b"") -> None:
        self.remote_peer = peer
        self.relayed = relayed
        self.remote_addr = Multiaddr("/ip4/127.0.0.1/tcp/4001")
        self.direction = Direction.INBOUND
        self.is_closed = False
        self.limit = None
        #: What the target answers on a stop stream the relay opens on this connection.
        self.target_input = target_input
        self.opened: list[FakeStream] = []
        self.target_ends: list[trio.testing.MemoryReceiveStream | Any] = []

    async def new_stream(self, protocol: str, **_: Any) -> FakeStream:
        assert protocol == STOP_PROTOCOL_ID
        stream, target_end = fake_stream(self)
        await feed(target_end, self.target_input)
        self.opened.append(stream)
        self.target_ends.append(target_end)
        return stream


def fake_stream(conn: FakeConnection) -> tuple[FakeStream, Any]:
    """A stream on ``conn``, and the peer's end of it."""
    ours, theirs = trio.testing.memory_stream_pair()
    return FakeStream(ours, conn), theirs


async def feed(theirs: Any, data: bytes) -> None:
    await theirs.send_all(data)
    await theirs.send_eof()


async def read_until_eof(theirs: Any) -> bytes:
    out = bytearray()
    while chunk := await theirs.receive_some():
        out += chunk
    return bytes(out)


def first_message(data: bytes) -> tuple[bytes | None, bytes, type[Exception] | None]:
    """Split ``data`` into its first length-prefixed message and the rest, as a reader with
    a 4096-byte limit sees it; or the error that reader raises."""
    try:
        parsed = decode_uvarint(data)
    except Libp2pError as exc:
        return None, b"", type(exc)
    if parsed is None:
        return None, b"", UnexpectedEOF
    length, offset = parsed
    if length > MAX_MESSAGE_SIZE:
        return None, b"", MessageTooLarge
    if len(data) - offset < length:
        return None, b"", UnexpectedEOF
    return data[offset : offset + length], data[offset + length :], None


@st.composite
def hop_inputs(draw: st.DrawFn) -> bytes:
    """A hop stream's bytes: often a framed (possibly mutated) message, maybe trailing bytes."""
    kind = draw(st.sampled_from(["random", "framed", "valid connect", "valid reserve"]))
    if kind == "random":
        return bytes(draw(st.binary(max_size=120)))
    if kind == "valid connect":
        peer = draw(st.sampled_from([TARGET, TARGET, SOURCE, OTHER]))
        body = hop_message(HOP_CONNECT, peer=peer).SerializeToString()
    elif kind == "valid reserve":
        body = hop_message(HOP_RESERVE).SerializeToString()
    else:
        body = draw(mutated_hop())
    data = encode_uvarint(len(body)) + body
    if draw(st.booleans()):
        data = mutate(draw, data, max_edits=2)
    return data + draw(st.binary(max_size=40))


@st.composite
def stop_inputs(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "framed", "ok status", "valid connect"]))
    if kind == "random":
        return bytes(draw(st.binary(max_size=120)))
    if kind == "ok status":
        msg = circuit_pb2.StopMessage(type=STOP_STATUS, status=Status.OK.value)  # type: ignore[arg-type]
        body = msg.SerializeToString()
    elif kind == "valid connect":
        msg = circuit_pb2.StopMessage(type=STOP_CONNECT)  # type: ignore[arg-type]
        msg.peer.id = draw(st.sampled_from(PEERS)).to_bytes()
        body = msg.SerializeToString()
    else:
        body = draw(mutated_stop())
    data = encode_uvarint(len(body)) + body
    if draw(st.booleans()):
        data = mutate(draw, data, max_edits=2)
    return data + draw(st.binary(max_size=40))


HANDLER_ERRORS = (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError)


def expected_hop_status(msg: circuit_pb2.HopMessage, relayed: bool) -> Status | None:
    """The status the relay must answer (``None``: a circuit to the target is attempted)."""
    if msg.type == HOP_RESERVE:
        return Status.PERMISSION_DENIED if relayed else Status.OK
    if msg.type == HOP_CONNECT:
        if relayed:
            return Status.PERMISSION_DENIED
        if not msg.HasField("peer") or not msg.peer.HasField("id"):
            return Status.MALFORMED_MESSAGE
        try:
            target = PeerID.from_bytes(msg.peer.id)
        except Libp2pError:
            return Status.MALFORMED_MESSAGE
        return None if target == TARGET else Status.NO_RESERVATION
    return Status.UNEXPECTED_MESSAGE


@st.composite
def ok_replies(draw: st.DrawFn) -> bytes:
    """A target's OK answer to the stop CONNECT, and maybe its first relayed bytes."""
    msg = circuit_pb2.StopMessage(type=STOP_STATUS, status=Status.OK.value)  # type: ignore[arg-type]
    return frame(msg) + draw(st.binary(max_size=40))


@HANDLER_FUZZ
@given(hop_inputs(), ok_replies() | stop_inputs(), st.booleans())
def test_hop_handler_answers_anything_correctly(
    data: bytes, target_reply: bytes, relayed: bool
) -> None:
    check_hop_handler(data, target_reply, relayed)


@st.composite
def connects_to_target(draw: st.DrawFn) -> bytes:
    """A valid CONNECT to TARGET, then the source's first relayed bytes."""
    return frame(hop_message(HOP_CONNECT, peer=TARGET)) + draw(st.binary(max_size=60))


@HANDLER_FUZZ
@given(connects_to_target(), ok_replies() | stop_inputs())
def test_hop_handler_circuit_with_any_target_answer(data: bytes, target_reply: bytes) -> None:
    check_hop_handler(data, target_reply, relayed=False)


def check_hop_handler(data: bytes, target_reply: bytes, relayed: bool) -> None:
    """Run the relay's hop handler on ``data`` from SOURCE, while TARGET holds a reservation,
    and check its answer.

    ``target_reply`` is what TARGET answers on the stop stream if the relay opens one.
    """

    async def main() -> None:
        host = Host(KEYS[0])
        relay = RelayService(host, RelayConfig())
        target_conn = FakeConnection(TARGET, target_input=target_reply)
        source_conn = FakeConnection(SOURCE, relayed=relayed)
        conns = {TARGET: [target_conn], SOURCE: [source_conn]}
        host.connections_to = lambda peer: conns.get(peer, [])  # type: ignore[method-assign]

        # TARGET reserves first.
        stream, theirs = fake_stream(target_conn)
        await feed(theirs, frame(hop_message(HOP_RESERVE)))
        await relay._handle_hop(stream)
        reserved, _, _ = first_message(await read_until_eof(theirs))
        assert reserved is not None
        assert decode_hop(reserved).status == Status.OK.value
        assert TARGET in relay.reservations()

        stream, theirs = fake_stream(source_conn)
        await feed(theirs, data)
        raised: Exception | None = None
        with trio.fail_after(3600):  # the autojump clock makes a hang a quick failure
            try:
                await relay._handle_hop(stream)
            except HANDLER_ERRORS as exc:
                raised = exc  # the connection resets the stream
                await stream.reset()
        out = await read_until_eof(theirs)

        body, rest, error = first_message(data)
        if error is not None:
            assert isinstance(raised, error), repr(raised)
            assert out == b""
            return
        assert raised is None, repr(raised)
        assert body is not None
        try:
            msg = decode_hop(body)
        except MalformedRelayMessage:
            assert out == frame(hop_message(HOP_STATUS, status=Status.MALFORMED_MESSAGE))
            return
        expected = expected_hop_status(msg, relayed)
        if expected is Status.OK:
            reply_body, after, reply_error = first_message(out)
            assert reply_error is None
            assert after == b""
            assert reply_body is not None
            reply = decode_hop(reply_body)
            assert reply.type == HOP_STATUS
            assert reply.status == Status.OK.value
            open_reservation_voucher(reply.reservation.voucher, peer=SOURCE, relay=host.peer_id)
            assert SOURCE in relay.reservations()
            return
        if expected is not None:
            assert out == frame(hop_message(HOP_STATUS, status=expected))
            assert not target_conn.opened
            return
        # A CONNECT to TARGET: the relay asked TARGET over a stop stream.
        (stop,) = target_conn.opened
        (target_end,) = target_conn.target_ends
        reply_body, reply_rest, reply_error = first_message(target_reply)
        reply_ok = False
        if reply_error is None and reply_body is not None:
            try:
                reply = decode_stop(reply_body)
            except MalformedRelayMessage:
                pass
            else:
                reply_ok = reply.type == STOP_STATUS and reply.status == Status.OK.value
        limit = RelayConfig().circuit_limit
        sent_to_target = await read_until_eof(target_end)
        stop_body, spliced_to_target, stop_error = first_message(sent_to_target)
        assert stop_error is None
        assert stop_body is not None
        stop_connect = decode_stop(stop_body)
        assert stop_connect.type == STOP_CONNECT
        assert PeerID.from_bytes(stop_connect.peer.id) == SOURCE
        assert decode_limit(stop_connect) == limit
        event(f"CONNECT to the target, target answered OK: {reply_ok}")
        if not reply_ok:
            assert out == frame(hop_message(HOP_STATUS, status=Status.CONNECTION_FAILED))
            assert stop.was_reset
            assert spliced_to_target == b""
            return
        # Spliced: each side gets the other's bytes after its first message, then EOF.
        assert out == frame(hop_message(HOP_STATUS, status=Status.OK, limit=limit)) + reply_rest
        assert spliced_to_target == rest
        assert not stop.was_reset
        assert relay.stats.circuits_opened == 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@HANDLER_FUZZ
@given(stop_inputs(), st.booleans())
def test_stop_handler_answers_anything_correctly(data: bytes, relayed: bool) -> None:
    check_stop_handler(data, relayed)


@st.composite
def stop_connects(draw: st.DrawFn) -> bytes:
    """A valid stop CONNECT, then whatever the source sends first (garbage, or a
    multistream header)."""
    msg = circuit_pb2.StopMessage(type=STOP_CONNECT)  # type: ignore[arg-type]
    msg.peer.id = draw(st.sampled_from(PEERS)).to_bytes()
    if draw(st.booleans()):
        _fill_limit(draw, msg.limit)
    tail = draw(st.sampled_from([b"", b"\x13/multistream/1.0.0\n"]) | st.binary(max_size=60))
    return frame(msg) + tail


@HANDLER_FUZZ
@given(stop_connects())
def test_stop_handler_accepts_a_connect_then_fails_the_upgrade(data: bytes) -> None:
    check_stop_handler(data, relayed=False)


def check_stop_handler(data: bytes, relayed: bool) -> None:
    """Run the client's stop handler on ``data`` from a relay (OTHER) and check its answer."""

    async def main() -> None:
        host = Host(KEYS[0])
        conn = FakeConnection(OTHER, relayed=relayed)
        stream, theirs = fake_stream(conn)
        await feed(theirs, data)
        raised: Exception | None = None
        with trio.fail_after(3600):
            try:
                await host.relay._handle_stop(stream)  # type: ignore[arg-type]
            except HANDLER_ERRORS as exc:
                raised = exc  # the connection resets the stream
                await stream.reset()
        out = await read_until_eof(theirs)

        def status(code: Status) -> bytes:
            msg = circuit_pb2.StopMessage(type=STOP_STATUS, status=code.value)  # type: ignore[arg-type]
            return frame(msg)

        if relayed:
            event("stop: relayed connection")
            assert raised is None
            assert out == status(Status.PERMISSION_DENIED)
            return
        body, _rest, error = first_message(data)
        if error is not None:
            assert isinstance(raised, error), repr(raised)
            assert out == b""
            return
        assert raised is None, repr(raised)
        assert body is not None
        try:
            msg = decode_stop(body)
        except MalformedRelayMessage:
            assert out == status(Status.MALFORMED_MESSAGE)
            return
        if msg.type != STOP_CONNECT:
            assert out == status(Status.UNEXPECTED_MESSAGE)
            return
        if not msg.peer.HasField("id"):
            assert out == status(Status.MALFORMED_MESSAGE)
            return
        try:
            PeerID.from_bytes(msg.peer.id)
        except Libp2pError:
            assert out == status(Status.MALFORMED_MESSAGE)
            return
        # Accepted: OK, then the upgrade, which garbage or EOF cannot complete.
        event("stop: CONNECT accepted")
        assert out.startswith(status(Status.OK))
        assert stream.was_reset

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
