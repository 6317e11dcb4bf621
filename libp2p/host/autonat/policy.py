"""The AutoNAT server's decision, without I/O: whom to dial back, where, and how often.

A server must never become a tool for attacking third parties (RFC 3489 §12.1.1): a requester
could list a victim's address and have every AutoNAT server it knows dial it. So the only IP
a server dials is the one the request came from -- the *observed* address of the connection.
:meth:`DialBackPolicy.decide` turns a request into a :class:`DialBack` (the addresses to try)
or a :class:`Refuse` (the status to answer), checking in go's order:

1. the request came over a relayed or limited connection: ``E_DIAL_REFUSED`` (the observed
   address is the relay's, and the relay would carry the dial-back);
2. the request names another peer than the one that sent it: ``E_BAD_REQUEST``;
3. the observed address is not an IP address the
   :class:`~libp2p.network.address_policy.AddressPolicy` accepts (loopback unless allowed, a
   range the user denies): ``E_DIAL_REFUSED``;
4. the list to dial: the observed address first, then each requested address whose IP is the
   observed IP; an address with another IP is rewritten to the observed IP (go; or dropped
   with ``rewrite_foreign_ips=False``, as rust does). Relayed addresses, DNS names,
   addresses naming another peer and addresses the server cannot dial are skipped;
   duplicates are dropped; at most ``max_addresses``;
5. rate limits over a sliding window (``throttle_period``): per peer and global. Only
   requests that pass reach the limits and count against them.

Time is passed in (``now``); the driver uses ``trio.current_time()``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from multiaddr import Multiaddr

from ...network.addrs import first_ip
from ...network.addrs import is_circuit_addr as is_relayed
from ...peer.id import PeerID
from .config import AutoNATServerConfig
from .protocol import DialRequest, ResponseStatus

__all__ = ["DialBack", "DialBackPolicy", "Refuse"]


@dataclass(frozen=True, slots=True)
class DialBack:
    """Dial the requester back at these addresses (all with the observed IP)."""

    addrs: tuple[Multiaddr, ...]


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer ``status`` without dialing."""

    status: ResponseStatus
    #: A short, stable reason (also the key of :attr:`AutoNATServerStats.refused`).
    reason: str


class DialBackPolicy:
    """Decides AutoNAT requests; keeps the rate-limit windows."""

    def __init__(
        self,
        config: AutoNATServerConfig | None = None,
        *,
        can_dial: Callable[[Multiaddr], bool] | None = None,
    ) -> None:
        self.config = config or AutoNATServerConfig()
        self._can_dial = can_dial
        # Accepted dial-backs in the window, oldest first: all of them, and per peer.
        self._recent: collections.deque[tuple[float, PeerID]] = collections.deque()
        self._per_peer: dict[PeerID, collections.deque[float]] = {}

    def decide(
        self,
        request: DialRequest,
        *,
        remote_peer: PeerID,
        observed: Multiaddr | None,
        relayed: bool,
        limited: bool,
        now: float,
    ) -> DialBack | Refuse:
        """Decide one request that arrived from ``remote_peer`` at ``observed``."""
        if relayed or limited or observed is None or is_relayed(observed):
            return Refuse(ResponseStatus.E_DIAL_REFUSED, "relayed connection")
        if request.peer != remote_peer:
            return Refuse(ResponseStatus.E_BAD_REQUEST, "peer id mismatch")
        observed = _strip_p2p(observed, remote_peer)
        observed_ip = first_ip(observed) if observed is not None else None
        if (
            observed is None
            or observed_ip is None
            or not self.config.addresses.accepts(observed)
            or not self._dialable(observed)
        ):
            return Refuse(ResponseStatus.E_DIAL_REFUSED, "observed address blocked")
        addrs = self.addresses_to_dial(observed, request.addrs, remote_peer)
        if not addrs:  # pragma: no cover - the observed address is always first
            return Refuse(ResponseStatus.E_DIAL_REFUSED, "no dialable addresses")
        self._expire(now)
        per_peer = self._per_peer.get(remote_peer)
        if per_peer is not None and len(per_peer) >= self.config.throttle_per_peer:
            return Refuse(ResponseStatus.E_DIAL_REFUSED, "peer rate limit")
        limit = self.config.throttle_global
        if limit is not None and len(self._recent) >= limit:
            return Refuse(ResponseStatus.E_DIAL_REFUSED, "global rate limit")
        self._recent.append((now, remote_peer))
        self._per_peer.setdefault(remote_peer, collections.deque()).append(now)
        return DialBack(tuple(addrs))

    def addresses_to_dial(
        self, observed: Multiaddr, requested: tuple[Multiaddr, ...], peer: PeerID
    ) -> list[Multiaddr]:
        """The dial list for a request (rule 4 of the module docs); ``observed`` comes first."""
        observed_ip = first_ip(observed)
        ip_part = Multiaddr(f"/{_ip_proto(observed)}/{observed_ip}")
        out = [observed]
        for addr in requested:
            if len(out) >= self.config.max_addresses:
                break
            stripped = _strip_p2p(addr, peer)
            ip = first_ip(addr)
            if stripped is None or ip is None or is_relayed(stripped):
                continue
            if ip != observed_ip:
                if not self.config.rewrite_foreign_ips:
                    continue
                stripped = Multiaddr(f"{ip_part}{_after_ip(stripped)}")
            if not self._dialable(stripped) or stripped in out:
                continue
            out.append(stripped)
        return out

    def _dialable(self, addr: Multiaddr) -> bool:
        return self._can_dial is None or self._can_dial(addr)

    def _expire(self, now: float) -> None:
        cutoff = now - self.config.throttle_period
        while self._recent and self._recent[0][0] <= cutoff:
            _when, peer = self._recent.popleft()
            mine = self._per_peer[peer]
            mine.popleft()
            if not mine:
                del self._per_peer[peer]

    def recent_dials(self, peer: PeerID | None = None) -> int:
        """Dial-backs counted in the current window (for ``peer``, or all)."""
        if peer is None:
            return len(self._recent)
        return len(self._per_peer.get(peer, ()))


def _ip_proto(addr: Multiaddr) -> str:
    return str(next(iter(addr.protocols())).name)


def _after_ip(addr: Multiaddr) -> str:
    """The text of ``addr`` after its leading ``/ip4|ip6/<ip>`` component."""
    parts = str(addr).split("/")
    return "/" + "/".join(parts[3:]) if len(parts) > 3 else ""


def _strip_p2p(addr: Multiaddr, peer: PeerID) -> Multiaddr | None:
    """``addr`` without a trailing ``/p2p/<peer>``; ``None`` if it names another peer."""
    items = list(addr.items())
    if not items or items[-1][0].name != "p2p":
        return addr
    if str(items[-1][1]) != str(peer):
        return None
    return addr.decapsulate(Multiaddr(f"/p2p/{items[-1][1]}"))
