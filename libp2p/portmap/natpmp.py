"""NAT-PMP (RFC 6886): the codec, without I/O.

The client sends UDP datagrams to the gateway's port 5351 and the gateway answers from there:

* *external address request* (opcode 0): 2 bytes; the answer carries the router's external
  IPv4 address;
* *mapping request* (opcode 1 for UDP, 2 for TCP): internal port, suggested external port,
  requested lifetime (0 deletes the mapping); the answer carries the external port the router
  picked and the lifetime it granted.

Every answer has the request's opcode + 128, a result code and the seconds since the router's
mapping table was (re)initialised (``epoch``): an epoch that goes backwards means the router
lost its mappings, and they must be made again (RFC 6886 §3.6).

A PCP server shares port 5351 and tells a NAT-PMP client it does not speak version 0 with a
PCP answer whose version byte is 2 (RFC 6887 §9); :func:`decode_response` reports that as
:class:`UnsupportedVersion` with the server's version.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

from ..exceptions import DecodeError

__all__ = [
    "PORT",
    "VERSION",
    "AddressResponse",
    "MapResponse",
    "NatPmpDecodeError",
    "NatPmpResult",
    "ResultCode",
    "UnsupportedVersion",
    "decode_response",
    "encode_address_request",
    "encode_map_request",
]

#: The gateway's NAT-PMP (and PCP) port (RFC 6886 §3.1).
PORT = 5351
#: NAT-PMP's version number.
VERSION = 0
#: Largest answer we read; NAT-PMP answers are 8, 12 or 16 bytes (PCP's at most 1100).
MAX_DATAGRAM = 1100

_OP_ADDRESS = 0
_OP_MAP_UDP = 1
_OP_MAP_TCP = 2


class ResultCode(enum.IntEnum):
    """A protocol's result codes (NAT-PMP's, PCP's), each able to name itself."""

    @classmethod
    def describe(cls, code: int) -> str:
        """``"3 NETWORK_FAILURE"``, or ``"<n> unknown"`` for a code the RFC does not define."""
        try:
            return f"{code} {cls(code).name}"
        except ValueError:
            return f"{code} unknown"


class NatPmpResult(ResultCode):
    """Result codes (RFC 6886 §3.5)."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    #: The gateway supports mapping but the user turned it off, or refuses this one.
    NOT_AUTHORIZED = 2
    #: The gateway has no external address (e.g. no DHCP lease, or only a private one).
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


class NatPmpDecodeError(DecodeError):
    """A datagram on the NAT-PMP port was not a NAT-PMP answer."""


@dataclass(frozen=True, slots=True)
class UnsupportedVersion:
    """The server does not speak NAT-PMP version 0; ``version`` is what it answered with
    (2: a PCP server)."""

    version: int
    epoch: int | None


@dataclass(frozen=True, slots=True)
class AddressResponse:
    """Answer to an external address request."""

    result: int
    epoch: int
    #: The router's external IPv4 address (``None`` unless ``result`` is 0).
    external_ip: ipaddress.IPv4Address | None


@dataclass(frozen=True, slots=True)
class MapResponse:
    """Answer to a mapping request."""

    protocol: str  # "tcp" or "udp"
    result: int
    epoch: int
    internal_port: int
    external_port: int
    #: Seconds the mapping lives (0 for a deletion, or in an error answer).
    lifetime: int


def encode_address_request() -> bytes:
    """The 2-byte external address request."""
    return bytes((VERSION, _OP_ADDRESS))


def encode_map_request(
    protocol: str, internal_port: int, suggested_external_port: int, lifetime: int
) -> bytes:
    """A mapping request; ``lifetime=0`` (with suggested port 0) deletes the mapping."""
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"protocol must be 'tcp' or 'udp', not {protocol!r}")
    if not 0 < internal_port < 65536 or not 0 <= suggested_external_port < 65536:
        raise ValueError("ports must be in 1..65535 (suggested external: 0..65535)")
    if not 0 <= lifetime < 2**32:
        raise ValueError("lifetime must fit 32 bits")
    opcode = _OP_MAP_TCP if protocol == "tcp" else _OP_MAP_UDP
    return struct.pack(
        "!BBHHHI", VERSION, opcode, 0, internal_port, suggested_external_port, lifetime
    )


def decode_response(data: bytes) -> AddressResponse | MapResponse | UnsupportedVersion:
    """Decode one datagram from the gateway's port 5351.

    Raises :class:`NatPmpDecodeError` for anything that is not a NAT-PMP answer (too short,
    a request, an unknown opcode, a success answer missing its fields).
    """
    if len(data) > MAX_DATAGRAM:
        raise NatPmpDecodeError(f"datagram of {len(data)} bytes is larger than any answer")
    if len(data) < 2:
        raise NatPmpDecodeError(f"datagram of {len(data)} bytes is too short")
    version, opcode = data[0], data[1]
    if version != VERSION:
        # PCP's header: the epoch is at bytes 8..12 of a response (RFC 6887 §7.2).
        epoch = struct.unpack_from("!I", data, 8)[0] if len(data) >= 12 else None
        return UnsupportedVersion(version, epoch)
    if opcode < 128:
        raise NatPmpDecodeError(f"opcode {opcode} is a request, not an answer")
    if len(data) < 8:
        raise NatPmpDecodeError(f"answer of {len(data)} bytes is shorter than its header")
    result, epoch = struct.unpack_from("!HI", data, 2)
    op = opcode - 128
    if op == _OP_ADDRESS:
        if result != NatPmpResult.SUCCESS:
            return AddressResponse(result, epoch, None)
        if len(data) < 12:
            raise NatPmpDecodeError("external address answer is shorter than 12 bytes")
        return AddressResponse(result, epoch, ipaddress.IPv4Address(data[8:12]))
    if op in (_OP_MAP_TCP, _OP_MAP_UDP):
        protocol = "tcp" if op == _OP_MAP_TCP else "udp"
        if len(data) < 16:
            if result != NatPmpResult.SUCCESS:
                return MapResponse(protocol, result, epoch, 0, 0, 0)
            raise NatPmpDecodeError("mapping answer is shorter than 16 bytes")
        internal, external, lifetime = struct.unpack_from("!HHI", data, 8)
        if result == NatPmpResult.SUCCESS and (internal == 0 or (external == 0 and lifetime)):
            raise NatPmpDecodeError("successful mapping answer with port 0")
        return MapResponse(protocol, result, epoch, internal, external, lifetime)
    if result != NatPmpResult.SUCCESS:
        # e.g. UNSUPPORTED_OPCODE for an opcode we never send: still an answer, an odd one.
        raise NatPmpDecodeError(f"answer to opcode {op}, which we never send (result {result})")
    raise NatPmpDecodeError(f"unknown answer opcode {opcode}")
