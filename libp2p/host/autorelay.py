"""Auto-relay: reserve on known relays while AutoNAT says we are private.

A host behind a NAT is reachable only through a relay; a public host needs none. With
``HostConfig(static_relays=[...])`` (each ``<relay addr>/p2p/<relay id>``), :class:`AutoRelay`
follows :class:`~libp2p.host.autonat.ReachabilityChanged` events:

* on start it connects to the relays (so that, when they also serve AutoNAT, there is
  someone to ask);
* when reachability becomes ``PRIVATE`` it reserves on every relay, as
  ``host.listen("<relay>/p2p-circuit")`` does: the relay client keeps each reservation up
  (refresh, reconnection) from then on. A relay that cannot be reached or refuses is retried
  with exponential backoff, reported as :class:`~libp2p.relay.circuit_v2.ReservationRefused`
  or :class:`~libp2p.relay.circuit_v2.ReservationAttemptFailed`; success as
  :class:`~libp2p.relay.circuit_v2.ReservationMade`;
* when reachability becomes ``PUBLIC`` it stops the reservations it made (not those the
  application made itself) and reports each as
  :class:`~libp2p.relay.circuit_v2.ReservationLost`: peers can dial us directly.

go-libp2p's autorelay also finds relays on its own (from peers that announce the hop
protocol); this one uses the relays it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

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
from ..relay.circuit_v2.protocol import RelayRefused
from .autonat.events import Reachability, ReachabilityChanged

if TYPE_CHECKING:
    from .host import Host

__all__ = ["AutoRelay"]

logger = logging.getLogger(__name__)

#: Retry delays after a failed reservation: first and largest (seconds).
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0


class AutoRelay:
    """Reserves on static relays while the host is private (``host.auto_relay``)."""

    def __init__(self, host: Host, relays: Sequence[Multiaddr | str]) -> None:
        self.host = host
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
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            with self.host.events.subscribe(ReachabilityChanged) as events:
                for relay, addr in self._relays.items():
                    nursery.start_soon(self._connect, relay, addr)
                task_status.started()
                async for event in events:
                    if event.status is Reachability.PRIVATE:
                        self._start()
                    elif event.status is Reachability.PUBLIC:
                        await self._stop()

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
        backoff = BACKOFF_INITIAL
        try:
            with scope:
                while True:
                    try:
                        await self.host.relay.listen(circuit)
                    except (Libp2pError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                        logger.info("auto-relay: reserving on %s failed: %s", relay, exc)
                        if isinstance(exc, RelayRefused):
                            event: ReservationRefused | ReservationAttemptFailed = (
                                ReservationRefused(relay, exc.status, str(exc), backoff)
                            )
                        else:
                            event = ReservationAttemptFailed(relay, str(exc), backoff)
                        self.host.events.publish(event)
                        await trio.sleep(backoff)
                        backoff = min(backoff * 2, BACKOFF_MAX)
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
