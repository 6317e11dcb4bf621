"""The reachability report: what a host knows about being reachable, address by address.

A peer behind a NAT needs three answers before it connects: am I reachable, on which address,
and if not, what can still work. :class:`ReachabilityReport` gives them in one value
(``host.reachability``), built by :class:`~.core.ReachabilityCore` from every source the host
has: AutoNAT v2 checks (nonce-verified dial-backs), AutoNAT v1 answers, the addresses
identify's observers report, port mappings the router granted (UPnP, NAT-PMP, PCP) and the NAT
mapping behaviour inferred from identify (:mod:`libp2p.identify.nat_mapping`).
:class:`ReachabilityReportChanged` is published on ``host.events`` whenever any part of the
summary changes (an address's status, evidence or reason, the NAT type, the expectation);
only the number of identify observers may move without an event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from multiaddr import Multiaddr

from ...identify.nat_mapping import NatMapping
from ..autonat.events import Reachability

__all__ = [
    "AddressReachability",
    "AddressSource",
    "Expectation",
    "Filtering",
    "NatType",
    "ReachabilityReport",
    "ReachabilityReportChanged",
]


class AddressSource(enum.Enum):
    """Where an address of ours came from."""

    #: One of our listen addresses (an interface's address): reachable as it is only when
    #: no NAT is in front.
    LISTEN = "listen"
    #: What identify's observers saw our connections come from (our NAT's external address).
    OBSERVED = "observed"
    #: A port mapping the router granted (UPnP IGD, NAT-PMP or PCP).
    MAPPED = "mapped"


class Expectation(enum.Enum):
    """What a peer that wants to reach us should expect."""

    #: Dial us directly: an address of ours is confirmed reachable from outside.
    DIRECT = "direct"
    #: Reach us through a relay, then hole punch (DCUtR): we are behind a NAT whose mapping
    #: does not depend on the destination (or we do not know yet that it does).
    HOLE_PUNCH = "hole punch"
    #: Only a relay works: our NAT's mapping depends on the destination (a symmetric NAT),
    #: so a punch cannot find our port.
    RELAY_ONLY = "relay only"
    #: Not enough evidence yet.
    UNKNOWN = "unknown"


class Filtering(enum.Enum):
    """Whether our NAT or firewall lets a connection in that we did not ask for."""

    #: An AutoNAT server's dial-back reached our observed (unmapped) address: inbound
    #: connections get through (no NAT, or endpoint-independent filtering).
    OPEN = "open"
    #: Dial-backs to our observed address failed: unsolicited inbound connections are
    #: dropped or refused (hole punching can still open a way).
    FILTERED = "filtered"
    #: No dial-back to an observed address decided yet.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class NatType:
    """Our NAT, as far as the evidence goes: mapping (from identify's observers) and
    filtering (from AutoNAT dial-backs)."""

    mapping: NatMapping
    filtering: Filtering
    #: Why, in words.
    reason: str


@dataclass(frozen=True, slots=True)
class AddressReachability:
    """One address of ours and whether peers can dial it."""

    addr: Multiaddr
    status: Reachability
    #: Where the address came from.
    source: AddressSource
    #: How we know, in words, e.g. ``"confirmed by AutoNAT v2 from 2 servers"`` or
    #: ``"mapped by UPnP, but 100.64.1.2 is in the shared address space (RFC 6598): a
    #: carrier-grade NAT is in front"``.
    reason: str
    #: Distinct server groups (IPv4 /32, IPv6 /56) whose AutoNAT v2 dial-back carried our
    #: nonce to this address (the last answer of each group counts).
    confirmed_by: int = 0
    #: Distinct server groups whose AutoNAT v2 dial-back to this address failed.
    refuted_by: int = 0
    #: Distinct server groups whose AutoNAT v1 answer says reachable / unreachable
    #: (unverifiable: counted only where v2 has not decided).
    v1_reachable_by: int = 0
    v1_unreachable_by: int = 0
    #: Distinct observer groups that saw our connections come from this address.
    observed_by: int = 0
    #: The port-mapping protocol that made it (``"upnp"``, ``"nat-pmp"``, ``"pcp"``), if any.
    mapped_by: str | None = None
    #: Whether the address is advertised to other peers (in identify and DCUtR).
    advertised: bool = False

    def summary(self) -> tuple[object, ...]:
        """The parts whose change is reported: everything but the counts of observers (the
        reason carries the AutoNAT answers, so each new answer is an event)."""
        return (
            str(self.addr),
            self.status,
            self.source,
            self.mapped_by,
            self.advertised,
            self.reason,
        )


@dataclass(frozen=True, slots=True)
class ReachabilityReport:
    """Whether, where and how peers can reach us (``host.reachability``)."""

    #: ``PUBLIC`` when an address of ours is confirmed reachable, ``PRIVATE`` when every
    #: address worth asking about is found unreachable, ``UNKNOWN`` otherwise.
    status: Reachability
    #: Every address of ours the host knows, public ones first.
    addresses: tuple[AddressReachability, ...]
    nat: NatType
    #: What a peer that wants to reach us should expect.
    expect: Expectation
    #: The whole picture in one line, e.g. ``"private: /ip4/198.51.100.1/tcp/4001 observed
    #: by peers (identify); refuted by AutoNAT v2 (the dial-back failed) from 2 server
    #: group(s); peers reach us through a relay, then hole punch"``.
    reason: str
    #: Port mapping (``HostConfig.port_mapping``), in words: ``None`` when it is off, else
    #: e.g. ``"mapped /ip4/198.51.100.1/tcp/4001 by PCP"`` or why the router refused.
    port_mapping: str | None = None

    @property
    def public_addrs(self) -> list[Multiaddr]:
        """The addresses confirmed reachable."""
        return [a.addr for a in self.addresses if a.status is Reachability.PUBLIC]

    def address(self, addr: Multiaddr | str) -> AddressReachability | None:
        """The entry of ``addr``, if the report has one."""
        wanted = str(addr)
        for entry in self.addresses:
            if str(entry.addr) == wanted:
                return entry
        return None

    kind: ClassVar[str] = "reachability"

    def describe(self) -> str:
        """``reachability: <status>, expect <expect> — <why>``, and with several addresses
        one more indented line per address (the reason names the one that decided)."""
        status = self.status.value
        # The reason starts with the status, which the line already gave.
        why = self.reason.removeprefix(f"{status}: ")
        more = self.addresses if len(self.addresses) > 1 else ()
        return f"reachability: {status}, expect {self.expect.value} — {why}" + "".join(
            f"\n    {a.addr}: {a.status.value} ({a.reason})" for a in more
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "expect": self.expect.value,
            "nat_mapping": self.nat.mapping.value,
            "filtering": self.nat.filtering.value,
            "reason": self.reason,
            "port_mapping": self.port_mapping,
            "addresses": [
                {
                    "addr": str(a.addr),
                    "status": a.status.value,
                    "source": a.source.value,
                    "reason": a.reason,
                }
                for a in self.addresses
            ],
        }

    def summary(self) -> tuple[object, ...]:
        """The parts whose change is reported as :class:`ReachabilityReportChanged`."""
        return (
            self.status,
            self.expect,
            self.nat.mapping,
            self.nat.filtering,
            self.port_mapping,
            tuple(a.summary() for a in self.addresses),
        )


@dataclass(frozen=True, slots=True)
class ReachabilityReportChanged:
    """The reachability report changed (see ``host.reachability``)."""

    report: ReachabilityReport
    previous: ReachabilityReport

    kind: ClassVar[str] = "reachability"

    def describe(self) -> str:
        """The new report's line (see :meth:`ReachabilityReport.describe`)."""
        return self.report.describe()

    def to_dict(self) -> dict[str, Any]:
        return self.report.to_dict()
