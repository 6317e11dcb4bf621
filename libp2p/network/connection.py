"""Connections and protocol streams.

A :class:`Connection` is one upgraded (authenticated, multiplexed) link to a peer. It runs the
Yamux session and an accept loop inside its own nursery; each inbound stream negotiates its
protocol with multistream-select and is handed to the handler registered for that protocol.
A handler that fails, or a peer that sends garbage on one stream, costs only that stream: it is
reset and logged, and the connection and its other streams carry on.

Outbound streams wait for the peer to accept their protocol, unless the caller knows the peer
supports it (identify said so): then negotiation is lazy ("0-RTT"), as in go, and the
application's first bytes follow the proposal without waiting for the echo.

Idle connections. A connection that is about to be replaced (a relayed connection after a hole
punch gave a direct one) should not be cut under the streams that still run on it. It keeps
count of its *active* streams, and :meth:`Connection.wait_idle` /
:meth:`Connection.close_when_idle` wait until there has been none for a grace period. A stream
is active from the moment it is opened, by either side, until it is finished: FIN sent and
received, reset either way, or closed by us with ``aclose()`` (we read nothing more from it, so
nothing the peer still sends could reach anyone); a stream that neither side ever ends keeps the
connection in use, as it keeps its muxer resources. Streams still negotiating count: the peer
may be opening an application stream (the negotiation timeout bounds how long one can take).
Streams of *background* protocols -- the host's housekeeping: identify, ping, hole punching,
AutoNAT, see :meth:`Swarm.set_background <libp2p.network.swarm.Swarm.set_background>` -- never
count, in either direction: they would otherwise keep a connection alive forever (js-libp2p
pings every connection periodically). A stream the peer opens while we wait is served as usual
and counts: the peer still uses the connection, so it stays, and the grace starts again when
that stream ends. Only a stream that crosses the final GoAway on the wire is cut, as on any
close: on the peer's side it fails with an error (a reset, the connection closed) instead of
ending cleanly; a peer that prefers the direct connection for new streams, as go, rust and js
do, does not open one there anyway.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass

import trio
from multiaddr import Multiaddr

from .. import multistream
from ..exceptions import (
    ConnectionClosedError,
    Libp2pError,
    LimitedConnectionError,
    LocalUsageError,
)
from ..io import BufferedStream
from ..peer.id import PeerID
from ..stream_muxer.yamux import YamuxStream
from .upgrader import UpgradedConnection

__all__ = ["Connection", "ConnectionLimit", "Direction", "NetStream", "StreamHandler"]

logger = logging.getLogger(__name__)

#: Longest time an inbound stream may take to name its protocol.
NEGOTIATE_TIMEOUT = 10.0


class Direction(enum.Enum):
    """Who opened a connection (at the transport level)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True)
class ConnectionLimit:
    """What a relay allows on a relayed connection (Circuit Relay v2 ``Limit``).

    The relay enforces it: when either limit is reached it resets the circuit.
    """

    #: Seconds the relay keeps the circuit open; ``None`` for no time limit.
    duration: int | None
    #: Bytes the relay forwards in each direction; ``None`` for no data limit.
    data: int | None

    def __str__(self) -> str:
        duration = "no time limit" if self.duration is None else f"{self.duration} s"
        data = "no data limit" if self.data is None else f"{self.data} bytes per direction"
        return f"{duration}, {data}"


