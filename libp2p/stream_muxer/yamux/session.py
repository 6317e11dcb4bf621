"""The trio driver: :class:`YamuxSession` runs a :class:`~.connection.YamuxConnection` over a
trio stream and hands out :class:`YamuxStream` objects.

Theory of operation
===================

``run()`` owns three tasks and nothing else touches the underlying stream:

* the **reader** reads large chunks (``read_size``), feeds them to the core and turns the
  returned events into wake-ups. It never waits for an application: received data goes into
  the stream's buffer, which the receive window bounds, and every reply (ping ACK, window
  update, RST) is only *queued*. A slow reader on one stream therefore neither grows memory
  beyond that stream's window nor stalls any other stream or the ping replies;
* the **writer** is the only task that calls ``send_all`` on the underlying stream. It takes
  everything queued in the core at once (urgent frames first) and writes it in one call, so
  frames from many streams, and header plus payload, are coalesced into few large writes;
* the **timer** sleeps until the core's next deadline (keep-alive pings and their timeout).

Application calls never write to the socket themselves: ``YamuxStream.send_all`` copies as
much as the stream's send window allows into the core's output buffer and wakes the writer.
It waits when the window is exhausted (per stream, so a stream without window never holds up
another) or when ``write_buffer_size`` bytes are already queued (shared backpressure from
the socket). Because frames are queued whole and only the writer task writes, cancelling an
application's ``send_all`` can never leave half a frame on the wire; only a failure of the
underlying stream ends the session.

Ending. The session ends when the peer closes the byte stream (a bare EOF is a normal end),
when the peer breaks the protocol (we queue GoAway code 1, flush it within ``close_timeout``
and close), on keep-alive timeout, on a transport error, or on :meth:`YamuxSession.aclose`
(GoAway code 0). ``run()`` then returns normally -- a misbehaving peer never crashes the
caller's nursery -- with the cause in :attr:`YamuxSession.closed_reason` and
:attr:`YamuxSession.error`. Streams still open are broken: their reads and writes raise
:class:`~libp2p.exceptions.StreamReset` (a :class:`trio.BrokenResourceError`), except that a
stream whose peer already sent FIN still yields its buffered bytes and then EOF.

Stream semantics (trio ``HalfCloseableStream``): ``send_eof`` sends FIN; reads after the
peer's FIN return the buffered bytes, then ``b""``; after a reset they raise
:class:`~libp2p.exceptions.StreamReset`. ``aclose`` sends FIN (if not yet sent) and stops
reading: unread bytes are discarded and credited back, and if the peer keeps sending anyway it
gets RST, so its writes fail instead of blocking forever. ``reset()`` aborts both directions.
A stream is *finished* (:attr:`YamuxStream.is_finished`, :meth:`YamuxStream.call_when_finished`)
when the session drops it: FIN sent and received, a reset either way, or the end of the session;
this is how the connection above knows which streams are still in use.
"""

from __future__ import annotations

import copy
import enum
import logging
import operator
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint_if_cancelled

from ...exceptions import ConnectionClosedError, Libp2pError, LocalUsageError, StreamReset
from .config import YamuxConfig
from .connection import YamuxConnection
from .errors import KeepAliveTimeout, RemoteGoAway
from .events import (
    DataReceived,
    GoAwayReceived,
    PingAcknowledged,
    SendWindowUpdated,
    StreamAborted,
    StreamAcknowledged,
    StreamEnded,
    StreamOpened,
    YamuxEvent,
)
from .frame import GoAwayCode

__all__ = ["CloseReason", "YamuxSession", "YamuxStream", "open_yamux_session"]

logger = logging.getLogger("libp2p.stream_muxer.yamux")

#: What the underlying stream may raise when it fails: lower layers of this library raise
#: Libp2pError (a socket's failures are ConnectionBrokenError); a plain trio stream (a test's
#: memory stream) raises trio's own errors.
_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, Libp2pError, OSError)


