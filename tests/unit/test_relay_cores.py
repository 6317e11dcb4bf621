"""The relay's I/O-free cores, with time passed in: the reservation book, the client's refresh
schedule, the shared backoff, and the meter that recognises a relay's limit reset."""

from __future__ import annotations

import pytest

from libp2p.crypto.keys import Ed25519PrivateKey
from libp2p.network.connection import ConnectionLimit
from libp2p.peer.id import PeerID
from libp2p.relay.circuit_v2 import RelayConfig, Status
from libp2p.relay.circuit_v2.book import BookRefusal, ReservationBook
from libp2p.relay.circuit_v2.pipe import CircuitMeter
from libp2p.relay.circuit_v2.protocol import LimitKind
from libp2p.relay.circuit_v2.schedule import MIN_REFRESH, Backoff, RefreshSchedule

A, B, C, D = (
    PeerID.from_public_key(Ed25519PrivateKey.from_seed(bytes([i]) * 32).public_key)
    for i in range(1, 5)
)
IP1, IP2 = "198.51.100.1", "198.51.100.2"


# -- the reservation book ----------------------------------------------------------------------


def test_a_reservation_lasts_exactly_its_ttl() -> None:
    book = ReservationBook(RelayConfig(reservation_ttl=100.0))
    assert book.reserve(A, IP1, now=10.0) is False
    assert book.reservations(10.0) == {A: 110.0}
    assert book.next_deadline() == 110.0
    assert book.holds(A, 109.999)
    assert not book.holds(A, 110.0)
    assert book.expire(109.999) == []
    assert book.expire(110.0) == [A]
    assert book.active(110.0) == 0
    assert book.next_deadline() is None


def test_a_second_reserve_refreshes_from_its_own_time() -> None:
    book = ReservationBook(RelayConfig(reservation_ttl=100.0))
    book.reserve(A, IP1, now=0.0)
    assert book.reserve(A, IP1, now=75.0) is True
    assert book.reservations(150.0) == {A: 175.0}
    # Expired, then reserved again: a new reservation, not a refresh.
    assert book.reserve(A, IP1, now=175.0) is False


def test_total_cap_and_per_ip_cap() -> None:
    book = ReservationBook(RelayConfig(max_reservations=3, max_reservations_per_ip=2))
    assert book.reserve(A, IP1, 0.0) is False
    assert book.reserve(B, IP1, 0.0) is False
    assert book.reserve(C, IP1, 0.0) == BookRefusal(
        Status.RESERVATION_REFUSED, "max_reservations_per_ip"
    )
    assert book.reserve(C, IP2, 0.0) is False
    assert book.reserve(D, IP2, 0.0) == BookRefusal(Status.RESERVATION_REFUSED, "max_reservations")
    # A peer holding one may refresh at the caps.
    assert book.reserve(A, IP1, 1.0) is True
    # Releasing frees a slot.
    assert book.release(C)
    assert not book.release(C)
    assert book.reserve(D, IP2, 2.0) is False


def test_expired_reservations_free_their_slots() -> None:
    book = ReservationBook(RelayConfig(reservation_ttl=10.0, max_reservations=1))
    book.reserve(A, IP1, 0.0)
    assert isinstance(book.reserve(B, IP2, 9.0), BookRefusal)
    assert book.reserve(B, IP2, 10.0) is False
    assert book.reservations(10.0) == {B: 20.0}


def test_circuits_need_a_reservation_and_are_capped_per_peer() -> None:
    book = ReservationBook(RelayConfig(reservation_ttl=100.0, max_circuits_per_peer=2))
    assert book.open_circuit(A, B, 0.0) == BookRefusal(Status.NO_RESERVATION, "no_reservation")
    book.reserve(B, IP1, 0.0)
    book.reserve(C, IP1, 0.0)
    assert book.open_circuit(A, B, 1.0) is None
    assert book.open_circuit(D, B, 1.0) is None
    assert book.circuits(B) == 2
    assert book.circuits_open == 2
    # B takes part in two circuits: a third with B is refused, whoever the source.
    refused = BookRefusal(Status.RESOURCE_LIMIT_EXCEEDED, "max_circuits_per_peer")
    assert book.open_circuit(C, B, 1.0) == refused
    assert book.open_circuit(A, C, 1.0) is None
    assert book.open_circuit(A, C, 1.0) == refused  # A is in two now
    book.close_circuit(A, B)
    assert book.circuits(A) == 1
    assert book.open_circuit(C, B, 1.0) is None
    # An expired reservation admits no circuit.
    assert book.open_circuit(D, C, 100.0) == BookRefusal(Status.NO_RESERVATION, "no_reservation")


