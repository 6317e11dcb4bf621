"""The host: the one object an application holds.

A :class:`Host` ties together an identity, a :class:`~libp2p.network.swarm.Swarm` (listeners,
dials, connections), a :class:`~libp2p.peer.peerstore.Peerstore` and an
:class:`~libp2p.events.EventBus`. Open it with ``async with``; leaving the block closes every
connection and listener it opened::

    async with Host(listen=["/ip4/0.0.0.0/tcp/0"]) as host:
        print(host.peer_id, host.listen_addrs)
        conn = await host.connect("/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...")
        stream = await host.new_stream(conn.remote_peer, "/my/proto/1.0.0")

Dialing accepts what users paste: with or without ``/p2p/<id>``, IP or ``/dns4``/``/dns6``/
``/dns`` names. Dials to one peer are merged, and new streams prefer a direct connection over
a relayed or limited one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import trio
from multiaddr import Multiaddr

from .. import identify, ping
from ..crypto.keyfile import load_or_create_identity
from ..crypto.keys import PrivateKey, generate_ed25519
from ..events import EventBus
from ..exceptions import LimitedConnectionError, LocalUsageError
from ..identify import NatMapping, NatMappingStatus, ObservedAddrManager
from ..network.addrs import is_circuit_addr, split_peer_id
from ..network.connection import Connection, Direction, NetStream, StreamHandler
from ..network.swarm import (
    ACCEPT_UPGRADE_TIMEOUT,
    DIAL_UPGRADE_TIMEOUT,
    MAX_INBOUND_CONNECTIONS,
    Swarm,
)
from ..peer.id import PeerID
from ..peer.peerstore import (
    CONNECTED_ADDR_TTL,
    PERMANENT_ADDR_TTL,
    RECENTLY_CONNECTED_ADDR_TTL,
    PeerInfo,
    Peerstore,
)
from ..portmap import PortMapper, PortMappingConfig
from ..relay.circuit_v2 import dcutr
from ..relay.circuit_v2.client import RelayClient
from ..relay.circuit_v2.config import RelayConfig
from ..relay.circuit_v2.dcutr import DcutrService, HolePunchConfig
from ..stream_muxer.yamux import YamuxConfig
from ..transport.tcp import parse_tcp_multiaddr
from ..transport.tcp.interfaces import interface_addresses
from .autonat import PROTOCOL_ID as AUTONAT_PROTOCOL_ID
from .autonat import (
    AutoNATClient,
    AutoNATClientConfig,
    AutoNATServer,
    AutoNATServerConfig,
)
from .autonat.v2 import (
    DIAL_BACK_PROTOCOL as AUTONAT_V2_DIAL_BACK,
)
from .autonat.v2 import (
    DIAL_REQUEST_PROTOCOL as AUTONAT_V2_DIAL_REQUEST,
)
from .autonat.v2 import (
    AutoNATv2Client,
    AutoNATv2ClientConfig,
    AutoNATv2Server,
    AutoNATv2ServerConfig,
)
from .autorelay import AutoRelay
from .identify_service import IdentifyService
from .reachability import (
    Expectation,
    NatType,
    ReachabilityConfig,
    ReachabilityReport,
    ReachabilityService,
)

if TYPE_CHECKING:
    from ..relay.circuit_v2.relay import RelayService

__all__ = ["Host", "HostConfig"]


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Tunables of a :class:`Host`; every field has a sensible default."""

    #: Time allowed for an outbound connection's handshakes (go: 60 s).
    dial_timeout: float = DIAL_UPGRADE_TIMEOUT
    #: Time allowed for an inbound connection's handshakes (go: 15 s).
    accept_timeout: float = ACCEPT_UPGRADE_TIMEOUT
    #: Inbound connections (open or upgrading) beyond which new ones are refused.
    max_inbound_connections: int = MAX_INBOUND_CONNECTIONS
    #: Yamux settings (windows, stream caps, keep-alive).
    yamux: YamuxConfig = field(default_factory=YamuxConfig)
    #: Sent in identify as ``agentVersion``.
    agent_version: str = "trio-libp2p-nat/0.1.0"
    #: Distinct observers (IPv4 /32, IPv6 /56) that must report the same address of ours
    #: before it becomes an address candidate (go advertises at 4; hole punching needs 1).
    min_observers: int = 2
    #: Answer ``/ipfs/ping/1.0.0`` (js-libp2p's connection monitor pings every connection).
    serve_ping: bool = True
    #: Run a Circuit Relay v2 relay service with these limits (``None``: not a relay).
    #: ``RelayConfig()`` has go-libp2p's limits; ``RelayConfig.unlimited()`` none.
    relay_service: RelayConfig | None = None
    #: Hole punching (DCUtR) on relayed connections, on by default; ``None`` turns it off.
    hole_punching: HolePunchConfig | None = field(default_factory=HolePunchConfig)
    #: Serve AutoNAT v1: dial peers back so they learn whether they are reachable. Off by
    #: default (``None``), as in go; relays and other public hosts turn it on with
    #: ``AutoNATServerConfig()``.
    autonat_server: AutoNATServerConfig | None = None
    #: Ask peers that serve AutoNAT whether we are reachable (``Host.reachability``,
    #: ``ReachabilityChanged`` events); on by default, ``None`` turns it off.
    autonat_client: AutoNATClientConfig | None = field(default_factory=AutoNATClientConfig)
    #: Serve AutoNAT v2: dial one address of a peer back on a new connection and prove it
    #: with the peer's nonce. Off by default (``None``), like v1.
    autonat_v2_server: AutoNATv2ServerConfig | None = None
    #: The AutoNAT v2 client (``Host.autonat_v2``: per-address checks with nonce-verified
    #: dial-backs; it answers dial-backs); on by default, ``None`` turns it off.
    autonat_v2_client: AutoNATv2ClientConfig | None = field(default_factory=AutoNATv2ClientConfig)
    #: Relays (``<relay addr>/p2p/<relay id>``) to reserve on until the reachability report
    #: finds us public, released when it does (auto-relay).
    static_relays: tuple[Multiaddr | str, ...] = ()
    #: How reachability evidence is weighed (``host.reachability``): how many server groups
    #: must agree, which servers you trust alone, which IP ranges count as public.
    reachability: ReachabilityConfig = field(default_factory=ReachabilityConfig)
    #: Ask the LAN's router to forward our TCP listen ports (UPnP IGD, PCP, NAT-PMP). Off by
    #: default (``None``), as in go, js and rust: it talks to the router. The mappings are
    #: exposed on :attr:`Host.port_mapper`, never advertised by the mapper itself.
    port_mapping: PortMappingConfig | None = None


