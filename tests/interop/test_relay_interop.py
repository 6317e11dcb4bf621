"""Circuit Relay v2 interop with js-libp2p (@libp2p/circuit-relay-v2 4.2.13) on loopback.

Four line-ups, each with a stream over the relayed connection carrying data both ways and
the limits the relay announced checked on both clients:

* our relay, a js listener, a js dialer;
* a js relay, our listener, our dialer;
* our relay, our listener, a js dialer;
* a js relay, a js listener, our dialer.

Stock js 4.2.13 writes its duration limit in milliseconds into ``Limit.duration`` (a field
the spec defines in seconds), so a js relay's default of 2 minutes arrives as 120000. Our
client reports what the relay sent, as js's does.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import ConnectionOpened, Host, HostConfig
from libp2p.network.connection import Connection, ConnectionLimit
from libp2p.peer.id import PeerID
from libp2p.relay.circuit_v2 import RelayConfig
from tests.interop.interop_protocols import ECHO, echo_handler, echo_roundtrip
from tests.interop.jspeer import js_relay, js_relayed_listener, require_js_peer, run_js_dialer

pytestmark = pytest.mark.interop

KIB = 1 << 10
SIZE = 16 * KIB
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
#: What our relay announces by default (go's limits): 2 min, 128 KiB per direction.
OUR_LIMIT = ConnectionLimit(duration=120, data=128 * KIB)
#: What a stock js relay announces: 2 min written as milliseconds, 128 KiB.
JS_LIMIT = ConnectionLimit(duration=120_000, data=128 * KIB)


@pytest.fixture(autouse=True)
def _need_js_peer() -> None:
    require_js_peer()


def _js_limits(limit: ConnectionLimit) -> dict[str, Any]:
    return {"seconds": limit.duration, "bytes": limit.data}


def _check_js_echo(result: dict[str, Any]) -> None:
    echo = result["echo"]
    assert echo["bytes"] == SIZE
    assert echo["receivedBytes"] == SIZE
    assert echo["receivedSha256"] == echo["sentSha256"]


async def _relayed_connection(host: Host, peer: PeerID) -> Connection:
    with trio.fail_after(10):
        conn = await host.wait_for_connection(peer)
    assert conn.relayed
    return conn


async def _echo_over(host: Host, peer: PeerID) -> None:
    data = os.urandom(SIZE)
    stream = await host.new_stream(peer, ECHO, allow_limited=True)
    with trio.fail_after(20):
        assert await echo_roundtrip(stream, data) == data


async def test_our_relay_js_listener_js_dialer() -> None:
    config = HostConfig(relay_service=RelayConfig())
    async with Host(listen=[LOOPBACK], config=config) as relay:
        relay_addr = f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}"
        async with js_relayed_listener(relay_addr, report_connections=True) as listener:
            assert listener.relayed_addrs == [f"{relay_addr}/p2p-circuit/p2p/{listener.peer_id}"]
            result = await run_js_dialer(listener.relayed_addrs[0], echo=SIZE)
            _check_js_echo(result)
            assert result["connection"]["limited"] is True
            assert result["connection"]["limits"] == _js_limits(OUR_LIMIT)
            with trio.fail_after(10):
                inbound = await listener.wait_connection(result["peerId"], limited=True)
            assert inbound["limits"] == _js_limits(OUR_LIMIT)
            assert relay.relay_service is not None
            stats = relay.relay_service.stats
            assert stats.reservations_active == 1
            assert stats.circuits_opened == 1
            assert stats.bytes_relayed > 2 * SIZE


async def test_js_relay_our_listener_our_dialer() -> None:
    async with (
        js_relay(report_connections=True) as relay,
        Host(listen=[LOOPBACK]) as listener,
        Host() as dialer,
    ):
        listener.set_stream_handler(ECHO, echo_handler, allow_limited=True)
        relay_id = PeerID.from_string(relay.peer_id)
        addrs = await listener.listen(f"{relay.addr}/p2p-circuit")
        assert addrs == [Multiaddr(f"{relay.addr}/p2p-circuit")]
        reservation = listener.relay.reservations[relay_id]
        assert reservation.has_voucher  # js sends one; it verified
        assert reservation.limit == JS_LIMIT
        conn = await dialer.connect(f"{addrs[0]}/p2p/{listener.peer_id}")
        assert conn.relayed
        assert conn.limit == JS_LIMIT
        await _echo_over(dialer, listener.peer_id)
        inbound = await _relayed_connection(listener, dialer.peer_id)
        assert inbound.limit == JS_LIMIT


async def test_our_relay_our_listener_js_dialer() -> None:
    config = HostConfig(relay_service=RelayConfig())
    async with (
        Host(listen=[LOOPBACK], config=config) as relay,
        Host(listen=[LOOPBACK]) as listener,
    ):
        listener.set_stream_handler(ECHO, echo_handler, allow_limited=True)
        (addr,) = await listener.listen(f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}/p2p-circuit")
        with listener.events.subscribe(ConnectionOpened) as opened:
            result = await run_js_dialer(f"{addr}/p2p/{listener.peer_id}", echo=SIZE)
            _check_js_echo(result)
            assert result["connection"]["limited"] is True
            assert result["connection"]["limits"] == _js_limits(OUR_LIMIT)
            # The js dialer has exited: find its (now closed) connection among those opened.
            event = opened.receive_nowait()
            while event.peer != PeerID.from_string(result["peerId"]):
                event = opened.receive_nowait()
        assert event.relayed
        assert event.connection.limit == OUR_LIMIT


async def test_js_relay_js_listener_our_dialer() -> None:
    async with (
        js_relay() as relay,
        js_relayed_listener(relay.addr, report_connections=True) as listener,
        Host() as dialer,
    ):
        conn = await dialer.connect(listener.relayed_addrs[0])
        assert conn.relayed
        assert conn.limit == JS_LIMIT
        await _echo_over(dialer, PeerID.from_string(listener.peer_id))
        with trio.fail_after(10):
            inbound = await listener.wait_connection(str(dialer.peer_id), limited=True)
        assert inbound["limits"] == _js_limits(JS_LIMIT)
