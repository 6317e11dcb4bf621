"""AutoNAT v2 (``/libp2p/autonat/2/dial-request``, ``/libp2p/autonat/2/dial-back``): is this
one address of mine reachable?

v1 asks "can you dial me?" and trusts the answer. v2 tests one address at a time and makes
the server prove it:

1. The client opens ``dial-request`` to a server and sends a ``DialRequest``: its addresses in
   descending priority and a random 64-bit nonce.
2. The server picks the **first** address it is willing and able to dial, and only that one
   (none: ``E_DIAL_REFUSED``; rate limited: ``E_REQUEST_REJECTED``).
3. If that address's IP is not the one the request came from, the server could be made to
   attack a third party, so the client pays first: the server sends ``DialDataRequest`` (30k
   to 100k bytes), the client streams ``DialDataResponse`` chunks of at most 4096 bytes or
   resets the stream to decline.
4. The server dials the address on a **new connection** (ephemeral port; ours from a
   throwaway identity), opens ``dial-back`` and sends ``DialBack{nonce}``; the client answers
   ``DialBackResponse{OK}``.
5. The server answers ``DialResponse{OK, addrIdx, dialStatus}`` on the request stream.

The client believes "reachable" only when its own nonce arrived on a fresh inbound
connection consistent with the address (:mod:`.client_core` has the table), so a server
that answers ``OK`` without dialing is caught.

Pieces, each I/O-free core beside its trio driver:

* :mod:`.protocol` -- protocol IDs, status codes, typed messages and their codec;
* :mod:`.server_policy` -- :class:`DialRequestPolicy` (admission, rate limits, the address
  choice, the amplification guard) and :class:`DialDataCounter`; :mod:`.server` --
  :class:`AutoNATv2Server`, the stream handler and the dial-back;
* :mod:`.client_core` -- :func:`interpret` and the dial data decision; :mod:`.client` --
  :class:`AutoNATv2Client` (``host.autonat_v2``): :meth:`~AutoNATv2Client.servers` and
  :meth:`~AutoNATv2Client.check`, which returns an :class:`AddressCheck`.

The client is on by default (``HostConfig.autonat_v2_client``) and keeps no state: deciding
whom to ask and what the answers add up to belongs to the host's reachability logic. The
server is off by default; ``HostConfig(autonat_v2_server=AutoNATv2ServerConfig())`` turns
it on. Wire format: libp2p specs ``autonat/autonat-v2.md`` (r2).
"""

from __future__ import annotations

from .client import AutoNATv2Client
from .client_core import (
    AddressCheck,
    CheckOutcome,
    DialBackSeen,
    consistent_local_addr,
    dial_data_chunks,
    dial_data_decision,
    interpret,
)
from .config import AutoNATv2ClientConfig, AutoNATv2ServerConfig, AutoNATv2ServerStats
from .protocol import (
    DIAL_BACK_PROTOCOL,
    DIAL_REQUEST_PROTOCOL,
    MAX_DIAL_BACK_SIZE,
    MAX_DIAL_DATA_CHUNK,
    MAX_MESSAGE_SIZE,
    DialBack,
    DialBackResponse,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    DialStatus,
    MalformedAutoNATv2Message,
    ResponseStatus,
)
from .server import AutoNATv2Server
from .server_policy import Dial, DialDataCounter, DialRequestPolicy, Reject

__all__ = [
    "DIAL_BACK_PROTOCOL",
    "DIAL_REQUEST_PROTOCOL",
    "MAX_DIAL_BACK_SIZE",
    "MAX_DIAL_DATA_CHUNK",
    "MAX_MESSAGE_SIZE",
    "AddressCheck",
    "AutoNATv2Client",
    "AutoNATv2ClientConfig",
    "AutoNATv2Server",
    "AutoNATv2ServerConfig",
    "AutoNATv2ServerStats",
    "CheckOutcome",
    "Dial",
    "DialBack",
    "DialBackResponse",
    "DialBackSeen",
    "DialDataCounter",
    "DialDataRequest",
    "DialDataResponse",
    "DialRequest",
    "DialRequestPolicy",
    "DialResponse",
    "DialStatus",
    "MalformedAutoNATv2Message",
    "Reject",
    "ResponseStatus",
    "consistent_local_addr",
    "dial_data_chunks",
    "dial_data_decision",
    "interpret",
]
