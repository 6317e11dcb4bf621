"""The port mapper's decisions, without I/O: which protocol, when to map, renew, retry.

The trio driver (:mod:`.driver`) asks :meth:`MapperCore.poll` what to do now and reports what
happened; the core never sleeps or sends. Time is passed in (``now``, the trio clock).

Life of the mapper:

1. *Discovery.* With ports to map and no gateway known, :meth:`~MapperCore.poll` returns
   :class:`Discover`. The driver probes every enabled protocol at once (an SSDP search, a PCP
   ANNOUNCE and a NAT-PMP external address request -- none of them creates anything on the
   router) and reports the answers with their arrival times (:meth:`~MapperCore.discovered`).
   :func:`order_answers` ranks them: the first to answer first, except that PCP goes before
   NAT-PMP when both answered from the same server (the same daemon on port 5351: PCP is its
   newer protocol). No answer: a :class:`~.events.PortMappingFailed` (``NO_GATEWAY``) and
   discovery again after a backoff.
2. *Mapping.* Each wanted port gets a :class:`Map` with the best protocol. A refusal moves
   on to the next protocol that answered; when all refused, ``PortMappingFailed`` with the
   first refusal's reason, and the next round after a backoff (``retry_min`` doubling up to
   ``retry_max``), starting over with discovery.
3. *Renewal.* At half the granted lease the same protocol is asked again. If renewals keep
   failing until the lease ends, the mapping is ``LOST`` and the port starts again at 1.
   A renewal that reports another external address or port is ``UPDATED``.
4. *Removal.* A port no longer wanted, or every mapping at shutdown
   (:meth:`~MapperCore.shutdown`), gets an :class:`Unmap`; once done, ``REMOVED``.

Whether a mapped external address is public is decided here too (:func:`classify_external`):
a router that reports a private or shared-space address (100.64.0.0/10) has another NAT in
front of it, and the mapping says so.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field, replace

from multiaddr import Multiaddr

from .config import PortMappingConfig
from .events import (
    PortMapping,
    PortMappingChange,
    PortMappingChanged,
    PortMappingFailed,
    PortMappingFailure,
    PortMappingProtocol,
)

__all__ = [
    "Discover",
    "GatewayAnswer",
    "Map",
    "MapError",
    "MapSuccess",
    "MapperCore",
    "Unmap",
    "classify_external",
    "order_answers",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Event = PortMappingChanged | PortMappingFailed

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_UNROUTABLE = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "240.0.0.0/4", "fc00::/7"))


def classify_external(ip: IPAddress | None, config: PortMappingConfig) -> tuple[bool, str]:
    """Whether a router's external address can be public, and if not, why.

    Documentation ranges count as public (test networks are built on them; see the
    :class:`~libp2p.network.address_policy.AddressPolicy`); private and shared-space
    addresses do not unless the policy's ``allow`` names them.
    """
    if ip is None:
        return False, "the router did not report its external address"
    policy = config.addresses
    addr = Multiaddr(f"/{'ip4' if ip.version == 4 else 'ip6'}/{ip}")
    allowed = any(
        ip in net
        for net in (ipaddress.ip_network(r, strict=False) for r in policy.allow)
        if net.version == ip.version
    )
    if not policy.accepts(addr):
        return False, f"router's external address {ip} is not usable by remote peers"
    if allowed:
        return True, ""
    if ip.version == 4 and ip in _SHARED:
        return False, (
            f"router's external address {ip} is in the shared address space (RFC 6598): "
            "a carrier-grade NAT is in front"
        )
    if any(ip in net for net in _PRIVATE):
        return False, (
            f"router's external address {ip} is private (RFC 1918): another NAT is in front"
        )
    if any(ip in net for net in _UNROUTABLE if net.version == ip.version):
        return False, f"router's external address {ip} is not routable"
    return True, ""


# --- what the driver reports -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayAnswer:
    """A protocol's answer to discovery."""

    protocol: PortMappingProtocol
    #: The answering server's IP (for UPnP: the device's).
    server: str
    #: When the answer arrived (trio clock).
    at: float
    #: The external address it reported, if it did (NAT-PMP, UPnP).
    external_ip: IPAddress | None = None
    #: Protocol-specific handle the driver needs later (UPnP: the WAN service).
    detail: object = None


