"""Streams on a relayed connection outlive the switch to the direct one (issue 11), on loopback.

After a hole punch new streams go to the direct connection, while the relayed connection stays
until the streams on it end (opened by either side, before or after the punch), then closes
after the idle grace; the relay's own limits still end it, with their typed error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from libp2p import Host, HostConfig
from libp2p.network.address_policy import AddressPolicy
from libp2p.network.connection import Connection, NetStream
from libp2p.relay.circuit_v2 import LimitKind, RelayConfig, RelayLimitReached
from libp2p.relay.circuit_v2.dcutr import (
    PROTOCOL_ID,
    HolePunchConfig,
    HolePunchFailed,
    HolePunchSucceeded,
)

TIMEOUT = 20
ECHO = "/test/echo/1.0.0"
GRACE = 0.2
PUNCH = HolePunchConfig(
    address_policy=AddressPolicy.local_testing(),
    connection_reversal=False,
    direct_dial=False,
    relay_close_grace=GRACE,
)


async def echo(stream: NetStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


async def echo_once(stream: NetStream, data: bytes) -> bytes:
    await stream.send_all(data)
    got = b""
    while len(got) < len(data):
        got += await stream.receive_some()
    return got


async def finish(stream: NetStream) -> None:
    await stream.send_eof()
    assert await stream.receive_some() == b""
    await stream.aclose()


def hold_dcutr(host: Host) -> trio.Event:
    """Hold ``host``'s answers to DCUtR until the returned event is set, so that the test
    decides what happens on the relayed connection before the punch."""
    release = trio.Event()
    answer = host.swarm._handlers[PROTOCOL_ID]

    async def held(stream: NetStream) -> None:
        await release.wait()
        await answer(stream)

    host.swarm.set_stream_handler(PROTOCOL_ID, held, allow_limited=True)
    return release


@asynccontextmanager
async def punched(
    relay_config: RelayConfig,
) -> AsyncIterator[tuple[Host, Host, Connection, NetStream, HolePunchSucceeded]]:
    """A listener reserved on a relay; a dialer connected to it through the relay, with an
    echo stream opened (and used) on the relayed connection before the punch, then punched.
    Yields the listener, the dialer, the dialer's relayed connection, that stream, and the
    dialer's outcome."""
    async with (
        Host(
            listen=["/ip4/127.0.0.1/tcp/0"],
            config=HostConfig(relay_service=relay_config, hole_punching=None),
        ) as relay,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=HostConfig(hole_punching=PUNCH)) as listener,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=HostConfig(hole_punching=PUNCH)) as dialer,
    ):
        for host in (listener, dialer):
            host.set_stream_handler(ECHO, echo, allow_limited=True)
        await listener.listen(f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}/p2p-circuit")
        await dialer.connect(f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}")
        release = hold_dcutr(dialer)
        with (
            listener.events.subscribe(HolePunchSucceeded, HolePunchFailed) as l_events,
            dialer.events.subscribe(HolePunchSucceeded, HolePunchFailed) as d_events,
        ):
            relayed = await dialer.connect(
                f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}/p2p-circuit/p2p/{listener.peer_id}"
            )
            before = await relayed.new_stream(ECHO, allow_limited=True)
            assert await echo_once(before, b"before the punch") == b"before the punch"
            assert [c.relayed for c in dialer.connections_to(listener.peer_id)] == [True]
            release.set()
            d_outcome = await d_events.receive()
            l_outcome = await l_events.receive()
        assert isinstance(d_outcome, HolePunchSucceeded), d_outcome
        assert isinstance(l_outcome, HolePunchSucceeded), l_outcome
        assert d_outcome.relayed is relayed
        yield listener, dialer, relayed, before, d_outcome


async def test_a_stream_on_the_relayed_connection_outlives_the_switch() -> None:
    with trio.fail_after(TIMEOUT):
        async with punched(RelayConfig()) as (listener, dialer, relayed, before, outcome):
            direct_up = trio.current_time()
            direct = outcome.connection
            (theirs,) = [c for c in listener.connections_to(dialer.peer_id) if c.relayed]
            # New streams go direct, from either side.
            new = await dialer.new_stream(listener.peer_id, ECHO)
            assert new.connection is direct
            assert await echo_once(new, b"direct") == b"direct"
            await finish(new)
            back = await listener.new_stream(dialer.peer_id, ECHO)
            assert not back.connection.relayed
            await finish(back)
            # The duration under test: the old stream stays open well past the grace after
            # which the relayed connection used to be closed under it.
            await trio.sleep_until(direct_up + 5 * GRACE)
            assert not relayed.is_closed
            assert not theirs.is_closed
            assert await echo_once(before, b"after the punch") == b"after the punch"
            # The peer may still open a stream on the relayed connection: it is served.
            late = await theirs.new_stream(ECHO, allow_limited=True)
            assert late.connection is theirs
            assert await echo_once(late, b"from the peer") == b"from the peer"
            await finish(late)
            assert not relayed.is_closed
            # Once the last stream ends, the relayed connection closes after the grace, at
            # both ends, cleanly (not reset), and the direct connection is all that is left.
            await finish(before)
            ended = trio.current_time()
            await relayed.wait_closed()
            await theirs.wait_closed()
            assert trio.current_time() - ended >= GRACE
            assert relayed.error is None
            assert dialer.connections_to(listener.peer_id) == [direct]


async def test_the_relays_limit_still_ends_a_kept_relayed_connection_with_its_error() -> None:
    with trio.fail_after(TIMEOUT):
        data_limit = 64 * 1024
        config = RelayConfig(circuit_data=data_limit)
        async with punched(config) as (_listener, _dialer, relayed, before, outcome):
            # Keep using the old stream after the switch until the relay's data limit cuts it.
            errors: list[BaseException] = []

            async def read() -> None:
                try:
                    while await before.receive_some():
                        pass
                except trio.BrokenResourceError as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                try:
                    while True:
                        await before.send_all(b"x" * 4096)
                except trio.BrokenResourceError as exc:
                    errors.append(exc)
            assert len(errors) == 2
            for exc in errors:
                assert isinstance(exc, RelayLimitReached), repr(exc)
                assert exc.kind is LimitKind.DATA
            await relayed.wait_closed()
            assert isinstance(relayed.error, RelayLimitReached)
            assert not outcome.connection.is_closed
