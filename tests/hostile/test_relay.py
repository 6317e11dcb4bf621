"""Circuit Relay v2: hop and stop messages that are malformed, oversized, truncated, reset or
stalled mid-message, or out of order; in every role the host can play (client of a relay,
relay, target of a circuit)."""

from __future__ import annotations

import time

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import HostConfig
from libp2p.crypto.keys import generate_ed25519
from libp2p.exceptions import (
    Libp2pError,
    RemoteProtocolError,
    StreamReset,
    TransportError,
)
from libp2p.io import BufferedStream
from libp2p.network.connection import NetStream
from libp2p.network.upgrader import upgrade
from libp2p.peer.id import PeerID
from libp2p.peer.voucher import seal_reservation_voucher
from libp2p.relay.circuit_v2 import RelayConfig, client
from libp2p.relay.circuit_v2.protocol import (
    HOP_CONNECT,
    HOP_PROTOCOL_ID,
    HOP_RESERVE,
    HOP_STATUS,
    STOP_CONNECT,
    STOP_PROTOCOL_ID,
    STOP_STATUS,
    CircuitRelayError,
    RelayRefused,
    Status,
    frame,
    hop_message,
    read_hop,
    read_stop,
    stop_message,
)

from .harness import (
    PATIENCE,
    SPOILS,
    TIMEOUT,
    addr_of,
    evil_host,
    fast_config,
    hostile_case,
    spoil,
    until_host_ends,
)

RELAY = fast_config(relay_service=RelayConfig(hop_timeout=TIMEOUT, stop_timeout=TIMEOUT))
#: What a failed relay operation may raise: the relay broke the protocol, refused, or the
#: network (or a timeout) failed.
FAILED = (RemoteProtocolError, CircuitRelayError, StreamReset, TransportError)


def _other_peer() -> PeerID:
    return PeerID.from_public_key(generate_ed25519().public_key)


@pytest.fixture(autouse=True)
def _short_relay_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Longer than the relay's own stop timeout, so a relay answers before its client gives up.
    monkeypatch.setattr(client, "HOP_TIMEOUT", 2 * TIMEOUT)
    monkeypatch.setattr(client, "STOP_TIMEOUT", TIMEOUT)


# -- the host reserves on (or connects through) a broken relay ------------------------------------

RESERVE_ANSWERS = [
    "refused",
    "ok_without_reservation",
    "expired",
    "bad_voucher",
    "voucher_for_another_peer",
    "unknown_type",
]


async def _answer_reserve(stream: NetStream, how: str, relay_key: object, us: PeerID) -> None:
    reader = BufferedStream(stream)
    await read_hop(reader)
    wrong = frame(hop_message(HOP_CONNECT, peer=us))  # a request, where a STATUS belongs
    if how in SPOILS:
        await spoil(stream, how, wrong)
        return
    reply = hop_message(HOP_STATUS, status=Status.OK)
    expire = int(time.time()) + 3600
    if how == "refused":
        reply = hop_message(HOP_STATUS, status=Status.RESERVATION_REFUSED)
    elif how == "expired":
        reply.reservation.expire = int(time.time()) - 10
    elif how == "bad_voucher":
        reply.reservation.expire = expire
        reply.reservation.voucher = b"\x0a\x02no"
    elif how == "voucher_for_another_peer":
        reply.reservation.expire = expire
        reply.reservation.voucher = seal_reservation_voucher(
            relay_key,  # type: ignore[arg-type]
            _other_peer(),
            expire,
        )
    elif how == "unknown_type":
        reply.type = 7  # type: ignore[assignment]
    try:
        await stream.send_all(frame(reply))
        await stream.send_eof()
    except (Libp2pError, trio.BrokenResourceError):
        return
    await until_host_ends(stream)


