"""Our NAT's mapping behaviour, inferred from the addresses identify peers observe.

Hole punching aims at the address our NAT gave the connection we used to reach the relay. That
only works if the NAT gives the punch -- a new connection from the same local port, to another
destination -- the *same* external address: an **endpoint-independent** mapping (RFC 4787,
section 4.1; a typical home router). A NAT whose mapping depends on the destination (an
**endpoint-dependent**, "symmetric" NAT: address- or address-and-port-dependent mapping) hands
the punch a port nobody could predict, so a punch attempt is wasted time. This module tells
the two apart from evidence we already collect.

The evidence: our TCP transport dials from its listen port (port reuse), so every peer we dial
sees the NAT's mapping of that listen port for a connection to *it*, and says so in identify's
``observedAddr``. Two observers at different IP addresses that saw the same external
``ip:port`` for the same local port show that the mapping did not depend on the destination;
two that saw different ports on the same external IP, on connections open at the same time,
show that it did.

Which observations count (:meth:`NatMappingTracker.record` returns ``False`` for the rest):

* only connections **we dialed** (outbound) **from a listen port** -- our end of the connection
  (``local_addr``) is one of our listen addresses. On an inbound connection the observed address
  is just the address the dialer reached us at (our public listen address, a port forward, a
  punched hole): it says nothing about how the NAT maps our outgoing connections. A dial from
  an ephemeral port (the transport falls back to one when the listen port cannot be reused, and
  AutoNAT dial-backs use one) reports the mapping of a port we never advertise;
* not relayed, a thin-waist address (``/ip4|ip6/<ip>/tcp|udp/<port>/...``) on the same
  transport stack as our end, unicast, not NAT64, not loopback unless the observer is on
  loopback too -- the same rules as ``libp2p.identify.ObservedAddrManager``;
* observers are grouped as there (an IPv4 observer by its address, an IPv6 one by its /56), and
  a group holds one observation per local address, its most recent: a machine with many peers
  or connections is one witness, and one that changes its story moves its vote. Observers on
  the same IP do not count separately even when their ports differ: an *address-dependent*
  (port-independent) NAT gives them the same mapping, and one machine could otherwise make up
  a verdict on its own.

Classification, per local address (our end of those connections: interface IP, listen port and
transport; so per IP family too), among the observations still valid:

* **endpoint-dependent** if, at some moment, connections from at least ``min_observers``
  observer groups were open at the same time, with at least two different external ports on
  the same external IP. Simultaneity matters: an endpoint-independent NAT that does not
  preserve ports may give the listen port a new external port once the old connection and its
  mapping are gone, which is not dependence on the destination. Different external IPs are no
  evidence either way (two uplinks or an address pool, not a port decision);
* otherwise **endpoint-independent** if at least ``min_observers`` observer groups saw the same
  external ``ip:port`` (when that is our own local address, there is no translation at all);
* otherwise **unknown**.

When the evidence conflicts -- some observers agree, others differ -- endpoint-dependent wins:
one destination that got another port is enough to make a punch's port unpredictable, and the
reason string names the observers on both sides. An observer that lies can therefore make us
give up hole punching (the relayed connection stays); grouping by IP keeps that to peers that
control more than one address.

Ageing: an observation stays valid while its connection is open (the NAT holds that mapping
for as long as the connection lives) and for ``window`` seconds after the connection closed
(:data:`DEFAULT_MAPPING_WINDOW`, 10 minutes). A NAT that reboots or changes behaviour
drops our connections; ten minutes later what it did before no longer counts, while a host
that dials its peers one at a time still collects two observers. Endpoint-dependent evidence
from the last ten minutes beats newer agreement, as above.

The host as a whole (:attr:`NatMappingStatus.mapping`): endpoint-independent if any local
address is (a punch can work through it, e.g. IPv6 without translation next to a symmetric
IPv4 NAT), else endpoint-dependent if any is, else unknown. :meth:`NatMappingStatus.mapping_for`
gives one IP family; :attr:`NatMappingStatus.verdicts` every local address.

Sans-I/O, time passed in: the host feeds :meth:`~NatMappingTracker.record` from identify and
:meth:`~NatMappingTracker.connection_closed` from the swarm, then calls
:meth:`~NatMappingTracker.poll`, which returns a :class:`NatMappingChanged` when the host's
mapping changed; :meth:`~NatMappingTracker.next_deadline` says when observations next expire.
"""

