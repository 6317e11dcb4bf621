"""Tunables of a yamux session, with the go/rust/js defaults they mirror."""

from __future__ import annotations

from dataclasses import dataclass

from ...exceptions import LocalUsageError
from .frame import HEADER_SIZE, INITIAL_WINDOW, MAX_FRAME_PAYLOAD_LIMIT, MAX_UINT32

__all__ = ["DEFAULT_MAX_FRAME_PAYLOAD", "YamuxConfig"]

#: 65519 is the largest Noise transport plaintext (65535 minus the 16-byte tag). A data frame
#: of exactly that size on the wire (12-byte header + 65507 payload bytes) fills one Noise
#: message, and a batch of such frames splits into Noise messages on frame boundaries, so the
#: receiving side usually parses one whole frame per decrypted chunk. It is also close to
#: go-yamux's 64 KiB ``MaxMessageSize`` and far below rust-yamux's 1 MiB body limit.
DEFAULT_MAX_FRAME_PAYLOAD = 65519 - HEADER_SIZE


@dataclass(frozen=True, slots=True)
class YamuxConfig:
    """Configuration shared by the core and the trio driver. All sizes are in bytes."""

    #: Receive window announced for each new stream. Must be >= 256 KiB (the spec's initial
    #: window); more is announced in the SYN/ACK window update.
    initial_window: int = INITIAL_WINDOW
    #: Upper bound for auto-tuned receive windows (go-yamux ``MaxStreamWindowSize``: 16 MiB).
    #: It is also the most a slow reader can make us buffer on one stream.
    max_window: int = 16 * 1024 * 1024
    #: Auto-tuning never lets the receive windows of all streams together exceed this, which
    #: bounds what a session may have to buffer for readers that stop reading (windows at
    #: their initial size are bounded by ``max_inbound_streams`` instead).
    max_session_window: int = 64 * 1024 * 1024
    #: Largest Data payload we send in one frame (never above 1 MiB: rust rejects that).
    max_frame_payload: int = DEFAULT_MAX_FRAME_PAYLOAD
    #: Inbound streams waiting for ``accept_stream``; more get RST (go ``AcceptBacklog``).
    accept_backlog: int = 256
    #: Live inbound streams; more get RST (go ``MaxIncomingStreams``).
    max_inbound_streams: int = 1000
    #: Outbound streams the peer has not ACKed yet; ``open_stream`` waits beyond this
    #: (spec "implementation considerations", rust ``MAX_ACK_BACKLOG``: 256).
    max_ack_backlog: int = 256
    #: Ping the peer this often (seconds); ``None`` turns keep-alive off (go: 30 s).
    keepalive_interval: float | None = 30.0
    #: A keep-alive ping with no answer, and no other incoming bytes, for this long closes the
    #: session (go ``ConnectionWriteTimeout``: 10 s).
    ping_timeout: float = 10.0
    #: Send one ping when the session starts to learn the RTT used by window auto-tuning.
    measure_rtt: bool = True
    #: Driver: stream writers wait while this much output is queued and not yet written.
    write_buffer_size: int = 256 * 1024
    #: Driver: ``max_bytes`` for each read from the underlying stream.
    read_size: int = 256 * 1024
    #: Driver: how long closing may spend flushing GoAway and queued frames (seconds).
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not INITIAL_WINDOW <= self.initial_window <= MAX_UINT32:
            raise LocalUsageError("initial_window must be at least 256 KiB and fit in 32 bits")
        if not self.initial_window <= self.max_window <= MAX_UINT32:
            raise LocalUsageError("max_window must be >= initial_window and fit in 32 bits")
        if self.max_session_window < self.initial_window:
            raise LocalUsageError("max_session_window must be >= initial_window")
        if not 1 <= self.max_frame_payload <= MAX_FRAME_PAYLOAD_LIMIT:
            raise LocalUsageError("max_frame_payload must be between 1 byte and 1 MiB")
        if self.accept_backlog < 1 or self.max_inbound_streams < 1 or self.max_ack_backlog < 1:
            raise LocalUsageError("stream limits must be positive")
        if self.keepalive_interval is not None and self.keepalive_interval <= 0:
            raise LocalUsageError("keepalive_interval must be positive (or None)")
        if self.ping_timeout <= 0 or self.close_timeout < 0:
            raise LocalUsageError("timeouts must be positive")
        if self.write_buffer_size < 1 or self.read_size < 1:
            raise LocalUsageError("buffer sizes must be positive")
