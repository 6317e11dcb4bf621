"""Rate limits of RESERVE requests (``ratelimit.py`` and the reservation book), with exact
clocks: token buckets per peer and per IP, held refusals, and forgetting refilled buckets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libp2p.crypto.keys import Ed25519PrivateKey
from libp2p.peer.id import PeerID
from libp2p.relay.circuit_v2 import RelayConfig, Status
from libp2p.relay.circuit_v2.book import BookRefusal, ReservationBook
from libp2p.relay.circuit_v2.ratelimit import (
    RateLimit,
    RateLimiter,
    RateRefusal,
    ReserveRateLimiter,
)

A, B, C = (
    PeerID.from_public_key(Ed25519PrivateKey.from_seed(bytes([i]) * 32).public_key)
    for i in range(1, 4)
)
IP1, IP2 = "198.51.100.1", "198.51.100.2"


# -- one bucket ---------------------------------------------------------------------------------


def test_a_bucket_admits_its_burst_then_its_rate() -> None:
    limiter = RateLimiter(RateLimit(rate=2.0, burst=3))
    assert [limiter.take("k", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.ready_at("k", 0.0) == 0.5
    assert not limiter.take("k", 0.499)
    assert limiter.take("k", 0.5)
    assert not limiter.take("k", 0.5)
    # Refilled to the burst, never beyond it.
    assert limiter.tokens("k", 100.0) == 3.0
    assert limiter.ready_at("k", 100.0) == 100.0


def test_refilled_buckets_are_forgotten() -> None:
    limiter = RateLimiter(RateLimit(rate=1.0, burst=2))  # refills in 2 s
    limiter.take("a", 0.0)
    limiter.take("b", 1.0)
    assert len(limiter) == 2
    limiter.take("c", 2.0)  # "a" is full again at 2.0: gone
    assert len(limiter) == 2
    assert limiter.tokens("a", 2.0) == 2.0
    limiter.take("c", 10.0)  # and "b" too; "c" just spent
    assert len(limiter) == 1


def test_a_clock_that_goes_back_refills_nothing() -> None:
    limiter = RateLimiter(RateLimit(rate=1.0, burst=1))
    assert limiter.take("k", 5.0)
    assert not limiter.take("k", 4.0)
    assert limiter.tokens("k", 4.0) == 0.0
    assert limiter.take("k", 6.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_limit_must_make_sense(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate must be positive|burst must be at least 1"):
        RateLimit(rate, burst)
    with pytest.raises(ValueError, match=r"rate must be positive|burst must be at least 1"):
        RelayConfig(reserve_rate_per_peer=rate, reserve_burst_per_peer=burst)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.1, 20.0),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=200),
)
def test_admitted_requests_never_exceed_burst_plus_rate_times_time(
    rate: float, burst: int, gaps: list[float]
) -> None:
    limiter = RateLimiter(RateLimit(rate, burst))
    now, admitted = 0.0, 0
    for gap in gaps:
        now += gap
        admitted += limiter.take("k", now)
        assert admitted <= burst + rate * now + 1e-9
        assert len(limiter) <= 1


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.1, 20.0),
    burst=st.integers(1, 20),
    slack=st.floats(1.0, 5.0),
    count=st.integers(1, 100),
)
def test_a_client_slower_than_the_rate_is_never_refused(
    rate: float, burst: int, slack: float, count: int
) -> None:
    limiter = RateLimiter(RateLimit(rate, burst))
    interval = slack / rate
    assert all(limiter.take("k", i * interval) for i in range(count))


# -- per peer and per IP, and held refusals -------------------------------------------------------


def limiter(hold: float = 1.0) -> ReserveRateLimiter:
    return ReserveRateLimiter(RateLimit(1.0, 2), RateLimit(4.0, 4), hold)


def test_a_flooding_peer_spends_only_its_own_tokens() -> None:
    rl = limiter()
    assert rl.check(A, IP1, 0.0) is None
    assert rl.check(A, IP1, 0.0) is None
    # A's bucket is empty; its refusals leave the IP's two remaining tokens to B.
    assert rl.check(A, IP1, 0.0) == RateRefusal("reserve_rate_per_peer", 1.0)
    for _ in range(100):
        assert rl.check(A, IP1, 0.0) == RateRefusal("reserve_rate_per_peer", None)
    assert rl.check(B, IP1, 0.0) is None
    assert rl.check(B, IP1, 0.0) is None
    # Now the IP's bucket (4) is empty: C, a new peer of the same IP, waits 1/4 s.
    assert rl.check(C, IP1, 0.0) == RateRefusal("reserve_rate_per_ip", 0.25)
    # ... while a peer elsewhere is not bothered.
    assert rl.check(C, IP2, 0.0) is None


def test_one_refusal_per_peer_is_held_until_answered() -> None:
    rl = limiter()
    rl.check(A, IP1, 0.0)
    rl.check(A, IP1, 0.0)
    assert rl.check(A, IP1, 0.2) == RateRefusal("reserve_rate_per_peer", 1.0)
    assert rl.held == 1
    assert rl.check(A, IP1, 0.3) == RateRefusal("reserve_rate_per_peer", None)
    rl.answered(A)
    assert rl.held == 0
    # Answered at 1.0 and asked again at once: admitted (one token refilled), then held again.
    assert rl.check(A, IP1, 1.0) is None
    assert rl.check(A, IP1, 1.0) == RateRefusal("reserve_rate_per_peer", 2.0)


def test_the_hold_is_capped() -> None:
    rl = ReserveRateLimiter(RateLimit(0.01, 1), None, refusal_hold=1.5)
    assert rl.check(A, None, 0.0) is None
    assert rl.check(A, None, 0.0) == RateRefusal("reserve_rate_per_peer", 1.5)
    rl.answered(A)
    unheld = ReserveRateLimiter(RateLimit(0.01, 1), None, refusal_hold=0.0)
    unheld.check(A, None, 0.0)
    assert unheld.check(A, None, 0.0) == RateRefusal("reserve_rate_per_peer", None)


def test_a_retry_as_soon_as_answered_loop_runs_at_the_rate() -> None:
    # py-libp2p 0.8.1's refresh loop: ask, wait for the answer, ask again at once.
    rl = limiter()
    now, asked, admitted = 0.0, 0, 0
    while now < 45.0:
        asked += 1
        refused = rl.check(A, IP1, now)
        if refused is None:
            admitted += 1
            continue
        assert refused.answer_at is not None  # one at a time: always held
        now = refused.answer_at
        rl.answered(A)
    # The burst at 0 s, then one a second at 1 s ... 44 s, each refusal answered when the
    # next token is there: 46 admitted, 45 refused, instead of a request per round trip.
    assert admitted == 2 + 44
    assert asked == admitted + 45


# -- in the reservation book ----------------------------------------------------------------------


def test_the_book_refuses_a_flood_with_resource_limit_exceeded() -> None:
    config = RelayConfig(reservation_ttl=20.0, reserve_rate_per_peer=1.0, reserve_burst_per_peer=3)
    book = ReservationBook(config)
    assert book.reserve(A, IP1, 0.0) is False
    assert book.reserve(A, IP1, 0.0) is True
    assert book.reserve(A, IP1, 0.0) is True
    refused = book.reserve(A, IP1, 0.0)
    assert refused == BookRefusal(Status.RESOURCE_LIMIT_EXCEEDED, "reserve_rate_per_peer", 1.0)
    # The reservation A holds is untouched by the refusal, and ends at its deadline.
    assert book.reservations(0.5) == {A: 20.0}
    book.answered(A)
    assert book.reserve(A, IP1, 1.0) is True
    assert book.reservations(1.0) == {A: 21.0}
    # Another peer of the same IP is not held back by A's flood.
    assert book.reserve(B, IP1, 1.0) is False


def test_defaults_let_eight_peers_of_one_ip_start_together_and_refresh_every_second() -> None:
    config = RelayConfig()
    assert config.max_reservations_per_ip == 8
    book = ReservationBook(config)
    peers = [
        PeerID.from_public_key(Ed25519PrivateKey.from_seed(bytes([i + 10]) * 32).public_key)
        for i in range(8)
    ]
    # All at once at start-up, each with a retry, then a refresh every second for a minute.
    for peer in peers:
        assert not isinstance(book.reserve(peer, IP1, 0.0), BookRefusal)
        assert not isinstance(book.reserve(peer, IP1, 0.0), BookRefusal)
    for second in range(1, 61):
        for peer in peers:
            assert book.reserve(peer, IP1, float(second)) is True


def test_unlimited_has_no_rate_limits() -> None:
    book = ReservationBook(RelayConfig.unlimited())
    assert all(book.reserve(A, IP1, 0.0) is not None for _ in range(10_000))
    assert not isinstance(book.reserve(A, IP1, 0.0), BookRefusal)
