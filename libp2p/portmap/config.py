"""Settings of the port mapper (``HostConfig(port_mapping=PortMappingConfig())``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..network.address_policy import AddressPolicy
from .events import PortMappingProtocol

__all__ = ["PortMappingConfig"]


@dataclass(frozen=True, slots=True)
class PortMappingConfig:
    """Tunables of :class:`~libp2p.portmap.PortMapper`. Off unless given to the host: it talks
    to the LAN's router (as in go-, js- and rust-libp2p, where it is opt-in too)."""

    #: Protocols to try; all of them answer discovery in parallel and the first to answer is
    #: used (PCP before NAT-PMP when both answer from the same server). Give one to force it.
    protocols: tuple[PortMappingProtocol, ...] = (
        PortMappingProtocol.UPNP,
        PortMappingProtocol.PCP,
        PortMappingProtocol.NAT_PMP,
    )
    #: Lease asked for, in seconds; renewed at half of what the router grants.
    lease: float = 3600.0
    #: The gateway's IP address; ``None``: the default route's gateway (``/proc/net/route``).
    gateway: str | None = None
    #: How long discovery waits for the first answer.
    discovery_timeout: float = 3.0
    #: After the first answer, how long discovery waits for the other protocols.
    answer_grace: float = 0.25
    #: Time for one request (with its retransmissions) or one HTTP exchange.
    request_timeout: float = 3.0
    #: First NAT-PMP / PCP retransmission (RFC 6886: 250 ms, doubling).
    retransmit_initial: float = 0.25
    #: Backoff after a failure: first retry, doubling up to the maximum.
    retry_min: float = 5.0
    retry_max: float = 600.0
    #: Time allowed to remove mappings when the host shuts down (best effort).
    shutdown_timeout: float = 2.0
    #: UPnP ``NewPortMappingDescription``.
    description: str = "libp2p"
    #: Which external addresses count as public. The defaults accept documentation ranges;
    #: private (RFC 1918) and shared (RFC 6598) addresses are never public unless allowed
    #: here, since a router reporting one has another NAT in front of it.
    addresses: AddressPolicy = field(default_factory=AddressPolicy)
    #: SSDP search answers may come within this many seconds (the M-SEARCH ``MX``).
    ssdp_mx: int = 1
