"""Floods of RESERVE requests at the host as a relay: one peer that asks again as soon as it
is answered (as py-libp2p 0.8.1's refresh loop does), one that keeps many requests in
flight, and many peer IDs from one IP address. The relay answers what is over its rate
limits with RESOURCE_LIMIT_EXCEEDED, keeps the flooders' connections, and other peers'
reservations and circuits go on as if nothing happened."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable

import pytest
import trio

from libp2p import Host, HostConfig
from libp2p.exceptions import Libp2pError
from libp2p.io import BufferedStream
from libp2p.relay.circuit_v2 import RelayConfig
from libp2p.relay.circuit_v2.protocol import (
    HOP_PROTOCOL_ID,
    HOP_RESERVE,
    Status,
    frame,
    hop_message,
    read_hop,
)

from .harness import PATIENCE, addr_of, evil_host, fast_config, hostile_case

RATE, BURST = 4.0, 4  # per peer
IP_RATE, IP_BURST = 40.0, 40
FLOOD_SECONDS = 1.5
RELAY = fast_config(
    relay_service=RelayConfig(
        reserve_rate_per_peer=RATE,
        reserve_burst_per_peer=BURST,
        reserve_rate_per_ip=IP_RATE,
        reserve_burst_per_ip=IP_BURST,
        refusal_hold=1.0,
    )
)
ECHO = "/flood-test/echo/1.0.0"


async def reserve_once(peer: Host, relay: Host) -> Status:
    """One RESERVE on a new hop stream; the status answered."""
    stream = await peer.new_stream(relay.peer_id, HOP_PROTOCOL_ID)
    try:
        await stream.send_all(frame(hop_message(HOP_RESERVE)))
        answer = await read_hop(BufferedStream(stream))
    finally:
        await stream.aclose()
    return Status(answer.status)


async def flood(
    ask: Callable[[], Awaitable[Status]], seconds: float, in_flight: int
) -> collections.Counter[Status]:
    """``in_flight`` loops that each ask again as soon as answered, for ``seconds``."""
    answers: collections.Counter[Status] = collections.Counter()

    async def loop() -> None:
        while True:
            answers[await ask()] += 1

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(in_flight):
                nursery.start_soon(loop)
    return answers


async def serve_echo(stream: object) -> None:
    assert hasattr(stream, "receive_some")
    while data := await stream.receive_some():  # type: ignore[attr-defined]
        await stream.send_all(data)  # type: ignore[attr-defined]
    await stream.aclose()  # type: ignore[attr-defined]


async def circuit_echo(source: Host, target_addr: str, target: Host) -> bytes:
    """A relayed connection from ``source`` to ``target`` and one echo over it."""
    conn = await source.connect(target_addr)
    assert conn.relayed
    stream = await conn.new_stream(ECHO, allow_limited=True)
    await stream.send_all(b"through the relay")
    await stream.send_eof()
    back = b""
    while data := await stream.receive_some():
        back += data
    await stream.aclose()
    await conn.aclose()
    for gone in target.connections_to(source.peer_id):
        await gone.wait_closed()
    return back


@pytest.mark.parametrize("in_flight", [1, 16])
async def test_a_reserve_flood_is_held_to_the_rate_and_hurts_no_one_else(in_flight: int) -> None:
    async with hostile_case(RELAY) as case, evil_host() as flooder, Host() as source:
        relay = case.host
        assert relay.relay_service is not None
        # Another peer (the well-behaved one) holds a reservation and accepts circuits.
        case.good.set_stream_handler(ECHO, serve_echo, allow_limited=True)  # type: ignore[arg-type]
        with trio.fail_after(PATIENCE):
            await case.good.listen(f"{case.addr}/p2p-circuit")
        good_addr = f"{case.addr}/p2p-circuit/p2p/{case.good.peer_id}"
        await flooder.connect(case.addr)
        flooder_conn = next(iter(relay.connections_to(flooder.peer_id)))
        before = relay.relay_service.stats.reservations_accepted

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            results: list[collections.Counter[Status]] = []

            async def run_flood() -> None:
                results.append(
                    await flood(lambda: reserve_once(flooder, relay), FLOOD_SECONDS, in_flight)
                )

            nursery.start_soon(run_flood)
            # Meanwhile: the good peer refreshes, and a circuit to it carries an echo.
            with trio.fail_after(PATIENCE):
                assert await reserve_once(case.good, relay) is Status.OK
                assert await circuit_echo(source, good_addr, case.good) == b"through the relay"
        elapsed = trio.current_time() - start
        (answers,) = results

        # Only OK or RESOURCE_LIMIT_EXCEEDED, and no more admitted than the bucket allows.
        assert set(answers) <= {Status.OK, Status.RESOURCE_LIMIT_EXCEEDED}, answers
        admitted = answers[Status.OK]
        assert BURST <= admitted <= BURST + RATE * elapsed + 1, (answers, elapsed)
        refused = relay.relay_service.stats.reservations_refused
        # (Requests in flight when the flood stopped were counted but not answered.)
        got = answers[Status.RESOURCE_LIMIT_EXCEEDED]
        assert got <= refused["reserve_rate_per_peer"] <= got + in_flight
        assert refused["reserve_rate_per_ip"] == 0
        if in_flight == 1:
            # Asking again as soon as answered: each refusal was held until the next token,
            # so the loop ran at the rate, not at the speed of loopback round trips.
            total = sum(answers.values())
            assert total <= 2 * (BURST + RATE * elapsed) + 2, (answers, elapsed)
        else:
            # Many in flight: one refusal held, the rest answered at once (and cheaply).
            assert answers[Status.RESOURCE_LIMIT_EXCEEDED] > 2 * in_flight, answers
        # The flooder keeps its connection (and the reservation it was granted).
        assert not flooder_conn.is_closed
        assert flooder.peer_id in relay.relay_service.reservations()
        accepted = relay.relay_service.stats.reservations_accepted - before
        assert admitted + 1 <= accepted <= admitted + 1 + in_flight
        # A second later its bucket has tokens again: it is not banned, only slowed.
        with trio.fail_after(PATIENCE):
            await trio.sleep(1.0 / RATE)  # the bucket's refill time, not a wait for an event
            assert await reserve_once(flooder, relay) is Status.OK


async def test_many_peer_ids_from_one_ip_are_held_to_the_ip_rate() -> None:
    config = fast_config(
        relay_service=RelayConfig(
            max_reservations_per_ip=100,
            reserve_rate_per_peer=RATE,
            reserve_burst_per_peer=BURST,
            reserve_rate_per_ip=0.5,
            reserve_burst_per_ip=6,
            refusal_hold=0.0,
        )
    )
    async with hostile_case(config) as case:
        relay = case.host
        assert relay.relay_service is not None
        answers: list[Status] = []
        # Ten peer IDs on 127.0.0.1, two requests each: 6 admitted for the whole IP.
        for _ in range(10):
            async with evil_host() as sybil:
                await sybil.connect(case.addr)
                for _ in range(2):
                    answers.append(await reserve_once(sybil, relay))
        assert answers.count(Status.OK) == 6, answers
        assert answers.count(Status.RESOURCE_LIMIT_EXCEEDED) == 14, answers
        refused = relay.relay_service.stats.reservations_refused
        assert refused["reserve_rate_per_ip"] == 14
        # A peer from another address (127.0.0.2: its dials leave from its listen address)
        # is not held back by them.
        try:
            other = Host(listen=["/ip4/127.0.0.2/tcp/0"], config=HostConfig())
            async with other:
                conn = await other.connect(case.addr)
                assert "/ip4/127.0.0.2/" in str(
                    next(iter(relay.connections_to(other.peer_id))).remote_addr
                ), conn
                assert await reserve_once(other, relay) is Status.OK
        except (Libp2pError, OSError) as exc:  # pragma: no cover - a host without 127.0.0.2
            pytest.skip(f"no second loopback address here: {exc}")
        assert addr_of(relay)
