"""The AutoNAT client's trio driver: ask connected servers whether they can dial us back.

Every host runs one (``host.autonat``, unless ``HostConfig(autonat_client=None)``). When the
:class:`~.reachability.ReachabilityTracker` says a probe is due, the driver picks a connected
peer that announced ``/libp2p/autonat/1.0.0`` in identify (over a direct, unlimited
connection, not asked within the throttle), opens a stream, sends one ``DIAL`` listing our
address candidates, reads the ``DIAL_RESPONSE`` and feeds it to the tracker; the tracker's
events go out: :class:`~.events.ReachabilityProbed` for every probe on ``host.events``, and
:class:`~.events.ReachabilityChanged` when the client's own status flips to the
:attr:`AutoNATClient.on_reachability_changed` callbacks only. v1 answers are unverifiable, so
the host's reachability (``host.reachability``, :mod:`libp2p.host.reachability`) weighs them
with AutoNAT v2's and the other servers'; it publishes its own flips.

The addresses we ask about: the observed-address candidates (``host.address_candidates(1)``,
what peers saw our listen port mapped to) and our listen addresses, filtered by the
:class:`~libp2p.network.address_policy.AddressPolicy` (no loopback by default, never
unspecified or relayed addresses). The server adds the address it sees us at anyway.

The driver sleeps until the tracker's next deadline, and wakes early when our candidates
change (identify events) or when a peer serving AutoNAT shows up while we were waiting for
one. :meth:`AutoNATClient.probe` runs a probe on demand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import trio
from multiaddr import Multiaddr

from ...events import PeerIdentified
from ...exceptions import Libp2pError, LocalUsageError
from ...io import BufferedStream
from ...network.addrs import first_ip
from ...peer.id import PeerID
from .config import AutoNATClientConfig
from .events import Reachability, ReachabilityChanged, ReachabilityProbed
from .protocol import (
    PROTOCOL_ID,
    DialRequest,
    DialResponse,
    MalformedAutoNATMessage,
    encode_message,
    read_message,
)
from .reachability import ReachabilityTracker

if TYPE_CHECKING:
    from ...network.connection import Connection, NetStream
    from ...network.interfaces import EventPublisher

__all__ = ["AutoNATClient", "AutoNATClientHost"]


class _ProtocolBook(Protocol):
    def supports(self, peer: PeerID, protocol: str) -> bool: ...


class _IdentifyHooks(Protocol):
    @property
    def on_identified(self) -> list[Callable[[PeerIdentified], None]]: ...

    @property
    def on_candidates_changed(self) -> list[Callable[[], None]]: ...


class AutoNATClientHost(Protocol):
    """What the client needs of its host: connections and streams, the peers' protocols,
    our addresses, identify's notifications, and a bus to publish its events on."""

    @property
    def peer_id(self) -> PeerID: ...
    @property
    def connections(self) -> list[Connection]: ...
    @property
    def listen_addrs(self) -> list[Multiaddr]: ...
    @property
    def peerstore(self) -> _ProtocolBook: ...
    @property
    def identify(self) -> _IdentifyHooks: ...
    @property
    def events(self) -> EventPublisher: ...

    def address_candidates(self, min_observers: int | None = None) -> list[Multiaddr]: ...

    async def new_stream(
        self, peer: PeerID, protocols: Sequence[str] | str, *, allow_limited: bool = False
    ) -> NetStream: ...


logger = logging.getLogger(__name__)


