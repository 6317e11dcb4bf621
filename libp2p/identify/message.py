"""The identify message: a typed view of the ``Identify`` protobuf, its codec and its merge rules.

Protobuf objects stay inside this module; the rest of the stack sees :class:`IdentifyInfo`.

Presence matters: every field of the proto2 message is optional or repeated, and an identify
*push* may carry only the fields that changed. ``None`` (or an empty tuple for repeated fields)
therefore means "not in the message", which :func:`merge` reads as "unchanged".

Decoding policy (what a peer's bytes can do to us):

* malformed protobuf, or a ``publicKey`` that is not a valid serialized libp2p key, raises
  :class:`~libp2p.exceptions.DecodeError` -- the message as a whole is unusable;
* an invalid ``listenAddrs`` entry is skipped and an invalid ``observedAddr`` reads as absent,
  as go- and rust-libp2p do: one bad address must not cost us the peer's key and protocols.
  ``strict=True`` turns both into :class:`DecodeError` instead (for tests and validators);
* strings that are not valid UTF-8 are decoded with replacement characters (go accepts them
  too; such a protocol ID simply never matches anything we speak);
* ``signedPeerRecord`` stays opaque bytes. Verifying it is the host's job, and a record that
  does not verify must not fail identify (rust signs with a legacy domain, see the digest §7).

Encoding policy: rust-libp2p reads exactly one message of at most 4096 bytes, so
:func:`encode_identify` never produces more than :data:`MAX_OWN_MESSAGE_SIZE` bytes (see its
docstring for what it drops to get there).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

from multiaddr import Multiaddr

from ..crypto.keys import PublicKey, deserialize_public_key
from ..exceptions import DecodeError, LocalUsageError
from ..peer.record import decode_multiaddr

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_OWN_MESSAGE_SIZE",
    "IdentifyInfo",
    "decode_identify",
    "encode_identify",
    "merge",
    "parse_multiaddr_bytes",
    "protobuf_merge",
]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Largest single identify message we read, in bytes (go ``signedIDSize``, js: 8 KiB).
MAX_MESSAGE_SIZE: Final = 8192
#: Largest identify message we write, in bytes (go ``maxOwnIdentifyMsgSize``): rust-libp2p
#: rejects anything bigger, and it reads only one message, so we never split.
MAX_OWN_MESSAGE_SIZE: Final = 4096


@dataclass(frozen=True, slots=True)
class IdentifyInfo:
    """What a peer told us about itself (or what we tell a peer), decoded.

    ``None`` / ``()`` mean the field was absent from the message.
    """

    #: Protocol family and version, e.g. ``"ipfs/0.1.0"``; informational only.
    protocol_version: str | None = None
    #: ``"name/version"`` of the implementation.
    agent_version: str | None = None
    #: The sender's identity key. Always send it: rust-libp2p rejects identify without one.
    public_key: PublicKey | None = None
    #: Addresses the sender listens on, in the sender's order of preference.
    listen_addrs: tuple[Multiaddr, ...] = ()
    #: The receiver's end of the connection as the sender sees it (NAT-mapped address).
    observed_addr: Multiaddr | None = None
    #: Protocols the sender accepts inbound streams for.
    protocols: tuple[str, ...] = ()
    #: A serialized signed envelope holding the sender's peer record; not verified here.
    signed_peer_record: bytes | None = None


# --------------------------------------------------------------------------------------------
# Multiaddrs from the wire
# --------------------------------------------------------------------------------------------


def parse_multiaddr_bytes(data: bytes) -> Multiaddr:
    """Parse a binary multiaddr strictly; :class:`DecodeError` if it is not canonical and valid.

    The rules are those of :func:`libp2p.peer.record.decode_multiaddr` (py-multiaddr 0.2
    accepts truncated values, so only bytes that decode and re-encode exactly are taken).
    """
    raw = bytes(data)
    addr = decode_multiaddr(raw)
    if addr is None:
        raise DecodeError(f"invalid binary multiaddr {raw.hex() or '(empty)'}")
    return addr


# --------------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------------


def _text(value: str | bytes) -> str:
    # upb hands back proto2 ``string`` fields that are not valid UTF-8 as bytes.
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _field_size(payload_len: int) -> int:
    """Bytes one length-delimited field with a one-byte tag takes: tag, varint length, payload."""
    size = 1 + payload_len
    n = payload_len
    while True:
        size += 1
        n >>= 7
        if not n:
            return size


def encode_identify(info: IdentifyInfo) -> bytes:
    """Encode ``info`` as one ``Identify`` protobuf of at most :data:`MAX_OWN_MESSAGE_SIZE` bytes.

    When the full message would be larger, fields are dropped in this order until it fits:

    1. ``signed_peer_record`` (peers fall back to ``listenAddrs``, which rust does anyway);
    2. ``listen_addrs`` from the end: the longest *prefix* that fits is kept, so list the
       addresses in order of preference.

    Each step is logged at WARNING. If the message still does not fit without any listen
    address (an enormous protocol list or agent string), :class:`LocalUsageError` is raised:
    silently dropping protocols would make peers believe we do not speak them.
    """
    from .pb import identify_pb2  # protobuf loads on first use, not with the package

    msg = identify_pb2.Identify()
    if info.protocol_version is not None:
        msg.protocolVersion = info.protocol_version
    if info.agent_version is not None:
        msg.agentVersion = info.agent_version
    if info.public_key is not None:
        msg.publicKey = info.public_key.serialize()
    if info.observed_addr is not None:
        msg.observedAddr = info.observed_addr.to_bytes()
    msg.protocols.extend(info.protocols)
    if info.signed_peer_record is not None:
        msg.signedPeerRecord = info.signed_peer_record
    addrs = [a.to_bytes() for a in info.listen_addrs]
    msg.listenAddrs.extend(addrs)
    if msg.ByteSize() <= MAX_OWN_MESSAGE_SIZE:
        return msg.SerializeToString(deterministic=True)

    if msg.HasField("signedPeerRecord"):
        msg.ClearField("signedPeerRecord")
        _log.warning(
            "identify message exceeds %d bytes: sending it without the signed peer record",
            MAX_OWN_MESSAGE_SIZE,
        )
        if msg.ByteSize() <= MAX_OWN_MESSAGE_SIZE:
            return msg.SerializeToString(deterministic=True)

    msg.ClearField("listenAddrs")
    budget = MAX_OWN_MESSAGE_SIZE - msg.ByteSize()
    if budget < 0:
        raise LocalUsageError(
            f"identify message is {msg.ByteSize()} bytes without any listen address, over the "
            f"{MAX_OWN_MESSAGE_SIZE}-byte limit: advertise fewer protocols or a shorter "
            "agent/protocol version"
        )
    kept = 0
    for addr in addrs:
        cost = _field_size(len(addr))
        if cost > budget:
            break
        budget -= cost
        kept += 1
    msg.listenAddrs.extend(addrs[:kept])
    _log.warning(
        "identify message exceeds %d bytes: advertising %d of %d listen addresses",
        MAX_OWN_MESSAGE_SIZE,
        kept,
        len(addrs),
    )
    return msg.SerializeToString(deterministic=True)


def _parse_addrs(values: Iterable[bytes], what: str, strict: bool) -> tuple[Multiaddr, ...]:
    out: list[Multiaddr] = []
    for value in values:
        try:
            out.append(parse_multiaddr_bytes(value))
        except DecodeError as exc:
            if strict:
                raise DecodeError(f"identify {what}: {exc}") from exc
            _log.debug("skipping invalid identify %s: %s", what, exc)
    return tuple(out)


def decode_identify(data: bytes, *, strict: bool = False) -> IdentifyInfo:
    """Decode one ``Identify`` protobuf (one message of a response, or a push).

    Raises :class:`DecodeError` for malformed protobuf or an undecodable public key. Invalid
    multiaddrs are dropped (see the module docstring) unless ``strict`` is true, in which case
    they raise :class:`DecodeError` too.
    """
    from google.protobuf import message as _pb_message

    from .pb import identify_pb2

    msg = identify_pb2.Identify()
    try:
        msg.ParseFromString(bytes(data))
    except _pb_message.Error as exc:
        raise DecodeError(f"malformed identify message: {exc}") from exc

    public_key: PublicKey | None = None
    if msg.HasField("publicKey"):
        try:
            public_key = deserialize_public_key(msg.publicKey)
        except DecodeError as exc:
            raise DecodeError(f"identify message carries an invalid public key: {exc}") from exc

    observed: Multiaddr | None = None
    if msg.HasField("observedAddr"):
        parsed = _parse_addrs([msg.observedAddr], "observedAddr", strict)
        observed = parsed[0] if parsed else None

    return IdentifyInfo(
        protocol_version=_text(msg.protocolVersion) if msg.HasField("protocolVersion") else None,
        agent_version=_text(msg.agentVersion) if msg.HasField("agentVersion") else None,
        public_key=public_key,
        listen_addrs=_parse_addrs(msg.listenAddrs, "listenAddrs", strict),
        observed_addr=observed,
        protocols=tuple(_text(p) for p in msg.protocols),
        signed_peer_record=(
            bytes(msg.signedPeerRecord) if msg.HasField("signedPeerRecord") else None
        ),
    )


# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------


def merge(old: IdentifyInfo, new: IdentifyInfo) -> IdentifyInfo:
    """Apply ``new`` (a push, or a later identify) on top of ``old``: update semantics.

    Every field present in ``new`` replaces the one in ``old``; absent fields (``None``, or an
    empty tuple for ``listen_addrs`` and ``protocols``) keep the old value. Repeated fields are
    replaced as a whole, never appended: a push that lists addresses lists *all* of them.

    The parts of one multi-message identify response are combined differently, with protobuf
    merge rules (repeated fields concatenate), as go and js do: see :func:`protobuf_merge`.
    """
    return IdentifyInfo(
        protocol_version=_pick(new.protocol_version, old.protocol_version),
        agent_version=_pick(new.agent_version, old.agent_version),
        public_key=_pick(new.public_key, old.public_key),
        listen_addrs=new.listen_addrs or old.listen_addrs,
        observed_addr=_pick(new.observed_addr, old.observed_addr),
        protocols=new.protocols or old.protocols,
        signed_peer_record=_pick(new.signed_peer_record, old.signed_peer_record),
    )


def protobuf_merge(first: IdentifyInfo, second: IdentifyInfo) -> IdentifyInfo:
    """Combine two messages of one response like protobuf ``Merge``: the result equals decoding
    the concatenation of both messages. Present scalar fields of ``second`` win; repeated
    fields are concatenated."""
    return IdentifyInfo(
        protocol_version=_pick(second.protocol_version, first.protocol_version),
        agent_version=_pick(second.agent_version, first.agent_version),
        public_key=_pick(second.public_key, first.public_key),
        listen_addrs=first.listen_addrs + second.listen_addrs,
        observed_addr=_pick(second.observed_addr, first.observed_addr),
        protocols=first.protocols + second.protocols,
        signed_peer_record=_pick(second.signed_peer_record, first.signed_peer_record),
    )


def _pick(preferred: _T | None, fallback: _T | None) -> _T | None:
    return fallback if preferred is None else preferred
