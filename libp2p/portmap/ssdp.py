"""SSDP discovery of an Internet Gateway Device (UPnP Device Architecture 1.1 §1.3), without I/O.

The client multicasts ``M-SEARCH`` requests, one per search target, to 239.255.255.250:1900
from a socket bound on the LAN interface; each device that matches answers by unicast with an
HTTP-like ``200 OK`` whose ``LOCATION`` header is the URL of its description document.

We search for the IGD device types (v1 and v2) and for the WAN connection services directly
(some routers answer only for services). An answer whose ``LOCATION`` is not a plain
``http://`` URL on the address the answer came from is refused: a device on the LAN must not
be able to send us to fetch a URL elsewhere.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass

from ..exceptions import DecodeError

__all__ = [
    "MULTICAST_ADDR",
    "MULTICAST_PORT",
    "SEARCH_TARGETS",
    "SsdpDecodeError",
    "SsdpResponse",
    "decode_response",
    "encode_search",
]

MULTICAST_ADDR = "239.255.255.250"
MULTICAST_PORT = 1900
#: Largest answer we accept (real ones are a few hundred bytes).
MAX_RESPONSE = 4096
MAX_HEADERS = 32

SEARCH_TARGETS = (
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)


class SsdpDecodeError(DecodeError):
    """A datagram was not an SSDP search answer we can use."""


@dataclass(frozen=True, slots=True)
class SsdpResponse:
    """One device's answer to M-SEARCH."""

    location: str
    st: str
    usn: str
    server: str
    #: host and port of ``location`` (the description's address).
    host: str
    port: int


def encode_search(target: str, mx: int = 1) -> bytes:
    """An ``M-SEARCH`` for ``target`` (devices wait up to ``mx`` seconds before answering)."""
    return (
        "M-SEARCH * HTTP/1.1\r\n"
        f"HOST: {MULTICAST_ADDR}:{MULTICAST_PORT}\r\n"
        'MAN: "ssdp:discover"\r\n'
        f"MX: {mx}\r\n"
        f"ST: {target}\r\n"
        "\r\n"
    ).encode("ascii")


def parse_headers(lines: list[str]) -> dict[str, str]:
    """``Name: value`` lines into a dict keyed by lower-case name (first occurrence wins)."""
    if len(lines) > MAX_HEADERS:
        raise SsdpDecodeError(f"more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise SsdpDecodeError(f"malformed header line {line[:60]!r}")
        headers.setdefault(name.strip().lower(), value.strip())
    return headers


def decode_response(data: bytes, source_ip: str) -> SsdpResponse:
    """Decode an answer that came from ``source_ip``.

    Raises :class:`SsdpDecodeError` when it is not an SSDP ``200 OK`` with a ``LOCATION`` on
    ``source_ip`` (another device's search, a NOTIFY, garbage, an oversized datagram...).
    """
    if len(data) > MAX_RESPONSE:
        raise SsdpDecodeError(f"answer of {len(data)} bytes exceeds {MAX_RESPONSE}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SsdpDecodeError("answer is not UTF-8 text") from None
    head, _, _ = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = lines[0].split(None, 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or status[1] != "200":
        raise SsdpDecodeError(f"not an HTTP 200 answer: {lines[0][:60]!r}")
    headers = parse_headers(lines[1:])
    location = headers.get("location")
    if not location:
        raise SsdpDecodeError("answer without LOCATION")
    host, port = check_location(location, source_ip)
    return SsdpResponse(
        location=location,
        st=headers.get("st", ""),
        usn=headers.get("usn", ""),
        server=headers.get("server", ""),
        host=host,
        port=port,
    )


def check_location(url: str, source_ip: str) -> tuple[str, int]:
    """The host and port of ``url`` if it is ``http://<source_ip>[:port]/...``."""
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port or 80
    except ValueError:
        raise SsdpDecodeError(f"LOCATION is not a URL: {url[:80]!r}") from None
    if parsed.scheme != "http":
        raise SsdpDecodeError(f"LOCATION is not an http:// URL: {url[:80]!r}")
    host = parsed.hostname or ""
    try:
        same = ipaddress.ip_address(host) == ipaddress.ip_address(source_ip)
    except ValueError:
        same = False
    if not same:
        raise SsdpDecodeError(
            f"LOCATION {url[:80]!r} is not on the answering device's address {source_ip}"
        )
    return host, port
