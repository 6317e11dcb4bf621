"""Hypothesis: AutoNAT v2 decoders, the server's request handler and the client's dial-back
handler, fed anything.

Decoders raise only :class:`MalformedAutoNATv2Message`, and what they accept re-encodes to
bytes that decode the same. The server's handler, fed arbitrary bytes then EOF, never hangs
and never raises outside the library's error family; it either resets the stream or writes
well-formed messages ending with exactly one ``DialResponse``. The dial-back handler answers
``DialBackResponse`` only for the nonce a check waits for, and resets the stream otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from multiaddr import Multiaddr

from libp2p.crypto.keys import Ed25519PrivateKey, PrivateKey
from libp2p.exceptions import Libp2pError, TransportError
from libp2p.host.autonat.v2 import (
    AutoNATv2Client,
    AutoNATv2Server,
    AutoNATv2ServerConfig,
    DialStatus,
    MalformedAutoNATv2Message,
    ResponseStatus,
)
from libp2p.host.autonat.v2.client import _Pending
from libp2p.host.autonat.v2.pb import autonatv2_pb2
from libp2p.host.autonat.v2.protocol import (
    MAX_MESSAGE_SIZE,
    DialBack,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    decode_dial_back,
    decode_dial_back_response,
    decode_message,
    encode_dial_back,
    encode_dial_back_response,
    encode_message,
)
from libp2p.network.address_policy import AddressPolicy
from libp2p.network.connection import Direction
from libp2p.peer.id import PeerID
from libp2p.transport.tcp import TcpTransport
from libp2p.varint import decode_uvarint, encode_uvarint
from tests.fuzzing import FakeStream, mutate

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEY = Ed25519PrivateKey.from_seed(b"\x01" * 32)
SENDER = PeerID.from_public_key(KEY.public_key)
ADDR_BYTES = [
    Multiaddr(t).to_bytes()
    for t in (
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/127.0.0.2/tcp/4001",
        "/ip6/2001:db8::1/udp/4001/quic-v1",
        "/dns4/example.com/tcp/1",
    )
]


@st.composite
def messages(draw: st.DrawFn) -> autonatv2_pb2.Message:
    msg = autonatv2_pb2.Message()
    kind = draw(st.sampled_from(["none", "req", "resp", "ddreq", "ddresp"]))
    if kind == "req":
        msg.dialRequest.SetInParent()
        addrs = st.sampled_from(ADDR_BYTES) | st.binary(max_size=20)
        msg.dialRequest.addrs.extend(draw(st.lists(addrs, max_size=4)))
        msg.dialRequest.nonce = draw(st.integers(0, (1 << 64) - 1))
    elif kind == "resp":
        msg.dialResponse.SetInParent()
        msg.dialResponse.status = draw(st.sampled_from([0, 100, 101, 200, 7]))  # type: ignore[assignment]
        msg.dialResponse.addrIdx = draw(st.integers(0, (1 << 32) - 1))
        msg.dialResponse.dialStatus = draw(st.sampled_from([0, 100, 101, 200, 9]))  # type: ignore[assignment]
    elif kind == "ddreq":
        msg.dialDataRequest.addrIdx = draw(st.integers(0, (1 << 32) - 1))
        msg.dialDataRequest.numBytes = draw(st.integers(0, (1 << 64) - 1))
    elif kind == "ddresp":
        msg.dialDataResponse.data = draw(st.binary(max_size=300))
    return msg


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(messages()).SerializeToString())


@FUZZ
@given(st.binary(max_size=200) | mutated())
def test_decode_message(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except MalformedAutoNATv2Message:
        return
    event(type(msg).__name__)
    if isinstance(msg, DialRequest):
        clean = DialRequest(tuple(a for a in msg.addrs if a is not None), msg.nonce)
        framed = encode_message(clean)
    elif isinstance(msg, DialDataResponse) and len(msg.data) > 4096:
        return
    else:
        framed = encode_message(msg)
    parsed = decode_uvarint(framed)
    assert parsed is not None
    again = decode_message(framed[parsed[1] :])
    if isinstance(msg, DialRequest):
        assert isinstance(again, DialRequest)
        assert again.nonce == msg.nonce
        assert list(again.addrs) == [a for a in msg.addrs if a is not None]
    else:
        assert again == msg


@FUZZ
@given(st.binary(max_size=40))
def test_decode_dial_back_messages(data: bytes) -> None:
    try:
        msg = decode_dial_back(data)
    except MalformedAutoNATv2Message:
        pass
    else:
        assert decode_dial_back(encode_dial_back(msg)[1:]) == msg
    with suppress(MalformedAutoNATv2Message):
        decode_dial_back_response(data)


# -- the server's handler ----------------------------------------------------------------------


class FakeSwarm:
    transport = TcpTransport()

    def __init__(self) -> None:
        self.dialed: list[Multiaddr] = []

    @asynccontextmanager
    async def dial_isolated(
        self, peer: PeerID, addrs: Sequence[Multiaddr], *, key: PrivateKey | None = None
    ) -> AsyncIterator[Any]:
        self.dialed.extend(addrs)
        raise TransportError("nothing listens in this harness")
        yield  # pragma: no cover


class FakeHost:
    def __init__(self) -> None:
        self.swarm = FakeSwarm()


class FakeConnection:
    remote_peer = SENDER
    remote_addr = Multiaddr("/ip4/127.0.0.1/tcp/50000")
    local_addr = Multiaddr("/ip4/127.0.0.1/tcp/4001")
    relayed = False
    limited = False
    direction = Direction.INBOUND


@st.composite
def stream_inputs(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "framed", "valid", "valid+data", "paid", "oversized"]))
    if kind == "random":
        return bytes(draw(st.binary(max_size=120)))
    if kind == "oversized":
        return encode_uvarint(MAX_MESSAGE_SIZE + 1 + draw(st.integers(0, 10))) + b"\x0a\x00"
    if kind == "paid":
        # Another IP than the observed one, and enough dial data (the most asked is 100 000).
        data = encode_message(DialRequest((Multiaddr(ADDR_BYTES[1]),), 1))
        data += encode_message(DialDataResponse(b"\x00" * 4096)) * 25
    elif kind.startswith("valid"):
        addrs = tuple(Multiaddr(a) for a in draw(st.lists(st.sampled_from(ADDR_BYTES))))
        data = encode_message(DialRequest(addrs, draw(st.integers(0, 99))))
        if kind == "valid+data":
            sizes = st.integers(0, 4096)
            for size in draw(st.lists(sizes, max_size=30)):
                data += encode_message(DialDataResponse(b"\x00" * size))
    else:
        raw = draw(mutated())
        data = encode_uvarint(len(raw)) + raw
    if draw(st.booleans()):
        data = mutate(draw, data, max_edits=2)
    return data + draw(st.binary(max_size=20))


def split_messages(out: bytes) -> list[bytes]:
    bodies = []
    while out:
        parsed = decode_uvarint(out)
        assert parsed is not None
        length, offset = parsed
        assert len(out) >= offset + length
        bodies.append(out[offset : offset + length])
        out = out[offset + length :]
    return bodies


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream_inputs())
def test_server_handler_never_crashes(data: bytes) -> None:
    async def main() -> None:
        host = FakeHost()
        config = AutoNATv2ServerConfig(
            addresses=AddressPolicy.local_testing(),
            peer_rate=1000,
            global_rate=1000,
            dial_data_rate=1000,
        )
        server = AutoNATv2Server(host, config)  # type: ignore[arg-type]
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
            if error is None and not stream.was_reset:
                while chunk := await theirs.receive_some():
                    out += chunk
        assert error is None  # the handler deals with everything itself
        assert server.policy.in_progress(SENDER) == 0
        # The amplification guard: another IP than the observed one is dialed only after
        # the requester paid at least 30 000 bytes.
        if any("127.0.0.1" not in str(a) for a in host.swarm.dialed):
            assert server.stats.dial_data_bytes >= 30_000
        if stream.was_reset:
            event("reset")
            return
        msgs = [decode_message(b) for b in split_messages(bytes(out))]
        assert msgs, "an answered request has a response"
        *before, last = msgs
        assert isinstance(last, DialResponse)
        assert all(isinstance(m, DialDataRequest) for m in before)
        assert len(before) <= 1
        event(f"{last.status.name}/{last.dial_status.name}")
        if before:
            event("dial data asked")
        if last.status is ResponseStatus.OK:
            assert last.dial_status is DialStatus.E_DIAL_ERROR
            assert len(host.swarm.dialed) == 1
            if before:
                asked = before[0]
                assert isinstance(asked, DialDataRequest)
                assert server.stats.dial_data_bytes >= asked.num_bytes
        else:
            assert host.swarm.dialed == []

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- the client's dial-back handler ---------------------------------------------------------------


class FakeClientHost:
    def __init__(self) -> None:
        self.connections: list[Any] = []
        self.peerstore = None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(encode_dial_back(DialBack(2)))
@given(
    st.binary(max_size=30)
    | st.just(encode_dial_back(DialBack(2)))
    | st.integers(0, 3).map(lambda n: encode_dial_back(DialBack(n)))
    | st.binary(max_size=12).map(lambda b: encode_uvarint(len(b)) + b)
)
def test_dial_back_handler(data: bytes) -> None:
    async def main() -> None:
        client = AutoNATv2Client(FakeClientHost())  # type: ignore[arg-type]
        pending = _Pending()
        client._pending[2] = pending
        ours, theirs = trio.testing.memory_stream_pair()
        stream = FakeStream(ours, FakeConnection())
        await theirs.send_all(data)
        await theirs.send_eof()
        with trio.fail_after(60):
            await client.handle_dial_back(stream)  # type: ignore[arg-type]
            out = bytearray()
            if not stream.was_reset:
                while chunk := await theirs.receive_some():
                    out += chunk
        if pending.seen is not None:
            event("nonce accepted")
            parsed = decode_uvarint(data)
            assert parsed is not None
            length, offset = parsed
            assert decode_dial_back(data[offset : offset + length]) == DialBack(2)
            assert pending.seen.fresh
            assert bytes(out) == encode_dial_back_response()
        else:
            assert stream.was_reset

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
