"""Settings of the AutoNAT server and client, with go-libp2p's and rust-libp2p's defaults."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from multiaddr import Multiaddr

from ...network.address_policy import AddressPolicy

__all__ = ["AutoNATClientConfig", "AutoNATServerConfig", "AutoNATServerStats"]


@dataclass(frozen=True, slots=True)
class AutoNATServerConfig:
    """What an AutoNAT server does for the peers that ask it (defaults: go-libp2p's)."""

    #: Time allowed for a whole dial-back (go: 15 s).
    dial_timeout: float = 15.0
    #: On failure, answer only when ``dial_timeout`` has passed (go does: the answer's timing
    #: then says nothing about why the dial failed, so the server is no port scanner).
    hide_failure_timing: bool = True
    #: Time a requester has to send its request, and the whole exchange's bound (go: 60 s).
    stream_timeout: float = 60.0
    #: Addresses dialed per request, the observed address included (go and rust: 16).
    max_addresses: int = 16
    #: Dial-backs per requesting peer in ``throttle_period`` (go and rust: 3).
    throttle_per_peer: int = 3
    #: Dial-backs in ``throttle_period`` over all peers; ``None``: no global cap (go: 30).
    throttle_global: int | None = 30
    #: The rate-limit window in seconds (go: 1 min).
    throttle_period: float = 60.0
    #: Addresses whose IP differs from the requester's observed IP are dialed at the
    #: observed IP instead (go); ``False`` drops them (rust).
    rewrite_foreign_ips: bool = True
    #: Which IPs the server dials back (``AddressPolicy.local_testing()`` adds loopback).
    addresses: AddressPolicy = field(default_factory=AddressPolicy)


@dataclass(frozen=True, slots=True)
class AutoNATClientConfig:
    """How a host asks others about its reachability (defaults: go-libp2p's and rust's)."""

    #: Delay after start before the first probe (go and rust: 15 s).
    boot_delay: float = 15.0
    #: Time between probes while unsure: status unknown, or confidence below the maximum
    #: (go and rust: 90 s).
    retry_interval: float = 90.0
    #: Time between probes once sure (go and rust: 15 min).
    refresh_interval: float = 15 * 60.0
    #: Time a server has to answer one request (go and rust: 30 s).
    request_timeout: float = 30.0
    #: A server is asked again only after this long (go and rust: 90 s).
    server_throttle: float = 90.0
    #: Agreeing results that raise confidence, up to this (go and rust: 3). A disagreeing
    #: result lowers confidence first and flips the status only at zero.
    confidence_max: int = 3
    #: Addresses sent per request (servers dial at most 16).
    max_addresses: int = 16
    #: Which of our addresses are worth asking about (``AddressPolicy.local_testing()``
    #: adds loopback).
    addresses: AddressPolicy = field(default_factory=AddressPolicy)


@dataclass(slots=True)
class AutoNATServerStats:
    """Counters of an AutoNAT server (read them from ``host.autonat_server.stats``).

    ``answered`` counts responses by status name (``"OK"``, ``"E_DIAL_REFUSED"``...);
    ``refused`` counts refusals by reason; ``dialed`` lists the addresses of the latest
    dial-backs (most recent last, at most 64).
    """

    requests: int = 0
    answered: collections.Counter[str] = field(default_factory=collections.Counter)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    dialed: collections.deque[tuple[Multiaddr, ...]] = field(
        default_factory=lambda: collections.deque(maxlen=64)
    )
