"""Our stack against a real js-libp2p peer (TCP + Noise + Yamux) over loopback, both ways."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from libp2p import ping
from libp2p.crypto.keys import generate_ed25519
from libp2p.exceptions import PeerIDMismatch
from libp2p.network.swarm import Swarm
from libp2p.peer.id import PeerID
from tests.interop.interop_protocols import (
    ECHO,
    SINK,
    SOURCE,
    echo_handler,
    echo_roundtrip,
    sink_handler,
)
from tests.interop.jspeer import js_peer, require_js_peer, run_js_dialer, source_pattern

pytestmark = pytest.mark.interop

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _need_js_peer() -> None:
    require_js_peer()


async def test_we_dial_js_and_ping() -> None:
    async with js_peer() as js, Swarm(generate_ed25519()) as swarm:
        conn = await swarm.dial(js.addr)
        assert conn.remote_peer == PeerID.from_string(js.peer_id)
        stream = await conn.new_stream(ping.PROTOCOL_ID)
        rtts = await ping.ping(stream, count=5)
        assert len(rtts) == 5
        assert all(r > 0 for r in rtts)
        await stream.aclose()


async def test_js_dials_us_and_pings() -> None:
    async with Swarm(generate_ed25519()) as swarm:
        swarm.set_stream_handler(ping.PROTOCOL_ID, ping.handle_ping)
        (addr,) = await swarm.listen("/ip4/127.0.0.1/tcp/0")
        result = await run_js_dialer(f"{addr}/p2p/{swarm.peer_id}", ping=3)
    assert result["remotePeer"] == str(swarm.peer_id)
    assert len(result["ping"]["rttsMs"]) == 3


async def test_we_open_stream_to_js_mib_both_ways() -> None:
    data = os.urandom(4 * MIB + 11)
    async with js_peer() as js, Swarm(generate_ed25519()) as swarm:
        conn = await swarm.dial(js.addr)
        echo = await conn.new_stream(ECHO)
        assert await echo_roundtrip(echo, data) == data
        # Sink: js hashes what we upload; source: js generates a pattern we check.
        sink = await conn.new_stream(SINK)
        await sink.send_all(data)
        await sink.send_eof()
        reply = b""
        while chunk := await sink.receive_some():
            reply += chunk
        assert struct.unpack(">Q", reply[:8])[0] == len(data)
        assert reply[8:] == hashlib.sha256(data).digest()
        source = await conn.new_stream(SOURCE)
        await source.send_all(struct.pack(">Q", 3 * MIB + 5))
        got = bytearray()
        while chunk := await source.receive_some():
            got += chunk
        assert bytes(got) == source_pattern(3 * MIB + 5)


async def test_js_opens_stream_to_us_mib_both_ways() -> None:
    size = 4 * MIB + 3
    async with Swarm(generate_ed25519()) as swarm:
        swarm.set_stream_handler(ECHO, echo_handler)
        swarm.set_stream_handler(SINK, sink_handler)
        (addr,) = await swarm.listen("/ip4/127.0.0.1/tcp/0")
        result = await run_js_dialer(f"{addr}/p2p/{swarm.peer_id}", echo=size, sink=size)
    assert result["echo"]["receivedBytes"] == size
    assert result["echo"]["receivedSha256"] == result["echo"]["sentSha256"]
    assert result["sink"]["remoteBytes"] == size
    assert result["sink"]["remoteSha256"] == result["sink"]["sha256"]


async def test_js_rejects_wrong_peer_id_from_us() -> None:
    async with Swarm(generate_ed25519()) as swarm:
        (addr,) = await swarm.listen("/ip4/127.0.0.1/tcp/0")
        other = PeerID.from_public_key(generate_ed25519().public_key)
        result = await run_js_dialer(f"{addr}/p2p/{other}", ping=1, check=False, time_limit=10)
    assert "error" in result


async def test_we_reject_js_with_wrong_peer_id() -> None:
    other = PeerID.from_public_key(generate_ed25519().public_key)
    async with js_peer() as js, Swarm(generate_ed25519()) as swarm:
        base = js.addr.rsplit("/p2p/", 1)[0]
        with pytest.raises(PeerIDMismatch):
            await swarm.dial(f"{base}/p2p/{other}")
