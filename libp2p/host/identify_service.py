"""Identify, wired into the host: run on every connection, push on changes, learn addresses.

On every new connection we open ``/ipfs/id/1.0.0`` to the peer and read its answer; the peer
does the same to us. What we read is checked before it is believed:

* ``publicKey`` must derive the peer ID the security handshake proved, or the whole message is
  ignored (and logged: that peer is broken or lying);
* a ``signedPeerRecord`` must verify and name that same peer; a valid one with a newer ``seq``
  gives *certified* addresses, which replace the unsigned ``listenAddrs``. An invalid record
  is dropped with a log line, and the unsigned addresses are used as the other
  implementations do (rust sends records with legacy constants; go/js may send none);
* ``observedAddr`` -- how that peer sees our end of the connection -- goes to the
  :class:`~libp2p.identify.ObservedAddrManager`, which only turns observations agreed on by
  several distinct observers into address candidates. Candidate changes are published as
  events. The same observations, on connections we dialed from a listen port, go to the
  :class:`~libp2p.identify.NatMappingTracker`, which tells whether our NAT's mapping depends on
  the destination; a change is published as a :class:`~libp2p.identify.NatMappingChanged`.

When our protocols or listen addresses change, we push a fresh message on
``/ipfs/id/push/1.0.0`` to every connected peer that announced support for push.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio
from multiaddr import Multiaddr

from ..events import EventBus, PeerIdentified
from ..exceptions import Libp2pError
from ..identify import (
    PROTOCOL_ID,
    PUSH_PROTOCOL_ID,
    IdentifyInfo,
    NatMappingChanged,
    NatMappingTracker,
    ObservedAddrManager,
    merge,
    read_identify,
    send_identify,
)
from ..network.connection import Connection, Direction, NetStream
from ..network.swarm import Swarm
from ..peer.peerstore import RECENTLY_CONNECTED_ADDR_TTL, Peerstore
from ..peer.record import open_peer_record, seal_peer_record

__all__ = ["IDENTIFY_TIMEOUT", "PROTOCOL_VERSION", "IdentifyService"]

logger = logging.getLogger(__name__)

#: Time allowed for one identify exchange (go: 5 s; we allow a slow relayed path more).
IDENTIFY_TIMEOUT = 10.0
#: The ``protocolVersion`` we send (informational; nobody closes on a mismatch).
PROTOCOL_VERSION = "ipfs/0.1.0"


class IdentifyService:
    """Runs identify and identify-push for a host."""

    def __init__(
        self,
        swarm: Swarm,
        peerstore: Peerstore,
        events: EventBus,
        *,
        agent_version: str,
        advertised_addrs: Callable[[], list[Multiaddr]],
        observed: ObservedAddrManager | None = None,
        nat_mapping: NatMappingTracker | None = None,
    ) -> None:
        self.swarm = swarm
        self.peerstore = peerstore
        self.events = events
        self.agent_version = agent_version
        self._advertised_addrs = advertised_addrs
        #: Observations of our own address, from every identify response.
        self.observed = observed if observed is not None else ObservedAddrManager()
        #: Our NAT's mapping behaviour, from the observations of connections we dialed.
        self.nat_mapping_tracker = nat_mapping if nat_mapping is not None else NatMappingTracker()
        # One entry per open connection, set once identify on it finished (or failed);
        # removed when the connection closes.
        self._identified: dict[Connection, trio.Event] = {}
        self._changed = trio.Event()
        # Wakes the expiry timer when a new deadline may have appeared.
        self._timer_wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        #: Called (synchronously, never dropped) each time a peer is identified or pushes;
        #: how the host's services learn of peers (the public bus may drop events).
        self.on_identified: list[Callable[[PeerIdentified], None]] = []
        #: Called (synchronously, never dropped) when our address candidates change.
        self.on_candidates_changed: list[Callable[[], None]] = []
        #: Called (synchronously, never dropped) with every
        #: :class:`~libp2p.identify.NatMappingChanged`, before it is published on the bus (how
        #: hole punching learns that our NAT is endpoint-dependent). A callback must not block.
        self.on_nat_mapping_changed: list[Callable[[NatMappingChanged], None]] = []

    def install(self) -> None:
        """Register the identify and push handlers and follow the swarm's connections."""
        self.swarm.set_stream_handler(PROTOCOL_ID, self._serve_identify, allow_limited=True)
        self.swarm.set_stream_handler(PUSH_PROTOCOL_ID, self._serve_push, allow_limited=True)
        self.swarm.observe(self)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Identify every new connection; push on changes; publish address candidates."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._push_loop)
            nursery.start_soon(self._expiry_timer)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    # -- connections (Swarm observer) -----------------------------------------------------

    def connection_opened(self, conn: Connection) -> None:
        """Identify ``conn`` (called by the swarm for every new connection)."""
        done = self._identified[conn] = trio.Event()
        if self._nursery is None:
            done.set()  # not running: nothing will identify it
            return
        self._nursery.start_soon(self._identify_connection, conn, done)

    def connection_closed(self, conn: Connection) -> None:
        """Forget ``conn``; anyone still waiting for its identify is released."""
        done = self._identified.pop(conn, None)
        if done is not None:
            done.set()
        # Its observation now ages out: the timer has a new deadline to watch.
        self.nat_mapping_tracker.connection_closed(id(conn), trio.current_time())
        self._timer_wakeup.set()

    # -- our message -------------------------------------------------------------------------

    def local_info(self, conn: Connection | None) -> IdentifyInfo:
        """The identify message we send on ``conn``."""
        addrs = self._advertised_addrs()
        observed = None
        if conn is not None and conn.remote_addr is not None and not conn.relayed:
            observed = conn.remote_addr
        return IdentifyInfo(
            protocol_version=PROTOCOL_VERSION,
            agent_version=self.agent_version,
            public_key=self.swarm.key.public_key,
            listen_addrs=tuple(addrs),
            observed_addr=observed,
            protocols=tuple(self.swarm.protocols),
            signed_peer_record=seal_peer_record(self.swarm.key, addrs),
        )

    async def _serve_identify(self, stream: NetStream) -> None:
        await send_identify(stream, self.local_info(stream.connection))
        await stream.aclose()

    # -- their message -------------------------------------------------------------------------

    async def wait_identified(self, conn: Connection) -> None:
        """Wait until identify on ``conn`` finished (successfully or not).

        Returns at once when it already has, when ``conn`` is closed, or when ``conn`` is not
        one of the swarm's connections (nothing identifies it).
        """
        done = self._identified.get(conn)
        if done is None or conn.is_closed:
            await trio.lowlevel.checkpoint()
            return
        await done.wait()

    async def _identify_connection(self, conn: Connection, done: trio.Event) -> None:
        try:
            with trio.fail_after(IDENTIFY_TIMEOUT):
                stream = await conn.new_stream(PROTOCOL_ID, allow_limited=True)
                try:
                    info = await read_identify(stream)
                finally:
                    await stream.aclose()
            self._apply(conn, info, push=False)
        except (Libp2pError, trio.TooSlowError) as exc:
            logger.info("identify with %s failed: %s", conn.remote_peer, exc)
        except trio.ClosedResourceError:
            pass
        finally:
            done.set()

    async def _serve_push(self, stream: NetStream) -> None:
        with trio.fail_after(IDENTIFY_TIMEOUT):
            info = await read_identify(stream)
        await stream.aclose()
        self._apply(stream.connection, info, push=True)

    def _apply(self, conn: Connection, info: IdentifyInfo, *, push: bool) -> None:
        peer = conn.remote_peer
        if info.public_key is not None and not peer.matches_public_key(info.public_key):
            logger.warning("identify from %s carries another peer's key: ignored", peer)
            return
        if info.public_key is not None:
            self.peerstore.add_public_key(peer, info.public_key)
        addrs = list(info.listen_addrs)
        if info.signed_peer_record is not None:
            try:
                record, _envelope = open_peer_record(info.signed_peer_record)
            except Libp2pError as exc:
                logger.info("signed peer record from %s rejected: %s", peer, exc)
            else:
                if record.peer_id != peer:
                    logger.warning("%s sent a signed record of %s: ignored", peer, record.peer_id)
                elif self.peerstore.accept_record_seq(peer, record.seq):
                    addrs = list(record.addrs)
        if push:
            previous = IdentifyInfo(
                listen_addrs=tuple(self.peerstore.addrs(peer)),
                protocols=tuple(sorted(self.peerstore.protocols(peer))),
            )
            info = merge(previous, info)
        if info.protocols or not push:
            self.peerstore.set_protocols(peer, info.protocols)
        if addrs:
            self.peerstore.add_addrs(peer, addrs, RECENTLY_CONNECTED_ADDR_TTL)
        if info.agent_version is not None or info.protocol_version is not None:
            self.peerstore.set_versions(
                peer, agent_version=info.agent_version, protocol_version=info.protocol_version
            )
        if info.observed_addr is not None and conn.remote_addr is not None and not conn.relayed:
            now = trio.current_time()
            self.observed.record(
                info.observed_addr,
                observer=conn.remote_addr,
                local_addr=conn.local_addr,
                listen_addrs=self.swarm.listen_addrs,
                now=now,
            )
            tracker = self.nat_mapping_tracker
            tracker.record(
                info.observed_addr,
                observer=conn.remote_addr,
                local_addr=conn.local_addr,
                listen_addrs=self.swarm.listen_addrs,
                outbound=conn.direction is Direction.OUTBOUND,
                # The id, not the object: the tracker must not keep closed connections (and
                # their buffers) alive for its window.
                connection=id(conn),
                opened_at=conn.opened_at,
                now=now,
            )
            if conn.is_closed:  # closed while identify ran: connection_closed came first
                tracker.connection_closed(id(conn), now)
            self._timer_wakeup.set()
            self._publish_candidates(now)
            self._publish_nat_mapping(now)
        event = PeerIdentified(
            connection=conn,
            peer=peer,
            protocols=info.protocols,
            listen_addrs=tuple(addrs),
            agent_version=info.agent_version,
            observed_addr=info.observed_addr,
        )
        for callback in list(self.on_identified):
            callback(event)
        self.events.publish(event)

    # -- address candidates -------------------------------------------------------------------

    def _publish_candidates(self, now: float) -> None:
        events = self.observed.poll_events(now)
        if events:
            for callback in list(self.on_candidates_changed):
                callback()
        for event in events:
            self.events.publish(event)

    def _publish_nat_mapping(self, now: float) -> None:
        event = self.nat_mapping_tracker.poll(now)
        if event is None:
            return
        logger.info(
            "NAT mapping %s -> %s: %s", event.previous.value, event.current.value, event.reason
        )
        for callback in list(self.on_nat_mapping_changed):
            callback(event)
        self.events.publish(event)

    async def _expiry_timer(self) -> None:
        # Sleeps until the next observation expires, or until a new observation or a closed
        # connection may have brought an earlier deadline (without the wake-up, a timer that
        # started with nothing to expire would sleep forever).
        while True:
            deadlines = [
                d
                for d in (
                    self.observed.next_deadline(),
                    self.nat_mapping_tracker.next_deadline(),
                )
                if d is not None
            ]
            with trio.move_on_at(min(deadlines, default=math.inf)):
                await self._timer_wakeup.wait()
            self._timer_wakeup = trio.Event()
            now = trio.current_time()
            self._publish_candidates(now)
            self._publish_nat_mapping(now)

    # -- push --------------------------------------------------------------------------------

    def notify_changed(self) -> None:
        """Our protocols or addresses changed: push to connected peers soon."""
        self._changed.set()

    async def _push_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            # Let a burst of changes (several handlers registered at once) coalesce.
            await trio.lowlevel.checkpoint()
            async with trio.open_nursery() as nursery:
                for conn in self.swarm.connections:
                    if self.peerstore.supports(conn.remote_peer, PUSH_PROTOCOL_ID):
                        nursery.start_soon(self._push_to, conn)

    async def _push_to(self, conn: Connection) -> None:
        try:
            with trio.fail_after(IDENTIFY_TIMEOUT):
                # Only peers that announced push get here: lazy negotiation is safe.
                stream = await conn.new_stream(PUSH_PROTOCOL_ID, lazy=True, allow_limited=True)
                await send_identify(stream, self.local_info(conn))
                await stream.aclose()
        except (Libp2pError, trio.TooSlowError) as exc:
            logger.info("identify push to %s failed: %s", conn.remote_peer, exc)
