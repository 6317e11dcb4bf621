"""DCUtR's state machine (one per relayed connection): A and B back to back, time passed in.

No sockets, no trio: the tests play the driver. ``Pair`` shuttles each side's ``Send`` to
the other as a message and records every other action; dials are answered by the test.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiaddr import Multiaddr

from libp2p.relay.circuit_v2.dcutr import came_of_punch
from libp2p.relay.circuit_v2.dcutr_core import (
    CONNECT,
    MAX_REDIALS,
    START_TIMEOUT,
    SYNC,
    AttemptFailed,
    ClaimInbound,
    CloseStream,
    Dial,
    Failed,
    HolePunch,
    HolePunchAction,
    HolePunchConfig,
    HolePunchFailure,
    HolePunchRole,
    OpenStream,
    ReleaseInbound,
    Send,
    Succeeded,
    encode_hole_punch,
    looks_endpoint_dependent,
    punch_dial_timeout,
    punch_handshake_timeout,
    redial_pause,
    redial_silence,
    role_patience,
)
from libp2p.varint import decode_uvarint

A_ADDRS = [Multiaddr("/ip4/198.51.100.1/tcp/4001"), Multiaddr("/ip4/192.0.2.2/tcp/4001")]
B_ADDRS = [Multiaddr("/ip4/198.51.100.2/tcp/4002")]
CONFIG = HolePunchConfig(reversal_timeout=2.0, stream_timeout=10.0, connection_reversal=False)


def body(framed: bytes) -> bytes:
    decoded = decode_uvarint(framed)
    assert decoded is not None
    length, offset = decoded
    return framed[offset : offset + length]


def machine(
    role: HolePunchRole,
    addrs: Sequence[Multiaddr],
    config: HolePunchConfig = CONFIG,
    seed: int = 1,
) -> HolePunch:
    return HolePunch(role, our_addrs=lambda: addrs, config=config, rng=random.Random(seed))


def timer_of(m: HolePunch) -> float:
    timer = m.get_timer()
    assert timer is not None
    return timer


def of(actions: list[HolePunchAction], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


class Pair:
    """B and A on one relayed connection; B's stream reaches A with no delay of its own."""

    def __init__(
        self,
        a_addrs: Sequence[Multiaddr] = A_ADDRS,
        b_addrs: Sequence[Multiaddr] = B_ADDRS,
        config: HolePunchConfig = CONFIG,
    ) -> None:
        self.a = machine(HolePunchRole.DIALER, a_addrs, config)
        self.b = machine(HolePunchRole.LISTENER, b_addrs, config)
        self.opened = False  # B's OpenStream was taken already
        self.a_log: list[HolePunchAction] = []
        self.b_log: list[HolePunchAction] = []

    def take(self, side: HolePunch) -> list[HolePunchAction]:
        acts = side.actions()
        (self.a_log if side is self.a else self.b_log).extend(acts)
        return acts

    def exchange(self, t_connect: float, t_answer: float, t_sync: float) -> None:
        """One attempt's exchange: B opens and sends CONNECT at ``t_connect``, A answers at
        ``t_answer``, B's SYNC reaches A at ``t_sync``."""
        opened = self.opened or of(self.take(self.b), OpenStream)
        self.opened = False
        assert opened, "B did not ask for a stream"
        self.b.stream_opened(t_connect)
        (connect,) = of(self.take(self.b), Send)
        assert self.a.stream_accepted(t_connect)
        self.a.message(body(connect.data), t_connect)
        (answer,) = of(self.take(self.a), Send)
        self.b.message(body(answer.data), t_answer)
        b_acts = self.take(self.b)
        (sync,) = of(b_acts, Send)
        assert of(b_acts, CloseStream) == [CloseStream()]
        self.a.message(body(sync.data), t_sync)


# -- the exchange and the roles -------------------------------------------------------------------


