"""Multiformats unsigned varints (LEB128) and length-prefixed framing.

The multiformats spec requires minimal encodings and at most 9 bytes (63 bits); a decoder
must reject anything else, so both are enforced here and reported as :class:`DecodeError`.
"""

from __future__ import annotations

from .exceptions import DecodeError

__all__ = [
    "MAX_VARINT_BYTES",
    "decode_uvarint",
    "encode_lp",
    "encode_uvarint",
]

#: Practical maximum length of an unsigned varint (63 bits of payload).
MAX_VARINT_BYTES = 9
_MAX_VALUE = (1 << 63) - 1

# Small values dominate (lengths of short messages); cache their encodings.
_SMALL = [bytes([i]) for i in range(128)]


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer below 2**63 as a minimal unsigned varint."""
    if value < 128:
        if value < 0:
            raise ValueError("uvarint cannot encode a negative number")
        return _SMALL[value]
    if value > _MAX_VALUE:
        raise ValueError("uvarint cannot encode values of 2**63 or more")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int] | None:
    """Decode a varint at ``data[offset:]``.

    Returns ``(value, new_offset)``, or ``None`` when the buffer ends before the varint does
    (read more and call again). Raises :class:`DecodeError` for a non-minimal encoding or one
    longer than :data:`MAX_VARINT_BYTES`.
    """
    value = 0
    shift = 0
    end = len(data)
    i = offset
    while True:
        if i >= end:
            if i - offset >= MAX_VARINT_BYTES:
                raise DecodeError("varint longer than 9 bytes")
            return None
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if b == 0 and i - offset > 1:
                raise DecodeError("non-minimal varint encoding")
            return value, i
        shift += 7
        if i - offset >= MAX_VARINT_BYTES:
            raise DecodeError("varint longer than 9 bytes")


def encode_lp(payload: bytes | bytearray | memoryview) -> bytes:
    """Prefix ``payload`` with its uvarint length (the "LP" framing of most libp2p protocols)."""
    return encode_uvarint(len(payload)) + bytes(payload)
