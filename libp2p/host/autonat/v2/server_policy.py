"""The AutoNAT v2 server's decisions, without I/O: whether to serve, which address, what it
costs the requester.

A v2 server dials exactly one address per request, and may dial an IP other than the one the
request came from -- which would make it an amplifier against third parties if dialing were
free. The rules, in the order :class:`DialRequestPolicy` applies them:

1. :meth:`~DialRequestPolicy.admit`, before the request is read (go does the same, so a
   flood costs us no parsing): a relayed or limited connection is rejected (its observed
   address is the relay's, and the requester could hide behind it), then the rate limits --
   requests in progress per peer, requests per peer and over all peers in a sliding window.
   All give ``E_REQUEST_REJECTED``. An admitted request counts until
   :meth:`~DialRequestPolicy.finish`.
2. :meth:`~DialRequestPolicy.choose`: the first of the first ``max_addresses`` addresses
   the server is willing and able to dial -- one that decoded, names no other peer, is not
   relayed, is an IP address (no DNS: the amplification guard needs the IP), passes the
   :class:`~libp2p.network.address_policy.AddressPolicy` and is one our transport dials. None:
   ``E_DIAL_REFUSED``.
3. The amplification guard: when the chosen address's IP is not the observed IP of the
   connection, the requester pays first: a :class:`~.protocol.DialDataRequest` for a
   random amount in ``dial_data_range``, counted by a :class:`DialDataCounter`. Such requests have
   their own, lower rate limit (``E_REQUEST_REJECTED`` past it).

Time is passed in (``now``) and randomness comes from the ``rng`` given (tests seed it).
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from dataclasses import dataclass

from multiaddr import Multiaddr

from ....network.addrs import first_ip, is_circuit_addr, split_peer_id
from ....peer.id import PeerID
from .config import AutoNATv2ServerConfig
from .protocol import MAX_DIAL_DATA_CHUNK, DialRequest, MalformedAutoNATv2Message, ResponseStatus

__all__ = ["Dial", "DialDataCounter", "DialRequestPolicy", "Reject"]


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer ``status`` without dialing."""

    status: ResponseStatus
    #: A short, stable reason (the key of :attr:`AutoNATv2ServerStats.rejected`).
    reason: str


@dataclass(frozen=True, slots=True)
class Dial:
    """Dial ``addr`` (entry ``addr_idx`` of the request), after ``dial_data`` bytes if > 0."""

    addr_idx: int
    #: The address to dial (without a ``/p2p`` suffix).
    addr: Multiaddr
    #: Dial data to ask for first (0: the address's IP is the observed one).
    dial_data: int


class DialDataCounter:
    """Counts the dial data of one request against the amount asked.

    :meth:`feed` takes each ``DialDataResponse``'s ``data`` length and returns True once the
    amount is reached (the last chunk may overshoot, as the spec allows). A chunk larger than
    4096 bytes, or smaller than ``min_chunk`` without completing the amount, is a
    :class:`~.protocol.MalformedAutoNATv2Message` (the request is aborted).
    """

    def __init__(self, wanted: int, min_chunk: int = 100) -> None:
        self.wanted = wanted
        self.min_chunk = min_chunk
        #: Bytes counted so far.
        self.received = 0

    @property
    def done(self) -> bool:
        """True once at least the amount asked has arrived."""
        return self.received >= self.wanted

    def feed(self, size: int) -> bool:
        """Count one chunk of ``size`` bytes; True once the amount is reached."""
        if size > MAX_DIAL_DATA_CHUNK:
            raise MalformedAutoNATv2Message(
                f"dial data chunk of {size} bytes exceeds {MAX_DIAL_DATA_CHUNK}"
            )
        self.received += size
        if not self.done and size < self.min_chunk:
            raise MalformedAutoNATv2Message(
                f"dial data chunk of {size} bytes is below the minimum of {self.min_chunk}"
            )
        return self.done


