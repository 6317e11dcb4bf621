"""The trio driver and NoiseSession: trio's stream contract, identities, muxers, leftovers."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence

import pytest
import trio
import trio.testing

from libp2p.crypto.keys import PrivateKey, generate_ed25519, generate_secp256k1
from libp2p.exceptions import HandshakeError, PeerIDMismatch, RemoteProtocolError
from libp2p.io import BufferedStream
from libp2p.peer.id import PeerID
from libp2p.security.noise import (
    MAX_PLAINTEXT_SIZE,
    DecryptionFailed,
    HandshakeState,
    NoiseHandshakeError,
    NoiseSession,
    TruncatedFrame,
    noise_handshake,
)
from libp2p.security.noise.session import RECEIVE_CHUNK

StreamPair = tuple[trio.abc.Stream, trio.abc.Stream]


async def _handshake_pair(
    streams: StreamPair,
    key_i: PrivateKey | None = None,
    key_r: PrivateKey | None = None,
    *,
    muxers_i: Sequence[str] = (),
    muxers_r: Sequence[str] = (),
    expect: bool = True,
) -> tuple[NoiseSession, NoiseSession]:
    key_i = key_i or generate_ed25519()
    key_r = key_r or generate_ed25519()
    results: dict[str, NoiseSession] = {}

    async def run_initiator() -> None:
        results["i"] = await noise_handshake(
            streams[0],
            key_i,
            initiator=True,
            expected_peer=PeerID.from_public_key(key_r.public_key) if expect else None,
            muxers=muxers_i,
        )

    async def run_responder() -> None:
        results["r"] = await noise_handshake(streams[1], key_r, initiator=False, muxers=muxers_r)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_initiator)
        nursery.start_soon(run_responder)
    return results["i"], results["r"]


async def _memory_sessions() -> tuple[NoiseSession, NoiseSession]:
    return await _handshake_pair(trio.testing.memory_stream_pair())


async def _lockstep_sessions() -> tuple[NoiseSession, NoiseSession]:
    return await _handshake_pair(trio.testing.lockstep_stream_pair())


# ---------------------------------------------------------------------------------------------
# Acceptance: trio's generic stream checks
# ---------------------------------------------------------------------------------------------


async def test_check_half_closeable_stream_over_memory_streams() -> None:
    await trio.testing.check_half_closeable_stream(_memory_sessions, _lockstep_sessions)


async def test_check_half_closeable_stream_over_lockstep_streams() -> None:
    await trio.testing.check_half_closeable_stream(_lockstep_sessions, _lockstep_sessions)


# ---------------------------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_i", "make_r"),
    [
        (generate_ed25519, generate_ed25519),
        (generate_secp256k1, generate_ed25519),
        (generate_ed25519, generate_secp256k1),
        (generate_secp256k1, generate_secp256k1),
    ],
)
async def test_peer_ids_proven_both_ways(
    make_i: Callable[[], PrivateKey], make_r: Callable[[], PrivateKey]
) -> None:
    key_i, key_r = make_i(), make_r()
    si, sr = await _handshake_pair(trio.testing.memory_stream_pair(), key_i, key_r)
    assert si.remote_peer == PeerID.from_public_key(key_r.public_key)
    assert sr.remote_peer == PeerID.from_public_key(key_i.public_key)
    assert si.local_peer == sr.remote_peer
    assert sr.local_peer == si.remote_peer
    assert si.remote_public_key == key_r.public_key
    assert sr.remote_public_key == key_i.public_key
    assert si.handshake_hash == sr.handshake_hash
    await si.send_all(b"ping")
    assert await sr.receive_some() == b"ping"
    await sr.send_all(b"pong")
    assert await si.receive_some() == b"pong"


async def test_wrong_expected_peer_raises_mismatch() -> None:
    a, b = trio.testing.memory_stream_pair()
    key_r = generate_ed25519()
    impostor_expected = PeerID.from_public_key(generate_ed25519().public_key)

    async def responder() -> None:
        # The initiator aborts after message 2, so the responder sees EOF instead of msg 3.
        with pytest.raises(NoiseHandshakeError, match="closed the connection"):
            await noise_handshake(b, key_r, initiator=False)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(responder)
        with pytest.raises(PeerIDMismatch) as info:
            await noise_handshake(
                a, generate_ed25519(), initiator=True, expected_peer=impostor_expected
            )
        assert info.value.expected == impostor_expected
        assert info.value.actual == PeerID.from_public_key(key_r.public_key)
        await a.aclose()


async def test_eof_during_handshake_is_a_handshake_error() -> None:
    a, b = trio.testing.memory_stream_pair()
    await b.send_eof()  # the responder hangs up without answering
    with pytest.raises(NoiseHandshakeError, match="message 2") as info:
        await noise_handshake(a, generate_ed25519(), initiator=True)
    assert isinstance(info.value, HandshakeError)


async def test_garbage_instead_of_message_two() -> None:
    a, b = trio.testing.memory_stream_pair()
    await b.send_all(b"\x00\x50" + bytes(80))
    with pytest.raises(NoiseHandshakeError):
        await noise_handshake(a, generate_ed25519(), initiator=True)


# ---------------------------------------------------------------------------------------------
# Early muxer negotiation over the wire
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("muxers_i", "muxers_r", "expected"),
    [
        (["/yamux/1.0.0"], ["/yamux/1.0.0"], "/yamux/1.0.0"),
        (["/mplex/6.7.0", "/yamux/1.0.0"], ["/yamux/1.0.0", "/mplex/6.7.0"], "/mplex/6.7.0"),
        (["/yamux/1.0.0"], [], None),
        ([], ["/yamux/1.0.0"], None),
        (["/yamux/1.0.0"], ["/mplex/6.7.0"], None),
    ],
)
async def test_early_muxer_negotiation(
    muxers_i: list[str], muxers_r: list[str], expected: str | None
) -> None:
    si, sr = await _handshake_pair(
        trio.testing.memory_stream_pair(), muxers_i=muxers_i, muxers_r=muxers_r
    )
    assert si.negotiated_muxer == expected
    assert sr.negotiated_muxer == expected
    assert si.remote_muxers == tuple(muxers_r)
    assert sr.remote_muxers == tuple(muxers_i)


# ---------------------------------------------------------------------------------------------
# Leftover bytes and buffered streams
# ---------------------------------------------------------------------------------------------


async def test_bytes_pipelined_after_message_three_are_kept() -> None:
    """The initiator writes msg 3 and two transport frames in ONE send; nothing is lost."""
    a, b = trio.testing.memory_stream_pair()
    key_i, key_r = generate_ed25519(), generate_ed25519()

    class Coalescing(trio.abc.Stream):
        """Holds back the initiator's third write so it leaves together with the next one."""

        def __init__(self, inner: trio.abc.Stream) -> None:
            self.inner = inner
            self.writes = 0
            self.held = b""

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            self.writes += 1
            if self.writes == 2:  # message 3
                self.held = bytes(data)
                await trio.lowlevel.checkpoint()
                return
            await self.inner.send_all(self.held + bytes(data))
            self.held = b""

        async def wait_send_all_might_not_block(self) -> None:
            await self.inner.wait_send_all_might_not_block()

        async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
            return await self.inner.receive_some(max_bytes)

        async def aclose(self) -> None:
            await self.inner.aclose()

    coalescing = Coalescing(a)
    results: dict[str, NoiseSession] = {}

    async def initiator() -> None:
        session = await noise_handshake(coalescing, key_i, initiator=True)
        # First transport frame: flushed together with message 3.
        await session.send_all(b"first frame" + b"x" * 100_000)

    async def responder() -> None:
        results["r"] = await noise_handshake(b, key_r, initiator=False)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(initiator)
        nursery.start_soon(responder)
    got = bytearray()
    while len(got) < 100_011:
        got += await results["r"].receive_some()
    assert got == b"first frame" + b"x" * 100_000


