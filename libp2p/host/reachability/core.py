"""The reachability report's core, without I/O: evidence in, a report and checks to run out.

Sources, each fed by the driver (:mod:`.service`) with ``now``:

* **addresses** -- our listen addresses (:meth:`ReachabilityCore.set_listen_addrs`), the
  external addresses identify's observers report with how many observer groups saw each
  (:meth:`~ReachabilityCore.set_observed`), and the external addresses port mappings gave
  (:meth:`~ReachabilityCore.set_mapped`). One entry per address; an observed address that a
  mapping also gives is the mapping's;
* **AutoNAT v2** results (:meth:`~ReachabilityCore.v2_result`): a dial-back that carried our
  nonce to the address (reachable) or a dial the server says failed (unreachable);
* **AutoNAT v1** answers (:meth:`~ReachabilityCore.v1_result`), which nothing verifies: a
  server can answer ``OK`` for a port nobody can reach (py-libp2p 0.8.1's does);
* the NAT's **mapping** behaviour from identify (:meth:`~ReachabilityCore.set_nat_mapping`).

Which addresses are worth checking: those whose IP is public -- globally routable, or in
:attr:`ReachabilityConfig.public_ranges` (a lab's documentation ranges). Others are reported
``PRIVATE`` with the reason (a private range; the shared address space of a carrier-grade NAT,
RFC 6598, which a router's port mapping reports when another NAT sits in front of it).

**No server decides alone.** Each address keeps the last answer of each *server group* (an
IPv4 address, an IPv6 /56, as identify groups observers: one machine with many peer IDs is one
voice), for ``result_ttl``, at most ``window`` groups. Its confidence is the number of groups
that found it reachable minus those that did not; an answer from a server in
:attr:`ReachabilityConfig.trusted_servers` (your own relay) weighs ``min_servers`` on its own.
An address is ``PUBLIC`` at confidence ``>= min_servers``, ``PRIVATE`` at ``<= -min_servers``
and keeps its previous status in between (hysteresis: flipping a decided address takes
``min_servers`` net answers the other way, so one odd answer never flaps it), ``UNKNOWN``
when no answer is left. v2 decides first. v1 answers count, by the same rule, only while v2
has not decided the address, and never against v2's evidence: a v1 ``OK`` cannot make public
an address a v2 server found unreachable, and so a lying v1 server cannot flip anything that a
v2 server has checked.

**Checks.** :meth:`~ReachabilityCore.next_check` picks the most urgent address (mapped first,
then observed by most observers, then listen addresses) and a server to ask: for an undecided
address a server of a group that has not answered for it yet (``min_servers`` groups are
needed), never the same server about the same address within ``retry_interval``; for a decided
one, after ``refresh_interval``, the group whose answer is oldest. One check per address at a
time for a decided address, up to ``min_servers`` at once (to distinct groups) for an
undecided one. :meth:`~ReachabilityCore.next_deadline` says when the next check becomes due.

**The report** (:meth:`~ReachabilityCore.report`): each address with its status and reason;
the host's status (``PUBLIC`` if an address is, ``PRIVATE`` if every address worth checking
is, else ``UNKNOWN``); the NAT type -- mapping from identify, filtering from the dial-backs to
observed (unmapped) addresses -- and what a dialer should expect: ``DIRECT`` when public,
``RELAY_ONLY`` when the mapping depends on the destination, ``HOLE_PUNCH`` when private or
filtered, else ``UNKNOWN``. :meth:`~ReachabilityCore.poll` returns a
:class:`~.report.ReachabilityReportChanged` when the report's summary changed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from multiaddr import Multiaddr

from ...identify.nat_mapping import NatMapping, NatMappingStatus
from ...identify.observed import observer_group
from ...network.addrs import first_ip, is_circuit_addr
from ...peer.id import PeerID
from ..autonat.events import Reachability
from .report import (
    AddressReachability,
    AddressSource,
    Expectation,
    Filtering,
    NatType,
    ReachabilityReport,
    ReachabilityReportChanged,
)

__all__ = ["ReachabilityConfig", "ReachabilityCore", "public_ip_reason", "server_group"]

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_SHARED = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True, slots=True)
class ReachabilityConfig:
    """How the host weighs reachability evidence (``HostConfig.reachability``)."""

    #: Distinct server groups (net) that must agree before an address is decided, and that
    #: must disagree before a decided address flips.
    min_servers: int = 2
    #: Servers whose answer alone decides (e.g. the relay you run yourself).
    trusted_servers: tuple[PeerID, ...] = ()
    #: IP ranges that count as public besides globally routable ones (a lab's documentation
    #: ranges, e.g. ``("198.51.100.0/24", "2001:db8::/32")``).
    public_ranges: tuple[str, ...] = ()
    #: Server groups whose latest answer is kept per address.
    window: int = 5
    #: How long an answer counts.
    result_ttl: float = 3600.0
    #: Wait after an address appears before checking it (identify settles).
    first_check_delay: float = 0.5
    #: A server is asked about the same address again only after this long (while undecided).
    retry_interval: float = 30.0
    #: A decided address is checked again after this long.
    refresh_interval: float = 15 * 60.0
    #: Observer groups that make an observed address advertised (``HostConfig.min_observers``).
    advertise_observers: int = 2
    _public: tuple[_IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nets = tuple(ipaddress.ip_network(r) for r in self.public_ranges)
        object.__setattr__(self, "_public", nets)

    def is_public(self, addr: Multiaddr) -> bool:
        """Whether ``addr``'s IP is public (globally routable or in :attr:`public_ranges`)."""
        return public_ip_reason(addr, self._public) is None


