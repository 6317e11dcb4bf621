"""The relay service: the hop role of Circuit Relay v2.

A relay accepts reservations from peers that want to be reachable through it (``RESERVE``) and
connects other peers to them (``CONNECT``): it opens a stop stream to the target over the
target's existing connection -- it never dials the target -- and splices the hop and stop
streams into one byte pipe. Everything the pipe carries is end-to-end encrypted by the two
peers; the relay only counts bytes.

Limits (:class:`~.config.RelayConfig`) are enforced as the spec intends: ``RESERVE`` requests
per second per peer and per IP address (refused with ``RESOURCE_LIMIT_EXCEEDED``, the answer
held back up to a second so that a client retrying at once is slowed), reservations per relay
and per IP address, circuits per peer, and for each circuit a duration (a timer, so an idle
circuit ends on time) and a byte count per direction. A circuit that reaches a limit is reset
at both ends; nothing is ever written into the relayed bytes.

A reservation lasts until its TTL passes or the reserving peer's last direct connection to the
relay closes, whichever comes first. The bookkeeping (reservations, caps, TTL, circuits per
peer) is the I/O-free :class:`~.book.ReservationBook`; this module is its trio driver. The
service learns of closed connections from the swarm's reliable observer callbacks
(:meth:`Swarm.observe <libp2p.network.swarm.Swarm.observe>`), never from the public event bus,
which may drop events for a slow subscriber (a lost "closed" would keep a slot taken forever).
Hop requests over relayed connections are refused with ``PERMISSION_DENIED``: a circuit never
runs over another circuit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio
from multiaddr import Multiaddr

from ...exceptions import Libp2pError
from ...io import BufferedStream
from ...network.addrs import first_ip, is_circuit_addr, with_peer_id
from ...network.connection import Connection, ConnectionLimit, NetStream
from ...peer.id import PeerID
from .book import BookRefusal, ReservationBook
from .config import RelayConfig, RelayStats
from .events import RelayCircuitClosed, RelayCircuitOpened, RelayReservationAccepted
from .interfaces import RelayServiceHost
from .protocol import (
    HOP_CONNECT,
    HOP_PROTOCOL_ID,
    HOP_RESERVE,
    HOP_STATUS,
    STOP_CONNECT,
    STOP_PROTOCOL_ID,
    STOP_STATUS,
    MalformedRelayMessage,
    Status,
    decode_peer_id,
    frame,
    hop_message,
    read_hop,
    read_stop,
    send_hop_status,
    stop_message,
)

if TYPE_CHECKING:
    from .pb import circuit_pb2

__all__ = ["RelayService", "splice"]

logger = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_STREAM_ERRORS = (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError)


class _LimitReached(Exception):
    pass


class RelayService:
    """Serve ``/libp2p/circuit/relay/0.2.0/hop`` on ``host``.

    Usually created by the host (``HostConfig(relay_service=RelayConfig())``) and reached as
    ``host.relay_service``; :attr:`stats` holds the counters an operator watches.
    ``wall_clock`` gives the unix time written into reservations (``time.time``). ``host`` is
    anything with the few members
    :class:`~libp2p.relay.circuit_v2.interfaces.RelayServiceHost` lists.
    """

    def __init__(
        self,
        host: RelayServiceHost,
        config: RelayConfig | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.config = config or RelayConfig()
        self._wall_clock = wall_clock
        self._stats = RelayStats()
        self._book = ReservationBook(self.config)

    def install(self) -> None:
        """Register the hop handler (also on limited connections, to refuse them properly)."""
        self.host.set_stream_handler(HOP_PROTOCOL_ID, self._handle_hop, allow_limited=True)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Release reservations of peers that disconnect (runs in the host's nursery).

        The swarm tells the service of every closed connection synchronously
        (:meth:`connection_closed`); this task only keeps that registration for its lifetime.
        """
        swarm = self.host.swarm
        swarm.observe(self)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            swarm.unobserve(self)

    # -- connection observer (called by the swarm; must not block) --------------------------

    def connection_opened(self, conn: Connection) -> None:
        """Nothing to do: a reservation starts with ``RESERVE``."""

    def connection_closed(self, conn: Connection) -> None:
        """Release the peer's reservation when its last direct connection closed."""
        if conn.relayed or self._direct_connection(conn.remote_peer) is not None:
            return
        if self._book.release(conn.remote_peer):
            logger.debug("reservation of %s released: disconnected", conn.remote_peer)

    # -- state ------------------------------------------------------------------------------

    @property
    def stats(self) -> RelayStats:
        """The relay's counters (current values for the ``*_active`` ones)."""
        self._stats.reservations_active = self._book.active(trio.current_time())
        return self._stats

    @property
    def book(self) -> ReservationBook:
        """The reservation book (read it; the service alone changes it)."""
        return self._book

    def reservations(self) -> dict[PeerID, float]:
        """Peers holding a reservation, with the ``trio.current_time()`` it ends at."""
        return self._book.reservations(trio.current_time())

    def _direct_connection(self, peer: PeerID) -> Connection | None:
        for conn in self.host.connections_to(peer):
            if not conn.relayed and not conn.is_closed:
                return conn
        return None

    def _relay_addrs(self) -> list[Multiaddr]:
        me = self.host.peer_id
        return [with_peer_id(a, me) for a in self.host.addrs if not is_circuit_addr(a)]

    # -- hop stream -------------------------------------------------------------------------

    async def _handle_hop(self, stream: NetStream) -> None:
        reader = BufferedStream.wrap(stream)
        try:
            with trio.fail_after(self.config.hop_timeout):
                msg = await read_hop(reader)
        except MalformedRelayMessage as exc:
            logger.debug("malformed hop message from %s: %s", stream.remote_peer, exc)
            await self._answer(reader, Status.MALFORMED_MESSAGE)
            return
        if msg.type == HOP_RESERVE:
            await self._reserve(reader, stream.connection)
        elif msg.type == HOP_CONNECT:
            await self._connect(reader, stream, msg)
        else:
            await self._answer(reader, Status.UNEXPECTED_MESSAGE)

    async def _answer(self, reader: BufferedStream, status: Status) -> None:
        try:
            await send_hop_status(reader, status)
        finally:
            await reader.aclose()

    # -- RESERVE ----------------------------------------------------------------------------

    async def _reserve(self, reader: BufferedStream, conn: Connection) -> None:
        peer = conn.remote_peer
        if conn.relayed:
            outcome: BookRefusal | bool = BookRefusal(
                Status.PERMISSION_DENIED, "relayed connection"
            )
        else:
            outcome = self._book.reserve(peer, _ip_text(conn.remote_addr), trio.current_time())
        if isinstance(outcome, BookRefusal):
            self._stats.reservations_refused[outcome.reason] += 1
            # A flood of refused requests must not flood the log too: the stats count them.
            rated = outcome.status is Status.RESOURCE_LIMIT_EXCEEDED
            (logger.debug if rated else logger.info)(
                "refused a reservation for %s: %s", peer, outcome.reason
            )
            if outcome.answer_at is None:
                await self._answer(reader, outcome.status)
                return
            try:
                # A client that asks again as soon as it is answered waits here, so that it
                # asks at the rate the limit allows (see RelayConfig).
                await trio.sleep_until(outcome.answer_at)
                await self._answer(reader, outcome.status)
            finally:
                self._book.answered(peer)
            return
        refresh = outcome
        ttl = self.config.reservation_ttl
        expire = int(self._wall_clock() + ttl)
        from ...peer.voucher import seal_reservation_voucher

        reply = hop_message(HOP_STATUS, status=Status.OK, limit=self.config.circuit_limit)
        reply.reservation.expire = expire
        reply.reservation.addrs.extend(a.to_bytes() for a in self._relay_addrs())
        reply.reservation.voucher = seal_reservation_voucher(self.host.key, peer, expire)
        self._stats.reservations_accepted += 1
        logger.debug("reservation for %s until %d", peer, expire)
        self.host.events.publish(RelayReservationAccepted(peer, ttl, refresh))
        try:
            await reader.send_all(frame(reply))
        finally:
            await reader.aclose()

    # -- CONNECT ----------------------------------------------------------------------------

    async def _connect(
        self, reader: BufferedStream, stream: NetStream, msg: circuit_pb2.HopMessage
    ) -> None:
        source = stream.remote_peer
        try:
            if stream.connection.relayed:
                raise _Refusal(Status.PERMISSION_DENIED, "relayed connection")
            if not msg.HasField("peer") or not msg.peer.HasField("id"):
                raise _Refusal(Status.MALFORMED_MESSAGE, "malformed")
            try:
                target = decode_peer_id(msg.peer.id, "CONNECT target")
            except MalformedRelayMessage:
                raise _Refusal(Status.MALFORMED_MESSAGE, "malformed") from None
            target_conn = self._direct_connection(target)
            if target_conn is None and self._book.release(target):
                # Not expected (the swarm reports every close), but never connect to a
                # reservation whose holder is gone.
                logger.debug("reservation of %s released: disconnected", target)
            refused = self._book.open_circuit(source, target, trio.current_time())
            if refused is not None:
                raise _Refusal(refused.status, refused.reason)
            if target_conn is None:
                self._book.close_circuit(source, target)
                raise _Refusal(Status.CONNECTION_FAILED, "connection_failed")
        except _Refusal as refusal:
            logger.info("refused a circuit from %s: %s", source, refusal.reason)
            self._stats.circuits_refused[refusal.reason] += 1
            await self._answer(reader, refusal.status)
            return

        self._stats.circuits_active += 1
        try:
            await self._open_circuit(reader, stream, source, target, target_conn)
        finally:
            self._stats.circuits_active -= 1
            self._book.close_circuit(source, target)

    async def _open_circuit(
        self,
        reader: BufferedStream,
        stream: NetStream,
        source: PeerID,
        target: PeerID,
        target_conn: Connection,
    ) -> None:
        limit = self.config.circuit_limit
        stop: NetStream | None = None
        try:
            with trio.fail_after(self.config.stop_timeout):
                stop = await target_conn.new_stream(STOP_PROTOCOL_ID)
                stop_reader = BufferedStream.wrap(stop)
                connect = stop_message(STOP_CONNECT, peer=source, limit=limit)
                await stop_reader.send_all(frame(connect))
                reply = await read_stop(stop_reader)
            if reply.type != STOP_STATUS or reply.status != Status.OK.value:
                raise _StopFailed(f"target answered {Status.describe(reply.status)}")
        except (*_STREAM_ERRORS, trio.TooSlowError, _StopFailed) as exc:
            logger.info("circuit %s -> %s failed at the target: %r", source, target, exc)
            self._stats.circuits_refused["connection_failed"] += 1
            if stop is not None:
                with trio.CancelScope(shield=True):
                    await stop.reset()
            await self._answer(reader, Status.CONNECTION_FAILED)
            return
        ok = hop_message(HOP_STATUS, status=Status.OK, limit=limit)
        try:
            await reader.send_all(frame(ok))
        except _STREAM_ERRORS:
            with trio.CancelScope(shield=True):
                await stop.reset()
            raise
        self._stats.circuits_opened += 1
        logger.debug("circuit %s -> %s open", source, target)
        self.host.events.publish(RelayCircuitOpened(source, target))
        opened_at = trio.current_time()
        counted = 0

        def count(n: int) -> None:
            nonlocal counted
            counted += n
            self._stats.bytes_relayed += n

        outcome = "reset"
        try:
            outcome = await self._splice(reader, stream, stop_reader, stop, limit, count)
        finally:
            duration = trio.current_time() - opened_at
            self.host.events.publish(RelayCircuitClosed(source, target, counted, outcome, duration))

    async def _splice(
        self,
        a: BufferedStream,
        a_stream: NetStream,
        b: BufferedStream,
        b_stream: NetStream,
        limit: ConnectionLimit | None,
        on_bytes: Callable[[int], None],
    ) -> str:
        """Forward bytes both ways until both ends have closed, or reset both on a limit.

        Returns how it ended: ``"closed"``, ``"limit"`` or ``"reset"``.
        """
        outcome = await splice(
            a,
            b,
            data_limit=limit.data if limit is not None else None,
            duration=limit.duration if limit is not None else None,
            on_bytes=on_bytes,
        )
        with trio.CancelScope(shield=True):
            if outcome == "closed":
                await a.aclose()
                await b.aclose()
                return outcome
            if outcome == "limit":
                self._stats.circuits_limited += 1
            await a_stream.reset()
            await b_stream.reset()
        return "limit" if outcome == "limit" else "reset"


