"""AutoNAT v1 (``/libp2p/autonat/1.0.0``): am I reachable from the outside?

A peer behind a NAT cannot tell from inside whether others can dial it. AutoNAT asks them:
the client opens a stream to a peer running the server and sends one ``DIAL`` message with
its address candidates; the server dials back -- on a new connection, from an ephemeral
port, only at the IP the request came from -- and answers ``OK`` with the address that
worked, or ``E_DIAL_ERROR``. Other answers (``E_DIAL_REFUSED``: rate limit, relayed
connection, nothing it may dial; ``E_BAD_REQUEST``; ``E_INTERNAL_ERROR``) say nothing about
the client. The client weighs answers from several servers over time into a
:class:`Reachability` with a confidence (:mod:`.reachability`), and the host turns
``PRIVATE`` into relay reservations (:class:`~libp2p.host.autorelay.AutoRelay`).

Pieces, each I/O-free core beside its trio driver:

* :mod:`.protocol` -- protocol ID, status codes, :class:`DialRequest` /
  :class:`DialResponse` and their codec;
* :mod:`.policy` -- :class:`DialBackPolicy`, the server's decision (address filtering and
  rate limits), and :mod:`.server` -- :class:`AutoNATServer`, its stream handler;
* :mod:`.reachability` -- :class:`ReachabilityTracker`, the client's status, confidence and
  schedule, and :mod:`.client` -- :class:`AutoNATClient`, which probes on that schedule;
* :mod:`.events` -- :class:`ReachabilityChanged` and :class:`ReachabilityProbed`.

Enable the server with ``HostConfig(autonat_server=AutoNATServerConfig())``; the client runs
by default (``host.reachability``). Wire format: libp2p specs ``autonat/autonat-v1.md``.
"""

from __future__ import annotations

from .client import AutoNATClient
from .config import AutoNATClientConfig, AutoNATServerConfig, AutoNATServerStats
from .events import Reachability, ReachabilityChanged, ReachabilityProbed
from .policy import DialBack, DialBackPolicy, Refuse
from .protocol import (
    MAX_MESSAGE_SIZE,
    PROTOCOL_ID,
    AutoNATError,
    DialRequest,
    DialResponse,
    MalformedAutoNATMessage,
    ResponseStatus,
)
from .reachability import ReachabilityTracker
from .server import AutoNATServer

__all__ = [
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_ID",
    "AutoNATClient",
    "AutoNATClientConfig",
    "AutoNATError",
    "AutoNATServer",
    "AutoNATServerConfig",
    "AutoNATServerStats",
    "DialBack",
    "DialBackPolicy",
    "DialRequest",
    "DialResponse",
    "MalformedAutoNATMessage",
    "Reachability",
    "ReachabilityChanged",
    "ReachabilityProbed",
    "ReachabilityTracker",
    "Refuse",
    "ResponseStatus",
]