from __future__ import annotations

import enum
import heapq
import ipaddress
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from multiaddr import Multiaddr

from ..exceptions import LocalUsageError
from ..network.addrs import first_ip, is_circuit_addr
from .observed import _NAT64, IPAddress, _is_listen_addr, _split, _unmap, observer_group

__all__ = [
    "DEFAULT_MAPPING_MAX_OBSERVATIONS",
    "DEFAULT_MAPPING_MIN_OBSERVERS",
    "DEFAULT_MAPPING_WINDOW",
    "MappingVerdict",
    "NatMapping",
    "NatMappingChanged",
    "NatMappingStatus",
    "NatMappingTracker",
]

_log = logging.getLogger(__name__)

#: Seconds an observation still counts after its connection closed (see the module docs).
DEFAULT_MAPPING_WINDOW: Final = 10 * 60.0
#: Distinct observer groups needed for either verdict.
DEFAULT_MAPPING_MIN_OBSERVERS: Final = 2
#: Cap on tracked observations (one per observer group and local address).
DEFAULT_MAPPING_MAX_OBSERVATIONS: Final = 256


class NatMapping(enum.Enum):
    """How our NAT maps outgoing connections from our listen port (RFC 4787 terms)."""

    #: Every destination sees the same external address: hole punching can work.
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    #: The external port depends on the destination (a "symmetric" NAT): a punch's port
    #: cannot be predicted, hole punching will fail.
    ENDPOINT_DEPENDENT = "endpoint-dependent"
    #: Not enough evidence (fewer than two observers, or none on connections we dialed).
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MappingVerdict:
    """The mapping of one local address: our end of the connections we dialed from it."""

    #: Our end of those connections: interface IP, listen port, transport (``/ip4/.../tcp/...``).
    local_addr: Multiaddr
    mapping: NatMapping
    #: The observer groups the verdict rests on (an observer's IPv4 address, or its IPv6 /56:
    #: see ``libp2p.identify.observer_group``).
    observers: tuple[str, ...]
    #: The external addresses those observers reported, in the order of ``observers``.
    external: tuple[Multiaddr, ...]
    #: Why, in words (names the observers and the ports they saw).
    reason: str


@dataclass(frozen=True, slots=True)
class NatMappingStatus:
    """What we know about our NAT's mapping: the host's verdict and every local address's."""

    #: The host's mapping (see the module docs for how local addresses combine).
    mapping: NatMapping
    #: Why, in words.
    reason: str
    #: The observer groups behind :attr:`mapping`.
    observers: tuple[str, ...]
    #: One verdict per local address with valid observations, in byte order of the address.
    verdicts: tuple[MappingVerdict, ...]

    kind: ClassVar[str] = "nat_mapping"

    def describe(self) -> str:
        """``NAT mapping: <mapping> (<reason>)``."""
        return f"NAT mapping: {self.mapping.value} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {"mapping": self.mapping.value, "observers": list(self.observers)}

    def mapping_for(self, ip_version: int) -> NatMapping:
        """The mapping of our local addresses of one IP family (``4`` or ``6``), combined as
        for the whole host."""
        if ip_version not in (4, 6):
            raise LocalUsageError("ip_version must be 4 or 6")
        return _combine(
            tuple(v for v in self.verdicts if _version(v.local_addr) == ip_version)
        ).mapping