@dataclass(frozen=True, slots=True)
class MapSuccess:
    external_ip: IPAddress | None
    external_port: int
    #: Granted lease (0: permanent).
    lease: float
    #: Protocol state the driver wants back on renewal and removal (PCP's nonce...).
    detail: object = None


@dataclass(frozen=True, slots=True)
class MapError:
    failure: PortMappingFailure
    reason: str


# --- what the core asks for ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Discover:
    """Probe every enabled protocol at the gateway; report with :meth:`MapperCore.discovered`."""


@dataclass(frozen=True, slots=True)
class Map:
    """Map (or renew) ``internal_port`` with ``answer``'s protocol; report with
    :meth:`MapperCore.mapped`."""

    internal_ip: str
    internal_port: int
    answer: GatewayAnswer
    lease: float
    #: Ask for this external port (the current one on renewal, else the internal port).
    suggested_external_port: int
    #: The current mapping's protocol state when renewing.
    detail: object = None
    #: When renewing: the current lease's end (the request is given up then).
    expires: float = math.inf


@dataclass(frozen=True, slots=True)
class Unmap:
    """Remove ``mapping``; report with :meth:`MapperCore.unmapped`."""

    internal_port: int
    mapping: PortMapping
    answer: GatewayAnswer
    detail: object = None


Action = Discover | Map | Unmap


_PROTOCOL_ORDER = {
    PortMappingProtocol.PCP: 0,
    PortMappingProtocol.NAT_PMP: 1,
    PortMappingProtocol.UPNP: 2,
}


def order_answers(answers: list[GatewayAnswer]) -> list[GatewayAnswer]:
    """Answers in the order to try them: first come first, but PCP takes NAT-PMP's place
    when the same server answered both."""
    ranked = sorted(answers, key=lambda a: a.at)
    pcp_servers = {a.server for a in ranked if a.protocol is PortMappingProtocol.PCP}
    out: list[GatewayAnswer] = []
    for answer in ranked:
        if answer.protocol is PortMappingProtocol.PCP and answer in out:
            continue
        if answer.protocol is PortMappingProtocol.NAT_PMP and answer.server in pcp_servers:
            pcp = next(
                a
                for a in ranked
                if a.protocol is PortMappingProtocol.PCP and a.server == answer.server
            )
            if pcp not in out:
                out.append(pcp)
        out.append(answer)
    return out


@dataclass
class _Port:
    internal_ip: str
    port: int
    wanted: bool = True
    mapping: PortMapping | None = None
    answer: GatewayAnswer | None = None
    detail: object = None
    #: Next time to act (map, renew or retry).
    due: float = 0.0
    #: Index into the answer order for the current round.
    attempt: int = 0
    failures: int = 0
    refusals: list[tuple[PortMappingProtocol, MapError]] = field(default_factory=list)
    renew_failures: int = 0
    last_error: MapError | None = field(default=None)
    external_port: int | None = None

    @property
    def internal(self) -> Multiaddr:
        return Multiaddr(f"/ip4/{self.internal_ip}/tcp/{self.port}")


