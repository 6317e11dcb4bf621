"""The relay client: reservations, the stop role, and ``/p2p-circuit`` as a transport.

Every :class:`~libp2p.host.Host` has one (``host.relay``). It does three things:

* **Dial through a relay.** ``host.connect("<relay addr>/p2p/<relay>/p2p-circuit/p2p/<peer>")``
  connects to the relay (directly; a circuit never runs over a circuit), asks it to ``CONNECT``
  us to the peer, and runs the usual upgrade (multistream, Noise, Yamux) over the hop stream
  as initiator. The result is a :class:`~libp2p.network.connection.Connection` marked
  ``relayed``, and ``limited`` with the relay's :class:`~libp2p.network.connection.ConnectionLimit`
  when the relay announced one.
* **Accept circuits.** A relay announces an incoming circuit on a stop stream; we answer OK and
  upgrade the stream as responder.
* **Be reachable through a relay.** ``host.listen("<relay addr>/p2p/<relay>/p2p-circuit")``
  reserves a slot, verifies the relay's voucher, advertises our relayed addresses (pushing
  them to connected peers with identify-push), refreshes the reservation at three quarters of
  its lifetime, and when the connection to the relay drops, reconnects with exponential backoff
  and reserves again. Each step is published as an event (:mod:`.events`); the timetable is
  the I/O-free :class:`~.schedule.RefreshSchedule`.

A peer that does not serve the hop protocol is reported as :class:`~.protocol.NotARelay`:
identify's protocol list is checked first (waiting a bounded time for identify on that
connection), and an ``na`` to the hop proposal means the same. A relayed connection whose
relay announced limits runs over a ``RelayedPipe`` (:mod:`.pipe`), so that when the relay resets
the circuit at its limit, the connection's streams raise :class:`~.protocol.RelayLimitReached`
rather than a bare reset.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

import trio
from multiaddr import Multiaddr

from ...exceptions import Libp2pError, LocalUsageError, ProtocolNotSupported, RemoteProtocolError
from ...io import BufferedStream
from ...network.addrs import is_circuit_addr, is_loopback_addr, split_peer_id, with_peer_id
from ...network.connection import Connection, ConnectionLimit, Direction, NetStream
from ...peer.id import PeerID
from .interfaces import RelayClientHost
from .pipe import CircuitMeter, RelayedPipe
from .protocol import (
    HOP_CONNECT,
    HOP_PROTOCOL_ID,
    HOP_RESERVE,
    HOP_STATUS,
    STOP_CONNECT,
    STOP_PROTOCOL_ID,
    STOP_STATUS,
    MalformedRelayMessage,
    NotARelay,
    RelayRefused,
    RelayTimeout,
    Status,
    decode_addrs,
    decode_limit,
    decode_peer_id,
    frame,
    hop_message,
    read_hop,
    read_stop,
    send_stop_status,
    stop_message,
)
from .reservation import Reservation
from .schedule import RefreshSchedule

__all__ = ["RelayClient", "split_circuit_addr"]

logger = logging.getLogger(__name__)

#: Time allowed for a relay to answer RESERVE or CONNECT (go: 1 min for the whole exchange).
HOP_TIMEOUT = 60.0
#: Time the relay has to send the stop CONNECT once the stream is open.
STOP_TIMEOUT = 60.0
#: Longest wait for identify on a new connection to a relay before proposing the hop protocol
#: anyway (identify's answer tells whether the peer is a relay at all).
IDENTIFY_WAIT = 10.0

_STREAM_ERRORS = (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError)


def split_circuit_addr(addr: Multiaddr) -> tuple[Multiaddr, PeerID]:
    """Split ``<relay addr>/p2p/<relay>/p2p-circuit`` into the relay's address and ID.

    The relay's address may be empty (``/p2p/<relay>/p2p-circuit``: use a connection we
    already have, or the peerstore). Anything after ``/p2p-circuit`` is refused (a target's
    ``/p2p/<id>`` must be split off first; nested circuits are not supported).
    """
    parts = str(addr).split("/p2p-circuit")
    if len(parts) != 2 or parts[1]:
        raise LocalUsageError(
            f"{addr} is not a relay address of the form <relay addr>/p2p/<relay id>/p2p-circuit"
        )
    relay_addr, relay_id = split_peer_id(Multiaddr(parts[0]))
    if relay_id is None:
        raise LocalUsageError(
            f"{addr} does not name the relay: put /p2p/<relay id> before /p2p-circuit"
        )
    return relay_addr, relay_id


class RelayClient:
    """Dial through relays, accept relayed connections, and hold reservations.

    ``host`` is anything with the members
    :class:`~libp2p.relay.circuit_v2.interfaces.RelayClientHost` lists (the
    :class:`~libp2p.host.Host` builds one as ``host.relay``).
    """

    def __init__(
        self, host: RelayClientHost, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.host = host
        self._wall_clock = wall_clock
        self._reservations: dict[PeerID, Reservation] = {}
        self._maintained: dict[PeerID, trio.CancelScope] = {}

    def install(self) -> None:
        """Serve the stop protocol and become the swarm's ``/p2p-circuit`` dialer."""
        self.host.set_stream_handler(STOP_PROTOCOL_ID, self._handle_stop, allow_limited=True)
        self.host.swarm.circuit_dialer = self.dial

    # -- state ------------------------------------------------------------------------------

    @property
    def reservations(self) -> dict[PeerID, Reservation]:
        """Reservations we hold now, by relay."""
        return dict(self._reservations)

    @property
    def relayed_addrs(self) -> list[Multiaddr]:
        """Our addresses through every relay we hold a reservation on."""
        out: list[Multiaddr] = []
        for reservation in self._reservations.values():
            out.extend(a for a in reservation.addrs if a not in out)
        return out

    # -- dialing ----------------------------------------------------------------------------

    async def dial(self, addr: Multiaddr, target: PeerID | None) -> Connection:
        """Connect to ``target`` through the relay that ``addr`` names.

        ``addr`` is ``<relay addr>/p2p/<relay>/p2p-circuit`` (the target's ``/p2p/<id>``
        split off). Raises :class:`~.protocol.RelayRefused` with the relay's status when it
        cannot connect us.
        """
        if target is None:
            raise LocalUsageError(f"dialing {addr} needs the peer to reach: {addr}/p2p/<peer id>")
        relay_addr, relay = split_circuit_addr(addr)
        if relay == target:
            raise LocalUsageError(f"{addr}/p2p/{target} asks a relay to connect us to itself")
        relay_conn = await self._relay_connection(relay, relay_addr)
        stream = await self._open_hop(relay_conn, relay)
        reader = BufferedStream.wrap(stream)
        try:
            # The relay starts a circuit's timer after our CONNECT reached it.
            started_at = trio.current_time()
            with _answer_within(HOP_TIMEOUT, f"relay {relay} did not answer CONNECT"):
                await reader.send_all(frame(hop_message(HOP_CONNECT, peer=target)))
                msg = await read_hop(reader)
            if msg.type != HOP_STATUS:
                raise MalformedRelayMessage(f"relay {relay} answered CONNECT with type {msg.type}")
            if msg.status != Status.OK.value:
                raise RelayRefused(f"relay {relay} could not connect us to {target}", msg.status)
            full = relay_conn.remote_addr or Multiaddr("")
            limit = decode_limit(msg)
            timeout = self.host.config.dial_timeout
            what = f"the handshakes with {target} through relay {relay} did not finish"
            with _answer_within(timeout, what):
                return await self.host.swarm.upgrade_stream(
                    _pipe(reader, stream, limit, started_at, relay),
                    initiator=True,
                    direction=Direction.OUTBOUND,
                    expected_peer=target,
                    remote_addr=_circuit_addr(full, relay),
                    relayed=True,
                    limit=limit,
                )
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.reset()
            raise

    async def _relay_connection(self, relay: PeerID, relay_addr: Multiaddr | None) -> Connection:
        """A direct connection to ``relay``: an existing one, or a new dial."""
        for conn in self.host.connections_to(relay):
            if not conn.relayed and not conn.is_closed:
                return conn
        if relay_addr is not None and str(relay_addr):
            addrs = [relay_addr]
        else:
            addrs = [a for a in self.host.peerstore.addrs(relay) if not is_circuit_addr(a)]
        if not addrs:
            raise LocalUsageError(f"no direct address for relay {relay}: give its address")
        conn = await self.host.swarm.dial_peer(relay, addrs)
        if conn.relayed:
            raise LocalUsageError(f"relay {relay} is only reachable through a relay")
        return conn

    # -- the stop role ----------------------------------------------------------------------

    async def _handle_stop(self, stream: NetStream) -> None:
        reader = BufferedStream.wrap(stream)
        relay_conn = stream.connection
        relay = stream.remote_peer
        if relay_conn.relayed:
            await _answer_stop(reader, Status.PERMISSION_DENIED)
            return
        try:
            with trio.fail_after(STOP_TIMEOUT):
                msg = await read_stop(reader)
            if msg.type != STOP_CONNECT:
                await _answer_stop(reader, Status.UNEXPECTED_MESSAGE)
                return
            if not msg.HasField("peer") or not msg.peer.HasField("id"):
                raise MalformedRelayMessage("stop CONNECT without a peer")
            source = decode_peer_id(msg.peer.id, "stop CONNECT peer")
        except MalformedRelayMessage as exc:
            logger.debug("malformed stop message from relay %s: %s", relay, exc)
            await _answer_stop(reader, Status.MALFORMED_MESSAGE)
            return
        # The relay starts the circuit's timer once our OK reached it.
        started_at = trio.current_time()
        await reader.send_all(frame(stop_message(STOP_STATUS, status=Status.OK)))
        limit = decode_limit(msg)
        try:
            with trio.fail_after(self.host.config.accept_timeout):
                conn = await self.host.swarm.upgrade_stream(
                    _pipe(reader, stream, limit, started_at, relay),
                    initiator=False,
                    direction=Direction.INBOUND,
                    expected_peer=source,
                    remote_addr=_circuit_addr(relay_conn.remote_addr or Multiaddr(""), relay),
                    relayed=True,
                    limit=limit,
                )
        except (*_STREAM_ERRORS, trio.TooSlowError) as exc:
            logger.info(
                "relayed connection from %s via %s failed to upgrade: %s", source, relay, exc
            )
            await stream.reset()
            return
        await conn.wait_closed()

    # -- reservations -----------------------------------------------------------------------

    async def listen(self, addr: Multiaddr | str) -> list[Multiaddr]:
        """Become reachable through the relay ``addr`` names (``…/p2p/<relay>/p2p-circuit``).

        Returns our relayed addresses once the first reservation is made; raises if it cannot
        be made (:class:`~.protocol.RelayRefused` with the relay's status, or the dial
        error). From then on the reservation is kept up in the host's nursery: refreshed,
        and re-made after reconnecting when the connection to the relay drops.
        """
        relay_addr, relay = split_circuit_addr(Multiaddr(str(addr)))
        if relay in self._maintained:
            current = self._reservations.get(relay)
            return list(current.addrs) if current else []
        made: Reservation = await self.host.nursery.start(self._maintain, relay, relay_addr)
        return list(made.addrs)

    async def stop_listening(self, relay: PeerID) -> None:
        """Stop keeping a reservation on ``relay`` and withdraw its addresses."""
        scope = self._maintained.pop(relay, None)
        if scope is not None:
            scope.cancel()
        if self._reservations.pop(relay, None) is not None:
            self.host.identify.notify_changed()

    async def reserve(self, relay: PeerID, relay_addr: Multiaddr | None = None) -> Reservation:
        """Make (or refresh) one reservation on ``relay`` now, without maintaining it."""
        conn = await self._relay_connection(relay, relay_addr)
        return await self._reserve_on(conn, relay)

    async def _open_hop(self, conn: Connection, relay: PeerID) -> NetStream:
        """Open a hop stream to ``relay``, or raise :class:`NotARelay` if it serves none.

        Identify says which protocols the peer serves: wait (a bounded time) for it on this
        connection, and do not propose the hop protocol to a peer that listed others but not
        it. Without identify's answer, the proposal is made and waited for (never lazily), so
        that an ``na`` comes back as such instead of a reset.
        """
        with trio.move_on_after(IDENTIFY_WAIT):
            await self.host.identify.wait_identified(conn)
        protocols = self.host.peerstore.protocols(relay)
        if protocols and HOP_PROTOCOL_ID not in protocols:
            raise NotARelay(relay, "the protocols it announced in identify do not include it")
        try:
            return await conn.new_stream(HOP_PROTOCOL_ID)
        except ProtocolNotSupported as exc:
            raise NotARelay(relay, "it refused the hop protocol") from exc

    async def _reserve_on(self, conn: Connection, relay: PeerID) -> Reservation:
        stream = await self._open_hop(conn, relay)
        reader = BufferedStream.wrap(stream)
        try:
            with _answer_within(HOP_TIMEOUT, f"relay {relay} did not answer RESERVE"):
                await reader.send_all(frame(hop_message(HOP_RESERVE)))
                msg = await read_hop(reader)
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.reset()
            raise
        await reader.aclose()
        if msg.type != HOP_STATUS:
            raise MalformedRelayMessage(f"relay {relay} answered RESERVE with type {msg.type}")
        if msg.status != Status.OK.value:
            raise RelayRefused(f"relay {relay} refused our reservation", msg.status)
        if not msg.HasField("reservation") or not msg.reservation.HasField("expire"):
            raise MalformedRelayMessage(f"relay {relay} accepted without a reservation expiry")
        expire = msg.reservation.expire
        if expire <= self._wall_clock():
            raise RemoteProtocolError(f"relay {relay} sent a reservation that already expired")
        has_voucher = msg.reservation.HasField("voucher")
        if has_voucher:
            from ...peer.envelope import InvalidEnvelope
            from ...peer.voucher import open_reservation_voucher

            try:
                open_reservation_voucher(
                    msg.reservation.voucher, peer=self.host.peer_id, relay=relay
                )
            except InvalidEnvelope as exc:
                raise MalformedRelayMessage(f"relay {relay} sent a bad voucher: {exc}") from exc
        dialed = conn.remote_addr if conn.direction is Direction.OUTBOUND else None
        addrs = _relayed_addrs(relay, dialed, decode_addrs(list(msg.reservation.addrs)))
        return Reservation(
            relay=relay,
            addrs=tuple(addrs),
            expire=expire,
            limit=decode_limit(msg),
            has_voucher=has_voucher,
            peer=self.host.peer_id,
        )

    async def _maintain(
        self,
        relay: PeerID,
        relay_addr: Multiaddr | None,
        *,
        task_status: trio.TaskStatus[Reservation] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        from .events import (
            ReservationAttemptFailed,
            ReservationMade,
            ReservationRefreshed,
            ReservationRefused,
        )

        events = self.host.events
        started = False
        schedule = RefreshSchedule(trio.current_time())
        with trio.CancelScope() as scope:
            self._maintained[relay] = scope
            try:
                while True:
                    wake = schedule.next_attempt
                    if schedule.expires_at is not None:
                        wake = min(wake, schedule.expires_at)
                    await trio.sleep_until(wake)
                    if schedule.expired(trio.current_time()):
                        self._drop(relay, "the reservation expired")
                    if trio.current_time() < schedule.next_attempt:
                        continue
                    try:
                        conn = await self._relay_connection(relay, relay_addr)
                        reservation = await self._reserve_on(conn, relay)
                    except (*_STREAM_ERRORS, trio.TooSlowError) as exc:
                        if not started:
                            raise
                        delay = schedule.failed(trio.current_time())
                        logger.info("reservation on %s failed: %s", relay, exc)
                        if isinstance(exc, RelayRefused):
                            events.publish(ReservationRefused(relay, exc.status, str(exc), delay))
                        else:
                            events.publish(ReservationAttemptFailed(relay, str(exc), delay))
                        continue
                    schedule.reserved(trio.current_time(), reservation.expire - self._wall_clock())
                    refreshed = relay in self._reservations
                    self._reservations[relay] = reservation
                    self.host.identify.notify_changed()
                    if refreshed:
                        events.publish(ReservationRefreshed(reservation))
                    else:
                        logger.info(
                            "reserved on %s: %s", relay, [str(a) for a in reservation.addrs]
                        )
                        events.publish(ReservationMade(reservation))
                    if not started:
                        started = True
                        task_status.started(reservation)
                    with trio.move_on_at(schedule.next_attempt):
                        await conn.wait_closed()
                    if conn.is_closed:
                        schedule.connection_lost(trio.current_time())
                        self._drop(relay, "the connection to the relay closed")
            finally:
                if self._maintained.get(relay) is scope:
                    del self._maintained[relay]

    def _drop(self, relay: PeerID, reason: str) -> None:
        """Forget the reservation on ``relay`` and withdraw its addresses."""
        from .events import ReservationLost

        if self._reservations.pop(relay, None) is None:
            return
        self.host.identify.notify_changed()
        logger.info("reservation on %s lost: %s", relay, reason)
        self.host.events.publish(ReservationLost(relay, reason))


@contextlib.contextmanager
def _answer_within(seconds: float, what: str) -> Iterator[None]:
    """``trio.fail_after(seconds)``, raising :class:`RelayTimeout` (``what``) when it fires: a
    relay that stalls is the relay's failure, reported with a typed error."""
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise RelayTimeout(f"{what} within {seconds:g} s") from None


async def _answer_stop(reader: BufferedStream, status: Status) -> None:
    try:
        await send_stop_status(reader, status)
    finally:
        await reader.aclose()


def _pipe(
    reader: BufferedStream,
    stream: NetStream,
    limit: ConnectionLimit | None,
    started_at: float,
    relay: PeerID,
) -> trio.abc.Stream:
    """The transport of a relayed connection: the hop or stop stream itself, or, when the
    relay announced limits, a :class:`RelayedPipe` that recognises the relay's limit resets."""
    if limit is None:
        return reader
    return RelayedPipe(reader, stream, CircuitMeter(limit, started_at), relay)


def _circuit_addr(relay_addr: Multiaddr, relay: PeerID) -> Multiaddr:
    return Multiaddr(f"{with_peer_id(relay_addr, relay)}/p2p-circuit")


def _relayed_addrs(
    relay: PeerID, dialed: Multiaddr | None, offered: list[Multiaddr]
) -> list[Multiaddr]:
    """Our relayed addresses: the one we reached the relay at first, then those it offered.

    Offered addresses naming another peer, or themselves relayed, are dropped; so are
    loopback ones when we reached the relay elsewhere (a relay listening on all interfaces
    may list them, and they would mean nothing to a dialer).
    """
    suffix = f"/p2p/{relay}"
    bases: list[Multiaddr] = []
    if dialed is not None and str(dialed):
        bases.append(dialed)
    remote_loopback = dialed is not None and str(dialed) != "" and is_loopback_addr(dialed)
    for addr in offered:
        text = str(addr)
        if is_circuit_addr(addr):
            continue
        if text.endswith(suffix):
            text = text[: -len(suffix)]
        if "/p2p/" in text or not text:
            continue
        base = Multiaddr(text)
        if is_loopback_addr(base) and dialed is not None and not remote_loopback:
            continue
        if base not in bases:
            bases.append(base)
    return [_circuit_addr(base, relay) for base in bases]