@pytest.mark.parametrize("how", SPOILS + RESERVE_ANSWERS)
async def test_the_host_reserves_on_a_relay_that_answers(how: str) -> None:
    box: list[object] = []

    async def hop(stream: NetStream) -> None:
        await _answer_reserve(stream, how, box[0], box[1])  # type: ignore[arg-type]

    async with hostile_case() as case, evil_host({HOP_PROTOCOL_ID: hop}) as evil:
        box[:] = [evil.key, case.host.peer_id]
        await case.host.connect(addr_of(evil))
        expected = RelayRefused if how == "refused" else FAILED
        await case.fails(expected, lambda: case.host.relay.reserve(evil.peer_id))
        assert not case.host.relay.reservations


CONNECT_ANSWERS = ["refused", "ok_then_garbage", "ok_then_reset", "ok_then_stall"]


@pytest.mark.parametrize("how", SPOILS + CONNECT_ANSWERS)
async def test_the_host_connects_through_a_relay_that_answers(how: str) -> None:
    async def hop(stream: NetStream) -> None:
        reader = BufferedStream(stream)
        await read_hop(reader)
        if how in SPOILS:
            await spoil(stream, how, frame(hop_message(HOP_RESERVE)))
            return
        status = Status.NO_RESERVATION if how == "refused" else Status.OK
        try:
            await stream.send_all(frame(hop_message(HOP_STATUS, status=status)))
            if how == "ok_then_garbage":
                await stream.send_all(b"\xde\xad\xbe\xef" * 16)
            elif how == "ok_then_reset":
                await stream.reset()
                return
        except (Libp2pError, trio.BrokenResourceError):
            return
        await until_host_ends(stream)

    target = _other_peer()
    async with hostile_case() as case, evil_host({HOP_PROTOCOL_ID: hop}) as evil:
        circuit = f"{addr_of(evil)}/p2p-circuit/p2p/{target}"
        expected = RelayRefused if how == "refused" else FAILED
        await case.fails(expected, lambda: case.host.connect(circuit))
        assert not case.host.connections_to(target)


# -- the host is the relay: a client sends it broken hop messages ----------------------------------

HOP_REQUESTS = ["connect_without_peer", "connect_bad_peer_id", "connect_to_nobody"]


@pytest.mark.parametrize("how", SPOILS + HOP_REQUESTS)
async def test_a_client_sends_the_relay(how: str) -> None:
    async with hostile_case(RELAY) as case, evil_host() as evil:
        await evil.connect(case.addr)
        stream = await evil.new_stream(case.host.peer_id, HOP_PROTOCOL_ID)
        if how in SPOILS:
            # Out of order: a STATUS, which only a relay may send.
            await spoil(stream, how, frame(hop_message(HOP_STATUS, status=Status.OK)))
            return
        request = hop_message(HOP_CONNECT)
        if how == "connect_bad_peer_id":
            request.peer.id = b"\x00\x01not a peer id"
        elif how == "connect_to_nobody":
            request.peer.id = _other_peer().to_bytes()
        await stream.send_all(frame(request))
        answer = await read_hop(BufferedStream(stream))
        expected = {
            "connect_without_peer": Status.MALFORMED_MESSAGE,
            "connect_bad_peer_id": Status.MALFORMED_MESSAGE,
            "connect_to_nobody": Status.NO_RESERVATION,
        }[how]
        assert answer.status == expected.value
        await until_host_ends(stream)


@pytest.mark.parametrize("how", ["malformed", "out_of_order"])
async def test_the_relay_answers_a_broken_request_with_its_status(how: str) -> None:
    async with hostile_case(RELAY) as case, evil_host() as evil:
        await evil.connect(case.addr)
        stream = await evil.new_stream(case.host.peer_id, HOP_PROTOCOL_ID)
        if how == "malformed":
            await stream.send_all(b"\x05\xff\xff\xff\xff\x0f")
        else:
            await stream.send_all(frame(hop_message(HOP_STATUS, status=Status.OK)))
        answer = await read_hop(BufferedStream(stream))
        status = Status.MALFORMED_MESSAGE if how == "malformed" else Status.UNEXPECTED_MESSAGE
        assert answer.status == status.value
        await until_host_ends(stream)


