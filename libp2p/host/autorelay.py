"""Auto-relay: reserve on known relays until the reachability report finds us public.

A host behind a NAT is reachable only through a relay; a public host needs none. With
``HostConfig(static_relays=[...])`` (each ``<relay addr>/p2p/<relay id>``), :class:`AutoRelay`
follows :class:`~libp2p.host.autonat.ReachabilityChanged` events:

* on start it connects to the relays (so that, when they also serve AutoNAT, there is
  someone to ask);
* until reachability is ``PUBLIC`` -- from the start, and whenever it becomes ``PRIVATE`` or
  ``UNKNOWN`` again -- it reserves on every relay, as
  ``host.listen("<relay>/p2p-circuit")`` does: the relay client keeps each reservation up
  (refresh, reconnection) from then on. A relay that cannot be reached or refuses is retried
  with exponential backoff, reported as :class:`~libp2p.relay.circuit_v2.ReservationRefused`
  or :class:`~libp2p.relay.circuit_v2.ReservationAttemptFailed`; success as
  :class:`~libp2p.relay.circuit_v2.ReservationMade`;
* when reachability becomes ``PUBLIC`` it stops the reservations it made (not those the
  application made itself) and reports each as
  :class:`~libp2p.relay.circuit_v2.ReservationLost`: peers can dial us directly.

A host whose reachability is not known yet reserves too: until a public address is
confirmed, a reservation is what keeps it reachable (and one untrusted server cannot decide
the report alone, so "unknown" may last). Reachability changes come from the reachability
service's reliable callbacks (``ReachabilityService.on_reachability_changed``), not from the
public event bus, which may drop
events for a slow subscriber; retries wait on the :class:`~libp2p.relay.circuit_v2.schedule.Backoff`
the relay client uses too.

go-libp2p's autorelay also finds relays on its own (from peers that announce the hop
protocol); this one uses the relays it is given.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import trio
from multiaddr import Multiaddr

from ..exceptions import Libp2pError, LocalUsageError
from ..network.addrs import split_peer_id, with_peer_id
from ..peer.id import PeerID
from ..relay.circuit_v2.events import (
    ReservationAttemptFailed,
    ReservationLost,
    ReservationRefused,
)
from ..relay.circuit_v2.interfaces import AutoRelayHost, ReachabilitySource
from ..relay.circuit_v2.protocol import RelayRefused
from ..relay.circuit_v2.schedule import Backoff
from .autonat.events import Reachability, ReachabilityChanged

__all__ = ["AutoRelay"]

logger = logging.getLogger(__name__)


class AutoRelay:
    """Reserves on static relays until the host is public (``host.auto_relay``).

    ``host`` is anything with the members :class:`~libp2p.relay.circuit_v2.interfaces.AutoRelayHost`
    lists; ``reachability`` the source whose changes it follows (the host passes its
    reachability service; by default ``host.autonat``; without either, auto-relay only
    connects to the relays).
    """

    def __init__(
        self,
        host: AutoRelayHost,
        relays: Sequence[Multiaddr | str],
        *,
        reachability: ReachabilitySource | None = None,
    ) -> None:
        self.host = host
        self._reachability = reachability if reachability is not None else host.autonat
        self._relays: dict[PeerID, Multiaddr] = {}
        for relay in relays:
            addr, peer = split_peer_id(Multiaddr(str(relay)))
            if peer is None:
                raise LocalUsageError(f"static relay {relay} needs its /p2p/<relay id>")
            self._relays[peer] = addr
        self._pending: dict[PeerID, trio.CancelScope] = {}
        self._ours: set[PeerID] = set()
        self._nursery: trio.Nursery | None = None

    @property
    def relays(self) -> list[PeerID]:
        """The configured relays."""
        return list(self._relays)

    @property
    def active(self) -> bool:
        """True while we reserve (or try to) because we are private."""
        return bool(self._pending or self._ours)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow reachability changes until cancelled (the host runs this)."""
        # Changes are queued without bound: every one is handled, in order (a status flips
        # rarely, so the queue stays short).
        send, changes = trio.open_memory_channel[Reachability](math.inf)

        def changed(event: ReachabilityChanged) -> None:
            send.send_nowait(event.status)

        source = self._reachability
        if source is not None:
            source.on_reachability_changed.append(changed)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for relay, addr in self._relays.items():
                    nursery.start_soon(self._connect, relay, addr)
                if source is not None:
                    self._start()
                task_status.started()
                async for status in changes:
                    if status is Reachability.PUBLIC:
                        await self._stop()
                    else:
                        self._start()
        finally:
            if source is not None:
                source.on_reachability_changed.remove(changed)

    async def _connect(self, relay: PeerID, addr: Multiaddr) -> None:
        try:
            await self.host.connect(with_peer_id(addr, relay))
        except (Libp2pError, trio.TooSlowError) as exc:
            logger.info("static relay %s is unreachable for now: %s", relay, exc)

    def _start(self) -> None:
        assert self._nursery is not None
        held = self.host.relay.reservations
        for relay, addr in self._relays.items():
            if relay in self._pending or relay in self._ours or relay in held:
                continue
            scope = trio.CancelScope()
            self._pending[relay] = scope
            self._nursery.start_soon(self._reserve, relay, addr, scope)

    async def _reserve(self, relay: PeerID, addr: Multiaddr, scope: trio.CancelScope) -> None:
        circuit = Multiaddr(f"{with_peer_id(addr, relay)}/p2p-circuit")
        backoff = Backoff()
        try:
            with scope:
                while True:
                    try:
                        await self.host.relay.listen(circuit)
                    except (Libp2pError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                        logger.info("auto-relay: reserving on %s failed: %s", relay, exc)
                        delay = backoff.failed()
                        if isinstance(exc, RelayRefused):
                            event: ReservationRefused | ReservationAttemptFailed = (
                                ReservationRefused(relay, exc.status, str(exc), delay)
                            )
                        else:
                            event = ReservationAttemptFailed(relay, str(exc), delay)
                        self.host.events.publish(event)
                        await trio.sleep(delay)
                        continue
                    self._ours.add(relay)
                    return
        finally:
            if self._pending.get(relay) is scope:
                del self._pending[relay]

    async def _stop(self) -> None:
        for scope in self._pending.values():
            scope.cancel()
        self._pending.clear()
        for relay in sorted(self._ours, key=str):
            await self.host.relay.stop_listening(relay)
            logger.info("auto-relay: released the reservation on %s (we are public)", relay)
            self.host.events.publish(
                ReservationLost(relay, "released: AutoNAT finds us publicly reachable")
            )
        self._ours.clear()
