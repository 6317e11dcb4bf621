"""Noise XX: each handshake message the peer writes, truncated, corrupt, lying about its
identity, or stalled; then a corrupt transport frame right after the handshake."""

from __future__ import annotations

import pytest
import trio

from libp2p.crypto.keys import generate_ed25519
from libp2p.exceptions import (
    HandshakeError,
    PeerIDMismatch,
    RemoteProtocolError,
    StreamReset,
    TransportError,
)
from libp2p.peer.id import PeerID

from .harness import (
    PROBE,
    TIMEOUT,
    EvilNoise,
    RawYamux,
    Wire,
    hostile_case,
    ms_propose,
    ms_respond,
)

# How the peer spoils the message it writes (message 2 when the host dials, 1 and 3 when
# the peer dials). Identity lies apply only to messages 2 and 3, which carry the payload.
SPOILS = [
    "truncated_fin",  # half the message, then FIN
    "truncated_rst",  # half the message, then RST
    "stall_mid",  # half the message, then nothing
    "stall",  # nothing at all
    "too_short",  # a complete frame too short for its keys
    "corrupt",  # one byte flipped
    "zero_key",  # an all-zero (low-order) X25519 ephemeral key
    "length_only",  # the 2-byte length prefix and nothing else, then FIN
]
LIES = ["bad_sig", "other_key", "no_key", "garbage_payload"]


def _expected(spoil: str) -> type[BaseException] | tuple[type[BaseException], ...]:
    if spoil in ("stall", "stall_mid"):
        return TransportError
    if spoil == "truncated_rst":
        return TransportError
    return HandshakeError


async def _spoil(noise: EvilNoise, spoil: str) -> None:
    """Write the next handshake message, spoiled."""
    wire = noise.wire
    if spoil == "stall":
        await wire.until_host_closes()
        return
    message = noise.next_message()
    framed = len(message).to_bytes(2, "big") + message
    half = framed[: len(framed) // 2]
    if spoil == "truncated_fin":
        await wire.send(half)
        await wire.fin()
    elif spoil == "truncated_rst":
        await wire.send(half)
        wire.rst()
        return
    elif spoil == "stall_mid":
        await wire.send(half)
    elif spoil == "too_short":
        await wire.send(b"\x00\x0a" + message[:10])
    elif spoil == "corrupt":
        spoilt = bytearray(message)
        spoilt[-1] ^= 0x01  # the payload's tag (message 1 has none: its key, then)
        if len(message) == 32:
            spoilt[5] ^= 0x80
        await noise.write(bytes(spoilt))
    elif spoil == "zero_key":
        await noise.write(bytes(32) + message[32:])
    elif spoil == "length_only":
        await wire.send(framed[:2])
        await wire.fin()
    await wire.until_host_closes()


def _noise_for(wire: Wire, *, initiator: bool, lie: str = "own") -> EvilNoise:
    noise = EvilNoise(
        wire, initiator=initiator, identity=lie if lie != "garbage_payload" else "own"
    )
    if lie == "garbage_payload":
        noise.hs.payload = lambda static: b"\xff\xff\xff\xff"
    return noise


# -- the host dials: the peer writes message 2 ----------------------------------------------------


@pytest.mark.parametrize("spoil", SPOILS)
async def test_host_dials_and_message_2_is(spoil: str) -> None:
    async def script(wire: Wire) -> None:
        await ms_respond(wire, "/noise")
        noise = _noise_for(wire, initiator=False)
        await noise.read()
        await _spoil(noise, spoil)

    async with hostile_case() as case, case.listener(script) as addr:
        await case.fails(_expected(spoil), lambda: case.host.connect(addr))


@pytest.mark.parametrize("lie", LIES)
async def test_host_dials_and_message_2_lies(lie: str) -> None:
    async def script(wire: Wire) -> None:
        await ms_respond(wire, "/noise")
        noise = _noise_for(wire, initiator=False, lie=lie)
        await noise.read()
        await noise.write()
        await wire.until_host_closes()

    async with hostile_case() as case, case.listener(script) as addr:
        await case.fails(HandshakeError, lambda: case.host.connect(addr))


async def test_host_dials_and_the_peer_proves_another_identity() -> None:
    # A valid handshake by a peer that is not the one dialed.
    async def script(wire: Wire) -> None:
        await ms_respond(wire, "/noise")
        noise = _noise_for(wire, initiator=False)
        await noise.read()
        await noise.write()
        await wire.until_host_closes()

    expected = PeerID.from_public_key(generate_ed25519().public_key)
    async with hostile_case() as case, case.listener(script) as addr:
        error = await case.fails(
            PeerIDMismatch, lambda: case.host.connect(f"{addr}/p2p/{expected}")
        )
        assert isinstance(error, PeerIDMismatch)
        assert error.expected == expected


# -- the peer dials: it writes messages 1 and 3 ----------------------------------------------------


@pytest.mark.parametrize("spoil", [s for s in SPOILS if s != "zero_key"] + ["zero_key"])
@pytest.mark.parametrize("message", [1, 3])
async def test_peer_dials_and_spoils_message(message: int, spoil: str) -> None:
    async def script(wire: Wire) -> None:
        await ms_propose(wire, "/noise")
        noise = _noise_for(wire, initiator=True)
        if message == 3:
            await noise.write()
            await noise.read()
        await _spoil(noise, spoil)

    async with hostile_case() as case:
        await case.dials(script)


@pytest.mark.parametrize("lie", LIES)
async def test_peer_dials_and_message_3_lies(lie: str) -> None:
    async def script(wire: Wire) -> None:
        await ms_propose(wire, "/noise")
        noise = _noise_for(wire, initiator=True, lie=lie)
        await noise.write()
        await noise.read()
        await noise.write()
        await wire.until_host_closes()

    async with hostile_case() as case:
        await case.dials(script)


# -- after the handshake: a transport frame that does not decrypt ----------------------------------


@pytest.mark.parametrize("host_dials", [True, False], ids=["host_dials", "peer_dials"])
@pytest.mark.parametrize("frame", ["corrupt", "truncated_fin", "short"])
async def test_a_bad_transport_frame_ends_only_that_connection(
    frame: str, host_dials: bool
) -> None:
    ready = trio.Event()
    box: list[RawYamux] = []

    async def script(wire: Wire) -> None:
        if host_dials:
            await ms_respond(wire, "/noise")
        else:
            await ms_propose(wire, "/noise")
        noise = _noise_for(wire, initiator=not host_dials)
        session = await noise.complete()
        raw = RawYamux(session, initiator=not host_dials)
        box.append(raw)
        ready.set()
        await raw.wait_for_proposal(PROBE)
        if frame == "corrupt":
            good = session._transport.encrypt(b"\x00" * 12)
            await wire.send(good[:-1] + bytes([good[-1] ^ 1]))
        elif frame == "truncated_fin":
            await wire.send(b"\x00\x40" + b"\x00" * 10)
            await wire.fin()
        else:
            await wire.send(b"\x00\x05hello")  # shorter than its 16-byte tag
        await wire.until_host_closes()

    async def probe() -> None:
        with trio.fail_after(TIMEOUT * 4):
            await ready.wait()
            peer = box[0].session.local_peer
            await case.host.wait_for_connection(peer)
        await case.fails(
            (StreamReset, RemoteProtocolError), lambda: case.host.new_stream(peer, PROBE)
        )

    async with hostile_case() as case:
        if host_dials:
            async with case.listener(script) as addr, trio.open_nursery() as nursery:
                nursery.start_soon(case.host.connect, addr)
                await probe()
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(case.dials, script)
                await probe()
