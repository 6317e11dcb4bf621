"""The peerstore: what we know about other peers (addresses with TTLs, protocols, keys).

Addresses expire: each is stored with a deadline, and an address learned again keeps the later
of its two deadlines. Time comes from a clock callable (``trio.current_time`` inside a host),
so tests can drive expiry with ``trio.testing.MockClock``.

A public key is only accepted for a peer ID it actually derives; a mismatch is the remote's
fault and raises :class:`~libp2p.exceptions.RemoteProtocolError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from multiaddr import Multiaddr

from ..crypto.keys import PublicKey
from ..exceptions import RemoteProtocolError
from .id import PeerID

__all__ = [
    "CONNECTED_ADDR_TTL",
    "PERMANENT_ADDR_TTL",
    "RECENTLY_CONNECTED_ADDR_TTL",
    "TEMP_ADDR_TTL",
    "PeerInfo",
    "Peerstore",
]

#: TTL of an address we are connected on (go ``ConnectedAddrTTL``: effectively permanent).
CONNECTED_ADDR_TTL = math.inf
#: TTL after a connection closes (go ``RecentlyConnectedAddrTTL``: 15 minutes).
RECENTLY_CONNECTED_ADDR_TTL = 15 * 60.0
#: TTL of addresses a user adds by hand.
PERMANENT_ADDR_TTL = math.inf
#: TTL of addresses from unverified sources (go ``TempAddrTTL``: 2 minutes).
TEMP_ADDR_TTL = 2 * 60.0

#: At most this many addresses are kept per peer (oldest deadline dropped first).
MAX_ADDRS_PER_PEER = 64
#: At most this many protocols are kept per peer.
MAX_PROTOCOLS_PER_PEER = 256


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A peer ID with addresses to reach it (what a user pastes as ``/ip4/.../p2p/<id>``)."""

    peer_id: PeerID
    addrs: tuple[Multiaddr, ...] = ()

    @classmethod
    def from_multiaddr(cls, maddr: Multiaddr | str) -> PeerInfo:
        """Parse ``<transport addr>/p2p/<id>``; the transport part may be empty."""
        text = str(maddr)
        head, sep, peer = text.rpartition("/p2p/")
        if not sep or "/" in peer:
            raise ValueError(f"{text} does not end in /p2p/<peer id>")
        addrs = (Multiaddr(head),) if head else ()
        return cls(PeerID.from_string(peer), addrs)


class _PeerData:
    __slots__ = (
        "addrs",
        "agent_version",
        "protocol_version",
        "protocols",
        "public_key",
        "record_seq",
    )

    def __init__(self) -> None:
        self.addrs: dict[bytes, tuple[Multiaddr, float]] = {}
        self.protocols: set[str] = set()
        self.public_key: PublicKey | None = None
        self.agent_version: str | None = None
        self.protocol_version: str | None = None
        self.record_seq: int | None = None


class Peerstore:
    """Addresses, protocols and keys of known peers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._peers: dict[PeerID, _PeerData] = {}

    def _data(self, peer: PeerID) -> _PeerData:
        data = self._peers.get(peer)
        if data is None:
            data = self._peers[peer] = _PeerData()
        return data

    def peers(self) -> list[PeerID]:
        """Every peer we know anything about."""
        return list(self._peers)

    def remove_peer(self, peer: PeerID) -> None:
        """Forget everything about ``peer``."""
        self._peers.pop(peer, None)

    # -- addresses ---------------------------------------------------------------------

    def add_addrs(self, peer: PeerID, addrs: Iterable[Multiaddr], ttl: float) -> None:
        """Remember ``addrs`` for ``peer`` for ``ttl`` seconds (``math.inf``: forever)."""
        data = self._data(peer)
        deadline = self._clock() + ttl
        for addr in addrs:
            key = addr.to_bytes()
            old = data.addrs.get(key)
            if old is None or old[1] < deadline:
                data.addrs[key] = (addr, deadline)
        if len(data.addrs) > MAX_ADDRS_PER_PEER:
            ordered = sorted(data.addrs.items(), key=lambda kv: kv[1][1], reverse=True)
            data.addrs = dict(ordered[:MAX_ADDRS_PER_PEER])

    def set_addr_ttl(self, peer: PeerID, addr: Multiaddr, ttl: float) -> None:
        """Set the TTL of one known address (e.g. when its connection closes)."""
        data = self._peers.get(peer)
        if data is not None and addr.to_bytes() in data.addrs:
            data.addrs[addr.to_bytes()] = (addr, self._clock() + ttl)

    def addrs(self, peer: PeerID) -> list[Multiaddr]:
        """Unexpired addresses of ``peer``."""
        data = self._peers.get(peer)
        if data is None:
            return []
        now = self._clock()
        expired = [k for k, (_, deadline) in data.addrs.items() if deadline <= now]
        for key in expired:
            del data.addrs[key]
        return [addr for addr, _ in data.addrs.values()]

    def clear_addrs(self, peer: PeerID) -> None:
        """Forget every address of ``peer``."""
        data = self._peers.get(peer)
        if data is not None:
            data.addrs.clear()

    # -- protocols ---------------------------------------------------------------------

    def set_protocols(self, peer: PeerID, protocols: Iterable[str]) -> None:
        """Replace the protocols ``peer`` says it supports."""
        self._data(peer).protocols = set(list(protocols)[:MAX_PROTOCOLS_PER_PEER])

    def protocols(self, peer: PeerID) -> set[str]:
        """Protocols ``peer`` announced (empty if unknown)."""
        data = self._peers.get(peer)
        return set(data.protocols) if data else set()

    def supports(self, peer: PeerID, protocol: str) -> bool:
        """Whether ``peer`` announced ``protocol``."""
        data = self._peers.get(peer)
        return data is not None and protocol in data.protocols

    # -- keys and metadata ---------------------------------------------------------------

    def add_public_key(self, peer: PeerID, key: PublicKey) -> None:
        """Store ``peer``'s public key; it must derive ``peer``."""
        if not peer.matches_public_key(key):
            raise RemoteProtocolError(f"a public key that is not {peer}'s was offered for it")
        self._data(peer).public_key = key

    def public_key(self, peer: PeerID) -> PublicKey | None:
        """``peer``'s public key: stored, or extracted from an inlined peer ID."""
        data = self._peers.get(peer)
        if data is not None and data.public_key is not None:
            return data.public_key
        return peer.extract_public_key()

    def set_versions(
        self, peer: PeerID, *, agent_version: str | None, protocol_version: str | None
    ) -> None:
        """Store the agent and protocol versions ``peer`` reported in identify."""
        data = self._data(peer)
        data.agent_version = agent_version
        data.protocol_version = protocol_version

    def agent_version(self, peer: PeerID) -> str | None:
        """The agent version ``peer`` reported, if any."""
        data = self._peers.get(peer)
        return data.agent_version if data else None

    def accept_record_seq(self, peer: PeerID, seq: int) -> bool:
        """Whether a signed peer record with ``seq`` is newer than the last accepted one.

        Accepting it records ``seq``; an older or equal one is refused.
        """
        data = self._data(peer)
        if data.record_seq is not None and seq <= data.record_seq:
            return False
        data.record_seq = seq
        return True

    def peer_info(self, peer: PeerID) -> PeerInfo:
        """``peer`` with its unexpired addresses."""
        return PeerInfo(peer, tuple(self.addrs(peer)))