async def splice(
    a: trio.abc.HalfCloseableStream,
    b: trio.abc.HalfCloseableStream,
    *,
    data_limit: int | None = None,
    duration: float | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> str:
    """Copy bytes from ``a`` to ``b`` and from ``b`` to ``a`` until both directions end.

    An EOF in one direction is passed on as ``send_eof``. At most ``data_limit`` bytes are
    forwarded in each direction, and nothing after ``duration`` seconds. Returns how it ended:
    ``"closed"`` (both directions reached EOF), ``"limit"`` (a limit was reached) or
    ``"broken"`` (either stream failed). The streams are left open for the caller to close or
    reset.
    """
    outcome = "closed"

    async def pump(
        src: trio.abc.ReceiveStream, dst: trio.abc.HalfCloseableStream, scope: trio.CancelScope
    ) -> None:
        nonlocal outcome
        sent = 0
        try:
            while True:
                data = await src.receive_some(_CHUNK)
                if not data:
                    await dst.send_eof()
                    return
                if data_limit is not None and sent + len(data) > data_limit:
                    allowed = data_limit - sent
                    if allowed:
                        await dst.send_all(data[:allowed])
                        if on_bytes is not None:
                            on_bytes(allowed)
                    raise _LimitReached
                await dst.send_all(data)
                sent += len(data)
                if on_bytes is not None:
                    on_bytes(len(data))
        except _LimitReached:
            outcome = "limit"
            scope.cancel()
        except _STREAM_ERRORS:
            if outcome == "closed":
                outcome = "broken"
            scope.cancel()

    with trio.move_on_after(math.inf if duration is None else duration) as timer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, a, b, nursery.cancel_scope)
            nursery.start_soon(pump, b, a, nursery.cancel_scope)
    if timer.cancelled_caught:
        outcome = "limit"
    return outcome


class _Refusal(Exception):
    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _StopFailed(Exception):
    pass


def _ip_text(addr: Multiaddr | None) -> str | None:
    ip = first_ip(addr)
    return None if ip is None else str(ip)
