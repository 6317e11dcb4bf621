"""The port mapper's trio driver: runs :class:`~.mapper.MapperCore`'s actions.

``Host`` runs one when ``HostConfig(port_mapping=PortMappingConfig())`` is set
(``host.port_mapper``). It maps every TCP port the host listens on for IPv4 (on ``0.0.0.0``
or on our address towards the gateway) and keeps the mappings alive until the host stops,
then removes them within ``shutdown_timeout`` (best effort, shielded from the cancellation
that ends the host).

It only *exposes* mappings (:attr:`PortMapper.mappings`, events on ``host.events`` and the
synchronous :attr:`PortMapper.on_mappings_changed` callbacks): a mapped address is advertised
only once something else -- AutoNAT, from outside -- confirms it is reachable (the host's
reachability report follows these callbacks).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import trio
from multiaddr import Multiaddr

from ..exceptions import DecodeError
from ..transport.tcp import parse_tcp_multiaddr
from . import natpmp, pcp, upnp
from .client import (
    GatewayError,
    NotTheAnswer,
    gateway_deadline,
    http_request,
    parse_ip,
    ssdp_search,
    udp_exchange,
    upnp_call,
)
from .config import PortMappingConfig
from .events import (
    PortMapping,
    PortMappingChanged,
    PortMappingFailed,
    PortMappingFailure,
    PortMappingProtocol,
)
from .gateway import default_gateways, local_address_towards
from .mapper import (
    Discover,
    GatewayAnswer,
    Map,
    MapError,
    MapperCore,
    MapSuccess,
    Unmap,
    classify_external,
)

if TYPE_CHECKING:
    from ..network.interfaces import EventPublisher

__all__ = ["PortMapper", "PortMapperHost"]

logger = logging.getLogger(__name__)

PortMappingEvent = PortMappingChanged | PortMappingFailed


class PortMapperHost(Protocol):
    """What the port mapper needs of its host: the listen addresses and an event bus."""

    @property
    def listen_addrs(self) -> list[Multiaddr]: ...
    @property
    def events(self) -> EventPublisher: ...


class PortMapper:
    """Maps the host's TCP listen ports on the LAN's gateway (UPnP IGD, PCP, NAT-PMP)."""

    def __init__(self, host: PortMapperHost, config: PortMappingConfig | None = None) -> None:
        self.host = host
        self.config = config or PortMappingConfig()
        #: Called synchronously with every :class:`~.events.PortMappingChanged` and
        #: :class:`~.events.PortMappingFailed`, before it is published (reliable, unlike the
        #: public bus). A callback must not block.
        self.on_mappings_changed: list[Callable[[PortMappingEvent], None]] = []
        #: The latest failure (``None`` after a success).
        self.last_failure: PortMappingFailed | None = None
        self._core: MapperCore | None = None
        self._wakeup = trio.Event()
        self._local_ip: str | None = None
        self._no_route_reported = False

    # -- state ------------------------------------------------------------------------------

    @property
    def mappings(self) -> list[PortMapping]:
        """The mappings the router granted and that have not expired."""
        return self._core.mappings if self._core is not None else []

    @property
    def gateway(self) -> str | None:
        """The gateway used (configured, from the default route, or the first to answer)."""
        return self._core.gateway if self._core is not None else self.config.gateway

    @property
    def protocols_answering(self) -> list[PortMappingProtocol]:
        """The protocols that answered the last discovery, in the order they are tried."""
        answers = self._core.answers if self._core is not None else None
        return [a.protocol for a in answers or ()]

    def listen_addrs_changed(self) -> None:
        """The host's listen addresses changed: map new ports, remove old ones."""
        self._wakeup.set()

    # -- running ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Map, renew and retry until cancelled; then remove the mappings (shielded,
        within ``shutdown_timeout``)."""
        gateway = self.config.gateway
        if gateway is None:
            gateways = default_gateways()
            gateway = gateways[0][1] if gateways else None
        core = self._core = MapperCore(self.config, trio.current_time(), gateway)
        try:
            task_status.started()
            await self._loop(core)
        finally:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + self.config.shutdown_timeout
                for action in core.shutdown():
                    await self._unmap(core, action)

    async def _loop(self, core: MapperCore) -> None:
        while True:
            now = trio.current_time()
            self._sync_ports(core, now)
            self._emit(core.expire(now))
            actions = core.poll(now)
            for action in actions:
                if isinstance(action, Discover):
                    answers = await self._discover(core)
                    self._emit(core.discovered(answers, trio.current_time()))
                elif isinstance(action, Map):
                    # A renewal is given up when the lease ends: the mapping is then lost,
                    # whatever the request's own timeout.
                    result: MapSuccess | MapError = MapError(
                        PortMappingFailure.TIMEOUT,
                        f"{action.answer.protocol.value}: no answer before the lease ended",
                    )
                    with trio.move_on_at(action.expires):
                        result = await self._map(action)
                    self._emit(core.mapped(action, result, trio.current_time()))
                else:
                    await self._unmap(core, action)
            if actions:
                continue
            with trio.move_on_at(core.next_deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()

    def _sync_ports(self, core: MapperCore, now: float) -> None:
        gateway = core.gateway
        local = local_address_towards(gateway) if gateway is not None else None
        ports: set[int] = set()
        listening = False
        for addr in self.host.listen_addrs:
            try:
                _family, host, port = parse_tcp_multiaddr(addr)
            except (ValueError, DecodeError):
                continue
            if ":" in host:
                continue  # IPv4 port mapping only (PCP over IPv6: not yet)
            listening = True
            if local is not None and host in ("0.0.0.0", local):
                ports.add(port)
        if listening and local is None and not self._no_route_reported:
            self._no_route_reported = True
            why = (
                "no default gateway (no default route in /proc/net/route)"
                if gateway is None
                else f"no route to the gateway {gateway}"
            )
            for addr in self.host.listen_addrs:
                self._emit(
                    [
                        PortMappingFailed(
                            addr, PortMappingFailure.NO_ROUTE, why, None, gateway, float("inf")
                        )
                    ]
                )
        if local is not None:
            self._local_ip = local
            core.set_ports(local, ports, now)

    def _emit(self, events: list[PortMappingEvent]) -> None:
        for event in events:
            if isinstance(event, PortMappingFailed):
                self.last_failure = event
                logger.info("port mapping failed: %s", event.reason)
            else:
                self.last_failure = None
                logger.info(
                    "port mapping %s: %s -> %s (%s, lease %.0f s)",
                    event.change.value,
                    event.mapping.internal,
                    event.mapping.external,
                    event.mapping.protocol.value,
                    event.mapping.lease,
                )
            for callback in list(self.on_mappings_changed):
                callback(event)
            self.host.events.publish(event)

    # -- discovery --------------------------------------------------------------------------

    async def _discover(self, core: MapperCore) -> list[GatewayAnswer]:
        """Probe every enabled protocol at once; stop waiting for the others ``answer_grace``
        after the first answer (a probe that has answered finishes its own follow-up)."""
        gateway, local = core.gateway, self._local_ip
        if gateway is None or local is None:
            return []
        config = self.config
        answers: list[GatewayAnswer] = []
        pending: dict[PortMappingProtocol, trio.CancelScope] = {}

        def answered(protocol: PortMappingProtocol) -> None:
            pending.pop(protocol, None)
            cutoff = trio.current_time() + config.answer_grace
            for scope in pending.values():
                scope.deadline = min(scope.deadline, cutoff)

        async def run(
            protocol: PortMappingProtocol, probe: Callable[[], Awaitable[GatewayAnswer]]
        ) -> None:
            with pending[protocol]:
                try:
                    answers.append(await probe())
                except GatewayError as exc:
                    logger.debug("discovery: %s", exc.reason)

        probes: dict[PortMappingProtocol, Callable[[], Awaitable[GatewayAnswer]]] = {
            PortMappingProtocol.UPNP: lambda: self._probe_upnp(local, answered),
            PortMappingProtocol.PCP: lambda: self._probe_pcp(gateway, local, answered),
            PortMappingProtocol.NAT_PMP: lambda: self._probe_natpmp(gateway, answered),
        }
        async with trio.open_nursery() as nursery:
            for protocol in config.protocols:
                pending[protocol] = trio.CancelScope(
                    deadline=trio.current_time() + config.discovery_timeout
                )
                nursery.start_soon(run, protocol, probes[protocol])
        logger.info(
            "port mapping discovery at %s: %s",
            gateway,
            ", ".join(f"{a.protocol.value} from {a.server}" for a in answers) or "no answer",
        )
        return answers

    async def _probe_upnp(
        self, local: str, answered: Callable[[PortMappingProtocol], None]
    ) -> GatewayAnswer:
        config = self.config
        notes: list[str] = []
        with gateway_deadline(config.discovery_timeout, "SSDP search", notes):
            found, source, at = await ssdp_search(
                local, mx=config.ssdp_mx, notes=notes, gateway=config.gateway
            )
        answered(PortMappingProtocol.UPNP)
        with gateway_deadline(config.request_timeout, f"UPnP description {found.location}"):
            response = await http_request("GET", found.location)
        if response.status != 200:
            raise GatewayError(
                PortMappingFailure.BAD_ANSWER,
                f"UPnP: description {found.location} answered HTTP {response.status}",
            )
        try:
            services = upnp.parse_description(response.body, found.location)
        except upnp.UpnpDecodeError as exc:
            raise GatewayError(
                PortMappingFailure.BAD_ANSWER, f"UPnP: description {found.location}: {exc}"
            ) from None
        if not services:
            raise GatewayError(
                PortMappingFailure.BAD_ANSWER,
                f"UPnP: {found.location} describes no WAN connection service",
            )
        service = services[0]
        external = await self._upnp_external_ip(service)
        return GatewayAnswer(PortMappingProtocol.UPNP, source, at, external, service)

    async def _upnp_external_ip(
        self, service: upnp.WanService
    ) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        with gateway_deadline(self.config.request_timeout, "UPnP GetExternalIPAddress"):
            result = await upnp_call(service, "GetExternalIPAddress", [])
        if isinstance(result, upnp.UpnpFault):
            return None
        return parse_ip(result.get("NewExternalIPAddress", ""))

    async def _probe_pcp(
        self, gateway: str, local: str, answered: Callable[[PortMappingProtocol], None]
    ) -> GatewayAnswer:
        client_ip = ipaddress.ip_address(local)

        def accept(data: bytes) -> pcp.AnnounceResponse | pcp.VersionMismatch:
            answer = pcp.decode_response(data)
            if isinstance(answer, pcp.MapResponse):
                raise NotTheAnswer
            return answer

        notes: list[str] = []
        with gateway_deadline(self.config.discovery_timeout, "PCP ANNOUNCE", notes):
            answer, _local = await udp_exchange(
                gateway,
                pcp.PORT,
                pcp.encode_announce_request(client_ip),
                accept,
                retransmit_initial=self.config.retransmit_initial,
                what="PCP ANNOUNCE",
                notes=notes,
            )
        if isinstance(answer, pcp.VersionMismatch):
            raise GatewayError(
                PortMappingFailure.REFUSED,
                f"PCP: {gateway} answered in version {answer.version} (NAT-PMP only)",
            )
        answered(PortMappingProtocol.PCP)
        return GatewayAnswer(PortMappingProtocol.PCP, gateway, trio.current_time(), None, None)

    async def _natpmp_address(
        self, gateway: str, seconds: float
    ) -> natpmp.AddressResponse | natpmp.UnsupportedVersion:
        def accept(data: bytes) -> natpmp.AddressResponse | natpmp.UnsupportedVersion:
            answer = natpmp.decode_response(data)
            if isinstance(answer, natpmp.MapResponse):
                raise NotTheAnswer
            return answer

        notes: list[str] = []
        with gateway_deadline(seconds, "NAT-PMP external address request", notes):
            answer, _local = await udp_exchange(
                gateway,
                natpmp.PORT,
                natpmp.encode_address_request(),
                accept,
                retransmit_initial=self.config.retransmit_initial,
                what="NAT-PMP external address request",
                notes=notes,
            )
        return answer

    async def _probe_natpmp(
        self, gateway: str, answered: Callable[[PortMappingProtocol], None]
    ) -> GatewayAnswer:
        answer = await self._natpmp_address(gateway, self.config.discovery_timeout)
        if isinstance(answer, natpmp.UnsupportedVersion):
            raise GatewayError(
                PortMappingFailure.REFUSED,
                f"NAT-PMP: {gateway} answered in version {answer.version} (no NAT-PMP)",
            )
        answered(PortMappingProtocol.NAT_PMP)
        return GatewayAnswer(
            PortMappingProtocol.NAT_PMP, gateway, trio.current_time(), answer.external_ip, answer
        )

    # -- mapping ----------------------------------------------------------------------------

    async def _map(self, action: Map) -> MapSuccess | MapError:
        protocol = action.answer.protocol
        try:
            if protocol is PortMappingProtocol.UPNP:
                return await self._map_upnp(action)
            if protocol is PortMappingProtocol.PCP:
                return await self._map_pcp(action)
            return await self._map_natpmp(action)
        except GatewayError as exc:
            return MapError(exc.failure, exc.reason)

    async def _map_upnp(self, action: Map) -> MapSuccess | MapError:
        service = action.answer.detail
        assert isinstance(service, upnp.WanService)
        seconds = self.config.request_timeout
        lease = int(action.lease)
        external_port = action.suggested_external_port

        def args(port: int, lease: int) -> list[tuple[str, str]]:
            return [
                ("NewRemoteHost", ""),
                ("NewExternalPort", str(port)),
                ("NewProtocol", "TCP"),
                ("NewInternalPort", str(action.internal_port)),
                ("NewInternalClient", action.internal_ip),
                ("NewEnabled", "1"),
                ("NewPortMappingDescription", self.config.description),
                ("NewLeaseDuration", str(lease)),
            ]

        with gateway_deadline(seconds, "UPnP AddPortMapping"):
            result = await upnp_call(service, "AddPortMapping", args(external_port, lease))
        if isinstance(result, upnp.UpnpFault) and result.code == 725:
            lease = 0  # OnlyPermanentLeasesSupported: map without a lease, remove on shutdown
            with gateway_deadline(seconds, "UPnP AddPortMapping"):
                result = await upnp_call(service, "AddPortMapping", args(external_port, lease))
        if isinstance(result, upnp.UpnpFault) and result.code == 718 and service.version >= 2:
            # ConflictInMappingEntry: let an IGD v2 router pick a free port.
            with gateway_deadline(seconds, "UPnP AddAnyPortMapping"):
                result = await upnp_call(service, "AddAnyPortMapping", args(external_port, lease))
            if not isinstance(result, upnp.UpnpFault):
                reserved = result.get("NewReservedPort", "")
                if not reserved.isdigit() or not 0 < int(reserved) < 65536:
                    return MapError(
                        PortMappingFailure.BAD_ANSWER,
                        f"UPnP AddAnyPortMapping: bad NewReservedPort {reserved[:20]!r}",
                    )
                external_port = int(reserved)
        tries = 0
        while isinstance(result, upnp.UpnpFault) and result.code == 718 and tries < 3:
            # IGD v1 has no AddAnyPortMapping (or v2's failed): another host behind this
            # router holds the port; try random ones, as go-libp2p does.
            tries += 1
            external_port = random.randrange(1024, 65536)
            with gateway_deadline(seconds, "UPnP AddPortMapping"):
                retry = await upnp_call(service, "AddPortMapping", args(external_port, lease))
            if not isinstance(retry, upnp.UpnpFault) or retry.code != 718:
                result = retry
        if isinstance(result, upnp.UpnpFault):
            if result.code == 501 and action.answer.external_ip is None:
                return MapError(
                    PortMappingFailure.NO_EXTERNAL_ADDRESS,
                    f"port forwarding disabled on router: UPnP {result} and its "
                    "GetExternalIPAddress is empty (its WAN address is private or reserved)",
                )
            return MapError(PortMappingFailure.REFUSED, f"router refused: UPnP {result}")
        external = await self._upnp_external_ip(service)
        return MapSuccess(external, external_port, float(lease))

    async def _map_natpmp(self, action: Map) -> MapSuccess | MapError:
        gateway = action.answer.server
        port = action.internal_port

        def accept(data: bytes) -> natpmp.MapResponse | natpmp.UnsupportedVersion:
            answer = natpmp.decode_response(data)
            if isinstance(answer, natpmp.UnsupportedVersion):
                return answer
            if not isinstance(answer, natpmp.MapResponse) or answer.protocol != "tcp":
                raise NotTheAnswer
            if answer.result == natpmp.NatPmpResult.SUCCESS and answer.internal_port != port:
                raise NotTheAnswer  # an answer to another of our requests
            return answer

        notes: list[str] = []
        with gateway_deadline(self.config.request_timeout, "NAT-PMP mapping request", notes):
            answer, _local = await udp_exchange(
                gateway,
                natpmp.PORT,
                natpmp.encode_map_request(
                    "tcp", port, action.suggested_external_port, int(action.lease)
                ),
                accept,
                retransmit_initial=self.config.retransmit_initial,
                what="NAT-PMP mapping request",
                notes=notes,
            )
        if isinstance(answer, natpmp.UnsupportedVersion):
            return MapError(PortMappingFailure.REFUSED, "router refused: NAT-PMP not supported")
        if answer.result != natpmp.NatPmpResult.SUCCESS:
            text = f"NAT-PMP result {natpmp.NatPmpResult.describe(answer.result)}"
            if answer.result == natpmp.NatPmpResult.NETWORK_FAILURE:
                return MapError(
                    PortMappingFailure.NO_EXTERNAL_ADDRESS,
                    f"port forwarding disabled on router: {text} (it has no public external "
                    "address)",
                )
            return MapError(PortMappingFailure.REFUSED, f"router refused: {text}")
        if answer.lifetime == 0:
            return MapError(PortMappingFailure.BAD_ANSWER, "NAT-PMP granted a lifetime of 0")
        address = await self._natpmp_address(gateway, self.config.request_timeout)
        external = address.external_ip if isinstance(address, natpmp.AddressResponse) else None
        return MapSuccess(external, answer.external_port, float(answer.lifetime))

    async def _map_pcp(self, action: Map) -> MapSuccess | MapError:
        gateway = action.answer.server
        nonce = action.detail if isinstance(action.detail, bytes) else os.urandom(pcp.NONCE_SIZE)
        client_ip = ipaddress.ip_address(action.internal_ip)

        def accept(data: bytes) -> pcp.MapResponse | pcp.VersionMismatch:
            answer = pcp.decode_response(data)
            if isinstance(answer, pcp.VersionMismatch):
                return answer
            if not isinstance(answer, pcp.MapResponse):
                raise NotTheAnswer
            if answer.nonce != nonce and not (answer.result and not answer.nonce):
                raise NotTheAnswer  # not ours (RFC 6887 §11.3: the nonce must match)
            return answer

        request = pcp.encode_map_request(
            nonce=nonce,
            protocol="tcp",
            internal_port=action.internal_port,
            client_ip=client_ip,
            lifetime=int(action.lease),
            suggested_external_port=action.suggested_external_port,
        )
        notes: list[str] = []
        with gateway_deadline(self.config.request_timeout, "PCP MAP", notes):
            answer, _local = await udp_exchange(
                gateway,
                pcp.PORT,
                request,
                accept,
                retransmit_initial=self.config.retransmit_initial,
                what="PCP MAP",
                notes=notes,
            )
        if isinstance(answer, pcp.VersionMismatch):
            return MapError(
                PortMappingFailure.REFUSED,
                f"router refused: PCP answered in version {answer.version}",
            )
        if answer.result != pcp.PcpResult.SUCCESS:
            text = f"router refused: PCP result {pcp.PcpResult.describe(answer.result)}"
            if not answer.external_ip.is_unspecified:
                # An error answer still names the external address (RFC 6887 §11.5); when
                # it is not public, that is the reason behind the refusal.
                public, why = classify_external(answer.external_ip, self.config)
                if not public:
                    return MapError(PortMappingFailure.NO_EXTERNAL_ADDRESS, f"{text}; {why}")
            return MapError(PortMappingFailure.REFUSED, text)
        if answer.lifetime == 0 or answer.internal_port != action.internal_port:
            return MapError(
                PortMappingFailure.BAD_ANSWER,
                f"PCP MAP answer for port {answer.internal_port} with lifetime {answer.lifetime}",
            )
        return MapSuccess(answer.external_ip, answer.external_port, float(answer.lifetime), nonce)

    # -- removal ----------------------------------------------------------------------------

    async def _unmap(self, core: MapperCore, action: Unmap) -> None:
        try:
            await self._unmap_one(action)
        except GatewayError as exc:
            logger.info("removing %s failed: %s", action.mapping.external, exc.reason)
        self._emit(core.unmapped(action, trio.current_time()))

    async def _unmap_one(self, action: Unmap) -> None:
        mapping = action.mapping
        external_port = 0
        if mapping.external is not None:
            external_port = int(mapping.external.value_for_protocol("tcp"))
        protocol = action.answer.protocol
        seconds = min(self.config.request_timeout, self.config.shutdown_timeout)
        notes: list[str] = []
        if protocol is PortMappingProtocol.UPNP:
            service = action.answer.detail
            assert isinstance(service, upnp.WanService)
            with gateway_deadline(seconds, "UPnP DeletePortMapping"):
                result = await upnp_call(
                    service,
                    "DeletePortMapping",
                    [
                        ("NewRemoteHost", ""),
                        ("NewExternalPort", str(external_port)),
                        ("NewProtocol", "TCP"),
                    ],
                )
            if isinstance(result, upnp.UpnpFault):
                raise GatewayError(PortMappingFailure.REFUSED, f"UPnP DeletePortMapping: {result}")
            return
        if protocol is PortMappingProtocol.NAT_PMP:
            request = natpmp.encode_map_request("tcp", action.internal_port, 0, 0)

            def accept_natpmp(data: bytes) -> natpmp.MapResponse:
                answer = natpmp.decode_response(data)
                if not isinstance(answer, natpmp.MapResponse):
                    raise NotTheAnswer
                return answer

            with gateway_deadline(seconds, "NAT-PMP deletion", notes):
                await udp_exchange(
                    mapping.gateway,
                    natpmp.PORT,
                    request,
                    accept_natpmp,
                    retransmit_initial=self.config.retransmit_initial,
                    what="NAT-PMP deletion",
                    notes=notes,
                )
            return
        nonce = action.detail
        assert isinstance(nonce, bytes)
        internal_ip = mapping.internal.value_for_protocol("ip4")
        request = pcp.encode_map_request(
            nonce=nonce,
            protocol="tcp",
            internal_port=action.internal_port,
            client_ip=ipaddress.ip_address(internal_ip),
            lifetime=0,
            suggested_external_port=external_port,
        )

        def accept_pcp(data: bytes) -> pcp.MapResponse:
            answer = pcp.decode_response(data)
            if isinstance(answer, pcp.MapResponse) and answer.nonce == nonce:
                return answer
            raise NotTheAnswer

        with gateway_deadline(seconds, "PCP deletion", notes):
            await udp_exchange(
                mapping.gateway,
                pcp.PORT,
                request,
                accept_pcp,
                retransmit_initial=self.config.retransmit_initial,
                what="PCP deletion",
                notes=notes,
            )
