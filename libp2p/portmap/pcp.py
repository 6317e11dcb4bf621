"""PCP, the Port Control Protocol (RFC 6887): the MAP and ANNOUNCE codec, without I/O.

A PCP client sends a UDP request to the server's port 5351 (the same port as NAT-PMP) and the
server answers from there. Every message starts with a 24-byte header; addresses are 16
bytes, IPv4 ones as IPv4-mapped IPv6 (``::ffff:a.b.c.d``).

* Request header: version 2, R=0 and the opcode, the requested lifetime, and the client's own
  IP address -- the server compares it with the datagram's source and answers
  ``ADDRESS_MISMATCH`` if a NAT between them rewrote it.
* Response header: version, R=1 and the opcode, the result code, the lifetime granted (for an
  error: how long the error holds), and the server's epoch (seconds since its state began; a
  jump backwards means mappings were lost, §8.5).
* MAP (opcode 1) adds a 12-byte nonce (a refresh or deletion must repeat it), the protocol
  (6 for TCP), the internal port, and the suggested external port and address; the answer
  carries the assigned ones. Lifetime 0 deletes the mapping.
* ANNOUNCE (opcode 0) has no body; sent with lifetime 0 it asks nothing and is answered
  with the server's epoch, which makes it a harmless probe for "is there a PCP server".

Options may follow the opcode body; we send none and skip the ones we receive (with bounds).
A NAT-PMP-only server answers a version-2 request with NAT-PMP's ``UNSUPPORTED_VERSION``
(version byte 0, RFC 6887 Appendix A); :func:`decode_response` reports that as
:class:`VersionMismatch`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ..exceptions import DecodeError
from .natpmp import ResultCode

__all__ = [
    "PORT",
    "VERSION",
    "AnnounceResponse",
    "MapResponse",
    "PcpDecodeError",
    "PcpResult",
    "VersionMismatch",
    "decode_response",
    "encode_announce_request",
    "encode_map_request",
]

PORT = 5351
VERSION = 2
#: Largest PCP message (RFC 6887 §7).
MAX_MESSAGE = 1100
HEADER_SIZE = 24
MAP_BODY_SIZE = 36
NONCE_SIZE = 12

OP_ANNOUNCE = 0
OP_MAP = 1
_PROTOCOLS = {"tcp": 6, "udp": 17}
_PROTOCOL_NAMES = {6: "tcp", 17: "udp", 0: "all"}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PcpResult(ResultCode):
    """Result codes (RFC 6887 §7.4)."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


class PcpDecodeError(DecodeError):
    """A datagram on the PCP port was not a PCP answer we can use."""


@dataclass(frozen=True, slots=True)
class VersionMismatch:
    """The server answered in another version: 0 means a NAT-PMP-only server."""

    version: int


@dataclass(frozen=True, slots=True)
class AnnounceResponse:
    """Answer to ANNOUNCE."""

    result: int
    lifetime: int
    epoch: int


@dataclass(frozen=True, slots=True)
class MapResponse:
    """Answer to MAP."""

    result: int
    lifetime: int
    epoch: int
    nonce: bytes
    protocol: str
    internal_port: int
    external_port: int
    #: The assigned external address (IPv4 unwrapped from its IPv4-mapped form).
    external_ip: IPAddress


def _addr16(ip: IPAddress) -> bytes:
    if isinstance(ip, ipaddress.IPv4Address):
        return b"\x00" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def _from16(data: bytes) -> IPAddress:
    ip6 = ipaddress.IPv6Address(data)
    mapped = ip6.ipv4_mapped
    return mapped if mapped is not None else ip6


def _header(opcode: int, lifetime: int, client_ip: IPAddress) -> bytes:
    if not 0 <= lifetime < 2**32:
        raise ValueError("lifetime must fit 32 bits")
    return struct.pack("!BBHI", VERSION, opcode, 0, lifetime) + _addr16(client_ip)


def encode_announce_request(client_ip: IPAddress) -> bytes:
    """ANNOUNCE with lifetime 0: a probe the server answers with its epoch."""
    return _header(OP_ANNOUNCE, 0, client_ip)


