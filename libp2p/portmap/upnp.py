"""UPnP IGD port mapping: the description document, SOAP calls and HTTP answers, without I/O.

After SSDP (:mod:`.ssdp`) gave the URL of a device description, the client fetches it with an
HTTP GET and looks, anywhere in the device tree, for a WAN connection service
(``WANIPConnection:2``, ``WANIPConnection:1`` or ``WANPPPConnection:1``) and its
``controlURL``. Each action is then an HTTP POST of a SOAP envelope to that URL, with a
``SOAPAction`` header naming the service type and the action:

* ``GetExternalIPAddress`` -> ``NewExternalIPAddress`` (empty when the router has none it
  would call public: miniupnpd answers so when its WAN address is private or reserved);
* ``AddPortMapping`` (external port, protocol, internal port and client, lease duration)
  -> empty answer; ``AddAnyPortMapping`` (IGD v2 only) lets the router choose the external
  port -> ``NewReservedPort``;
* ``DeletePortMapping`` (external port, protocol);
* ``GetSpecificPortMappingEntry`` (external port, protocol) -> the internal client, port,
  lease left...

A refusal is an HTTP 500 whose body is a SOAP fault carrying a ``UPnPError`` with an
``errorCode`` (:class:`UpnpErrorCode`) and ``errorDescription``; :func:`decode_soap_response`
returns it as :class:`UpnpFault`.

Everything that comes from the network is parsed defensively: sizes are capped, and XML with
a ``DOCTYPE`` or an ``ENTITY`` declaration is refused before the parser sees it (no entity
expansion at all; the standard library's parser alone does not refuse them), so a hostile
device cannot make us allocate without bound.
"""

from __future__ import annotations

import enum
import re
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

from ..exceptions import DecodeError

__all__ = [
    "SERVICE_TYPES",
    "HttpResponse",
    "UpnpDecodeError",
    "UpnpErrorCode",
    "UpnpFault",
    "WanService",
    "decode_soap_response",
    "encode_http_request",
    "encode_soap_request",
    "parse_description",
    "parse_http_response",
]

#: WAN connection services we can drive, best first.
SERVICE_TYPES = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
#: Caps on what we read from a device.
MAX_HTTP_RESPONSE = 128 * 1024
MAX_HTTP_HEAD = 8 * 1024
MAX_XML = 64 * 1024
MAX_XML_ELEMENTS = 4096

_FORBIDDEN_XML = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class UpnpDecodeError(DecodeError):
    """A device sent an HTTP answer, description or SOAP body we cannot use."""


class UpnpErrorCode(enum.IntEnum):
    """``UPnPError`` codes of WANIPConnection (v1 §2.4, v2 §2.5) and the UDA."""

    INVALID_ACTION = 401
    INVALID_ARGS = 402
    ACTION_FAILED = 501
    ACTION_NOT_AUTHORIZED = 606
    NO_SUCH_ENTRY_IN_ARRAY = 714
    WILDCARD_NOT_PERMITTED_IN_SRC_IP = 715
    WILDCARD_NOT_PERMITTED_IN_EXT_PORT = 716
    CONFLICT_IN_MAPPING_ENTRY = 718
    SAME_PORT_VALUES_REQUIRED = 724
    ONLY_PERMANENT_LEASES_SUPPORTED = 725
    REMOTE_HOST_ONLY_SUPPORTS_WILDCARD = 726
    EXTERNAL_PORT_ONLY_SUPPORTS_WILDCARD = 727
    NO_PORT_MAPS_AVAILABLE = 728
    CONFLICT_WITH_OTHER_MECHANISMS = 729
    WILDCARD_NOT_PERMITTED_IN_INT_PORT = 732


@dataclass(frozen=True, slots=True)
class UpnpFault:
    """A SOAP fault: the router refused the action."""

    code: int
    description: str

    @property
    def known(self) -> UpnpErrorCode | None:
        try:
            return UpnpErrorCode(self.code)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.code} {self.description}".strip()