@dataclass(frozen=True, slots=True)
class NatMappingChanged:
    """The host's NAT mapping changed (see ``Host.nat_mapping``); published on ``host.events``.

    ``previous`` and ``current`` are never equal. ``reason`` names the observers and the
    external ports they reported, e.g. ``"endpoint-dependent: 198.51.100.10 saw
    /ip4/198.51.100.1/tcp/40113 and 198.51.100.11 saw /ip4/198.51.100.1/tcp/52710 for our
    /ip4/192.0.2.2/tcp/4001 on connections open at the same time"``.
    """

    previous: NatMapping
    current: NatMapping
    #: The observer groups behind ``current``.
    observers: tuple[str, ...]
    reason: str
    #: Every local address's verdict at the time of the change.
    verdicts: tuple[MappingVerdict, ...]

    kind: ClassVar[str] = "nat_mapping"

    def describe(self) -> str:
        return f"NAT mapping: {self.current.value} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "mapping": self.current.value,
            "previous": self.previous.value,
            "observers": list(self.observers),
        }


_NO_EVIDENCE = "no observation yet of a connection we dialed from a listen port"
_UNKNOWN_STATUS = NatMappingStatus(NatMapping.UNKNOWN, _NO_EVIDENCE, (), ())


def _version(addr: Multiaddr) -> int | None:
    ip = first_ip(addr)
    return None if ip is None else ip.version


class _Observation:
    """One observer group's latest report of one local address's mapping."""

    __slots__ = ("closed_at", "connection", "external", "ip", "port", "seen_at", "since")

    def __init__(
        self,
        *,
        ip: IPAddress,
        port: int,
        external: Multiaddr,
        connection: Hashable,
        since: float,
        seen_at: float,
    ) -> None:
        self.ip = ip
        self.port = port
        self.external = external
        self.connection = connection
        #: When the connection opened (its NAT mapping existed from then on at the latest).
        self.since = since
        self.seen_at = seen_at
        #: When the connection closed; ``None`` while it is open.
        self.closed_at: float | None = None

    def valid(self, now: float, window: float) -> bool:
        return self.closed_at is None or self.closed_at + window > now

    def open_at(self, t: float) -> bool:
        return self.since <= t and (self.closed_at is None or self.closed_at > t)


