"""DCUtR (``/libp2p/dcutr``): turn a relayed connection into a direct one by hole punching.

The protocol and every decision about it -- attempts, roles, redials after refused SYNs, the
connection reversal, when to give up and with which reason -- live in the I/O-free state
machine of :mod:`.dcutr_core` (read its docstring for the algorithm), one per relayed
connection. :class:`DcutrService` is the thin trio driver the host runs: it makes a
:class:`~.dcutr_core.HolePunch` for each relayed connection, feeds it what happens (streams,
messages, dial results, direct connections, identify, the clock) and carries out what it
asks for (open a stream, send, dial from the listen port in a given role, claim punches at
our listener, publish the outcome).

Applications subscribe to :class:`HolePunchSucceeded` / :class:`HolePunchFailed` (and
:class:`HolePunchAttemptFailed`) on ``host.events``; both peers get one outcome per relayed
connection. After a success new streams go to the direct connection (the swarm prefers it),
and the relayed connection is closed once no stream uses it any more (see
:attr:`~libp2p.relay.circuit_v2.HolePunchConfig.relay_close_grace`).
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import trio
from multiaddr import Multiaddr

from ...events import PeerIdentified, opt_str
from ...exceptions import (
    Libp2pError,
    ProtocolNotSupported,
    TransportError,
)
from ...identify.nat_mapping import NatMapping, NatMappingChanged, NatMappingStatus
from ...io import BufferedStream
from ...multistream import RoleRule
from ...network.addrs import is_circuit_addr
from ...network.connection import Connection, Direction, NetStream
from ...network.interfaces import EventPublisher, ObservesConnections, UpgradesStreams
from ...peer.id import PeerID
from ...transport.tcp import TcpStream
from .dcutr_core import (
    CONNECT,
    MAX_ADDRS,
    MAX_ATTEMPTS,
    MAX_MESSAGE_SIZE,
    MAX_PEER_ADDRS,
    PROTOCOL_ID,
    STREAM_TIMEOUT,
    SYNC,
    AttemptFailed,
    ClaimInbound,
    CloseStream,
    Dial,
    Failed,
    HolePunch,
    HolePunchAction,
    HolePunchConfig,
    HolePunchError,
    HolePunchFailure,
    HolePunchRole,
    MalformedHolePunch,
    OpenStream,
    Redial,
    ReleaseInbound,
    Send,
    Succeeded,
    decode_hole_punch,
    encode_hole_punch,
    punch_dial_timeout,
)

if TYPE_CHECKING:
    from ...network.connection import StreamHandler

__all__ = [
    "CONNECT",
    "MAX_ADDRS",
    "MAX_ATTEMPTS",
    "MAX_MESSAGE_SIZE",
    "MAX_PEER_ADDRS",
    "PROTOCOL_ID",
    "STREAM_TIMEOUT",
    "SYNC",
    "DcutrService",
    "HolePunch",
    "HolePunchAttemptFailed",
    "HolePunchConfig",
    "HolePunchError",
    "HolePunchFailed",
    "HolePunchFailure",
    "HolePunchHost",
    "HolePunchRole",
    "HolePunchSucceeded",
    "MalformedHolePunch",
    "decode_hole_punch",
    "encode_hole_punch",
    "punch_dial_timeout",
]

logger = logging.getLogger(__name__)


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HolePunchSucceeded:
    """A direct connection to ``peer`` replaced a relayed one."""

    peer: PeerID
    role: HolePunchRole
    #: The direct connection (new streams go here).
    connection: Connection
    #: The relayed connection it replaces (closed once no stream uses it).
    relayed: Connection
    #: The remote address of the direct connection.
    direct_addr: Multiaddr | None
    #: 1..3 for a hole punch; 0 when a plain dial did it: B's to A (connection reversal)
    #: or A's to B (the direct dial), or a direct connection that came otherwise.
    attempt: int
    #: Seconds from the relayed connection opening to the direct one being ready.
    elapsed: float
    #: Round-trip time over the relay measured by the last CONNECT exchange, if any.
    rtt: float | None

    kind: ClassVar[str] = "hole_punch"

    @property
    def peer_dialed(self) -> bool:
        """True when the peer alone dialed the direct connection (no punch, ``attempt`` 0,
        and the connection is inbound): ``direct_addr`` is then its end of a connection it
        opened, not an address we dialed."""
        return not self.attempt and self.connection.direction is Direction.INBOUND

    def describe(self) -> str:
        """``hole punch with <peer> succeeded on attempt 1 in 10 ms: direct connection to
        <addr>``; with ``attempt`` 0, which side dialed directly and why no punch was
        needed."""
        took = f"in {self.elapsed * 1000:.0f} ms"
        if self.attempt:
            how = f"hole punch with {self.peer} succeeded on attempt {self.attempt} {took}"
        elif self.peer_dialed:
            how = f"no punch needed: {self.peer} dialed us directly (we are reachable) {took}"
        else:
            how = f"no punch needed: we dialed {self.peer} directly (it is reachable) {took}"
        # A punch's connection is both sides' dial (whichever won); "from" only where the
        # peer alone dialed.
        towards = "from" if self.peer_dialed else "to"
        return f"{how}: direct connection {towards} {self.direct_addr}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": str(self.peer),
            "ok": True,
            "dcutr_role": self.role.value,
            "attempt": self.attempt,
            "elapsed_ms": round(self.elapsed * 1000),
            "direct_addr": opt_str(self.direct_addr),
        }


@dataclass(frozen=True, slots=True)
class HolePunchFailed:
    """No direct connection to ``peer`` came of its relayed connection (which stays)."""

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

    kind: ClassVar[str] = "hole_punch"

    def describe(self) -> str:
        return (
            f"hole punch with {self.peer} failed after {self.attempts} attempt(s): "
            f"{self.reason.value} ({self.detail}); the relayed connection stays"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": str(self.peer),
            "ok": False,
            "dcutr_role": self.role.value,
            "attempt": self.attempts,
            "elapsed_ms": round(self.elapsed * 1000),
            "reason": self.reason.value,
        }


@dataclass(frozen=True, slots=True)
class HolePunchAttemptFailed:
    """One attempt's dials failed; another attempt may follow."""

    peer: PeerID
    role: HolePunchRole
    attempt: int
    detail: str

    kind: ClassVar[str] = "hole_punch_attempt_failed"

    def describe(self) -> str:
        return f"hole punch attempt {self.attempt} with {self.peer} failed: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": str(self.peer),
            "dcutr_role": self.role.value,
            "attempt": self.attempt,
            "detail": self.detail,
        }


