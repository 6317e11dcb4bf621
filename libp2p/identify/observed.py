"""Observed addresses: learning our NAT-mapped public address from what peers see.

Every identify message carries ``observedAddr``: the address our end of the connection has in
the sender's eyes. Behind a NAT that is the mapping the NAT created for the connection -- for
a connection that left from our listen port on a port-preserving NAT, exactly the address other
peers can hole-punch to. But one peer's word is cheap: it may be wrong, lying, or behind the
same NAT. :class:`ObservedAddrManager` therefore turns observations into *candidates* only
when enough independent observers agree. It is sans-I/O: the host feeds it each observation
with the connection's addresses and the current time, and asks for candidates or events.

Which observations count (everything else is ignored, and :meth:`~ObservedAddrManager.record`
returns ``False``):

* not over a relayed connection: nothing that contains ``/p2p-circuit`` (that would be the
  relay's view of the relay);
* a "thin waist" address, ``/ip4|ip6/<ip>/tcp|udp/<port>/...``, with the same transport stack
  as our end of the connection (TCP vs QUIC vs WebSocket...), compared by protocol names,
  ``certhash`` and ``p2p`` components aside;
* our end of the connection (``local_addr``) is one of our listen addresses (same transport
  and port; an unspecified listen IP matches any local IP of its family). A connection dialed
  from an ephemeral port says nothing about where the NAT maps our listen port, so only
  connections that left from -- or arrived at -- the listen port produce candidates, and those
  candidates carry the NAT's mapping of the listen port. go-libp2p applies the same rule;
* not unspecified, multicast or NAT64 (``64:ff9b::/96``, meaningful only to that peer);
* loopback only if the observer is itself on loopback: a remote peer cannot see us as
  127.0.0.1, while hosts that talk over loopback (tests, one-machine setups) legitimately do;
* whatever the ``accept_ip`` hook says. Nothing else is filtered by range: test labs use
  documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) and private networks
  are real networks, so the caller decides what counts as public (design §5).
  :func:`public_ip_filter` builds go's policy, with extra ranges the user declares public.

Counting: observers are grouped as go groups them -- an IPv4 observer by its /32, an IPv6
observer by its /56 -- so one machine with many connections or ports, or one IPv6 customer
with many addresses, is one vote. Each group holds one vote per local thin-waist address: its
*most recent* observation (an observer that changes its story moves its vote, it does not vote
twice). A candidate is our observed IP and port (plus the rest of our local address, e.g.
``/quic-v1``) backed by at least ``min_observers`` groups. Observations expire ``ttl`` seconds
after they were last refreshed; the host refreshes them by recording again (each identify and
push does). The number of tracked observations is capped; when full, expired ones go first,
then the oldest.

Thresholds: go advertises an observed address after :data:`GO_ACTIVATION_THRESHOLD` (4)
observers, and uses any single observation for hole punching. We default to
:data:`DEFAULT_MIN_OBSERVERS` (2), so that no single peer can make us advertise an address
while small networks (a relay and one peer) still get there; hole punching passes
``min_observers=HOLE_PUNCH_MIN_OBSERVERS`` (1) to :meth:`~ObservedAddrManager.candidates`.

Events: :meth:`~ObservedAddrManager.poll_events` reports :class:`AddressCandidateAdded` and
:class:`AddressCandidateRemoved` as the candidate set (at ``min_observers``) changes, whether by
new observations or by expiry; :meth:`~ObservedAddrManager.next_deadline` tells the driver
when the next expiry is due, so it can ``trio.sleep_until`` it and poll again.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from multiaddr import Multiaddr
from multiaddr import exceptions as _ma_exceptions

from ..exceptions import LocalUsageError
from ..network.addrs import first_ip, is_circuit_addr

__all__ = [
    "DEFAULT_MAX_OBSERVATIONS",
    "DEFAULT_MIN_OBSERVERS",
    "DEFAULT_OBSERVATION_TTL",
    "GO_ACTIVATION_THRESHOLD",
    "HOLE_PUNCH_MIN_OBSERVERS",
    "IPV6_OBSERVER_PREFIX",
    "AddressCandidateAdded",
    "AddressCandidateRemoved",
    "IPAddress",
    "ObservedAddrEvent",
    "ObservedAddrManager",
    "observer_group",
    "public_ip_filter",
]

_log = logging.getLogger(__name__)

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

#: How long an observation counts after it was last recorded, in seconds (go's
#: ``OwnObservedAddrTTL`` is 30 minutes).
DEFAULT_OBSERVATION_TTL: Final = 30 * 60.0
#: Distinct observer groups needed before an address becomes a candidate (see module docs).
DEFAULT_MIN_OBSERVERS: Final = 2
#: go-libp2p's ``ActivationThresh``: observers needed before go advertises an address.
GO_ACTIVATION_THRESHOLD: Final = 4
#: Observers needed for hole-punch address lists (go: ``Addrs(1)``).
HOLE_PUNCH_MIN_OBSERVERS: Final = 1
#: Cap on tracked observations (one per observer group and local address).
DEFAULT_MAX_OBSERVATIONS: Final = 512
#: IPv6 observers in the same prefix of this length count as one (go: /56).
IPV6_OBSERVER_PREFIX: Final = 56

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IP_PROTOCOLS = ("ip4", "ip6")
_TRANSPORTS = ("tcp", "udp")
# Components that do not describe the transport stack and differ between the two ends.
_NOT_TRANSPORT = ("certhash",)


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddressCandidateAdded:
    """``address`` is now backed by at least ``min_observers`` observer groups."""

    address: Multiaddr
    observers: int


@dataclass(frozen=True, slots=True)
class AddressCandidateRemoved:
    """``address`` is no longer a candidate (its observations expired or moved elsewhere)."""

    address: Multiaddr


ObservedAddrEvent: TypeAlias = AddressCandidateAdded | AddressCandidateRemoved


# --------------------------------------------------------------------------------------------
# Address helpers
# --------------------------------------------------------------------------------------------


def _unmap(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as the IPv4 address it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class _ThinWaist:
    """``/ip/<ip>/<transport>/<port>`` plus the rest of the address up to any ``/p2p``.

    A plain slotted class rather than a dataclass: private, never mutated, and cheaper to
    define at import time.
    """

    __slots__ = ("ip", "port", "relayed", "rest", "stack", "transport", "waist")

    def __init__(
        self,
        *,
        ip: IPAddress,
        transport: str,
        port: int,
        stack: tuple[str, ...],
        waist: bytes,
        rest: bytes,
        relayed: bool,
    ) -> None:
        self.ip = ip
        self.transport = transport
        self.port = port
        #: The transport stack above the port, by protocol name (``certhash`` left out).
        self.stack = stack
        #: Binary of the first two components (IP and port).
        self.waist = waist
        #: Binary of the components after the port, up to any ``/p2p``.
        self.rest = rest
        self.relayed = relayed


def _split(addr: Multiaddr) -> _ThinWaist | None:
    """Parse ``addr`` into its thin-waist form, or ``None`` if it has none."""
    try:
        items = list(addr.items())
        parts = addr.split()
    except (_ma_exceptions.Error, ValueError):
        return None
    names = [proto.name for proto, _ in items]
    relayed = "p2p-circuit" in names
    if len(items) < 2 or names[0] not in _IP_PROTOCOLS or names[1] not in _TRANSPORTS:
        return None
    try:
        ip = ipaddress.ip_address(items[0][1])
        port = int(items[1][1])
    except (TypeError, ValueError):
        return None
    end = names.index("p2p") if "p2p" in names else len(names)
    return _ThinWaist(
        ip=ip,
        transport=names[1],
        port=port,
        stack=tuple(n for n in names[2:end] if n not in _NOT_TRANSPORT),
        waist=parts[0].to_bytes() + parts[1].to_bytes(),
        rest=b"".join(p.to_bytes() for p in parts[2:end]),
        relayed=relayed,
    )


def observer_group(observer: Multiaddr) -> str | None:
    """The group an observer's votes count for: its IPv4 /32 or its IPv6 /56.

    ``observer`` is the remote address of the connection the observation came on. Returns
    ``"203.0.113.7"`` or ``"2001:db8:0:100::/56"``-style strings, or ``None`` when the address
    does not start with an IP (we cannot tell such observers apart, so they do not count).
    IPv4-mapped IPv6 addresses count as IPv4.
    """
    ip = first_ip(observer)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return str(ipaddress.IPv6Network((ip, IPV6_OBSERVER_PREFIX), strict=False))


def public_ip_filter(extra_public: Iterable[_Network | str] = ()) -> Callable[[IPAddress], bool]:
    """An ``accept_ip`` hook that accepts globally routable IPs and the ranges in ``extra_public``.

    ``public_ip_filter()`` is go's and js's policy (private and documentation ranges dropped);
    ``public_ip_filter(["198.51.100.0/24"])`` additionally treats a lab's documentation range
    as public, as a NAT lab needs.
    """
    networks = [ipaddress.ip_network(n) if isinstance(n, str) else n for n in extra_public]

    def accept(ip: IPAddress) -> bool:
        ip = _unmap(ip)
        return ip.is_global or any(ip in net for net in networks)

    return accept


# --------------------------------------------------------------------------------------------
# The manager
# --------------------------------------------------------------------------------------------


class _Observation:
    __slots__ = ("candidate", "seen_at")

    def __init__(self, candidate: Multiaddr, seen_at: float) -> None:
        self.candidate = candidate
        self.seen_at = seen_at


class ObservedAddrManager:
    """Collects identify observations and derives our candidate public addresses.

    Sans-I/O: every method that depends on time takes ``now`` (``trio.current_time()`` in the
    host, a ``MockClock`` or plain numbers in tests). See the module docstring for the rules.
    """

    __slots__ = (
        "_accept_ip",
        "_max_observations",
        "_observations",
        "_reported",
        "min_observers",
        "ttl",
    )

    def __init__(
        self,
        *,
        min_observers: int = DEFAULT_MIN_OBSERVERS,
        ttl: float = DEFAULT_OBSERVATION_TTL,
        max_observations: int = DEFAULT_MAX_OBSERVATIONS,
        accept_ip: Callable[[IPAddress], bool] | None = None,
    ) -> None:
        if min_observers < 1:
            raise LocalUsageError("min_observers must be at least 1")
        if ttl <= 0:
            raise LocalUsageError("ttl must be positive")
        if max_observations < 1:
            raise LocalUsageError("max_observations must be at least 1")
        #: Observer groups needed for :meth:`candidates` and the events by default.
        self.min_observers = min_observers
        #: Seconds an observation counts after it was last recorded.
        self.ttl = ttl
        self._max_observations = max_observations
        self._accept_ip = accept_ip
        # (observer group, local thin-waist address) -> that group's latest observation.
        self._observations: dict[tuple[str, bytes], _Observation] = {}
        # Candidates announced by poll_events, to compute the next diff.
        self._reported: set[Multiaddr] = set()

    def __len__(self) -> int:
        """Number of observations tracked (expired ones included until they are purged)."""
        return len(self._observations)

    # -- input ---------------------------------------------------------------------------

    def record(
        self,
        observed: Multiaddr,
        *,
        observer: Multiaddr,
        local_addr: Multiaddr | None,
        listen_addrs: Sequence[Multiaddr],
        now: float,
    ) -> bool:
        """Record that ``observer`` sees our end of a connection as ``observed``.

        ``observer`` is the remote address of the connection the identify message came on,
        ``local_addr`` our end of it (``None`` if unknown: then nothing can be learned),
        ``listen_addrs`` our current listen addresses. Returns ``True`` if the observation
        was counted (new or refreshed), ``False`` if it was ignored; the reason is logged at
        DEBUG.
        """
        reason, key, candidate = self._classify(observed, observer, local_addr, listen_addrs)
        if reason is not None or key is None or candidate is None:
            _log.debug(
                "ignoring observed address %s from %s (local %s): %s",
                observed,
                observer,
                local_addr,
                reason,
            )
            return False
        if key not in self._observations:
            self._make_room(now)
        self._observations[key] = _Observation(candidate, now)
        return True

    def _classify(
        self,
        observed: Multiaddr,
        observer: Multiaddr,
        local_addr: Multiaddr | None,
        listen_addrs: Sequence[Multiaddr],
    ) -> tuple[str | None, tuple[str, bytes] | None, Multiaddr | None]:
        """(reason to ignore, key, candidate): exactly one of reason or key is ``None``."""
        if local_addr is None:
            return "our end of the connection is unknown", None, None
        if is_circuit_addr(observed) or is_circuit_addr(observer) or is_circuit_addr(local_addr):
            return "relayed connection", None, None
        seen = _split(observed)
        if seen is None:
            return "not an IP/TCP or IP/UDP address", None, None
        local = _split(local_addr)
        if local is None:
            return "our end of the connection is not an IP address", None, None
        if (seen.transport, seen.stack) != (local.transport, local.stack):
            return "transport differs from our end of the connection", None, None
        if not _is_listen_addr(local, listen_addrs):
            return "connection did not use one of our listen ports", None, None
        group = observer_group(observer)
        observer_ip = first_ip(observer)
        if group is None or observer_ip is None:
            return "observer is not an IP address", None, None
        ip = _unmap(seen.ip)
        if seen.port == 0 or ip.is_unspecified or ip.is_multicast:
            return "not a unicast address and port", None, None
        if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64:
            return "NAT64 address (meaningful only to the observer)", None, None
        if ip.is_loopback and not observer_ip.is_loopback:
            return "loopback address reported by a non-loopback observer", None, None
        if self._accept_ip is not None and not self._accept_ip(seen.ip):
            return "rejected by the accept_ip filter", None, None
        candidate = Multiaddr(seen.waist + local.rest)
        return None, (group, local.waist + local.rest), candidate

    def _make_room(self, now: float) -> None:
        if len(self._observations) < self._max_observations:
            return
        self._expire(now)
        while len(self._observations) >= self._max_observations:
            oldest = min(self._observations, key=lambda k: self._observations[k].seen_at)
            del self._observations[oldest]

    def _expire(self, now: float) -> None:
        deadline = now - self.ttl
        for key in [k for k, o in self._observations.items() if o.seen_at <= deadline]:
            del self._observations[key]

    # -- queries -------------------------------------------------------------------------

    def _votes(self, now: float) -> dict[Multiaddr, set[str]]:
        votes: dict[Multiaddr, set[str]] = {}
        for (group, _local), obs in self._observations.items():
            if obs.seen_at + self.ttl > now:
                votes.setdefault(obs.candidate, set()).add(group)
        return votes

    def candidates(self, now: float, min_observers: int | None = None) -> list[Multiaddr]:
        """Addresses backed by at least ``min_observers`` observer groups (default: the
        manager's ``min_observers``), most-observed first, ties in byte order."""
        threshold = self.min_observers if min_observers is None else min_observers
        if threshold < 1:
            raise LocalUsageError("min_observers must be at least 1")
        ranked = [(len(g), a) for a, g in self._votes(now).items() if len(g) >= threshold]
        ranked.sort(key=lambda item: (-item[0], item[1].to_bytes()))
        return [addr for _, addr in ranked]

    def observers_of(self, addr: Multiaddr, now: float | None = None) -> frozenset[str]:
        """The observer groups (see :func:`observer_group`) currently backing ``addr``.

        With ``now``, expired observations are left out; without it, every tracked one counts.
        """
        return frozenset(
            group
            for (group, _local), obs in self._observations.items()
            if obs.candidate == addr and (now is None or obs.seen_at + self.ttl > now)
        )

    def next_deadline(self) -> float | None:
        """When the earliest tracked observation expires (``None`` if there is none)."""
        if not self._observations:
            return None
        return min(o.seen_at for o in self._observations.values()) + self.ttl

    def poll_events(self, now: float) -> list[ObservedAddrEvent]:
        """Purge expired observations and report how the candidate set changed since the
        last call: removals first, then additions, most-observed first."""
        self._expire(now)
        votes = self._votes(now)
        current = self.candidates(now)
        events: list[ObservedAddrEvent] = [
            AddressCandidateRemoved(addr)
            for addr in sorted(self._reported - set(current), key=Multiaddr.to_bytes)
        ]
        events.extend(
            AddressCandidateAdded(addr, len(votes[addr]))
            for addr in current
            if addr not in self._reported
        )
        self._reported = set(current)
        return events


def _is_listen_addr(local: _ThinWaist, listen_addrs: Sequence[Multiaddr]) -> bool:
    """Whether our end of a connection is (an interface address of) one of our listen addresses."""
    local_ip = _unmap(local.ip)
    for addr in listen_addrs:
        listen = _split(addr)
        if listen is None or listen.relayed or listen.port == 0:
            continue
        if (listen.transport, listen.port, listen.stack) != (
            local.transport,
            local.port,
            local.stack,
        ):
            continue
        listen_ip = _unmap(listen.ip)
        if listen_ip == local_ip:
            return True
        # 0.0.0.0 accepts IPv4 connections; a dual-stack :: accepts both families.
        if listen_ip.is_unspecified and (
            listen_ip.version == local_ip.version or listen_ip.version == 6
        ):
            return True
    return False