@dataclass(frozen=True, slots=True)
class WanService:
    """A WAN connection service of a gateway: where to send its SOAP actions."""

    service_type: str
    control_url: str

    @property
    def version(self) -> int:
        return int(self.service_type.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


# --- HTTP ------------------------------------------------------------------------------------


def encode_http_request(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """An HTTP/1.1 request for ``url`` with ``Connection: close`` (one request per socket)."""
    parsed = urllib.parse.urlsplit(url)
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parsed.netloc}", "Connection: close"]
    for name, value in (headers or {}).items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} contains a line break")
        lines.append(f"{name}: {value}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http_response_complete(data: bytes) -> bool:
    """True once ``data`` holds a whole response with a ``Content-Length`` (or a finished
    chunked body), so the reader need not wait for the server to close."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    try:
        head = _parse_head(data[:end])
    except UpnpDecodeError:
        return True  # let parse_http_response say what is wrong
    _status, _reason, headers = head
    body = data[end + 4 :]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return body.endswith(b"0\r\n\r\n")
    length = headers.get("content-length")
    return length is not None and length.isdigit() and len(body) >= int(length)


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    if len(head) > MAX_HTTP_HEAD:
        raise UpnpDecodeError(f"HTTP head longer than {MAX_HTTP_HEAD} bytes")
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise UpnpDecodeError("HTTP head is not text") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise UpnpDecodeError(f"not an HTTP status line: {lines[0][:60]!r}")
    if len(lines) > 100:
        raise UpnpDecodeError("too many HTTP header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise UpnpDecodeError(f"malformed HTTP header line {line[:60]!r}")
        headers.setdefault(name.strip().lower(), value.strip())
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            raise UpnpDecodeError("truncated chunked body")
        size_text = body[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise UpnpDecodeError(f"bad chunk size {size_text[:20]!r}") from None
        if size < 0 or len(out) + size > MAX_HTTP_RESPONSE:
            raise UpnpDecodeError("chunked body too large")
        if size == 0:
            return bytes(out)
        start = end + 2
        if start + size + 2 > len(body) or body[start + size : start + size + 2] != b"\r\n":
            raise UpnpDecodeError("truncated chunk")
        out += body[start : start + size]
        pos = start + size + 2


def parse_http_response(data: bytes) -> HttpResponse:
    """A whole HTTP/1.x response (the connection was closed, or it is complete)."""
    if len(data) > MAX_HTTP_RESPONSE:
        raise UpnpDecodeError(f"HTTP response larger than {MAX_HTTP_RESPONSE} bytes")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise UpnpDecodeError("HTTP response without the end of its head")
    status, reason, headers = _parse_head(data[:end])
    body = data[end + 4 :]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    elif (length := headers.get("content-length")) is not None:
        if not length.isdigit():
            raise UpnpDecodeError(f"bad Content-Length {length[:20]!r}")
        if len(body) < int(length):
            raise UpnpDecodeError(f"body shorter ({len(body)}) than its Content-Length {length}")
        body = body[: int(length)]
    return HttpResponse(status, reason, headers, body)


# --- XML -------------------------------------------------------------------------------------


def parse_xml(data: bytes) -> ET.Element:
    """Parse a device's XML with caps: size, no DOCTYPE or ENTITY, bounded element count."""
    if len(data) > MAX_XML:
        raise UpnpDecodeError(f"XML document of {len(data)} bytes exceeds {MAX_XML}")
    if _FORBIDDEN_XML.search(data):
        raise UpnpDecodeError("XML with a DOCTYPE or ENTITY declaration is refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise UpnpDecodeError(f"malformed XML: {exc}") from None
    except (ValueError, RecursionError) as exc:  # e.g. a NUL byte, absurd nesting
        raise UpnpDecodeError(f"malformed XML: {type(exc).__name__}") from None
    for count, _ in enumerate(root.iter(), 1):
        if count > MAX_XML_ELEMENTS:
            raise UpnpDecodeError(f"XML with more than {MAX_XML_ELEMENTS} elements")
    return root


def _local(tag: object) -> str:
    """An element's name without its namespace (``{ns}name`` -> ``name``)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def parse_description(data: bytes, location: str) -> list[WanService]:
    """The WAN connection services in a device description fetched from ``location``,
    best first (:data:`SERVICE_TYPES` order). Control URLs are made absolute against
    ``URLBase`` (if any) or ``location``, and must stay on ``location``'s host and port."""
    root = parse_xml(data)
    base = location
    for element in root:
        if _local(element.tag) == "URLBase" and (element.text or "").strip():
            base = (element.text or "").strip()
    found: list[WanService] = []
    want = set(SERVICE_TYPES)
    origin = urllib.parse.urlsplit(location)
    for element in root.iter():
        if _local(element.tag) != "service":
            continue
        service_type = _child_text(element, "serviceType")
        control = _child_text(element, "controlURL")
        if service_type not in want or not control:
            continue
        url = urllib.parse.urljoin(base, control)
        parsed = urllib.parse.urlsplit(url)
        try:
            same_origin = parsed.scheme == "http" and (parsed.hostname, parsed.port or 80) == (
                origin.hostname,
                origin.port or 80,
            )
        except ValueError:
            same_origin = False
        if not same_origin:
            continue  # a control URL elsewhere than the description is not followed
        service = WanService(service_type, url)
        if service not in found:
            found.append(service)
    found.sort(key=lambda s: SERVICE_TYPES.index(s.service_type))
    return found


# --- SOAP ------------------------------------------------------------------------------------


def encode_soap_request(
    service: WanService, action: str, args: list[tuple[str, str]]
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a SOAP call of ``action`` with ``args`` (name, value) in order."""
    params = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in args)
    body = (
        '<?xml version="1.0"?>\r\n'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f'<s:Body><u:{action} xmlns:u="{service.service_type}">{params}</u:{action}>'
        "</s:Body></s:Envelope>\r\n"
    ).encode()
    headers = {
        "Content-Type": 'text/xml; charset="utf-8"',
        "SOAPAction": f'"{service.service_type}#{action}"',
    }
    return headers, body


def decode_soap_response(response: HttpResponse, action: str) -> dict[str, str] | UpnpFault:
    """The output arguments of ``action`` (name -> text), or the router's :class:`UpnpFault`.

    Raises :class:`UpnpDecodeError` when the answer is neither (wrong status, no envelope,
    no ``<action>Response``, a fault without a code).
    """
    if response.status not in (200, 500):
        raise UpnpDecodeError(f"HTTP {response.status} {response.reason[:40]} to {action}")
    root = parse_xml(response.body)
    if _local(root.tag) != "Envelope":
        raise UpnpDecodeError(f"SOAP answer to {action} is not an Envelope")
    body = next((child for child in root if _local(child.tag) == "Body"), None)
    if body is None or len(body) == 0:
        raise UpnpDecodeError(f"SOAP answer to {action} has no Body")
    payload = body[0]
    if _local(payload.tag) == "Fault":
        code_text = description = None
        for element in payload.iter():
            if _local(element.tag) == "errorCode":
                code_text = (element.text or "").strip()
            elif _local(element.tag) == "errorDescription":
                description = (element.text or "").strip()
        if code_text is None or not code_text.isdigit() or len(code_text) > 6:
            raise UpnpDecodeError(f"SOAP fault to {action} without a UPnP error code")
        return UpnpFault(int(code_text), (description or "")[:200])
    if response.status != 200:
        raise UpnpDecodeError(f"HTTP 500 to {action} without a SOAP fault")
    if _local(payload.tag) != f"{action}Response":
        raise UpnpDecodeError(f"answer to {action} is {_local(payload.tag)[:60]!r}")
    return {_local(child.tag): (child.text or "").strip() for child in payload}
