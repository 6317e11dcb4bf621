"""Resource limits of a relay service, and the counters it keeps."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ...network.connection import ConnectionLimit
from .ratelimit import RateLimit

__all__ = ["RelayConfig", "RelayStats"]


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """What a relay service allows. The defaults are go-libp2p's, except the rate limits of
    ``RESERVE`` requests, which go does not have.

    A peer holds at most one reservation: a second ``RESERVE`` from it refreshes the first.
    Use :meth:`unlimited` for a private relay that forwards without limits.

    ``RESERVE`` requests are rate-limited per peer and per IP address by token buckets
    (:mod:`~libp2p.relay.circuit_v2.ratelimit`): ``reserve_burst_per_peer`` at once, then
    ``reserve_rate_per_peer`` a second, and likewise for all the peers of one IP together.
    A request over either limit is answered ``RESOURCE_LIMIT_EXCEEDED`` on its stream, which
    then closes; the connection stays, and so does a reservation the peer already holds (it
    ends at its deadline unless a later refresh is admitted). The refusal is held back until
    the bucket admits again, at most ``refusal_hold`` seconds and one refusal per peer at a
    time (the peer's other refusals are answered at once): a client that retries as soon as
    it is answered sends about ``reserve_rate_per_peer`` requests a second instead of
    thousands. A peer's requests refused by its own limit do not count against its IP, so one
    flooding peer does not lock out its neighbours behind the same NAT. The defaults never
    refuse a client that refreshes every second or slower, nor eight such peers behind one
    IP (``max_reservations_per_ip``), even when they all start at once.
    """

    #: Lifetime of a reservation in seconds; clients refresh before it ends.
    reservation_ttl: float = 3600.0
    #: Reservations held at once.
    max_reservations: int = 128
    #: Reservations held at once by peers connecting from one IP address.
    max_reservations_per_ip: int = 8
    #: Circuits open at once in which a peer takes part (as source or target).
    max_circuits_per_peer: int = 16
    #: Seconds a circuit may stay open; ``None`` for no limit.
    circuit_duration: int | None = 120
    #: Bytes a circuit forwards in each direction; ``None`` for no limit.
    circuit_data: int | None = 1 << 17
    #: Time a client has to send its hop request (go: 1 min).
    hop_timeout: float = 60.0
    #: Time the target has to answer the stop ``CONNECT`` (go: 1 min).
    stop_timeout: float = 60.0
    #: ``RESERVE`` requests a peer may send a second, on average; ``None``: no per-peer limit.
    reserve_rate_per_peer: float | None = 1.0
    #: ``RESERVE`` requests a peer may send at once before its rate applies.
    reserve_burst_per_peer: int = 10
    #: ``RESERVE`` requests all peers of one IP address may send a second together (``None``:
    #: no per-IP limit).
    reserve_rate_per_ip: float | None = 8.0
    #: ``RESERVE`` requests all peers of one IP address may send at once.
    reserve_burst_per_ip: int = 40
    #: Seconds at most that a rate-limited ``RESERVE``'s refusal is held back (0: answer at
    #: once).
    refusal_hold: float = 1.0

    @classmethod
    def unlimited(cls) -> RelayConfig:
        """A private relay: circuits without time or data limits, generous caps, and no
        rate limits of ``RESERVE`` requests."""
        return cls(
            max_reservations=1 << 20,
            max_reservations_per_ip=1 << 20,
            max_circuits_per_peer=1 << 20,
            circuit_duration=None,
            circuit_data=None,
            reserve_rate_per_peer=None,
            reserve_rate_per_ip=None,
        )

    def __post_init__(self) -> None:
        if self.refusal_hold < 0:
            raise ValueError(f"refusal_hold must not be negative, not {self.refusal_hold!r}")
        # Checked here, not first at the relay's first request.
        self.reserve_limits()

    def reserve_limits(self) -> tuple[RateLimit | None, RateLimit | None]:
        """The per-peer and per-IP
        :class:`~libp2p.relay.circuit_v2.ratelimit.RateLimit` of ``RESERVE`` (``None``: off)."""
        peer = self.reserve_rate_per_peer
        ip = self.reserve_rate_per_ip
        return (
            None if peer is None else RateLimit(peer, self.reserve_burst_per_peer),
            None if ip is None else RateLimit(ip, self.reserve_burst_per_ip),
        )

    @property
    def circuit_limit(self) -> ConnectionLimit | None:
        """The limit announced to both ends of every circuit (``None``: unlimited)."""
        if self.circuit_duration is None and self.circuit_data is None:
            return None
        return ConnectionLimit(duration=self.circuit_duration, data=self.circuit_data)


@dataclass(slots=True)
class RelayStats:
    """Counters of a relay service (read them from :attr:`RelayService.stats`).

    Refusals are counted by the status name answered (``"RESERVATION_REFUSED"``,
    ``"NO_RESERVATION"``...). ``reservations_active`` and ``circuits_active`` are current
    values; the rest only grow.
    """

    reservations_active: int = 0
    #: ``RESERVE`` requests accepted (refreshes included).
    reservations_accepted: int = 0
    reservations_refused: collections.Counter[str] = field(default_factory=collections.Counter)
    circuits_active: int = 0
    circuits_opened: int = 0
    circuits_refused: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Circuits reset because they reached the duration or the data limit.
    circuits_limited: int = 0
    #: Bytes forwarded through circuits, both directions together.
    bytes_relayed: int = 0
