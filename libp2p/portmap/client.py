"""The protocols' trio I/O: one request and its answer, with timeouts and retransmissions.

Thin on purpose: the codecs (:mod:`.natpmp`, :mod:`.pcp`, :mod:`.ssdp`, :mod:`.upnp`) decode,
and :mod:`.mapper` decides. Each function raises :class:`GatewayError` with a
:class:`~.events.PortMappingFailure` when it gets no usable answer; a datagram that does not
decode is skipped (it may be another program's) and remembered for the error message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TypeVar

import trio

from ..exceptions import DecodeError, Libp2pError
from . import natpmp, ssdp, upnp
from .events import PortMappingFailure

__all__ = [
    "GatewayError",
    "NotTheAnswer",
    "gateway_deadline",
    "http_request",
    "parse_ip",
    "ssdp_search",
    "udp_exchange",
    "upnp_call",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class NotTheAnswer(Exception):
    """Raised by an ``accept`` function of :func:`udp_exchange` for a datagram that is a valid
    answer, but to another request."""


class GatewayError(Libp2pError):
    """A gateway gave no usable answer (or refused); ``failure`` says which."""

    def __init__(self, failure: PortMappingFailure, reason: str) -> None:
        super().__init__(reason)
        self.failure = failure
        self.reason = reason


async def udp_exchange(
    gateway: str,
    port: int,
    request: bytes,
    accept: Callable[[bytes], T],
    *,
    retransmit_initial: float,
    what: str,
    notes: list[str],
) -> tuple[T, str]:
    """Send ``request`` to ``gateway:port`` from a fresh socket, retransmitting with doubling
    intervals, until ``accept`` returns an answer; the caller bounds the time
    (:func:`gateway_deadline`). What went wrong meanwhile is appended to ``notes``.

    ``accept`` decodes a datagram; it raises :class:`NotTheAnswer` for a valid datagram that
    answers something else, :class:`~libp2p.exceptions.DecodeError` for garbage. Returns the answer
    and our own address (the socket's, as the gateway sees it on the LAN). The socket is
    connected, so only datagrams from ``gateway:port`` reach it.
    """
    family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            await sock.connect((gateway, port))
        except OSError as exc:
            raise GatewayError(
                PortMappingFailure.NO_ROUTE, f"{what}: cannot reach {gateway}: {exc}"
            ) from None
        local = sock.getsockname()[0]
        interval = retransmit_initial
        while True:
            try:
                await sock.send(request)
            except OSError as exc:
                notes.append(f"send failed: {exc.strerror or exc}")
            with trio.move_on_after(interval):
                while True:
                    try:
                        data = await sock.recv(natpmp.MAX_DATAGRAM + 1)
                    except OSError as exc:
                        # ICMP port unreachable comes back as ECONNREFUSED: nothing listens
                        # there (yet). Wait for the next retransmission.
                        notes.append(f"{exc.strerror or exc}")
                        await trio.sleep_forever()
                    try:
                        return accept(data), local
                    except NotTheAnswer:
                        continue
                    except DecodeError as exc:
                        notes.append(f"undecodable answer ({exc})")
            interval *= 2


@contextlib.contextmanager
def gateway_deadline(seconds: float, what: str, notes: list[str] | None = None) -> Iterator[None]:
    """Bound an exchange with a gateway: past ``seconds``, :class:`GatewayError`
    (``TIMEOUT``) naming ``what`` and the last note (an undecodable answer, ICMP...)."""
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        detail = f" (last: {notes[-1]})" if notes else ""
        raise GatewayError(
            PortMappingFailure.TIMEOUT, f"{what}: no answer within {seconds:g} s{detail}"
        ) from None


# --- SSDP and HTTP ---------------------------------------------------------------------------


async def ssdp_search(
    local_ip: str, *, mx: int, notes: list[str], gateway: str | None = None
) -> tuple[ssdp.SsdpResponse, str, float]:
    """Multicast M-SEARCH for the IGD from ``local_ip`` until a valid answer comes; return
    it, its source address and arrival time. With ``gateway``, answers from other devices
    are skipped. The caller bounds the time (:func:`gateway_deadline`)."""
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind((local_ip, 0))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local_ip))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        interval = 0.25
        while True:
            for target in ssdp.SEARCH_TARGETS:
                try:
                    await sock.sendto(
                        ssdp.encode_search(target, mx),
                        (ssdp.MULTICAST_ADDR, ssdp.MULTICAST_PORT),
                    )
                except OSError as exc:
                    raise GatewayError(
                        PortMappingFailure.NO_ROUTE, f"SSDP: cannot multicast: {exc}"
                    ) from None
            with trio.move_on_after(interval):
                while True:
                    data, source = await sock.recvfrom(ssdp.MAX_RESPONSE + 1)
                    if gateway is not None and source[0] != gateway:
                        continue
                    try:
                        answer = ssdp.decode_response(data, source[0])
                    except DecodeError as exc:
                        notes.append(str(exc))
                        continue
                    return answer, source[0], trio.current_time()
            interval = min(interval * 2, 1.0)


async def http_request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> upnp.HttpResponse:
    """One HTTP/1.1 exchange (``Connection: close``), its answer capped in size; the caller
    bounds the time (:func:`gateway_deadline`)."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    port = parsed.port or 80
    request = upnp.encode_http_request(method, url, headers, body)
    data = bytearray()
    try:
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(request)
            while not upnp.http_response_complete(bytes(data)):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > upnp.MAX_HTTP_RESPONSE:
                    raise GatewayError(
                        PortMappingFailure.BAD_ANSWER,
                        f"HTTP answer from {host}:{port} exceeds {upnp.MAX_HTTP_RESPONSE} bytes",
                    )
    except (OSError, trio.BrokenResourceError) as exc:
        raise GatewayError(
            PortMappingFailure.TIMEOUT, f"HTTP {method} {url}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        return upnp.parse_http_response(bytes(data))
    except upnp.UpnpDecodeError as exc:
        raise GatewayError(PortMappingFailure.BAD_ANSWER, f"HTTP {method} {url}: {exc}") from None


async def upnp_call(
    service: upnp.WanService, action: str, args: list[tuple[str, str]]
) -> dict[str, str] | upnp.UpnpFault:
    """One SOAP action: its output arguments, or the router's fault (time bounded by the
    caller)."""
    headers, body = upnp.encode_soap_request(service, action, args)
    response = await http_request("POST", service.control_url, headers=headers, body=body)
    try:
        return upnp.decode_soap_response(response, action)
    except upnp.UpnpDecodeError as exc:
        raise GatewayError(PortMappingFailure.BAD_ANSWER, f"UPnP {action}: {exc}") from None


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None
