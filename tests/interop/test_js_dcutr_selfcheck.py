"""The js DCUtR and AutoNAT roles checked against themselves, over loopback: a js relay, a js
listener reserving on it (DCUtR role B) and a js peer that dials the listener through the
relay (role A), with js "fixed" (the four fixes in tests/interop/js/peer.mjs) and "stock".

If these fail, DCUtR interop failures elsewhere say nothing about our stack. They also pin
down what stock js-libp2p (@libp2p/dcutr 3.0.28) does: on loopback it never upgrades, because
its DCUtR only dials addresses it deems public and js calls 127/8 private.
"""

from __future__ import annotations

import pytest
import trio

from tests.interop.jspeer import (
    JsHolePunch,
    js_autonat_server,
    js_dcutr_dialer,
    js_dcutr_listener,
    js_relay,
    require_js_peer,
    run_js_dialer,
)

pytestmark = pytest.mark.interop

DCUTR_PROTOCOL = "/libp2p/dcutr"
AUTONAT_PROTOCOL = "/libp2p/autonat/1.0.0"


@pytest.fixture(autouse=True)
def _need_js_peer() -> None:
    require_js_peer()


async def test_fixed_js_upgrades_the_relayed_connection_to_a_direct_one() -> None:
    async with (
        js_relay(report_connections=True) as relay,
        js_dcutr_listener(relay.addr, holepunch=JsHolePunch.fixed()) as listener,
        js_dcutr_dialer(listener.relayed_addrs[0], holepunch=JsHolePunch.fixed()) as dialer,
    ):
        with trio.fail_after(20):
            connected = await dialer.wait_event("connected", remotePeer=listener.peer_id)
            assert connected["limited"] is True
            assert "/p2p-circuit/" in connected["remoteAddr"]
            # A (the dialer) answers B's DCUtR and dials B's addresses on SYNC.
            direct = await dialer.wait_direct(listener.peer_id)
            seen_by_listener = await listener.wait_direct(dialer.peer_id)
            outcome = await dialer.wait_dcutr_end(listener.peer_id)
            # js closes the relayed connection as soon as the direct one is up.
            closed = await dialer.wait_event(
                "connection-closed", remotePeer=listener.peer_id, limited=True
            )
        assert "/p2p-circuit" not in direct["remoteAddr"]
        assert direct["remoteAddr"].startswith("/ip4/127.0.0.1/tcp/")
        assert direct["sinceRelayedSeconds"] is not None
        assert direct["sinceRelayedSeconds"] < 5  # one DCUtR attempt (js: 5 s each)
        assert "/p2p-circuit" not in seen_by_listener["remoteAddr"]
        assert outcome["role"] == "A"
        assert outcome["direct"] is True
        assert outcome["error"] is None
        assert "/p2p-circuit/" in closed["remoteAddr"]
        # B announced the address the relay observed of it (--fix-observed): the fixed dial
        # port (--fix-dial-port), which is not its listen port.
        dial_port = listener.find_event("dial-port")
        assert dial_port is not None
        assert any(a.startswith(f"/ip4/127.0.0.1/tcp/{dial_port['port']}/") for a in listener.addrs)
        assert listener.find_event("observed", **{"from": relay.peer_id}) is not None


async def test_stock_js_does_not_upgrade_on_loopback() -> None:
    stock = JsHolePunch.stock()
    async with (
        js_relay() as relay,
        js_dcutr_listener(relay.addr, holepunch=stock) as listener,
        js_dcutr_dialer(listener.relayed_addrs[0], holepunch=stock) as dialer,
    ):
        with trio.fail_after(20):
            await dialer.wait_event("connected", remotePeer=listener.peer_id)
            # B runs its three attempts back to back; A refuses each CONNECT because none
            # of B's addresses (all 127.0.0.1) passes js's public-address filter.
            outcome = await listener.wait_dcutr_end(dialer.peer_id)
            refused = await dialer.wait_dcutr_end(listener.peer_id)
        assert outcome["role"] == "B"
        assert outcome["direct"] is False
        assert refused["role"] == "A"
        assert refused["direct"] is False
        assert "no dialable multiaddrs" in refused["error"]
        assert dialer.find_event("direct", remotePeer=listener.peer_id) is None
        assert listener.find_event("direct", remotePeer=dialer.peer_id) is None
        assert dialer.find_event("dcutr", phase="dial") is None


async def test_dcutr_and_autonat_are_advertised_and_the_prefix_is_used() -> None:
    async with (
        js_autonat_server(command_prefix=["env", "JSPEER_PREFIX=1"]) as server,
        js_relay() as relay,
        js_dcutr_listener(relay.addr, listen=["/ip4/127.0.0.1/tcp/0"]) as listener,
    ):
        for peer, protocol in ((server, AUTONAT_PROTOCOL), (listener, DCUTR_PROTOCOL)):
            result = await run_js_dialer(peer.addr, time_limit=20)
            assert protocol in result["identify"]["protocols"]
        # The js dialer is no AutoNAT client, so nothing was asked.
        assert server.find_event("autonat-server") is None
