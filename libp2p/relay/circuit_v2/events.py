"""Events of the relay client, published on the host's :class:`~libp2p.events.EventBus`::

with host.events.subscribe(ReservationMade, ReservationLost) as events:
    async for event in events:
        print(event)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from ...peer.id import PeerID
from .reservation import Reservation

__all__ = [
    "ReservationAttemptFailed",
    "ReservationLost",
    "ReservationMade",
    "ReservationRefreshed",
    "ReservationRefused",
]


def _describe_reservation(r: Reservation, what: str) -> str:
    until = time.strftime("%H:%M:%S", time.localtime(r.expire))
    head = f"{what} on {r.relay} until {until} (limits: {r.limit or 'none'})"
    if not r.addrs:  # the relay named no address of its own, and we did not dial it
        return f"{head}; the relay gave no address to dial me at"
    return f"{head}; dial me at:" + "".join(f"\n    {a}" for a in r.dial_addrs)


def _reservation_dict(r: Reservation, refreshed: bool) -> dict[str, Any]:
    limit = r.limit
    return {
        "relay": str(r.relay),
        "relayed_addrs": [str(a) for a in r.dial_addrs],
        "expires": r.expire,
        "limits": None if limit is None else {"duration": limit.duration, "data": limit.data},
        "refreshed": refreshed,
    }


@dataclass(frozen=True, slots=True)
class ReservationMade:
    """A relay accepted our reservation: we are reachable through it."""

    reservation: Reservation

    kind: ClassVar[str] = "reservation"

    def describe(self) -> str:
        """``reserved on <relay> until <time> (limits: ...); dial me at:`` and, one per
        line, the addresses to give a dialer."""
        return _describe_reservation(self.reservation, "reserved")

    def to_dict(self) -> dict[str, Any]:
        return _reservation_dict(self.reservation, refreshed=False)


@dataclass(frozen=True, slots=True)
class ReservationRefreshed:
    """A reservation was renewed before it expired."""

    reservation: Reservation

    kind: ClassVar[str] = "reservation"

    def describe(self) -> str:
        return _describe_reservation(self.reservation, "reservation refreshed")

    def to_dict(self) -> dict[str, Any]:
        return _reservation_dict(self.reservation, refreshed=True)


@dataclass(frozen=True, slots=True)
class ReservationLost:
    """We are no longer reachable through ``relay`` (its addresses are withdrawn)."""

    relay: PeerID
    #: Why: the connection to the relay closed, or the reservation expired.
    reason: str

    kind: ClassVar[str] = "reservation_lost"

    def describe(self) -> str:
        return f"reservation on {self.relay} lost: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"relay": str(self.relay), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ReservationRefused:
    """The relay answered ``RESERVE`` with an error status; we retry after ``retry_in``."""

    relay: PeerID
    #: The status code (see :class:`~libp2p.relay.circuit_v2.Status`).
    status: int
    reason: str
    retry_in: float

    kind: ClassVar[str] = "reservation_failed"

    def describe(self) -> str:
        return (
            f"reserving on {self.relay} refused: {self.reason}; next try in {self.retry_in:.0f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "relay": str(self.relay),
            "status": self.status,
            "reason": self.reason,
            "retry_in": self.retry_in,
        }


@dataclass(frozen=True, slots=True)
class ReservationAttemptFailed:
    """Reserving failed without a status (relay unreachable, bad answer); retried later."""

    relay: PeerID
    reason: str
    retry_in: float

    kind: ClassVar[str] = "reservation_failed"

    def describe(self) -> str:
        return f"reserving on {self.relay} failed: {self.reason}; next try in {self.retry_in:.0f} s"

    def to_dict(self) -> dict[str, Any]:
        return {"relay": str(self.relay), "status": None, "reason": self.reason,
                "retry_in": self.retry_in}  # fmt: skip


# -- the relay service's events (published by :class:`~libp2p.relay.circuit_v2.RelayService`) --


@dataclass(frozen=True, slots=True)
class RelayReservationAccepted:
    """The relay gave ``peer`` a reservation (or refreshed it)."""

    peer: PeerID
    #: Seconds the reservation lasts.
    ttl: float
    #: True when the peer already held one (a refresh).
    refresh: bool

    kind: ClassVar[str] = "reservation"

    def describe(self) -> str:
        what = "refreshed" if self.refresh else "made"
        return f"reservation for {self.peer} {what} ({self.ttl:.0f} s)"

    def to_dict(self) -> dict[str, Any]:
        return {"peer": str(self.peer), "ttl": self.ttl, "refreshed": self.refresh}


@dataclass(frozen=True, slots=True)
class RelayCircuitOpened:
    """The relay opened a circuit from ``src`` to ``dst``."""

    src: PeerID
    dst: PeerID

    kind: ClassVar[str] = "circuit_opened"

    def describe(self) -> str:
        return f"circuit {self.src} -> {self.dst} opened"

    def to_dict(self) -> dict[str, Any]:
        return {"src": str(self.src), "dst": str(self.dst)}


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

    kind: ClassVar[str] = "circuit_closed"

    def describe(self) -> str:
        return (
            f"circuit {self.src} -> {self.dst} closed ({self.reason}) after "
            f"{self.duration:.1f} s, {self.bytes} bytes relayed"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "src": str(self.src),
            "dst": str(self.dst),
            "bytes": self.bytes,
            "reason": self.reason,
            "duration": round(self.duration, 3),
        }
