"""Finding the default gateway and our address towards it (Linux ``/proc``), parsing I/O-free.

The gateway is the router of the default route. ``/proc/net/route`` lists IPv4 routes, one a
line, with hexadecimal fields in the host's byte order (little-endian here): a default route
has destination and mask 0 and the ``RTF_GATEWAY`` flag. We read the *calling thread's*
namespace view (``/proc/thread-self/net/route``) so that a program that moved a thread into
another network namespace sees that namespace's routes.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

__all__ = ["default_gateways", "local_address_towards", "parse_proc_net_route"]

_RTF_UP = 0x1
_RTF_GATEWAY = 0x2
_MAX_ROUTE_FILE = 1 << 20


def parse_proc_net_route(text: str) -> list[tuple[str, str]]:
    """``(interface, gateway IP)`` of each default route in ``/proc/net/route`` text, lowest
    metric first. Malformed lines are skipped."""
    found: list[tuple[int, str, str]] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, dest, gateway, flags, _refcnt, _use, metric, mask = fields[:8]
        try:
            dest_n, gw_n, flags_n = int(dest, 16), int(gateway, 16), int(flags, 16)
            metric_n, mask_n = int(metric), int(mask, 16)
        except ValueError:
            continue
        if dest_n or mask_n or not flags_n & _RTF_UP or not flags_n & _RTF_GATEWAY:
            continue
        if not 0 <= gw_n < 2**32:
            continue
        ip = ipaddress.IPv4Address(struct.pack("<I", gw_n))
        found.append((metric_n, iface, str(ip)))
    found.sort()
    return [(iface, ip) for _metric, iface, ip in found]


def default_gateways() -> list[tuple[str, str]]:
    """The default IPv4 gateways of the calling thread's network namespace (empty when there
    is none or ``/proc`` is not Linux's)."""
    for path in ("/proc/thread-self/net/route", "/proc/net/route"):
        if os.path.exists(path):
            try:
                with open(path, encoding="ascii", errors="replace") as f:
                    return parse_proc_net_route(f.read(_MAX_ROUTE_FILE))
            except OSError:
                continue
    return []


def local_address_towards(gateway: str) -> str | None:
    """Our IPv4 address on the route to ``gateway`` (a connected UDP socket sends nothing)."""
    family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((gateway, 9))
        except OSError:
            return None
        address: str = sock.getsockname()[0]
        return address
