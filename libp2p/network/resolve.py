"""Resolve ``/dns``, ``/dns4`` and ``/dns6`` multiaddrs to IP multiaddrs before dialing.

``/dns4`` asks for IPv4 only, ``/dns6`` for IPv6 only, and ``/dns`` for both with IPv6 first
(digest §13). The rest of the address (``/tcp/4001/p2p/<id>``) is kept on every result.
Resolution uses the system resolver through :func:`trio.socket.getaddrinfo`; a name that does
not resolve is a :class:`~libp2p.exceptions.TransportError`.
"""

from __future__ import annotations

import socket

import trio
from multiaddr import Multiaddr

from ..exceptions import TransportError

__all__ = ["is_dns", "resolve"]

_FAMILIES = {
    "dns4": (socket.AF_INET,),
    "dns6": (socket.AF_INET6,),
    "dns": (socket.AF_INET6, socket.AF_INET),
}


def is_dns(maddr: Multiaddr) -> bool:
    """Whether ``maddr`` starts with a DNS component."""
    first = next(iter(maddr.items()), None)
    return first is not None and first[0].name in _FAMILIES


async def resolve(maddr: Multiaddr) -> list[Multiaddr]:
    """Return ``maddr`` with its DNS name replaced by each address it resolves to."""
    items = list(maddr.items())
    if not items or items[0][0].name not in _FAMILIES:
        return [maddr]
    proto, name = items[0][0].name, str(items[0][1])
    rest = str(maddr)[len(f"/{proto}/{name}") :]
    results: list[Multiaddr] = []
    seen: set[str] = set()
    errors = []
    for family in _FAMILIES[proto]:
        try:
            infos = await trio.socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
        except OSError as exc:
            errors.append(exc)
            continue
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = str(sockaddr[0]).split("%", 1)[0]
            text = f"/{'ip4' if family == socket.AF_INET else 'ip6'}/{ip}{rest}"
            if text not in seen:
                seen.add(text)
                results.append(Multiaddr(text))
    if not results:
        detail = f": {errors[0]}" if errors else ""
        raise TransportError(f"{name} did not resolve to any address ({proto}){detail}")
    return results
