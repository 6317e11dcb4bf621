"""DCUtR (``/libp2p/dcutr``): turn a relayed connection into a direct one by hole punching.

Theory of operation (libp2p specs ``relay/DCUtR.md``; the spec's names, which differ from the
relay's):

* **A** dialed **B** through a relay, so A holds an *outbound* relayed connection and B an
  *inbound* one. Both listen on TCP and both dial from their listen port (the transport's port
  reuse), so the address a relay or any other peer observed for them is the NAT mapping a punch
  can reuse.
* **B starts** as soon as the relayed connection opens (nothing polls; waiting for identify
  would cost a relayed round trip, and a peer without DCUtR refuses the stream anyway).
  Beside the attempts, once identify has brought A's advertised addresses, B also dials them
  plainly from an ephemeral port ("connection reversal"), which is all it takes when A is
  not behind a NAT at all.
* One attempt: B opens ``/libp2p/dcutr`` on the relayed connection and sends
  ``CONNECT{its address candidates}``; A answers ``CONNECT{its own}``; B measures the round
  trip, sends ``SYNC`` and waits half of it; A dials every address of B's as soon as SYNC
  arrives, B dials every address of A's when its timer fires. The two SYNs cross in the
  network and each NAT sees the other's SYN as the answer to its own: one TCP connection by
  *simultaneous open*, on which both sides called ``connect()``.
* Roles on that connection are fixed by the spec, not by the socket: **A is the initiator**
  of multistream-select, Noise and Yamux (odd stream IDs); **B upgrades its own dialed socket
  as the responder**. Where B's SYN instead lands on A's listener, or A's on B's (no NAT in
  the way, as on loopback), the accepted connection has the same roles, and each side takes
  whichever direct connection to the peer appears first.
* Up to :data:`MAX_ATTEMPTS` attempts, each on a fresh stream with a fresh round-trip time.
  Protocol failures (no stream, a malformed or late answer, no addresses) end the hole punch
  at once; failed dials move on to the next attempt.
* On success new streams go to the direct connection (the swarm prefers it), and the relayed
  connection is closed after :attr:`HolePunchConfig.relay_close_grace` seconds. Both sides
  publish one :class:`HolePunchSucceeded` or one :class:`HolePunchFailed`, whose
  :class:`HolePunchFailure` reason names what went wrong in the words hole-punching
  measurement tools use.

The attempt logic itself (:class:`HolePunchInitiator` for B, :class:`HolePunchResponder` for
A) is I/O-free: it takes bytes and the current time and returns bytes, deadlines and the
addresses to dial. :class:`DcutrService` is the trio driver the host runs.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

import trio
from multiaddr import Multiaddr

from ...events import PeerIdentified
from ...exceptions import (
    DecodeError,
    Libp2pError,
    ProtocolNotSupported,
    TransportError,
)
from ...io import BufferedStream
from ...network.address_policy import AddressPolicy
from ...network.addrs import is_circuit_addr, split_peer_id
from ...network.connection import Connection, Direction, NetStream
from ...network.interfaces import EventPublisher, ObservesConnections, UpgradesStreams
from ...peer.id import PeerID
from ...transport.tcp import TcpStream
from ...varint import encode_uvarint

if TYPE_CHECKING:
    from ...network.connection import StreamHandler

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_MESSAGE_SIZE",
    "MAX_PEER_ADDRS",
    "PROTOCOL_ID",
    "DcutrService",
    "HolePunchHost",
    "HolePunchAttemptFailed",
    "HolePunchConfig",
    "HolePunchError",
    "HolePunchFailed",
    "HolePunchFailure",
    "HolePunchInitiator",
    "HolePunchResponder",
    "HolePunchRole",
    "HolePunchSucceeded",
    "MalformedHolePunch",
    "decode_hole_punch",
    "encode_hole_punch",
    "punch_dial_timeout",
]

logger = logging.getLogger(__name__)

#: The protocol ID (libp2p specs, relay/DCUtR.md).
PROTOCOL_ID: Final = "/libp2p/dcutr"
#: Largest message accepted (go, rust and js: 4 KiB).
MAX_MESSAGE_SIZE: Final = 4096
#: Attempts per hole punch (go ``maxRetries``, rust, js ``retries``: 3).
MAX_ATTEMPTS: Final = 3
#: Time for one CONNECT/CONNECT/SYNC exchange (rust: 10 s for the handshake stream).
STREAM_TIMEOUT: Final = 10.0
#: Addresses sent in one CONNECT (rust sends at most 20 candidates).
MAX_ADDRS: Final = 20
#: Addresses taken from a peer's CONNECT, the first ones in its order of preference. Each
#: is dialed at once, so a 4 KiB message of ~300 addresses would otherwise make us a port
#: scanner for whoever hole punches us (rust's peers send at most 20 either).
MAX_PEER_ADDRS: Final = MAX_ADDRS
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
    #: The peer offered no address we could dial.
    PEER_NO_ADDRESS = "peer_no_address"
    #: ``/libp2p/dcutr`` could not be opened: the peer does not speak it, or refused it.
    NO_STREAM = "no_stream"
    #: The peer sent something DCUtR does not allow.
    PROTOCOL_ERROR = "protocol_error"
    #: The peer did not answer the CONNECT/SYNC exchange in time.
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


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HolePunchSucceeded:
    """A direct connection to ``peer`` replaced a relayed one."""

    peer: PeerID
    role: HolePunchRole
    #: The direct connection (new streams go here).
    connection: Connection
    #: The relayed connection it replaces (closed after the grace period).
    relayed: Connection
    #: The remote address of the direct connection.
    direct_addr: Multiaddr | None
    #: 1..3 for a hole punch; 0 when B's plain dial to A (connection reversal) did it.
    attempt: int
    #: Seconds from the relayed connection opening to the direct one being ready.
    elapsed: float
    #: Round-trip time over the relay measured by the last CONNECT exchange, if any.
    rtt: float | None


@dataclass(frozen=True, slots=True)
class HolePunchFailed:
    """No direct connection to ``peer`` came of its relayed connection."""

    peer: PeerID
    role: HolePunchRole
    relayed: Connection
    reason: HolePunchFailure
    #: Attempts made (0 when it failed before the first CONNECT).
    attempts: int
    #: Seconds from the relayed connection opening to giving up.
    elapsed: float
    #: A human-readable explanation.
    detail: str


@dataclass(frozen=True, slots=True)
class HolePunchAttemptFailed:
    """One attempt's dials failed; another attempt may follow."""

    peer: PeerID
    role: HolePunchRole
    attempt: int
    detail: str


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HolePunchConfig:
    """How the host hole punches (``HostConfig.hole_punching``; ``None`` turns DCUtR off)."""

    #: Which addresses we offer and dial. By default only loopback, link-local, unspecified
    #: and multicast IPs are left out; documentation and private ranges count (design §5).
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)
    #: Attempts before giving up (spec: 3).
    max_attempts: int = MAX_ATTEMPTS
    #: Time for one CONNECT/CONNECT/SYNC exchange on the relayed connection.
    stream_timeout: float = STREAM_TIMEOUT
    #: Time each attempt's dials may take; ``None`` adapts it to the measured round trip
    #: (see :func:`punch_dial_timeout`).
    dial_timeout: float | None = None
    #: As B, first dial A's advertised addresses plainly (works when A is not behind a NAT).
    connection_reversal: bool = True
    #: Time the connection reversal may take.
    reversal_timeout: float = 2.0
    #: Seconds the relayed connection stays open after the direct one is ready, so streams
    #: already running on it can finish. ``None`` keeps it open.
    relay_close_grace: float | None = 2.0