def test_a_whole_attempt_back_to_back_with_the_spec_roles() -> None:
    pair = Pair()
    pair.b.start(10.0)
    pair.a.start(10.0)
    pair.exchange(10.0, 10.2, 10.3)
    # RTT = CONNECT out to CONNECT back; B dials half an RTT after sending SYNC.
    assert pair.b.rtt == pytest.approx(0.2)
    assert pair.a.rtt == pytest.approx(0.3)  # A: its CONNECT to B's SYNC
    a_acts = pair.take(pair.a)
    claims = of(a_acts, ClaimInbound)
    a_dials = of(a_acts, Dial)
    # Handshakes on a punched connection get ten relayed round trips (at least 2 s).
    assert pair.a.rtt is not None
    handshake = punch_handshake_timeout(pair.a.rtt, CONFIG.stream_timeout)
    assert handshake == pytest.approx(3.0)
    assert claims == [ClaimInbound(tuple(B_ADDRS), handshake)]
    assert all(d.handshake_within == handshake for d in a_dials)
    assert [d.addr for d in a_dials] == B_ADDRS
    assert pair.b.get_timer() == pytest.approx(10.3)
    assert not of(pair.take(pair.b), Dial)  # not yet
    pair.b.handle_timer(10.3)
    b_dials = of(pair.take(pair.b), Dial)
    assert [d.addr for d in b_dials] == A_ADDRS
    # The spec's roles on the punched connection: A initiates, B responds; both punch from
    # the listen port.
    assert all(d.initiator and d.from_listen_port for d in a_dials)
    assert all(not d.initiator and d.from_listen_port for d in b_dials)
    assert all(d.attempt == 1 for d in a_dials + b_dials)
    timeout = punch_dial_timeout(0.2)
    assert b_dials[0].connect_by == pytest.approx(10.3 + timeout)
    # A direct connection arrives: each side reports this attempt, in its own role.
    pair.a.direct_connection(10.35, punched=True)
    pair.b.direct_connection(10.35, punched=True)
    assert pair.a.outcome == Succeeded(1, pytest.approx(0.3))
    assert pair.b.outcome == Succeeded(1, pytest.approx(0.2))
    assert ReleaseInbound() in pair.take(pair.a)
    assert pair.a.finished
    assert pair.b.finished
    assert pair.b.get_timer() is None


def test_a_connection_b_initiated_is_its_reversal_not_the_punch() -> None:
    b = machine(HolePunchRole.LISTENER, B_ADDRS, HolePunchConfig())
    b.start(0.0)
    b.identified(0.1, speaks_dcutr=True, addrs=A_ADDRS)
    reversal = of(b.actions(), Dial)
    # The reversal dials A's advertised addresses plainly: as initiator, from another port.
    assert [d.addr for d in reversal] == A_ADDRS
    assert all(d.initiator and not d.from_listen_port and d.attempt == 0 for d in reversal)
    b.direct_connection(0.3, punched=False)
    assert b.outcome == Succeeded(0, None)


def test_a_dials_bs_advertised_addresses_directly_once_identified() -> None:
    a = machine(HolePunchRole.DIALER, A_ADDRS, HolePunchConfig())
    a.start(0.0)
    assert of(a.actions(), Dial) == []
    a.identified(0.2, speaks_dcutr=True, addrs=B_ADDRS)
    direct = of(a.actions(), Dial)
    # Plainly, as for B's reversal: initiator, from an ephemeral port, bounded.
    assert [d.addr for d in direct] == B_ADDRS
    assert all(d.initiator and not d.from_listen_port and d.attempt == 0 for d in direct)
    assert all(d.connect_by == pytest.approx(2.2) for d in direct)
    a.direct_connection(0.3, punched=False)
    assert a.outcome == Succeeded(0, None)
    # Off: nothing dialed.
    off = machine(HolePunchRole.DIALER, A_ADDRS, HolePunchConfig(direct_dial=False))
    off.start(0.0)
    off.identified(0.2, speaks_dcutr=True, addrs=B_ADDRS)
    assert of(off.actions(), Dial) == []


