"""Identify against a real js-libp2p peer: we verify its signed peer record, it identifies us."""

from __future__ import annotations

import pytest

from libp2p.events import PeerIdentified
from libp2p.host import Host
from libp2p.identify import PROTOCOL_ID, PUSH_PROTOCOL_ID
from libp2p.network.addrs import split_peer_id
from libp2p.peer.id import PeerID
from tests.interop.jspeer import js_peer, require_js_peer, run_js_dialer

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _need_js_peer() -> None:
    require_js_peer()


async def test_we_identify_js() -> None:
    async with js_peer() as js, Host(listen=["/ip4/127.0.0.1/tcp/0"]) as host:
        js_id = PeerID.from_string(js.peer_id)
        with host.events.subscribe(PeerIdentified) as events:
            conn = await host.connect(js.addr)
            event = await events.receive()
        assert event.peer == js_id
        assert PROTOCOL_ID in event.protocols
        assert "/ipfs/ping/1.0.0" in event.protocols
        assert event.agent_version
        # js sent a signed peer record; we verified it (its seq is now on record) ...
        assert not host.peerstore.accept_record_seq(js_id, 0)
        # ... and its certified addresses include the one we dialed.
        assert conn.remote_addr in host.peerstore.addrs(js_id)
        # js told us how it sees our end of the connection (js appends our /p2p/<id>).
        assert event.observed_addr is not None
        observed, observed_peer = split_peer_id(event.observed_addr)
        assert observed == conn.local_addr
        assert observed_peer in (None, host.peer_id)


async def test_js_identifies_us() -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as host:
        addr = f"{host.listen_addrs[0]}/p2p/{host.peer_id}"
        result = await run_js_dialer(addr, ping=1)
    assert result["remotePeer"] == str(host.peer_id)
    identified = result.get("identify")
    if identified is None:
        pytest.fail("the js peer did not report identify results (peer.mjs needs --identify)")
    assert PROTOCOL_ID in identified["protocols"]
    assert PUSH_PROTOCOL_ID in identified["protocols"]
    assert identified["certifiedAddrs"]