class NetStream(trio.abc.HalfCloseableStream):
    """A protocol stream on a :class:`Connection`: a trio half-closeable stream plus metadata."""

    __slots__ = ("_muxed", "_stream", "connection", "protocol")

    def __init__(
        self,
        stream: trio.abc.HalfCloseableStream,
        muxed: YamuxStream,
        protocol: str,
        connection: Connection,
    ) -> None:
        self._stream = stream
        self._muxed = muxed
        #: The negotiated protocol ID.
        self.protocol = protocol
        #: The connection this stream belongs to.
        self.connection = connection

    @property
    def remote_peer(self) -> PeerID:
        """The peer at the other end."""
        return self.connection.remote_peer

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        # Closed by us: we read nothing more, so it no longer keeps the connection in use,
        # even before the peer's FIN arrives.
        self.connection._release(self._muxed)
        await self._stream.aclose()

    async def reset(self) -> None:
        """Abort the stream in both directions."""
        await self._muxed.reset()

    @property
    def bytes_sent(self) -> int:
        """Payload bytes sent on this stream so far (protocol negotiation included)."""
        return self._muxed.bytes_sent

    @property
    def bytes_received(self) -> int:
        """Payload bytes the peer sent on this stream so far, read or not."""
        return self._muxed.bytes_received


#: ``async def handler(stream: NetStream) -> None``: serves one inbound stream of a protocol
#: (see :meth:`Host.set_stream_handler`).
StreamHandler = Callable[[NetStream], Awaitable[None]]