async def test_leftover_inside_callers_buffered_stream_is_used() -> None:
    """A BufferedStream that already holds msg 3 plus a transport frame (lazy peers)."""
    key_r = generate_ed25519()
    a, b = trio.testing.memory_stream_pair()
    # Drive the initiator side with a raw core so we control the bytes exactly.
    from libp2p.security.noise import Libp2pNoiseHandshake, NoiseTransport

    initiator = Libp2pNoiseHandshake(generate_ed25519(), initiator=True)
    buffered_b = BufferedStream(b)

    async def responder() -> NoiseSession:
        return await noise_handshake(buffered_b, key_r, initiator=False)

    async with trio.open_nursery() as nursery:
        msg1 = initiator.write_message()
        await a.send_all(len(msg1).to_bytes(2, "big") + msg1)
        session_box: list[NoiseSession] = []

        async def run() -> None:
            session_box.append(await responder())

        nursery.start_soon(run)
        header = await a.receive_some(2)
        while len(header) < 2:
            header += await a.receive_some(2 - len(header))
        length = int.from_bytes(header, "big")
        msg2 = b""
        while len(msg2) < length:
            msg2 += await a.receive_some(length - len(msg2))
        initiator.read_message(msg2)
        msg3 = initiator.write_message()
        result = initiator.result()
        transport = NoiseTransport(result.send_cipher, result.receive_cipher)
        await a.send_all(
            len(msg3).to_bytes(2, "big") + msg3 + bytes(transport.encrypt(b"/multistream/1.0.0\n"))
        )
    session = session_box[0]
    assert await session.receive_some() == b"/multistream/1.0.0\n"


