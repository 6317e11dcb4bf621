"""The sans-I/O yamux core: bytes in, events and bytes out, time passed in.

Theory of operation
===================

Roles. Yamux has a *client* and a *server* only for stream IDs: the side that was the
connection initiator (the security-handshake initiator; after a DCUtR TCP hole punch, the peer
that dialed through the relay) opens odd IDs 1, 3, 5, ...; the other side opens even IDs
2, 4, 6, .... The role is the ``is_initiator`` constructor argument, never guessed from a
socket. A SYN from the peer with *our* parity means both sides think they are the client; the
session fails with a protocol error instead of colliding later.

Opening. ``open_stream`` queues a WindowUpdate|SYN right away (its delta announces any window
beyond the spec's initial 256 KiB) and data may follow before the peer answers. The peer's
first frame on the stream carries ACK, or RST to refuse. Until the ACK arrives the stream
counts against the ACK backlog, capped at ``max_ack_backlog`` (256): the driver waits for
ACKs before opening more. Inbound SYNs wait for the application's ``accept_stream`` -- that is
when we send our ACK, so a peer cannot run ahead of our application by more than its own ACK
backlog -- and more than ``accept_backlog`` unaccepted (or ``max_inbound_streams`` live)
inbound streams are refused with RST.

Flow control. Each direction of each stream has a window: the bytes the receiver is prepared
to buffer. Only Data payload counts. The receiver records how much the sender may still send
(``recv_credit``); a Data frame longer than that is a protocol error (go-yamux:
``ErrRecvWindowExceeded``, then GoAway code 1), checked on the *header*, so a frame that
announces 4 GiB is rejected before a single payload byte is read. Received bytes are handed
out in :class:`~.events.DataReceived` events; the driver calls :meth:`acknowledge_received`
as the application consumes them, and once half of the window has been consumed the core
grants it back in one WindowUpdate (batched, not one per read). Buffered-but-unread bytes
therefore never exceed the window: a slow reader costs at most one window of memory and never
blocks the session's reader.

Window auto-tuning (like go-yamux and js): when a window update is due and the previous one
was sent less than four RTTs ago, the reader keeps up with the link and the window is what
limits throughput, so it doubles (up to ``max_window``, 16 MiB by default) -- the window grows
toward the bandwidth-delay product instead of staying at 256 KiB. The RTT comes from our pings
(one when the session starts, then the keep-alive pings), smoothed like go.

Closing. FIN half-closes one direction; the stream is gone once both sides sent FIN. RST
aborts both directions; a WindowUpdate|RST's ``length`` is go-yamux's error code, never a
window delta. Frames for IDs we no longer know (normal after we reset a stream) are drained
and ignored. See :mod:`.state` for the transition table, including what ``close_stream``
(the application's ``aclose``) means.

Session level. A Ping with SYN is answered at once with an ACK carrying the same opaque
value; the reply goes to the *urgent* output queue, ahead of queued stream data, so a ping is
never answered late because of a busy or blocked application (go kills the session when a
ping goes unanswered for 10 s). GoAway stops new outbound streams; streams already open go on.
A bare end of the byte stream, without GoAway, is a normal end (go closes that way).
Keep-alive: every ``keepalive_interval`` seconds we ping; if neither the answer nor any other
byte arrives within ``ping_timeout``, :meth:`handle_timer` raises :class:`KeepAliveTimeout`.

Output order. Frames that belong to a stream's byte sequence (SYN, ACK, data, FIN, RST) are
queued in order; ping replies, plain window updates and GoAway jump ahead. Nothing is sent by
the core: the driver drains :meth:`data_to_send` and writes it.
"""

from __future__ import annotations

import logging

from ...exceptions import ConnectionClosedError, LocalUsageError, ResourceLimitExceeded
from .config import YamuxConfig
from .errors import (
    KeepAliveTimeout,
    OutputBacklogExceeded,
    RemoteGoAway,
    StreamIDsExhausted,
    YamuxFrameError,
    YamuxProtocolError,
)
from .events import (
    DataReceived,
    GoAwayReceived,
    PingAcknowledged,
    PingReceived,
    SendWindowUpdated,
    StreamAborted,
    StreamAcknowledged,
    StreamEnded,
    StreamOpened,
    YamuxEvent,
)
from .frame import HEADER, HEADER_SIZE, INITIAL_WINDOW, MAX_UINT32, GoAwayCode
from .state import TERMINAL_STATES, StreamEvent, StreamState, next_state

