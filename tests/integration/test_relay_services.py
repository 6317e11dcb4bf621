"""The relay services' edges over real sockets on 127.0.0.1: a peer that is not a relay is
named as such (issue 10 item 4), and the relay service and client do their own bookkeeping
without the public event bus (item 8)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import Host, HostConfig
from libp2p.events import EventBus
from libp2p.relay.circuit_v2 import (
    HOP_PROTOCOL_ID,
    NotARelay,
    RelayConfig,
    RelayRefused,
    ReservationLost,
    Status,
)

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
REAL_TIMEOUT = 20.0


def addr(host: Host) -> Multiaddr:
    return host.listen_addrs[0]


def circuit(relay: Host, target: Host | None = None) -> Multiaddr:
    base = f"{addr(relay)}/p2p/{relay.peer_id}/p2p-circuit"
    return Multiaddr(base if target is None else f"{base}/p2p/{target.peer_id}")


# -- item 4: "is not a relay" ------------------------------------------------------------------


async def test_reserving_on_a_peer_without_hop_says_it_is_not_a_relay() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with Host(listen=[LOOPBACK]) as plain, Host() as me:
            with pytest.raises(NotARelay) as caught:
                await me.listen(circuit(plain))
            assert caught.value.peer == plain.peer_id
            assert f"{plain.peer_id} is not a relay" in str(caught.value)
            assert "identify" in str(caught.value)
            # It is a RelayRefused: callers handling refusals keep working.
            assert isinstance(caught.value, RelayRefused)
            assert caught.value.status == Status.PERMISSION_DENIED
            assert not me.relay.reservations


async def test_dialing_through_a_peer_without_hop_says_it_is_not_a_relay() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with Host(listen=[LOOPBACK]) as plain, Host() as me, Host() as other:
            with pytest.raises(NotARelay, match="is not a relay"):
                await me.connect(circuit(plain, other))


async def test_an_na_to_the_hop_proposal_says_it_is_not_a_relay() -> None:
    # Without identify's answer the proposal is made (and waited for): the peer's na is the
    # same "not a relay", not a reset or a bare ProtocolNotSupported.
    with trio.fail_after(REAL_TIMEOUT):
        async with Host(listen=[LOOPBACK]) as plain, Host() as me:
            conn = await me.connect(f"{addr(plain)}/p2p/{plain.peer_id}")
            await me.identify.wait_identified(conn)
            me.peerstore.set_protocols(plain.peer_id, [])
            with pytest.raises(NotARelay, match="refused the hop protocol"):
                await me.relay.reserve(plain.peer_id)


async def test_a_real_relay_is_still_a_relay() -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=HostConfig(relay_service=RelayConfig())) as relay,
            Host() as me,
        ):
            await me.listen(circuit(relay))
            assert me.peerstore.supports(relay.peer_id, HOP_PROTOCOL_ID)
            assert relay.peer_id in me.relay.reservations


# -- item 8: no internal logic on the public bus -----------------------------------------------


@pytest.fixture
def no_bus_subscriptions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Make every subscription to an EventBus fail, and record who tried."""
    attempts: list[tuple[Any, ...]] = []

    def refuse(self: EventBus, *types: Any, **kwargs: Any) -> Any:
        attempts.append(types)
        raise AssertionError(f"a service subscribed to the public bus for {types}")

    monkeypatch.setattr(EventBus, "subscribe", refuse)
    return attempts


async def test_relay_and_client_keep_their_books_without_the_public_bus(
    no_bus_subscriptions: list[tuple[Any, ...]],
) -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=HostConfig(relay_service=RelayConfig())) as relay,
            Host() as listener,
        ):
            service = relay.relay_service
            assert service is not None
            await listener.listen(circuit(relay))
            assert listener.peer_id in service.book.reservations(trio.current_time())

            # The relay releases the slot when the listener's connection closes, told by the
            # swarm (observers are called in order: ours, registered after the service's,
            # runs once the service has seen the close).
            await listener.relay.stop_listening(relay.peer_id)
            closed = trio.Event()

            class Watch:
                def connection_opened(self, conn: object) -> None:
                    pass

                def connection_closed(self, conn: object) -> None:
                    closed.set()

            relay.swarm.observe(Watch())
            (conn,) = relay.connections_to(listener.peer_id)
            await conn.aclose()
            await closed.wait()
            assert listener.peer_id not in service.book.reservations(trio.current_time())
            assert service.stats.reservations_active == 0
    assert no_bus_subscriptions == []


async def test_the_client_reports_a_lost_reservation_on_the_bus_for_users() -> None:
    # Services still publish their events for applications.
    with trio.fail_after(REAL_TIMEOUT):
        async with (
            Host(listen=[LOOPBACK], config=HostConfig(relay_service=RelayConfig())) as relay,
            Host() as listener,
        ):
            with listener.events.subscribe(ReservationLost) as events:
                await listener.listen(circuit(relay))
                await listener.disconnect(relay.peer_id)
                lost = await events.receive()
            assert lost.relay == relay.peer_id
            assert "connection to the relay closed" in lost.reason


async def test_auto_relay_starts_without_the_public_bus(
    no_bus_subscriptions: list[tuple[Any, ...]],
) -> None:
    with trio.fail_after(REAL_TIMEOUT):
        async with Host(listen=[LOOPBACK], config=HostConfig(relay_service=RelayConfig())) as r:
            static = (f"{addr(r)}/p2p/{r.peer_id}",)
            async with Host(config=HostConfig(static_relays=static)) as private:
                assert private.auto_relay is not None
                assert private.auto_relay.relays == [r.peer_id]
    assert no_bus_subscriptions == []
