"""DCUtR without I/O: the codec and one state machine per relayed connection.

The driver (:mod:`.dcutr`) owns streams, sockets and the clock; everything that decides
something lives here. A :class:`HolePunch` is made for each relayed connection, in the role
the spec gives us on it (:class:`HolePunchRole`), and is fed *events* -- a message arrived,
a dial was refused, a direct connection appeared, identify finished -- each with ``now``. It
answers with *actions* the driver carries out in order (:meth:`HolePunch.actions`): open the
DCUtR stream, send these bytes, dial this address from the listen port in this role, claim
punches arriving at our listener, report this outcome. Time passes only through
:meth:`HolePunch.get_timer` and :meth:`HolePunch.handle_timer`, in the shape of aioquic's
connection, so tests drive it exactly, with made-up clocks and without sockets or root.

The algorithm, on top of the spec (libp2p specs ``relay/DCUtR.md``):

* **B** (received the relayed connection) opens ``/libp2p/dcutr`` at once and sends
  ``CONNECT{our addresses}``. **A** answers ``CONNECT{its own}``; B measures the round trip,
  sends ``SYNC`` and dials A's addresses half a round trip later; A dials B's addresses as
  soon as ``SYNC`` arrives. The SYNs cross and each NAT takes the other's SYN for the answer
  to its own: one TCP connection by simultaneous open.
* **Roles on the punched connection**: the spec makes A the initiator of multistream-select,
  Noise and Yamux and B the responder, whoever's socket it is; a punch of B's that lands on
  A's listener (no NAT in front of A) is *claimed* by A like its own. Deployed peers
  disagree: go-libp2p before v0.41 (hivemind's daemon among them) has the roles swapped on
  every attempt, and later go B's initiate on their last attempt for those. So the role is
  settled on the connection itself (:func:`libp2p.multistream.negotiate_either_role`): both
  send the multistream header first; A initiates unless B's header came with a proposal,
  B responds unless A proposed nothing within ``role_patience()`` (an old go A waits as a
  responder: B then initiates, on any attempt). With a B known to respond
  (:attr:`HolePunchConfig.spec_role_agents`, this implementation by default) A initiates at
  once, as before: the check costs half a direct round trip.
* **Refused SYNs are dialed again.** Many routers answer a SYN that arrives before their own
  host's SYN went out with an RST (OpenWrt's default firewall rejects; a box that only does
  SNAT has its own stack answer). The RST also ends the mapping our SYN made, so at short
  round trips, where the two SYNs leave within the scheduling jitter of each other, a single
  SYN per side nearly always fails. Each refused dial is repeated from the same listen port
  after a short random pause until the attempt's dial deadline: the two sides' SYNs then
  meet within one round trip of the network between them, which at short round trips takes
  a few milliseconds (measured in the NAT lab). The pause is random so that two peers
  retrying on the same period cannot stay out of phase for ever.
* **B's connection reversal**: once identify brought A's advertised addresses, B also dials
  them plainly (from an ephemeral port), which is all it takes when A is not behind a NAT.
  **A's direct dial** is the same the other way: B may be reachable (a public host, a port
  mapping its router granted and AutoNAT v2 confirmed). A B that knows it is reachable
  (:meth:`HolePunch.set_directly_reachable`, from the host's reachability report) waits
  ``direct_grace`` for that dial before it starts hole punching: no punch when none is
  needed, and a stock A, which never dials directly, still gets its punch.
* **Both peers learn the outcome.** B with nothing to offer still opens the stream and sends
  an empty ``CONNECT``, so A fails at once with a reason instead of waiting in silence; A
  with nothing to offer answers with an empty one. A B that never starts, or never starts
  the next attempt, times A out.
* **Symmetric NATs fail fast.** When our NAT's mapping is known to depend on the
  destination (:meth:`HolePunch.set_mapping_endpoint_dependent`), no punch can work: we say
  so to the peer with an empty ``CONNECT`` and fail with :attr:`HolePunchFailure.SYMMETRIC_NAT`
  at once. When the peer's ``CONNECT`` shows the same of its own NAT (one IP with several
  ports, each seen by another observer) we fail with
  :attr:`HolePunchFailure.PEER_SYMMETRIC_NAT`. A connection reversal still runs.
* Up to ``max_attempts`` attempts, each on a fresh stream with a fresh round trip. Protocol
  failures end the hole punch at once; failed dials move on to the next attempt.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from multiaddr import Multiaddr

from ...exceptions import DecodeError, Libp2pError
from ...network.address_policy import AddressPolicy
from ...network.addrs import first_ip, is_circuit_addr, split_peer_id
from ...varint import encode_uvarint

__all__ = [
    "CONNECT",
    "MAX_ADDRS",
    "MAX_ATTEMPTS",
    "MAX_MESSAGE_SIZE",
    "MAX_PEER_ADDRS",
    "MAX_REDIALS",
    "PROTOCOL_ID",
    "START_TIMEOUT",
    "STREAM_TIMEOUT",
    "SYNC",
    "AttemptFailed",
    "ClaimInbound",
    "CloseStream",
    "Dial",
    "Failed",
    "HolePunch",
    "HolePunchAction",
    "HolePunchConfig",
    "HolePunchError",
    "HolePunchFailure",
    "HolePunchRole",
    "MalformedHolePunch",
    "OpenStream",
    "Redial",
    "ReleaseInbound",
    "Send",
    "Succeeded",
    "decode_hole_punch",
    "encode_hole_punch",
    "looks_endpoint_dependent",
    "punch_dial_timeout",
    "punch_handshake_timeout",
    "role_patience",
    "redial_pause",
    "redial_silence",
]

#: The protocol ID (libp2p specs, relay/DCUtR.md).
PROTOCOL_ID: Final = "/libp2p/dcutr"
#: Largest message accepted (go, rust and js: 4 KiB).
MAX_MESSAGE_SIZE: Final = 4096
#: Attempts per hole punch (go ``maxRetries``, rust, js ``retries``: 3).
MAX_ATTEMPTS: Final = 3
#: Time for one CONNECT/CONNECT/SYNC exchange (rust: 10 s for the handshake stream).
STREAM_TIMEOUT: Final = 10.0
#: How long A waits after identify for B's first CONNECT. B's may first try a plain direct
#: dial to A's advertised addresses and wait it out where a firewall drops it: go-libp2p for
#: 5 s, py-libp2p 0.8.1 for 10 s.
START_TIMEOUT: Final = 20.0
#: Addresses sent in one CONNECT (rust sends at most 20 candidates).
MAX_ADDRS: Final = 20
#: Addresses taken from a peer's CONNECT, the first ones in its order of preference. Each
#: is dialed at once, so a 4 KiB message of ~300 addresses would otherwise make us a port
#: scanner for whoever hole punches us (rust's peers send at most 20 either).
MAX_PEER_ADDRS: Final = MAX_ADDRS
#: Refused dials repeated per address and attempt. Two SYNs pass each other's NAT only when
#: they leave less than one one-way trip apart: from a few hundred microseconds of round
#: trip on, that takes a few refusals; at round trips of microseconds (two NATs in one
#: machine) it happens by chance, after a few hundred to several thousand (NAT lab: each
#: refusal then takes about 50 us). The cap bounds what a peer whose NAT never lets us in
#: costs the network: at most this many 60-byte SYNs per address and attempt, never faster
#: than one per refusal round trip.
MAX_REDIALS: Final = 10_000
#: ``HolePunch.Type`` values, fixed by the spec.
CONNECT: Final = 100
SYNC: Final = 300


class HolePunchRole(enum.Enum):
    """Which side of DCUtR we are on a relayed connection."""

    #: A: dialed through the relay; answers DCUtR; initiator on the direct connection.
    DIALER = "dialer"
    #: B: received the relayed connection; starts DCUtR; responder on the direct connection.
    LISTENER = "listener"


class HolePunchFailure(enum.Enum):
    """Why a hole punch failed (values follow the outcome names of hole-punch measurements)."""

    #: We had no address candidate to offer (no observed address, no usable listen address).
    NO_PUBLIC_ADDRESS = "no_public_address"
    #: The peer offered no address we could dial (it has none, or its NAT maps per
    #: destination and it knows it).
    PEER_NO_ADDRESS = "peer_no_address"
    #: Our NAT's mapping depends on the destination (a symmetric NAT): the address a peer
    #: observed is not the one a punch would leave from.
    SYMMETRIC_NAT = "symmetric_nat"
    #: The peer's CONNECT shows that its NAT's mapping depends on the destination.
    PEER_SYMMETRIC_NAT = "peer_symmetric_nat"
    #: ``/libp2p/dcutr`` could not be opened: the peer does not speak it, or refused it.
    NO_STREAM = "no_stream"
    #: The peer sent something DCUtR does not allow, or broke off the exchange.
    PROTOCOL_ERROR = "protocol_error"
    #: The peer did not answer the CONNECT/SYNC exchange in time, or never started one.
    TIMEOUT = "timeout"
    #: Every attempt's dials failed: a NAT in the way does not keep its port mapping
    #: (symmetric NAT) or filters what a punch needs.
    ALL_ATTEMPTS_FAILED = "all_attempts_failed"
    #: Our attempts failed and the peer had started DCUtR itself on that relayed connection,
    #: as if it had received it: the two sides disagree on who is B.
    PEER_ROLE_MISMATCH = "peer_role_mismatch"
    #: The relayed connection closed before the hole punch finished.
    RELAY_CLOSED = "relay_closed"


class HolePunchError(Libp2pError):
    """A hole punch (or one step of it) failed; its ``reason`` says why."""

    def __init__(self, reason: HolePunchFailure, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class MalformedHolePunch(HolePunchError, DecodeError):
    """A DCUtR message that does not decode or has no valid type."""

    def __init__(self, detail: str) -> None:
        super().__init__(HolePunchFailure.PROTOCOL_ERROR, detail)


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HolePunchConfig:
    """How the host hole punches (``HostConfig.hole_punching``; ``None`` turns DCUtR off)."""

    #: Which addresses we offer and dial. By default only loopback, link-local, unspecified
    #: and multicast IPs are left out; documentation and private ranges count (design §5).
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)
    #: Attempts before giving up (spec: 3).
    max_attempts: int = MAX_ATTEMPTS
    #: Time for one CONNECT/CONNECT/SYNC exchange on the relayed connection; also how long
    #: A waits for B to start its next attempt.
    stream_timeout: float = STREAM_TIMEOUT
    #: How long A waits after identify for B to start at all (see :data:`START_TIMEOUT`).
    start_timeout: float = START_TIMEOUT
    #: Time each attempt's dials may take; ``None`` adapts it to the measured round trip
    #: (see :func:`punch_dial_timeout`).
    dial_timeout: float | None = None
    #: As B, also dial A's advertised addresses plainly (works when A is not behind a NAT).
    connection_reversal: bool = True
    #: Time the connection reversal (and A's direct dial) may take.
    reversal_timeout: float = 2.0
    #: As A, also dial B's advertised addresses plainly once identify brought them: B may
    #: be reachable (a public host, a confirmed port mapping) and then no punch is needed.
    direct_dial: bool = True
    #: As B whose reachability report says peers can dial us directly
    #: (:meth:`HolePunch.set_directly_reachable`): wait this long for A's direct dial before
    #: hole punching (a stock A never dials directly, so the punch still comes).
    direct_grace: float = 3.0
    #: Seconds the relayed connection stays open once the direct one is ready and the
    #: relayed one carries no streams of ours or the peer's; streams on it (opened by either
    #: side, before the switch or after) keep it open until they end, within the relay's
    #: limits (:meth:`~libp2p.network.connection.Connection.close_when_idle`). ``None`` keeps it.
    relay_close_grace: float | None = 2.0
    #: Agent versions (prefixes, from identify) of peers known to take the spec's roles on
    #: a punched connection as B: with them A initiates at once instead of first seeing
    #: whether B proposes, which saves half a direct round trip. This implementation is one
    #: (a B that initiates only when A stays silent); an empty tuple checks every peer.
    spec_role_agents: tuple[str, ...] = ("trio-libp2p-nat/",)


def punch_dial_timeout(rtt: float) -> float:
    """How long one attempt's dials may take, given the relayed round-trip time.

    A punch that works completes within about one and a half direct round trips, which are
    no longer than relayed ones; the floor leaves room for one SYN retransmission (1 s in
    Linux) when both first SYNs were dropped, and the cap (js-libp2p's 5 s per attempt)
    bounds the time a symmetric NAT can cost.
    """
    return min(max(1.5, 10.0 * rtt), 5.0)


def redial_pause(refused_after: float, rng: random.Random, spacing: float = 0.000025) -> float:
    """The random pause before dialing again after a refused SYN.

    ``refused_after`` is how long the refused dial took: the round trip to whoever refused
    it, the peer's NAT. Two punch SYNs meet when they leave less than one one-way trip apart;
    each side's mapping is open for a round trip per SYN and closed while it pauses. So the
    pause is up to half that round trip (at most 50 ms): short enough that our mapping is
    mostly open, random so that two peers retrying on the same period drift into phase
    instead of missing each other for ever. ``spacing`` is the least mean pause (at round
    trips of microseconds, as between two NATs in one machine, the SYNs meet by chance, once
    in a few thousand: the sooner the next SYN, the sooner that comes).
    """
    upper = min(max(refused_after / 2, 2 * spacing), 0.05)
    return rng.uniform(0.0, upper)


@dataclass(frozen=True, slots=True)
class Redial:
    """How one punch dial goes on after refused or unanswered SYNs (the driver runs it).

    ``pauses()`` gives the function the dial loop asks after each refusal: the pause before
    the next SYN (:func:`redial_pause`), or None after ``max_refusals``. A SYN with no
    answer after ``silence`` seconds is sent again at once: its mapping stays open (closing
    a socket in SYN-SENT sends nothing), and a SYN a router dropped as invalid does not
    wait for the kernel's one-second retransmission.
    """

    max_refusals: int
    silence: float
    seed: int
    #: The least mean pause between refused SYNs (see :func:`redial_pause`).
    spacing: float = 0.000025

    def pauses(self) -> Callable[[int, float], float | None]:
        rng = random.Random(self.seed)

        def pause(refusals: int, took: float) -> float | None:
            if refusals > self.max_refusals:
                return None
            return redial_pause(took, rng, self.spacing)

        return pause


def punch_handshake_timeout(rtt: float, stream_timeout: float) -> float:
    """Time the handshakes on a punched connection may take: ten relayed round trips, at
    least 2 s, at most the exchange's ``stream_timeout``. A punched connection whose
    handshakes stall (a half-open leftover of a redial) must not hold up the attempt."""
    return min(max(2.0, 10 * rtt), stream_timeout)


def role_patience(rtt: float) -> float:
    """How long B waits on a punched connection for A to propose before B proposes itself
    (A then acts as a responder, as go-libp2p before v0.41 does): twice the relayed round
    trip, between 100 ms and 1 s. A that initiates proposes one direct round trip after
    the connection is up (when B's header reaches it), and the relayed round trip is rarely
    shorter than the direct one."""
    return min(max(2 * rtt, 0.1), 1.0)


def redial_silence(rtt: float) -> float:
    """How long a punch SYN may go unanswered before it is sent again: twice the relayed
    round trip (no shorter than the direct one), between 50 ms and 1 s."""
    return min(max(2 * rtt, 0.05), 1.0)


# -- codec ---------------------------------------------------------------------------------------


def encode_hole_punch(type_: int, addrs: Sequence[Multiaddr] = ()) -> bytes:
    """One length-prefixed ``HolePunch`` message."""
    from .pb import dcutr_pb2

    msg = dcutr_pb2.HolePunch(type=type_)  # type: ignore[arg-type]
    msg.ObsAddrs.extend(addr.to_bytes() for addr in list(addrs)[:MAX_ADDRS])
    body = msg.SerializeToString()
    return encode_uvarint(len(body)) + body


def decode_hole_punch(data: bytes) -> tuple[int, list[Multiaddr]]:
    """Decode a ``HolePunch`` body into its type and its dialable addresses.

    Addresses that do not decode, ``/p2p-circuit`` addresses and bare ``/p2p/<id>`` entries
    are skipped; a ``/p2p/<id>`` suffix is removed; at most :data:`MAX_PEER_ADDRS` are kept.
    A missing or unknown type is a :class:`MalformedHolePunch`.
    """
    from google.protobuf import message as pb_message

    from ...peer.record import decode_multiaddr
    from .pb import dcutr_pb2

    msg = dcutr_pb2.HolePunch()
    try:
        msg.ParseFromString(data)
    except pb_message.DecodeError as exc:
        raise MalformedHolePunch(f"undecodable DCUtR message: {exc}") from exc
    if not msg.HasField("type") or msg.type not in (CONNECT, SYNC):
        raise MalformedHolePunch("DCUtR message without a known type")
    addrs: list[Multiaddr] = []
    for raw in msg.ObsAddrs:
        addr = decode_multiaddr(raw)
        if addr is None or is_circuit_addr(addr):
            continue
        bare, _peer = split_peer_id(addr)
        if not str(bare) or bare in addrs:
            continue
        addrs.append(bare)
        if len(addrs) == MAX_PEER_ADDRS:
            break
    return msg.type, addrs


def _transport_key(addr: Multiaddr) -> tuple[str, str, str] | None:
    """``(ip, transport, port)`` of an IP address with a port, else None."""
    ip = first_ip(addr)
    if ip is None:
        return None
    parts = [(proto.name, value) for proto, value in addr.items()]
    if len(parts) < 2 or parts[1][0] not in ("tcp", "udp"):
        return None
    # Only plain TCP (QUIC and the like live on UDP and have other mappings).
    if parts[1][0] != "tcp" or len(parts) > 2:
        return None
    return str(ip), parts[1][0], str(parts[1][1])


def looks_endpoint_dependent(addrs: Sequence[Multiaddr]) -> bool:
    """True when a peer's addresses show a NAT that maps per destination.

    Behind an endpoint-independent NAT, every observer sees the same port for a peer's
    listen port; behind a symmetric one each observer sees another. A peer behind a NAT
    offers its own (LAN) address besides what observers saw of it; two or more TCP ports on
    one of the observed IPs then mean that observers disagree. A peer with no NAT in front
    of it (a public IPv6 address, typically) offers one IP of that family, and may still
    offer two ports on it: its listen port, and the port an observer saw its dials leave from
    when it does not dial from its listen port (js-libp2p): no evidence of a NAT at all. So
    only an IP version in which the peer offers more than one IP counts.
    """
    families: dict[bool, dict[str, set[str]]] = {}
    for addr in addrs:
        key = _transport_key(addr)
        if key is not None:
            family = families.setdefault(":" in key[0], {})
            family.setdefault(key[0], set()).add(key[2])
    return any(
        len(ips) >= 2 and any(len(ports) >= 2 for ports in ips.values())
        for ips in families.values()
    )


# -- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenStream:
    """B: open a fresh ``/libp2p/dcutr`` stream on the relayed connection."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` (one framed message) on the current DCUtR stream."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CloseStream:
    """Done with the current DCUtR stream: close it, or reset it when ``reset``."""

    reset: bool = False


@dataclass(frozen=True, slots=True)
class Dial:
    """Dial ``addr`` (again after refusals while ``redial`` says so); report a failure with
    ``dial_failed``; a connection reaches the machine as ``direct_connection``.

    ``initiator`` is our role in multistream-select, Noise and Yamux on the connection
    (A initiates, B responds; B's connection reversal initiates). ``from_listen_port``:
    leave from the listen port (a punch) or from an ephemeral one (the reversal).
    ``connect_by`` bounds the TCP connect; the handshakes after it get their own time.
    ``role_patience`` None: the role is fixed (the reversal, or A's punch toward a B known
    to respond, see :attr:`HolePunchConfig.spec_role_agents`); otherwise (a punch) it is
    our preferred role, settled with the peer: as initiator we respond to a peer that
    proposes first, as responder we initiate once the peer has been silent this long
    (see the module's notes on roles).
    """

    addr: Multiaddr
    attempt: int
    initiator: bool
    from_listen_port: bool
    connect_by: float
    role_patience: float | None = None
    #: For a punch: dial again after refusals and silence (see :class:`Redial`); None: once.
    redial: Redial | None = None
    #: Time the handshakes (multistream, Noise, Yamux) may take once the TCP connection is
    #: up; None: the exchange's own ``stream_timeout``.
    handshake_within: float | None = None


@dataclass(frozen=True, slots=True)
class ClaimInbound:
    """A: a connection from one of ``sources`` that reaches our listener is B's punch;
    upgrade it in A's role, as for a punch :class:`Dial` (initiating unless B proposes)."""

    sources: tuple[Multiaddr, ...]
    #: As :attr:`Dial.handshake_within`.
    handshake_within: float | None = None


@dataclass(frozen=True, slots=True)
class ReleaseInbound:
    """A: stop claiming inbound connections."""


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """Report: one attempt's dials failed; another attempt may follow."""

    attempt: int
    detail: str


@dataclass(frozen=True, slots=True)
class Succeeded:
    """Report: a direct connection replaced the relayed one.

    ``attempt`` is 1..n for a hole punch, 0 for a connection reversal (or any direct
    connection that was not a punch). The machine is finished.
    """

    attempt: int
    rtt: float | None


@dataclass(frozen=True, slots=True)
class Failed:
    """Report: no direct connection came of this relayed connection. The machine is
    finished."""

    reason: HolePunchFailure
    detail: str
    attempts: int


HolePunchAction = (
    OpenStream
    | Send
    | CloseStream
    | Dial
    | ClaimInbound
    | ReleaseInbound
    | AttemptFailed
    | Succeeded
    | Failed
)


# -- the state machine ---------------------------------------------------------------------------


class _Phase(enum.Enum):
    #: A: waiting for B to open a DCUtR stream (the first or the next attempt).
    WAITING_FOR_PEER = "waiting_for_peer"
    #: B: stream requested, CONNECT not sent yet.
    OPENING = "opening"
    #: CONNECT sent (B) or received (A): waiting for the answer (B) or SYNC (A).
    EXCHANGE = "exchange"
    #: B: SYNC sent; dialing at the timer.
    SYNC_WAIT = "sync_wait"
    #: Dials under way.
    DIALING = "dialing"
    #: All dials failed; a connection under way may still come.
    LINGERING = "lingering"
    #: The punch has failed, with the connection reversal still under way.
    FAILING = "failing"
    #: The outcome was reported.
    DONE = "done"


class _DialState:
    __slots__ = ("dial", "done")

    def __init__(self, dial: Dial) -> None:
        self.dial = dial
        self.done = False


class HolePunch:
    """DCUtR on one relayed connection, in one role; no I/O.

    Make it when the relayed connection opens and call :meth:`start`. Feed it the events
    below as they happen, carry out :meth:`actions` after each call, and call
    :meth:`handle_timer` when :meth:`get_timer` is due. Once :attr:`finished`, it has
    reported exactly one :class:`Succeeded` or :class:`Failed` and wants nothing more;
    later events are ignored.

    ``our_addrs`` gives our current address candidates whenever a CONNECT is built (they
    change as peers observe us); ``rng`` makes the redial pauses reproducible in tests;
    ``peer`` names the peer in failure details.
    """

    def __init__(
        self,
        role: HolePunchRole,
        *,
        our_addrs: Callable[[], Sequence[Multiaddr]],
        config: HolePunchConfig | None = None,
        rng: random.Random | None = None,
        peer: str = "the peer",
    ) -> None:
        self.role = role
        self._peer = peer
        self.config = config or HolePunchConfig()
        self.policy = self.config.address_policy
        self._our_addrs = our_addrs
        self._rng = rng or random.Random()
        self._actions: list[HolePunchAction] = []
        self._phase = _Phase.WAITING_FOR_PEER if role is HolePunchRole.DIALER else _Phase.OPENING
        #: The attempt in progress (1-based); 0 before the first.
        self.attempt = 0
        #: The round trip measured by the last exchange.
        self.rtt: float | None = None
        self._sent_at: float | None = None
        self._peer_addrs: list[Multiaddr] = []
        self._sent_no_addrs = False
        self._dials: dict[Multiaddr, _DialState] = {}
        self._deadline: float | None = None  # the phase's own timer
        self._mapping_dependent = False
        self._mapping_reason = ""
        self._peer_started = False
        # Identify on the relayed connection: None until it finished.
        self._identified: bool | None = None
        self._peer_speaks_dcutr = False
        self._peer_agent: str | None = None
        self._peer_advertised: list[Multiaddr] = []
        # Why B's stream broke, decided once identify tells whether the peer speaks DCUtR.
        self._broken_detail: str | None = None
        # B's connection reversal: "waiting" for identify, "dialing", "done".
        self._reversal = "off"
        self._reversal_deadline: float | None = None
        self._reversal_dials: dict[Multiaddr, bool] = {}  # addr -> finished
        self._failure: Failed | None = None
        self.outcome: Succeeded | Failed | None = None
        # B reachable directly: the first attempt waits until this time for A's direct dial.
        self._directly_reachable = False
        self._grace_deadline: float | None = None

    # -- the driver's side ------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the outcome was reported."""
        return self.outcome is not None

    @property
    def peer_addrs(self) -> tuple[Multiaddr, ...]:
        """The peer's addresses from its CONNECT that we may dial (those its punch comes
        from: its listen port as its NAT maps it)."""
        return tuple(self._peer_addrs)

    @property
    def phase(self) -> str:
        """The current phase's name (for logs and tests)."""
        return self._phase.value

    @property
    def wants_message(self) -> bool:
        """True while a message on the current DCUtR stream is expected."""
        return self._phase is _Phase.EXCHANGE and self._broken_detail is None

    def actions(self) -> list[HolePunchAction]:
        """The actions to carry out now, in order (each returned once)."""
        out, self._actions = self._actions, []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due, or None."""
        if self.finished:
            return None
        timers = (self._deadline, self._reversal_deadline, self._grace_deadline)
        return min((t for t in timers if t is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """Act on every timer due at ``now``."""
        if self.finished:
            return
        if self._grace_deadline is not None and now >= self._grace_deadline:
            self._grace_deadline = None
            self._open_attempt(now)
        if self._reversal_deadline is not None and now >= self._reversal_deadline:
            self._reversal_deadline = None
            self._reversal_finished()
            if self.finished:
                return
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self._phase_timeout(now)

    # -- events -----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The relayed connection is open: B opens its first stream; A waits for B."""
        if self.role is HolePunchRole.LISTENER:
            if self._directly_reachable and self.config.direct_grace > 0:
                # A can dial us: give its direct dial the time before punching.
                self._grace_deadline = now + self.config.direct_grace
            else:
                self._open_attempt(now)
            if self.config.connection_reversal:
                self._reversal = "waiting"
                self._reversal_deadline = now + self.config.stream_timeout
                if self._identified:
                    self._start_reversal(now)

    def set_directly_reachable(self, reachable: bool) -> None:
        """What our reachability report says (before :meth:`start`): True when peers can
        dial us directly, so that B waits ``direct_grace`` for A's direct dial first."""
        self._directly_reachable = reachable

    def set_mapping_endpoint_dependent(self, dependent: bool, reason: str = "") -> None:
        """What we know of our own NAT: True when its mapping depends on the destination
        (``reason``, the observations that show it, goes into the failure's detail)."""
        self._mapping_dependent = dependent
        self._mapping_reason = reason

    def identified(
        self,
        now: float,
        *,
        speaks_dcutr: bool,
        addrs: Sequence[Multiaddr],
        agent_version: str | None = None,
    ) -> None:
        """Identify finished on the relayed connection: the peer's protocols and addresses
        (and its agent version, see :attr:`HolePunchConfig.spec_role_agents`)."""
        if self.finished or self._identified is not None:
            return
        self._identified = True
        self._peer_speaks_dcutr = speaks_dcutr
        self._peer_agent = agent_version
        self._peer_advertised = self.policy.filter([a for a in addrs if not is_circuit_addr(a)])
        if self.role is HolePunchRole.DIALER:
            if self._phase is _Phase.WAITING_FOR_PEER and self.attempt == 0:
                if not speaks_dcutr:
                    self._fail_now(
                        HolePunchFailure.NO_STREAM, f"{self._peer} does not speak {PROTOCOL_ID}"
                    )
                    return
                # B starts soon after identify (after a direct dial of its own, for some);
                # one that never does is reported instead of leaving us waiting in silence.
                self._deadline = now + self.config.start_timeout
            if self.config.direct_dial and self._reversal == "off":
                self._start_reversal(now)
            return
        if self._broken_detail is not None:
            self._decide_broken(now)
            if self.finished:
                return
        if self._reversal == "waiting":
            self._start_reversal(now)

    def stream_opened(self, now: float) -> None:
        """B: the stream asked for by :class:`OpenStream` is open (lazily: the CONNECT may
        travel with the protocol proposal)."""
        if self.finished or self._phase is not _Phase.OPENING:
            return
        ours = self.policy.filter(list(self._our_addrs()))
        if self._mapping_dependent:
            self._give_up_symmetric(now)
            return
        self._emit(Send(encode_hole_punch(CONNECT, ours)))
        if not ours:
            # Tell A (an empty CONNECT) so that it fails at once too.
            self._emit(CloseStream())
            self._fail(
                HolePunchFailure.NO_PUBLIC_ADDRESS,
                "we have no address a peer could dial (no observed address yet, and no "
                "listen address the address policy accepts)",
                now,
            )
            return
        self._sent_at = now
        self._phase = _Phase.EXCHANGE
        self._deadline = now + self.config.stream_timeout

    def stream_failed(self, now: float, *, not_supported: bool, detail: str) -> None:
        """B: the stream could not be opened (``not_supported``: the peer said ``na``)."""
        if self.finished or self._phase not in (_Phase.OPENING, _Phase.EXCHANGE):
            return
        if not_supported:
            self._fail(
                HolePunchFailure.NO_STREAM, f"{self._peer} does not speak {PROTOCOL_ID}", now
            )
            return
        self._broken(now, detail)

    def stream_accepted(self, now: float) -> bool:
        """A: the peer opened a DCUtR stream. False: refuse it (reset); B does not answer
        DCUtR, and a finished machine wants no more."""
        if self.role is HolePunchRole.LISTENER:
            self._peer_started = True
            return False
        if self.finished or self.attempt >= self.config.max_attempts:
            return False
        if self._phase in (_Phase.DIALING, _Phase.LINGERING):
            # B gave up on this attempt before we did and starts the next one.
            self._emit(AttemptFailed(self.attempt, "the peer started the next attempt"))
            self._emit(ReleaseInbound())
            self._dials.clear()
        elif self._phase is not _Phase.WAITING_FOR_PEER:
            return False
        self.attempt += 1
        self._phase = _Phase.EXCHANGE
        self._sent_at = None
        self._deadline = now + self.config.stream_timeout
        return True

    def message(self, data: bytes, now: float) -> None:
        """One framed-off DCUtR message arrived on the current stream."""
        if self.finished or self._phase is not _Phase.EXCHANGE:
            return
        try:
            type_, addrs = decode_hole_punch(data)
        except MalformedHolePunch as exc:
            self._emit(CloseStream(reset=True))
            self._fail(exc.reason, exc.detail, now)
            return
        if self.role is HolePunchRole.LISTENER:
            self._b_on_answer(type_, addrs, now)
        elif self._sent_at is None:
            self._a_on_connect(type_, addrs, now)
        else:
            self._a_on_sync(type_, now)

    def stream_broken(self, now: float, detail: str) -> None:
        """The current DCUtR stream was reset or ended before the exchange finished."""
        if self.finished or self._phase not in (_Phase.OPENING, _Phase.EXCHANGE):
            return
        self._emit(CloseStream(reset=True))
        if self.role is HolePunchRole.LISTENER:
            self._broken(now, detail)
            return
        if self._sent_no_addrs:
            # B had nothing of ours to dial and gave up: say why.
            self._fail(
                HolePunchFailure.NO_PUBLIC_ADDRESS,
                "we had no address to offer the peer (do we listen on TCP? no observed "
                "address yet, and no listen address the address policy accepts)",
                now,
            )
            return
        self._fail(HolePunchFailure.PROTOCOL_ERROR, f"the peer broke off: {detail}", now)

    def dial_failed(self, addr: Multiaddr, attempt: int, now: float, detail: str = "") -> None:
        """A dial failed otherwise (timeout, unreachable, the handshakes failed)."""
        if attempt == 0:
            if self._reversal_dials.get(addr) is False:
                self._reversal_dials[addr] = True
                if all(self._reversal_dials.values()):
                    self._reversal_finished()
            return
        state = self._current_dial(addr, attempt)
        if state is not None:
            self._dial_over(state, now)

    def direct_connection(self, now: float, *, punched: bool) -> None:
        """A direct connection to the peer is ready (from any source).

        It counts as this attempt's punch when it came of a punch (``punched``: one of the
        attempt's :class:`Dial` s from the listen port, or a :class:`ClaimInbound` ed
        connection) while the attempt was dialing; otherwise (B's reversal, a dial of the
        peer's own) it is reported as attempt 0.
        """
        if self.finished:
            return
        # B's punch may land before B's own dial leaves (A's SYN reaches B's listener when
        # nothing filters in front of B): B counts from its SYNC on.
        punching = self._phase in (_Phase.SYNC_WAIT, _Phase.DIALING, _Phase.LINGERING)
        attempt = self.attempt if punching and punched else 0
        self._dials.clear()
        self._grace_deadline = None
        if self.role is HolePunchRole.DIALER and self._phase in (
            _Phase.DIALING,
            _Phase.LINGERING,
        ):
            self._emit(ReleaseInbound())
        self._finish(Succeeded(attempt, self.rtt if attempt else None))

    def relay_closed(self, now: float) -> None:
        """The relayed connection closed."""
        if self.finished:
            return
        self._reversal = "done"
        self._reversal_deadline = None
        self._finish(
            Failed(HolePunchFailure.RELAY_CLOSED, "the relayed connection closed", self.attempt)
        )

    # -- B ----------------------------------------------------------------------------------

    def _open_attempt(self, now: float) -> None:
        self.attempt += 1
        self._phase = _Phase.OPENING
        self._sent_at = None
        self._broken_detail = None
        self._deadline = now + self.config.stream_timeout
        self._emit(OpenStream(self.attempt))

    def _b_on_answer(self, type_: int, addrs: list[Multiaddr], now: float) -> None:
        if self._sent_at is None:
            return  # an answer before we sent CONNECT cannot be (the stream is ours)
        if type_ != CONNECT:
            self._unexpected(type_, "CONNECT", now)
            return
        self.rtt = max(now - self._sent_at, 0.0)
        self._sent_at = None
        dialable = self._dialable(addrs, now)
        if dialable is None:
            return
        self._peer_addrs = dialable
        self._emit(Send(encode_hole_punch(SYNC)))
        self._emit(CloseStream())
        self._phase = _Phase.SYNC_WAIT
        self._deadline = now + self.rtt / 2

    def _broken(self, now: float, detail: str) -> None:
        """B's stream broke before A answered: a peer without DCUtR (``na``, then a reset
        that can overtake it) or one that gave up. Identify tells which."""
        self._broken_detail = detail
        self._phase = _Phase.EXCHANGE
        if self._identified is None:
            self._deadline = now + self.config.stream_timeout
            return
        self._decide_broken(now)

    def _decide_broken(self, now: float) -> None:
        detail = self._broken_detail or "the stream broke"
        self._broken_detail = None
        if not self._peer_speaks_dcutr:
            self._fail(
                HolePunchFailure.NO_STREAM, f"{self._peer} does not speak {PROTOCOL_ID}", now
            )
        else:
            self._fail(HolePunchFailure.PROTOCOL_ERROR, f"the peer broke off: {detail}", now)

    def _start_reversal(self, now: float) -> None:
        self._reversal_deadline = None
        if not self._peer_advertised:
            self._reversal_finished()
            return
        self._reversal = "dialing"
        connect_by = now + self.config.reversal_timeout
        self._reversal_deadline = connect_by + self.config.stream_timeout
        for addr in self._peer_advertised:
            self._reversal_dials[addr] = False
            self._emit(Dial(addr, 0, True, False, connect_by))

    def _reversal_finished(self) -> None:
        self._reversal = "done"
        self._reversal_deadline = None
        if self._failure is not None:
            self._finish(self._failure)

    # -- A ----------------------------------------------------------------------------------

    def _a_on_connect(self, type_: int, addrs: list[Multiaddr], now: float) -> None:
        if type_ != CONNECT:
            self._unexpected(type_, "CONNECT", now)
            return
        dialable = self._dialable(addrs, now)
        if dialable is None:
            return
        if self._mapping_dependent:
            self._give_up_symmetric(now)
            return
        self._peer_addrs = dialable
        ours = self.policy.filter(list(self._our_addrs()))
        self._sent_no_addrs = not ours
        self._emit(Send(encode_hole_punch(CONNECT, ours)))
        self._sent_at = now

    def _a_on_sync(self, type_: int, now: float) -> None:
        assert self._sent_at is not None
        if type_ != SYNC:
            self._unexpected(type_, "SYNC", now)
            return
        self.rtt = max(now - self._sent_at, 0.0)
        self._emit(CloseStream())
        self._start_dials(now)

    # -- both -------------------------------------------------------------------------------

    def _dialable(self, addrs: list[Multiaddr], now: float) -> list[Multiaddr] | None:
        """The peer's addresses we can punch to; None (and the failure) when there are none
        or they show that the peer's NAT maps per destination."""
        dialable = self.policy.filter(addrs)
        if not dialable:
            self._emit(CloseStream(reset=True))
            self._fail(
                HolePunchFailure.PEER_NO_ADDRESS,
                "the peer offered no address we could dial (it has none, or it knows its NAT "
                "maps each destination to another port)",
                now,
            )
            return None
        if looks_endpoint_dependent(dialable):
            self._emit(CloseStream(reset=True))
            self._fail(
                HolePunchFailure.PEER_SYMMETRIC_NAT,
                "the peer offered several ports on one address, each what another observer "
                f"saw: its NAT maps per destination ({', '.join(map(str, dialable))})",
                now,
            )
            return None
        return dialable

    def _give_up_symmetric(self, now: float) -> None:
        """Our NAT maps per destination: tell the peer (an empty CONNECT) and fail."""
        self._emit(Send(encode_hole_punch(CONNECT)))
        self._emit(CloseStream())
        self._fail(
            HolePunchFailure.SYMMETRIC_NAT,
            "our NAT maps each destination to another port, so a punch cannot reuse the "
            f"mapping the peer would dial ({self._mapping_reason or 'observers disagree'})",
            now,
        )

    def _unexpected(self, type_: int, wanted: str, now: float) -> None:
        self._emit(CloseStream(reset=True))
        self._fail(
            HolePunchFailure.PROTOCOL_ERROR, f"expected {wanted}, got message type {type_}", now
        )

    def _start_dials(self, now: float) -> None:
        rtt = self.rtt or 0.0
        timeout = self.config.dial_timeout or punch_dial_timeout(rtt)
        a = self.role is HolePunchRole.DIALER
        patience: float | None = role_patience(rtt)
        agent = self._peer_agent or ""
        if a and any(agent.startswith(p) for p in self.config.spec_role_agents if p):
            patience = None  # B is known to respond: A's role is fixed, no check
        self._phase = _Phase.DIALING
        self._deadline = None
        self._dials = {}
        handshake = punch_handshake_timeout(rtt, self.config.stream_timeout)
        if a:
            self._emit(ClaimInbound(tuple(self._peer_addrs), handshake))
        for addr in self._peer_addrs:
            redial = Redial(MAX_REDIALS, redial_silence(rtt), self._rng.getrandbits(64))
            dial = Dial(addr, self.attempt, a, True, now + timeout, patience, redial, handshake)
            self._dials[addr] = _DialState(dial)
            self._emit(dial)

    def _current_dial(self, addr: Multiaddr, attempt: int) -> _DialState | None:
        if self.finished or self._phase is not _Phase.DIALING or attempt != self.attempt:
            return None
        state = self._dials.get(addr)
        if state is None or state.done:
            return None
        return state

    def _dial_over(self, state: _DialState, now: float) -> None:
        state.done = True
        if all(s.done for s in self._dials.values()):
            # A connection whose handshakes are under way (ours or the peer's) may still come.
            self._phase = _Phase.LINGERING
            self._deadline = now + max(0.5, 2 * (self.rtt or 0.0))

    def _phase_timeout(self, now: float) -> None:
        phase = self._phase
        if phase is _Phase.SYNC_WAIT:
            self._start_dials(now)
        elif phase is _Phase.LINGERING:
            self._attempt_failed(now)
        elif phase is _Phase.WAITING_FOR_PEER:
            self._fail(
                HolePunchFailure.TIMEOUT,
                f"the peer did not start {'another attempt' if self.attempt else PROTOCOL_ID} "
                f"within "
                f"{self.config.stream_timeout if self.attempt else self.config.start_timeout:g}"
                " s",
                now,
            )
        elif phase in (_Phase.OPENING, _Phase.EXCHANGE):
            if self._broken_detail is not None:
                # Identify never came to say whether the peer speaks DCUtR.
                self._identified = True
                self._decide_broken(now)
                return
            self._emit(CloseStream(reset=True))
            what = "answer to CONNECT" if self.role is HolePunchRole.LISTENER else "SYNC"
            self._fail(
                HolePunchFailure.TIMEOUT,
                f"no {what} within {self.config.stream_timeout:g} s",
                now,
            )
        elif phase is _Phase.FAILING:
            # A's grace for B's reversal ran out.
            self._reversal = "done"
            if self._failure is not None:
                self._finish(self._failure)

    def _attempt_failed(self, now: float) -> None:
        addrs = ", ".join(map(str, self._peer_addrs))
        timeout = self.config.dial_timeout or punch_dial_timeout(self.rtt or 0.0)
        detail = f"no direct connection to {addrs} in {timeout:.1f} s"
        self._dials.clear()
        self._emit(AttemptFailed(self.attempt, detail))
        if self.role is HolePunchRole.DIALER:
            self._emit(ReleaseInbound())
        if self.attempt >= self.config.max_attempts:
            self._fail(
                HolePunchFailure.ALL_ATTEMPTS_FAILED,
                f"{self.attempt} attempts failed; last: {detail}",
                now,
            )
        elif self.role is HolePunchRole.LISTENER:
            self._open_attempt(now)
        else:
            self._phase = _Phase.WAITING_FOR_PEER
            self._deadline = now + self.config.stream_timeout

    def _fail(self, reason: HolePunchFailure, detail: str, now: float) -> None:
        """The punch failed; report it once a connection reversal under way has ended
        (B), or after B's reversal had its time to reach us (A)."""
        if self.role is HolePunchRole.LISTENER and self._peer_started:
            detail = (
                "the peer started DCUtR itself, as if it had received the relayed connection "
                f"(our run: {reason.value}: {detail})"
            )
            reason = HolePunchFailure.PEER_ROLE_MISMATCH
        failure = Failed(reason, detail, self.attempt)
        self._dials.clear()
        self._deadline = None
        self._failure = failure
        self._phase = _Phase.FAILING
        if self.role is HolePunchRole.LISTENER:
            if self._reversal in ("off", "done"):
                self._finish(failure)
            return
        # A: B may have given up on the exchange because its connection reversal is
        # getting through, or may still try it: give that the time B gives it. When B
        # tried every attempt, or never started, there is nothing more to come.
        if reason in (HolePunchFailure.ALL_ATTEMPTS_FAILED, HolePunchFailure.TIMEOUT) or (
            reason is HolePunchFailure.NO_STREAM
        ):
            self._finish(failure)
            return
        self._deadline = now + self.config.reversal_timeout

    def _fail_now(self, reason: HolePunchFailure, detail: str) -> None:
        self._finish(Failed(reason, detail, self.attempt))

    def _finish(self, outcome: Succeeded | Failed) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        self._phase = _Phase.DONE
        self._deadline = None
        self._reversal_deadline = None
        self._grace_deadline = None
        self._dials.clear()
        self._emit(outcome)

    def _emit(self, action: HolePunchAction) -> None:
        self._actions.append(action)
