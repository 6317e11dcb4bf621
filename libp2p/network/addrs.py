"""Multiaddr helpers every layer uses, in one place.

Which addresses go through a relay, which name a peer, which IP an address starts with, and
whether that IP is loopback: the swarm, identify's observed-address book, the relay client and
service, DCUtR and AutoNAT all ask these questions, and they must all get the same answers.
Each helper accepts any :class:`~multiaddr.Multiaddr` and never raises for a well-formed one of
another kind (a ``/dns4`` or ``/unix`` address simply has no IP).
"""

from __future__ import annotations

import ipaddress

from multiaddr import Multiaddr
from multiaddr import exceptions as _ma_exceptions

from ..peer.id import PeerID

__all__ = [
    "IPAddress",
    "first_ip",
    "is_circuit_addr",
    "is_loopback_addr",
    "split_peer_id",
    "with_peer_id",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IP_PROTOCOLS = ("ip4", "ip6")


def is_circuit_addr(maddr: Multiaddr) -> bool:
    """True when ``maddr`` goes through a relay (contains ``/p2p-circuit``)."""
    try:
        return any(proto.name == "p2p-circuit" for proto in maddr.protocols())
    except (_ma_exceptions.Error, ValueError):
        return False


def split_peer_id(maddr: Multiaddr) -> tuple[Multiaddr, PeerID | None]:
    """Split a trailing ``/p2p/<id>`` off ``maddr``; the peer is ``None`` when there is none."""
    items = list(maddr.items())
    if items and items[-1][0].name == "p2p":
        peer = PeerID.from_string(str(items[-1][1]))
        return maddr.decapsulate(Multiaddr(f"/p2p/{items[-1][1]}")), peer
    return maddr, None


def with_peer_id(maddr: Multiaddr, peer: PeerID) -> Multiaddr:
    """``maddr/p2p/<peer>`` (just ``/p2p/<peer>`` for an empty address)."""
    return Multiaddr(f"{maddr}/p2p/{peer}") if str(maddr) else Multiaddr(f"/p2p/{peer}")


def first_ip(maddr: Multiaddr | None) -> IPAddress | None:
    """The IP an ``/ip4`` or ``/ip6`` multiaddr starts with; ``None`` for any other kind.

    An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) is returned as the IPv4 address it
    stands for, and an IPv6 zone (``%eth0``) is dropped.
    """
    if maddr is None:
        return None
    try:
        items = list(maddr.items())
        if not items or items[0][0].name not in _IP_PROTOCOLS:
            return None
        ip = ipaddress.ip_address(str(items[0][1]).split("%", 1)[0])
    except (_ma_exceptions.Error, TypeError, ValueError):
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback_addr(maddr: Multiaddr | None) -> bool:
    """True when ``maddr`` starts with a loopback IP."""
    ip = first_ip(maddr)
    return ip is not None and ip.is_loopback
