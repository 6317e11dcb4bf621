"""Fuzzing the Noise layer: hostile bytes only ever raise our handshake/protocol errors.

Every input here comes from the network in real life: handshake messages, the payload
protobuf inside them (delivered *correctly encrypted*, so it reaches the decoder), and
transport frames. Anything other than :class:`~libp2p.exceptions.HandshakeError` during the
handshake or :class:`~libp2p.exceptions.RemoteProtocolError` afterwards -- a protobuf or
cryptography exception, IndexError, a hang (trio.fail_after), a buffer that grows without
bound -- is a bug.
"""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libp2p.crypto.keys import generate_ed25519, generate_secp256k1
from libp2p.exceptions import HandshakeError, RemoteProtocolError
from libp2p.peer.id import PeerID
from libp2p.security.noise import (
    SIGNATURE_PREFIX,
    HandshakePayload,
    HandshakeState,
    Libp2pNoiseHandshake,
    NoiseHandshakeError,
    NoiseTransport,
    NoiseTransportError,
    noise_handshake,
)

_KEY_I = generate_ed25519()
_KEY_R = generate_secp256k1()
_PEER_R = PeerID.from_public_key(_KEY_R.public_key)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few random edits: flips, overwrites, cuts, insertions.

    Positions are drawn independently of the length (then reduced modulo it), so the draws
    stay the same shape when ``original`` varies in length between runs (DER signatures do).
    """
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        # Draw every parameter unconditionally so the sequence of draws never depends on
        # the data (Hypothesis requires the same draws when it replays an example).
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, 1 << 20))
        bit = draw(st.integers(0, 7))
        value = draw(st.integers(0, 255))
        inserted = draw(st.binary(min_size=1, max_size=40))
        span = draw(st.integers(1, 8))
        if op == "truncate":
            del data[at % (len(data) + 1) :]
        elif op == "insert":
            at %= len(data) + 1
            data[at:at] = inserted
        elif data:
            at %= len(data)
            if op == "flip":
                data[at] ^= 1 << bit
            elif op == "set":
                data[at] = value
            else:
                del data[at : at + span]
    return bytes(data)


def _valid_payload(static_public: bytes) -> bytes:
    return HandshakePayload(
        identity_key=_KEY_R.public_key.serialize(),
        identity_sig=_KEY_R.sign(SIGNATURE_PREFIX + static_public),
        stream_muxers=("/yamux/1.0.0",),
    ).encode()


def _fresh_message_2(payload_for: bytes | None = None) -> tuple[Libp2pNoiseHandshake, bytes]:
    """An initiator waiting for message 2, and a genuine message 2 from our responder."""
    initiator = Libp2pNoiseHandshake(
        _KEY_I, initiator=True, expected_peer=_PEER_R, muxers=("/yamux/1.0.0",)
    )
    responder = Libp2pNoiseHandshake(_KEY_R, initiator=False, muxers=("/yamux/1.0.0",))
    responder.read_message(initiator.write_message())
    return initiator, responder.write_message()


# ---------------------------------------------------------------------------------------------
# Handshake messages
# ---------------------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_random_message_one_into_responder(message: bytes) -> None:
    responder = Libp2pNoiseHandshake(_KEY_R, initiator=False)
    try:
        responder.read_message(message)
        responder.write_message()  # the DH with the remote ephemeral key happens here
    except HandshakeError:
        return
    assert len(message) >= 32


@FUZZ
@given(st.data())
def test_mutated_message_two_into_initiator(data: st.DataObject) -> None:
    initiator, message = _fresh_message_2()
    bad = data.draw(mutated(message))
    try:
        initiator.read_message(bad)
    except HandshakeError:
        assert not initiator.complete
        return
    # Surviving a mutation means it changed nothing the AEAD covers.
    assert bad == message


@FUZZ
@given(st.data())
def test_mutated_message_three_into_responder(data: st.DataObject) -> None:
    initiator = Libp2pNoiseHandshake(_KEY_I, initiator=True)
    responder = Libp2pNoiseHandshake(_KEY_R, initiator=False)
    responder.read_message(initiator.write_message())
    initiator.read_message(responder.write_message())
    message = initiator.write_message()
    bad = data.draw(mutated(message))
    try:
        responder.read_message(bad)
    except HandshakeError:
        assert not responder.complete
        return
    assert bad == message


@FUZZ
@given(st.binary(max_size=400))
def test_random_message_three_into_responder(message: bytes) -> None:
    initiator = Libp2pNoiseHandshake(_KEY_I, initiator=True)
    responder = Libp2pNoiseHandshake(_KEY_R, initiator=False)
    responder.read_message(initiator.write_message())
    responder.write_message()
    try:
        responder.read_message(message)
    except HandshakeError:
        return
    raise AssertionError("random bytes authenticated as message 3")


# ---------------------------------------------------------------------------------------------
# The payload protobuf, delivered inside a correctly encrypted message 2
# ---------------------------------------------------------------------------------------------


def _deliver_payload(payload: bytes) -> Libp2pNoiseHandshake:
    initiator = Libp2pNoiseHandshake(_KEY_I, initiator=True, expected_peer=_PEER_R)
    raw_responder = HandshakeState(initiator=False)
    raw_responder.read_message(initiator.write_message())
    initiator.read_message(raw_responder.write_message(payload))
    return initiator


@FUZZ
@given(st.binary(max_size=500))
def test_random_payload_protobuf(payload: bytes) -> None:
    try:
        _deliver_payload(payload)
    except HandshakeError:
        return
    raise AssertionError("a random payload proved the expected identity")


@FUZZ
@given(st.data())
def test_mutated_payload_protobuf(data: st.DataObject) -> None:
    raw_responder = HandshakeState(initiator=False)
    original = _valid_payload(raw_responder.local_static_public)
    payload = data.draw(mutated(original))
    initiator = Libp2pNoiseHandshake(_KEY_I, initiator=True, expected_peer=_PEER_R)
    raw_responder.read_message(initiator.write_message())
    try:
        initiator.read_message(raw_responder.write_message(payload))
    except HandshakeError:
        return
    # Accepted: then it must still carry the genuine identity and a valid signature.
    decoded = HandshakePayload.decode(payload)
    assert decoded.identity_key == _KEY_R.public_key.serialize()


def test_unmutated_payload_is_accepted() -> None:
    raw_responder = HandshakeState(initiator=False)
    initiator = Libp2pNoiseHandshake(_KEY_I, initiator=True, expected_peer=_PEER_R)
    raw_responder.read_message(initiator.write_message())
    initiator.read_message(
        raw_responder.write_message(_valid_payload(raw_responder.local_static_public))
    )
    initiator.write_message()
    assert initiator.complete
    assert initiator.result().remote_peer == _PEER_R


@FUZZ
@given(st.binary(max_size=1000))
def test_payload_decoder(data: bytes) -> None:
    try:
        decoded = HandshakePayload.decode(data)
    except NoiseHandshakeError:
        return
    assert all(isinstance(m, str) for m in decoded.stream_muxers)
    assert all(isinstance(h, bytes) for h in decoded.webtransport_certhashes)


# ---------------------------------------------------------------------------------------------
# Transport frames
# ---------------------------------------------------------------------------------------------


def _transports() -> tuple[NoiseTransport, NoiseTransport]:
    initiator = HandshakeState(initiator=True)
    responder = HandshakeState(initiator=False)
    responder.read_message(initiator.write_message())
    initiator.read_message(responder.write_message())
    responder.read_message(initiator.write_message())
    return NoiseTransport(*initiator.split()), NoiseTransport(*responder.split())


@FUZZ
@given(st.data())
def test_mutated_transport_stream(data: st.DataObject) -> None:
    sender, receiver = _transports()
    messages = data.draw(st.lists(st.binary(max_size=3000), min_size=1, max_size=6))
    wire = b"".join(bytes(sender.encrypt(m)) for m in messages)
    bad = data.draw(mutated(wire))
    cuts = sorted(
        c % (len(bad) + 1) for c in data.draw(st.lists(st.integers(0, 1 << 20), max_size=6))
    )
    got = bytearray()
    try:
        start = 0
        for cut in [*cuts, len(bad)]:
            got += receiver.decrypt(bad[start:cut])
            assert receiver.buffered <= 65537
            start = cut
        receiver.end_of_input()
    except NoiseTransportError:
        # Whatever was delivered before the error is an authentic prefix.
        assert bytes(got) == b"".join(messages)[: len(got)]
        return
    # Without an error the edits only cut the stream at a frame boundary (undetectable at
    # this layer; the protocols above see a short stream): a prefix of whole messages.
    prefixes = {b"".join(messages[:k]) for k in range(len(messages) + 1)}
    assert bytes(got) in prefixes
    if bad == wire:
        assert bytes(got) == b"".join(messages)


@FUZZ
@given(st.lists(st.binary(max_size=70000), max_size=4))
def test_random_bytes_as_transport_frames(chunks: list[bytes]) -> None:
    _, receiver = _transports()
    try:
        for chunk in chunks:
            assert receiver.decrypt(chunk) == b""
            assert receiver.buffered <= 65537
        receiver.end_of_input()
    except NoiseTransportError:
        return
    # Only possible without a single complete frame: nothing or nothing but an empty stream.
    assert not b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# Whole sessions over memory streams
# ---------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_session_with_hostile_peer(data: st.DataObject) -> None:
    """Garbage from a peer during or after the handshake: our error family, never a hang."""
    after_handshake = data.draw(st.booleans())
    garbage = data.draw(st.lists(st.binary(min_size=1, max_size=5000), min_size=1, max_size=5))

    async def main() -> None:
        a, b = trio.testing.memory_stream_pair()
        with trio.fail_after(10):
            if not after_handshake:
                for chunk in garbage:
                    await a.send_all(chunk)
                await a.send_eof()
                try:
                    await noise_handshake(b, _KEY_R, initiator=False)
                except HandshakeError:
                    return
                raise AssertionError("garbage completed a handshake")
            sessions: dict[str, object] = {}

            async def responder() -> None:
                sessions["r"] = await noise_handshake(b, _KEY_R, initiator=False)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(responder)
                await noise_handshake(a, _KEY_I, initiator=True, expected_peer=_PEER_R)
            session = sessions["r"]
            assert hasattr(session, "receive_some")
            for chunk in garbage:
                await a.send_all(chunk)
            await a.send_eof()
            try:
                while await session.receive_some():
                    raise AssertionError("garbage decrypted to plaintext")
            except RemoteProtocolError:
                return

    trio.run(main)
