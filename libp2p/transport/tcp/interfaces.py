"""The IP addresses of this machine's network interfaces.

A listener on ``0.0.0.0`` or ``::`` accepts on every interface, but nobody can dial
``0.0.0.0``: the addresses to advertise are those of the interfaces. On Linux each interface's
primary IPv4 address comes from ``SIOCGIFADDR`` and the IPv6 addresses from
``/proc/net/if_inet6``; elsewhere (or when those fail) only loopback is reported.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

__all__ = ["interface_addresses"]

_SIOCGIFADDR = 0x8915


def _ipv4() -> list[str]:
    import fcntl

    out: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(
                    sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15])
                )
            except OSError:
                continue  # no IPv4 address on this interface
            out.append(socket.inet_ntoa(raw[20:24]))
    return out


def _ipv6() -> list[str]:
    out: list[str] = []
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        ip = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        if not ip.is_link_local:  # unusable without a zone in a multiaddr
            out.append(str(ip))
    return out


def interface_addresses(family: int) -> list[str]:
    """This machine's IP addresses of ``family`` (``AF_INET`` or ``AF_INET6``), loopback
    included; loopback alone where they cannot be read."""
    fallback = ["127.0.0.1"] if family == socket.AF_INET else ["::1"]
    if not sys.platform.startswith("linux"):
        return fallback
    try:
        found = _ipv4() if family == socket.AF_INET else _ipv6()
    except OSError:
        return fallback
    return found or fallback
