"""Events of the AutoNAT client, published on the host's :class:`~libp2p.events.EventBus`.

Subscribe to them like this::

    with host.events.subscribe(ReachabilityChanged) as events:
        async for event in events:
            print(f"we are {event.status.value} (confidence {event.confidence})")
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from multiaddr import Multiaddr

from ...events import opt_str
from ...peer.id import PeerID
from .protocol import ResponseStatus

__all__ = ["Reachability", "ReachabilityChanged", "ReachabilityProbed"]


class Reachability(enum.Enum):
    """Whether other peers can dial us directly."""

    #: Not enough evidence yet (no server answered, or only with refusals).
    UNKNOWN = "unknown"
    #: A server dialed us back: our listen port is reachable from the outside.
    PUBLIC = "public"
    #: Servers tried and failed to dial us: we are behind a NAT or a firewall.
    PRIVATE = "private"


@dataclass(frozen=True, slots=True)
class ReachabilityProbed:
    """One AutoNAT request finished (published for every probe, whatever its outcome)."""

    #: The server asked.
    server: PeerID
    #: The server's answer, or ``None`` when there was none (timeout, stream error).
    response: ResponseStatus | None
    #: With ``OK``: the address the server reached us at.
    address: Multiaddr | None
    #: The server's text, or what went wrong.
    detail: str
    #: Our reachability after this result.
    reachability: Reachability
    #: Our confidence in it after this result (0 ... ``confidence_max``).
    confidence: int

    kind: ClassVar[str] = "autonat_probe"

    def describe(self) -> str:
        answer = "no answer" if self.response is None else self.response.name
        at = f" at {self.address}" if self.address else ""
        return (
            f"AutoNAT server {self.server}: {answer}{at} ({self.detail}); "
            f"AutoNAT v1 says {self.reachability.value}, confidence {self.confidence}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": str(self.server),
            "response": None if self.response is None else self.response.name,
            "address": opt_str(self.address),
            "detail": self.detail,
            "reachability": self.reachability.value,
            "confidence": self.confidence,
        }


@dataclass(frozen=True, slots=True)
class ReachabilityChanged:
    """Our reachability flipped: the host's (``host.reachability.status``, published on
    ``host.events``), or the AutoNAT v1 client's own (``host.autonat.status``, given to
    ``host.autonat.on_reachability_changed`` callbacks only)."""

    status: Reachability
    previous: Reachability
    confidence: int
    #: With ``PUBLIC``: the address a server reached us at.
    address: Multiaddr | None
    #: The AutoNAT v1 server whose answer flipped the status, for a flip of
    #: ``host.autonat.status``; ``None`` for a flip of the host's report (``host.reachability``),
    #: which weighs many answers.
    server: PeerID | None

    kind: ClassVar[str] = "reachability_changed"

    def describe(self) -> str:
        at = f" (reached at {self.address})" if self.address else ""
        by = f", by {self.server}'s answer" if self.server else ""
        return f"reachability {self.previous.value} -> {self.status.value}{at}{by}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "previous": self.previous.value,
            "confidence": self.confidence,
            "address": opt_str(self.address),
            "server": opt_str(self.server),
        }
