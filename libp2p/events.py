"""Typed events and the bus that delivers them.

Everything a host does that an application may want to react to -- a connection opened or
closed, a peer identified, a new address candidate -- is published as a frozen dataclass on an
:class:`EventBus`. Subscribers get a trio receive channel::

    with host.events.subscribe(ConnectionOpened, ConnectionClosed) as events:
        async for event in events:
            print(event)

Every event describes itself (:class:`Describes`): ``event.describe()`` is one line for
people and ``event.to_dict()`` the same facts as a JSON-ready dict, under the name
``event.kind``; :class:`libp2p.console.Console` prints events either way::

    print(event.describe())   # inbound direct connection from 12D3KooW... (/ip4/...)
    json.dumps({"event": event.kind, **event.to_dict()})

Publishing never blocks the host: each subscription has a bounded buffer, and a subscriber
that falls that far behind loses the newest events (counted in
:attr:`Subscription.dropped`) rather than stalling connections for everyone. The bus is for
applications; the host's own services never depend on it (they get reliable notifications
from the swarm and from identify, see :meth:`Swarm.observe
<libp2p.network.swarm.Swarm.observe>`), so a slow subscriber can lose only its own events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, overload, runtime_checkable

import trio
from multiaddr import Multiaddr

from .peer.id import PeerID

if TYPE_CHECKING:
    from .network.connection import Connection, Direction

__all__ = [
    "ConnectionClosed",
    "Describes",
    "ConnectionOpened",
    "Event",
    "EventBus",
    "PeerIdentified",
    "Subscription",
]

logger = logging.getLogger(__name__)

_T1 = TypeVar("_T1")


@runtime_checkable
class Describes(Protocol):
    """An event that describes itself, for a log line or a JSON line.

    Every event the host publishes has these three; ``describe()`` and ``to_dict()`` carry the
    same facts (the dict's values are JSON types: str, int, float, bool, None, lists, dicts).
    """

    #: The event's name in JSON output, e.g. ``"hole_punch"`` (events that are two outcomes of
    #: one thing share it, and a field tells them apart: ``ok`` for hole punches).
    kind: ClassVar[str]

    def describe(self) -> str:
        """One line for people (a few more, indented, where a list follows)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The facts of the event as a JSON-ready dict."""
        ...


def opt_str(value: object | None) -> str | None:
    """``str(value)``, or ``None`` for ``None`` (for JSON fields that may be absent)."""
    return None if value is None else str(value)


def _connection_words(direction: Direction, relayed: bool, peer: PeerID) -> str:
    # Who dialed whom: we dialed out "to" a peer, a peer dialed in "from" its side.
    towards = "to" if direction.value == "outbound" else "from"
    return f"{direction.value} {'relayed' if relayed else 'direct'} connection {towards} {peer}"


_T2 = TypeVar("_T2")
_T3 = TypeVar("_T3")


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """A connection finished upgrading and is ready for streams."""

    connection: Connection
    peer: PeerID
    direction: Direction
    remote_addr: Multiaddr | None
    #: True for a connection through a relay (``/p2p-circuit``).
    relayed: bool
    #: True when a relay limits the connection's duration or data.
    limited: bool

    kind: ClassVar[str] = "connection_opened"

    def describe(self) -> str:
        limits = f", limited: {self.connection.limit}" if self.limited else ""
        words = _connection_words(self.direction, self.relayed, self.peer)
        return f"{words} ({self.remote_addr}{limits})"

    def to_dict(self) -> dict[str, Any]:
        return _connection_fields(self)


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """A connection ended (either side closed it, or it failed)."""

    connection: Connection
    peer: PeerID
    direction: Direction
    remote_addr: Multiaddr | None
    relayed: bool
    limited: bool
    #: Seconds the connection was open.
    duration: float

    kind: ClassVar[str] = "connection_closed"

    def describe(self) -> str:
        words = _connection_words(self.direction, self.relayed, self.peer)
        return f"{words} closed after {self.duration:.1f} s ({self.remote_addr})"

    def to_dict(self) -> dict[str, Any]:
        return {**_connection_fields(self), "duration": round(self.duration, 3)}


def _connection_fields(event: ConnectionOpened | ConnectionClosed) -> dict[str, Any]:
    return {
        "peer": str(event.peer),
        "remote_addr": opt_str(event.remote_addr),
        "relayed": event.relayed,
        "limited": event.limited,
        "direction": event.direction.value,
    }


@dataclass(frozen=True, slots=True)
class PeerIdentified:
    """Identify completed on a connection: the peer's addresses and protocols are known."""

    connection: Connection
    peer: PeerID
    protocols: tuple[str, ...]
    listen_addrs: tuple[Multiaddr, ...]
    agent_version: str | None
    #: How the peer sees our end of the connection, if it said.
    observed_addr: Multiaddr | None

    kind: ClassVar[str] = "peer_identified"

    def describe(self) -> str:
        agent = self.agent_version or "no agent version"
        sees = f"; it sees us at {self.observed_addr}" if self.observed_addr else ""
        return (
            f"identified {self.peer} ({agent}): {len(self.protocols)} protocols, "
            f"{len(self.listen_addrs)} listen addresses{sees}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": str(self.peer),
            "agent_version": self.agent_version,
            "protocols": list(self.protocols),
            "listen_addrs": [str(a) for a in self.listen_addrs],
            "observed_addr": opt_str(self.observed_addr),
        }


Event = ConnectionOpened | ConnectionClosed | PeerIdentified


class Subscription:
    """One subscriber's filtered, bounded queue of events."""

    def __init__(self, types: tuple[type[Any], ...], buffer: int) -> None:
        self.types = types
        self._send, self.receive = trio.open_memory_channel[Any](buffer)
        #: Events lost because this subscriber's buffer was full.
        self.dropped = 0

    def _offer(self, event: object) -> None:
        if self.types and not isinstance(event, self.types):
            return
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("event subscriber too slow: %d events dropped", self.dropped)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the subscriber stopped listening; it is removed when its block exits


class EventBus:
    """Fan-out of events to subscribers; publishing never blocks."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []

    def publish(self, event: object) -> None:
        """Deliver ``event`` to every subscription whose types match."""
        for sub in list(self._subs):
            sub._offer(event)

    @overload
    def subscribe(
        self, t1: type[_T1], /, *, buffer: int = ...
    ) -> AbstractContextManager[trio.MemoryReceiveChannel[_T1]]: ...
    @overload
    def subscribe(
        self, t1: type[_T1], t2: type[_T2], /, *, buffer: int = ...
    ) -> AbstractContextManager[trio.MemoryReceiveChannel[_T1 | _T2]]: ...
    @overload
    def subscribe(
        self, t1: type[_T1], t2: type[_T2], t3: type[_T3], /, *, buffer: int = ...
    ) -> AbstractContextManager[trio.MemoryReceiveChannel[_T1 | _T2 | _T3]]: ...
    @overload
    def subscribe(
        self, *types: type[Any], buffer: int = ...
    ) -> AbstractContextManager[trio.MemoryReceiveChannel[Any]]: ...
    def subscribe(
        self, *types: type[Any], buffer: int = 256
    ) -> AbstractContextManager[trio.MemoryReceiveChannel[Any]]:
        """Receive events of ``types`` (all events if none) for the duration of the block.

        The channel is typed by what was asked for: ``subscribe(HolePunchSucceeded)`` yields
        ``HolePunchSucceeded`` objects, ``subscribe(A, B)`` yields ``A | B``.
        """
        return self._subscribe(types, buffer)

    @contextmanager
    def _subscribe(
        self, types: tuple[type[Any], ...], buffer: int
    ) -> Iterator[trio.MemoryReceiveChannel[Any]]:
        sub = Subscription(types, buffer)
        self._subs.append(sub)
        try:
            yield sub.receive
        finally:
            self._subs.remove(sub)
            sub._send.close()

    @property
    def subscriber_count(self) -> int:
        """Number of active subscriptions."""
        return len(self._subs)