def public_ip_reason(addr: Multiaddr, public: Sequence[_IPNetwork] = ()) -> str | None:
    """Why ``addr``'s IP is not public, or ``None`` if it is."""
    ip = first_ip(addr)
    if ip is None:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in public):
        return None
    if ip.is_global:
        return None
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return f"{ip} is in the shared address space (RFC 6598): a carrier-grade NAT is in front"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is link-local"
    if ip.is_private:
        return f"{ip} is in a private range, not reachable from the internet"
    return f"{ip} is not globally routable"


def server_group(remote: Multiaddr | None) -> str | None:
    """The group a server's answers count for (its IPv4 address or IPv6 /56)."""
    return observer_group(remote) if remote is not None else None


@dataclass(slots=True)
class _Answer:
    at: float
    reachable: bool
    weight: int


class _Entry:
    """One address of ours and the evidence about it."""

    def __init__(self, addr: Multiaddr, source: AddressSource, now: float) -> None:
        self.addr = addr
        self.source = source
        self.seen_at = now
        self.mapped_by: str | None = None
        self.observed_by = 0
        self.v2: dict[str, _Answer] = {}
        self.v1: dict[str, _Answer] = {}
        self.asked: dict[PeerID, float] = {}
        self.in_flight: dict[PeerID, str | None] = {}  # server -> its group
        self.last_check: float | None = None
        self.status = Reachability.UNKNOWN
        self.decided_by = ""  # "v2" / "v1" / ""

    def expire(self, now: float, ttl: float) -> None:
        for book in (self.v2, self.v1):
            for group in [g for g, a in book.items() if now - a.at > ttl]:
                del book[group]

    @staticmethod
    def confidence(book: dict[str, _Answer]) -> int:
        return sum(a.weight if a.reachable else -a.weight for a in book.values())

    @staticmethod
    def count(book: dict[str, _Answer], reachable: bool) -> int:
        return sum(1 for a in book.values() if a.reachable is reachable)


def _record(book: dict[str, _Answer], group: str, answer: _Answer, window: int) -> None:
    book.pop(group, None)
    book[group] = answer
    while len(book) > window:
        del book[min(book, key=lambda g: book[g].at)]


_PRIORITY = {AddressSource.MAPPED: 0, AddressSource.OBSERVED: 1, AddressSource.LISTEN: 2}


