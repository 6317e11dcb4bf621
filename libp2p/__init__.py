"""A libp2p stack on trio, built for NAT traversal.

The names most applications need are re-exported here; each lives in the module named after
its protocol (``libp2p.security.noise``, ``libp2p.stream_muxer.yamux``, ``libp2p.ping`` ...).
"""

from __future__ import annotations

import logging

from .crypto import (
    KeyType,
    PrivateKey,
    PublicKey,
    generate_ed25519,
    generate_key_pair,
    generate_secp256k1,
    load_or_create_identity,
)
from .events import ConnectionClosed, ConnectionOpened, EventBus, PeerIdentified
from .exceptions import (
    ConnectionBrokenError,
    ConnectionClosedError,
    DecodeError,
    HandshakeError,
    Libp2pError,
    LimitedConnectionError,
    LocalUsageError,
    MessageTooLarge,
    PeerIDMismatch,
    ProtocolNotSupported,
    RemoteProtocolError,
    ResourceLimitExceeded,
    StreamReset,
    TransportError,
    UnexpectedEOF,
)
from .host import Host, HostConfig
from .host.autonat import (
    AutoNATClientConfig,
    AutoNATServerConfig,
    Reachability,
    ReachabilityChanged,
)
from .host.autonat.v2 import (
    AddressCheck,
    AutoNATv2ClientConfig,
    AutoNATv2ServerConfig,
    CheckOutcome,
)
from .host.reachability import (
    AddressReachability,
    AddressSource,
    Expectation,
    Filtering,
    NatType,
    ReachabilityConfig,
    ReachabilityReport,
    ReachabilityReportChanged,
)
from .identify import NatMapping, NatMappingChanged, NatMappingStatus
from .network.address_policy import AddressPolicy
from .network.connection import Connection, ConnectionLimit, Direction, NetStream, StreamHandler
from .network.swarm import Swarm
from .network.upgrader import UpgradedConnection, upgrade
from .peer import PeerID
from .peer.peerstore import PeerInfo, Peerstore
from .portmap import (
    PortMapping,
    PortMappingChange,
    PortMappingChanged,
    PortMappingConfig,
    PortMappingFailed,
    PortMappingFailure,
    PortMappingProtocol,
)

# A library logs; the application decides where logs go (without this, warnings would reach
# stderr through logging's last-resort handler in programs that configure no logging).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AddressCheck",
    "AddressPolicy",
    "AddressReachability",
    "AddressSource",
    "AutoNATClientConfig",
    "AutoNATServerConfig",
    "AutoNATv2ClientConfig",
    "AutoNATv2ServerConfig",
    "CheckOutcome",
    "Connection",
    "ConnectionClosed",
    "ConnectionBrokenError",
    "ConnectionClosedError",
    "ConnectionLimit",
    "ConnectionOpened",
    "DecodeError",
    "Direction",
    "EventBus",
    "Expectation",
    "Filtering",
    "HandshakeError",
    "Host",
    "HostConfig",
    "KeyType",
    "Libp2pError",
    "LimitedConnectionError",
    "LocalUsageError",
    "MessageTooLarge",
    "NatMapping",
    "NatMappingChanged",
    "NatMappingStatus",
    "NatType",
    "NetStream",
    "PeerID",
    "PeerIDMismatch",
    "PeerIdentified",
    "PeerInfo",
    "PortMapping",
    "PortMappingChange",
    "PortMappingChanged",
    "PortMappingConfig",
    "PortMappingFailed",
    "PortMappingFailure",
    "PortMappingProtocol",
    "Peerstore",
    "PrivateKey",
    "ProtocolNotSupported",
    "PublicKey",
    "Reachability",
    "ReachabilityChanged",
    "ReachabilityConfig",
    "ReachabilityReport",
    "ReachabilityReportChanged",
    "RemoteProtocolError",
    "ResourceLimitExceeded",
    "StreamHandler",
    "StreamReset",
    "Swarm",
    "TransportError",
    "UnexpectedEOF",
    "UpgradedConnection",
    "generate_ed25519",
    "generate_key_pair",
    "generate_secp256k1",
    "load_or_create_identity",
    "upgrade",
]