# ---------------------------------------------------------------------------------------------
# Bulk data
# ---------------------------------------------------------------------------------------------


async def test_multi_mib_both_directions_simultaneously() -> None:
    si, sr = await _memory_sessions()
    data_i = os.urandom(5 * 1024 * 1024 + 17)
    data_r = os.urandom(3 * 1024 * 1024 + 5)
    received: dict[str, bytes] = {}

    async def send(session: NoiseSession, data: bytes, seed: int) -> None:
        rng = random.Random(seed)
        view = memoryview(data)
        while view:
            step = rng.choice([1, 100, MAX_PLAINTEXT_SIZE, MAX_PLAINTEXT_SIZE + 1, 1_500_000])
            await session.send_all(view[:step])
            view = view[step:]
        await session.send_eof()

    async def receive(session: NoiseSession, name: str, seed: int) -> None:
        rng = random.Random(seed)
        got = bytearray()
        while True:
            chunk = await session.receive_some(rng.choice([None, 1, 1000, 70_000, 1 << 20]))
            if not chunk:
                break
            got += chunk
        received[name] = bytes(got)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, si, data_i, 1)
        nursery.start_soon(send, sr, data_r, 2)
        nursery.start_soon(receive, sr, "r", 3)
        nursery.start_soon(receive, si, "i", 4)
    assert received["r"] == data_i
    assert received["i"] == data_r


async def test_receive_reads_big_chunks_and_decrypts_all_frames_at_once() -> None:
    """One receive_some on the session returns every frame one underlying read delivered."""
    si, sr = await _memory_sessions()
    data = os.urandom(3 * MAX_PLAINTEXT_SIZE)
    for start in range(0, len(data), 4096):  # 48 separate frames
        await si.send_all(data[start : start + 4096])
    assert RECEIVE_CHUNK > 48 * (4096 + 18)  # the whole burst fits in one underlying read
    chunk = await sr.receive_some()
    assert chunk == data


async def test_send_all_is_one_underlying_write_per_call() -> None:
    a, b = trio.testing.memory_stream_pair()
    si, _sr = await _handshake_pair((a, b))
    writes: list[int] = []
    send_stream = a.send_stream
    assert isinstance(send_stream, trio.testing.MemorySendStream)
    send_stream.send_all_hook = None

    original = send_stream.send_all

    async def counting_send_all(data: bytes | bytearray | memoryview) -> None:
        writes.append(len(data))
        await original(data)

    send_stream.send_all = counting_send_all  # type: ignore[method-assign]
    await si.send_all(b"z" * (5 * MAX_PLAINTEXT_SIZE))
    assert writes == [5 * 65537]


# ---------------------------------------------------------------------------------------------
# Broken streams
# ---------------------------------------------------------------------------------------------


async def _raw_pair() -> tuple[NoiseSession, trio.abc.Stream, NoiseSession]:
    """A session whose peer's raw stream we can write garbage into."""
    a, b = trio.testing.memory_stream_pair()
    si, sr = await _handshake_pair((a, b))
    return sr, a, si