class NatMappingTracker:
    """Classifies our NAT's mapping from identify observations (sans-I/O, time passed in).

    See the module docstring for which observations count and how they are judged.
    """

    __slots__ = (
        "_by_key",
        "_local",
        "_max_observations",
        "_status",
        "min_observers",
        "window",
    )

    def __init__(
        self,
        *,
        min_observers: int = DEFAULT_MAPPING_MIN_OBSERVERS,
        window: float = DEFAULT_MAPPING_WINDOW,
        max_observations: int = DEFAULT_MAPPING_MAX_OBSERVATIONS,
    ) -> None:
        if min_observers < 2:
            # One observer cannot show (in)dependence on the destination.
            raise LocalUsageError("min_observers must be at least 2")
        if window <= 0:
            raise LocalUsageError("window must be positive")
        if max_observations < 1:
            raise LocalUsageError("max_observations must be at least 1")
        #: Observer groups needed for either verdict.
        self.min_observers = min_observers
        #: Seconds an observation counts after its connection closed.
        self.window = window
        self._max_observations = max_observations
        # local key -> observer group -> that group's latest observation.
        self._by_key: dict[bytes, dict[str, _Observation]] = {}
        # local key -> our end of the connection as a multiaddr (for the verdicts).
        self._local: dict[bytes, Multiaddr] = {}
        self._status = _UNKNOWN_STATUS

    def __len__(self) -> int:
        """Number of observations tracked (expired ones included until :meth:`poll`)."""
        return sum(len(groups) for groups in self._by_key.values())

    @property
    def status(self) -> NatMappingStatus:
        """The status as of the last :meth:`poll` (what events were reported for)."""
        return self._status

    @property
    def mapping(self) -> NatMapping:
        """The host's mapping as of the last :meth:`poll`."""
        return self._status.mapping

    # -- input ---------------------------------------------------------------------------

    def record(
        self,
        observed: Multiaddr,
        *,
        observer: Multiaddr,
        local_addr: Multiaddr | None,
        listen_addrs: Sequence[Multiaddr],
        outbound: bool,
        connection: Hashable,
        now: float,
        opened_at: float | None = None,
    ) -> bool:
        """Record that ``observer`` sees our end of ``connection`` as ``observed``.

        ``observer`` is the connection's remote address, ``local_addr`` our end of it,
        ``listen_addrs`` our listen addresses, ``outbound`` whether we dialed it,
        ``connection`` any hashable that identifies it among open connections, for
        :meth:`connection_closed` (the host passes ``id(conn)``: unique among live objects,
        and an observation already marked closed is never matched again), and ``opened_at``
        when it opened (default ``now``). Returns ``True`` if the observation counts; the
        reason for ignoring one is logged at DEBUG.
        """
        reason = self._admit(observed, observer, local_addr, listen_addrs, outbound)
        if isinstance(reason, str):
            _log.debug(
                "NAT mapping: ignoring observed address %s from %s (local %s): %s",
                observed,
                observer,
                local_addr,
                reason,
            )
            return False
        key, local, group, ip, port = reason
        groups = self._by_key.get(key)
        old = groups.get(group) if groups is not None else None
        if old is not None and old.seen_at > now:
            _log.debug(
                "NAT mapping: ignoring observed address %s from %s: older than its report at %s",
                observed,
                observer,
                old.seen_at,
            )
            return False  # an older report arriving late does not replace a newer one
        if old is None:
            self._make_room(now)
            groups = self._by_key.setdefault(key, {})
            self._local[key] = local
        assert groups is not None
        groups[group] = _Observation(
            ip=ip,
            port=port,
            external=_external_addr(observed),
            connection=connection,
            since=min(now, opened_at) if opened_at is not None else now,
            seen_at=now,
        )
        return True

    def connection_closed(self, connection: Hashable, now: float) -> None:
        """``connection`` closed at ``now``: its observation counts for ``window`` more
        seconds. Unknown connections are ignored."""
        for groups in self._by_key.values():
            for obs in groups.values():
                if obs.closed_at is None and obs.connection == connection:
                    obs.closed_at = now

    def _admit(
        self,
        observed: Multiaddr,
        observer: Multiaddr,
        local_addr: Multiaddr | None,
        listen_addrs: Sequence[Multiaddr],
        outbound: bool,
    ) -> str | tuple[bytes, Multiaddr, str, IPAddress, int]:
        """A reason to ignore the observation, or (local key, local addr, group, ip, port)."""
        if not outbound:
            return "inbound connection (the observed address is the one the peer dialed)"
        if local_addr is None:
            return "our end of the connection is unknown"
        if is_circuit_addr(observed) or is_circuit_addr(observer) or is_circuit_addr(local_addr):
            return "relayed connection"
        seen = _split(observed)
        if seen is None:
            return "not an IP/TCP or IP/UDP address"
        local = _split(local_addr)
        if local is None:
            return "our end of the connection is not an IP address"
        if (seen.transport, seen.stack) != (local.transport, local.stack):
            return "transport differs from our end of the connection"
        if not _is_listen_addr(local, listen_addrs):
            return "dialed from an ephemeral port, not from a listen port"
        group = observer_group(observer)
        observer_ip = first_ip(observer)
        if group is None or observer_ip is None:
            return "observer is not an IP address"
        ip = _unmap(seen.ip)
        if seen.port == 0 or ip.is_unspecified or ip.is_multicast:
            return "not a unicast address and port"
        if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64:
            return "NAT64 address (meaningful only to the observer)"
        if ip.is_loopback and not observer_ip.is_loopback:
            return "loopback address reported by a non-loopback observer"
        key = local.waist + local.rest
        return key, Multiaddr(key), group, ip, seen.port

    def _make_room(self, now: float) -> None:
        if len(self) < self._max_observations:
            return
        self._expire(now)
        while len(self) >= self._max_observations:
            # Closed connections first (oldest close first), then the oldest report.
            _, key, group = min(
                (
                    (
                        (0, obs.closed_at, obs.seen_at)
                        if obs.closed_at is not None
                        else (1, obs.seen_at, obs.seen_at)
                    ),
                    key,
                    group,
                )
                for key, groups in self._by_key.items()
                for group, obs in groups.items()
            )
            self._drop(key, group)

    def _drop(self, key: bytes, group: str) -> None:
        groups = self._by_key[key]
        del groups[group]
        if not groups:
            del self._by_key[key]
            del self._local[key]

    def _expire(self, now: float) -> None:
        for key, groups in list(self._by_key.items()):
            for group in [g for g, obs in groups.items() if not obs.valid(now, self.window)]:
                self._drop(key, group)

    # -- output --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the earliest observation of a closed connection expires (``None``: none will
        until a connection closes)."""
        deadlines = [
            obs.closed_at + self.window
            for groups in self._by_key.values()
            for obs in groups.values()
            if obs.closed_at is not None
        ]
        return min(deadlines, default=None)

    def evaluate(self, now: float) -> NatMappingStatus:
        """The status at ``now`` from the valid observations (changes nothing)."""
        verdicts = []
        for key in sorted(self._by_key):
            valid = {
                group: obs
                for group, obs in self._by_key[key].items()
                if obs.valid(now, self.window)
            }
            if valid:
                verdicts.append(_judge(self._local[key], valid, self.min_observers))
        return _combine(tuple(verdicts))

    def poll(self, now: float) -> NatMappingChanged | None:
        """Drop expired observations, re-evaluate, and return the event to publish if the
        host's mapping changed since the last poll. :attr:`status` is updated either way."""
        self._expire(now)
        previous = self._status
        self._status = self.evaluate(now)
        if self._status.mapping is previous.mapping:
            return None
        return NatMappingChanged(
            previous=previous.mapping,
            current=self._status.mapping,
            observers=self._status.observers,
            reason=self._status.reason,
            verdicts=self._status.verdicts,
        )


