"""The reachability report's trio driver: feed the core, run its checks, publish changes.

Every host runs one (``host.reachability_service``; ``host.reachability`` is its report). It
follows, through reliable callbacks (never the lossy public bus): identify (observed address
candidates, newly identified AutoNAT servers, the NAT mapping verdict), the AutoNAT v1
client's answers, the port mapper's mappings and the host's listen addresses. When the core
says a check is due it runs it with the AutoNAT v2 client (several at once, to distinct
server groups, while an address is undecided), and
feeds the result back. Changes are published on ``host.events`` as
:class:`~.report.ReachabilityReportChanged`, and a flip of the host's status also as
:class:`~libp2p.host.autonat.ReachabilityChanged` (auto-relay follows those through
:attr:`ReachabilityService.on_reachability_changed`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio
from multiaddr import Multiaddr

from ...exceptions import Libp2pError, LocalUsageError
from ...network.addrs import is_circuit_addr
from ...peer.id import PeerID
from ..autonat.events import ReachabilityChanged, ReachabilityProbed
from ..autonat.protocol import ResponseStatus
from ..autonat.v2 import CheckOutcome
from .core import ReachabilityConfig, ReachabilityCore, server_group
from .report import ReachabilityReport, ReachabilityReportChanged

if TYPE_CHECKING:
    from ..host import Host

__all__ = ["ReachabilityService"]

logger = logging.getLogger(__name__)

#: Bound on one AutoNAT v2 check, whatever the client's own timeouts (a dial-back takes up
#: to the server's dial timeout, plus the dial data at a slow link's pace).
CHECK_TIMEOUT = 120.0


class ReachabilityService:
    """Keeps ``host.reachability`` up to date (see the module docs)."""

    def __init__(self, host: Host, config: ReachabilityConfig | None = None) -> None:
        self.host = host
        self.config = config or ReachabilityConfig()
        self._core: ReachabilityCore | None = None
        self._wakeup = trio.Event()
        self._report: ReachabilityReport | None = None
        #: Called synchronously with every flip of the host's status (auto-relay follows
        #: it); a callback must not block.
        self.on_reachability_changed: list[Callable[[ReachabilityChanged], None]] = []
        #: Called synchronously with every :class:`~.report.ReachabilityReportChanged`.
        self.on_report_changed: list[Callable[[ReachabilityReportChanged], None]] = []

    # -- state ------------------------------------------------------------------------------

    @property
    def core(self) -> ReachabilityCore:
        """The state core (available once the host has started)."""
        if self._core is None:
            raise LocalUsageError("the reachability service runs only inside 'async with host'")
        return self._core

    @property
    def report(self) -> ReachabilityReport:
        """The latest report."""
        if self._core is None:
            return ReachabilityCore(self.config, now=0.0).report(0.0)
        self._feed_sources()  # as of now, not as of the last wake-up
        return self._core.report(trio.current_time())

    def advertised_mapped(self) -> list[Multiaddr]:
        """Mapped addresses confirmed from outside (the host advertises them)."""
        return self._core.mapped_public() if self._core is not None else []

    def servers(self) -> list[tuple[PeerID, str | None]]:
        """Connected AutoNAT v2 servers with their groups."""
        v2 = self.host.autonat_v2
        if v2 is None:
            return []
        out = []
        for peer in v2.servers():
            group = None
            for conn in self.host.connections_to(peer):
                if not conn.relayed and conn.remote_addr is not None:
                    group = server_group(conn.remote_addr)
                    break
            out.append((peer, group))
        return out

    def _group_of(self, peer: PeerID) -> str | None:
        for conn in self.host.connections_to(peer):
            if not conn.relayed and conn.remote_addr is not None:
                return server_group(conn.remote_addr)
        return None

    # -- running ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the report until cancelled (the host runs this in its nursery)."""
        now = trio.current_time()
        self._core = ReachabilityCore(self.config, now=now)
        host = self.host
        identify = host.identify
        hooks: list[tuple[list[Any], Callable[..., None]]] = [
            (identify.on_identified, self._poke),
            (identify.on_candidates_changed, self._poke),
            (identify.on_nat_mapping_changed, self._poke),
        ]
        if host.autonat is not None:
            hooks.append((host.autonat.on_probed, self._v1_probed))
        if host.port_mapper is not None:
            hooks.append((host.port_mapper.on_mappings_changed, self._poke))
        for hook_list, callback in hooks:
            hook_list.append(callback)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await self._loop(nursery)
        finally:
            for hook_list, callback in hooks:
                hook_list.remove(callback)

    def poke(self) -> None:
        """Something the report depends on changed (the host's listen addresses): look
        again soon."""
        self._wakeup.set()

    def _poke(self, *_args: object) -> None:
        self._wakeup.set()

    def _v1_probed(self, probed: ReachabilityProbed, asked: Sequence[Multiaddr]) -> None:
        if self._core is None:
            return
        self._feed_sources()
        if probed.response is ResponseStatus.OK and probed.address is not None:
            reachable: bool | None = True
        elif probed.response is ResponseStatus.E_DIAL_ERROR:
            reachable = False
        else:
            reachable = None
        self._core.v1_result(
            probed.server,
            self._group_of(probed.server),
            reachable,
            probed.address,
            asked,
            trio.current_time(),
        )
        self._publish()
        self._wakeup.set()

    def _feed_sources(self) -> None:
        core = self.core
        now = trio.current_time()
        host = self.host
        core.set_listen_addrs(
            [a for a in host.interface_listen_addrs() if not is_circuit_addr(a)], now
        )
        observed = host.identify.observed
        core.set_observed(
            [(a, len(observed.observers_of(a, now))) for a in observed.candidates(now, 1)], now
        )
        core.set_port_mapping(_port_mapping_state(host))
        if host.port_mapper is not None:
            core.set_mapped(
                [
                    (m.external, m.protocol.value)
                    for m in host.port_mapper.mappings
                    if m.external is not None
                ],
                now,
            )
        core.set_nat_mapping(host.nat_mapping_status)

    def _publish(self) -> None:
        change = self.core.poll(trio.current_time())
        if change is None:
            return
        logger.info("reachability: %s", change.report.reason)
        for callback in list(self.on_report_changed):
            callback(change)
        self.host.events.publish(change)
        if change.report.status is not change.previous.status:
            public = change.report.public_addrs
            flipped = ReachabilityChanged(
                status=change.report.status,
                previous=change.previous.status,
                confidence=0,
                address=public[0] if public else None,
                server=None,
            )
            for reach_callback in list(self.on_reachability_changed):
                reach_callback(flipped)
            self.host.events.publish(flipped)
        if [str(a) for a in change.report.public_addrs] != [
            str(a) for a in change.previous.public_addrs
        ]:
            self.host.identify.notify_changed()

    async def _loop(self, nursery: trio.Nursery) -> None:
        core = self.core
        while True:
            self._feed_sources()
            self._publish()
            now = trio.current_time()
            servers = self.servers()
            pick = core.next_check(servers, now)
            if pick is not None:
                server, addr = pick
                core.check_started(server, addr, now, dict(servers).get(server))
                nursery.start_soon(self._check, server, addr)
                continue
            deadline = core.next_deadline(now)
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await self._wakeup.wait()
            self._wakeup = trio.Event()

    async def _check(self, server: PeerID, addr: Multiaddr) -> None:
        v2 = self.host.autonat_v2
        assert v2 is not None
        group = self._group_of(server)
        reachable: bool | None = None
        try:
            with trio.fail_after(CHECK_TIMEOUT):
                result = await v2.check(server, [addr])
        except (Libp2pError, trio.TooSlowError) as exc:
            # A server that went away (or a check that hung past every timeout of its own)
            # is no evidence; the address is asked again later.
            logger.info("AutoNAT v2 check of %s by %s failed: %s", addr, server, exc)
        else:
            # REACHABLE means our nonce came back on a fresh connection to the address;
            # UNREACHABLE, that the server dialed it and failed. The rest says nothing.
            if result.outcome is CheckOutcome.REACHABLE and result.verified:
                reachable = True
            elif result.outcome is CheckOutcome.UNREACHABLE:
                reachable = False
            logger.info(
                "AutoNAT v2 %s about %s: %s %s", server, addr, result.outcome.name, result.detail
            )
        self.core.v2_result(addr, server, group, reachable, trio.current_time())
        self._publish()
        self._wakeup.set()


def _port_mapping_state(host: Host) -> str | None:
    """The port mapper's state in words, for the report."""
    mapper = host.port_mapper
    if mapper is None:
        return None
    mapped = [m for m in mapper.mappings if m.external is not None]
    if mapped:
        parts = []
        for m in mapped:
            text = f"mapped {m.external} by {_PROTOCOL_NAMES[m.protocol.value]}"
            if not m.external_is_public and m.not_public_reason:
                text += f" ({m.not_public_reason})"
            parts.append(text)
        return "; ".join(parts)
    failure = mapper.last_failure
    if failure is not None:
        # In the mapper's fixed order (PCP, NAT-PMP, UPnP), whatever order the answers came in.
        details = f" ({'; '.join(failure.details)})" if failure.details else ""
        return f"failed: {failure.reason}{details}"
    return "asking the router"


_PROTOCOL_NAMES = {"upnp": "UPnP", "nat-pmp": "NAT-PMP", "pcp": "PCP"}
