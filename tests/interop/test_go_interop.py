"""Our host against a stock go-libp2p v0.32.1 peer (go-libp2p-daemon ``p2pd`` from hivemind's
wheel) over loopback: connections, identify, ping and streams both ways, and how we report a
go peer that lacks a protocol or is not a relay (issue 10, item 4)."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import trio

from libp2p import Host, HostConfig, ping
from libp2p.exceptions import Libp2pError, ProtocolNotSupported
from libp2p.identify import PROTOCOL_ID as IDENTIFY
from libp2p.identify import PUSH_PROTOCOL_ID as IDENTIFY_PUSH
from libp2p.network.connection import NetStream
from tests.integration.test_perf_cli import run_perf_client
from tests.interop.go.p2pd_control_pb2 import StreamInfo
from tests.interop.gopeer import AGENT, GoPeerError, go_peer, require_go_peer

pytestmark = pytest.mark.interop

ECHO = "/echo/1.0.0"


@pytest.fixture(autouse=True)
def _need_go_peer() -> None:
    require_go_peer()


def _host() -> Host:
    # AutoNAT's client would ask go (which serves no AutoNAT here) and log; not under test.
    return Host(listen=["/ip4/127.0.0.1/tcp/0"], config=HostConfig(autonat_client=None))


async def _echo(stream: NetStream) -> None:
    while chunk := await stream.receive_some(65536):
        await stream.send_all(chunk)
    await stream.aclose()


async def _go_echo(info: StreamInfo, stream: trio.abc.HalfCloseableStream) -> None:
    # p2pd closes our socket as soon as the remote half-closes: echo as bytes arrive.
    while chunk := await stream.receive_some(65536):
        await stream.send_all(chunk)


async def _read_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = await stream.receive_some(n - len(got))
        assert chunk, f"EOF after {len(got)} of {n} bytes"
        got += chunk
    return bytes(got)


async def test_we_dial_go_identify_ping_and_echo_both_ways() -> None:
    data = os.urandom(100_000)
    with trio.fail_after(30):
        async with go_peer() as go, _host() as host:
            host.set_stream_handler(ECHO, _echo)
            await go.stream_handler([ECHO], _go_echo)
            conn = await host.connect(go.addr)
            assert conn.remote_peer == go.id
            await host.identify.wait_identified(conn)
            # We identified go.
            assert host.peerstore.agent_version(go.id) == AGENT
            assert {IDENTIFY, IDENTIFY_PUSH, ping.PROTOCOL_ID, ECHO} <= host.peerstore.protocols(
                go.id
            )
            # Ping go.
            stream = await host.new_stream(go.id, ping.PROTOCOL_ID)
            rtts = await ping.ping(stream, count=3)
            await stream.aclose()
            assert len(rtts) == 3
            # Echo through go (its handler is our unix socket), then go opens one to us.
            stream = await host.new_stream(go.id, ECHO)
            await stream.send_all(data)
            assert await _read_exactly(stream, len(data)) == data
            await stream.aclose()
            info, piped = await go.stream_open(host.peer_id, [ECHO])
            assert info.proto == ECHO
            async with piped:
                await piped.send_all(data)
                assert await _read_exactly(piped, len(data)) == data
            # go waits for identify before it opens a stream: by now it has identified us.
            views = await go.dump_peers()
            mine = views[str(host.peer_id)]
            assert mine.agent == host.config.agent_version
            assert {IDENTIFY, IDENTIFY_PUSH, ping.PROTOCOL_ID, ECHO} <= set(mine.protocols)


async def test_go_dials_us_and_we_ping_it() -> None:
    with trio.fail_after(30):
        async with go_peer() as go, _host() as host:
            await go.connect(host.peer_id, host.listen_addrs)
            assert str(host.peer_id) in await go.list_peers()
            conn = await host.wait_for_connection(go.id)
            await host.identify.wait_identified(conn)
            assert host.peerstore.agent_version(go.id) == AGENT
            stream = await host.new_stream(go.id, ping.PROTOCOL_ID)
            assert len(await ping.ping(stream, count=2)) == 2
            await stream.aclose()
            # go opens a stream to a protocol we added after the connection was identified.
            host.set_stream_handler(ECHO, _echo)
            _info, piped = await go.stream_open(host.peer_id, [ECHO])
            async with piped:
                await piped.send_all(b"go to us")
                assert await _read_exactly(piped, 8) == b"go to us"
            await go.disconnect(host.peer_id)
            await conn.wait_closed()


async def _try_missing_protocol(host: Host, go_id: object) -> str:
    """Open ``/nope/1.0.0`` on go, write a request and half-close (as a request/response
    client does), then read: the name of what was raised."""
    try:
        stream = await host.new_stream(go_id, "/nope/1.0.0")  # type: ignore[arg-type]
        await stream.send_all(b"a request go will never read\n")
        await stream.send_eof()
        got = await stream.receive_some()
    except Libp2pError as exc:
        return type(exc).__name__
    return f"no error (read {got!r})"


async def test_go_lacks_protocol_is_protocol_not_supported_every_time() -> None:
    """Item 4: go answers ``na`` and resets when request bytes followed the proposal; we must
    report the refusal (ProtocolNotSupported), not the reset, on every try."""
    with trio.fail_after(30):
        async with go_peer() as go, _host() as host:
            await host.connect(go.addr)
            outcomes = [await _try_missing_protocol(host, go.id) for _ in range(20)]
            assert outcomes == ["ProtocolNotSupported"] * 20, Counter(outcomes)
            # The connection survived the refusals.
            stream = await host.new_stream(go.id, ping.PROTOCOL_ID)
            assert len(await ping.ping(stream)) == 1
            await stream.aclose()


async def test_go_asking_us_for_a_protocol_we_lack_gets_a_refusal() -> None:
    with trio.fail_after(30):
        async with go_peer() as go, _host() as host:
            conn = await host.connect(go.addr)
            # go opens streams only over a connection it has finished upgrading: identify
            # having run both ways says it has.
            await host.identify.wait_identified(conn)
            for _ in range(3):
                with pytest.raises(GoPeerError, match="protocols not supported"):
                    await go.stream_open(host.peer_id, ["/nope/1.0.0"])
            assert host.connections_to(go.id) == [conn]


async def test_circuit_relay_through_a_go_relay() -> None:
    """p2pd serves Circuit Relay v2 (hop) by default: we reserve on it and another host of
    ours reaches us through it, over a connection go limits."""
    with trio.fail_after(30):
        async with go_peer() as go, _host() as host, _host() as other:
            host.set_stream_handler(ECHO, _echo, allow_limited=True)
            relayed = await host.listen(f"{go.addr}/p2p-circuit")
            assert relayed
            assert all("/p2p-circuit" in str(a) for a in relayed)
            conn = await other.connect(f"{relayed[0]}/p2p/{host.peer_id}")
            assert conn.remote_peer == host.peer_id
            assert conn.relayed
            assert conn.limited
            stream = await other.new_stream(host.peer_id, ECHO, allow_limited=True)
            await stream.send_all(b"through go")
            assert await _read_exactly(stream, 10) == b"through go"
            await stream.aclose()


async def test_reserving_on_go_peer_that_is_not_a_relay_says_so() -> None:
    """Item 4: p2pd with relaying off serves no hop protocol; reserving on it must say the
    peer is not a relay (not ask whether the relay is running)."""
    with trio.fail_after(30):
        async with go_peer(relay=False) as go, _host() as host:
            conn = await host.connect(go.addr)
            await host.identify.wait_identified(conn)
            assert "/libp2p/circuit/relay/0.2.0/hop" not in host.peerstore.protocols(go.id)
            with pytest.raises(Libp2pError) as raised:
                await host.listen(f"{go.addr}/p2p-circuit")
            assert "not a relay" in str(raised.value), repr(raised.value)
            assert not host.relay.relayed_addrs


async def test_perf_client_against_go_fails_fast_with_protocol_not_supported() -> None:
    """p2pd v0.32 does not serve /perf/1.0.0: the perf client must say so promptly."""
    async with go_peer() as go:
        run = await run_perf_client(
            go.addr, "--upload-bytes", "10", "--download-bytes", "10", time_limit=20
        )
    assert run.returncode != 0
    assert run.results == []
    assert run.error["type"] == "ProtocolNotSupported", run.error


def test_protocol_not_supported_is_a_libp2p_error() -> None:
    # What the tests above rely on when they catch Libp2pError.
    assert issubclass(ProtocolNotSupported, Libp2pError)