class Host:
    """A libp2p peer: identity, listeners, connections, protocol handlers and events.

    ``key`` is the identity; with ``key_file`` instead, the identity is loaded from that file,
    or created there on first use (so a relay keeps its peer ID across restarts; the file's
    directory must exist, else :class:`~libp2p.crypto.KeyFileError`). With
    neither, a fresh Ed25519 identity is generated. ``listen`` multiaddrs are opened on
    entering the ``async with`` block; port 0 picks a free port, and :attr:`listen_addrs`
    reports the real ones.
    """

    def __init__(
        self,
        key: PrivateKey | None = None,
        *,
        key_file: str | os.PathLike[str] | None = None,
        listen: Sequence[Multiaddr | str] = (),
        config: HostConfig | None = None,
    ) -> None:
        if key is not None and key_file is not None:
            raise LocalUsageError("pass either key or key_file, not both")
        if key is None:
            key = load_or_create_identity(key_file) if key_file is not None else generate_ed25519()
        self.config = config or HostConfig()
        self.key = key
        #: Everything we know about other peers.
        self.peerstore = Peerstore(clock=trio.current_time)
        #: Typed events: connections opened and closed, peers identified.
        self.events = EventBus()
        self._listen = [Multiaddr(str(a)) for a in listen]
        self.swarm = Swarm(
            key,
            yamux_config=self.config.yamux,
            dial_timeout=self.config.dial_timeout,
            accept_timeout=self.config.accept_timeout,
            max_inbound_connections=self.config.max_inbound_connections,
            events=self.events,
        )
        #: Identify on every connection, identify-push, and our observed addresses.
        self.identify = IdentifyService(
            self.swarm,
            self.peerstore,
            self.events,
            agent_version=self.config.agent_version,
            advertised_addrs=lambda: self.addrs,
            observed=ObservedAddrManager(min_observers=self.config.min_observers),
        )
        self.swarm.observe(_DialedAddrs(self.swarm, self.peerstore))
        # The host's housekeeping: its streams never keep a connection in use, so a relayed
        # connection replaced by a hole punch closes once the application's streams on it
        # end (Connection.close_when_idle), whatever identify or a peer's pings still do.
        for protocol in _BACKGROUND_PROTOCOLS:
            self.swarm.set_background(protocol)
        self.identify.install()
        if self.config.serve_ping:
            self.swarm.set_stream_handler(ping.PROTOCOL_ID, _serve_ping, allow_limited=True)
        #: The Circuit Relay v2 client: dials ``/p2p-circuit`` addresses, accepts relayed
        #: connections, holds reservations.
        self.relay = RelayClient(self)
        self.relay.install()
        #: The relay service, when :attr:`HostConfig.relay_service` is set.
        self.relay_service: RelayService | None = None
        if self.config.relay_service is not None:
            from ..relay.circuit_v2.relay import RelayService

            self.relay_service = RelayService(self, self.config.relay_service)
            self.relay_service.install()
        #: DCUtR: turns relayed connections into direct ones (``None`` when turned off).
        self.dcutr: DcutrService | None = None
        if self.config.hole_punching is not None:
            self.dcutr = DcutrService(self, self.config.hole_punching)
            self.dcutr.install()
        #: The AutoNAT client (``None`` when turned off); see :attr:`reachability`.
        self.autonat: AutoNATClient | None = None
        if self.config.autonat_client is not None:
            self.autonat = AutoNATClient(self, self.config.autonat_client)
        #: The AutoNAT server, when :attr:`HostConfig.autonat_server` is set.
        self.autonat_server: AutoNATServer | None = None
        if self.config.autonat_server is not None:
            self.autonat_server = AutoNATServer(self, self.config.autonat_server)
            self.autonat_server.install()
        #: The AutoNAT v2 client (``None`` when turned off): :meth:`AutoNATv2Client.check`.
        self.autonat_v2: AutoNATv2Client | None = None
        if self.config.autonat_v2_client is not None:
            self.autonat_v2 = AutoNATv2Client(self, self.config.autonat_v2_client)
            self.autonat_v2.install()
        #: The AutoNAT v2 server, when :attr:`HostConfig.autonat_v2_server` is set.
        self.autonat_v2_server: AutoNATv2Server | None = None
        if self.config.autonat_v2_server is not None:
            self.autonat_v2_server = AutoNATv2Server(self, self.config.autonat_v2_server)
            self.autonat_v2_server.install()
        #: Keeps the reachability report (:attr:`reachability`).
        self.reachability_service = ReachabilityService(self, self.config.reachability)
        #: Auto-relay over :attr:`HostConfig.static_relays` (``None`` without any).
        self.auto_relay: AutoRelay | None = None
        if self.config.static_relays:
            self.auto_relay = AutoRelay(
                self, self.config.static_relays, reachability=self.reachability_service
            )
        #: The port mapper, when :attr:`HostConfig.port_mapping` is set: its
        #: :attr:`~libp2p.portmap.PortMapper.mappings`, events and callbacks.
        self.port_mapper: PortMapper | None = None
        if self.config.port_mapping is not None:
            self.port_mapper = PortMapper(self, self.config.port_mapping)
        self._stack = contextlib.AsyncExitStack()
        self._running = False

    # -- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> Host:
        await self._stack.enter_async_context(self.swarm)
        try:
            await self.swarm.nursery.start(self.identify.run)
            if self.relay_service is not None:
                await self.swarm.nursery.start(self.relay_service.run)
            if self.dcutr is not None:
                await self.swarm.nursery.start(self.dcutr.run)
            if self.autonat is not None:
                await self.swarm.nursery.start(self.autonat.run)
            await self.swarm.nursery.start(self.reachability_service.run)
            if self.auto_relay is not None:
                await self.swarm.nursery.start(self.auto_relay.run)
            if self.port_mapper is not None:
                await self.swarm.nursery.start(self.port_mapper.run)
            self._running = True
            if self._listen:
                await self.listen(*self._listen)
        except BaseException:
            self._running = False
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._running = False
        return bool(await self._stack.__aexit__(exc_type, exc, tb))

    @property
    def nursery(self) -> trio.Nursery:
        """The host's nursery: services started here end with the host."""
        return self.swarm.nursery

    # -- identity and addresses ------------------------------------------------------------

    @property
    def peer_id(self) -> PeerID:
        """Our peer ID."""
        return self.swarm.peer_id

    @property
    def listen_addrs(self) -> list[Multiaddr]:
        """The addresses we listen on, with real ports."""
        return self.swarm.listen_addrs

    async def listen(self, *maddrs: Multiaddr | str) -> list[Multiaddr]:
        """Listen on more addresses; returns the bound ones.

        A relay address, ``<relay addr>/p2p/<relay id>/p2p-circuit``, makes a reservation on
        that relay (kept up from then on) and returns our addresses through it; it raises
        :class:`~libp2p.relay.circuit_v2.RelayRefused` if the relay refuses.
        """
        bound: list[Multiaddr] = []
        for maddr in maddrs:
            addr = Multiaddr(str(maddr))
            if is_circuit_addr(addr):
                bound.extend(await self.relay.listen(addr))
            else:
                bound.extend(await self.swarm.listen(addr))
        self.identify.notify_changed()
        self.reachability_service.poke()
        if self.port_mapper is not None:
            self.port_mapper.listen_addrs_changed()
        return bound

    @property
    def addrs(self) -> list[Multiaddr]:
        """The addresses we advertise: listen addresses, observed address candidates, then
        our addresses through relays we hold reservations on.

        A listener on the unspecified address (``0.0.0.0`` / ``::``) is advertised with the
        address of every network interface; how others reach us from outside a NAT comes
        from the observed candidates.
        """
        out = self.interface_listen_addrs()
        # Mapped addresses only once AutoNAT v2 confirmed them from outside.
        for mapped in self.reachability_service.advertised_mapped():
            if mapped not in out:
                out.append(mapped)
        for candidate in self.identify.observed.candidates(trio.current_time()):
            if candidate not in out:
                out.append(candidate)
        for relayed in self.relay.relayed_addrs:
            if relayed not in out:
                out.append(relayed)
        return out

    def interface_listen_addrs(self) -> list[Multiaddr]:
        """Our listen addresses, one on the unspecified address (``0.0.0.0`` / ``::``)
        expanded to the address of every network interface."""
        out: list[Multiaddr] = []
        for addr in self.swarm.listen_addrs:
            family, host, port = parse_tcp_multiaddr(addr)
            if host in ("0.0.0.0", "::"):
                proto = "ip4" if host == "0.0.0.0" else "ip6"
                for ip in interface_addresses(family):
                    expanded = Multiaddr(f"/{proto}/{ip}/tcp/{port}")
                    if expanded not in out:
                        out.append(expanded)
            elif addr not in out:
                out.append(addr)
        return out

    def address_candidates(self, min_observers: int | None = None) -> list[Multiaddr]:
        """Our addresses as other peers observe them, most-observed first.

        ``min_observers=1`` gives every address at least one peer reported (what hole
        punching uses); the default is :attr:`HostConfig.min_observers`.
        """
        return self.identify.observed.candidates(trio.current_time(), min_observers)

    @property
    def nat_mapping(self) -> NatMapping:
        """Whether our NAT gives every destination the same external address.

        ``ENDPOINT_INDEPENDENT`` once two observers at different IPs reported the same
        external address for connections we dialed from our listen port (hole punching can
        work), ``ENDPOINT_DEPENDENT`` once two reported different ports on connections open at
        the same time (a symmetric NAT: hole punching cannot work), ``UNKNOWN`` before that.
        Changes are published as :class:`~libp2p.identify.NatMappingChanged`; the rules are in
        :mod:`libp2p.identify.nat_mapping`.
        """
        return self.identify.nat_mapping_tracker.mapping

    @property
    def nat_mapping_status(self) -> NatMappingStatus:
        """:attr:`nat_mapping` with its reason, its observers and the verdict of each local
        address (:meth:`~libp2p.identify.NatMappingStatus.mapping_for` gives one IP family)."""
        return self.identify.nat_mapping_tracker.status

    @property
    def reachability(self) -> ReachabilityReport:
        """Whether, where and how peers can reach us: a report per address (public, private
        or unknown, and how we know), the NAT type and what a dialer should expect.

        ``host.reachability.status`` is the host's :class:`~libp2p.host.autonat.Reachability`.
        Built from AutoNAT v2 checks (nonce-verified), AutoNAT v1 answers, observed and mapped
        addresses; no single server decides (:mod:`libp2p.host.reachability`). Changes are
        published as :class:`~libp2p.host.reachability.ReachabilityReportChanged`.
        """
        return self.reachability_service.report

    @property
    def nat_type(self) -> NatType:
        """Our NAT as far as the evidence goes: its mapping (from identify's observers) and
        its filtering (from AutoNAT dial-backs); the report's :attr:`ReachabilityReport.nat`."""
        return self.reachability.nat

    def directly_reachable(self) -> bool:
        """Whether the reachability report says peers can dial us directly (an address of
        ours is confirmed reachable from outside)."""
        return self.reachability.expect is Expectation.DIRECT

    # -- protocols ---------------------------------------------------------------------

    def set_stream_handler(
        self, protocol: str, handler: StreamHandler, *, allow_limited: bool = False
    ) -> None:
        """Serve inbound streams of ``protocol`` with ``async def handler(stream)``.

        ``allow_limited=True`` also serves it on relay-limited connections (see
        :attr:`Connection.limited <libp2p.network.connection.Connection.limited>`).
        """
        self.swarm.set_stream_handler(protocol, handler, allow_limited=allow_limited)
        self.identify.notify_changed()

    def remove_stream_handler(self, protocol: str) -> None:
        """Stop serving ``protocol``."""
        self.swarm.remove_stream_handler(protocol)
        self.identify.notify_changed()

    @property
    def protocols(self) -> list[str]:
        """Protocols we serve."""
        return self.swarm.protocols

    # -- connections -----------------------------------------------------------------------

    async def connect(self, target: Multiaddr | str | PeerInfo) -> Connection:
        """Connect to a peer, or return the existing direct connection to it.

        ``target`` is a multiaddr (with or without ``/p2p/<id>``; IP or DNS) or a
        :class:`PeerInfo`. Without a peer ID any peer that answers is accepted; with one,
        the remote must prove it. A relayed address,
        ``<relay addr>/p2p/<relay id>/p2p-circuit/p2p/<peer id>``, connects through that
        relay (:class:`~libp2p.relay.circuit_v2.RelayRefused` says why when the relay cannot).
        """
        if isinstance(target, PeerInfo):
            info = target
        else:
            addr, peer = split_peer_id(Multiaddr(str(target)))
            if peer is None:
                return await self.swarm.dial(addr)
            info = PeerInfo(peer, (addr,) if str(addr) else ())
        if info.addrs:
            self.peerstore.add_addrs(info.peer_id, info.addrs, PERMANENT_ADDR_TTL)
        addrs = list(info.addrs) or self.peerstore.addrs(info.peer_id)
        return await self.swarm.dial_peer(info.peer_id, addrs)

    def connections_to(self, peer: PeerID) -> list[Connection]:
        """Live connections to ``peer``."""
        return self.swarm.connections_to(peer)

    @property
    def connections(self) -> list[Connection]:
        """Every live connection."""
        return self.swarm.connections

    async def new_stream(
        self, peer: PeerID, protocols: Sequence[str] | str, *, allow_limited: bool = False
    ) -> NetStream:
        """Open a stream to ``peer`` speaking one of ``protocols`` (in preference order).

        Uses the best existing connection (direct before relayed), connecting first through
        the peerstore's addresses if there is none. A relay-limited connection is used only
        with ``allow_limited=True``; otherwise a direct connection is dialed if the peerstore
        has addresses for one, and :class:`~libp2p.exceptions.LimitedConnectionError` raised
        if not.
        """
        names = [protocols] if isinstance(protocols, str) else list(protocols)
        conn = self.swarm.best_connection(peer)
        if conn is None:
            conn = await self.swarm.dial_peer(peer, self.peerstore.addrs(peer))
        if conn.limited and not allow_limited:
            direct = [a for a in self.peerstore.addrs(peer) if not is_circuit_addr(a)]
            if not direct:
                raise LimitedConnectionError(
                    f"the only connection to {peer} is relayed with limits ({conn.limit}) and "
                    f"no direct address is known; {' or '.join(names)} did not opt in to limited "
                    "connections (pass allow_limited=True if it may run over one, or wait "
                    "for a direct connection)"
                )
            conn = await self.swarm.dial_peer(peer, direct)
        # Lazy ("0-RTT") negotiation only for a protocol identify says the peer supports, as
        # go does: a peer without it may take the request's bytes for a second proposal and
        # reset the stream, hiding the refusal.
        lazy = len(names) == 1 and self.peerstore.supports(peer, names[0])
        return await conn.new_stream(names, lazy=lazy, allow_limited=allow_limited)

    async def wait_for_connection(self, peer: PeerID, *, direct: bool = False) -> Connection:
        """Wait until a connection to ``peer`` is open (a direct one, if ``direct``)."""

        def usable() -> Connection | None:
            for conn in self.swarm.connections_to(peer):
                if not conn.is_closed and (not direct or not conn.relayed):
                    return conn
            return None

        opened = _OpenedWatch()
        self.swarm.observe(opened)
        try:
            found = usable()
            while found is None:
                await opened.wait()
                found = usable()
        finally:
            self.swarm.unobserve(opened)
        return found

    async def disconnect(self, peer: PeerID) -> None:
        """Close every connection to ``peer``."""
        for conn in self.swarm.connections_to(peer):
            await conn.aclose()


