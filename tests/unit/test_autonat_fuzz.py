"""Hypothesis: AutoNAT v1 decoding, and the server's stream handler, fed anything.

The decoder raises only :class:`MalformedAutoNATMessage` and what it accepts re-encodes to a
message that decodes the same. The server's handler, fed arbitrary bytes (then EOF) on a
stream, never hangs, never raises outside the library's error family (the connection resets
the stream for those), and answers at most one ``DIAL_RESPONSE``, then EOF: ``E_BAD_REQUEST``
for anything that is not a valid ``DIAL`` from the sender, a dial-back for one that is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from multiaddr import Multiaddr

from libp2p.crypto.keys import Ed25519PrivateKey
from libp2p.exceptions import DecodeError, Libp2pError, TransportError
from libp2p.host.autonat import (
    AutoNATServer,
    AutoNATServerConfig,
    DialRequest,
    DialResponse,
    MalformedAutoNATMessage,
    ResponseStatus,
)
from libp2p.host.autonat.pb import autonat_pb2
from libp2p.host.autonat.protocol import MAX_MESSAGE_SIZE, decode_message, encode_message
from libp2p.network.address_policy import AddressPolicy
from libp2p.peer.id import PeerID
from libp2p.transport.tcp import TcpTransport
from libp2p.varint import decode_uvarint, encode_uvarint
from tests.fuzzing import FakeStream, mutate

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = [Ed25519PrivateKey.from_seed(bytes([i]) * 32) for i in range(1, 3)]
SENDER, OTHER = (PeerID.from_public_key(k.public_key) for k in KEYS)
ADDR_BYTES = [
    Multiaddr(t).to_bytes()
    for t in (
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/192.0.2.42/tcp/4001",
        "/ip6/2001:db8::1/udp/4001/quic-v1",
        f"/ip4/198.51.100.7/tcp/4001/p2p/{OTHER}/p2p-circuit",
    )
]


@st.composite
def messages(draw: st.DrawFn) -> autonat_pb2.Message:
    msg = autonat_pb2.Message()
    if draw(st.integers(0, 9)):
        msg.type = draw(st.sampled_from([0, 1]))  # type: ignore[assignment]
    if draw(st.booleans()):
        msg.dial.SetInParent()
        if draw(st.booleans()):
            msg.dial.peer.SetInParent()
            if draw(st.booleans()):
                ids = st.sampled_from([SENDER.to_bytes(), OTHER.to_bytes()])
                msg.dial.peer.id = draw(ids | st.binary(max_size=40))
            addrs = st.sampled_from(ADDR_BYTES) | st.binary(max_size=20)
            msg.dial.peer.addrs.extend(draw(st.lists(addrs, max_size=4)))
    if draw(st.booleans()):
        msg.dialResponse.SetInParent()
        if draw(st.booleans()):
            msg.dialResponse.status = draw(st.sampled_from([s.value for s in ResponseStatus]))  # type: ignore[assignment]
        if draw(st.booleans()):
            msg.dialResponse.statusText = draw(st.text(max_size=10))
        if draw(st.booleans()):
            msg.dialResponse.addr = draw(st.sampled_from(ADDR_BYTES) | st.binary(max_size=20))
    return msg


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(messages()).SerializeToString())


@FUZZ
@given(st.binary(max_size=200) | mutated())
def test_decode_message(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except MalformedAutoNATMessage:
        return
    framed = encode_message(msg)
    parsed = decode_uvarint(framed)
    assert parsed is not None
    assert decode_message(framed[parsed[1] :]) == msg
    if isinstance(msg, DialRequest):
        assert all(Multiaddr(str(a)).to_bytes() == a.to_bytes() for a in msg.addrs)


@FUZZ
@given(messages())
def test_well_formed_messages_round_trip(msg: autonat_pb2.Message) -> None:
    try:
        decoded = decode_message(msg.SerializeToString())
    except MalformedAutoNATMessage:
        return
    assert msg.HasField("type")
    assert (msg.type == 0) == isinstance(decoded, DialRequest)


# -- the server's handler ----------------------------------------------------------------------


class FakeSwarm:
    transport = TcpTransport()

    def __init__(self) -> None:
        self.dialed: list[tuple[PeerID, tuple[Multiaddr, ...]]] = []

    @asynccontextmanager
    async def dial_isolated(self, peer: PeerID, addrs: Sequence[Multiaddr]) -> AsyncIterator[Any]:
        self.dialed.append((peer, tuple(addrs)))
        raise TransportError("nothing listens in this harness")
        yield  # pragma: no cover


class FakeHost:
    def __init__(self) -> None:
        self.swarm = FakeSwarm()


class FakeConnection:
    remote_peer = SENDER
    remote_addr = Multiaddr("/ip4/127.0.0.1/tcp/50000")
    relayed = False
    limited = False


@st.composite
def stream_inputs(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "framed", "valid dial", "oversized"]))
    if kind == "random":
        return bytes(draw(st.binary(max_size=120)))
    if kind == "oversized":
        return encode_uvarint(MAX_MESSAGE_SIZE + 1 + draw(st.integers(0, 10))) + b"\x08\x00"
    if kind == "valid dial":
        peer = draw(st.sampled_from([SENDER, SENDER, OTHER]))
        addrs = tuple(Multiaddr(a) for a in draw(st.lists(st.sampled_from(ADDR_BYTES))))
        data = encode_message(DialRequest(peer, addrs))
    else:
        raw = draw(mutated())
        data = encode_uvarint(len(raw)) + raw
    if draw(st.booleans()):
        data = mutate(draw, data, max_edits=2)
    return data + draw(st.binary(max_size=20))


def expected_answer(data: bytes) -> tuple[str, DialResponse | None]:
    """What the handler must do with ``data``: ("reset"|"answer", response or None when
    the response is a dial-back outcome)."""
    try:
        parsed = decode_uvarint(data)
    except DecodeError:  # a non-minimal or overlong length prefix
        return "reset", None
    if parsed is None:
        return "reset", None
    length, offset = parsed
    if length > MAX_MESSAGE_SIZE or len(data) - offset < length:
        return "reset", None
    try:
        msg = decode_message(data[offset : offset + length])
    except MalformedAutoNATMessage:
        return "answer", DialResponse(ResponseStatus.E_BAD_REQUEST)
    if not isinstance(msg, DialRequest) or msg.peer != SENDER:
        return "answer", DialResponse(ResponseStatus.E_BAD_REQUEST)
    return "answer", DialResponse(ResponseStatus.E_DIAL_ERROR)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream_inputs())
@example(b"\x81\x00\x08\x00")  # a non-minimal length prefix: the stream is reset
def test_server_handler_never_crashes(data: bytes) -> None:
    async def main() -> None:
        host = FakeHost()
        config = AutoNATServerConfig(
            addresses=AddressPolicy.local_testing(),
            throttle_per_peer=1000,
            throttle_global=None,
            hide_failure_timing=True,
        )
        server = AutoNATServer(host, config)  # type: ignore[arg-type]
        ours, theirs = trio.testing.memory_stream_pair()
        stream = FakeStream(ours, FakeConnection())
        await theirs.send_all(data)
        await theirs.send_eof()
        error: BaseException | None = None
        with trio.fail_after(120):  # the clock autojumps: a hang shows as a timeout
            try:
                await server.handle(stream)  # type: ignore[arg-type]
            except Libp2pError as exc:
                error = exc
            out = bytearray()
            # On an error the connection resets the stream: nothing more to read.
            if error is None and not stream.was_reset:
                while chunk := await theirs.receive_some():
                    out += chunk
        action, expected = expected_answer(data)
        event(action if expected is None else f"{action} {expected.status.name}")
        if action == "reset":
            assert error is not None or stream.was_reset
            return
        assert error is None
        parsed = decode_uvarint(out)
        assert parsed is not None
        length, offset = parsed
        assert len(out) == offset + length  # exactly one response, then EOF
        response = decode_message(bytes(out[offset:]))
        assert isinstance(response, DialResponse)
        assert expected is not None
        assert response.status is expected.status
        if response.status is ResponseStatus.E_DIAL_ERROR:
            # Dialed only the observed IP, observed address first.
            ((peer, addrs),) = host.swarm.dialed
            assert peer == SENDER
            assert addrs[0] == FakeConnection.remote_addr
            assert all(str(a).startswith("/ip4/127.0.0.1/tcp/") for a in addrs)
        else:
            assert host.swarm.dialed == []

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
