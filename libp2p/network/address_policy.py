"""Which addresses count as reachable from the other side of a NAT.

Hole punching and AutoNAT exchange addresses that a peer elsewhere will dial. go- and
js-libp2p keep only globally routable IPs, which silently breaks every lab and every private
network built on documentation or RFC 1918 ranges. Here the user decides (design §5): by
default an address is dropped only when it can never mean the same host to a remote peer --
loopback, link-local, unspecified and multicast IPs, and ``/p2p-circuit`` addresses -- and
:class:`AddressPolicy` can allow some of those back (loopback, for tests on one machine) or
deny more ranges (private ones, on the open internet).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from multiaddr import Multiaddr

from .addrs import first_ip

__all__ = ["AddressPolicy"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(ranges: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(r, strict=False) for r in ranges)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Decides which IP addresses are worth giving to, or dialing for, a remote peer.

    ``allow`` lists networks that count even though they would be excluded by default
    (``("127.0.0.0/8",)`` for peers on one machine); ``deny`` lists networks that never count
    (``("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")`` to behave like go-libp2p on the
    open internet). ``allow`` wins over the defaults; ``deny`` wins over everything.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    _allow: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)
    _deny: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_allow", _networks(self.allow))
        object.__setattr__(self, "_deny", _networks(self.deny))

    @classmethod
    def local_testing(cls) -> AddressPolicy:
        """Everything the default allows, plus loopback (peers on one machine)."""
        return cls(allow=("127.0.0.0/8", "::1/128"))

    def accepts(self, addr: Multiaddr) -> bool:
        """True when ``addr`` is an IP address a remote peer could use to reach us."""
        if any(proto.name == "p2p-circuit" for proto, _ in addr.items()):
            return False
        ip = first_ip(addr)
        if ip is None:
            # DNS names and other kinds: the remote resolves them; let it try.
            return True
        if any(ip in net for net in self._deny if net.version == ip.version):
            return False
        if any(ip in net for net in self._allow if net.version == ip.version):
            return True
        return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)

    def filter(self, addrs: list[Multiaddr]) -> list[Multiaddr]:
        """The addresses of ``addrs`` this policy accepts, without duplicates, in order."""
        out: list[Multiaddr] = []
        for addr in addrs:
            if addr not in out and self.accepts(addr):
                out.append(addr)
        return out
