"""Our host against a stock py-libp2p 0.8.1 peer (``tests/interop/py/peer.py`` in its own
virtual environment) over loopback: connections, identify, ping and streams both ways,
identify-push that must not be lost (issue 10, item 3) and a peer with no muxer in common
(item 5)."""

from __future__ import annotations

import os

import pytest
import trio

from libp2p import Host, HostConfig, ping
from libp2p.exceptions import Libp2pError
from libp2p.identify import PROTOCOL_ID as IDENTIFY
from libp2p.identify import PUSH_PROTOCOL_ID as IDENTIFY_PUSH
from libp2p.network.connection import NetStream
from tests.interop.pypeer import ECHO_PROTOCOL as ECHO
from tests.interop.pypeer import py_peer, require_py_peer

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _need_py_peer() -> None:
    require_py_peer()


def _host() -> Host:
    # AutoNAT's client is not under test here (py-libp2p serves no AutoNAT by default).
    return Host(listen=["/ip4/127.0.0.1/tcp/0"], config=HostConfig(autonat_client=None))


async def _echo(stream: NetStream) -> None:
    while chunk := await stream.receive_some(65536):
        await stream.send_all(chunk)
    await stream.aclose()


async def _echo_roundtrip(stream: NetStream, data: bytes) -> bytes:
    """Write ``data``, read as much back, then close: py's echo answers as bytes arrive."""
    await stream.send_all(data)
    got = bytearray()
    while len(got) < len(data):
        chunk = await stream.receive_some(len(data) - len(got))
        assert chunk, f"EOF after {len(got)} of {len(data)} bytes"
        got += chunk
    await stream.aclose()
    return bytes(got)


async def test_we_dial_py_identify_ping_and_echo_both_ways() -> None:
    data = os.urandom(50_000)
    with trio.fail_after(40):
        async with py_peer() as py, _host() as host:
            host.set_stream_handler(ECHO, _echo)
            conn = await host.connect(py.addr)
            assert conn.remote_peer == py.id
            await host.identify.wait_identified(conn)
            # We identified py.
            assert host.peerstore.agent_version(py.id)
            assert {IDENTIFY, IDENTIFY_PUSH, ping.PROTOCOL_ID, ECHO} <= host.peerstore.protocols(
                py.id
            )
            # py identified us (it runs identify on every new connection).
            assert await py.wait_protocol(host.peer_id, ECHO, within=10)
            seen = await py.peer_info(host.peer_id)
            assert {IDENTIFY, IDENTIFY_PUSH, ping.PROTOCOL_ID} <= set(seen["protocols"])
            # Ping both ways.
            stream = await host.new_stream(py.id, ping.PROTOCOL_ID)
            assert len(await ping.ping(stream, count=3)) == 3
            await stream.aclose()
            assert await py.ping(host.peer_id) > 0
            # Echo both ways.
            stream = await host.new_stream(py.id, ECHO)
            assert await _echo_roundtrip(stream, data) == data
            assert await py.echo(host.peer_id, data) == data


async def test_py_dials_us_and_we_ping_it() -> None:
    with trio.fail_after(40):
        async with py_peer() as py, _host() as host:
            host.set_stream_handler(ECHO, _echo)
            await py.dial(f"{host.listen_addrs[0]}/p2p/{host.peer_id}")
            conn = await host.wait_for_connection(py.id)
            await host.identify.wait_identified(conn)
            assert ECHO in host.peerstore.protocols(py.id)
            stream = await host.new_stream(py.id, ping.PROTOCOL_ID)
            assert len(await ping.ping(stream, count=2)) == 2
            await stream.aclose()
            assert await py.echo(host.peer_id, b"py to us") == b"py to us"


async def test_identify_push_to_py_is_never_lost() -> None:
    """Item 3: each stream handler we add triggers identify-push; py-libp2p must learn every
    new protocol. A push whose stream we close before py's multistream answer arrives is
    reset by our Yamux and dropped by py."""
    with trio.fail_after(50):
        async with py_peer() as py, _host() as host:
            conn = await host.connect(py.addr)
            await host.identify.wait_identified(conn)
            assert await py.wait_protocol(host.peer_id, IDENTIFY_PUSH, within=10)
            lost = []
            for i in range(20):
                protocol = f"/interop/push-test/{i}/1.0.0"
                host.set_stream_handler(protocol, _echo)
                if not await py.wait_protocol(host.peer_id, protocol, within=2):
                    lost.append(i)
            assert lost == [], f"py-libp2p never learned protocols {lost} of 20 pushes"


async def test_py_with_mplex_only_connect_fails_with_no_common_muxer() -> None:
    """Item 5: we speak Yamux only; a peer offering only mplex has no muxer in common, and
    connect() must say so instead of reporting a connection no stream can use."""
    with trio.fail_after(40):
        async with py_peer(muxer="mplex") as py, _host() as host:
            with pytest.raises(Libp2pError) as raised:
                await host.connect(py.addr)
            assert "muxer" in str(raised.value).lower(), repr(raised.value)
            assert host.connections_to(py.id) == []


async def test_py_with_mplex_only_dialing_us_fails_and_we_stay_up() -> None:
    """Item 5, the other way: py (mplex only) dials us; the dial fails on both sides without
    a connection left behind, and our host keeps serving others."""
    with trio.fail_after(40):
        async with py_peer(muxer="mplex") as mplex_only, py_peer() as good, _host() as host:
            host.set_stream_handler(ECHO, _echo)
            addr = f"{host.listen_addrs[0]}/p2p/{host.peer_id}"
            reply = await mplex_only.try_command("dial", addr=addr)
            assert not reply["ok"], reply
            assert host.connections_to(mplex_only.id) == []
            await good.dial(addr)
            assert await good.echo(host.peer_id, b"still up") == b"still up"
