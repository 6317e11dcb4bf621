"""The relay's reservation book: an I/O-free core that takes ``now``.

Theory of operation. A relay holds at most one reservation per peer; a second ``RESERVE`` from
the same peer refreshes it (a new deadline a whole TTL away). New reservations are capped in
total and per IP address (every peer behind one NAT shares the relay's view of its IP). A
reservation ends when its deadline passes or when :meth:`ReservationBook.release` is called
(the relay service does so when the peer's last direct connection closes). Circuits are
counted per peer, as source or target, and capped; a ``CONNECT`` needs the target to hold a
live reservation.

Before any of that, a ``RESERVE`` must pass the rate limits per peer and per IP address
(:class:`~libp2p.relay.circuit_v2.ratelimit.ReserveRateLimiter`): one over them is refused with
``RESOURCE_LIMIT_EXCEEDED`` and a time to answer at (the relay holds the refusal until then;
see :class:`~.config.RelayConfig`), and changes no reservation.

Every operation costs O(log n) in the number of reservations, not O(n): a relay holding ten
thousand of them answers each ``RESERVE`` as fast as its first. Deadlines sit in a heap (an
entry whose reservation was refreshed or released is skipped when it surfaces) and
reservations are counted per IP as they come and go.

Nothing here reads a clock or touches the network: the relay service passes
``trio.current_time()`` in and turns the answers into hop messages. Refusal reasons are the
keys of ``reservations_refused`` and ``circuits_refused`` in
:class:`~libp2p.relay.circuit_v2.config.RelayStats`.
"""

from __future__ import annotations

import collections
import heapq
from dataclasses import dataclass

from ...peer.id import PeerID
from .config import RelayConfig
from .protocol import Status
from .ratelimit import ReserveRateLimiter

__all__ = ["BookRefusal", "ReservationBook"]


@dataclass(frozen=True, slots=True)
class BookRefusal:
    """Why the book refuses a request: the status to answer and a short reason (a stats key)."""

    status: Status
    reason: str
    #: When to answer (``None``: at once). Set for a held rate-limit refusal: the relay
    #: calls :meth:`ReservationBook.answered` once it answered.
    answer_at: float | None = None


@dataclass(slots=True)
class _Entry:
    ip: str | None
    deadline: float


class ReservationBook:
    """Reservations, their per-IP and total caps and TTL, and circuits per peer."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self._entries: dict[PeerID, _Entry] = {}
        self._per_ip: collections.Counter[str | None] = collections.Counter()
        # (deadline, tie-breaker, peer); stale when the peer's entry has another deadline.
        self._deadlines: list[tuple[float, int, PeerID]] = []
        self._seq = 0
        self._circuits: collections.Counter[PeerID] = collections.Counter()
        per_peer, per_ip = config.reserve_limits()
        self.rate = ReserveRateLimiter(per_peer, per_ip, config.refusal_hold)

    # -- reservations --------------------------------------------------------------------

    def reserve(self, peer: PeerID, ip: str | None, now: float) -> BookRefusal | bool:
        """Give ``peer`` (connecting from ``ip``) a reservation until ``now + reservation_ttl``.

        Returns the refusal, or whether this was a refresh (``True``) or a new reservation
        (``False``). A refusal for the rate limits may carry an ``answer_at``.
        """
        limited = self.rate.check(peer, ip, now)
        if limited is not None:
            return BookRefusal(Status.RESOURCE_LIMIT_EXCEEDED, limited.reason, limited.answer_at)
        self.expire(now)
        old = self._entries.get(peer)
        if old is None:
            if len(self._entries) >= self.config.max_reservations:
                return BookRefusal(Status.RESERVATION_REFUSED, "max_reservations")
            if self._per_ip[ip] >= self.config.max_reservations_per_ip:
                return BookRefusal(Status.RESERVATION_REFUSED, "max_reservations_per_ip")
        else:
            self._forget_ip(old.ip)
        deadline = now + self.config.reservation_ttl
        self._entries[peer] = _Entry(ip, deadline)
        self._per_ip[ip] += 1
        self._seq += 1
        heapq.heappush(self._deadlines, (deadline, self._seq, peer))
        return old is not None

    def answered(self, peer: PeerID) -> None:
        """The held refusal of ``peer`` (one with an ``answer_at``) was answered or dropped."""
        self.rate.answered(peer)

    def _forget_ip(self, ip: str | None) -> None:
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    def release(self, peer: PeerID) -> bool:
        """End ``peer``'s reservation now; returns whether it held one."""
        entry = self._entries.pop(peer, None)
        if entry is None:
            return False
        self._forget_ip(entry.ip)
        return True

    def _drop_stale(self) -> None:
        heap = self._deadlines
        while heap:
            deadline, _, peer = heap[0]
            entry = self._entries.get(peer)
            if entry is not None and entry.deadline == deadline:
                return
            heapq.heappop(heap)

    def expire(self, now: float) -> list[PeerID]:
        """Drop reservations whose deadline is ``now`` or earlier; returns their peers."""
        gone: list[PeerID] = []
        heap = self._deadlines
        while True:
            self._drop_stale()
            if not heap or heap[0][0] > now:
                return gone
            _, _, peer = heapq.heappop(heap)
            self.release(peer)
            gone.append(peer)

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
        self._drop_stale()
        return self._deadlines[0][0] if self._deadlines else None

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