__all__ = ["YamuxConnection"]

logger = logging.getLogger("libp2p.stream_muxer.yamux")

_pack = HEADER.pack
_unpack = HEADER.unpack
_unpack_from = HEADER.unpack_from

_DATA = 0
_WINDOW_UPDATE = 1
_PING = 2
_GO_AWAY = 3
_SYN = 0x1
_ACK = 0x2
_FIN = 0x4
_RST = 0x8

_OPEN = StreamState.OPEN
_HALF_CLOSED_LOCAL = StreamState.HALF_CLOSED_LOCAL
_HALF_CLOSED_REMOTE = StreamState.HALF_CLOSED_REMOTE
_LOCAL_CLOSED = StreamState.LOCAL_CLOSED

#: Ping replies are dropped (with a log line) while this many bytes of urgent output wait:
#: a peer that pings faster than it reads gets no more answers (go: ``PingBacklog``).
_MAX_URGENT_OUTPUT = 64 * 1024
#: Output above the driver's write buffer that frames *forced by the peer* (resets of refused
#: streams) may add before we conclude the peer floods us without reading.
_CONTROL_SLACK = 1024 * 1024


class _Stream:
    """Book-keeping for one live stream (the driver keeps the data buffers)."""

    __slots__ = (
        "accepted",
        "awaiting_ack",
        "epoch",
        "needs_ack",
        "outbound",
        "pending_credit",
        "recv_credit",
        "recv_window",
        "send_window",
        "state",
        "stream_id",
        "unacked",
    )

    def __init__(self, stream_id: int, *, outbound: bool, recv_window: int, now: float) -> None:
        self.stream_id = stream_id
        self.state = StreamState.OPEN
        self.outbound = outbound
        #: Inbound: our next frame on it must carry ACK.
        self.needs_ack = not outbound
        #: Outbound: counts against the ACK backlog until the peer's ACK (or RST) arrives.
        self.awaiting_ack = outbound
        #: Inbound: handed to the application (no longer counts against the accept backlog).
        self.accepted = outbound
        #: Bytes we may still send.
        self.send_window = INITIAL_WINDOW
        #: Current receive window size (grows with auto-tuning).
        self.recv_window = recv_window
        #: Bytes the peer may still send before our next window update.
        self.recv_credit = recv_window
        #: Received (or announced in a Data header) but not yet consumed by the application.
        self.unacked = 0
        #: Consumed by the application, not yet granted back to the peer.
        self.pending_credit = 0
        #: When the last window update was sent (auto-tuning compares it with the RTT).
        self.epoch = now