def test_a_directly_reachable_b_waits_for_as_direct_dial_before_punching() -> None:
    config = HolePunchConfig(connection_reversal=False, direct_grace=3.0)
    b = machine(HolePunchRole.LISTENER, B_ADDRS, config)
    b.set_directly_reachable(True)
    b.start(0.0)
    assert of(b.actions(), OpenStream) == []
    assert b.get_timer() == 3.0
    # A's direct dial arrives: no punch at all.
    b.direct_connection(1.0, punched=False)
    assert b.outcome == Succeeded(0, None)
    assert b.get_timer() is None
    # No direct dial within the grace (a stock A): the punch starts then.
    late = machine(HolePunchRole.LISTENER, B_ADDRS, config)
    late.set_directly_reachable(True)
    late.start(0.0)
    late.handle_timer(3.0)
    assert of(late.actions(), OpenStream) == [OpenStream(1)]
    assert late.attempt == 1
    # Not reachable: B opens its stream at once, as before.
    plain = machine(HolePunchRole.LISTENER, B_ADDRS, config)
    plain.start(0.0)
    assert of(plain.actions(), OpenStream) == [OpenStream(1)]


def test_every_punch_settles_its_role_with_the_peer() -> None:
    """Deployed peers disagree on the punched connection's roles on any attempt (go before
    v0.41 swaps them): every punch dial of both sides, on every attempt, carries the patience
    that lets the role be settled on the connection; the reversal's role is fixed."""
    pair = Pair()
    pair.b.start(0.0)
    pair.a.start(0.0)
    patiences = []
    for attempt in range(1, 4):
        t = attempt * 10.0
        pair.exchange(t, t + 0.1, t + 0.15)
        a_dials = of(pair.take(pair.a), Dial)
        pair.b.handle_timer(timer_of(pair.b))
        b_dials = of(pair.take(pair.b), Dial)
        assert all(d.initiator for d in a_dials)
        assert not any(d.initiator for d in b_dials)
        assert pair.a.rtt is not None
        assert pair.b.rtt is not None
        assert {d.role_patience for d in a_dials} == {role_patience(pair.a.rtt)}
        assert {d.role_patience for d in b_dials} == {role_patience(pair.b.rtt)}
        patiences.append(pair.b.rtt)
        for dial in b_dials:
            pair.b.dial_failed(dial.addr, dial.attempt, t + 0.2, "unreachable")
        for dial in a_dials:
            pair.a.dial_failed(dial.addr, dial.attempt, t + 0.2, "unreachable")
        pair.a.handle_timer(t + 5.0)
        pair.b.handle_timer(t + 5.0)
        pair.opened = bool(of(pair.take(pair.b), OpenStream))
        pair.take(pair.a)
    # B measured a round trip of 0.1 s on each attempt: it waits 0.2 s for A to propose.
    assert patiences == [pytest.approx(0.1)] * 3
    assert role_patience(0.1) == pytest.approx(0.2)
    assert role_patience(0.0) == 0.1
    assert role_patience(5.0) == 1.0
    b = machine(HolePunchRole.LISTENER, B_ADDRS, HolePunchConfig())
    b.start(0.0)
    b.identified(0.1, speaks_dcutr=True, addrs=A_ADDRS)
    assert {d.role_patience for d in of(b.actions(), Dial)} == {None}


@pytest.mark.parametrize(
    ("agent", "known", "checked"),
    [
        ("trio-libp2p-nat/0.1.0", ("trio-libp2p-nat/",), False),
        ("p2pd/0.1", ("trio-libp2p-nat/",), True),
        (None, ("trio-libp2p-nat/",), True),
        ("trio-libp2p-nat/0.1.0", (), True),
    ],
)
def test_a_checks_the_role_unless_b_is_known_to_respond(
    agent: str | None, known: tuple[str, ...], checked: bool
) -> None:
    pair = Pair(config=HolePunchConfig(spec_role_agents=known))
    pair.b.start(0.0)
    pair.a.start(0.0)
    pair.a.identified(0.05, speaks_dcutr=True, addrs=B_ADDRS, agent_version=agent)
    pair.take(pair.a)
    pair.exchange(1.0, 1.1, 1.15)
    a_dials = of(pair.take(pair.a), Dial)
    assert a_dials
    assert pair.a.rtt is not None
    expected = role_patience(pair.a.rtt) if checked else None
    assert {d.role_patience for d in a_dials} == {expected}
    # B always checks: a silent A gets a B that initiates.
    pair.b.handle_timer(timer_of(pair.b))
    assert pair.b.rtt is not None
    assert {d.role_patience for d in of(pair.take(pair.b), Dial)} == {role_patience(pair.b.rtt)}


