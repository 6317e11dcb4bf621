"""Port mappings and their events (published on ``host.events``).

Subscribe like this::

    with host.events.subscribe(PortMappingChanged, PortMappingFailed) as events:
        async for event in events:
            print(event)
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from multiaddr import Multiaddr

from ..events import opt_str

__all__ = [
    "PortMapping",
    "PortMappingChange",
    "PortMappingChanged",
    "PortMappingFailed",
    "PortMappingFailure",
    "PortMappingProtocol",
]


class PortMappingProtocol(enum.Enum):
    """How a mapping was made."""

    UPNP = "upnp"
    NAT_PMP = "nat-pmp"
    PCP = "pcp"


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A port our gateway forwards to one of our listen addresses.

    The mapping only says what the *router* reports. Whether the external address is really
    reachable from the internet is for AutoNAT to confirm: the port mapper never adds it to
    the host's advertised addresses itself.
    """

    protocol: PortMappingProtocol
    #: Our listen address the router forwards to (our LAN IP and the listen port).
    internal: Multiaddr
    #: The router's external IP and the mapped port (``None`` if the router did not say
    #: which external address it has).
    external: Multiaddr | None
    #: Seconds the router granted (0: a permanent UPnP mapping, removed on shutdown).
    lease: float
    #: When the lease ends, on the trio clock (``inf`` for a permanent mapping).
    expires: float
    #: The gateway's IP address.
    gateway: str
    #: Whether the external address is one the internet can reach, as far as the address
    #: itself tells (a private or shared-space address means another NAT is in front).
    external_is_public: bool
    #: Why ``external_is_public`` is False ("" when it is True).
    not_public_reason: str = ""

    @property
    def permanent(self) -> bool:
        return math.isinf(self.expires)


class PortMappingChange(enum.Enum):
    """What happened to a mapping."""

    #: A new mapping.
    ADDED = "added"
    #: The lease was renewed; nothing else changed.
    RENEWED = "renewed"
    #: Renewed, but the external address or port differs from before.
    UPDATED = "updated"
    #: We removed it (the listener closed, or the host shut down).
    REMOVED = "removed"
    #: Renewal failed until the lease ran out: the router no longer forwards the port.
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class PortMappingChanged:
    """A mapping was added, renewed, changed, removed or lost."""

    change: PortMappingChange
    #: The mapping now (for ``REMOVED`` and ``LOST``: as it was last).
    mapping: PortMapping
    #: The mapping before a ``RENEWED`` / ``UPDATED`` (``None`` otherwise).
    previous: PortMapping | None = None
    #: For ``LOST`` and ``UPDATED``: what happened.
    reason: str = ""

    kind: ClassVar[str] = "port_mapping"

    def describe(self) -> str:
        m = self.mapping
        public = "" if m.external_is_public else f" (not public: {m.not_public_reason})"
        why = f": {self.reason}" if self.reason else ""
        return (
            f"port mapping {self.change.value} by {m.protocol.value} on {m.gateway}: "
            f"{m.external} -> {m.internal}, lease {m.lease:.0f} s{public}{why}"
        )

    def to_dict(self) -> dict[str, Any]:
        m = self.mapping
        return {
            "change": self.change.value,
            "protocol": m.protocol.value,
            "external": opt_str(m.external),
            "internal": str(m.internal),
            "external_is_public": m.external_is_public,
            "lease": m.lease,
        }


class PortMappingFailure(enum.Enum):
    """Why a mapping could not be made."""

    #: No gateway answered any of the protocols tried.
    NO_GATEWAY = "no gateway answered"
    #: The router answered and refused (a UPnP fault, a NAT-PMP or PCP result code).
    REFUSED = "router refused"
    #: The router says it has no external address it can forward from (miniupnpd when its
    #: WAN address is private or reserved: port forwarding disabled on the router).
    NO_EXTERNAL_ADDRESS = "router has no external address"
    #: The gateway answered discovery but not the mapping request in time.
    TIMEOUT = "no answer"
    #: The gateway's answers could not be used (malformed, wrong nonce or port...).
    BAD_ANSWER = "bad answer"
    #: We have no address on the gateway's network, or no gateway is configured.
    NO_ROUTE = "no route to a gateway"


@dataclass(frozen=True, slots=True)
class PortMappingFailed:
    """A mapping for ``internal`` could not be made (or renewed) this time."""

    internal: Multiaddr
    failure: PortMappingFailure
    #: One line for people, e.g. "router refused: UPnP 718 ConflictInMappingEntry".
    reason: str
    protocol: PortMappingProtocol | None
    gateway: str | None
    #: When the mapper tries again (trio clock).
    retry_at: float
    #: Every protocol's own reason this round, e.g. ``("pcp: router refused: ...",
    #: "nat-pmp: ...")`` (``reason`` is the most telling of them).
    details: tuple[str, ...] = ()

    kind: ClassVar[str] = "port_mapping_failed"

    def describe(self) -> str:
        return f"port mapping of {self.internal} failed: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "failure": self.failure.name,
            "reason": self.reason,
            "internal": str(self.internal),
            "protocol": None if self.protocol is None else self.protocol.value,
        }