# -- the host is the relay: the target of a circuit answers stop badly --------------------------

STOP_ANSWERS = ["refused", "ok_then_garbage", "ok_then_reset"]


@pytest.mark.parametrize("how", SPOILS + STOP_ANSWERS)
async def test_the_target_of_a_circuit_answers_the_relay(how: str) -> None:
    async def stop(stream: NetStream) -> None:
        await read_stop(BufferedStream(stream))
        if how in SPOILS:
            await spoil(stream, how, frame(stop_message(STOP_CONNECT, peer=_other_peer())))
            return
        status = Status.CONNECTION_FAILED if how == "refused" else Status.OK
        try:
            await stream.send_all(frame(stop_message(STOP_STATUS, status=status)))
            if how == "ok_then_garbage":
                await stream.send_all(b"\xde\xad\xbe\xef" * 16)
            elif how == "ok_then_reset":
                await stream.reset()
                return
        except (Libp2pError, trio.BrokenResourceError):
            return
        await until_host_ends(stream)

    async with hostile_case(RELAY) as case, evil_host({STOP_PROTOCOL_ID: stop}) as evil:
        await evil.listen(f"{addr_of(case.host)}/p2p-circuit")
        circuit = f"{addr_of(case.host)}/p2p-circuit/p2p/{evil.peer_id}"
        # The well-behaved peer is the source: its connect fails, typed; the relay stays up.
        await case.fails(FAILED, lambda: case.good.connect(circuit))
        with trio.fail_after(PATIENCE):
            while (
                case.host.relay_service is not None
                and case.host.relay_service.stats.circuits_active
            ):
                await trio.testing.wait_all_tasks_blocked()


# -- the host is the target: a "relay" opens stop streams to it ---------------------------------

STOP_REQUESTS = ["connect_without_peer", "ok_then_garbage", "ok_then_stall", "ok_then_wrong_peer"]


@pytest.mark.parametrize("how", SPOILS + STOP_REQUESTS)
async def test_a_relay_sends_the_host_a_stop(how: str) -> None:
    async with hostile_case() as case, evil_host() as evil:
        await evil.connect(case.addr)
        stream = await evil.new_stream(case.host.peer_id, STOP_PROTOCOL_ID)
        if how in SPOILS:
            # Out of order: a STATUS, which only the target may send.
            await spoil(stream, how, frame(stop_message(STOP_STATUS, status=Status.OK)))
            return
        request = stop_message(STOP_CONNECT, peer=_other_peer())
        if how == "connect_without_peer":
            request = stop_message(STOP_CONNECT)
        await stream.send_all(frame(request))
        reader = BufferedStream(stream)
        answer = await read_stop(reader)
        if how == "connect_without_peer":
            assert answer.status == Status.MALFORMED_MESSAGE.value
            await until_host_ends(stream)
            return
        assert answer.status == Status.OK.value
        if how == "ok_then_garbage":
            await stream.send_all(b"\xde\xad\xbe\xef" * 16)
            await until_host_ends(stream)
        elif how == "ok_then_stall":
            await until_host_ends(stream)  # the host's accept timeout ends it
        else:
            # A real upgrade, by a peer that is not the one the CONNECT named.
            try:
                with trio.fail_after(PATIENCE):
                    await upgrade(reader, evil.key, initiator=True)
            except (Libp2pError, trio.BrokenResourceError):
                pass
            await until_host_ends(stream)
        assert not [c for c in case.host.connections if c.relayed]


def test_cases_are_distinct() -> None:
    assert not set(SPOILS) & set(RESERVE_ANSWERS + CONNECT_ANSWERS + STOP_ANSWERS)
    assert isinstance(HostConfig(), HostConfig)
    assert Multiaddr("/ip4/127.0.0.1/tcp/1")
