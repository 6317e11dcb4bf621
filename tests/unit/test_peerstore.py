"""Peerstore: address TTLs driven by an injected clock, protocols, keys, record sequence."""

from __future__ import annotations

import math

import pytest
from multiaddr import Multiaddr

from libp2p.crypto.keys import generate_ed25519
from libp2p.exceptions import RemoteProtocolError
from libp2p.peer.id import PeerID
from libp2p.peer.peerstore import PeerInfo, Peerstore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _peer() -> tuple[PeerID, object]:
    key = generate_ed25519()
    return PeerID.from_public_key(key.public_key), key


def test_addresses_expire_and_keep_the_later_deadline() -> None:
    clock = Clock()
    ps = Peerstore(clock)
    peer, _ = _peer()
    a, b = Multiaddr("/ip4/192.0.2.1/tcp/1"), Multiaddr("/ip4/192.0.2.2/tcp/2")
    ps.add_addrs(peer, [a], ttl=10)
    ps.add_addrs(peer, [b], ttl=math.inf)
    ps.add_addrs(peer, [a], ttl=5)  # shorter: the earlier, later deadline stays
    clock.now = 9
    assert set(map(str, ps.addrs(peer))) == {str(a), str(b)}
    clock.now = 10
    assert ps.addrs(peer) == [b]
    ps.set_addr_ttl(peer, b, 1)
    clock.now = 11
    assert ps.addrs(peer) == []


def test_protocols_and_versions() -> None:
    ps = Peerstore()
    peer, _ = _peer()
    ps.set_protocols(peer, ["/a", "/b"])
    assert ps.supports(peer, "/a")
    assert not ps.supports(peer, "/c")
    ps.set_protocols(peer, ["/c"])
    assert ps.protocols(peer) == {"/c"}
    ps.set_versions(peer, agent_version="x/1", protocol_version=None)
    assert ps.agent_version(peer) == "x/1"


def test_public_key_must_match_peer() -> None:
    ps = Peerstore()
    peer, key = _peer()
    other = generate_ed25519().public_key
    with pytest.raises(RemoteProtocolError):
        ps.add_public_key(peer, other)
    # Ed25519 IDs inline their key.
    assert ps.public_key(peer) == key.public_key  # type: ignore[attr-defined]


def test_record_seq_only_grows() -> None:
    ps = Peerstore()
    peer, _ = _peer()
    assert ps.accept_record_seq(peer, 5)
    assert not ps.accept_record_seq(peer, 5)
    assert not ps.accept_record_seq(peer, 4)
    assert ps.accept_record_seq(peer, 6)


def test_peer_info_from_multiaddr() -> None:
    peer, _ = _peer()
    info = PeerInfo.from_multiaddr(f"/ip4/192.0.2.1/tcp/4001/p2p/{peer}")
    assert info.peer_id == peer
    assert [str(a) for a in info.addrs] == ["/ip4/192.0.2.1/tcp/4001"]
    assert PeerInfo.from_multiaddr(f"/p2p/{peer}").addrs == ()
    with pytest.raises(ValueError, match="p2p"):
        PeerInfo.from_multiaddr("/ip4/192.0.2.1/tcp/4001")