# -- refused SYNs --------------------------------------------------------------------------------


def dialing_b(config: HolePunchConfig = CONFIG) -> tuple[HolePunch, list[Dial]]:
    pair = Pair(config=config)
    pair.b.start(0.0)
    pair.a.start(0.0)
    pair.exchange(0.0, 0.002, 0.003)
    pair.b.handle_timer(timer_of(pair.b))
    return pair.b, of(pair.take(pair.b), Dial)


def test_punch_dials_go_on_after_refusals_and_silence_reversals_do_not() -> None:
    _b, dials = dialing_b()
    for dial in dials:
        assert dial.redial is not None
        # A SYN with no answer is sent again after twice the relayed round trip (>= 50 ms).
        assert dial.redial.silence == pytest.approx(redial_silence(0.002))
        assert dial.redial.silence == pytest.approx(0.05)
        assert dial.redial.max_refusals == MAX_REDIALS
    reversal = machine(HolePunchRole.LISTENER, B_ADDRS, HolePunchConfig())
    reversal.start(0.0)
    reversal.identified(0.0, speaks_dcutr=True, addrs=A_ADDRS)
    assert all(d.redial is None for d in of(reversal.actions(), Dial))


def test_refused_punches_pause_briefly_at_random_until_the_cap() -> None:
    _b, dials = dialing_b()
    redial = dials[0].redial
    assert redial is not None
    pause = redial.pauses()
    pauses = [pause(n, 0.0004) for n in range(1, MAX_REDIALS + 1)]
    # Random (so two peers get in phase), up to half the refusal's round trip.
    assert all(p is not None and 0 <= p <= 0.0002 for p in pauses)
    assert len(set(pauses)) > MAX_REDIALS // 2
    assert pause(MAX_REDIALS + 1, 0.0004) is None
    # The same seed gives the same pauses (tests reproduce runs); dials get their own.
    again = redial.pauses()
    assert [again(n, 0.0004) for n in range(1, 11)] == pauses[:10]
    assert len({d.redial.seed for d in dials if d.redial is not None}) == len(dials)


@given(
    st.floats(min_value=0, max_value=10, allow_nan=False),
    st.floats(min_value=0, max_value=0.01, allow_nan=False),
    st.integers(0, 2**32),
)
def test_redial_pause_stays_within_half_the_refusal_round_trip(
    took: float, spacing: float, seed: int
) -> None:
    pause = redial_pause(took, random.Random(seed), spacing)
    assert 0 <= pause <= min(max(took / 2, 2 * spacing), 0.05)


def test_failed_dials_linger_then_the_next_attempt_then_all_attempts_failed() -> None:
    pair = Pair()
    pair.b.start(0.0)
    pair.a.start(0.0)
    for attempt in (1, 2, 3):
        t = attempt * 10.0
        pair.exchange(t, t + 0.1, t + 0.15)
        a_dials = of(pair.take(pair.a), Dial)
        pair.b.handle_timer(timer_of(pair.b))
        b_dials = of(pair.take(pair.b), Dial)
        assert b_dials
        assert a_dials
        for d in b_dials:
            pair.b.dial_failed(d.addr, d.attempt, t + 1.0)
        for d in a_dials:
            pair.a.dial_failed(d.addr, d.attempt, t + 1.0)
        # Lingering: a connection under way may still come.
        assert pair.b.get_timer() == pytest.approx(t + 1.5)
        pair.a.handle_timer(t + 1.5)
        pair.b.handle_timer(t + 1.5)
        b_acts, a_acts = pair.take(pair.b), pair.take(pair.a)
        assert [e.attempt for e in of(b_acts, AttemptFailed)] == [attempt]
        assert [e.attempt for e in of(a_acts, AttemptFailed)] == [attempt]
        if attempt < 3:
            assert of(b_acts, OpenStream) == [OpenStream(attempt + 1)]
            pair.opened = True
    for side in (pair.a, pair.b):
        assert isinstance(side.outcome, Failed)
        assert side.outcome.reason is HolePunchFailure.ALL_ATTEMPTS_FAILED
        assert side.outcome.attempts == 3


