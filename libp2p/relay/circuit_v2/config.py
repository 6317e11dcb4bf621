"""Resource limits of a relay service, and the counters it keeps."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ...network.connection import ConnectionLimit

__all__ = ["RelayConfig", "RelayStats"]


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """What a relay service allows. The defaults are go-libp2p's.

    A peer holds at most one reservation: a second ``RESERVE`` from it refreshes the first.
    Use :meth:`unlimited` for a private relay that forwards without limits.
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

    @classmethod
    def unlimited(cls) -> RelayConfig:
        """A private relay: circuits without time or data limits, and generous caps."""
        return cls(
            max_reservations=1 << 20,
            max_reservations_per_ip=1 << 20,
            max_circuits_per_peer=1 << 20,
            circuit_duration=None,
            circuit_data=None,
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