def punch_dial_timeout(rtt: float) -> float:
    """How long one attempt's dials may take, given the relayed round-trip time.

    A punch that works completes within about one and a half direct round trips, which are
    no longer than relayed ones; the floor leaves room for one SYN retransmission (1 s in
    Linux) when both first SYNs were dropped, and the cap (js-libp2p's 5 s per attempt)
    bounds the time a symmetric NAT can cost.
    """
    return min(max(1.5, 10.0 * rtt), 5.0)


# -- codec ---------------------------------------------------------------------------------------


def encode_hole_punch(type_: int, addrs: list[Multiaddr] | tuple[Multiaddr, ...] = ()) -> bytes:
    """One length-prefixed ``HolePunch`` message."""
    from .pb import dcutr_pb2

    msg = dcutr_pb2.HolePunch(type=type_)  # type: ignore[arg-type]
    msg.ObsAddrs.extend(addr.to_bytes() for addr in addrs[:MAX_ADDRS])
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


# -- I/O-free cores ------------------------------------------------------------------------------


class HolePunchInitiator:
    """B's attempt logic: CONNECT out, CONNECT back, RTT, SYNC, when to dial, retries.

    For each attempt: :meth:`start_attempt` gives the CONNECT to send; :meth:`on_message`
    takes A's answer and gives the SYNC to send, the time to dial at (``now + rtt/2``) and
    A's addresses; after failed dials :meth:`attempt_failed` says whether to go again.
    """

    def __init__(
        self, *, policy: AddressPolicy | None = None, max_attempts: int = MAX_ATTEMPTS
    ) -> None:
        self.policy = policy or AddressPolicy()
        self.max_attempts = max_attempts
        #: The attempt in progress (1-based); 0 before the first.
        self.attempt = 0
        #: The round trip measured by the last exchange.
        self.rtt: float | None = None
        self._sent_at: float | None = None

    def start_attempt(self, our_addrs: list[Multiaddr], now: float) -> bytes:
        """Begin the next attempt; returns the CONNECT message to send."""
        if self.attempt >= self.max_attempts:
            raise HolePunchError(
                HolePunchFailure.ALL_ATTEMPTS_FAILED, f"{self.attempt} attempts made"
            )
        addrs = self.policy.filter(our_addrs)
        if not addrs:
            raise HolePunchError(
                HolePunchFailure.NO_PUBLIC_ADDRESS,
                "we have no address a peer could dial (no observed address yet, and no "
                "listen address the address policy accepts)",
            )
        self.attempt += 1
        self._sent_at = now
        return encode_hole_punch(CONNECT, addrs)

    def on_message(self, data: bytes, now: float) -> tuple[bytes, float, list[Multiaddr]]:
        """Take A's CONNECT; returns ``(SYNC message, dial at, A's addresses)``."""
        if self._sent_at is None:
            raise HolePunchError(HolePunchFailure.PROTOCOL_ERROR, "no CONNECT was sent")
        type_, addrs = decode_hole_punch(data)
        if type_ != CONNECT:
            raise HolePunchError(
                HolePunchFailure.PROTOCOL_ERROR, f"expected CONNECT, got message type {type_}"
            )
        rtt = max(now - self._sent_at, 0.0)
        self.rtt = rtt
        self._sent_at = None
        addrs = self.policy.filter(addrs)
        if not addrs:
            raise HolePunchError(
                HolePunchFailure.PEER_NO_ADDRESS, "the peer sent no address we could dial"
            )
        return encode_hole_punch(SYNC), now + rtt / 2, addrs

    def attempt_failed(self) -> bool:
        """Record that this attempt's dials failed; True if another attempt is allowed."""
        return self.attempt < self.max_attempts