# -- both peers learn the outcome ----------------------------------------------------------------


def test_b_with_nothing_to_offer_tells_a_which_fails_at_once() -> None:
    # The policy leaves loopback out; B's connection reversal is on (as by default).
    pair = Pair(b_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/1")], config=HolePunchConfig())
    pair.b.start(0.0)
    pair.a.start(0.0)
    pair.take(pair.b)
    pair.b.stream_opened(0.0)
    b_acts = pair.take(pair.b)
    (connect,) = of(b_acts, Send)
    assert connect.data == encode_hole_punch(CONNECT)  # no addresses
    assert not pair.b.finished  # its connection reversal may still work: identify first
    pair.b.identified(0.01, speaks_dcutr=True, addrs=[])
    assert CloseStream() in b_acts
    assert isinstance(pair.b.outcome, Failed)
    assert pair.b.outcome.reason is HolePunchFailure.NO_PUBLIC_ADDRESS
    # The empty CONNECT reaches A: it fails with a reason after the reversal grace, not never.
    assert pair.a.stream_accepted(0.01)
    pair.a.message(body(connect.data), 0.01)
    assert CloseStream(reset=True) in pair.take(pair.a)
    assert pair.a.get_timer() == pytest.approx(2.01)
    pair.a.handle_timer(2.01)
    assert isinstance(pair.a.outcome, Failed)
    assert pair.a.outcome.reason is HolePunchFailure.PEER_NO_ADDRESS


def test_a_is_told_when_b_never_starts_and_when_b_has_no_dcutr() -> None:
    a = machine(HolePunchRole.DIALER, A_ADDRS)
    a.start(0.0)
    assert a.get_timer() is None  # until identify says B speaks DCUtR
    a.identified(0.5, speaks_dcutr=True, addrs=[])
    # B may first dial A directly (go for 5 s, py-libp2p for 10 s): A waits start_timeout.
    assert a.get_timer() == pytest.approx(0.5 + START_TIMEOUT)
    assert START_TIMEOUT > 10.0 + 5.0
    a.handle_timer(0.5 + START_TIMEOUT)
    assert isinstance(a.outcome, Failed)
    assert a.outcome.reason is HolePunchFailure.TIMEOUT
    assert f"within {START_TIMEOUT:g} s" in a.outcome.detail
    silent = machine(HolePunchRole.DIALER, A_ADDRS)
    silent.start(0.0)
    silent.identified(0.5, speaks_dcutr=False, addrs=[])
    assert isinstance(silent.outcome, Failed)
    assert silent.outcome.reason is HolePunchFailure.NO_STREAM


def test_a_b_whose_stream_broke_is_no_stream_if_identify_says_it_lacks_dcutr() -> None:
    b = machine(HolePunchRole.LISTENER, B_ADDRS, HolePunchConfig(connection_reversal=False))
    b.start(0.0)
    b.actions()
    b.stream_opened(0.0)
    b.stream_broken(0.05, "stream reset")
    assert not b.finished  # waits for identify to tell why
    b.identified(0.1, speaks_dcutr=False, addrs=[])
    assert isinstance(b.outcome, Failed)
    assert b.outcome.reason is HolePunchFailure.NO_STREAM


def test_an_a_started_run_on_bs_connection_is_refused_and_named() -> None:
    b = machine(HolePunchRole.LISTENER, B_ADDRS, HolePunchConfig(connection_reversal=False))
    b.start(0.0)
    assert b.stream_accepted(0.0) is False
    b.actions()
    b.stream_opened(0.0)
    b.message(body(encode_hole_punch(SYNC)), 0.1)  # nonsense answer: the run fails
    assert isinstance(b.outcome, Failed)
    assert b.outcome.reason is HolePunchFailure.PEER_ROLE_MISMATCH
    assert "protocol_error" in b.outcome.detail


def test_the_relay_closing_ends_it() -> None:
    pair = Pair()
    pair.b.start(0.0)
    pair.b.relay_closed(0.1)
    assert isinstance(pair.b.outcome, Failed)
    assert pair.b.outcome.reason is HolePunchFailure.RELAY_CLOSED


# -- symmetric NATs ------------------------------------------------------------------------------


def test_b_behind_a_symmetric_nat_says_so_and_fails_at_once() -> None:
    pair = Pair(config=HolePunchConfig(connection_reversal=False))
    pair.b.set_mapping_endpoint_dependent(True)
    pair.b.start(0.0)
    pair.a.start(0.0)
    pair.take(pair.b)
    pair.b.stream_opened(0.0)
    (connect,) = of(pair.take(pair.b), Send)
    assert isinstance(pair.b.outcome, Failed)
    assert pair.b.outcome.reason is HolePunchFailure.SYMMETRIC_NAT
    assert pair.b.outcome.attempts == 1
    assert pair.a.stream_accepted(0.0)
    pair.a.message(body(connect.data), 0.0)
    pair.a.handle_timer(2.0)
    assert isinstance(pair.a.outcome, Failed)
    assert pair.a.outcome.reason is HolePunchFailure.PEER_NO_ADDRESS


def test_a_behind_a_symmetric_nat_answers_with_nothing() -> None:
    pair = Pair(config=HolePunchConfig(connection_reversal=False))
    pair.a.set_mapping_endpoint_dependent(True)
    pair.b.start(0.0)
    pair.a.start(0.0)
    pair.take(pair.b)
    pair.b.stream_opened(0.0)
    (connect,) = of(pair.take(pair.b), Send)
    assert pair.a.stream_accepted(0.0)
    pair.a.message(body(connect.data), 0.0)
    (answer,) = of(pair.take(pair.a), Send)
    assert answer.data == encode_hole_punch(CONNECT)  # no addresses
    pair.a.handle_timer(timer_of(pair.a))  # B's reversal had its time
    assert isinstance(pair.a.outcome, Failed)
    assert pair.a.outcome.reason is HolePunchFailure.SYMMETRIC_NAT
    pair.b.message(body(answer.data), 0.1)
    assert isinstance(pair.b.outcome, Failed)
    assert pair.b.outcome.reason is HolePunchFailure.PEER_NO_ADDRESS


def test_a_connect_showing_a_symmetric_nat_ends_the_punch_at_once() -> None:
    several_ports = [
        Multiaddr("/ip4/198.51.100.2/tcp/31001"),
        Multiaddr("/ip4/198.51.100.2/tcp/47213"),
        Multiaddr("/ip4/192.0.2.66/tcp/4002"),
    ]
    assert looks_endpoint_dependent(several_ports)
    assert not looks_endpoint_dependent(A_ADDRS + B_ADDRS)
    # No NAT in front (one public IPv6 address): a listen port and a separate dial port that
    # an observer saw (js-libp2p dials from another port) are no sign of a symmetric NAT;
    # nor is an IPv4 LAN address beside them (another IP version).
    no_nat = [
        Multiaddr("/ip6/2001:db8:b::2/tcp/4001"),
        Multiaddr("/ip6/2001:db8:b::2/tcp/38211"),
    ]
    assert not looks_endpoint_dependent(no_nat)
    assert not looks_endpoint_dependent([*no_nat, Multiaddr("/ip4/192.0.2.66/tcp/4001")])
    assert looks_endpoint_dependent([*no_nat, Multiaddr("/ip6/fd00::66/tcp/4001")])
    pair = Pair(b_addrs=several_ports, config=HolePunchConfig(connection_reversal=False))
    pair.b.start(0.0)
    pair.a.start(0.0)
    pair.take(pair.b)
    pair.b.stream_opened(0.0)
    (connect,) = of(pair.take(pair.b), Send)
    assert pair.a.stream_accepted(0.0)
    pair.a.message(body(connect.data), 0.0)
    assert not of(pair.take(pair.a), Dial)
    pair.a.handle_timer(2.0)
    assert isinstance(pair.a.outcome, Failed)
    assert pair.a.outcome.reason is HolePunchFailure.PEER_SYMMETRIC_NAT


# -- fuzzing: any order of events ----------------------------------------------------------------

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "start",
                "identified",
                "opened",
                "failed",
                "accepted",
                "connect",
                "sync",
                "garbage",
                "broken",
                "refused",
                "dial_failed",
                "direct",
                "closed",
                "timer",
            ]
        ),
        st.floats(min_value=0, max_value=0.5, allow_nan=False),
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(st.sampled_from(list(HolePunchRole)), EVENTS)
def test_any_order_of_events_gives_at_most_one_outcome_and_never_raises(
    role: HolePunchRole, events: list[tuple[str, float]]
) -> None:
    m = machine(role, B_ADDRS)
    now = 0.0
    outcomes = 0
    dials: list[Dial] = []
    for name, step in events:
        now += step
        if name == "start":
            m.start(now)
        elif name == "identified":
            m.identified(now, speaks_dcutr=step > 0.1, addrs=A_ADDRS)
        elif name == "opened":
            m.stream_opened(now)
        elif name == "failed":
            m.stream_failed(now, not_supported=step > 0.2, detail="x")
        elif name == "accepted":
            m.stream_accepted(now)
        elif name == "connect":
            m.message(body(encode_hole_punch(CONNECT, A_ADDRS)), now)
        elif name == "sync":
            m.message(body(encode_hole_punch(SYNC)), now)
        elif name == "garbage":
            m.message(b"\xff\x00", now)
        elif name == "broken":
            m.stream_broken(now, "reset")
        elif name == "refused" and dials:
            m.dial_failed(dials[0].addr, dials[0].attempt, now, "refused")
        elif name == "dial_failed" and dials:
            m.dial_failed(dials[-1].addr, dials[-1].attempt, now)
        elif name == "direct":
            m.direct_connection(now, punched=step > 0.25)
        elif name == "closed":
            m.relay_closed(now)
        elif name == "timer":
            timer = m.get_timer()
            if timer is not None:
                now = max(now, timer)
                m.handle_timer(now)
        acts = m.actions()
        dials += of(acts, Dial)
        outcomes += len(of(acts, Succeeded)) + len(of(acts, Failed))
        for dial in of(acts, Dial):
            if dial.attempt:
                # The roles never change hands: A initiates its punches, B never does.
                assert dial.initiator is (role is HolePunchRole.DIALER)
                assert dial.from_listen_port
    assert outcomes <= 1
    assert (outcomes == 1) is m.finished