def _external_addr(observed: Multiaddr) -> Multiaddr:
    """``observed`` without a trailing ``/p2p/...`` (the part that describes our mapping)."""
    seen = _split(observed)
    return observed if seen is None else Multiaddr(seen.waist + seen.rest)


# --------------------------------------------------------------------------------------------
# Judging
# --------------------------------------------------------------------------------------------


def _describe(group: str, obs: _Observation) -> str:
    return f"{group} saw {obs.external}"


def _judge(local: Multiaddr, valid: dict[str, _Observation], min_observers: int) -> MappingVerdict:
    """The verdict for one local address from its valid observations (one per group)."""
    by_ip: dict[IPAddress, list[tuple[str, _Observation]]] = {}
    for group, obs in valid.items():
        by_ip.setdefault(obs.ip, []).append((group, obs))
    # Endpoint-dependent: concurrent observations, same external IP, different ports.
    for ip in sorted(by_ip, key=lambda a: (a.version, a.packed)):
        witness = _concurrent_disagreement(by_ip[ip], min_observers)
        if witness:
            witness.sort(key=lambda item: (item[1].port, item[0]))
            described = " and ".join(_describe(g, o) for g, o in witness)
            return MappingVerdict(
                local_addr=local,
                mapping=NatMapping.ENDPOINT_DEPENDENT,
                observers=tuple(g for g, _ in witness),
                external=tuple(o.external for _, o in witness),
                reason=(
                    f"endpoint-dependent: {described} for our {local} on connections "
                    "open at the same time"
                ),
            )
    # Endpoint-independent: enough groups agree on one external address.
    agreeing: dict[Multiaddr, list[str]] = {}
    for group, obs in valid.items():
        agreeing.setdefault(obs.external, []).append(group)
    best = sorted(
        ((addr, sorted(groups)) for addr, groups in agreeing.items()),
        key=lambda item: (-len(item[1]), item[0].to_bytes()),
    )[0]
    addr, groups = best
    if len(groups) >= min_observers:
        same = " (no address translation)" if addr == local else ""
        return MappingVerdict(
            local_addr=local,
            mapping=NatMapping.ENDPOINT_INDEPENDENT,
            observers=tuple(groups),
            external=(addr,) * len(groups),
            reason=(
                f"endpoint-independent: {', '.join(groups)} all saw {addr} for our {local}{same}"
            ),
        )
    ordered = sorted(valid.items())
    seen = ", ".join(_describe(g, o) for g, o in ordered)
    if len(valid) < min_observers:
        why = f"{len(valid)} observer(s) of {min_observers} needed ({seen})"
    elif len(by_ip) > 1:
        why = f"observers saw different external IPs ({seen})"
    else:
        why = f"observers disagree, but not on connections open at the same time ({seen})"
    return MappingVerdict(
        local_addr=local,
        mapping=NatMapping.UNKNOWN,
        observers=tuple(g for g, _ in ordered),
        external=tuple(o.external for _, o in ordered),
        reason=f"unknown for our {local}: {why}",
    )


