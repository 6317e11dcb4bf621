"""DCUtR: a peer that breaks the CONNECT/CONNECT/SYNC exchange, as A (it answers the host's
hole punch) and as B (it starts one with the host), over a real relayed connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import Host, ping
from libp2p.exceptions import Libp2pError
from libp2p.io import BufferedStream
from libp2p.network.address_policy import AddressPolicy
from libp2p.network.connection import NetStream
from libp2p.relay.circuit_v2 import RelayConfig
from libp2p.relay.circuit_v2.dcutr import (
    CONNECT,
    MAX_MESSAGE_SIZE,
    PROTOCOL_ID,
    SYNC,
    HolePunchConfig,
    HolePunchFailed,
    HolePunchFailure,
    encode_hole_punch,
)

from .harness import (
    PATIENCE,
    SPOILS,
    TIMEOUT,
    Wire,
    addr_of,
    evil_host,
    fast_config,
    hostile_case,
    hostile_listener,
    lp,
    spoil,
    until_host_ends,
)

PUNCH = HolePunchConfig(
    address_policy=AddressPolicy.local_testing(),
    max_attempts=1,
    stream_timeout=TIMEOUT,
    dial_timeout=TIMEOUT,
    connection_reversal=False,
    direct_dial=False,
    # A waits this long after a failed exchange for B's reversal: nothing to wait for here.
    reversal_timeout=0.1,
    relay_close_grace=None,
)
CONFIG = fast_config(hole_punching=PUNCH)
EVIL = fast_config(hole_punching=None)


def _reason(how: str) -> HolePunchFailure:
    if how == "stall_mid":
        return HolePunchFailure.TIMEOUT
    if how in ("connect_without_addrs",):
        return HolePunchFailure.PEER_NO_ADDRESS
    if how in ("addrs_of_a_hostile_listener",):
        return HolePunchFailure.ALL_ATTEMPTS_FAILED
    return HolePunchFailure.PROTOCOL_ERROR


@asynccontextmanager
async def _relay() -> AsyncIterator[Host]:
    config = fast_config(relay_service=RelayConfig.unlimited())
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"], config=config) as relay:
        yield relay


async def _resetting(wire: Wire) -> None:
    wire.rst()


async def _refuse(stream: NetStream) -> None:
    await stream.reset()


async def _ping_over(host: Host, peer: object) -> None:
    stream = await host.new_stream(peer, ping.PROTOCOL_ID, allow_limited=True)  # type: ignore[arg-type]
    await ping.ping(stream)
    await stream.aclose()


# -- the host is B: it starts the hole punch, the peer (A) answers badly -------------------------

A_ANSWERS = ["connect_without_addrs", "addrs_of_a_hostile_listener"]


@pytest.mark.parametrize("how", SPOILS + A_ANSWERS)
async def test_the_host_punches_and_the_peer_answers(how: str) -> None:
    punch_to: list[Multiaddr] = []

    async def dcutr(stream: NetStream) -> None:
        reader = BufferedStream(stream)
        await reader.read_lp(MAX_MESSAGE_SIZE)
        if how in SPOILS:
            await spoil(stream, how, encode_hole_punch(SYNC))
            return
        addrs = punch_to if how == "addrs_of_a_hostile_listener" else []
        try:
            await stream.send_all(encode_hole_punch(CONNECT, addrs))
        except (Libp2pError, trio.BrokenResourceError):
            return
        await until_host_ends(stream)

    async with (
        hostile_case(CONFIG) as case,
        _relay() as relay,
        hostile_listener(_resetting) as trap,
        evil_host({PROTOCOL_ID: dcutr}, EVIL) as evil,
    ):
        punch_to.append(trap)
        host = case.host
        await host.listen(f"{addr_of(relay)}/p2p-circuit")
        with host.events.subscribe(HolePunchFailed) as failures:
            conn = await evil.connect(f"{addr_of(relay)}/p2p-circuit/p2p/{host.peer_id}")
            with trio.fail_after(PATIENCE):
                failed = await failures.receive()
        assert failed.reason is _reason(how), failed
        # Only the hole punch failed: the relayed connection still carries streams.
        await _ping_over(evil, host.peer_id)
        await conn.aclose()
        await host.relay.stop_listening(relay.peer_id)
        await host.disconnect(relay.peer_id)


# -- the host is A: the peer (B) starts a hole punch and breaks it --------------------------------

B_MOVES = ["connect_without_addrs", "connect_then_garbage", "connect_then_stall", "connect_twice"]


async def _play_b(stream: NetStream, how: str, addrs: list[Multiaddr]) -> None:
    if how in SPOILS:
        await spoil(stream, how, encode_hole_punch(SYNC))
        return
    reader = BufferedStream(stream)
    try:
        if how == "connect_without_addrs":
            await stream.send_all(encode_hole_punch(CONNECT, []))
        else:
            await stream.send_all(encode_hole_punch(CONNECT, addrs))
            await reader.read_lp(MAX_MESSAGE_SIZE)
            if how == "connect_then_garbage":
                await stream.send_all(b"\x05\xff\xff\xff\xff\x0f")
            elif how == "connect_twice":
                await stream.send_all(encode_hole_punch(CONNECT, addrs))
    except (Libp2pError, trio.BrokenResourceError):
        return
    await until_host_ends(stream)


@pytest.mark.parametrize("how", SPOILS + B_MOVES)
async def test_the_peer_punches_the_host_badly(how: str) -> None:
    async with (
        hostile_case(CONFIG) as case,
        _relay() as relay,
        hostile_listener(_resetting) as trap,
        # B announces DCUtR in identify, as a real B does (A gives up on a B that does not).
        evil_host({PROTOCOL_ID: _refuse}, EVIL) as evil,
    ):
        host = case.host
        await evil.listen(f"{addr_of(relay)}/p2p-circuit")
        with host.events.subscribe(HolePunchFailed) as failures:
            conn = await host.connect(f"{addr_of(relay)}/p2p-circuit/p2p/{evil.peer_id}")
            with trio.fail_after(PATIENCE):
                await evil.wait_for_connection(host.peer_id)
            stream = await evil.new_stream(host.peer_id, PROTOCOL_ID, allow_limited=True)
            await _play_b(stream, how, [trap])
            with trio.fail_after(PATIENCE):
                failed = await failures.receive()
        expected = {
            "stall_mid": HolePunchFailure.TIMEOUT,
            "connect_then_stall": HolePunchFailure.TIMEOUT,
            "connect_without_addrs": HolePunchFailure.PEER_NO_ADDRESS,
        }.get(how, HolePunchFailure.PROTOCOL_ERROR)
        assert failed.reason is expected, failed
        await _ping_over(host, evil.peer_id)
        await conn.aclose()
        await evil.relay.stop_listening(relay.peer_id)


async def test_a_connect_with_hundreds_of_addresses_does_not_make_the_host_dial_them_all() -> None:
    # One CONNECT of 4 KiB holds ~300 addresses; dialing every one of them at once would make
    # the host a port scanner for whoever hole punches it. It dials at most what the spec's
    # peers send (rust: 20 candidates).
    accepted = 0

    async def count(wire: Wire) -> None:
        nonlocal accepted
        accepted += 1
        wire.rst()

    trap = trio.socket.socket()
    await trap.bind(("0.0.0.0", 0))
    trap.listen(512)
    port = trap.getsockname()[1]
    many = [Multiaddr(f"/ip4/127.0.{i // 250}.{i % 250 + 2}/tcp/{port}") for i in range(300)]

    async def serve(nursery: trio.Nursery) -> None:
        while True:
            sock, _ = await trap.accept()
            nursery.start_soon(count, Wire(sock))

    try:
        async with (
            hostile_case(CONFIG) as case,
            _relay() as relay,
            evil_host({PROTOCOL_ID: _refuse}, EVIL) as evil,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(serve, nursery)
            host = case.host
            await evil.listen(f"{addr_of(relay)}/p2p-circuit")
            with host.events.subscribe(HolePunchFailed) as failures:
                conn = await host.connect(f"{addr_of(relay)}/p2p-circuit/p2p/{evil.peer_id}")
                with trio.fail_after(PATIENCE):
                    await evil.wait_for_connection(host.peer_id)
                stream = await evil.new_stream(host.peer_id, PROTOCOL_ID, allow_limited=True)
                await stream.send_all(lp(b"\x08\x64" + body_raw(many)))
                await BufferedStream(stream).read_lp(MAX_MESSAGE_SIZE)
                await stream.send_all(encode_hole_punch(SYNC))
                await until_host_ends(stream)
                with trio.fail_after(PATIENCE):
                    await failures.receive()
            await conn.aclose()
            await evil.relay.stop_listening(relay.peer_id)
            nursery.cancel_scope.cancel()
    finally:
        trap.close()
    assert 0 < accepted <= 20, f"the host dialed {accepted} addresses from one CONNECT"


def body_raw(addrs: list[Multiaddr]) -> bytes:
    """``ObsAddrs`` (field 2, repeated bytes) entries for a ``HolePunch`` body."""
    out = b""
    for addr in addrs:
        raw = addr.to_bytes()
        out += b"\x12" + bytes([len(raw)]) + raw
    return out
