"""Identify through the host, over loopback: both directions, push, records, observed addresses."""

from __future__ import annotations

from multiaddr import Multiaddr

from libp2p.crypto.keys import generate_ed25519
from libp2p.events import PeerIdentified
from libp2p.host import Host, HostConfig
from libp2p.identify import PROTOCOL_ID, IdentifyInfo, encode_identify, send_identify
from libp2p.network.connection import NetStream
from libp2p.network.swarm import Swarm
from libp2p.peer.record import seal_peer_record
from libp2p.varint import encode_lp


async def test_identify_both_directions() -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b, Host() as a:
        b.set_stream_handler("/app/1.0.0", _noop)
        with a.events.subscribe(PeerIdentified) as ev_a, b.events.subscribe(PeerIdentified) as ev_b:
            conn = await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
            seen_by_a = await ev_a.receive()
            seen_by_b = await ev_b.receive()
        assert seen_by_a.peer == b.peer_id
        assert "/app/1.0.0" in seen_by_a.protocols
        assert PROTOCOL_ID in a.peerstore.protocols(b.peer_id)
        assert seen_by_a.agent_version == HostConfig().agent_version
        # b's addresses came from its signed peer record, which a verified.
        assert b.listen_addrs[0] in a.peerstore.addrs(b.peer_id)
        assert not a.peerstore.accept_record_seq(b.peer_id, 0)
        # b saw a's end of the connection.
        assert seen_by_b.peer == a.peer_id
        assert seen_by_a.observed_addr == conn.local_addr


async def test_push_announces_new_protocols() -> None:
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b, Host() as a:
        with a.events.subscribe(PeerIdentified) as events:
            await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
            await events.receive()
            assert not a.peerstore.supports(b.peer_id, "/late/1.0.0")
            b.set_stream_handler("/late/1.0.0", _noop)
            pushed = await events.receive()
        assert "/late/1.0.0" in pushed.protocols
        assert a.peerstore.supports(b.peer_id, "/late/1.0.0")


async def test_observed_address_becomes_candidate_with_enough_observers() -> None:
    one = HostConfig(min_observers=1)
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=one) as a,
        Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b,
        Host(listen=["/ip4/127.0.0.1/tcp/0"]) as c,
    ):
        with a.events.subscribe(PeerIdentified) as events:
            await a.connect(f"{b.listen_addrs[0]}/p2p/{b.peer_id}")
            await events.receive()
            await a.connect(f"{c.listen_addrs[0]}/p2p/{c.peer_id}")
            await events.receive()
        # a dialed from its listen port, so both peers saw a's listen address.
        assert a.address_candidates() == [a.listen_addrs[0]]
        # Both observers are 127.0.0.1: one observer group, not two.
        assert a.address_candidates(min_observers=2) == []


async def test_bad_record_and_bad_key_are_not_believed() -> None:
    liar_key, other_key = generate_ed25519(), generate_ed25519()
    fake_addr = Multiaddr("/ip4/198.51.100.9/tcp/9")

    async def lying_identify(stream: NetStream) -> None:
        info = IdentifyInfo(
            public_key=liar_key.public_key,
            listen_addrs=(Multiaddr("/ip4/192.0.2.1/tcp/1"),),
            protocols=(PROTOCOL_ID,),
            # A record signed by someone else's key, claiming another address.
            signed_peer_record=seal_peer_record(other_key, [fake_addr]),
        )
        await send_identify(stream, info)
        await stream.aclose()

    async with Swarm(liar_key) as liar, Host() as a:
        liar.set_stream_handler(PROTOCOL_ID, lying_identify)
        (addr,) = await liar.listen("/ip4/127.0.0.1/tcp/0")
        with a.events.subscribe(PeerIdentified) as events:
            await a.connect(f"{addr}/p2p/{liar.peer_id}")
            event = await events.receive()
        assert event.peer == liar.peer_id
        addrs = a.peerstore.addrs(liar.peer_id)
        assert fake_addr not in addrs
        assert Multiaddr("/ip4/192.0.2.1/tcp/1") in addrs


async def test_malformed_identify_leaves_connection_up() -> None:
    async def garbage(stream: NetStream) -> None:
        await stream.send_all(encode_lp(b"\xff\xff\xff\xff"))
        await stream.aclose()

    async def oversized(stream: NetStream) -> None:
        await stream.send_all(encode_lp(b"\x00" * 9000))
        await stream.aclose()

    for handler in (garbage, oversized):
        async with Swarm(generate_ed25519()) as bad, Host() as a:
            bad.set_stream_handler(PROTOCOL_ID, handler)
            (addr,) = await bad.listen("/ip4/127.0.0.1/tcp/0")
            conn = await a.connect(f"{addr}/p2p/{bad.peer_id}")
            await a.identify.wait_identified(conn)
            assert a.peerstore.protocols(bad.peer_id) == set()
            assert not conn.is_closed


async def test_identify_message_size_cap() -> None:
    # Our own message stays within rust's 4 KiB limit even with many protocols registered.
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as b:
        for i in range(60):
            b.set_stream_handler(f"/a/rather/long/protocol/name/number/{i:03d}/1.0.0", _noop)
        assert len(encode_identify(b.identify.local_info(None))) <= 4096


async def _noop(stream: NetStream) -> None:
    await stream.aclose()
