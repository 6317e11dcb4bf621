"""Yamux frame layout: the 12-byte header, frame types, flags and GoAway codes.

Every yamux frame starts with the same header (hashicorp/yamux ``spec.md``, "Framing"),
all fields big-endian::

    offset  size  field
         0     1  version   (always 0)
         1     1  type      (0 Data, 1 WindowUpdate, 2 Ping, 3 GoAway)
         2     2  flags     (bitmask: 0x1 SYN, 0x2 ACK, 0x4 FIN, 0x8 RST)
         4     4  stream ID (0 = the session itself; Ping and GoAway use 0)
         8     4  length    (meaning depends on the type, see below)

Only Data frames carry a body: ``length`` payload bytes follow the header. For the other
types ``length`` is a value, not a size: the window *delta* of a WindowUpdate (or, when the
RST flag is set, go-yamux >= v5's stream error code), the opaque value of a Ping that the
peer echoes back, and the error code of a GoAway.

The hot paths in :mod:`.connection` use :data:`HEADER` directly (``unpack_from`` /
``pack_into``); :func:`encode_header` / :func:`decode_header` and :class:`FrameHeader` are
the readable, validated API for everything else (tests, tools, logging).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from .errors import YamuxFrameError

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "MAX_FRAME_PAYLOAD_LIMIT",
    "MAX_UINT32",
    "PROTOCOL_VERSION",
    "Flag",
    "FrameHeader",
    "FrameType",
    "GoAwayCode",
    "decode_header",
    "encode_header",
]

#: Version, type, flags, stream ID, length -- network byte order.
HEADER = struct.Struct(">BBHII")
#: Size of :data:`HEADER` in bytes.
HEADER_SIZE = HEADER.size
#: The only yamux version that exists (spec: "always set to 0").
PROTOCOL_VERSION = 0
#: Every stream's receive window starts here, on both sides (spec "Flow Control": 256 KiB).
#: A side may announce a larger window later with a WindowUpdate, never a smaller one.
INITIAL_WINDOW = 256 * 1024
#: rust-yamux rejects any frame body larger than 1 MiB (``FrameTooLarge``); we never send one.
MAX_FRAME_PAYLOAD_LIMIT = 1024 * 1024
#: Largest value of the 32-bit ``stream ID`` and ``length`` fields.
MAX_UINT32 = 0xFFFF_FFFF


class FrameType(enum.IntEnum):
    """The ``type`` byte of the header."""

    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(enum.IntFlag):
    """Bits of the ``flags`` field. SYN/ACK double as request/reply markers on Ping."""

    NONE = 0
    SYN = 0x1
    ACK = 0x2
    FIN = 0x4
    RST = 0x8


class GoAwayCode(enum.IntEnum):
    """Error codes carried in a GoAway's ``length`` (spec "Go Away")."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """A decoded, validated header. ``length`` is interpreted according to ``type``."""

    type: FrameType
    flags: Flag
    stream_id: int
    length: int

    def encode(self) -> bytes:
        return encode_header(self.type, self.flags, self.stream_id, self.length)


def encode_header(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    """Return the 12 header bytes. Raises :class:`ValueError` for out-of-range fields."""
    if not 0 <= stream_id <= MAX_UINT32 or not 0 <= length <= MAX_UINT32:
        raise ValueError("stream ID and length must fit in 32 bits")
    if not 0 <= flags <= 0xFFFF:
        raise ValueError("flags must fit in 16 bits")
    return HEADER.pack(PROTOCOL_VERSION, frame_type, flags, stream_id, length)


def decode_header(data: bytes | bytearray | memoryview, offset: int = 0) -> FrameHeader:
    """Decode the header at ``data[offset:offset + 12]``.

    Raises :class:`YamuxFrameError` (a :class:`~libp2p.exceptions.RemoteProtocolError`) for
    a short buffer, an unknown version or an unknown type. Unknown flag bits are kept: the
    spec reserves them and implementations ignore them.
    """
    if len(data) - offset < HEADER_SIZE:
        raise YamuxFrameError(f"a yamux header needs {HEADER_SIZE} bytes")
    version, frame_type, flags, stream_id, length = HEADER.unpack_from(data, offset)
    if version != PROTOCOL_VERSION:
        raise YamuxFrameError(f"unsupported yamux version {version}")
    if frame_type > FrameType.GO_AWAY:
        raise YamuxFrameError(f"unknown yamux frame type {frame_type}")
    return FrameHeader(FrameType(frame_type), Flag(flags), stream_id, length)