class DialRequestPolicy:
    """Decides AutoNAT v2 requests; keeps the rate-limit windows and in-progress counts."""

    def __init__(
        self,
        config: AutoNATv2ServerConfig | None = None,
        *,
        can_dial: Callable[[Multiaddr], bool] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or AutoNATv2ServerConfig()
        self._can_dial = can_dial
        self._rng = rng or random.SystemRandom()
        # Admitted requests in the window, oldest first: all, per peer; dial-data ones.
        self._recent: collections.deque[tuple[float, PeerID]] = collections.deque()
        self._per_peer: dict[PeerID, int] = {}
        self._dial_data: collections.deque[float] = collections.deque()
        self._in_progress: dict[PeerID, int] = {}

    # -- rule 1 -------------------------------------------------------------------------

    def admit(self, peer: PeerID, *, relayed: bool, limited: bool, now: float) -> Reject | None:
        """Whether to read a request from ``peer`` at all (``None``: go on). An admitted
        request must be :meth:`finish`-ed."""
        if relayed or limited:
            return Reject(ResponseStatus.E_REQUEST_REJECTED, "relayed connection")
        self._expire(now)
        if self._in_progress.get(peer, 0) >= self.config.max_concurrent_per_peer:
            return Reject(ResponseStatus.E_REQUEST_REJECTED, "too many requests in progress")
        if self._per_peer.get(peer, 0) >= self.config.peer_rate:
            return Reject(ResponseStatus.E_REQUEST_REJECTED, "peer rate limit")
        if len(self._recent) >= self.config.global_rate:
            return Reject(ResponseStatus.E_REQUEST_REJECTED, "global rate limit")
        self._recent.append((now, peer))
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        self._in_progress[peer] = self._in_progress.get(peer, 0) + 1
        return None

    def finish(self, peer: PeerID) -> None:
        """An admitted request of ``peer`` has ended (however it ended)."""
        left = self._in_progress.get(peer, 0) - 1
        if left > 0:
            self._in_progress[peer] = left
        else:
            self._in_progress.pop(peer, None)

    # -- rules 2 and 3 ----------------------------------------------------------------------

    def choose(
        self, request: DialRequest, *, peer: PeerID, observed: Multiaddr | None, now: float
    ) -> Dial | Reject:
        """The address to dial for ``request`` (from ``peer``, seen at ``observed``), and the
        dial data it costs; or the refusal."""
        for idx, addr in enumerate(request.addrs[: self.config.max_addresses]):
            target = self.dialable(addr, peer)
            if target is None:
                continue
            observed_ip = first_ip(observed)
            if observed_ip is not None and observed_ip == first_ip(target):
                return Dial(idx, target, 0)
            self._expire(now)
            if len(self._dial_data) >= self.config.dial_data_rate:
                return Reject(ResponseStatus.E_REQUEST_REJECTED, "dial data rate limit")
            self._dial_data.append(now)
            low, high = self.config.dial_data_range
            return Dial(idx, target, self._rng.randint(low, high))
        return Reject(ResponseStatus.E_DIAL_REFUSED, "no dialable address")

    def dialable(self, addr: Multiaddr | None, peer: PeerID) -> Multiaddr | None:
        """``addr`` without its ``/p2p/<peer>`` suffix if we would dial it, else ``None``."""
        if addr is None or is_circuit_addr(addr):
            return None
        try:
            plain, named = split_peer_id(addr)
        except ValueError:  # pragma: no cover - a /p2p value multiaddr decoded but we cannot
            return None
        if named is not None and named != peer:
            return None
        if first_ip(plain) is None or not self.config.addresses.accepts(plain):
            return None
        if self._can_dial is not None and not self._can_dial(plain):
            return None
        return plain

    # -- windows ----------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        cutoff = now - self.config.rate_period
        while self._recent and self._recent[0][0] <= cutoff:
            _when, peer = self._recent.popleft()
            left = self._per_peer[peer] - 1
            if left:
                self._per_peer[peer] = left
            else:
                del self._per_peer[peer]
        while self._dial_data and self._dial_data[0] <= cutoff:
            self._dial_data.popleft()

    def recent_requests(self, peer: PeerID | None = None) -> int:
        """Requests admitted in the current window (from ``peer``, or all)."""
        return len(self._recent) if peer is None else self._per_peer.get(peer, 0)

    def in_progress(self, peer: PeerID) -> int:
        """Admitted requests of ``peer`` not yet finished."""
        return self._in_progress.get(peer, 0)
