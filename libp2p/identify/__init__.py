"""Identify (``/ipfs/id/1.0.0``) and identify-push (``/ipfs/id/push/1.0.0``).

Right after a connection is up, each peer opens an identify stream to the other; the responder
answers with one ``Identify`` message -- its public key, listen addresses, supported protocols,
agent and protocol version, an optional signed peer record, and the address it sees the
querier's end of the connection at -- and closes the stream. Later, when its addresses or
protocols change, a peer *pushes* the same message unasked on a push stream.

For NAT traversal the interesting field is ``observedAddr``: it is how a peer behind a NAT
learns its public mapping, which DCUtR and AutoNAT then use. :class:`ObservedAddrManager`
turns those observations into trustworthy address candidates.

Pieces:

* :mod:`.message` -- :class:`IdentifyInfo`, the protobuf codec with its size and validation
  policies, and the merge rules for pushes and multi-part responses;
* :mod:`.protocol` -- :func:`send_identify` / :func:`read_identify`, the stream level of both
  protocols, with go's read limits and rust's write limit;
* :mod:`.observed` -- :class:`ObservedAddrManager`, sans-I/O, time passed in;
* :mod:`.nat_mapping` -- :class:`NatMappingTracker`: whether our NAT's mapping depends on the
  destination (endpoint-independent, endpoint-dependent, unknown), from the same observations.

The host wires these to streams and connections: it verifies that ``public_key`` matches the
authenticated peer, verifies ``signed_peer_record`` if it wants to, and feeds observations in.
"""

from __future__ import annotations

from .message import (
    MAX_MESSAGE_SIZE,
    MAX_OWN_MESSAGE_SIZE,
    IdentifyInfo,
    decode_identify,
    encode_identify,
    merge,
    parse_multiaddr_bytes,
    protobuf_merge,
)
from .nat_mapping import (
    DEFAULT_MAPPING_MAX_OBSERVATIONS,
    DEFAULT_MAPPING_MIN_OBSERVERS,
    DEFAULT_MAPPING_WINDOW,
    MappingVerdict,
    NatMapping,
    NatMappingChanged,
    NatMappingStatus,
    NatMappingTracker,
)
from .observed import (
    DEFAULT_MAX_OBSERVATIONS,
    DEFAULT_MIN_OBSERVERS,
    DEFAULT_OBSERVATION_TTL,
    GO_ACTIVATION_THRESHOLD,
    HOLE_PUNCH_MIN_OBSERVERS,
    IPV6_OBSERVER_PREFIX,
    AddressCandidateAdded,
    AddressCandidateRemoved,
    IPAddress,
    ObservedAddrEvent,
    ObservedAddrManager,
    observer_group,
    public_ip_filter,
)
from .protocol import MAX_MESSAGES, PROTOCOL_ID, PUSH_PROTOCOL_ID, read_identify, send_identify

__all__ = [
    "DEFAULT_MAPPING_MAX_OBSERVATIONS",
    "DEFAULT_MAPPING_MIN_OBSERVERS",
    "DEFAULT_MAPPING_WINDOW",
    "DEFAULT_MAX_OBSERVATIONS",
    "DEFAULT_MIN_OBSERVERS",
    "DEFAULT_OBSERVATION_TTL",
    "GO_ACTIVATION_THRESHOLD",
    "HOLE_PUNCH_MIN_OBSERVERS",
    "IPV6_OBSERVER_PREFIX",
    "MAX_MESSAGES",
    "MAX_MESSAGE_SIZE",
    "MAX_OWN_MESSAGE_SIZE",
    "PROTOCOL_ID",
    "PUSH_PROTOCOL_ID",
    "AddressCandidateAdded",
    "AddressCandidateRemoved",
    "IPAddress",
    "IdentifyInfo",
    "MappingVerdict",
    "NatMapping",
    "NatMappingChanged",
    "NatMappingStatus",
    "NatMappingTracker",
    "ObservedAddrEvent",
    "ObservedAddrManager",
    "decode_identify",
    "encode_identify",
    "merge",
    "observer_group",
    "parse_multiaddr_bytes",
    "protobuf_merge",
    "public_ip_filter",
    "read_identify",
    "send_identify",
]
