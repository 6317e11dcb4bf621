"""multistream-select: garbage, oversized messages, too many proposals, stalls mid-message.

At three places: the connection's security negotiation (``/noise``, on the raw socket), the
muxer negotiation inside Noise (when the peer offers no muxer in its handshake), and each
yamux stream's protocol negotiation.
"""

from __future__ import annotations

import pytest
import trio

from libp2p.exceptions import (
    ConnectionClosedError,
    Libp2pError,
    ProtocolNotSupported,
    RemoteProtocolError,
    StreamReset,
    TransportError,
)
from libp2p.multistream import encode_message
from libp2p.network import connection as connection_module
from libp2p.varint import encode_uvarint

from .harness import (
    MS_HEADER,
    PROBE,
    TIMEOUT,
    RawYamux,
    Wire,
    hostile_case,
    lp,
    secure_as_initiator,
    secure_as_responder,
    yamux_over,
)

# Bytes a broken peer sends where a multistream message belongs.
GARBAGE: dict[str, bytes] = {
    "garbage": b"\xde\xad\xbe\xef" * 8,
    "not_a_varint": b"\xff" * 11,
    "no_newline": lp(b"/multistream/1.0.0"),
    "wrong_header": encode_message("/multistream/2.0.0"),
    "oversized": encode_uvarint(5000) + b"x" * 200,
    "huge_length": encode_uvarint(2**62) + b"x",
    "invalid_utf8": lp(b"\xff\xfe\n"),
    "empty_message": lp(b""),
}
# As responder only: a well-formed answer that is wrong.
ANSWERS: dict[str, bytes] = {
    "refuses": MS_HEADER + encode_message("na"),
    "other_protocol": MS_HEADER + encode_message("/other/1.0.0"),
    "answers_ls": MS_HEADER + encode_message("ls"),
}
MID_MESSAGE = b"\x13/multi"
TOO_MANY = MS_HEADER + b"".join(encode_message(f"/nope/{i}") for i in range(100))


def _expected(kind: str) -> type[Libp2pError] | tuple[type[Libp2pError], ...]:
    if kind == "refuses":
        return ProtocolNotSupported
    if kind == "stall":
        return TransportError
    return RemoteProtocolError


# -- the security negotiation (/noise on the raw socket) ------------------------------------------


@pytest.mark.parametrize("kind", [*GARBAGE, *ANSWERS, "stall", "fin"])
async def test_host_dials_a_peer_that_answers_noise_with(kind: str) -> None:
    async def script(wire: Wire) -> None:
        if kind in ("stall", "fin"):
            await wire.send(MID_MESSAGE)
            if kind == "fin":
                await wire.fin()
        else:
            await wire.send(GARBAGE.get(kind) or ANSWERS[kind])
        await wire.until_host_closes()

    async with hostile_case() as case, case.listener(script) as addr:
        await case.fails(_expected(kind), lambda: case.host.connect(addr))


@pytest.mark.parametrize("kind", [*GARBAGE, "too_many_proposals", "ls_forever", "stall", "fin"])
async def test_peer_dials_the_host_and_proposes(kind: str) -> None:
    async def script(wire: Wire) -> None:
        if kind == "too_many_proposals":
            await wire.send(TOO_MANY)
        elif kind == "ls_forever":
            await wire.send(MS_HEADER + encode_message("ls") * 100)
        elif kind in ("stall", "fin"):
            await wire.send(MID_MESSAGE)
            if kind == "fin":
                await wire.fin()
        else:
            await wire.send(GARBAGE[kind])
        # The host must give up on us (and close) by itself.
        await wire.until_host_closes(within=TIMEOUT + 5)

    async with hostile_case() as case:
        await case.dials(script)


# -- the muxer negotiation inside Noise ---------------------------------------------------------


@pytest.mark.parametrize("kind", [*GARBAGE, *ANSWERS, "stall"])
async def test_host_dials_a_peer_that_answers_yamux_with(kind: str) -> None:
    # The peer offers no muxer in its Noise payload, so the muxer is negotiated with
    # multistream-select over the encrypted channel, and the peer answers that badly.
    async def script(wire: Wire) -> None:
        session, _ = await secure_as_responder(wire, muxers=())
        if kind == "stall":
            await session.send_all(MID_MESSAGE)
        else:
            await session.send_all(GARBAGE.get(kind) or ANSWERS[kind])
        await wire.until_host_closes()

    async with hostile_case() as case, case.listener(script) as addr:
        await case.fails(_expected(kind), lambda: case.host.connect(addr))


