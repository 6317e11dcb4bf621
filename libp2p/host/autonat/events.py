"""Events of the AutoNAT client, published on the host's :class:`~libp2p.events.EventBus`.

Subscribe to them like this::

    with host.events.subscribe(ReachabilityChanged) as events:
        async for event in events:
            print(f"we are {event.status.value} (confidence {event.confidence})")
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from multiaddr import Multiaddr

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