def came_of_punch(
    local_addr: Multiaddr | None,
    remote_addr: Multiaddr | None,
    *,
    we_initiate: bool,
    role: HolePunchRole,
    punched: set[tuple[str, str]],
    peer_addrs: Sequence[Multiaddr],
) -> bool:
    """Whether a direct connection that opened during a hole punch came of it.

    It did when it is one of our punch sockets (``punched``: (local, remote) of each), or, for
    B, when A's punch reached our listener: an inbound connection we do not initiate (the
    spec's roles) from one of the addresses of A's CONNECT (``peer_addrs``), as A punches
    from its listen port. An inbound connection from elsewhere is A's plain direct dial (from
    an ephemeral port), which is no punch even when it lands during one.
    """
    if (str(local_addr), str(remote_addr)) in punched:
        return True
    return (
        role is HolePunchRole.LISTENER
        and not we_initiate
        and str(remote_addr) in {str(a) for a in peer_addrs}
    )


# -- what the driver needs of its host -----------------------------------------------------------


class _PunchTransport(Protocol):
    async def dial(self, maddr: Multiaddr, *, reuse_only: bool = False) -> TcpStream: ...
    async def dial_ephemeral(self, maddr: Multiaddr) -> TcpStream: ...
    async def dial_punch(
        self,
        maddr: Multiaddr,
        *,
        within: float,
        silence: float,
        pause_after_refusal: Callable[[int, float], float | None],
    ) -> TcpStream: ...


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
    @property
    def on_nat_mapping_changed(self) -> list[Callable[[NatMappingChanged], None]]: ...


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
    @property
    def nat_mapping_status(self) -> NatMappingStatus: ...

    def address_candidates(self, min_observers: int | None = None) -> list[Multiaddr]: ...
    def directly_reachable(self) -> bool: ...
    def connections_to(self, peer: PeerID) -> list[Connection]: ...
    async def wait_for_connection(self, peer: PeerID, *, direct: bool = False) -> Connection: ...