class AutoNATClient:
    """Finds out whether a host is reachable, by asking AutoNAT servers."""

    def __init__(self, host: AutoNATClientHost, config: AutoNATClientConfig | None = None) -> None:
        self.host = host
        self.config = config or AutoNATClientConfig()
        self._tracker: ReachabilityTracker | None = None
        self._lock = trio.Lock()
        self._wakeup = trio.Event()
        self._known_addrs: frozenset[Multiaddr] = frozenset()
        #: Called synchronously with every flip of this client's own status
        #: (:attr:`status`). A callback must not block.
        self.on_reachability_changed: list[Callable[[ReachabilityChanged], None]] = []
        #: Called synchronously with every probe's result and the addresses it asked about
        #: (the host's reachability report weighs them); a callback must not block.
        self.on_probed: list[Callable[[ReachabilityProbed, Sequence[Multiaddr]], None]] = []

    # -- state ------------------------------------------------------------------------------

    @property
    def tracker(self) -> ReachabilityTracker:
        """The state core (available once the host has started)."""
        if self._tracker is None:
            raise LocalUsageError("the AutoNAT client runs only inside 'async with host'")
        return self._tracker

    @property
    def status(self) -> Reachability:
        """Our reachability as far as we know."""
        return self._tracker.status if self._tracker is not None else Reachability.UNKNOWN

    @property
    def confidence(self) -> int:
        """How sure we are of :attr:`status` (0 ... ``confidence_max``)."""
        return self._tracker.confidence if self._tracker is not None else 0

    @property
    def public_addr(self) -> Multiaddr | None:
        """While :attr:`status` is ``PUBLIC``: the address a server reached us at."""
        return self._tracker.public_addr if self._tracker is not None else None

    def servers(self) -> list[PeerID]:
        """Connected peers that serve AutoNAT over a direct, unlimited connection."""
        out = []
        for conn in self.host.connections:
            peer = conn.remote_peer
            if conn.relayed or conn.limited or conn.is_closed or peer in out:
                continue
            if self.host.peerstore.supports(peer, PROTOCOL_ID):
                out.append(peer)
        return out

    def candidate_addrs(self) -> list[Multiaddr]:
        """Our addresses worth asking about (see the module docs)."""
        policy = self.config.addresses
        out: list[Multiaddr] = []
        for addr in [*self.host.address_candidates(min_observers=1), *self.host.listen_addrs]:
            if addr in out or first_ip(addr) is None or not policy.accepts(addr):
                continue
            out.append(addr)
        return out[: self.config.max_addresses]

    # -- running ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Probe on schedule until cancelled (the host runs this in its nursery)."""
        self._tracker = ReachabilityTracker(self.config, now=trio.current_time())
        self._known_addrs = frozenset(self.candidate_addrs())
        # Reliable notifications from identify (the public bus may drop events).
        identify = self.host.identify
        identify.on_identified.append(self._peer_identified)
        identify.on_candidates_changed.append(self._candidates_changed)
        try:
            task_status.started()
            await self._schedule()
        finally:
            identify.on_identified.remove(self._peer_identified)
            identify.on_candidates_changed.remove(self._candidates_changed)

    def _peer_identified(self, event: PeerIdentified) -> None:
        if PROTOCOL_ID in event.protocols:
            self.tracker.server_available(trio.current_time())
        self._candidates_changed()

    def _candidates_changed(self) -> None:
        addrs = frozenset(self.candidate_addrs())
        if addrs != self._known_addrs:
            self._known_addrs = addrs
            self.tracker.addresses_changed(trio.current_time())
        self._wakeup.set()

    async def _schedule(self) -> None:
        tracker = self.tracker
        while True:
            with trio.move_on_at(tracker.next_check):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = trio.current_time()
            if not tracker.due(now):
                continue
            server = tracker.pick_server(self.servers(), now)
            if server is None:
                tracker.no_server(now)
                continue
            await self.probe(server)

    # -- probing ----------------------------------------------------------------------------

    async def probe(
        self, server: PeerID | None = None, addrs: Sequence[Multiaddr] | None = None
    ) -> ReachabilityProbed:
        """Ask ``server`` (default: the next one due) about ``addrs`` (default: our
        candidates) now, and take the answer into account like a scheduled probe.

        Returns the :class:`~.events.ReachabilityProbed` event also published on
        ``host.events``. Raises :class:`~libp2p.exceptions.LocalUsageError` when no server
        is given and none is connected; a failed request is a result (``response=None``).
        """
        tracker = self.tracker
        async with self._lock:
            if server is None:
                server = tracker.pick_server(self.servers(), trio.current_time())
                if server is None:
                    raise LocalUsageError("no connected peer serves AutoNAT (or all were asked)")
            asked = list(addrs) if addrs is not None else self.candidate_addrs()
            tracker.probe_started(server, trio.current_time())
            response: DialResponse | None = None
            detail = ""
            try:
                with trio.fail_after(self.config.request_timeout):
                    response = await self.ask(server, asked)
            except trio.TooSlowError:
                detail = f"no answer within {self.config.request_timeout} s"
            except (Libp2pError, trio.ClosedResourceError) as exc:
                detail = f"{type(exc).__name__}: {exc}"
            events = tracker.record(server, response, trio.current_time(), detail=detail)
            # The client's own flips go to its callbacks only: the host publishes its
            # reachability from the report, which weighs this answer with the others.
            for event in events:
                if isinstance(event, ReachabilityChanged):
                    for callback in list(self.on_reachability_changed):
                        callback(event)
            probed = events[0]
            assert isinstance(probed, ReachabilityProbed)
            self.host.events.publish(probed)
            for probed_callback in list(self.on_probed):
                probed_callback(probed, asked)
            logger.info(
                "AutoNAT %s: %s (%s); reachability %s, confidence %d",
                server,
                probed.response.name if probed.response is not None else "no answer",
                probed.detail or probed.address,
                probed.reachability.value,
                probed.confidence,
            )
            self._wakeup.set()
            return probed

    async def ask(self, server: PeerID, addrs: Sequence[Multiaddr]) -> DialResponse:
        """One request to ``server`` about ``addrs``; the raw answer, without state changes."""
        request = DialRequest(self.host.peer_id, tuple(addrs[: self.config.max_addresses]))
        stream = await self.host.new_stream(server, PROTOCOL_ID)
        reader = BufferedStream.wrap(stream)
        try:
            await reader.send_all(encode_message(request))
            msg = await read_message(reader)
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.reset()
            raise
        await reader.aclose()
        if not isinstance(msg, DialResponse):
            raise MalformedAutoNATMessage(f"{server} answered a DIAL with a DIAL")
        return msg