def _concurrent_disagreement(
    observations: list[tuple[str, _Observation]], min_observers: int
) -> list[tuple[str, _Observation]]:
    """Observations (one per group) open at one common moment that span at least
    ``min_observers`` groups and two external ports; the latest such moment's, or ``[]``.

    A sweep over the connections' opening times: the set open at ``t`` only grows at an
    opening, so only openings need checking. ``O(n log n)``.
    """
    if len({obs.port for _, obs in observations}) < 2:
        return []
    order = sorted(observations, key=lambda item: item[1].since)
    closing: list[tuple[float, int]] = []  # (closed_at, index in order)
    ports: dict[int, int] = {}
    active = 0
    found: float | None = None
    i = 0
    while i < len(order):
        t = order[i][1].since
        while i < len(order) and order[i][1].since == t:
            obs = order[i][1]
            ports[obs.port] = ports.get(obs.port, 0) + 1
            active += 1
            heapq.heappush(closing, (float("inf") if obs.closed_at is None else obs.closed_at, i))
            i += 1
        while closing and closing[0][0] <= t:
            _, j = heapq.heappop(closing)
            port = order[j][1].port
            ports[port] -= 1
            if not ports[port]:
                del ports[port]
            active -= 1
        if len(ports) >= 2 and active >= min_observers:
            found = t
    if found is None:
        return []
    return [(g, o) for g, o in observations if o.open_at(found)]


def _combine(verdicts: tuple[MappingVerdict, ...]) -> NatMappingStatus:
    """The host's status from its local addresses' verdicts (see the module docs)."""
    for wanted in (NatMapping.ENDPOINT_INDEPENDENT, NatMapping.ENDPOINT_DEPENDENT):
        matching = [v for v in verdicts if v.mapping is wanted]
        if matching:
            others = [v.reason for v in verdicts if v.mapping is not wanted]
            reason = "; ".join([v.reason for v in matching] + others)
            observers = sorted({g for v in matching for g in v.observers})
            return NatMappingStatus(wanted, reason, tuple(observers), verdicts)
    if not verdicts:
        return _UNKNOWN_STATUS
    reason = "; ".join(v.reason for v in verdicts)
    observers = sorted({g for v in verdicts for g in v.observers})
    return NatMappingStatus(NatMapping.UNKNOWN, reason, tuple(observers), verdicts)