class HolePunchResponder:
    """A's side of one DCUtR stream: CONNECT in, CONNECT out, SYNC in, dial at once."""

    def __init__(self, *, policy: AddressPolicy | None = None) -> None:
        self.policy = policy or AddressPolicy()
        #: B's addresses, once its CONNECT arrived.
        self.peer_addrs: list[Multiaddr] = []
        #: Round trip from our CONNECT to B's SYNC.
        self.rtt: float | None = None
        self._sent_at: float | None = None

    def on_connect(self, data: bytes, our_addrs: list[Multiaddr], now: float) -> bytes:
        """Take B's CONNECT; returns our CONNECT."""
        type_, addrs = decode_hole_punch(data)
        if type_ != CONNECT:
            raise HolePunchError(
                HolePunchFailure.PROTOCOL_ERROR, f"expected CONNECT, got message type {type_}"
            )
        self.peer_addrs = self.policy.filter(addrs)
        if not self.peer_addrs:
            raise HolePunchError(
                HolePunchFailure.PEER_NO_ADDRESS, "the peer sent no address we could dial"
            )
        self._sent_at = now
        return encode_hole_punch(CONNECT, self.policy.filter(our_addrs))

    def on_sync(self, data: bytes, now: float) -> list[Multiaddr]:
        """Take B's SYNC; returns the addresses to dial now."""
        if self._sent_at is None:
            raise HolePunchError(HolePunchFailure.PROTOCOL_ERROR, "SYNC before CONNECT")
        type_, _addrs = decode_hole_punch(data)
        if type_ != SYNC:
            raise HolePunchError(
                HolePunchFailure.PROTOCOL_ERROR, f"expected SYNC, got message type {type_}"
            )
        self.rtt = max(now - self._sent_at, 0.0)
        return self.peer_addrs


# -- the trio driver -----------------------------------------------------------------------------


class _PunchState:
    """Per relayed connection bookkeeping of the driver."""

    __slots__ = ("attempts", "done", "identified", "peer_started")

    def __init__(self) -> None:
        self.attempts = 0
        self.done = False
        #: The peer opened DCUtR on a relayed connection where it is A (a role mismatch).
        self.peer_started = False
        #: Set when identify finished on the relayed connection.
        self.identified = trio.Event()


#: How B's giving up looks to A: it resets the stream, or never sends SYNC.
_B_GAVE_UP: Final = (HolePunchFailure.PROTOCOL_ERROR, HolePunchFailure.TIMEOUT)


class _PunchTransport(Protocol):
    async def dial(self, maddr: Multiaddr, *, reuse_only: bool = False) -> TcpStream: ...
    async def dial_ephemeral(self, maddr: Multiaddr) -> TcpStream: ...


class _PunchSwarm(ObservesConnections, UpgradesStreams, Protocol):
    @property
    def transport(self) -> _PunchTransport: ...

    def claim_inbound(
        self, sources: Sequence[Multiaddr], handler: Callable[[TcpStream], Awaitable[None]]
    ) -> AbstractContextManager[None]: ...

    def set_stream_handler(
        self, protocol: str, handler: StreamHandler, *, allow_limited: bool = False
    ) -> None: ...