@pytest.mark.parametrize("kind", [*GARBAGE, "too_many_proposals", "stall"])
async def test_peer_dials_the_host_and_proposes_a_muxer_with(kind: str) -> None:
    async def script(wire: Wire) -> None:
        session, _ = await secure_as_initiator(wire, muxers=())
        if kind == "too_many_proposals":
            await session.send_all(TOO_MANY)
        elif kind == "stall":
            await session.send_all(MID_MESSAGE)
        else:
            await session.send_all(GARBAGE[kind])
        await wire.until_host_closes(within=TIMEOUT + 5)

    async with hostile_case() as case:
        await case.dials(script)


# -- each stream's protocol negotiation ----------------------------------------------------------


@pytest.mark.parametrize("host_dials", [True, False], ids=["host_dials", "peer_dials"])
@pytest.mark.parametrize("kind", [*GARBAGE, *ANSWERS, "reset", "stall"])
async def test_host_opens_a_stream_and_the_peer_answers(kind: str, host_dials: bool) -> None:
    opened = trio.Event()
    peer_box: list[RawYamux] = []

    async def script(wire: Wire) -> None:
        raw = await yamux_over(wire, host_dials=host_dials)
        peer_box.append(raw)
        opened.set()
        sid = await raw.wait_for_proposal(PROBE)
        if kind == "reset":
            await raw.send_frame(0, 0x2, sid, 4, MS_HEADER[:4])
            await raw.send_frame(1, 0x8, sid, 0)
        elif kind == "stall":
            await raw.send_frame(0, 0x2, sid, len(MID_MESSAGE), MID_MESSAGE)
        else:
            answer = GARBAGE.get(kind) or ANSWERS[kind]
            await raw.send_frame(0, 0x2, sid, len(answer), answer)
        await raw.drain()

    async def open_probe(case_host: object) -> None:
        with trio.fail_after(TIMEOUT * 4):
            await opened.wait()
        peer = peer_box[0].session.local_peer
        with trio.fail_after(TIMEOUT * 4):
            await case.host.wait_for_connection(peer)
        if kind == "stall":
            # No negotiation timeout on outbound streams: the caller bounds it (design §4).
            with trio.move_on_after(TIMEOUT):
                await case.host.new_stream(peer, PROBE)
                raise AssertionError("the stalled negotiation succeeded")
        else:
            expected = StreamReset if kind == "reset" else _expected(kind)
            await case.fails(expected, lambda: case.host.new_stream(peer, PROBE))
        # Only that stream failed: the connection is still up.
        assert [c for c in case.host.connections_to(peer) if not c.is_closed]

    async with hostile_case() as case:
        if host_dials:
            async with case.listener(script) as addr, trio.open_nursery() as nursery:
                nursery.start_soon(case.host.connect, addr)
                await open_probe(case.host)
                nursery.cancel_scope.cancel()
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(case.dials, script)
                await open_probe(case.host)
                nursery.cancel_scope.cancel()


@pytest.mark.parametrize("host_dials", [True, False], ids=["host_dials", "peer_dials"])
@pytest.mark.parametrize("kind", [*GARBAGE, "too_many_proposals", "stall", "fin"])
async def test_peer_opens_a_stream_and_proposes(
    kind: str, host_dials: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "NEGOTIATE_TIMEOUT", TIMEOUT)
    survived = trio.Event()

    async def script(wire: Wire) -> None:
        raw = await yamux_over(wire, host_dials=host_dials)
        sid = raw.new_id()
        await raw.send_frame(1, 0x1, sid, 0)
        if kind == "too_many_proposals":
            await raw.data(sid, TOO_MANY)
        elif kind in ("stall", "fin"):
            await raw.data(sid, MID_MESSAGE, flags=0x4 if kind == "fin" else 0)
        else:
            await raw.data(sid, GARBAGE[kind])
        # The host resets that stream (only that one) ...
        with trio.fail_after(TIMEOUT + 5):
            while True:
                frame = await raw.read_frame()
                assert frame is not None, "the host closed the whole connection"
                if frame.stream_id == sid and frame.flags & 0x8:
                    break
        # ... and still negotiates the next one.
        sid = raw.new_id()
        await raw.send_frame(1, 0x1, sid, 0)
        await raw.data(sid, MS_HEADER + encode_message("/ipfs/ping/1.0.0") + b"p" * 32)
        with trio.fail_after(TIMEOUT + 5):
            while b"p" * 32 not in raw.received.get(sid, b""):
                assert await raw.read_frame() is not None
        survived.set()

    async with hostile_case() as case:
        if host_dials:
            async with case.listener(script) as addr:
                await case.host.connect(addr)
                with trio.fail_after(TIMEOUT + 10):
                    await survived.wait()
        else:
            await case.dials(script)
            assert survived.is_set()


def test_kinds_are_distinct() -> None:
    assert not set(GARBAGE) & set(ANSWERS)
    assert isinstance(ConnectionClosedError("x"), Libp2pError)
