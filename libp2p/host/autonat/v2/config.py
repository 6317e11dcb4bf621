"""Settings of the AutoNAT v2 server and client, with go-libp2p's defaults (and where rust and
js differ)."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from multiaddr import Multiaddr

from ....network.address_policy import AddressPolicy

__all__ = ["AutoNATv2ClientConfig", "AutoNATv2ServerConfig", "AutoNATv2ServerStats"]


@dataclass(frozen=True, slots=True)
class AutoNATv2ServerConfig:
    """What an AutoNAT v2 server does for the peers that ask it (defaults: go-libp2p's)."""

    #: Bound on a whole request, dial data and dial-back included (go: 15 s; js: 30 s).
    stream_timeout: float = 15.0
    #: Time allowed to connect and upgrade the dial-back connection (go: 10 s).
    dial_timeout: float = 10.0
    #: Time allowed for the nonce exchange on the dial-back stream (go: 5 s).
    dial_back_stream_timeout: float = 5.0
    #: Requests served per ``rate_period`` over all peers (go: 60 per minute).
    global_rate: int = 60
    #: Requests served per ``rate_period`` per peer (go: 12 per minute).
    peer_rate: int = 12
    #: Requests that need dial data, per ``rate_period`` over all peers (go: 12 per minute).
    dial_data_rate: int = 12
    #: Requests one peer may have in progress at once (go: 2).
    max_concurrent_per_peer: int = 2
    #: The rate-limit window in seconds (go: 1 min).
    rate_period: float = 60.0
    #: Addresses of a request considered; the rest are ignored (go: 50).
    max_addresses: int = 50
    #: Dial data asked when the chosen address's IP is not the requester's: a number drawn
    #: uniformly from this range (the spec suggests 30k-100k; go and rust draw from it).
    dial_data_range: tuple[int, int] = (30_000, 100_000)
    #: Smallest dial data chunk accepted, except the one that completes the amount (go: 100):
    #: a peer must not make us parse thousands of tiny messages.
    min_dial_data_chunk: int = 100
    #: After the dial data, wait a random time up to this before dialing (go: 3 s), so that
    #: many servers asked at once do not hit a victim together.
    dial_data_wait: float = 3.0
    #: Which IPs the server dials (``AddressPolicy.local_testing()`` adds loopback).
    addresses: AddressPolicy = field(default_factory=AddressPolicy)


@dataclass(frozen=True, slots=True)
class AutoNATv2ClientConfig:
    """How a host asks AutoNAT v2 servers about one of its addresses."""

    #: Bound on one check, from opening the stream to the response (go: 15 s; js: 30 s).
    timeout: float = 15.0
    #: After a response ``OK``/``OK``, how long to wait for the dial-back to be seen if it
    #: has not been yet (go: 5 s). The server answers only after its dial-back, so the nonce
    #: normally arrived first.
    dial_back_grace: float = 5.0
    #: Most dial data we agree to send for one check (go: 100 000, the spec's upper
    #: suggestion; js: 200 KiB); a server asking more gets the stream reset. 0: never pay.
    max_dial_data: int = 100_000
    #: Size of the dial data chunks we send (go: 4000; js: 4096; at most 4096).
    dial_data_chunk: int = 4096


@dataclass(slots=True)
class AutoNATv2ServerStats:
    """Counters of an AutoNAT v2 server (``host.autonat_v2_server.stats``).

    ``answered`` counts responses by status name (``"OK"``, ``"E_DIAL_REFUSED"``...);
    ``dial_status`` counts, for ``OK`` answers, the dial outcome (``"OK"`` means the nonce
    was delivered on the dial-back and the client acknowledged it); ``rejected`` counts
    requests refused or rejected, by reason; ``aborted`` counts requests ended without an
    answer (malformed, stalled, reset, dial data declined or invalid), by reason;
    ``dial_data_bytes`` is the dial data received in total; ``dialed`` lists the latest
    dial-backs as (address, dial status name), most recent last (at most 64).
    """

    requests: int = 0
    answered: collections.Counter[str] = field(default_factory=collections.Counter)
    dial_status: collections.Counter[str] = field(default_factory=collections.Counter)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    aborted: collections.Counter[str] = field(default_factory=collections.Counter)
    dial_data_bytes: int = 0
    dialed: collections.deque[tuple[Multiaddr, str]] = field(
        default_factory=lambda: collections.deque(maxlen=64)
    )