class _AddressBook(Protocol):
    def addrs(self, peer: PeerID) -> list[Multiaddr]: ...
    def supports(self, peer: PeerID, protocol: str) -> bool: ...


class _IdentifyHooks(Protocol):
    @property
    def on_identified(self) -> list[Callable[[PeerIdentified], None]]: ...


class HolePunchHost(Protocol):
    """What DCUtR needs of its host: connections with their notifications, dialing and
    upgrading punched sockets in a given role, the peers' addresses and protocols, our own
    addresses, identify's notifications, and a bus to publish outcomes on."""

    @property
    def swarm(self) -> _PunchSwarm: ...
    @property
    def peerstore(self) -> _AddressBook: ...
    @property
    def identify(self) -> _IdentifyHooks: ...
    @property
    def events(self) -> EventPublisher: ...
    @property
    def addrs(self) -> list[Multiaddr]: ...

    def address_candidates(self, min_observers: int | None = None) -> list[Multiaddr]: ...
    def connections_to(self, peer: PeerID) -> list[Connection]: ...
    async def wait_for_connection(self, peer: PeerID, *, direct: bool = False) -> Connection: ...


class DcutrService:
    """Runs DCUtR for a host: starts it as B, answers it as A, publishes the outcome.

    The host creates one when :attr:`HostConfig.hole_punching` is set (the
    default) and runs it in its nursery; applications only subscribe to
    :class:`HolePunchSucceeded` / :class:`HolePunchFailed` on ``host.events``.
    """

    def __init__(self, host: HolePunchHost, config: HolePunchConfig | None = None) -> None:
        self.host = host
        self.config = config or HolePunchConfig()
        self._states: dict[Connection, _PunchState] = {}
        self._nursery: trio.Nursery | None = None

    def install(self) -> None:
        """Serve ``/libp2p/dcutr`` (on limited connections too: that is where it runs) and
        follow connections and identify (reliable notifications, never the lossy bus)."""
        self.host.swarm.set_stream_handler(PROTOCOL_ID, self._handle, allow_limited=True)
        self.host.swarm.observe(self)
        self.host.identify.on_identified.append(self._on_identified)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start hole punches on relayed connections we receive; report outcomes."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def connection_closed(self, conn: Connection) -> None:
        """Swarm observer: forget the connection's punch state."""
        self._states.pop(conn, None)

    def connection_opened(self, conn: Connection) -> None:
        """Swarm observer: B starts on relayed connections; A spots a connection reversal."""
        if conn.relayed:
            # B starts at once, without waiting for identify (as rust does): a peer that
            # does not speak DCUtR shows up as a refused stream, at the same cost.
            if conn.direction is Direction.INBOUND and conn not in self._states:
                state = self._states[conn] = _PunchState()
                if self._direct(conn.remote_peer) is not None:
                    state.done = True  # nothing to punch
                elif self._nursery is not None:
                    self._nursery.start_soon(self._punch_as_listener, conn, state)
            return
        # As A, a direct connection from B before any DCUtR exchange is B's connection
        # reversal: report it as the outcome (attempt 0).
        for relayed in self.host.connections_to(conn.remote_peer):
            if not relayed.relayed or relayed.direction is not Direction.OUTBOUND:
                continue
            state = self._states.setdefault(relayed, _PunchState())
            if not state.done and state.attempts == 0:
                self._succeed(relayed, HolePunchRole.DIALER, conn, 0, None)

    def _on_identified(self, event: PeerIdentified) -> None:
        conn = event.connection
        if not conn.relayed or conn.is_closed:
            return
        state = self._states.setdefault(conn, _PunchState())
        state.identified.set()
        if conn.direction is not Direction.OUTBOUND or state.done or state.attempts:
            return
        # As A: a B that does not speak DCUtR will never start it; say so now.
        if PROTOCOL_ID not in event.protocols and self._direct(conn.remote_peer) is None:
            self._fail(
                conn,
                HolePunchRole.DIALER,
                HolePunchError(
                    HolePunchFailure.NO_STREAM, f"{conn.remote_peer} does not speak {PROTOCOL_ID}"
                ),
                0,
            )

    # -- shared pieces ------------------------------------------------------------------------

    def _our_addrs(self) -> list[Multiaddr]:
        candidates = self.host.address_candidates(min_observers=1)
        listen = [a for a in self.host.addrs if not is_circuit_addr(a)]
        return self.config.address_policy.filter(candidates + listen)

    def _direct(self, peer: PeerID) -> Connection | None:
        for conn in self.host.connections_to(peer):
            if not conn.relayed:
                return conn
        return None

    def _conclude(self, relayed: Connection) -> bool:
        """Mark ``relayed``'s hole punch as decided; False if it already was (each relayed
        connection gets one outcome event)."""
        state = self._states.get(relayed)
        if state is None:
            if relayed.is_closed:
                return True  # already forgotten (closed): nothing to remember
            state = self._states[relayed] = _PunchState()
        if state.done:
            return False
        state.done = True
        return True

    def _succeed(
        self,
        relayed: Connection,
        role: HolePunchRole,
        direct: Connection,
        attempt: int,
        rtt: float | None,
    ) -> None:
        if not self._conclude(relayed):
            return
        elapsed = trio.current_time() - relayed.opened_at
        logger.info(
            "hole punch to %s succeeded (%s, attempt %d, %.0f ms): %s",
            relayed.remote_peer,
            role.value,
            attempt,
            elapsed * 1000,
            direct.remote_addr,
        )
        self.host.events.publish(
            HolePunchSucceeded(
                peer=relayed.remote_peer,
                role=role,
                connection=direct,
                relayed=relayed,
                direct_addr=direct.remote_addr,
                attempt=attempt,
                elapsed=elapsed,
                rtt=rtt,
            )
        )
        grace = self.config.relay_close_grace
        if grace is not None and self._nursery is not None:
            self._nursery.start_soon(self._close_later, relayed, grace)

    def _fail(
        self, relayed: Connection, role: HolePunchRole, exc: HolePunchError, attempts: int
    ) -> None:
        if not self._conclude(relayed):
            logger.info("DCUtR with %s after its outcome: %s", relayed.remote_peer, exc)
            return
        elapsed = trio.current_time() - relayed.opened_at
        logger.info(
            "hole punch to %s failed (%s, %d attempts): %s",
            relayed.remote_peer,
            role.value,
            attempts,
            exc,
        )
        self.host.events.publish(
            HolePunchFailed(
                peer=relayed.remote_peer,
                role=role,
                relayed=relayed,
                reason=exc.reason,
                attempts=attempts,
                elapsed=elapsed,
                detail=exc.detail,
            )
        )

    @staticmethod
    async def _close_later(conn: Connection, grace: float) -> None:
        await trio.sleep(grace)
        if not conn.is_closed:
            await conn.aclose()

    async def _why_broken(self, relayed: Connection) -> HolePunchFailure:
        """Why B's DCUtR stream broke before A answered.

        A peer without DCUtR answers our lazily proposed stream with ``na`` and then resets
        it (our CONNECT came with the proposal), and the reset may overtake the ``na``; so
        identify, which lists the peer's protocols, decides between the two.
        """
        if relayed.is_closed:
            return HolePunchFailure.RELAY_CLOSED
        state = self._states.get(relayed)
        if state is not None:
            with trio.move_on_after(self.config.stream_timeout):
                await state.identified.wait()
        if not self.host.peerstore.supports(relayed.remote_peer, PROTOCOL_ID):
            return HolePunchFailure.NO_STREAM
        return HolePunchFailure.PROTOCOL_ERROR

    async def _punch_dial(
        self,
        addr: Multiaddr,
        peer: PeerID,
        *,
        initiator: bool,
        connect_within: float,
        yield_role_within: float | None = None,
        reuse_only: bool = True,
    ) -> Connection:
        """Dial ``addr`` from the listen port and upgrade in the DCUtR role.

        ``reuse_only=False`` (connection reversal) dials from an ephemeral port instead: a
        reversal from the listen port toward A's NAT address could meet A's own punch in a
        simultaneous open, with both sides initiating; from another port it cannot, and a
        reversal that works (A is not behind a NAT) needs no particular port.

        ``connect_within`` bounds the TCP connect only: once the SYNs have met, the
        handshakes get the exchange's own time, so a connection made late in the window is
        not cut off half way (which would reset it for the peer too).

        ``yield_role_within`` (A's last attempt): before initiating, wait that long for the
        peer to speak first. go-libp2p B's since 2026 act as the initiator on their last
        attempt (a fallback for old go A's, whose roles were swapped); a B that sends the
        multistream header first gets a responder. A B that follows the spec never speaks
        first, so this costs it only the wait.
        """
        transport = self.host.swarm.transport
        raw: TcpStream | None = None
        with trio.move_on_after(connect_within):
            if reuse_only:
                raw = await transport.dial(addr, reuse_only=True)
            else:
                raw = await transport.dial_ephemeral(addr)
        if raw is None:
            raise TransportError(f"dial {addr}: no connection within {connect_within:.1f} s")
        return await self._upgrade_punched(
            raw,
            peer,
            initiator=initiator,
            direction=Direction.OUTBOUND,
            remote_addr=addr,
            yield_role_within=yield_role_within,
        )

    async def _upgrade_punched(
        self,
        raw: TcpStream,
        peer: PeerID,
        *,
        initiator: bool,
        direction: Direction,
        remote_addr: Multiaddr,
        yield_role_within: float | None = None,
    ) -> Connection:
        """Upgrade a punched socket in its DCUtR role (see :meth:`_punch_dial`)."""
        stream: trio.abc.Stream = raw
        try:
            if initiator and yield_role_within is not None:
                buffered = BufferedStream(raw)
                first = b""
                with trio.move_on_after(yield_role_within):
                    first = bytes(await buffered.receive_some())
                    if not first:
                        raise TransportError(f"{remote_addr} closed the punched connection")
                    logger.info("%s spoke first on the punched connection: responding", peer)
                    buffered.unread(first)
                    initiator = False
                stream = buffered
            # Shielded from the race's cancellation (its own deadline still applies): the
            # peer may already count this connection as made, and one cut off half way is a
            # connection it sees closed under its streams. A connection that loses the race
            # stays open as a second direct connection.
            with trio.CancelScope(shield=True), trio.fail_after(self.config.stream_timeout):
                conn = await self.host.swarm.upgrade_stream(
                    stream,
                    initiator=initiator,
                    expected_peer=peer,
                    direction=direction,
                    local_addr=raw.local_addr,
                    remote_addr=remote_addr,
                )
            return conn
        except trio.TooSlowError as exc:
            with trio.CancelScope(shield=True):
                await raw.aclose()
            raise TransportError(f"handshakes with {remote_addr} did not finish in time") from exc
        except BaseException:
            with trio.CancelScope(shield=True):
                await raw.aclose()
            raise

    async def _connect_directly(
        self,
        peer: PeerID,
        addrs: list[Multiaddr],
        *,
        initiator: bool,
        within: float,
        punch: bool = True,
        linger: float = 0.5,
        yield_role_within: float | None = None,
    ) -> Connection | None:
        """Dial every address at once; the first direct connection to ``peer`` wins.

        A direct connection that the peer's own dial opened on our listener counts too, so
        when all our dials have failed we still wait ``linger`` seconds for one (its
        handshake may be under way). ``within`` bounds each TCP connect (and a plain dial's
        handshakes). Returns ``None`` when nothing connected.
        """
        existing = self._direct(peer)
        if existing is not None:
            return existing
        winner: list[Connection] = []
        errors: list[str] = []
        pending = len(addrs)
        async with trio.open_nursery() as nursery:

            def win(conn: Connection) -> None:
                if not winner:
                    winner.append(conn)
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                win(await self.host.wait_for_connection(peer, direct=True))

            async def dial(addr: Multiaddr) -> None:
                nonlocal pending
                try:
                    conn = await self._punch_dial(
                        addr,
                        peer,
                        initiator=initiator,
                        connect_within=within,
                        yield_role_within=yield_role_within,
                        reuse_only=punch,
                    )
                except (Libp2pError, trio.TooSlowError) as exc:
                    errors.append(f"{addr}: {exc}")
                    pending -= 1
                    if not pending:
                        scope = nursery.cancel_scope
                        scope.deadline = min(scope.deadline, trio.current_time() + linger)
                    return
                win(conn)

            if not addrs:
                nursery.cancel_scope.deadline = trio.current_time() + linger
            nursery.start_soon(watch)
            for addr in addrs:
                nursery.start_soon(dial, addr)
        if not winner:
            logger.debug("direct dials to %s failed: %s", peer, "; ".join(errors) or "timeout")
            return None
        return winner[0]

    # -- B: we received the relayed connection and start -----------------------------------------

    async def _punch_as_listener(self, relayed: Connection, state: _PunchState) -> None:
        role = HolePunchRole.LISTENER
        peer = relayed.remote_peer
        if self._direct(peer) is not None:
            state.done = True
            return
        core = HolePunchInitiator(
            policy=self.config.address_policy, max_attempts=self.config.max_attempts
        )
        won: tuple[Connection, int, float | None] | None = None
        failure: HolePunchError | None = None
        async with trio.open_nursery() as nursery:

            def finish(result: tuple[Connection, int, float | None]) -> None:
                nonlocal won
                if won is None:
                    won = result
                nursery.cancel_scope.cancel()

            if self.config.connection_reversal:
                # The reversal runs beside the attempts, from an ephemeral port (see
                # _punch_dial), so one that cannot work (A is behind a NAT) costs no time.
                nursery.start_soon(self._reverse, relayed, state, finish)
            try:
                direct = await self._punch_attempts(relayed, core)
            except HolePunchError as exc:
                failure = exc  # a reversal still under way may yet succeed
            else:
                finish((direct, core.attempt, core.rtt))
        if won is not None:
            self._succeed(relayed, role, *won)
        elif failure is not None:
            if state.peer_started:
                failure = HolePunchError(
                    HolePunchFailure.PEER_ROLE_MISMATCH,
                    f"{peer} started DCUtR itself, as if it had received the relayed "
                    f"connection (our run: {failure})",
                )
            self._fail(relayed, role, failure, core.attempt)

    async def _reverse(
        self,
        relayed: Connection,
        state: _PunchState,
        finish: Callable[[tuple[Connection, int, float | None]], None],
    ) -> None:
        """B's connection reversal: dial A's advertised addresses plainly, as initiator."""
        peer = relayed.remote_peer
        # A's addresses come with identify on the relayed connection.
        with trio.move_on_after(self.config.stream_timeout):
            await state.identified.wait()
        advertised = self.config.address_policy.filter(
            [a for a in self.host.peerstore.addrs(peer) if not is_circuit_addr(a)]
        )
        if not state.identified.is_set() or not advertised:
            return
        direct = await self._connect_directly(
            peer,
            advertised,
            initiator=True,
            within=self.config.reversal_timeout,
            punch=False,
        )
        if direct is not None:
            finish((direct, 0, None))

    async def _punch_attempts(self, relayed: Connection, core: HolePunchInitiator) -> Connection:
        """B's attempts: exchange, wait RTT/2, dial; the direct connection or an error."""
        peer = relayed.remote_peer
        role = HolePunchRole.LISTENER
        while True:
            if relayed.is_closed:
                raise HolePunchError(HolePunchFailure.RELAY_CLOSED, "the relayed connection closed")
            dial_at, addrs = await self._exchange(relayed, core)
            await trio.sleep_until(dial_at)
            rtt = core.rtt or 0.0
            timeout = self.config.dial_timeout or punch_dial_timeout(rtt)
            direct = await self._connect_directly(
                peer, addrs, initiator=False, within=timeout, linger=max(0.5, 2 * rtt)
            )
            if direct is not None:
                return direct
            detail = f"no direct connection to {', '.join(map(str, addrs))} in {timeout:.1f} s"
            self.host.events.publish(HolePunchAttemptFailed(peer, role, core.attempt, detail))
            if not core.attempt_failed():
                raise HolePunchError(
                    HolePunchFailure.ALL_ATTEMPTS_FAILED,
                    f"{core.attempt} attempts failed; last: {detail}",
                )

    async def _exchange(
        self, relayed: Connection, core: HolePunchInitiator
    ) -> tuple[float, list[Multiaddr]]:
        """One CONNECT/CONNECT/SYNC exchange on a fresh stream: when to dial, and what."""
        connect = core.start_attempt(self._our_addrs(), trio.current_time())
        try:
            with trio.fail_after(self.config.stream_timeout):
                # Lazy, although identify has not told us yet that A speaks DCUtR (B starts
                # before identify): the one place we propose a protocol not known to be
                # supported. Waiting for the echo costs the whole punch a relayed round trip
                # and more (measured in the NAT lab with 100 ms direct / 150 ms relayed RTT:
                # 793 ms instead of 520 ms, 1.59x instead of 1.04x the protocol's floor). A
                # peer without DCUtR may answer na and reset when it reads CONNECT as a second
                # proposal (go does); _why_broken then asks identify, so the outcome is still
                # the right reason, no_stream.
                try:
                    stream = await relayed.new_stream(PROTOCOL_ID, lazy=True, allow_limited=True)
                except ProtocolNotSupported as exc:
                    raise HolePunchError(
                        HolePunchFailure.NO_STREAM,
                        f"{relayed.remote_peer} does not speak {PROTOCOL_ID}",
                    ) from exc
                except Libp2pError as exc:
                    raise HolePunchError(HolePunchFailure.NO_STREAM, str(exc)) from exc
                try:
                    await stream.send_all(connect)
                    reader = BufferedStream(stream)
                    answer = await reader.read_lp(MAX_MESSAGE_SIZE)
                    sync, dial_at, addrs = core.on_message(answer, trio.current_time())
                    await stream.send_all(sync)
                except BaseException as exc:
                    await _reset_quietly(stream)
                    if isinstance(exc, ProtocolNotSupported):
                        raise HolePunchError(
                            HolePunchFailure.NO_STREAM,
                            f"{relayed.remote_peer} does not speak {PROTOCOL_ID}",
                        ) from exc
                    if isinstance(exc, HolePunchError):
                        raise
                    if isinstance(exc, Libp2pError):
                        reason = await self._why_broken(relayed)
                        detail = str(exc)
                        if reason is HolePunchFailure.NO_STREAM:
                            detail = f"{relayed.remote_peer} does not speak {PROTOCOL_ID}"
                        raise HolePunchError(reason, detail) from exc
                    raise
                await stream.aclose()
                return dial_at, addrs
        except trio.TooSlowError as exc:
            raise HolePunchError(
                HolePunchFailure.TIMEOUT,
                f"no answer to CONNECT within {self.config.stream_timeout} s",
            ) from exc

    # -- A: we dialed through the relay and answer ------------------------------------------------

    async def _handle(self, stream: NetStream) -> None:
        relayed = stream.connection
        peer = relayed.remote_peer
        if not relayed.relayed or relayed.direction is not Direction.OUTBOUND:
            # Only the peer that received the relayed connection (B) starts DCUtR, and on a
            # direct connection there is nothing to do. Our own run as B on this connection
            # reports the outcome; if it fails, the peer's confusion is named as the reason.
            await stream.reset()
            logger.info("refusing DCUtR from %s: it is not B on this connection", peer)
            state = self._states.get(relayed)
            if state is not None:
                state.peer_started = True
            return
        role = HolePunchRole.DIALER
        state = self._states.setdefault(relayed, _PunchState())
        state.attempts += 1
        attempt = state.attempts
        core = HolePunchResponder(policy=self.config.address_policy)
        reader = BufferedStream(stream)
        failure: HolePunchError | None = None
        ours = self._our_addrs()
        try:
            with trio.fail_after(self.config.stream_timeout):
                data = await reader.read_lp(MAX_MESSAGE_SIZE)
                await stream.send_all(core.on_connect(data, ours, trio.current_time()))
                data = await reader.read_lp(MAX_MESSAGE_SIZE)
                addrs = core.on_sync(data, trio.current_time())
        except HolePunchError as exc:
            failure = exc
        except trio.TooSlowError:
            failure = HolePunchError(
                HolePunchFailure.TIMEOUT, "the peer did not finish the exchange"
            )
        except Libp2pError as exc:
            reason = HolePunchFailure.PROTOCOL_ERROR
            if relayed.is_closed:
                reason = HolePunchFailure.RELAY_CLOSED
            failure = HolePunchError(reason, str(exc))
        sent_nothing = core.peer_addrs and not ours  # we answered B's CONNECT with no address
        if failure is not None and sent_nothing and failure.reason in _B_GAVE_UP:
            # So B had nothing to dial and gave up: say why.
            failure = HolePunchError(
                HolePunchFailure.NO_PUBLIC_ADDRESS,
                "we had no address to offer the peer (do we listen on TCP? no observed "
                "address yet, and no listen address the address policy accepts)",
            )
        if failure is not None:
            await _reset_quietly(stream)
            # B may have given up on the exchange because its connection reversal is getting
            # through, or may still try it: give that the time B gives it.
            with trio.move_on_after(self.config.reversal_timeout):
                reversed_by_b = await self.host.wait_for_connection(peer, direct=True)
                self._succeed(relayed, role, reversed_by_b, 0, None)
                return
            self._fail(relayed, role, failure, attempt)
            return
        await stream.aclose()
        rtt = core.rtt or 0.0
        timeout = self.config.dial_timeout or punch_dial_timeout(rtt)
        # On the last attempt a go B may act as the initiator: let it speak first.
        last = attempt >= self.config.max_attempts
        yield_within = min(max(2 * rtt, 0.05), 0.5) if last else None

        async def claimed(raw: TcpStream) -> None:
            # B's punch reached our listener before our own SYN left (no NAT or filter in
            # front of us, or loopback): the listener would upgrade it as responder, and B
            # is the responder too. It is the punched connection: we initiate on it.
            try:
                await self._upgrade_punched(
                    raw,
                    peer,
                    initiator=True,
                    direction=Direction.INBOUND,
                    remote_addr=raw.remote_addr,
                    yield_role_within=yield_within,
                )
            except Libp2pError as exc:
                # Only this socket is lost; the attempt goes on with our own dials.
                logger.debug("punched connection from %s failed: %s", raw.remote_addr, exc)

        sources = [split_peer_id(a)[0] for a in addrs]
        with self.host.swarm.claim_inbound(sources, claimed):
            direct = await self._connect_directly(
                peer,
                addrs,
                initiator=True,
                within=timeout,
                linger=max(0.5, 2 * rtt),
                yield_role_within=yield_within,
            )
        if direct is not None:
            # A connection B initiated is its connection reversal, not our punch.
            self._succeed(relayed, role, direct, attempt if direct.is_initiator else 0, core.rtt)
            return
        detail = f"no direct connection to {', '.join(map(str, addrs))} in {timeout:.1f} s"
        self.host.events.publish(HolePunchAttemptFailed(peer, role, attempt, detail))
        if attempt >= self.config.max_attempts:
            self._fail(
                relayed,
                role,
                HolePunchError(
                    HolePunchFailure.ALL_ATTEMPTS_FAILED,
                    f"{attempt} attempts failed; last: {detail}",
                ),
                attempt,
            )


async def _reset_quietly(stream: NetStream) -> None:
    """Reset a DCUtR stream we are abandoning (it may be broken already)."""
    with trio.CancelScope(shield=True):
        try:
            await stream.reset()
        except (Libp2pError, trio.ClosedResourceError):
            logger.debug("resetting a DCUtR stream to %s failed", stream.remote_peer)
