"""Rate limits of ``RESERVE`` requests, per peer and per IP address: an I/O-free core.

Theory of operation. A reservation is refreshed by sending ``RESERVE`` again, a few times per
TTL. A client whose refresh timer is broken sends them back to back instead: py-libp2p 0.8.1
refreshes whenever its reservation ends within 30 s, so against a relay with a shorter TTL
its loop sent about 19,500 requests in 45 s to one of our relays, each signing a voucher.

Each key (a peer ID, an IP address) has a *token bucket*: it holds up to ``burst`` tokens,
refills at ``rate`` tokens per second, and a request spends one. A well-behaved client never
empties it (a refresh every few seconds against a refill of one a second); a flood drains it
at once and is then held to ``rate``. The two buckets are checked together: a request is
admitted only when both have a token, and spends from both. One flooding peer therefore
spends only its own tokens, never those of its neighbours behind the same NAT IP (its
refused requests do not reach the IP's bucket), while many peer IDs from one IP (one
attacker with many keys) are held to the IP's rate together.

A refused request gets, besides its refusal, the time at which the bucket that refused it
will admit a request again. The relay holds the refusal until then (at most
``refusal_hold`` seconds, and one held refusal per peer at a time): a client that retries as
soon as it has its answer -- as py-libp2p's loop does -- is slowed to the refill rate instead
of spinning. Buckets that have refilled completely are forgotten (a full bucket is the same
as a new one), so memory follows the peers and IPs active in the last ``burst / rate``
seconds.

Nothing here reads a clock: callers pass ``now`` (``trio.current_time()`` in the relay) and
the times returned are on the same clock.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["RateLimit", "RateLimiter", "RateRefusal", "ReserveRateLimiter"]

# A bucket refilled to 0.9999999999 tokens at the very time ready_at() named has its token:
# floating-point sums must not refuse a client that keeps exactly to the rate.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket's shape: ``burst`` requests at once, then ``rate`` per second."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be positive, not {self.rate!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst!r}")

    @property
    def refill_time(self) -> float:
        """Seconds an empty bucket takes to fill up again."""
        return self.burst / self.rate


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # when ``tokens`` was last brought up to date


class RateLimiter:
    """Token buckets keyed by any hashable value; see the module docstring."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        # Least recently touched first, so buckets that have refilled are found at the front.
        self._buckets: collections.OrderedDict[Hashable, _Bucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_full(self, now: float) -> None:
        full_after = self.limit.refill_time
        buckets = self._buckets
        while buckets:
            key, bucket = next(iter(buckets.items()))
            if now - bucket.at < full_after:
                return
            del buckets[key]

    def tokens(self, key: Hashable, now: float) -> float:
        """Tokens ``key`` has at ``now`` (``burst`` for a key not seen lately)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self.limit.burst)
        # max(): a ``now`` earlier than the last update (a caller's clocks disagree) refills
        # nothing rather than draining.
        elapsed = max(now - bucket.at, 0.0)
        return min(float(self.limit.burst), bucket.tokens + elapsed * self.limit.rate)

    def has_token(self, key: Hashable, now: float) -> bool:
        """Whether ``key`` may spend a token at ``now``."""
        return self.tokens(key, now) >= 1.0 - _EPSILON

    def ready_at(self, key: Hashable, now: float) -> float:
        """When ``key`` will have a token (``now`` if it has one already)."""
        if self.has_token(key, now):
            return now
        return now + (1.0 - self.tokens(key, now)) / self.limit.rate

    def spend(self, key: Hashable, now: float) -> None:
        """Take one token from ``key`` (the caller checked :meth:`tokens` first)."""
        tokens = max(self.tokens(key, now) - 1.0, 0.0)
        self._buckets.pop(key, None)
        self._buckets[key] = _Bucket(tokens, max(now, self._last_at()))
        self._forget_full(now)

    def _last_at(self) -> float:
        # Keep the order by time even if ``now`` went backwards, so forgetting stays correct.
        if not self._buckets:
            return float("-inf")
        return next(reversed(self._buckets.values())).at

    def take(self, key: Hashable, now: float) -> bool:
        """Spend a token of ``key`` if it has one; returns whether it had."""
        if not self.has_token(key, now):
            self._forget_full(now)
            return False
        self.spend(key, now)
        return True


@dataclass(frozen=True, slots=True)
class RateRefusal:
    """A ``RESERVE`` refused for its rate: which limit (a stats key) and when to answer.

    ``answer_at`` is when the refusing bucket admits again, capped at ``refusal_hold`` seconds
    from the request; ``None`` means answer at once (another refusal of this peer is held).
    """

    reason: str
    answer_at: float | None


class ReserveRateLimiter:
    """The per-peer and per-IP limits of ``RESERVE`` requests, and the held refusals.

    ``per_peer`` or ``per_ip`` ``None`` turns that limit off. Keys are any hashable values:
    the relay passes the peer ID and the IP address as text (``None`` when the connection
    has no IP, e.g. a unix socket: those share one bucket).
    """

    def __init__(
        self, per_peer: RateLimit | None, per_ip: RateLimit | None, refusal_hold: float
    ) -> None:
        self.peers: RateLimiter | None = None if per_peer is None else RateLimiter(per_peer)
        self.ips: RateLimiter | None = None if per_ip is None else RateLimiter(per_ip)
        self.refusal_hold = refusal_hold
        self._held: set[Hashable] = set()

    def check(self, peer: Hashable, ip: Hashable, now: float) -> RateRefusal | None:
        """Admit a ``RESERVE`` of ``peer`` from ``ip`` at ``now`` (``None``), or refuse it.

        An admitted request spends a token of each bucket; a refused one spends none.
        A refusal with an ``answer_at`` is *held*: call :meth:`answered` for ``peer`` once it
        was answered (or abandoned), before another refusal of that peer can be held.
        """
        refused: tuple[str, float] | None = None
        if self.peers is not None and not self.peers.has_token(peer, now):
            refused = ("reserve_rate_per_peer", self.peers.ready_at(peer, now))
        elif self.ips is not None and not self.ips.has_token(ip, now):
            refused = ("reserve_rate_per_ip", self.ips.ready_at(ip, now))
        if refused is None:
            if self.peers is not None:
                self.peers.spend(peer, now)
            if self.ips is not None:
                self.ips.spend(ip, now)
            return None
        reason, ready = refused
        if peer in self._held or self.refusal_hold <= 0:
            return RateRefusal(reason, None)
        self._held.add(peer)
        return RateRefusal(reason, min(ready, now + self.refusal_hold))

    def answered(self, peer: Hashable) -> None:
        """The held refusal of ``peer`` was answered (or its stream is gone)."""
        self._held.discard(peer)

    @property
    def held(self) -> int:
        """Refusals held back now."""
        return len(self._held)
