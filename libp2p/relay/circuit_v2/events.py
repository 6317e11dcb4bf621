"""Events of the relay client, published on the host's :class:`~libp2p.events.EventBus`::

with host.events.subscribe(ReservationMade, ReservationLost) as events:
    async for event in events:
        print(event)
"""

from __future__ import annotations

from dataclasses import dataclass

from ...peer.id import PeerID
from .reservation import Reservation

__all__ = [
    "ReservationAttemptFailed",
    "ReservationLost",
    "ReservationMade",
    "ReservationRefreshed",
    "ReservationRefused",
]


@dataclass(frozen=True, slots=True)
class ReservationMade:
    """A relay accepted our reservation: we are reachable through it."""

    reservation: Reservation


@dataclass(frozen=True, slots=True)
class ReservationRefreshed:
    """A reservation was renewed before it expired."""

    reservation: Reservation


@dataclass(frozen=True, slots=True)
class ReservationLost:
    """We are no longer reachable through ``relay`` (its addresses are withdrawn)."""

    relay: PeerID
    #: Why: the connection to the relay closed, or the reservation expired.
    reason: str


@dataclass(frozen=True, slots=True)
class ReservationRefused:
    """The relay answered ``RESERVE`` with an error status; we retry after ``retry_in``."""

    relay: PeerID
    #: The status code (see :class:`~libp2p.relay.circuit_v2.Status`).
    status: int
    reason: str
    retry_in: float


@dataclass(frozen=True, slots=True)
class ReservationAttemptFailed:
    """Reserving failed without a status (relay unreachable, bad answer); retried later."""

    relay: PeerID
    reason: str
    retry_in: float


# -- the relay service's events (published by :class:`~libp2p.relay.circuit_v2.RelayService`) --


@dataclass(frozen=True, slots=True)
class RelayReservationAccepted:
    """The relay gave ``peer`` a reservation (or refreshed it)."""

    peer: PeerID
    #: Seconds the reservation lasts.
    ttl: float
    #: True when the peer already held one (a refresh).
    refresh: bool


@dataclass(frozen=True, slots=True)
class RelayCircuitOpened:
    """The relay opened a circuit from ``src`` to ``dst``."""

    src: PeerID
    dst: PeerID


@dataclass(frozen=True, slots=True)
class RelayCircuitClosed:
    """A circuit ended; ``reason`` is ``"closed"`` (both ends closed), ``"limit"`` (a data or
    duration limit was reached) or ``"reset"`` (an end broke or reset)."""

    src: PeerID
    dst: PeerID
    #: Bytes relayed, both directions together.
    bytes: int
    reason: str
    #: Seconds the circuit was open.
    duration: float