# -- backoff and the refresh schedule ----------------------------------------------------------


def test_backoff_doubles_to_its_cap_and_starts_over() -> None:
    backoff = Backoff(initial=1.0, maximum=10.0)
    assert [backoff.failed() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.succeeded()
    assert backoff.delay == 1.0
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial=0)


def test_refresh_at_three_quarters_of_the_remaining_lifetime() -> None:
    schedule = RefreshSchedule(now=0.0)
    assert schedule.next_attempt == 0.0
    assert schedule.reserved(now=2.0, lifetime=3600.0) == 2.0 + 2700.0
    assert schedule.expires_at == 3602.0
    assert not schedule.expired(3601.9)
    # A short reservation is refreshed no sooner than MIN_REFRESH.
    assert schedule.reserved(now=10.0, lifetime=4.0) == 10.0 + MIN_REFRESH


def test_failures_back_off_and_the_reservation_expires() -> None:
    schedule = RefreshSchedule(now=0.0, backoff=Backoff(initial=1.0, maximum=4.0))
    schedule.reserved(now=0.0, lifetime=8.0)  # refresh due at 6
    assert schedule.failed(6.0) == 1.0
    assert schedule.next_attempt == 7.0
    assert schedule.failed(7.0) == 2.0
    assert schedule.failed(9.0) == 4.0
    assert not schedule.expired(7.999)
    assert schedule.expired(8.0)
    assert schedule.expires_at is None
    assert not schedule.expired(9.0)  # reported once
    assert schedule.failed(13.0) == 4.0
    # A success starts the backoff over.
    schedule.reserved(now=17.0, lifetime=100.0)
    assert schedule.failed(92.0) == 1.0


def test_losing_the_connection_retries_at_once() -> None:
    schedule = RefreshSchedule(now=0.0)
    schedule.reserved(now=0.0, lifetime=100.0)
    schedule.connection_lost(30.0)
    assert schedule.next_attempt == 30.0
    assert schedule.expires_at is None


# -- the limit meter ---------------------------------------------------------------------------


def test_meter_data_limit_in_either_direction() -> None:
    meter = CircuitMeter(ConnectionLimit(duration=None, data=1000), started_at=5.0)
    assert meter.reached(sent=999, received=999, now=1e9) is None
    assert meter.reached(sent=1000, received=0, now=6.0) is LimitKind.DATA
    assert meter.reached(sent=0, received=1000, now=6.0) is LimitKind.DATA


def test_meter_duration_counts_from_the_message_that_starts_the_timer() -> None:
    meter = CircuitMeter(ConnectionLimit(duration=120, data=None), started_at=5.0)
    assert meter.reached(sent=10**9, received=10**9, now=124.999) is None
    assert meter.reached(sent=0, received=0, now=125.0) is LimitKind.DURATION


def test_meter_both_limits() -> None:
    meter = CircuitMeter(ConnectionLimit(duration=60, data=100), started_at=0.0)
    assert meter.reached(sent=10, received=10, now=30.0) is None
    assert meter.reached(sent=100, received=10, now=90.0) is LimitKind.DATA
    assert meter.reached(sent=10, received=10, now=60.0) is LimitKind.DURATION


def test_meter_eof_after_the_data_limit_is_the_relay_cutting() -> None:
    # go's relay half-closes the receiving side after exactly Limit.data bytes.
    meter = CircuitMeter(ConnectionLimit(duration=120, data=1000), started_at=0.0)
    assert meter.cut_at_eof(sent=10, received=1000) is LimitKind.DATA
    assert meter.cut_at_eof(sent=1000, received=10) is LimitKind.DATA
    assert meter.cut_at_eof(sent=999, received=999) is None
    # An EOF is never the duration limit (relays reset at the deadline).
    assert meter.cut_at_eof(sent=0, received=0) is None
    unlimited_data = CircuitMeter(ConnectionLimit(duration=1, data=None), started_at=0.0)
    assert unlimited_data.cut_at_eof(sent=10**9, received=10**9) is None