#: Protocols the host runs for itself (see :meth:`Swarm.set_background`).
_BACKGROUND_PROTOCOLS = (
    identify.PROTOCOL_ID,
    identify.PUSH_PROTOCOL_ID,
    ping.PROTOCOL_ID,
    dcutr.PROTOCOL_ID,
    AUTONAT_PROTOCOL_ID,
    AUTONAT_V2_DIAL_REQUEST,
    AUTONAT_V2_DIAL_BACK,
)


class _DialedAddrs:
    """Keeps the peerstore's view of addresses in step with live connections (an observer of
    the swarm). Only the addresses we dialed: an inbound connection's source port is usually
    ephemeral (an AutoNAT dial-back's always is), not an address to dial the peer at."""

    def __init__(self, swarm: Swarm, peerstore: Peerstore) -> None:
        self._swarm = swarm
        self._peerstore = peerstore

    @staticmethod
    def _counts(conn: Connection) -> bool:
        return (
            conn.remote_addr is not None
            and not conn.relayed
            and conn.direction is Direction.OUTBOUND
        )

    def connection_opened(self, conn: Connection) -> None:
        if self._counts(conn):
            assert conn.remote_addr is not None
            self._peerstore.add_addrs(conn.remote_peer, [conn.remote_addr], CONNECTED_ADDR_TTL)

    def connection_closed(self, conn: Connection) -> None:
        if self._counts(conn) and not self._swarm.connections_to(conn.remote_peer):
            assert conn.remote_addr is not None
            self._peerstore.set_addr_ttl(
                conn.remote_peer, conn.remote_addr, RECENTLY_CONNECTED_ADDR_TTL
            )


class _OpenedWatch:
    """A swarm observer that wakes a waiter each time a connection opens."""

    def __init__(self) -> None:
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()

    def connection_opened(self, conn: Connection) -> None:
        self._event.set()

    def connection_closed(self, conn: Connection) -> None:
        pass


async def _serve_ping(stream: NetStream) -> None:
    await ping.handle_ping(stream)