async def test_tampered_frame_breaks_the_session() -> None:
    receiver, raw_peer, sender = await _raw_pair()
    await raw_peer.send_all(b"\x00\x20" + bytes(32))
    with pytest.raises(DecryptionFailed) as info:
        await receiver.receive_some()
    assert isinstance(info.value, RemoteProtocolError)
    assert isinstance(info.value, trio.BrokenResourceError)
    # Broken afterwards, both ways, even if valid frames follow.
    await sender.send_all(b"valid")
    with pytest.raises(DecryptionFailed):
        await receiver.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await receiver.send_all(b"x")
    with pytest.raises(trio.BrokenResourceError):
        await receiver.send_eof()


async def test_good_data_before_bad_frame_is_delivered_first() -> None:
    receiver, raw_peer, sender = await _raw_pair()
    await sender.send_all(b"good")
    await raw_peer.send_all(b"\x00\x11" + bytes(17))
    assert await receiver.receive_some() == b"good"
    with pytest.raises(DecryptionFailed):
        await receiver.receive_some()


async def test_truncated_frame_at_eof_raises() -> None:
    receiver, raw_peer, _ = await _raw_pair()
    await raw_peer.send_all(b"\x01\x00" + bytes(10))
    await raw_peer.aclose()
    with pytest.raises(TruncatedFrame):
        await receiver.receive_some()
    with pytest.raises(TruncatedFrame):
        await receiver.receive_some()


async def test_clean_eof_repeats() -> None:
    si, sr = await _memory_sessions()
    await si.send_all(b"bye")
    await si.send_eof()
    assert await sr.receive_some() == b"bye"
    assert await sr.receive_some() == b""
    assert await sr.receive_some(5) == b""


async def test_cancelled_send_breaks_sending_side() -> None:
    a, b = trio.testing.lockstep_stream_pair()
    si, _sr = await _handshake_pair((a, b))

    async def blocked_send() -> None:
        await si.send_all(b"x" * 10)  # lockstep: blocks until someone reads; nobody does

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_send)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    # The frame was encrypted (nonce used) and maybe partly written: the send side is broken.
    with pytest.raises(trio.BrokenResourceError):
        await si.send_all(b"y")


async def test_pre_cancelled_send_does_not_break() -> None:
    si, sr = await _memory_sessions()
    with trio.CancelScope() as scope:
        scope.cancel()
        await si.send_all(b"lost")
    await si.send_all(b"kept")
    assert await sr.receive_some() == b"kept"


async def test_concurrent_receive_is_busy() -> None:
    si, sr = await _memory_sessions()

    async def receive() -> None:
        await sr.receive_some()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await sr.receive_some()
        with pytest.raises(trio.BusyResourceError):
            await sr.receive_some(1)
        nursery.cancel_scope.cancel()
    # Once the other receiver is gone, receiving works again.
    await si.send_all(b"after")
    assert await sr.receive_some() == b"after"


async def test_send_eof_requires_half_closeable_transport() -> None:
    from libp2p.exceptions import LocalUsageError

    class NoHalfClose(trio.abc.Stream):
        def __init__(self, inner: trio.abc.Stream) -> None:
            self.inner = inner

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            await self.inner.send_all(data)

        async def wait_send_all_might_not_block(self) -> None:
            await self.inner.wait_send_all_might_not_block()

        async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
            return await self.inner.receive_some(max_bytes)

        async def aclose(self) -> None:
            await self.inner.aclose()

    a, b = trio.testing.memory_stream_pair()
    si, _ = await _handshake_pair((NoHalfClose(a), b))
    with pytest.raises(LocalUsageError, match="half-close"):
        await si.send_eof()


async def test_session_exposes_transport_and_repr() -> None:
    a, b = trio.testing.memory_stream_pair()
    si, _ = await _handshake_pair((a, b))
    assert si.transport_stream is a
    assert str(si.remote_peer) in repr(si)


async def test_handshake_core_vector_unaffected_by_driver() -> None:
    """Sanity: the driver's initiator message 1 is a bare 32-byte ephemeral key."""
    a, b = trio.testing.memory_stream_pair()

    async def initiator() -> None:
        with pytest.raises(NoiseHandshakeError):
            await noise_handshake(a, generate_ed25519(), initiator=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(initiator)
        header = await b.receive_some(2)
        assert header == b"\x00\x20"
        probe = HandshakeState(initiator=False)
        msg1 = await b.receive_some()
        assert probe.read_message(msg1) == b""
        await b.aclose()