class MapperCore:
    """State of the port mapper (see the module docstring)."""

    def __init__(self, config: PortMappingConfig, now: float, gateway: str | None = None) -> None:
        self.config = config
        self.gateway = gateway
        self._ports: dict[int, _Port] = {}
        self._answers: list[GatewayAnswer] | None = None
        self._discovering = False
        self._discover_due = now
        self._discover_failures = 0
        self._closing = False

    # -- inputs -------------------------------------------------------------------------------

    def set_ports(self, internal_ip: str, ports: set[int], now: float) -> None:
        """The TCP ports we listen on (reached at ``internal_ip`` from the LAN)."""
        for port in ports:
            entry = self._ports.get(port)
            if entry is None or not entry.wanted:
                self._ports[port] = _Port(internal_ip, port, due=now)
            elif entry.internal_ip != internal_ip and entry.mapping is None:
                entry.internal_ip = internal_ip
        for port, entry in self._ports.items():
            if port not in ports:
                entry.wanted = False
                entry.due = now

    @property
    def mappings(self) -> list[PortMapping]:
        return [e.mapping for e in self._ports.values() if e.mapping is not None]

    @property
    def answers(self) -> list[GatewayAnswer] | None:
        """The protocols that answered the last discovery, in the order they are tried."""
        return self._answers

    def poll(self, now: float) -> list[Action]:
        """What to do now (the driver runs the actions and reports each result)."""
        out: list[Action] = []
        for port, entry in list(self._ports.items()):
            if not entry.wanted:
                if entry.mapping is not None and entry.answer is not None:
                    out.append(Unmap(port, entry.mapping, entry.answer, entry.detail))
                else:
                    del self._ports[port]
        if self._closing:
            return out
        need = [e for e in self._ports.values() if e.wanted and e.due <= now]
        if not need:
            return out
        if self._answers is None:
            if not self._discovering and now >= self._discover_due:
                self._discovering = True
                out.append(Discover())
            return out
        for entry in need:
            if entry.mapping is not None and entry.answer is not None:
                answer = entry.answer
                suggested = entry.external_port or entry.port
            elif entry.attempt < len(self._answers):
                answer = self._answers[entry.attempt]
                suggested = entry.port
            else:
                entry.attempt = 0
                answer = self._answers[0]
                suggested = entry.port
            expires = entry.mapping.expires if entry.mapping is not None else math.inf
            out.append(
                Map(
                    entry.internal_ip,
                    entry.port,
                    answer,
                    self.config.lease,
                    suggested,
                    entry.detail,
                    expires,
                )
            )
            entry.due = math.inf  # in flight
        return out

    def discovered(self, answers: list[GatewayAnswer], now: float) -> list[Event]:
        """The protocols that answered discovery (any order; arrival times inside)."""
        self._discovering = False
        if answers:
            self._answers = order_answers(answers)
            self._discover_failures = 0
            if self.gateway is None:
                self.gateway = self._answers[0].server
            return []
        self._answers = None
        self._discover_failures += 1
        delay = self._backoff(self._discover_failures)
        self._discover_due = now + delay
        tried = ", ".join(p.value for p in self.config.protocols)
        events: list[Event] = []
        for entry in self._ports.values():
            if entry.wanted and entry.mapping is None:
                entry.due = now + delay
                events.append(
                    PortMappingFailed(
                        entry.internal,
                        PortMappingFailure.NO_GATEWAY,
                        f"no gateway answered ({tried} at {self.gateway or 'the default gateway'})",
                        None,
                        self.gateway,
                        now + delay,
                    )
                )
        return events

    def mapped(self, action: Map, result: MapSuccess | MapError, now: float) -> list[Event]:
        """The outcome of a :class:`Map`."""
        entry = self._ports.get(action.internal_port)
        if entry is None or not entry.wanted:
            if entry is not None and isinstance(result, MapSuccess):
                # Mapped while being given up: remember it so that poll() removes it.
                entry.mapping = self._mapping(entry, action.answer, result, now)
                entry.answer, entry.detail = action.answer, result.detail
            return []
        if isinstance(result, MapSuccess):
            return self._success(entry, action, result, now)
        return self._failure(entry, action, result, now)

    def unmapped(self, action: Unmap, now: float) -> list[Event]:
        """An :class:`Unmap` finished (successfully or not: removal is best effort)."""
        entry = self._ports.get(action.internal_port)
        if entry is not None and not entry.wanted:
            del self._ports[action.internal_port]
        elif entry is not None:
            entry.mapping = None
        return [PortMappingChanged(PortMappingChange.REMOVED, action.mapping)]

    def shutdown(self) -> list[Unmap]:
        """Stop mapping; the removals to do now."""
        self._closing = True
        out = []
        for port, entry in self._ports.items():
            entry.wanted = False
            if entry.mapping is not None and entry.answer is not None:
                out.append(Unmap(port, entry.mapping, entry.answer, entry.detail))
        return out

    def expire(self, now: float) -> list[Event]:
        """Mappings whose lease ran out without a successful renewal are lost."""
        events: list[Event] = []
        for entry in self._ports.values():
            mapping = entry.mapping
            if mapping is not None and entry.wanted and now >= mapping.expires:
                events.append(
                    PortMappingChanged(
                        PortMappingChange.LOST,
                        mapping,
                        reason=(
                            "the lease ran out: "
                            + (entry.last_error.reason if entry.last_error else "not renewed")
                        ),
                    )
                )
                entry.mapping = None
                entry.answer = None
                entry.detail = None
                entry.external_port = None
                entry.attempt = 0
                # Start over: the gateway may be gone or another one may answer.
                self._answers = None
                self._discover_due = now
                entry.due = now
        return events

    @property
    def next_deadline(self) -> float:
        """When :meth:`poll` (or :meth:`expire`) has something to do next."""
        times = [math.inf]
        for entry in self._ports.values():
            if not entry.wanted:
                return -math.inf
            times.append(entry.due)
            if entry.mapping is not None:
                times.append(entry.mapping.expires)
        if self._answers is None and not self._discovering:
            wanted = [e.due for e in self._ports.values() if e.wanted]
            if wanted:
                times.append(max(self._discover_due, min(wanted)))
        return min(times)

    # -- internals ----------------------------------------------------------------------------

    def _backoff(self, failures: int) -> float:
        return float(min(self.config.retry_max, self.config.retry_min * 2 ** (failures - 1)))

    def _mapping(
        self, entry: _Port, answer: GatewayAnswer, result: MapSuccess, now: float
    ) -> PortMapping:
        external_ip = result.external_ip if result.external_ip is not None else answer.external_ip
        public, why = classify_external(external_ip, self.config)
        external = None
        if external_ip is not None and not external_ip.is_unspecified:
            proto = "ip4" if external_ip.version == 4 else "ip6"
            external = Multiaddr(f"/{proto}/{external_ip}/tcp/{result.external_port}")
        lease = float(result.lease)
        return PortMapping(
            protocol=answer.protocol,
            internal=entry.internal,
            external=external,
            lease=lease,
            expires=now + lease if lease > 0 else math.inf,
            gateway=answer.server,
            external_is_public=public,
            not_public_reason=why,
        )

    def _success(self, entry: _Port, action: Map, result: MapSuccess, now: float) -> list[Event]:
        mapping = self._mapping(entry, action.answer, result, now)
        previous = entry.mapping
        entry.mapping = mapping
        entry.answer = action.answer
        entry.detail = result.detail
        entry.external_port = result.external_port
        entry.attempt = 0
        entry.failures = 0
        entry.renew_failures = 0
        entry.refusals = []
        entry.last_error = None
        entry.due = now + mapping.lease / 2 if mapping.lease > 0 else math.inf
        if previous is None:
            return [PortMappingChanged(PortMappingChange.ADDED, mapping)]
        if previous.external != mapping.external:
            return [
                PortMappingChanged(
                    PortMappingChange.UPDATED,
                    mapping,
                    previous,
                    reason=f"external address {previous.external} -> {mapping.external}",
                )
            ]
        return [PortMappingChanged(PortMappingChange.RENEWED, mapping, previous)]

    def _failure(self, entry: _Port, action: Map, error: MapError, now: float) -> list[Event]:
        entry.last_error = error
        if entry.mapping is not None:
            # A renewal failed: try again before the lease ends (LOST is for expire()).
            entry.renew_failures += 1
            left = entry.mapping.expires - now
            entry.due = now + min(self._backoff(entry.renew_failures), max(left / 2, 1.0))
            return [
                PortMappingFailed(
                    entry.internal,
                    error.failure,
                    f"renewal failed: {error.reason}",
                    action.answer.protocol,
                    action.answer.server,
                    entry.due,
                )
            ]
        entry.refusals.append((action.answer.protocol, error))
        entry.attempt += 1
        assert self._answers is not None
        if entry.attempt < len(self._answers):
            entry.due = now  # next protocol at once
            return []
        refusals, entry.refusals = entry.refusals, []
        # In a fixed order (PCP, NAT-PMP, UPnP), not the order the answers came in: the
        # same router refusing alike reads alike every time.
        refusals.sort(key=lambda refusal: _PROTOCOL_ORDER[refusal[0]])
        # The most telling reason: a router that says it has no external address explains
        # every other refusal; otherwise the first protocol's.
        protocol, first = next(
            ((p, e) for p, e in refusals if e.failure is PortMappingFailure.NO_EXTERNAL_ADDRESS),
            refusals[0],
        )
        entry.failures += 1
        entry.attempt = 0
        delay = self._backoff(entry.failures)
        entry.due = now + delay
        # The next round starts with discovery: the router may have changed.
        self._answers = None
        self._discover_due = now + delay
        return [
            PortMappingFailed(
                entry.internal,
                first.failure,
                first.reason,
                protocol,
                action.answer.server,
                entry.due,
                tuple(f"{p.value}: {e.reason}" for p, e in refusals),
            )
        ]


def with_expiry(mapping: PortMapping, expires: float) -> PortMapping:
    """``mapping`` with another expiry (tests)."""
    return replace(mapping, expires=expires)
