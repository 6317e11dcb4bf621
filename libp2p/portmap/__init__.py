"""Port mapping: ask the LAN's router to forward a port to us (UPnP IGD, PCP, NAT-PMP).

A host behind a home router is unreachable until the router forwards a port. Most routers
let a LAN host ask for that, with one of three protocols:

* **UPnP IGD** -- find the router with SSDP (a multicast ``M-SEARCH``), fetch its device
  description over HTTP, then call SOAP actions on its WAN connection service
  (:mod:`.ssdp`, :mod:`.upnp`);
* **NAT-PMP** (RFC 6886) -- UDP datagrams to the gateway's port 5351 (:mod:`.natpmp`);
* **PCP** (RFC 6887), NAT-PMP's successor on the same port: the ``MAP`` opcode
  (:mod:`.pcp`).

All three are probed at once; the first to answer is used, with PCP before NAT-PMP when the
same server answers both (:mod:`.mapper`, the I/O-free core). Leases are renewed at half
their length, failures retried with backoff, and mappings removed when the host stops
(:mod:`.driver`, the trio driver :class:`PortMapper`).

Turn it on with ``HostConfig(port_mapping=PortMappingConfig())``; follow ``host.port_mapper``
(:attr:`PortMapper.mappings`, :class:`PortMappingChanged` / :class:`PortMappingFailed` on
``host.events``). A mapping is only what the router *says*: its external address may still
be behind another NAT (:attr:`PortMapping.external_is_public` and its reason), and it is not
advertised to peers by the mapper -- AutoNAT confirms it from outside first.
"""

from __future__ import annotations

from .config import PortMappingConfig
from .driver import PortMapper
from .events import (
    PortMapping,
    PortMappingChange,
    PortMappingChanged,
    PortMappingFailed,
    PortMappingFailure,
    PortMappingProtocol,
)
from .mapper import MapperCore, classify_external, order_answers

__all__ = [
    "MapperCore",
    "PortMapper",
    "PortMapping",
    "PortMappingChange",
    "PortMappingChanged",
    "PortMappingConfig",
    "PortMappingFailed",
    "PortMappingFailure",
    "PortMappingProtocol",
    "classify_external",
    "order_answers",
]
