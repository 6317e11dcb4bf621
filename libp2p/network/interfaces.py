"""Narrow views of the swarm and the event bus that the host's services are typed with.

The services (relay, relay client, auto-relay, DCUtR, AutoNAT, identify) name just what they
use of their host as :class:`typing.Protocol` classes, and the :class:`~libp2p.host.Host`
satisfies them structurally (mypy checks it where the host builds them). The pieces several
services share live here; each service composes its own host interface from them.
"""

from __future__ import annotations

from typing import Protocol

import trio
from multiaddr import Multiaddr

from ..multistream import RoleRule
from ..peer.id import PeerID
from .connection import Connection, ConnectionLimit, Direction
from .swarm import ConnectionObserver

__all__ = ["EventPublisher", "ObservesConnections", "UpgradesStreams"]


class EventPublisher(Protocol):
    """Publishes events for applications (:class:`~libp2p.events.EventBus`)."""

    def publish(self, event: object) -> None: ...


class ObservesConnections(Protocol):
    """Reliable connection notifications (:meth:`Swarm.observe
    <libp2p.network.swarm.Swarm.observe>`)."""

    def observe(self, observer: ConnectionObserver) -> None: ...

    def unobserve(self, observer: ConnectionObserver) -> None: ...


class UpgradesStreams(Protocol):
    """Runs the connection pipeline over any byte stream in a given role
    (:meth:`Swarm.upgrade_stream <libp2p.network.swarm.Swarm.upgrade_stream>`)."""

    async def upgrade_stream(
        self,
        raw: trio.abc.Stream,
        *,
        initiator: bool,
        direction: Direction,
        expected_peer: PeerID | None = None,
        local_addr: Multiaddr | None = None,
        remote_addr: Multiaddr | None = None,
        relayed: bool = False,
        limit: ConnectionLimit | None = None,
        role_rule: RoleRule | None = None,
        role_patience: float = 0.0,
    ) -> Connection: ...