def encode_map_request(
    *,
    nonce: bytes,
    protocol: str,
    internal_port: int,
    client_ip: IPAddress,
    lifetime: int,
    suggested_external_port: int = 0,
    suggested_external_ip: IPAddress | None = None,
) -> bytes:
    """MAP request (60 bytes). ``lifetime=0`` deletes the mapping made with ``nonce``."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError("nonce must be 12 bytes")
    if protocol not in _PROTOCOLS:
        raise ValueError(f"protocol must be 'tcp' or 'udp', not {protocol!r}")
    if not 0 < internal_port < 65536 or not 0 <= suggested_external_port < 65536:
        raise ValueError("ports must be in 1..65535 (suggested external: 0..65535)")
    if suggested_external_ip is None:
        # "No preference": the all-zeros address of the client's family (§11.1).
        suggested_external_ip = (
            ipaddress.IPv4Address(0)
            if isinstance(client_ip, ipaddress.IPv4Address)
            else ipaddress.IPv6Address(0)
        )
    body = (
        nonce
        + struct.pack("!B3xHH", _PROTOCOLS[protocol], internal_port, suggested_external_port)
        + _addr16(suggested_external_ip)
    )
    return _header(OP_MAP, lifetime, client_ip) + body


def _check_options(data: bytes, offset: int) -> None:
    """Walk the options after the opcode body: each is code, reserved, 16-bit length, data
    padded to 4 bytes (§7.3); they must fit the message exactly."""
    while offset < len(data):
        if offset + 4 > len(data):
            raise PcpDecodeError("truncated option header")
        (length,) = struct.unpack_from("!H", data, offset + 2)
        padded = (length + 3) & ~3
        offset += 4 + padded
        if offset > len(data):
            raise PcpDecodeError("option longer than the message")


def decode_response(data: bytes) -> AnnounceResponse | MapResponse | VersionMismatch:
    """Decode one datagram from the server's port 5351.

    Raises :class:`PcpDecodeError` for anything that is not a PCP answer: too short or long,
    not a multiple of 4 bytes, a request (R=0), an opcode we never send, a truncated body or
    options.
    """
    if len(data) > MAX_MESSAGE:
        raise PcpDecodeError(f"message of {len(data)} bytes exceeds PCP's {MAX_MESSAGE}")
    if len(data) < 2:
        raise PcpDecodeError(f"message of {len(data)} bytes is too short")
    if data[0] != VERSION:
        # NAT-PMP's UNSUPPORTED_VERSION answer is version 0, opcode 128 + ours, result 1.
        return VersionMismatch(data[0])
    if len(data) < HEADER_SIZE:
        raise PcpDecodeError(f"message of {len(data)} bytes is shorter than the header")
    if len(data) % 4:
        raise PcpDecodeError(f"message length {len(data)} is not a multiple of 4")
    r_opcode, _reserved, result, lifetime, epoch = struct.unpack_from("!BBBII", data, 1)
    if not r_opcode & 0x80:
        raise PcpDecodeError("a request (R bit clear), not a response")
    opcode = r_opcode & 0x7F
    if opcode == OP_ANNOUNCE:
        _check_options(data, HEADER_SIZE)
        return AnnounceResponse(result, lifetime, epoch)
    if opcode != OP_MAP:
        raise PcpDecodeError(f"answer to opcode {opcode}, which we never send")
    end = HEADER_SIZE + MAP_BODY_SIZE
    if len(data) < end:
        if result != PcpResult.SUCCESS and len(data) == HEADER_SIZE:
            # Some servers answer errors with the header alone.
            return MapResponse(result, lifetime, epoch, b"", "all", 0, 0, ipaddress.IPv6Address(0))
        raise PcpDecodeError("MAP answer shorter than its body")
    nonce = data[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
    proto, internal, external = struct.unpack_from("!B3xHH", data, HEADER_SIZE + NONCE_SIZE)
    external_ip = _from16(data[HEADER_SIZE + 20 : end])
    _check_options(data, end)
    name = _PROTOCOL_NAMES.get(proto)
    if name is None:
        raise PcpDecodeError(f"MAP answer for protocol {proto}")
    if result == PcpResult.SUCCESS and lifetime and (internal == 0 or external == 0):
        raise PcpDecodeError("successful MAP answer with port 0")
    return MapResponse(result, lifetime, epoch, bytes(nonce), name, internal, external, external_ip)
