"""The relay's reservation book: an I/O-free core that takes ``now``.

Theory of operation. A relay holds at most one reservation per peer; a second ``RESERVE`` from
the same peer refreshes it (a new deadline a whole TTL away). New reservations are capped in
total and per IP address (every peer behind one NAT shares the relay's view of its IP). A
reservation ends when its deadline passes or when :meth:`ReservationBook.release` is called
(the relay service does so when the peer's last direct connection closes). Circuits are
counted per peer, as source or target, and capped; a ``CONNECT`` needs the target to hold a
live reservation.

Nothing here reads a clock or touches the network: the relay service passes
``trio.current_time()`` in and turns the answers into hop messages. Refusal reasons are the
keys of ``reservations_refused`` and ``circuits_refused`` in
:class:`~libp2p.relay.circuit_v2.config.RelayStats`.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from ...peer.id import PeerID
from .config import RelayConfig
from .protocol import Status

__all__ = ["BookRefusal", "ReservationBook"]


@dataclass(frozen=True, slots=True)
class BookRefusal:
    """Why the book refuses a request: the status to answer and a short reason (a stats key)."""

    status: Status
    reason: str


@dataclass(slots=True)
class _Entry:
    ip: str | None
    deadline: float


class ReservationBook:
    """Reservations, their per-IP and total caps and TTL, and circuits per peer."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self._entries: dict[PeerID, _Entry] = {}
        self._circuits: collections.Counter[PeerID] = collections.Counter()

    # -- reservations --------------------------------------------------------------------

    def reserve(self, peer: PeerID, ip: str | None, now: float) -> BookRefusal | bool:
        """Give ``peer`` (connecting from ``ip``) a reservation until ``now + reservation_ttl``.

        Returns the refusal, or whether this was a refresh (``True``) or a new reservation
        (``False``).
        """
        self.expire(now)
        refresh = peer in self._entries
        if not refresh:
            if len(self._entries) >= self.config.max_reservations:
                return BookRefusal(Status.RESERVATION_REFUSED, "max_reservations")
            same_ip = sum(1 for e in self._entries.values() if e.ip == ip)
            if same_ip >= self.config.max_reservations_per_ip:
                return BookRefusal(Status.RESERVATION_REFUSED, "max_reservations_per_ip")
        self._entries[peer] = _Entry(ip, now + self.config.reservation_ttl)
        return refresh

    def release(self, peer: PeerID) -> bool:
        """End ``peer``'s reservation now; returns whether it held one."""
        return self._entries.pop(peer, None) is not None

    def expire(self, now: float) -> list[PeerID]:
        """Drop reservations whose deadline is ``now`` or earlier; returns their peers."""
        gone = [peer for peer, e in self._entries.items() if e.deadline <= now]
        for peer in gone:
            del self._entries[peer]
        return gone

    def holds(self, peer: PeerID, now: float) -> bool:
        """Whether ``peer`` holds a live reservation at ``now``."""
        entry = self._entries.get(peer)
        return entry is not None and entry.deadline > now

    def reservations(self, now: float) -> dict[PeerID, float]:
        """Live reservations at ``now``, with their deadlines."""
        self.expire(now)
        return {peer: e.deadline for peer, e in self._entries.items()}

    def active(self, now: float) -> int:
        """How many reservations are live at ``now``."""
        self.expire(now)
        return len(self._entries)

    def next_deadline(self) -> float | None:
        """When the next reservation ends (``None``: none held)."""
        return min((e.deadline for e in self._entries.values()), default=None)

    # -- circuits ------------------------------------------------------------------------

    def open_circuit(self, source: PeerID, target: PeerID, now: float) -> BookRefusal | None:
        """Count a circuit from ``source`` to ``target``, or say why it may not open."""
        if not self.holds(target, now):
            return BookRefusal(Status.NO_RESERVATION, "no_reservation")
        most = self.config.max_circuits_per_peer
        if self._circuits[source] >= most or self._circuits[target] >= most:
            return BookRefusal(Status.RESOURCE_LIMIT_EXCEEDED, "max_circuits_per_peer")
        self._circuits[source] += 1
        self._circuits[target] += 1
        return None

    def close_circuit(self, source: PeerID, target: PeerID) -> None:
        """A circuit counted by :meth:`open_circuit` ended."""
        for peer in (source, target):
            self._circuits[peer] -= 1
            if self._circuits[peer] <= 0:
                del self._circuits[peer]

    def circuits(self, peer: PeerID) -> int:
        """Circuits open now in which ``peer`` takes part."""
        return self._circuits[peer]

    @property
    def circuits_open(self) -> int:
        """Circuits open now."""
        return sum(self._circuits.values()) // 2