class ReachabilityCore:
    """Reachability evidence and check schedule of one host (see the module docs)."""

    def __init__(self, config: ReachabilityConfig | None = None, *, now: float) -> None:
        self.config = config or ReachabilityConfig()
        self._entries: dict[str, _Entry] = {}
        self._listen: list[Multiaddr] = []
        self._observed: dict[str, tuple[Multiaddr, int]] = {}
        self._mapped: dict[str, tuple[Multiaddr, str]] = {}
        self._nat = NatMappingStatus(NatMapping.UNKNOWN, "no observation yet", (), ())
        self._port_mapping: str | None = None
        self._published: ReachabilityReport | None = None
        self._trusted = frozenset(self.config.trusted_servers)
        self._now = now
        self._published = self.report(now)

    # -- sources -------------------------------------------------------------------------

    def set_listen_addrs(self, addrs: Iterable[Multiaddr], now: float) -> None:
        """Our listen addresses (unspecified ones already expanded to interface addresses)."""
        self._listen = [a for a in addrs if _worth_reporting(a, self.config._public)]
        self._rebuild(now)

    def set_observed(self, observed: Iterable[tuple[Multiaddr, int]], now: float) -> None:
        """External addresses observers reported, each with its number of observer groups."""
        self._observed = {
            str(a): (a, n) for a, n in observed if _worth_reporting(a, self.config._public)
        }
        self._rebuild(now)

    def set_mapped(self, mapped: Iterable[tuple[Multiaddr, str]], now: float) -> None:
        """External addresses of our port mappings, each with the protocol that made it."""
        self._mapped = {
            str(a): (a, p) for a, p in mapped if _worth_reporting(a, self.config._public)
        }
        self._rebuild(now)

    def set_nat_mapping(self, status: NatMappingStatus) -> None:
        """Identify's verdict on our NAT's mapping."""
        self._nat = status

    def set_port_mapping(self, state: str | None) -> None:
        """The port mapper's state in words (``None``: port mapping is off)."""
        self._port_mapping = state

    def _rebuild(self, now: float) -> None:
        wanted: dict[str, tuple[Multiaddr, AddressSource]] = {}
        for key, (addr, _proto) in self._mapped.items():
            wanted[key] = (addr, AddressSource.MAPPED)
        for key, (addr, _n) in self._observed.items():
            wanted.setdefault(key, (addr, AddressSource.OBSERVED))
        for addr in self._listen:
            wanted.setdefault(str(addr), (addr, AddressSource.LISTEN))
        for key in [k for k in self._entries if k not in wanted]:
            del self._entries[key]
        for key, (addr, source) in wanted.items():
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(addr, source, now)
            entry.source = source
            entry.mapped_by = self._mapped[key][1] if key in self._mapped else None
            entry.observed_by = self._observed[key][1] if key in self._observed else 0

    # -- results -------------------------------------------------------------------------

    def _weight(self, server: PeerID) -> int:
        return self.config.min_servers if server in self._trusted else 1

    def v2_result(
        self, addr: Multiaddr, server: PeerID, group: str | None, reachable: bool | None, now: float
    ) -> None:
        """An AutoNAT v2 check of ``addr`` by ``server`` (of ``group``) ended: ``True`` our
        nonce came back on a dial to it, ``False`` the server's dial failed, ``None`` no
        evidence (refused, rejected, an error, a dial-back without our nonce)."""
        entry = self._entries.get(str(addr))
        if entry is None:
            return
        entry.in_flight.pop(server, None)
        entry.last_check = now
        if reachable is None or group is None:
            return
        answer = _Answer(now, reachable, self._weight(server))
        _record(entry.v2, group, answer, self.config.window)
        self._decide(entry, now)

    def v1_result(
        self,
        server: PeerID,
        group: str | None,
        reachable: bool | None,
        addr: Multiaddr | None,
        asked: Sequence[Multiaddr],
        now: float,
    ) -> None:
        """An AutoNAT v1 answer: ``True`` with the address it reached (``addr``), ``False``
        for every address in ``asked``, ``None`` no evidence."""
        if reachable is None or group is None:
            return
        targets = [addr] if reachable and addr is not None else ([] if reachable else asked)
        for target in targets:
            entry = self._entries.get(str(target))
            if entry is None:
                continue
            answer = _Answer(now, reachable, self._weight(server))
            _record(entry.v1, group, answer, self.config.window)
            self._decide(entry, now)

    def _decide(self, entry: _Entry, now: float) -> None:
        entry.expire(now, self.config.result_ttl)
        need = self.config.min_servers
        v2 = entry.confidence(entry.v2)
        v1 = entry.confidence(entry.v1)
        if v2 >= need:
            entry.status, entry.decided_by = Reachability.PUBLIC, "v2"
        elif v2 <= -need:
            entry.status, entry.decided_by = Reachability.PRIVATE, "v2"
        elif v1 >= need and v2 >= 0 and entry.decided_by != "v2":
            entry.status, entry.decided_by = Reachability.PUBLIC, "v1"
        elif v1 <= -need and v2 <= 0 and entry.decided_by != "v2":
            entry.status, entry.decided_by = Reachability.PRIVATE, "v1"
        elif not entry.v2 and not entry.v1:
            entry.status, entry.decided_by = Reachability.UNKNOWN, ""
        elif entry.decided_by == "v1" and (
            (entry.status is Reachability.PUBLIC and v2 < 0)
            or (entry.status is Reachability.PRIVATE and v2 > 0)
        ):
            # v2 evidence against a v1 decision: v1 no longer decides.
            entry.status, entry.decided_by = Reachability.UNKNOWN, ""
        # else: hysteresis, the previous status stands.

    # -- checks --------------------------------------------------------------------------

    def _checkable(self, entry: _Entry) -> bool:
        return self.config.is_public(entry.addr)

    def _decided(self, entry: _Entry) -> bool:
        need = self.config.min_servers
        return abs(entry.confidence(entry.v2)) >= need

    def _due_at(self, entry: _Entry) -> float:
        """When ``entry`` needs its next check (given a fitting server)."""
        start = entry.seen_at + self.config.first_check_delay
        if self._decided(entry):
            newest = max(a.at for a in entry.v2.values())
            return max(start, newest + self.config.refresh_interval)
        return start

    def next_check(
        self, servers: Sequence[tuple[PeerID, str | None]], now: float
    ) -> tuple[PeerID, Multiaddr] | None:
        """The check to run now, if any: ``(server, address)``. ``servers`` are the
        connected AutoNAT v2 servers with their groups. Call :meth:`check_started` next."""
        entries = sorted(
            (e for e in self._entries.values() if self._checkable(e) and not self._busy(e)),
            key=lambda e: (_PRIORITY[e.source], -e.observed_by, str(e.addr)),
        )
        for entry in entries:
            entry.expire(now, self.config.result_ttl)
            if now < self._due_at(entry):
                continue
            server = self._pick_server(entry, servers, now)
            if server is not None:
                return server, entry.addr
        return None

    def _pick_server(
        self, entry: _Entry, servers: Sequence[tuple[PeerID, str | None]], now: float
    ) -> PeerID | None:
        decided = self._decided(entry)
        best: tuple[float, str, PeerID] | None = None
        for peer, group in servers:
            if group is None:
                continue
            if peer in entry.in_flight or group in entry.in_flight.values():
                continue
            asked = entry.asked.get(peer)
            if not decided:
                if group in entry.v2 or (
                    asked is not None and now - asked < self.config.retry_interval
                ):
                    continue
                rank = asked if asked is not None else -1.0
            else:
                answer = entry.v2.get(group)
                rank = answer.at if answer is not None else -1.0
            key = (rank, str(peer), peer)
            if best is None or key[:2] < best[:2]:
                best = key
        return best[2] if best is not None else None

    def check_started(
        self, server: PeerID, addr: Multiaddr, now: float, group: str | None = None
    ) -> None:
        """A v2 check of ``addr`` by ``server`` (of ``group``) starts now."""
        entry = self._entries.get(str(addr))
        if entry is not None:
            entry.in_flight[server] = group
            entry.asked[server] = now

    def _busy(self, entry: _Entry) -> bool:
        """Whether ``entry`` has as many checks under way as it may: an undecided address
        is asked of ``min_servers`` groups at once (they are what it needs), a decided one
        (a refresh) of one."""
        limit = 1 if self._decided(entry) else self.config.min_servers
        return len(entry.in_flight) >= limit

    def next_deadline(self, now: float) -> float | None:
        """When a check may next become due (the driver also wakes when servers change)."""
        times = [
            self._due_at(e)
            for e in self._entries.values()
            if self._checkable(e) and not self._busy(e)
        ]
        for entry in self._entries.values():
            if not self._decided(entry):
                times.extend(t + self.config.retry_interval for t in entry.asked.values())
            for book in (entry.v2, entry.v1):
                for answer in book.values():
                    times.append(answer.at + self.config.result_ttl)
        future = [t for t in times if t > now]
        return min(future) if future else None

    # -- the report ----------------------------------------------------------------------

    def _address_report(self, entry: _Entry) -> AddressReachability:
        cfg = self.config
        not_public = public_ip_reason(entry.addr, cfg._public)
        confirmed = entry.count(entry.v2, True)
        refuted = entry.count(entry.v2, False)
        v1_yes = entry.count(entry.v1, True)
        v1_no = entry.count(entry.v1, False)
        status = entry.status
        if entry.source is AddressSource.MAPPED:
            how = f"mapped by {_PROTOCOL_NAMES.get(entry.mapped_by or '', entry.mapped_by)}"
        elif entry.source is AddressSource.OBSERVED:
            how = "observed by peers (identify)"
        else:
            how = "a listen address"
        if not_public is not None:
            status = Reachability.PRIVATE
            reason = f"{how}, but {not_public}"
        elif status is Reachability.UNKNOWN:
            parts = []
            if confirmed or refuted:
                parts.append(
                    f"AutoNAT v2: reachable from {confirmed}, unreachable from {refuted} "
                    f"server group(s); {cfg.min_servers} needed"
                )
            if v1_yes or v1_no:
                parts.append(f"AutoNAT v1 (unverified): {v1_yes} yes, {v1_no} no")
            reason = f"{how}; " + ("; ".join(parts) if parts else "not checked yet")
        else:
            word = "confirmed" if status is Reachability.PUBLIC else "refuted"
            book = entry.v2 if entry.decided_by == "v2" else entry.v1
            agreeing = [a for a in book.values() if a.reachable is (status is Reachability.PUBLIC)]
            trusted = sum(1 for a in agreeing if a.weight > 1)
            n = len(agreeing)
            if entry.decided_by == "v2" and status is Reachability.PUBLIC:
                by = f"by AutoNAT v2 (nonce-verified dial-back) from {n} server group(s)"
            elif entry.decided_by == "v2":
                by = f"by AutoNAT v2 (the dial-back failed) from {n} server group(s)"
            else:
                by = f"by AutoNAT v1 from {n} server group(s)"
            if trusted:
                by += f", {trusted} of them trusted"
            reason = f"{how}; {word} {by}"
        if entry.source is AddressSource.MAPPED:
            advertised = status is Reachability.PUBLIC
            if not advertised and not_public is None:
                reason += "; not advertised until confirmed from outside"
            elif not advertised:
                reason += "; not advertised"
        elif entry.source is AddressSource.OBSERVED:
            advertised = entry.observed_by >= cfg.advertise_observers
        else:
            advertised = True
        return AddressReachability(
            addr=entry.addr,
            status=status,
            source=entry.source,
            reason=reason,
            confirmed_by=confirmed,
            refuted_by=refuted,
            v1_reachable_by=v1_yes,
            v1_unreachable_by=v1_no,
            observed_by=entry.observed_by,
            mapped_by=entry.mapped_by,
            advertised=advertised,
        )

    def report(self, now: float) -> ReachabilityReport:
        """The report as of ``now``."""
        for entry in self._entries.values():
            self._decide(entry, now)  # answers may have expired
        reports = sorted(
            (self._address_report(e) for e in self._entries.values()),
            key=lambda r: (
                r.status is not Reachability.PUBLIC,
                r.status is Reachability.PRIVATE,
                _PRIORITY[r.source],
                str(r.addr),
            ),
        )
        checkable = [
            r
            for r, e in zip(reports, [self._entries[str(r.addr)] for r in reports], strict=True)
            if self._checkable(e)
        ]
        public = [r for r in reports if r.status is Reachability.PUBLIC]
        if public:
            status = Reachability.PUBLIC
        elif checkable and all(r.status is Reachability.PRIVATE for r in checkable):
            status = Reachability.PRIVATE
        else:
            status = Reachability.UNKNOWN
        nat = self._nat_type(reports)
        if status is Reachability.PUBLIC:
            expect = Expectation.DIRECT
        elif nat.mapping is NatMapping.ENDPOINT_DEPENDENT:
            expect = Expectation.RELAY_ONLY
        elif status is Reachability.PRIVATE or nat.filtering is Filtering.FILTERED:
            expect = Expectation.HOLE_PUNCH
        else:
            expect = Expectation.UNKNOWN
        reason = self._summary_reason(status, expect, public, checkable, reports, nat)
        if self._port_mapping is not None and status is not Reachability.PUBLIC:
            reason += f"; port mapping: {self._port_mapping}"
        return ReachabilityReport(
            status=status,
            addresses=tuple(reports),
            nat=nat,
            expect=expect,
            reason=reason,
            port_mapping=self._port_mapping,
        )

    def _nat_type(self, reports: Sequence[AddressReachability]) -> NatType:
        filtering = Filtering.UNKNOWN
        why = ""
        for r in reports:
            if r.source is AddressSource.MAPPED or not self.config.is_public(r.addr):
                continue
            if r.status is Reachability.PUBLIC:
                filtering, why = Filtering.OPEN, f"dial-backs reached {r.addr}"
                break
            if r.status is Reachability.PRIVATE and filtering is Filtering.UNKNOWN:
                filtering, why = Filtering.FILTERED, f"dial-backs to {r.addr} failed"
        mapping = self._nat.mapping
        reason = f"mapping {mapping.value} ({self._nat.reason}); filtering {filtering.value}"
        if why:
            reason += f" ({why})"
        return NatType(mapping=mapping, filtering=filtering, reason=reason)

    @staticmethod
    def _summary_reason(
        status: Reachability,
        expect: Expectation,
        public: Sequence[AddressReachability],
        checkable: Sequence[AddressReachability],
        reports: Sequence[AddressReachability],
        nat: NatType,
    ) -> str:
        if public:
            head = f"public: {public[0].addr} {public[0].reason}"
        elif status is Reachability.PRIVATE:
            head = f"private: {checkable[0].addr} {checkable[0].reason}"
        elif checkable:
            head = f"unknown: {checkable[0].addr} {checkable[0].reason}"
        elif reports:
            head = f"unknown: no public address to check ({reports[0].addr}: {reports[0].reason})"
        else:
            head = "unknown: no address of ours is known yet"
        tail = {
            Expectation.DIRECT: "peers can dial us directly",
            Expectation.HOLE_PUNCH: "peers reach us through a relay, then hole punch",
            Expectation.RELAY_ONLY: (
                "peers reach us through a relay only: our NAT's mapping depends on the "
                "destination, so hole punching cannot work"
            ),
            Expectation.UNKNOWN: "what peers should expect is not known yet",
        }[expect]
        return f"{head}; {tail}"

    def poll(self, now: float) -> ReachabilityReportChanged | None:
        """The change since the last poll, if the report's summary changed."""
        current = self.report(now)
        previous = self._published
        assert previous is not None
        if current.summary() == previous.summary():
            self._published = current
            return None
        self._published = current
        return ReachabilityReportChanged(report=current, previous=previous)

    def mapped_public(self) -> list[Multiaddr]:
        """Mapped addresses confirmed reachable: the ones to advertise."""
        out = []
        for entry in self._entries.values():
            if (
                entry.source is AddressSource.MAPPED
                and entry.status is Reachability.PUBLIC
                and self.config.is_public(entry.addr)
            ):
                out.append(entry.addr)
        return out


_PROTOCOL_NAMES = {"upnp": "UPnP", "nat-pmp": "NAT-PMP", "pcp": "PCP"}


def _worth_reporting(addr: Multiaddr, public: Sequence[_IPNetwork]) -> bool:
    """Addresses the report lists: IP addresses, not relayed, not loopback (unless a public
    range names it, as tests on loopback do), unspecified, link-local or multicast."""
    if is_circuit_addr(addr):
        return False
    ip = first_ip(addr)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in public):
        return True
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast)