class _Punch:
    """The driver's side of one relayed connection's :class:`HolePunch`."""

    def __init__(self, relayed: Connection, machine: HolePunch) -> None:
        self.relayed = relayed
        self.machine = machine
        #: The DCUtR stream of the current attempt.
        self.stream: NetStream | None = None
        #: The direct connection that decided the outcome.
        self.direct: Connection | None = None
        self.claim: AbstractContextManager[None] | None = None
        self.changed = trio.Event()
        self.nursery: trio.Nursery | None = None
        send, receive = trio.open_memory_channel[tuple[NetStream, Send | CloseStream]](64)
        self.writes = send
        self.pending_writes = receive
        #: Set when the writer has written everything and the channel closed.
        self.written = trio.Event()
        #: (local, remote) address of each punched socket being upgraded: a connection
        #: that comes of one is the punch's, whichever role it settled on.
        self.punched: set[tuple[str, str]] = set()


class DcutrService:
    """Runs DCUtR for a host: one :class:`HolePunch` per relayed connection, driven with trio.

    The host creates one when :attr:`HostConfig.hole_punching` is set (the default) and
    runs it in its nursery; applications only subscribe to :class:`HolePunchSucceeded` /
    :class:`HolePunchFailed` on ``host.events``.
    """

    def __init__(self, host: HolePunchHost, config: HolePunchConfig | None = None) -> None:
        self.host = host
        self.config = config or HolePunchConfig()
        self._punches: dict[Connection, _Punch] = {}
        self._nursery: trio.Nursery | None = None

    def install(self) -> None:
        """Serve ``/libp2p/dcutr`` (on limited connections too: that is where it runs) and
        follow connections and identify (reliable notifications, never the lossy bus)."""
        self.host.swarm.set_stream_handler(PROTOCOL_ID, self._handle, allow_limited=True)
        self.host.swarm.observe(self)
        self.host.identify.on_identified.append(self._on_identified)
        self.host.identify.on_nat_mapping_changed.append(self._on_mapping_changed)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drive hole punches on relayed connections; report outcomes."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    # -- notifications -------------------------------------------------------------------------

    def connection_opened(self, conn: Connection) -> None:
        """Swarm observer: a relayed connection gets its machine; a direct one may end one."""
        if conn.relayed:
            if conn in self._punches or self._nursery is None:
                return
            if self._direct(conn.remote_peer) is not None:
                return  # nothing to punch
            role = (
                HolePunchRole.LISTENER
                if conn.direction is Direction.INBOUND
                else HolePunchRole.DIALER
            )
            machine = HolePunch(
                role, our_addrs=self._our_addrs, config=self.config, peer=str(conn.remote_peer)
            )
            self._tell_mapping(machine)
            if role is HolePunchRole.LISTENER:
                machine.set_directly_reachable(self.host.directly_reachable())
            punch = self._punches[conn] = _Punch(conn, machine)
            self._nursery.start_soon(self._drive, punch)
            return
        for punch in list(self._punches.values()):
            if punch.relayed.remote_peer == conn.remote_peer and not punch.machine.finished:
                punch.direct = conn
                punched = came_of_punch(
                    conn.local_addr,
                    conn.remote_addr,
                    we_initiate=conn.is_initiator,
                    role=punch.machine.role,
                    punched=punch.punched,
                    peer_addrs=punch.machine.peer_addrs,
                )
                punch.machine.direct_connection(trio.current_time(), punched=punched)
                self._pump(punch)

    def connection_closed(self, conn: Connection) -> None:
        """Swarm observer: a relayed connection's machine learns that it closed."""
        punch = self._punches.pop(conn, None)
        if punch is not None:
            punch.machine.relay_closed(trio.current_time())
            self._pump(punch)

    def _on_mapping_changed(self, event: NatMappingChanged) -> None:
        for punch in self._punches.values():
            self._tell_mapping(punch.machine)

    def _tell_mapping(self, machine: HolePunch) -> None:
        status = self.host.nat_mapping_status
        machine.set_mapping_endpoint_dependent(
            status.mapping is NatMapping.ENDPOINT_DEPENDENT, status.reason
        )

    def _on_identified(self, event: PeerIdentified) -> None:
        punch = self._punches.get(event.connection)
        if punch is None:
            return
        punch.machine.identified(
            trio.current_time(),
            speaks_dcutr=PROTOCOL_ID in event.protocols,
            addrs=self.host.peerstore.addrs(event.connection.remote_peer),
            agent_version=event.agent_version,
        )
        self._pump(punch)

    # -- the machine's loop --------------------------------------------------------------------

    async def _drive(self, punch: _Punch) -> None:
        """Start the machine, fire its timers, write in order; until it has an outcome."""
        machine = punch.machine
        try:
            async with trio.open_nursery() as nursery:
                punch.nursery = nursery
                nursery.start_soon(self._writer, punch)
                machine.start(trio.current_time())
                self._pump(punch)
                while not machine.finished:
                    changed = punch.changed
                    timer = machine.get_timer()
                    with trio.move_on_at(timer if timer is not None else float("inf")):
                        await changed.wait()
                        continue
                    machine.handle_timer(trio.current_time())
                    self._pump(punch)
                # What the machine said last (an empty CONNECT that tells the peer why, a
                # close) still goes out; then dials and reads under way end.
                punch.writes.close()
                with trio.move_on_after(self.config.stream_timeout):
                    await punch.written.wait()
                nursery.cancel_scope.cancel()
        finally:
            punch.nursery = None
            self._release(punch)
            punch.writes.close()

    def _pump(self, punch: _Punch) -> None:
        """Carry out the machine's actions (called after every event)."""
        for action in punch.machine.actions():
            self._act(punch, action)
        punch.changed.set()
        punch.changed = trio.Event()

    def _act(self, punch: _Punch, action: HolePunchAction) -> None:
        relayed = punch.relayed
        peer = relayed.remote_peer
        role = punch.machine.role
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "DCUtR %s with %s at +%.1f ms: %s",
                role.value,
                peer,
                1000 * (trio.current_time() - relayed.opened_at),
                action,
            )
        if isinstance(action, Send | CloseStream):
            if punch.stream is not None:
                try:
                    punch.writes.send_nowait((punch.stream, action))
                except (trio.WouldBlock, trio.ClosedResourceError):
                    logger.debug("DCUtR write to %s dropped", peer)
        elif isinstance(action, OpenStream):
            self._spawn(punch, self._open_stream, punch)
        elif isinstance(action, Dial):
            self._spawn(punch, self._dial, punch, action)
        elif isinstance(action, ClaimInbound):
            self._release(punch)

            async def claimed(raw: TcpStream) -> None:
                await self._claimed(punch, raw, action)

            punch.claim = self.host.swarm.claim_inbound(list(action.sources), claimed)
            punch.claim.__enter__()
        elif isinstance(action, ReleaseInbound):
            self._release(punch)
        elif isinstance(action, AttemptFailed):
            self.host.events.publish(
                HolePunchAttemptFailed(peer, role, action.attempt, action.detail)
            )
        elif isinstance(action, Succeeded):
            self._succeeded(punch, action)
        else:
            self._failed(punch, action)

    def _spawn(self, punch: _Punch, fn: Callable[..., Awaitable[None]], *args: object) -> None:
        if punch.nursery is not None:
            punch.nursery.start_soon(fn, *args)

    @staticmethod
    def _release(punch: _Punch) -> None:
        if punch.claim is not None:
            claim, punch.claim = punch.claim, None
            claim.__exit__(None, None, None)

    async def _writer(self, punch: _Punch) -> None:
        """Write the machine's messages and closes in the order it asked for them."""
        try:
            await self._write_all(punch)
        finally:
            punch.written.set()

    async def _write_all(self, punch: _Punch) -> None:
        async with punch.pending_writes:
            async for stream, action in punch.pending_writes:
                try:
                    if isinstance(action, Send):
                        await stream.send_all(action.data)
                    elif action.reset:
                        await _reset_quietly(stream)
                    else:
                        await stream.aclose()
                except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    await _reset_quietly(stream)
                    if stream is punch.stream:
                        punch.machine.stream_broken(trio.current_time(), str(exc))
                        self._pump(punch)

    async def _open_stream(self, punch: _Punch) -> None:
        """B: open a DCUtR stream, then read the answers on it."""
        machine = punch.machine
        try:
            # Lazy, although identify has not told us yet that A speaks DCUtR (B starts
            # before identify): the one place we propose a protocol not known to be
            # supported. Waiting for the echo costs the whole punch a relayed round trip
            # and more (measured in the NAT lab with 100 ms direct / 150 ms relayed RTT:
            # 793 ms instead of 520 ms, 1.59x instead of 1.04x the protocol's floor). A
            # peer without DCUtR answers na and may reset the stream (go does); the machine
            # then asks identify whether the peer speaks DCUtR at all.
            stream = await punch.relayed.new_stream(PROTOCOL_ID, lazy=True, allow_limited=True)
        except ProtocolNotSupported as exc:
            machine.stream_failed(trio.current_time(), not_supported=True, detail=str(exc))
            self._pump(punch)
            return
        except Libp2pError as exc:
            machine.stream_failed(trio.current_time(), not_supported=False, detail=str(exc))
            self._pump(punch)
            return
        if machine.finished:  # it ended while the stream opened
            await _reset_quietly(stream)
            return
        punch.stream = stream
        machine.stream_opened(trio.current_time())
        self._pump(punch)
        await self._read(punch, stream)

    async def _read(self, punch: _Punch, stream: NetStream) -> None:
        """Feed the machine the messages of ``stream`` while it waits for one."""
        machine = punch.machine
        reader = BufferedStream(stream)
        while punch.stream is stream and machine.wants_message:
            try:
                data = await reader.read_lp(MAX_MESSAGE_SIZE)
            except ProtocolNotSupported as exc:
                if punch.stream is stream:
                    machine.stream_failed(trio.current_time(), not_supported=True, detail=str(exc))
                    self._pump(punch)
                return
            except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                if punch.stream is stream:
                    machine.stream_broken(trio.current_time(), str(exc) or type(exc).__name__)
                    self._pump(punch)
                return
            if punch.stream is not stream:
                return
            machine.message(data, trio.current_time())
            self._pump(punch)

    async def _handle(self, stream: NetStream) -> None:
        """A DCUtR stream from the peer: A's exchange, or a B refusing to answer it."""
        relayed = stream.connection
        punch = self._punches.get(relayed)
        if punch is None:
            # Not a relayed connection, or one that already has a direct peer.
            await _reset_quietly(stream)
            return
        if not punch.machine.stream_accepted(trio.current_time()):
            self._pump(punch)
            logger.info("refusing DCUtR from %s on this connection", relayed.remote_peer)
            await _reset_quietly(stream)
            return
        punch.stream = stream
        self._pump(punch)
        await self._read(punch, stream)

    async def _dial(self, punch: _Punch, dial: Dial) -> None:
        """One dial the machine asked for; its failure goes back to the machine (a
        connection that came of it reaches it through connection_opened)."""
        peer = punch.relayed.remote_peer
        try:
            await self._punch_dial(
                dial.addr,
                peer,
                initiator=dial.initiator,
                connect_within=max(dial.connect_by - trio.current_time(), 0.0),
                role_patience=dial.role_patience,
                punched=punch.punched if dial.from_listen_port else None,
                reuse_only=dial.from_listen_port,
                redial=dial.redial,
                handshake_within=dial.handshake_within,
            )
        except (Libp2pError, trio.TooSlowError) as exc:
            logger.debug("dial %s for the hole punch to %s failed: %s", dial.addr, peer, exc)
            punch.machine.dial_failed(dial.addr, dial.attempt, trio.current_time(), str(exc))
            self._pump(punch)

    async def _claimed(self, punch: _Punch, raw: TcpStream, claim: ClaimInbound) -> None:
        """A: B's punch reached our listener before our own SYN left (no NAT or filter in
        front of us, or loopback): the listener would upgrade it as responder, and B is the
        responder too. It is the punched connection: we take A's role on it."""
        try:
            await self._upgrade_punched(
                raw,
                punch.relayed.remote_peer,
                initiator=True,
                direction=Direction.INBOUND,
                remote_addr=raw.remote_addr,
                role_patience=0.0,
                handshake_within=claim.handshake_within,
                punched=punch.punched,
            )
        except Libp2pError as exc:
            # Only this socket is lost; the attempt goes on with our own dials.
            logger.debug("punched connection from %s failed: %s", raw.remote_addr, exc)

    # -- outcomes ------------------------------------------------------------------------------

    def _succeeded(self, punch: _Punch, result: Succeeded) -> None:
        relayed = punch.relayed
        direct = punch.direct or self._direct(relayed.remote_peer)
        if direct is None:  # pragma: no cover - the machine succeeds on a direct connection
            return
        elapsed = trio.current_time() - relayed.opened_at
        role = punch.machine.role
        logger.info(
            "hole punch to %s succeeded (%s, attempt %d, %.0f ms): %s",
            relayed.remote_peer,
            role.value,
            result.attempt,
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
                attempt=result.attempt,
                elapsed=elapsed,
                rtt=result.rtt,
            )
        )
        grace = self.config.relay_close_grace
        if grace is not None:
            relayed.close_when_idle(grace)

    def _failed(self, punch: _Punch, result: Failed) -> None:
        relayed = punch.relayed
        role = punch.machine.role
        elapsed = trio.current_time() - relayed.opened_at
        logger.info(
            "hole punch to %s failed (%s, %d attempts): %s: %s",
            relayed.remote_peer,
            role.value,
            result.attempts,
            result.reason.value,
            result.detail,
        )
        self.host.events.publish(
            HolePunchFailed(
                peer=relayed.remote_peer,
                role=role,
                relayed=relayed,
                reason=result.reason,
                attempts=result.attempts,
                elapsed=elapsed,
                detail=result.detail,
            )
        )

    # -- pieces --------------------------------------------------------------------------------

    def _our_addrs(self) -> list[Multiaddr]:
        candidates = self.host.address_candidates(min_observers=1)
        listen = [a for a in self.host.addrs if not is_circuit_addr(a)]
        return self.config.address_policy.filter(candidates + listen)

    def _direct(self, peer: PeerID) -> Connection | None:
        for conn in self.host.connections_to(peer):
            if not conn.relayed and not conn.is_closed:
                return conn
        return None

    async def _punch_dial(
        self,
        addr: Multiaddr,
        peer: PeerID,
        *,
        initiator: bool,
        connect_within: float,
        role_patience: float | None = None,
        reuse_only: bool = True,
        redial: Redial | None = None,
        handshake_within: float | None = None,
        punched: set[tuple[str, str]] | None = None,
    ) -> Connection:
        """Dial ``addr`` from the listen port and upgrade in the DCUtR role.

        ``redial`` (a punch): dial again after refused or unanswered SYNs, as it says (see
        :meth:`TcpTransport.dial_punch <libp2p.transport.tcp.TcpTransport.dial_punch>`).

        ``reuse_only=False`` (connection reversal) dials from an ephemeral port instead: a
        reversal from the listen port toward A's NAT address could meet A's own punch in a
        simultaneous open, with both sides initiating; from another port it cannot, and a
        reversal that works (A is not behind a NAT) needs no particular port.

        ``connect_within`` bounds the TCP connect only: once the SYNs have met, the
        handshakes get the exchange's own time, so a connection made late in the window is
        not cut off half way (which would reset it for the peer too).

        ``role_patience`` (a punch): ``initiator`` is only our preferred role, settled with
        the peer on the connection (see :meth:`_upgrade_punched`); None: the role is fixed.
        ``punched``: where to record the socket as a punch's (see :attr:`_Punch.punched`).
        """
        transport = self.host.swarm.transport
        raw: TcpStream | None = None
        if redial is not None and reuse_only:
            raw = await transport.dial_punch(
                addr,
                within=connect_within,
                silence=redial.silence,
                pause_after_refusal=redial.pauses(),
            )
        else:
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
            role_patience=role_patience,
            handshake_within=handshake_within,
            punched=punched,
        )

    async def _upgrade_punched(
        self,
        raw: TcpStream,
        peer: PeerID,
        *,
        initiator: bool,
        direction: Direction,
        remote_addr: Multiaddr,
        role_patience: float | None = None,
        handshake_within: float | None = None,
        punched: set[tuple[str, str]] | None = None,
    ) -> Connection:
        """Upgrade a punched socket in its DCUtR role (see :meth:`_punch_dial`).

        With ``role_patience`` the role is settled with the peer: as A (``initiator``) we
        initiate unless B's first bytes propose (a go B before v0.41, or on its last
        attempt), as B we respond unless A stays silent for ``role_patience`` (a go A
        before v0.41 waits as a responder). See
        :func:`~libp2p.multistream.negotiate_either_role`.
        """
        within = handshake_within if handshake_within is not None else self.config.stream_timeout
        rule: RoleRule | None = None
        if role_patience is not None:
            rule = (
                RoleRule.INITIATE_UNLESS_PROPOSED if initiator else RoleRule.RESPOND_UNLESS_SILENT
            )
        key = (str(raw.local_addr), str(remote_addr))
        if punched is not None:
            punched.add(key)
        try:
            # Shielded from the race's cancellation (its own deadline still applies): the
            # peer may already count this connection as made, and one cut off half way is a
            # connection it sees closed under its streams. A connection that loses the race
            # stays open as a second direct connection.
            with trio.CancelScope(shield=True), trio.fail_after(within):
                conn = await self.host.swarm.upgrade_stream(
                    raw,
                    initiator=initiator,
                    expected_peer=peer,
                    direction=direction,
                    local_addr=raw.local_addr,
                    remote_addr=remote_addr,
                    role_rule=rule,
                    role_patience=role_patience or 0.0,
                )
            if rule is not None and conn.is_initiator != initiator:
                logger.info(
                    "%s took the other role on the punched connection: we %s",
                    peer,
                    "initiate" if conn.is_initiator else "respond",
                )
            return conn
        except trio.TooSlowError as exc:
            await _abort(raw)
            raise TransportError(f"handshakes with {remote_addr} did not finish in time") from exc
        except BaseException:
            await _abort(raw)
            raise
        finally:
            if punched is not None:
                punched.discard(key)


async def _abort(raw: TcpStream) -> None:
    """Close a punched socket whose handshakes failed with an RST, not a FIN.

    A punch can leave the two NATs disagreeing about the connection (seen in the NAT lab at
    round trips of microseconds, after hundreds of redials: one router held it established,
    the other still saw a simultaneous open in progress and dropped the data as invalid).
    An RST ends the entry where it is valid instead of leaving a half-open connection there
    for minutes.
    """
    with trio.CancelScope(shield=True):
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            logger.debug("SO_LINGER on a punched socket failed")
        await raw.aclose()


async def _reset_quietly(stream: NetStream) -> None:
    """Reset a DCUtR stream we are abandoning (it may be broken already)."""
    with trio.CancelScope(shield=True):
        try:
            await stream.reset()
        except (Libp2pError, trio.ClosedResourceError):
            logger.debug("resetting a DCUtR stream to %s failed", stream.remote_peer)
