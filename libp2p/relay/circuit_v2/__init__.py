"""Circuit Relay v2: reach peers behind NATs through a relay.

* :class:`RelayService` -- the relay (hop role), with :class:`RelayConfig` limits and
  :class:`RelayStats` counters. Enable it with ``HostConfig(relay_service=RelayConfig())``.
* :class:`DcutrService` -- hole punching (DCUtR) that turns relayed connections into direct
  ones; on by default (``HostConfig.hole_punching``), reporting :class:`HolePunchSucceeded`
  or :class:`HolePunchFailed` on ``host.events``.
* :class:`RelayClient` -- every host's client (``host.relay``): dials
  ``…/p2p/<relay>/p2p-circuit/p2p/<peer>`` addresses, accepts relayed connections, and holds
  reservations for ``host.listen("…/p2p/<relay>/p2p-circuit")``.

Wire format: libp2p specs ``relay/circuit-v2.md``.
"""

from __future__ import annotations

from .client import RelayClient, split_circuit_addr
from .config import RelayConfig, RelayStats
from .dcutr import (
    DcutrService,
    HolePunchAttemptFailed,
    HolePunchConfig,
    HolePunchError,
    HolePunchFailed,
    HolePunchFailure,
    HolePunchRole,
    HolePunchSucceeded,
)
from .dcutr_core import (
    AttemptFailed,
    ClaimInbound,
    CloseStream,
    Dial,
    Failed,
    HolePunch,
    OpenStream,
    Redial,
    ReleaseInbound,
    Send,
    Succeeded,
)
from .events import (
    RelayCircuitClosed,
    RelayCircuitOpened,
    RelayReservationAccepted,
    ReservationAttemptFailed,
    ReservationLost,
    ReservationMade,
    ReservationRefreshed,
    ReservationRefused,
)
from .protocol import (
    HOP_PROTOCOL_ID,
    STOP_PROTOCOL_ID,
    CircuitRelayError,
    LimitKind,
    MalformedRelayMessage,
    NotARelay,
    RelayLimitReached,
    RelayRefused,
    RelayTimeout,
    Status,
)
from .relay import RelayService
from .reservation import Reservation

__all__ = [
    "HOP_PROTOCOL_ID",
    "STOP_PROTOCOL_ID",
    "CircuitRelayError",
    "AttemptFailed",
    "ClaimInbound",
    "CloseStream",
    "DcutrService",
    "Dial",
    "Failed",
    "HolePunch",
    "HolePunchAttemptFailed",
    "HolePunchConfig",
    "HolePunchError",
    "HolePunchFailed",
    "HolePunchFailure",
    "HolePunchRole",
    "HolePunchSucceeded",
    "LimitKind",
    "MalformedRelayMessage",
    "NotARelay",
    "OpenStream",
    "Redial",
    "RelayClient",
    "ReleaseInbound",
    "RelayCircuitClosed",
    "RelayCircuitOpened",
    "RelayConfig",
    "RelayLimitReached",
    "RelayReservationAccepted",
    "RelayRefused",
    "RelayTimeout",
    "RelayService",
    "RelayStats",
    "Reservation",
    "ReservationAttemptFailed",
    "ReservationLost",
    "ReservationMade",
    "ReservationRefreshed",
    "ReservationRefused",
    "Send",
    "Status",
    "Succeeded",
    "split_circuit_addr",
]
