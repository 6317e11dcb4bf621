"""What the relay service, the relay client and auto-relay need from their host.

Each service names just the members it uses, as a :class:`typing.Protocol`, instead of
depending on the whole :class:`~libp2p.host.Host` and its swarm: the host satisfies them
structurally (mypy checks it where the host builds the services), and a test or another host
can provide them alone. Connection notifications come from
:meth:`Swarm.observe <libp2p.network.swarm.Swarm.observe>` (reliable, synchronous), never from
the public event bus, which may drop events for a slow subscriber; the bus is only where the
services *publish* their events for applications.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import trio
from multiaddr import Multiaddr

from ...crypto.keys import PrivateKey
from ...network.connection import Connection, StreamHandler
from ...network.interfaces import EventPublisher, ObservesConnections, UpgradesStreams
from ...network.swarm import CircuitDialer
from ...peer.id import PeerID

if TYPE_CHECKING:
    from ...host.autonat.events import ReachabilityChanged

__all__ = [
    "AddressBook",
    "AutoRelayHost",
    "ClientSwarm",
    "IdentifyHandle",
    "ReachabilitySource",
    "RelayClientHost",
    "RelayServiceHost",
    "Reserver",
    "Timeouts",
]


class RelayServiceHost(Protocol):
    """What :class:`~.relay.RelayService` uses."""

    @property
    def key(self) -> PrivateKey: ...

    @property
    def peer_id(self) -> PeerID: ...

    @property
    def addrs(self) -> list[Multiaddr]: ...

    @property
    def events(self) -> EventPublisher: ...

    @property
    def swarm(self) -> ObservesConnections: ...

    def set_stream_handler(
        self, protocol: str, handler: StreamHandler, *, allow_limited: bool = False
    ) -> None: ...

    def connections_to(self, peer: PeerID) -> list[Connection]: ...


class ClientSwarm(ObservesConnections, UpgradesStreams, Protocol):
    """The swarm members the relay client uses: dialing, and upgrading a relayed pipe."""

    circuit_dialer: CircuitDialer | None

    async def dial_peer(self, peer: PeerID, addrs: list[Multiaddr]) -> Connection: ...


class Timeouts(Protocol):
    """The host's handshake time limits."""

    @property
    def dial_timeout(self) -> float: ...

    @property
    def accept_timeout(self) -> float: ...


class AddressBook(Protocol):
    """What the peerstore knows of a peer: its addresses and announced protocols."""

    def addrs(self, peer: PeerID) -> list[Multiaddr]: ...

    def protocols(self, peer: PeerID) -> set[str]: ...


class IdentifyHandle(Protocol):
    """Identify, as the relay client uses it."""

    def notify_changed(self) -> None: ...

    async def wait_identified(self, conn: Connection) -> None: ...


class RelayClientHost(Protocol):
    """What :class:`~.client.RelayClient` uses."""

    @property
    def peer_id(self) -> PeerID: ...

    @property
    def nursery(self) -> trio.Nursery: ...

    @property
    def events(self) -> EventPublisher: ...

    @property
    def swarm(self) -> ClientSwarm: ...

    @property
    def peerstore(self) -> AddressBook: ...

    @property
    def identify(self) -> IdentifyHandle: ...

    @property
    def config(self) -> Timeouts: ...

    def set_stream_handler(
        self, protocol: str, handler: StreamHandler, *, allow_limited: bool = False
    ) -> None: ...

    def connections_to(self, peer: PeerID) -> list[Connection]: ...


class Reserver(Protocol):
    """The relay client, as auto-relay uses it."""

    @property
    def reservations(self) -> Mapping[PeerID, object]: ...

    async def listen(self, addr: Multiaddr | str) -> Sequence[Multiaddr]: ...

    async def stop_listening(self, relay: PeerID) -> None: ...


class ReachabilitySource(Protocol):
    """Reliable reachability notifications (the AutoNAT client)."""

    @property
    def on_reachability_changed(self) -> list[Callable[[ReachabilityChanged], None]]: ...


class AutoRelayHost(Protocol):
    """What :class:`~libp2p.host.autorelay.AutoRelay` uses."""

    @property
    def events(self) -> EventPublisher: ...

    @property
    def autonat(self) -> ReachabilitySource | None: ...

    @property
    def relay(self) -> Reserver: ...

    async def connect(self, target: Multiaddr | str) -> Connection: ...