class Connection:
    """An authenticated, multiplexed connection to one peer."""

    def __init__(
        self,
        upgraded: UpgradedConnection,
        *,
        direction: Direction,
        local_addr: Multiaddr | None,
        remote_addr: Multiaddr | None,
        handlers: Mapping[str, StreamHandler],
        relayed: bool = False,
        limit: ConnectionLimit | None = None,
        limited_protocols: Container[str] = (),
        background_protocols: Container[str] = (),
    ) -> None:
        self._up = upgraded
        self._handlers = handlers
        self._limited_protocols = limited_protocols
        self._background_protocols = background_protocols
        #: Whether we dialed (outbound) or accepted (inbound) the underlying transport connection.
        self.direction = direction
        #: Our end of the transport connection, when known.
        self.local_addr = local_addr
        #: The peer's end of the transport connection, when known.
        self.remote_addr = remote_addr
        #: True for a connection through a relay (``/p2p-circuit``).
        self.relayed = relayed
        #: The limits the relay announced for this connection, or ``None``.
        self.limit = limit
        #: ``trio.current_time()`` when the connection finished upgrading.
        self.opened_at = trio.current_time()
        self._closed = trio.Event()
        self._closing = False
        self._nursery: trio.Nursery | None = None
        # Streams that keep the connection in use (see the module docstring), and, while
        # someone waits for idleness, an event set when that set changes or the connection
        # ends (made only then: opening and finishing streams stays cheap).
        self._active: set[YamuxStream] = set()
        self._activity: trio.Event | None = None
        self._idle_close: trio.CancelScope | None = None

    # -- identity --------------------------------------------------------------------

    @property
    def remote_peer(self) -> PeerID:
        """The peer ID proven by the security handshake."""
        return self._up.secure.remote_peer

    @property
    def local_peer(self) -> PeerID:
        """Our own peer ID."""
        return self._up.secure.local_peer

    @property
    def is_initiator(self) -> bool:
        """Our role in the security and muxer handshakes (not necessarily who dialed)."""
        return self._up.initiator

    @property
    def muxer(self) -> str:
        """The stream multiplexer protocol in use."""
        return "/yamux/1.0.0"

    @property
    def security(self) -> str:
        """The security protocol in use."""
        return "/noise"

    @property
    def limited(self) -> bool:
        """True when a relay limits this connection's duration or data.

        Use such a connection only for coordination (identify, ping, hole punching) and move
        traffic to a direct connection: only protocols registered with ``allow_limited=True``
        are served on it, and :meth:`new_stream` needs ``allow_limited=True``.
        """
        return self.limit is not None

    @property
    def is_closed(self) -> bool:
        """True once the connection has ended, or is ending (:meth:`aclose` was called, or
        the muxer session is over -- the peer closed it -- while its tasks wind down): no new
        stream may use it."""
        return self._closing or self._closed.is_set() or self._up.muxer.is_closed

    @property
    def error(self) -> BaseException | None:
        """What ended the connection when it failed (``None`` while open, or after a clean
        close): for a relayed connection that the relay cut at its data or time limit, a
        :class:`~libp2p.relay.circuit_v2.RelayLimitReached` saying which."""
        return self._up.muxer.error

    async def wait_closed(self) -> None:
        """Wait until the connection has ended."""
        await self._closed.wait()

    # -- activity ------------------------------------------------------------------------

    @property
    def active_streams(self) -> int:
        """Streams that keep the connection in use: opened by either side, not finished, not
        closed by us, and not of a background protocol (see the module docstring)."""
        return len(self._active)

    async def wait_idle(self, grace: float = 0.0) -> None:
        """Return once the connection has had no :attr:`active stream <active_streams>` for
        ``grace`` seconds in a row, or as soon as it has ended.

        The grace starts anew whenever a stream opens, and when the last one finishes. It
        gives a peer that has just finished one stream time to open the next without racing
        the close that would follow.
        """
        while not self.is_closed:
            if self._activity is None:
                self._activity = trio.Event()
            changed = self._activity
            if self._active:
                await changed.wait()
                continue
            with trio.move_on_after(grace):
                await changed.wait()
            if not changed.is_set():
                return

    def close_when_idle(self, grace: float = 0.0) -> None:
        """Close the connection once it has been idle for ``grace`` seconds (see
        :meth:`wait_idle`); returns at once.

        For a connection that has been replaced (a relayed one after a hole punch): new
        streams go elsewhere (:meth:`Swarm.best_connection
        <libp2p.network.swarm.Swarm.best_connection>` prefers direct connections), while the
        streams already on it, and any the peer still opens on it, run to their end. Whatever
        else ends the connection first (the peer, a relay's limit) ends the wait too. A later
        call replaces the grace of an earlier one.
        """
        if self.is_closed:
            return
        if self._nursery is None:
            raise LocalUsageError("close_when_idle() needs a running connection")
        if self._idle_close is not None:
            self._idle_close.cancel()
        scope = self._idle_close = trio.CancelScope()
        self._nursery.start_soon(self._close_when_idle, grace, scope)

    async def _close_when_idle(self, grace: float, scope: trio.CancelScope) -> None:
        with scope:
            await self.wait_idle(grace)
            if not self.is_closed:
                logger.debug("closing %r: idle for %.1f s", self, grace)
                await self.aclose()

    def _note_activity(self) -> None:
        if self._activity is not None:
            self._activity.set()
            self._activity = None

    def _track(self, muxed: YamuxStream) -> None:
        """Count ``muxed`` as active until it is finished (or released)."""
        if muxed in self._active or muxed.is_finished:
            return
        self._active.add(muxed)
        self._note_activity()
        muxed.call_when_finished(self._release)

    def _release(self, muxed: YamuxStream) -> None:
        """``muxed`` no longer counts: finished, closed by us, or of a background protocol."""
        if muxed in self._active:
            self._active.discard(muxed)
            self._note_activity()

    def __repr__(self) -> str:
        return (
            f"<Connection {self.direction.value} {self.remote_peer} {self.remote_addr} "
            f"initiator={self.is_initiator}{' relayed' if self.relayed else ''}"
            f"{' limited' if self.limited else ''}>"
        )

    # -- running -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the muxer and serve inbound streams until the connection ends."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self._up.muxer.run)
                nursery.start_soon(self._accept_loop, nursery)
                task_status.started()
        finally:
            self._closed.set()
            self._note_activity()
            with trio.CancelScope(shield=True):
                await self._up.muxer.aclose()

    async def _accept_loop(self, nursery: trio.Nursery) -> None:
        try:
            while True:
                stream = await self._up.muxer.accept_stream()
                nursery.start_soon(self._serve_inbound, stream)
        except ConnectionClosedError:
            pass
        # The session is over: nothing more can arrive. End the connection's tasks.
        nursery.cancel_scope.cancel()

    def _serves(self, protocol: str) -> bool:
        if protocol not in self._handlers:
            return False
        return self.limit is None or protocol in self._limited_protocols

    async def _serve_inbound(self, muxed: YamuxStream) -> None:
        # Active while it negotiates: it may be the peer's next application stream.
        self._track(muxed)
        buffered = BufferedStream(muxed)
        try:
            with trio.fail_after(NEGOTIATE_TIMEOUT):
                protocol = await multistream.handle(buffered, self._serves)
        except (Libp2pError, trio.TooSlowError) as exc:
            logger.debug("inbound stream from %s failed to negotiate: %s", self.remote_peer, exc)
            await muxed.reset()
            return
        except trio.ClosedResourceError:
            return
        handler = self._handlers.get(protocol)
        if handler is None:  # removed while negotiating
            await muxed.reset()
            return
        if protocol in self._background_protocols:
            self._release(muxed)
        stream = NetStream(buffered if buffered.buffered else muxed, muxed, protocol, self)
        try:
            await handler(stream)
        except (
            Libp2pError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
        ) as exc:
            logger.debug("handler for %s from %s ended: %r", protocol, self.remote_peer, exc)
            await muxed.reset()
        except Exception:
            # A bug in an application handler: log it with its traceback and drop only this
            # stream. The connection and every other stream carry on.
            logger.exception("stream handler for %s raised", protocol)
            await muxed.reset()

    # -- streams ------------------------------------------------------------------------

    async def new_stream(
        self,
        protocols: Sequence[str] | str,
        *,
        lazy: bool = False,
        allow_limited: bool = False,
    ) -> NetStream:
        """Open a stream and negotiate one of ``protocols`` (in order of preference).

        By default this waits for the peer to accept a protocol, so a refusal is a
        :class:`~libp2p.exceptions.ProtocolNotSupported` from this call. ``lazy=True``, for a
        single protocol the peer is known to support (:meth:`Host.new_stream
        <libp2p.host.Host.new_stream>` decides from identify), returns at once and checks the
        answer on the first read (see :func:`libp2p.multistream.select_lazy`).

        On a :attr:`limited` connection this raises
        :class:`~libp2p.exceptions.LimitedConnectionError` unless ``allow_limited`` is set.
        """
        if isinstance(protocols, str):
            protocols = [protocols]
        if not protocols:
            raise LocalUsageError("new_stream() needs at least one protocol")
        if self.is_closed:
            cause = self.error
            reason = f": {cause}" if cause is not None else ""
            raise ConnectionClosedError(
                f"connection to {self.remote_peer} is closed{reason}"
            ) from cause
        if self.limit is not None and not allow_limited:
            raise LimitedConnectionError(
                f"the connection to {self.remote_peer} is relayed with limits ({self.limit}); "
                f"{' or '.join(protocols)} did not opt in to limited connections "
                "(pass allow_limited=True if it may run over one, or wait for a direct "
                "connection)"
            )
        muxed = await self._up.muxer.open_stream()
        background = self._background_protocols
        if not all(p in background for p in protocols):
            self._track(muxed)
        buffered = BufferedStream(muxed)
        try:
            if lazy and len(protocols) == 1:
                negotiated = await multistream.select_lazy(buffered, protocols[0])
                return NetStream(negotiated, muxed, protocols[0], self)
            chosen = await multistream.select(buffered, protocols)
        except BaseException:
            with trio.CancelScope(shield=True):
                await muxed.reset()
            raise
        if chosen in background:
            self._release(muxed)
        return NetStream(buffered if buffered.buffered else muxed, muxed, chosen, self)

    async def aclose(self) -> None:
        """Close the connection (GoAway, then close the transport) and wait until it has
        ended, so that a ``connect()`` right after ``disconnect()`` dials anew instead of
        being handed the connection being closed."""
        self._closing = True
        self._note_activity()
        await self._up.muxer.aclose()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
            await self._closed.wait()