class YamuxConnection:
    """One side of a yamux session, without I/O.

    Feed received bytes to :meth:`receive_data` (``now`` from the driver's clock) and act on
    the returned events; write out whatever :meth:`data_to_send` returns; call
    :meth:`handle_timer` at :meth:`get_timer`. Methods that change state on behalf of the
    local application (opening, sending, closing, resetting, acknowledging consumed data)
    queue frames but never block.
    """

    def __init__(self, *, is_initiator: bool, config: YamuxConfig | None = None) -> None:
        self.is_initiator = is_initiator
        self.config = config if config is not None else YamuxConfig()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1 if is_initiator else 2
        self._remote_parity = 0 if is_initiator else 1
        # Ordered output (stream frames) and urgent output (ping replies, credit, GoAway).
        self._out = bytearray()
        self._urgent = bytearray()
        self._ack_backlog = 0
        self._unaccepted = 0
        self._inbound = 0
        self._closed = False
        self._local_goaway: int | None = None
        self._remote_goaway: int | None = None
        # Time, RTT and pings.
        self._now = 0.0
        self._last_recv = 0.0
        self._rtt: float | None = None
        self._next_opaque = 1
        self._pings: dict[int, float] = {}
        self._probe: int | None = None
        self._probe_sent = 0.0
        self._next_probe: float | None = None
        # Frame parser: a partial header, or the rest of a Data payload.
        self._partial = bytearray()
        self._payload_left = 0
        self._payload_sid = 0
        self._payload_deliver = False
        self._payload_fin = False

    # -- introspection -------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """True once the session ended (GoAway sent, EOF, protocol error, keep-alive)."""
        return self._closed

    @property
    def remote_goaway(self) -> int | None:
        """The code of the peer's GoAway, or ``None`` if it sent none."""
        return self._remote_goaway

    @property
    def local_goaway(self) -> int | None:
        """The code of the GoAway we sent, or ``None``."""
        return self._local_goaway

    @property
    def rtt(self) -> float | None:
        """Smoothed round-trip time from our pings, in seconds (``None`` until measured)."""
        return self._rtt

    @property
    def num_streams(self) -> int:
        """Streams that are neither fully closed nor reset."""
        return len(self._streams)

    @property
    def ack_backlog(self) -> int:
        """Outbound streams the peer has not acknowledged yet."""
        return self._ack_backlog

    @property
    def can_open_stream(self) -> bool:
        """Whether :meth:`open_stream` would succeed now (it raises the reason otherwise)."""
        return (
            not self._closed
            and self._remote_goaway is None
            and self._ack_backlog < self.config.max_ack_backlog
            and self._next_id <= MAX_UINT32
        )

    @property
    def output_size(self) -> int:
        """Bytes queued for sending."""
        return len(self._out) + len(self._urgent)

    def has_stream(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def stream_state(self, stream_id: int) -> StreamState | None:
        st = self._streams.get(stream_id)
        return None if st is None else st.state

    def send_window(self, stream_id: int) -> int:
        """Bytes that may be sent on the stream right now (0 for unknown streams)."""
        st = self._streams.get(stream_id)
        return 0 if st is None else st.send_window

    def receive_window(self, stream_id: int) -> int:
        """The stream's current receive window size (0 for unknown streams)."""
        st = self._streams.get(stream_id)
        return 0 if st is None else st.recv_window

    # -- output --------------------------------------------------------------------------

    def data_to_send(self) -> bytearray:
        """Remove and return every queued byte (urgent frames first)."""
        if self._urgent:
            out = self._urgent
            self._urgent = bytearray()
            if self._out:
                out += self._out
                self._out = bytearray()
            return out
        out = self._out
        self._out = bytearray()
        return out

    def _check_forced_output(self) -> None:
        if self.output_size > self.config.write_buffer_size + _CONTROL_SLACK:
            raise OutputBacklogExceeded(
                "the peer keeps opening or misusing streams while not reading our replies"
            )

    # -- time ----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin the session clock; sends the first RTT-measuring ping if configured."""
        self._now = self._last_recv = now
        if self._closed:
            return
        if self.config.measure_rtt:
            self._send_probe(now)
        elif self.config.keepalive_interval is not None:
            self._next_probe = now + self.config.keepalive_interval

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next, or ``None`` (no keep-alive)."""
        interval = self.config.keepalive_interval
        if self._closed or interval is None:
            return None
        if self._probe is not None:
            return max(self._probe_sent, self._last_recv) + self.config.ping_timeout
        return self._next_probe

    def handle_timer(self, now: float) -> None:
        """Send a due keep-alive ping; raise :class:`KeepAliveTimeout` if one went unanswered."""
        self._now = now
        if self._closed or self.config.keepalive_interval is None:
            return
        if self._probe is not None:
            deadline = max(self._probe_sent, self._last_recv) + self.config.ping_timeout
            if now >= deadline:
                self._shutdown()
                raise KeepAliveTimeout(
                    f"no answer to a keep-alive ping and no other data for "
                    f"{self.config.ping_timeout:g} s"
                )
            return
        if self._next_probe is not None and now >= self._next_probe:
            self._send_probe(now)

    def _send_probe(self, now: float) -> None:
        opaque = self.send_ping(now)
        self._probe = opaque
        self._probe_sent = now
        self._next_probe = None

    # -- pings ---------------------------------------------------------------------------

    def send_ping(self, now: float) -> int:
        """Queue a Ping request; returns its opaque value (see :class:`PingAcknowledged`)."""
        if self._closed:
            raise ConnectionClosedError("the yamux session is closed")
        opaque = self._next_opaque
        while opaque in self._pings:
            opaque = (opaque + 1) & MAX_UINT32
        self._next_opaque = (opaque + 1) & MAX_UINT32
        self._pings[opaque] = now
        self._urgent += _pack(0, _PING, _SYN, 0, opaque)
        return opaque

    def cancel_ping(self, opaque: int) -> None:
        """Forget a ping whose answer nobody waits for any more."""
        if opaque != self._probe:
            self._pings.pop(opaque, None)

    # -- local stream operations ---------------------------------------------------------

    def open_stream(self) -> int:
        """Allocate the next stream ID of our parity and queue its SYN."""
        if self._closed:
            raise ConnectionClosedError("the yamux session is closed")
        if self._remote_goaway is not None:
            raise RemoteGoAway(self._remote_goaway)
        if self._ack_backlog >= self.config.max_ack_backlog:
            raise ResourceLimitExceeded(
                f"{self._ack_backlog} opened streams are waiting for the peer's ACK"
            )
        stream_id = self._next_id
        if stream_id > MAX_UINT32:
            raise StreamIDsExhausted("no stream IDs left on this yamux session")
        self._next_id = stream_id + 2
        window = self.config.initial_window
        self._streams[stream_id] = _Stream(
            stream_id, outbound=True, recv_window=window, now=self._now
        )
        self._ack_backlog += 1
        self._out += _pack(0, _WINDOW_UPDATE, _SYN, stream_id, window - INITIAL_WINDOW)
        return stream_id

    def accept_stream(self, stream_id: int) -> None:
        """The application took an inbound stream: send our ACK (and any extra window)."""
        st = self._streams.get(stream_id)
        if st is None or st.accepted:
            return
        st.accepted = True
        self._unaccepted -= 1
        if st.needs_ack and not self._closed:
            st.needs_ack = False
            extra = self.config.initial_window - INITIAL_WINDOW
            st.recv_window += extra
            st.recv_credit += extra
            self._out += _pack(0, _WINDOW_UPDATE, _ACK, stream_id, extra)

    def _local_stream(self, stream_id: int) -> _Stream:
        if self._closed:
            raise ConnectionClosedError("the yamux session is closed")
        st = self._streams.get(stream_id)
        if st is None:
            raise LocalUsageError(f"yamux stream {stream_id} is closed or reset")
        return st

    def _take_flags(self, st: _Stream) -> int:
        if st.needs_ack:
            st.needs_ack = False
            return _ACK
        return 0

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the send window allows; return how many bytes.

        The bytes are copied into the output buffer at once (split into frames of at most
        ``max_frame_payload``), so the caller may reuse ``data`` immediately.
        """
        st = self._local_stream(stream_id)
        if st.state is not _OPEN and st.state is not _HALF_CLOSED_REMOTE:
            next_state(st.state, StreamEvent.SEND_DATA)  # raises IllegalStreamTransition
        total = min(len(data), st.send_window)
        if total <= 0:
            return 0
        view = data if isinstance(data, memoryview) else memoryview(data)
        out = self._out
        flags = self._take_flags(st)
        limit = self.config.max_frame_payload
        pos = 0
        while pos < total:
            n = total - pos if total - pos < limit else limit
            out += _pack(0, _DATA, flags, stream_id, n)
            out += view[pos : pos + n]
            flags = 0
            pos += n
        st.send_window -= total
        return total

    def send_eof(self, stream_id: int) -> None:
        """Half-close our sending direction (FIN)."""
        st = self._local_stream(stream_id)
        new = next_state(st.state, StreamEvent.SEND_FIN)
        self._out += _pack(0, _WINDOW_UPDATE, self._take_flags(st) | _FIN, stream_id, 0)
        self._set_state(st, new)

    def close_stream(self, stream_id: int) -> None:
        """The application closed the stream: FIN (unless sent) and stop reading.

        Bytes it left unread should be passed to :meth:`acknowledge_received` *before* this
        call, so that a writer blocked on a full window is released; whatever the peer sends
        after this point is answered with RST (see :mod:`.state`).
        """
        st = self._streams.get(stream_id)
        if st is None or self._closed or st.state is _LOCAL_CLOSED:
            return
        new = next_state(st.state, StreamEvent.CLOSE)
        if st.state is _OPEN or st.state is _HALF_CLOSED_REMOTE:
            self._out += _pack(0, _WINDOW_UPDATE, self._take_flags(st) | _FIN, stream_id, 0)
        self._set_state(st, new)

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        """Abort both directions (WindowUpdate|RST; ``error_code`` rides in ``length``)."""
        st = self._streams.get(stream_id)
        if st is None or self._closed:
            return
        self._set_state(st, next_state(st.state, StreamEvent.SEND_RST))
        self._out += _pack(0, _WINDOW_UPDATE, _RST, stream_id, error_code & MAX_UINT32)

    def acknowledge_received(self, stream_id: int, nbytes: int, now: float) -> bool:
        """The application consumed (or discarded) ``nbytes`` received on the stream.

        Queues a window update once half the window has been consumed, doubling the window
        first when the previous update was less than four RTTs ago. Returns whether a frame
        was queued.
        """
        self._now = now
        st = self._streams.get(stream_id)
        if st is None or self._closed:
            return False
        st.unacked -= nbytes
        credit = st.pending_credit + nbytes
        st.pending_credit = credit
        if st.state is not _OPEN and st.state is not _HALF_CLOSED_LOCAL:
            return False  # the peer finished sending: no window needed
        window = st.recv_window
        if credit < window >> 1:
            return False
        rtt = self._rtt
        if rtt is not None and now - st.epoch < 4 * rtt and window < self.config.max_window:
            grown = min(window * 2, self.config.max_window)
            # Growth is also bounded session-wide, so many fast streams that all stop reading
            # at once cannot make us buffer more than max_session_window in total.
            total = sum(other.recv_window for other in self._streams.values())
            if total + grown - window <= self.config.max_session_window:
                credit += grown - window
                st.recv_window = grown
        st.epoch = now
        st.pending_credit = 0
        st.recv_credit += credit
        flags = self._take_flags(st)
        header = _pack(0, _WINDOW_UPDATE, flags, stream_id, credit)
        if flags:
            self._out += header
        else:
            self._urgent += header
        return True

    def close(self, code: int = GoAwayCode.NORMAL) -> None:
        """Send GoAway with ``code`` and end the session (all streams are abandoned)."""
        if self._closed:
            return
        self._shutdown()
        self._local_goaway = code
        self._urgent += _pack(0, _GO_AWAY, 0, 0, code & MAX_UINT32)

    def receive_eof(self) -> None:
        """The underlying byte stream ended (a bare EOF is a normal end of the session)."""
        self._shutdown()

    def abort(self) -> None:
        """The session is over for another reason (transport failure, local shutdown)."""
        self._shutdown()

    def _shutdown(self) -> None:
        # Every stream ends with the session; queued output stays for a final flush.
        self._closed = True
        self._streams.clear()
        self._ack_backlog = self._unaccepted = self._inbound = 0
        self._pings.clear()
        self._probe = None

    # -- stream bookkeeping --------------------------------------------------------------

    def _set_state(self, st: _Stream, new: StreamState) -> None:
        st.state = new
        if new in TERMINAL_STATES:
            self._forget(st)

    def _forget(self, st: _Stream) -> None:
        if self._streams.pop(st.stream_id, None) is None:
            return
        if st.awaiting_ack:
            st.awaiting_ack = False
            self._ack_backlog -= 1
        if not st.outbound:
            self._inbound -= 1
            if not st.accepted:
                self._unaccepted -= 1

    def _reset_by_us(self, st: _Stream, reason: str, events: list[YamuxEvent]) -> None:
        """Reset a stream because of something the peer did (not a session-level error)."""
        logger.info("yamux: resetting stream %d: %s", st.stream_id, reason)
        self._set_state(st, next_state(st.state, StreamEvent.SEND_RST))
        self._out += _pack(0, _WINDOW_UPDATE, _RST, st.stream_id, 0)
        events.append(StreamAborted(st.stream_id, 0, False, reason))
        self._check_forced_output()

    # -- input ---------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[YamuxEvent]:
        """Consume bytes from the peer and return what happened.

        Raises :class:`YamuxProtocolError` (after queueing GoAway code 1 and closing) or
        :class:`OutputBacklogExceeded` when the peer misbehaves; both are
        :class:`~libp2p.exceptions.RemoteProtocolError`. Bytes after the session closed are
        ignored.
        """
        if self._closed:
            return []
        self._now = now
        self._last_recv = now
        events: list[YamuxEvent] = []
        try:
            self._parse(data, events)
        except YamuxProtocolError:
            self._shutdown()
            self._local_goaway = GoAwayCode.PROTOCOL_ERROR
            self._urgent += _pack(0, _GO_AWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR)
            raise
        except OutputBacklogExceeded:
            self._shutdown()
            raise
        return events

    def _parse(self, data: bytes | bytearray | memoryview, events: list[YamuxEvent]) -> None:
        end = len(data)
        pos = 0
        view: memoryview | None = None
        partial = self._partial
        while pos < end:
            left = self._payload_left
            if left:
                n = end - pos if end - pos < left else left
                if self._payload_deliver:
                    if pos == 0 and n == end and type(data) is bytes:
                        chunk = data
                    elif type(data) is bytes:
                        chunk = data[pos : pos + n]
                    else:
                        if view is None:
                            view = memoryview(data)
                        chunk = bytes(view[pos : pos + n])
                    self._deliver(chunk, events)
                pos += n
                left -= n
                self._payload_left = left
                if not left and self._payload_fin:
                    self._payload_fin = False
                    st = self._streams.get(self._payload_sid)
                    if st is not None:
                        self._recv_fin(st, events)
                continue
            if partial:
                need = HEADER_SIZE - len(partial)
                partial += data[pos : pos + need]
                pos += need
                if len(partial) < HEADER_SIZE:
                    break
                version, frame_type, flags, stream_id, length = _unpack(partial)
                partial.clear()
            elif end - pos >= HEADER_SIZE:
                version, frame_type, flags, stream_id, length = _unpack_from(data, pos)
                pos += HEADER_SIZE
            else:
                partial += data[pos:end]
                break
            self._on_frame(version, frame_type, flags, stream_id, length, events)

    def _deliver(self, chunk: bytes, events: list[YamuxEvent]) -> None:
        st = self._streams.get(self._payload_sid)
        if st is None:
            self._payload_deliver = False
            return
        if st.state is _LOCAL_CLOSED:
            # The application closed the stream while this frame was arriving.
            self._payload_deliver = False
            if not self._payload_fin:
                self._reset_by_us(st, "data arrived after the stream was closed", events)
            return
        events.append(DataReceived(st.stream_id, chunk))

    def _start_payload(self, stream_id: int, length: int, *, deliver: bool, fin: bool) -> None:
        self._payload_sid = stream_id
        self._payload_left = length
        self._payload_deliver = deliver
        self._payload_fin = fin

    def _on_frame(
        self,
        version: int,
        frame_type: int,
        flags: int,
        stream_id: int,
        length: int,
        events: list[YamuxEvent],
    ) -> None:
        if version != 0:
            raise YamuxFrameError(f"unsupported yamux version {version}")
        if frame_type <= _WINDOW_UPDATE:
            self._on_stream_frame(frame_type == _DATA, flags, stream_id, length, events)
        elif frame_type == _PING:
            self._on_ping(flags, length, events)
        elif frame_type == _GO_AWAY:
            if length != GoAwayCode.NORMAL:
                logger.info("yamux: peer sent GoAway with error code %d", length)
            self._remote_goaway = length
            events.append(GoAwayReceived(length))
        else:
            raise YamuxFrameError(f"unknown yamux frame type {frame_type}")

    def _on_ping(self, flags: int, opaque: int, events: list[YamuxEvent]) -> None:
        if flags & _SYN:
            if len(self._urgent) < _MAX_URGENT_OUTPUT:
                self._urgent += _pack(0, _PING, _ACK, 0, opaque)
            else:
                logger.warning("yamux: dropping a ping reply, the peer is not reading")
            events.append(PingReceived(opaque))
        elif flags & _ACK:
            sent = self._pings.pop(opaque, None)
            if sent is None:
                return  # unsolicited or cancelled
            now = self._now
            rtt = max(now - sent, 0.0)
            self._rtt = rtt if self._rtt is None else (self._rtt + rtt) / 2
            if opaque == self._probe:
                self._probe = None
                interval = self.config.keepalive_interval
                self._next_probe = None if interval is None else now + interval
            events.append(PingAcknowledged(opaque, rtt))

    def _on_stream_frame(
        self, is_data: bool, flags: int, stream_id: int, length: int, events: list[YamuxEvent]
    ) -> None:
        if stream_id == 0:
            raise YamuxProtocolError("a Data or WindowUpdate frame used the session ID 0")
        st = self._streams.get(stream_id)
        if flags & _SYN:
            if st is not None:
                raise YamuxProtocolError(f"duplicate SYN for live stream {stream_id}")
            if stream_id & 1 != self._remote_parity:
                raise YamuxProtocolError(
                    f"the peer opened stream {stream_id}, an ID of our parity: both sides act "
                    f"as yamux {'client' if self.is_initiator else 'server'}"
                )
            st = self._on_syn(stream_id, events)
        if st is None:
            # Unknown or finished stream (normal after we reset it): drain and ignore.
            if is_data and length:
                self._start_payload(stream_id, length, deliver=False, fin=False)
            return
        if flags & _ACK and st.awaiting_ack:
            st.awaiting_ack = False
            self._ack_backlog -= 1
            events.append(StreamAcknowledged(stream_id))
        if flags & _RST:
            # On a WindowUpdate the length is go-yamux's error code, never a window delta.
            code = 0 if is_data else length
            self._set_state(st, next_state(st.state, StreamEvent.RECV_RST))
            events.append(StreamAborted(stream_id, code, True, "reset by the peer"))
            if is_data and length:
                self._start_payload(stream_id, length, deliver=False, fin=False)
            return
        fin = bool(flags & _FIN)
        if is_data:
            if length > st.recv_credit:
                raise YamuxProtocolError(
                    f"stream {stream_id}: a {length}-byte Data frame exceeds the receive "
                    f"window ({st.recv_credit} bytes left)"
                )
            st.recv_credit -= length
            if length:
                state = st.state
                if state is _OPEN or state is _HALF_CLOSED_LOCAL:
                    st.unacked += length
                    self._start_payload(stream_id, length, deliver=True, fin=fin)
                    return
                if state is _LOCAL_CLOSED:
                    if not fin:
                        self._reset_by_us(st, "data arrived after the stream was closed", events)
                    self._start_payload(stream_id, length, deliver=False, fin=fin)
                    return
                # HALF_CLOSED_REMOTE: the peer broke its own FIN. Reset just this stream.
                self._reset_by_us(st, "the peer sent data after its FIN", events)
                self._start_payload(stream_id, length, deliver=False, fin=False)
                return
        elif length:
            st.send_window += length
            events.append(SendWindowUpdated(stream_id, st.send_window))
        if fin:
            self._recv_fin(st, events)

    def _on_syn(self, stream_id: int, events: list[YamuxEvent]) -> _Stream | None:
        config = self.config
        if (
            self._local_goaway is not None
            or self._unaccepted >= config.accept_backlog
            or self._inbound >= config.max_inbound_streams
        ):
            logger.info("yamux: refusing inbound stream %d (backlog full)", stream_id)
            self._out += _pack(0, _WINDOW_UPDATE, _RST, stream_id, 0)
            self._check_forced_output()
            return None
        st = _Stream(stream_id, outbound=False, recv_window=INITIAL_WINDOW, now=self._now)
        self._streams[stream_id] = st
        self._inbound += 1
        self._unaccepted += 1
        events.append(StreamOpened(stream_id))
        return st

    def _recv_fin(self, st: _Stream, events: list[YamuxEvent]) -> None:
        old = st.state
        self._set_state(st, next_state(old, StreamEvent.RECV_FIN))
        # Reported for a stream the application closed too (LOCAL_CLOSED): nobody reads it
        # any more, but the driver must learn that the stream is over to forget it.
        if old is _OPEN or old is _HALF_CLOSED_LOCAL or old is _LOCAL_CLOSED:
            events.append(StreamEnded(st.stream_id))