#: Why a stream direction broke: the message, whether the peer caused it, and the error that
#: ended the session, if that is what broke it.
_Failure = tuple[str, bool, BaseException | None]


class CloseReason(enum.Enum):
    """Why a session ended (:attr:`YamuxSession.closed_reason`)."""

    LOCAL = "closed locally"
    REMOTE_EOF = "the peer closed the connection"
    PROTOCOL_ERROR = "the peer violated the yamux protocol"
    KEEPALIVE_TIMEOUT = "the peer stopped answering keep-alive pings"
    TRANSPORT_ERROR = "the underlying connection failed"
    CANCELLED = "the session task was cancelled"


#: Endings after which queued frames (GoAway above all) are still worth flushing.
_FLUSH_REASONS = frozenset({CloseReason.LOCAL, CloseReason.PROTOCOL_ERROR})
_LOCAL_REASONS = frozenset({CloseReason.LOCAL, CloseReason.CANCELLED})
#: What ``receive_some()`` without ``max_bytes`` returns at most (it may join queued frames).
_DEFAULT_RECEIVE_SIZE = 256 * 1024


class _PingWaiter:
    __slots__ = ("event", "rtt")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.rtt: float | None = None


class YamuxSession:
    """A yamux session over ``stream``; start it with ``await nursery.start(session.run)``.

    ``is_initiator`` is the connection role (odd stream IDs), taken from the security
    handshake -- never from which side dialed the socket.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        is_initiator: bool,
        config: YamuxConfig | None = None,
    ) -> None:
        self._transport = stream
        self._config = config if config is not None else YamuxConfig()
        self._conn = YamuxConnection(is_initiator=is_initiator, config=self._config)
        self._streams: dict[int, YamuxStream] = {}
        self._accept_queue: deque[YamuxStream] = deque()
        self._ping_waiters: dict[int, _PingWaiter] = {}
        self._accept_lot = ParkingLot()
        self._open_lot = ParkingLot()
        self._space_lot = ParkingLot()
        self._writer_lot = ParkingLot()
        self._drain_lot = ParkingLot()
        self._writing = False
        self._write_failed = False
        self._started = False
        self._closed_reason: CloseReason | None = None
        self._error: BaseException | None = None
        self._close_message = ""
        self._terminated = trio.Event()
        self._finished = trio.Event()

    def __repr__(self) -> str:
        role = "initiator" if self.is_initiator else "responder"
        state = "open" if self._closed_reason is None else f"closed ({self._closed_reason.name})"
        return f"<YamuxSession {role} {state} streams={self.num_streams}>"

    # -- public state --------------------------------------------------------------------

    @property
    def is_initiator(self) -> bool:
        return self._conn.is_initiator

    @property
    def config(self) -> YamuxConfig:
        return self._config

    @property
    def is_closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def closed_reason(self) -> CloseReason | None:
        """Why the session ended, or ``None`` while it runs."""
        return self._closed_reason

    @property
    def error(self) -> BaseException | None:
        """The error that ended the session (protocol error, timeout, transport failure)."""
        return self._error

    @property
    def num_streams(self) -> int:
        """Streams that are neither fully closed nor reset."""
        return self._conn.num_streams

    @property
    def rtt(self) -> float | None:
        """Smoothed RTT from pings in seconds, ``None`` until one was answered."""
        return self._conn.rtt

    @property
    def remote_goaway(self) -> int | None:
        """The code of the peer's GoAway, ``None`` if it sent none."""
        return self._conn.remote_goaway

    # -- the driver ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session until it ends; returns normally however it ends."""
        if self._started:
            raise LocalUsageError("YamuxSession.run() may only be called once")
        self._started = True
        try:
            if self._closed_reason is None:
                self._conn.start(trio.current_time())
            async with trio.open_nursery() as nursery:
                if self._closed_reason is None:
                    nursery.start_soon(self._read_loop)
                    nursery.start_soon(self._timer_loop)
                nursery.start_soon(self._write_loop)
                task_status.started()
                await self._terminated.wait()
                if self._closed_reason in _FLUSH_REASONS:
                    with trio.move_on_after(self._config.close_timeout):
                        await self._wait_flushed()
                nursery.cancel_scope.cancel()
        finally:
            if self._closed_reason is None:
                self._terminate(CloseReason.CANCELLED)
            with trio.CancelScope(shield=True):
                if self._closed_reason in _FLUSH_REASONS:
                    # Whoever runs us may cancel run() the moment the session is over (a
                    # connection ends its tasks then), before the writer task flushed: the
                    # GoAway that tells the peer why is still worth one bounded write.
                    with trio.move_on_after(self._config.close_timeout):
                        await self._final_flush()
                await trio.aclose_forcefully(self._transport)
            self._finished.set()

    async def _final_flush(self) -> None:
        if self._write_failed or not self._conn.output_size:
            return
        try:
            await self._transport.send_all(self._conn.data_to_send())
        except _TRANSPORT_ERRORS as exc:
            # The peer is gone already; it will not learn why, and there is no one to tell.
            logger.debug("yamux: the final flush failed: %r", exc)

    async def _read_loop(self) -> None:
        conn = self._conn
        receive_some = self._transport.receive_some
        read_size = self._config.read_size
        current_time = trio.current_time
        while True:
            try:
                data = await receive_some(read_size)
            except _TRANSPORT_ERRORS as exc:
                self._terminate(CloseReason.TRANSPORT_ERROR, exc)
                return
            if not data:
                conn.receive_eof()
                self._terminate(CloseReason.REMOTE_EOF)
                return
            try:
                events = conn.receive_data(data, current_time())
            except Libp2pError as exc:  # YamuxProtocolError, OutputBacklogExceeded
                logger.warning("yamux: closing the session: %s", exc)
                self._terminate(CloseReason.PROTOCOL_ERROR, exc)
                return
            if events:
                self._dispatch(events)
            if conn.output_size:
                self._writer_lot.unpark()

    async def _write_loop(self) -> None:
        conn = self._conn
        send_all = self._transport.send_all
        while True:
            if not conn.output_size:
                self._drain_lot.unpark_all()
                await self._writer_lot.park()
                continue
            # A cancellation that is already pending must not cost the queued frames: they
            # stay in the core for run()'s final flush instead of dying with this task.
            await checkpoint_if_cancelled()
            data = conn.data_to_send()
            self._space_lot.unpark_all()
            self._writing = True
            try:
                await send_all(data)
            except _TRANSPORT_ERRORS as exc:
                self._write_failed = True
                self._terminate(CloseReason.TRANSPORT_ERROR, exc)
                self._drain_lot.unpark_all()
                return
            except BaseException:
                # Cancelled part-way: the peer may hold half a frame, so nothing may follow.
                self._write_failed = True
                raise
            finally:
                self._writing = False

    async def _timer_loop(self) -> None:
        conn = self._conn
        while True:
            deadline = conn.get_timer()
            if deadline is None:
                await trio.sleep_forever()
            else:
                await trio.sleep_until(deadline)
            try:
                conn.handle_timer(trio.current_time())
            except KeepAliveTimeout as exc:
                logger.warning("yamux: closing the session: %s", exc)
                self._terminate(CloseReason.KEEPALIVE_TIMEOUT, exc)
                return
            if conn.output_size:
                self._writer_lot.unpark()

    async def _wait_flushed(self) -> None:
        while (self._conn.output_size or self._writing) and not self._write_failed:
            await self._drain_lot.park()

    def _wake_writer(self) -> None:
        self._writer_lot.unpark()

    def _dispatch(self, events: list[YamuxEvent]) -> None:
        streams = self._streams
        # The core's state is already the one after the whole batch, so streams are pruned
        # only after every event (an RST right behind a FIN must still reach its stream).
        ended: list[YamuxStream] = []
        for event in events:
            # Most frequent first: this runs for every received Data frame.
            if isinstance(event, DataReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._on_data(event.data)
            elif isinstance(event, SendWindowUpdated):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._send_lot.unpark_all()
            elif isinstance(event, StreamOpened):
                stream = YamuxStream(self, event.stream_id, accepted=False)
                streams[event.stream_id] = stream
                self._accept_queue.append(stream)
                self._accept_lot.unpark_all()
            elif isinstance(event, StreamEnded):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._on_remote_fin()
                    ended.append(stream)
            elif isinstance(event, StreamAborted):
                stream = streams.pop(event.stream_id, None)
                if stream is not None:
                    message = f"yamux stream {event.stream_id}: {event.reason}"
                    if event.error_code:
                        message += f" (error code {event.error_code})"
                    stream._on_abort(message, by_remote=event.by_remote)
                    if not stream._accepted:
                        # Reset before the application saw it: drop it from the queue.
                        self._accept_queue.remove(stream)
                    stream._on_finished()
                self._open_lot.unpark_all()
            elif isinstance(event, StreamAcknowledged | GoAwayReceived):
                self._open_lot.unpark_all()
            elif isinstance(event, PingAcknowledged):
                waiter = self._ping_waiters.get(event.opaque)
                if waiter is not None:
                    waiter.rtt = event.rtt
                    waiter.event.set()
        for stream in ended:
            self._forget_if_done(stream)

    def _forget_if_done(self, stream: YamuxStream) -> None:
        if (
            not self._conn.has_stream(stream.stream_id)
            and self._streams.pop(stream.stream_id, None) is not None
        ):
            stream._on_finished()

    def _after_local_change(self, stream: YamuxStream) -> None:
        self._writer_lot.unpark()
        self._open_lot.unpark_all()
        self._forget_if_done(stream)

    def _terminate(self, reason: CloseReason, error: BaseException | None = None) -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        self._error = error
        self._conn.abort()
        message = f"yamux session closed: {reason.value}"
        if error is not None:
            message += f" ({error})"
        self._close_message = message
        by_remote = reason not in _LOCAL_REASONS
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            stream._on_session_closed(message, by_remote=by_remote, cause=error)
            stream._on_finished()
        self._accept_queue.clear()
        for waiter in self._ping_waiters.values():
            waiter.event.set()
        for lot in (
            self._accept_lot,
            self._open_lot,
            self._space_lot,
            self._writer_lot,
            self._drain_lot,
        ):
            lot.unpark_all()
        self._terminated.set()

    # -- application API -----------------------------------------------------------------

    async def open_stream(self) -> YamuxStream:
        """Open a new outbound stream (waits while 256 opened streams await the peer's ACK).

        Raises :class:`~libp2p.exceptions.ConnectionClosedError` once the session ended and
        :class:`~.errors.RemoteGoAway` after the peer sent GoAway.
        """
        await checkpoint_if_cancelled()
        conn = self._conn
        parked = False
        while True:
            if self._closed_reason is not None:
                raise ConnectionClosedError(self._close_message)
            if conn.remote_goaway is not None:
                raise RemoteGoAway(conn.remote_goaway)
            if conn.ack_backlog < self._config.max_ack_backlog:
                break
            await self._open_lot.park()
            parked = True
        stream_id = conn.open_stream()
        stream = YamuxStream(self, stream_id, accepted=True)
        self._streams[stream_id] = stream
        self._writer_lot.unpark()
        if not parked:
            await cancel_shielded_checkpoint()
        return stream

    async def accept_stream(self) -> YamuxStream:
        """Wait for the next stream opened by the peer (our ACK is sent now).

        Raises :class:`~libp2p.exceptions.ConnectionClosedError` once the session ended.
        """
        await checkpoint_if_cancelled()
        parked = False
        while True:
            if self._closed_reason is not None:
                raise ConnectionClosedError(self._close_message)
            if self._accept_queue:
                break
            await self._accept_lot.park()
            parked = True
        stream = self._accept_queue.popleft()
        stream._accepted = True
        self._conn.accept_stream(stream.stream_id)
        self._writer_lot.unpark()
        if not parked:
            await cancel_shielded_checkpoint()
        return stream

    async def ping(self) -> float:
        """Send a Ping and return the round-trip time in seconds.

        Wrap it in ``trio.fail_after`` for a timeout. Raises
        :class:`~libp2p.exceptions.ConnectionClosedError` if the session ends first.
        """
        if self._closed_reason is not None:
            raise ConnectionClosedError(self._close_message)
        opaque = self._conn.send_ping(trio.current_time())
        waiter = _PingWaiter()
        self._ping_waiters[opaque] = waiter
        self._writer_lot.unpark()
        try:
            await waiter.event.wait()
        finally:
            del self._ping_waiters[opaque]
            if waiter.rtt is None:
                self._conn.cancel_ping(opaque)
        if waiter.rtt is None:
            raise ConnectionClosedError(self._close_message)
        return waiter.rtt

    def close_nowait(self, code: int = GoAwayCode.NORMAL) -> None:
        """Start closing: queue GoAway(``code``); :meth:`run` flushes it and returns."""
        if self._closed_reason is None:
            self._conn.close(code)
            self._terminate(CloseReason.LOCAL)

    async def aclose(self) -> None:
        """Send GoAway (normal), close the underlying stream, and wait for :meth:`run`."""
        self.close_nowait()
        if self._started:
            await self._finished.wait()
        else:
            await trio.aclose_forcefully(self._transport)

    async def __aenter__(self) -> YamuxSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class YamuxStream(trio.abc.HalfCloseableStream):
    """One yamux stream: a trio ``HalfCloseableStream`` plus :meth:`reset`.

    Created by :meth:`YamuxSession.open_stream` and :meth:`YamuxSession.accept_stream`.
    """

    def __init__(self, session: YamuxSession, stream_id: int, *, accepted: bool) -> None:
        self._session = session
        self._conn = session._conn
        config = session._config
        self._write_buffer_size = config.write_buffer_size
        # Queue at least one full frame per step, whatever the write buffer size.
        self._send_chunk = max(config.write_buffer_size, config.max_frame_payload)
        #: The yamux stream ID (odd: opened by the initiator, even: by the responder).
        self.stream_id = stream_id
        self._chunks: deque[bytes] = deque()
        self._head_pos = 0
        self._buffered = 0
        self._recv_lot = ParkingLot()
        self._send_lot = ParkingLot()
        self._receiving = False
        self._sending = False
        self._closed = False
        self._eof_sent = False
        self._remote_fin = False
        self._read_error: _Failure | None = None
        self._write_error: _Failure | None = None
        self._accepted = accepted
        self._bytes_sent = 0
        self._bytes_received = 0
        self._finished = False
        self._finish_callbacks: list[Callable[[YamuxStream], None]] | None = None

    def __repr__(self) -> str:
        return f"<YamuxStream {self.stream_id} buffered={self._buffered}>"

    @property
    def session(self) -> YamuxSession:
        return self._session

    @property
    def bytes_sent(self) -> int:
        """Payload bytes queued in data frames on this stream so far."""
        return self._bytes_sent

    @property
    def bytes_received(self) -> int:
        """Payload bytes the peer sent on this stream so far, read or not (bytes a reset
        discarded unread still count): what a relay counts against a circuit's data limit."""
        return self._bytes_received

    @property
    def buffered_bytes(self) -> int:
        """Received bytes waiting to be read (never more than the receive window)."""
        return self._buffered

    @property
    def receive_window(self) -> int:
        """The current (auto-tuned) receive window, 0 once the stream is finished."""
        return self._conn.receive_window(self.stream_id)

    @property
    def is_finished(self) -> bool:
        """True once the stream is over for both sides and the session has let go of it:
        both sides sent FIN (the application's ``aclose`` counts as ours), either side
        reset it, or the session ended. Bytes already received stay readable."""
        return self._finished

    def call_when_finished(self, callback: Callable[[YamuxStream], None]) -> None:
        """Call ``callback(stream)`` once, when :attr:`is_finished` becomes true; at once if
        it already is.

        The callback runs synchronously inside the session's bookkeeping (from the reader
        task, or from the call that finished the stream), so it must not block or raise:
        note the fact and wake whoever waits for it.
        """
        if self._finished:
            callback(self)
        elif self._finish_callbacks is None:
            self._finish_callbacks = [callback]
        else:
            self._finish_callbacks.append(callback)

    # -- events from the session -------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._bytes_received += len(data)
        self._chunks.append(data)
        self._buffered += len(data)
        self._recv_lot.unpark_all()

    def _on_remote_fin(self) -> None:
        self._remote_fin = True
        self._recv_lot.unpark_all()

    def _on_abort(
        self, message: str, *, by_remote: bool, cause: BaseException | None = None
    ) -> None:
        # Like go-yamux: a reset only breaks the directions that were still open, so bytes
        # that arrived before the peer's FIN stay readable.
        failure = (message, by_remote, cause)
        if not self._remote_fin and self._read_error is None:
            self._read_error = failure
            self._discard_buffer()
        if not self._eof_sent and self._write_error is None:
            self._write_error = failure
        self._recv_lot.unpark_all()
        self._send_lot.unpark_all()

    def _on_session_closed(
        self, message: str, *, by_remote: bool, cause: BaseException | None = None
    ) -> None:
        self._on_abort(message, by_remote=by_remote, cause=cause)

    def _on_finished(self) -> None:
        # The session dropped the stream (each stream leaves its table once): run callbacks.
        if self._finished:
            return
        self._finished = True
        callbacks, self._finish_callbacks = self._finish_callbacks, None
        if callbacks is not None:
            for callback in callbacks:
                callback(self)

    def _discard_buffer(self) -> int:
        n = self._buffered
        self._chunks.clear()
        self._head_pos = 0
        self._buffered = 0
        return n

    @staticmethod
    def _error(info: _Failure) -> StreamReset:
        message, by_remote, cause = info
        if isinstance(cause, StreamReset) and type(cause) is not StreamReset:
            # The session ran over a stream that was reset for a stated reason (a relay's
            # data or time limit on the circuit under a relayed connection): every stream
            # of the session reports that reason, with its type, not a bare reset.
            return copy.copy(cause)
        return StreamReset(message, by_remote=by_remote)

    # -- receiving -----------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            await checkpoint_if_cancelled()
            parked = False
            while not self._chunks:
                if self._closed:
                    raise trio.ClosedResourceError("this yamux stream was closed")
                if self._read_error is not None:
                    raise self._error(self._read_error)
                if self._remote_fin:
                    break
                await self._recv_lot.park()
                parked = True
            data = self._take(max_bytes) if self._chunks else b""
            if not parked:
                await cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    def _take(self, max_bytes: int | None) -> bytes:
        chunks = self._chunks
        head = chunks[0]
        pos = self._head_pos
        available = len(head) - pos
        limit = _DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes
        if limit < available:
            data = head[pos : pos + limit]
            self._head_pos = pos + limit
        elif len(chunks) == 1 or limit == available:
            chunks.popleft()
            self._head_pos = 0
            data = head[pos:] if pos else head
        else:
            # Several frames are queued and the caller wants more than one: one copy here
            # is much cheaper than one receive_some() round trip per frame.
            parts = [head[pos:] if pos else head]
            chunks.popleft()
            self._head_pos = 0
            size = available
            while chunks and size < limit:
                nxt = chunks[0]
                if size + len(nxt) <= limit:
                    parts.append(chunks.popleft())
                    size += len(nxt)
                else:
                    parts.append(nxt[: limit - size])
                    self._head_pos = limit - size
                    size = limit
            data = b"".join(parts)
        n = len(data)
        self._buffered -= n
        if self._conn.acknowledge_received(self.stream_id, n, trio.current_time()):
            self._session._writer_lot.unpark()
        return data

    # -- sending -------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this yamux stream was closed")
        if self._write_error is not None:
            raise self._error(self._write_error)
        if self._eof_sent:
            raise trio.ClosedResourceError("send_eof() was already called on this stream")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await checkpoint_if_cancelled()
            self._check_writable()
            view = memoryview(data)
            if view.itemsize != 1 or not view.c_contiguous:
                view = memoryview(view.tobytes())
            total = len(view)
            conn = self._conn
            stream_id = self.stream_id
            session = self._session
            limit = self._write_buffer_size
            chunk = self._send_chunk
            sent = 0
            parked = False
            while sent < total:
                window = conn.send_window(stream_id)
                if window <= 0:
                    await self._send_lot.park()
                    parked = True
                    self._check_writable()
                    continue
                if conn.output_size >= limit:
                    await session._space_lot.park()
                    parked = True
                    self._check_writable()
                    continue
                end = sent + min(window, chunk)
                queued = conn.send_data(stream_id, view[sent:end])
                sent += queued
                self._bytes_sent += queued
                session._writer_lot.unpark()
            if not parked:
                await cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await checkpoint_if_cancelled()
            parked = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this yamux stream was closed")
                if self._write_error is not None or self._eof_sent:
                    break  # send_all would fail at once
                if self._conn.send_window(self.stream_id) <= 0:
                    await self._send_lot.park()
                elif self._conn.output_size >= self._write_buffer_size:
                    await self._session._space_lot.park()
                else:
                    break
                parked = True
            if not parked:
                await cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await checkpoint_if_cancelled()
            if self._closed:
                raise trio.ClosedResourceError("this yamux stream was closed")
            if not self._eof_sent:
                if self._write_error is not None:
                    raise self._error(self._write_error)
                self._eof_sent = True
                self._conn.send_eof(self.stream_id)
                self._session._after_local_change(self)
            await cancel_shielded_checkpoint()
        finally:
            self._sending = False

    # -- closing -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send FIN (if not yet sent) and stop reading; unread bytes are discarded."""
        if not self._closed:
            self._closed = True
            unread = self._discard_buffer()
            conn = self._conn
            if conn.has_stream(self.stream_id):
                if unread:
                    # Credit what we throw away so a peer blocked on the window wakes up; if it
                    # then sends more, the core answers with RST.
                    conn.acknowledge_received(self.stream_id, unread, trio.current_time())
                conn.close_stream(self.stream_id)
                self._session._after_local_change(self)
            self._recv_lot.unpark_all()
            self._send_lot.unpark_all()
            self._session._space_lot.unpark_all()
        await trio.lowlevel.checkpoint()

    async def reset(self, error_code: int = 0) -> None:
        """Abort both directions (RST); pending and later reads and writes raise StreamReset."""
        conn = self._conn
        if conn.has_stream(self.stream_id):
            conn.reset_stream(self.stream_id, error_code)
            self._session._after_local_change(self)
        info: _Failure = (f"yamux stream {self.stream_id} was reset locally", False, None)
        if self._read_error is None:
            self._read_error = info
        if self._write_error is None:
            self._write_error = info
        self._discard_buffer()
        self._recv_lot.unpark_all()
        self._send_lot.unpark_all()
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def open_yamux_session(
    stream: trio.abc.Stream,
    *,
    is_initiator: bool,
    config: YamuxConfig | None = None,
) -> AsyncIterator[YamuxSession]:
    """``async with open_yamux_session(...) as session:`` -- runs the session in a nursery of
    its own and closes it (GoAway, then the underlying stream) on exit."""
    session = YamuxSession(stream, is_initiator=is_initiator, config=config)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.run)
        try:
            yield session
        finally:
            session.close_nowait()
