"""Our stack to our stack over real loopback sockets: dial, streams, roles, failures."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

from libp2p import ping
from libp2p.crypto.keys import PrivateKey, generate_ed25519, generate_secp256k1
from libp2p.exceptions import PeerIDMismatch, ProtocolNotSupported
from libp2p.network.connection import Direction, NetStream
from libp2p.network.swarm import Swarm
from libp2p.network.upgrader import UpgradedConnection, upgrade
from libp2p.peer.id import PeerID
from tests.interop.interop_protocols import ECHO, echo_handler, echo_roundtrip

MIB = 1 << 20


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    """Read until EOF."""
    data = bytearray()
    while chunk := await stream.receive_some():
        data += chunk
    return bytes(data)


async def test_dial_ping_and_echo_several_mib() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_secp256k1()) as b:
        b.set_stream_handler(ping.PROTOCOL_ID, ping.handle_ping)
        b.set_stream_handler(ECHO, echo_handler)
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        conn = await a.dial(f"{addr}/p2p/{b.peer_id}")
        assert conn.remote_peer == b.peer_id
        assert conn.direction is Direction.OUTBOUND
        assert conn.is_initiator
        stream = await conn.new_stream(ping.PROTOCOL_ID)
        assert len(await ping.ping(stream, count=3)) == 3
        await stream.aclose()
        data = os.urandom(5 * MIB + 1)
        echo = await conn.new_stream(ECHO)
        assert await echo_roundtrip(echo, data) == data
        # The listener sees the connection too, inbound and as responder.
        (back,) = b.connections_to(a.peer_id)
        assert back.direction is Direction.INBOUND
        assert not back.is_initiator


async def test_many_streams_concurrently() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        b.set_stream_handler(ECHO, echo_handler)
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        conn = await a.dial(f"{addr}/p2p/{b.peer_id}")
        results: dict[int, bool] = {}

        async def one(i: int) -> None:
            data = os.urandom(200_000 + i)
            stream = await conn.new_stream(ECHO)
            results[i] = await echo_roundtrip(stream, data) == data

        async with trio.open_nursery() as n:
            for i in range(40):
                n.start_soon(one, i)
        assert results == {i: True for i in range(40)}


async def test_wrong_peer_id_is_refused() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        impostor = PeerID.from_public_key(generate_ed25519().public_key)
        with pytest.raises(PeerIDMismatch):
            await a.dial(f"{addr}/p2p/{impostor}")
        assert a.connections == []


async def test_unsupported_protocol_and_multi_proposal() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        b.set_stream_handler(ping.PROTOCOL_ID, ping.handle_ping)
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        conn = await a.dial(addr)
        with pytest.raises(ProtocolNotSupported):
            await conn.new_stream("/not/here")
        lazy = await conn.new_stream("/not/here", lazy=True)
        with pytest.raises(ProtocolNotSupported):
            await lazy.receive_some()
        with pytest.raises(ProtocolNotSupported):
            await conn.new_stream(["/x", "/y"])
        chosen = await conn.new_stream(["/x", ping.PROTOCOL_ID])
        assert chosen.protocol == ping.PROTOCOL_ID
        assert len(await ping.ping(chosen)) == 1


async def test_failing_handler_costs_only_its_stream() -> None:
    async def broken(stream: NetStream) -> None:
        await stream.receive_some()
        raise RuntimeError("application bug")

    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        b.set_stream_handler("/broken", broken)
        b.set_stream_handler(ECHO, echo_handler)
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        conn = await a.dial(addr)
        echo = await conn.new_stream(ECHO)
        await echo.send_all(b"before")
        bad = await conn.new_stream("/broken")
        await bad.send_all(b"boom")
        with pytest.raises(trio.BrokenResourceError):
            await read_all(bad)
        await echo.send_all(b"-after")
        await echo.send_eof()
        got = b""
        while chunk := await echo.receive_some():
            got += chunk
        assert got == b"before-after"
        assert not conn.is_closed


async def test_garbage_connection_does_not_hurt_listener() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        b.set_stream_handler(ping.PROTOCOL_ID, ping.handle_ping)
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        host, port = str(addr).split("/")[2], int(str(addr).split("/")[4])
        junk = await trio.open_tcp_stream(host, port)
        # A Noise message 1 must be 32 bytes: this one is 5.
        await junk.send_all(b"\x13/multistream/1.0.0\n\x07/noise\n\x00\x05" + b"\xff" * 5)
        # The listener closes the junk connection ...
        while await junk.receive_some():
            pass
        # ... and keeps serving real peers.
        conn = await a.dial(f"{addr}/p2p/{b.peer_id}")
        stream = await conn.new_stream(ping.PROTOCOL_ID)
        assert len(await ping.ping(stream)) == 1


async def test_stalled_peer_is_dropped_after_accept_timeout() -> None:
    async with Swarm(generate_ed25519(), accept_timeout=0.5) as b:
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        host, port = str(addr).split("/")[2], int(str(addr).split("/")[4])
        staller = await trio.open_tcp_stream(host, port)
        # Announces a 65535-byte Noise message, then never sends it.
        await staller.send_all(b"\x13/multistream/1.0.0\n\x07/noise\n\xff\xff")
        with trio.fail_after(10):
            while await staller.receive_some():
                pass
        assert b.connections == []


async def test_roles_independent_of_connect() -> None:
    # After a TCP simultaneous open both sides called connect(); DCUtR decides the roles.
    # Here the side that *accepted* the socket acts as initiator, the dialer as responder.
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        b.set_stream_handler(ECHO, echo_handler)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        results: dict[str, object] = {}

        async def acceptor() -> None:
            raw = await listeners[0].accept()
            results["a"] = await a.upgrade_stream(
                raw, initiator=True, direction=Direction.INBOUND, expected_peer=b.peer_id
            )

        async with trio.open_nursery() as n:
            n.start_soon(acceptor)
            raw = await trio.open_tcp_stream("127.0.0.1", port)
            results["b"] = await b.upgrade_stream(
                raw, initiator=False, direction=Direction.OUTBOUND
            )
        conn_a = results["a"]
        assert conn_a.is_initiator is True
        assert results["b"].is_initiator is False
        stream = await a.new_stream(b.peer_id, ECHO)
        assert await echo_roundtrip(stream, b"roles") == b"roles"
        await listeners[0].aclose()


async def test_upgrade_over_memory_streams() -> None:
    # The upgrader takes any trio stream: no socket involved at all.
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        b.set_stream_handler(ECHO, echo_handler)
        left, right = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as n:
            n.start_soon(
                lambda: b.upgrade_stream(right, initiator=False, direction=Direction.INBOUND)
            )
            conn = await a.upgrade_stream(left, initiator=True, direction=Direction.OUTBOUND)
        stream = await conn.new_stream(ECHO)
        assert await echo_roundtrip(stream, b"x" * 300_000) == b"x" * 300_000


async def test_closing_connection_ends_streams() -> None:
    async with Swarm(generate_ed25519()) as a, Swarm(generate_ed25519()) as b:
        b.set_stream_handler(ECHO, echo_handler)
        (addr,) = await b.listen("/ip4/127.0.0.1/tcp/0")
        conn = await a.dial(addr)
        stream = await conn.new_stream(ECHO)
        await stream.send_all(b"hi")
        await conn.aclose()
        await conn.wait_closed()
        assert conn.is_closed
        # Not a clean EOF: the stream did not end, its connection went away.
        with pytest.raises(trio.BrokenResourceError):
            await read_all(stream)
        assert a.connections_to(b.peer_id) == []


@pytest.mark.parametrize(("inline_a", "inline_b"), [(True, True), (True, False), (False, True)])
async def test_muxer_inlined_or_negotiated(inline_a: bool, inline_b: bool) -> None:
    # The muxer is agreed inside Noise only when both sides offer it; otherwise a second
    # multistream-select runs over the encrypted channel (rust never offers one).
    key_a, key_b = generate_ed25519(), generate_ed25519()
    left, right = trio.testing.memory_stream_pair()
    results: dict[str, UpgradedConnection] = {}

    async def side(name: str, raw: trio.abc.Stream, key: PrivateKey, init: bool, inl: bool) -> None:
        results[name] = await upgrade(raw, key, initiator=init, inline_muxer=inl)

    async with trio.open_nursery() as n:
        n.start_soon(side, "a", left, key_a, True, inline_a)
        n.start_soon(side, "b", right, key_b, False, inline_b)
    expected = inline_a and inline_b
    assert results["a"].early_muxer is expected
    assert results["b"].early_muxer is expected
    async with trio.open_nursery() as n:
        await n.start(results["a"].muxer.run)
        await n.start(results["b"].muxer.run)
        out = await results["a"].muxer.open_stream()
        await out.send_all(b"over yamux")
        await out.send_eof()
        inbound = await results["b"].muxer.accept_stream()
        got = b""
        while chunk := await inbound.receive_some():
            got += chunk
        assert got == b"over yamux"
        n.cancel_scope.cancel()