def test_a_direct_connection_counts_as_the_punch_only_if_it_came_of_it() -> None:
    """B's listener accepts A's punch from an address of A's CONNECT (A punches from its
    listen port); A's plain direct dial from an ephemeral port is no punch, even during one
    (both sides then report attempt 0, as A does)."""
    ours = Multiaddr("/ip4/192.0.2.66/tcp/4001")
    a_listen = Multiaddr("/ip4/198.51.100.1/tcp/4002")
    a_ephemeral = Multiaddr("/ip4/198.51.100.1/tcp/51234")
    connect = [a_listen, Multiaddr("/ip4/192.0.2.2/tcp/4002")]

    def b(remote: Multiaddr, *, initiator: bool = False) -> bool:
        return came_of_punch(
            ours, remote, we_initiate=initiator, role=HolePunchRole.LISTENER,
            punched=set(), peer_addrs=connect,
        )  # fmt: skip

    assert b(a_listen)  # A's punch, accepted by our listener
    assert not b(a_ephemeral)  # A's direct dial
    assert not b(a_listen, initiator=True)  # our own reversal
    # Our own punch sockets count on either side, whatever the address.
    for role in HolePunchRole:
        assert came_of_punch(
            ours, a_ephemeral, we_initiate=True, role=role,
            punched={(str(ours), str(a_ephemeral))}, peer_addrs=(),
        )  # fmt: skip
    assert not came_of_punch(
        ours, a_listen, we_initiate=False, role=HolePunchRole.DIALER,
        punched=set(), peer_addrs=connect,
    )  # fmt: skip
