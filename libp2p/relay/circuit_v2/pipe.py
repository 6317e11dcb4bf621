"""The relayed byte pipe under a relayed connection, and how a limit reset is recognised.

A relayed connection runs Noise and Yamux over a hop stream (the dialer's) or a stop stream
(the target's). When the relay's data or time limit is reached it resets that stream -- the
spec gives it no other way to say why -- so without help the connection would only report
"the underlying connection failed". Both ends know the limit the relay announced, and can
count: :class:`CircuitMeter` (I/O-free, takes ``now``) decides whether a reset of the pipe
is the relay enforcing its limit, and ``RelayedPipe`` turns that reset into a
:class:`~.protocol.RelayLimitReached`, which every stream of the connection then raises.

The rules only ever under-estimate what the relay counted, so a limit reset is always
recognised:

* **data**: the relay resets once it forwarded (go) or was offered more than (us) the limit
  in one direction. Every byte it forwarded to us arrived before its reset (one ordered
  connection), and every byte it read from us was sent by us; so at the reset we have
  received, or sent, at least ``Limit.data`` bytes on the pipe. Bytes are counted at the
  stream (:attr:`NetStream.bytes_received <libp2p.network.connection.NetStream>`), because a
  reset discards bytes that arrived but were not yet read;
* **duration**: the relay starts its timer after our ``CONNECT`` (dialer) or our stop ``OK``
  (target) reached it, so counting from the moment we sent that message, at least
  ``Limit.duration`` seconds have passed when its reset arrives.

Relays do not all cut the same way. Ours resets both streams. go-libp2p's (v0.32) resets
both at the duration limit, but at the data limit it half-closes the receiving side after
exactly ``Limit.data`` bytes (an EOF, often in the middle of a Noise frame) and stops reading
from the sender. So an EOF of the pipe once ``Limit.data`` bytes crossed it in either
direction is the data limit too: the other peer did not close the connection, the relay cut
it (a peer that really closed at that very byte would have been cut at the next one).

js-libp2p's relay (@libp2p/circuit-relay-v2) counts one budget for both directions, on the
bytes it receives, and resets both streams before forwarding the message that overdrew it:
the end that sent the bytes is recognised (it sent at least ``Limit.data``), the receiving end
is not (it got fewer, and a rule on the sum of both directions would misname ordinary resets
on the per-direction relays). js also writes ``Limit.duration`` in milliseconds, so its time
limit, 1000 times shorter than announced, is not recognised either.

A reset for another reason (the other peer's connection to the relay failed) just after a
limit was reached would be reported as the limit; that is the only confusion possible.
"""

from __future__ import annotations

import trio

from ...exceptions import StreamReset
from ...io import BufferedStream
from ...network.connection import ConnectionLimit, NetStream
from ...peer.id import PeerID
from .protocol import LimitKind, RelayLimitReached

__all__ = ["CircuitMeter", "RelayedPipe"]


class CircuitMeter:
    """Decides whether a circuit's reset is the relay enforcing ``limit``.

    ``started_at`` is when we sent the message that starts the relay's timer; the byte counts
    passed to :meth:`reached` are those of the pipe alone (after the hop or stop exchange).
    """

    def __init__(self, limit: ConnectionLimit, started_at: float) -> None:
        self.limit = limit
        self.started_at = started_at

    def reached(self, sent: int, received: int, now: float) -> LimitKind | None:
        """The limit a reset at ``now`` must be due to, or ``None`` (an ordinary reset)."""
        data = self.limit.data
        if data is not None and (sent >= data or received >= data):
            return LimitKind.DATA
        duration = self.limit.duration
        if duration is not None and now - self.started_at >= duration:
            return LimitKind.DURATION
        return None

    def cut_at_eof(self, sent: int, received: int) -> LimitKind | None:
        """The limit an EOF of the pipe must be due to, or ``None`` (an ordinary close)."""
        data = self.limit.data
        if data is not None and (sent >= data or received >= data):
            return LimitKind.DATA
        return None


class RelayedPipe(trio.abc.HalfCloseableStream):
    """The hop or stop stream as the relayed connection's transport (see the module doc).

    ``reader`` is the buffered hop or stop stream (bytes read past the last relay message
    already belong to the pipe); ``stream`` the :class:`NetStream` under it, whose counters
    say how many bytes crossed the pipe. Anything that is not a ``NetStream`` is counted here,
    as read and written.
    """

    def __init__(
        self,
        reader: BufferedStream,
        stream: trio.abc.HalfCloseableStream,
        meter: CircuitMeter,
        relay: PeerID | None,
    ) -> None:
        self._reader = reader
        self._stream = stream if isinstance(stream, NetStream) else None
        self.meter = meter
        self.relay = relay
        # Bytes that belong to the relay exchange, not to the pipe.
        self._sent_base = self._stream.bytes_sent if self._stream is not None else 0
        self._received_base = (
            self._stream.bytes_received - reader.buffered if self._stream is not None else 0
        )
        self._sent = 0
        self._received = 0

    @property
    def bytes_sent(self) -> int:
        """Bytes we sent through the pipe (what the relay counts toward its limit)."""
        if self._stream is not None:
            return self._stream.bytes_sent - self._sent_base
        return self._sent

    @property
    def bytes_received(self) -> int:
        """Bytes that arrived through the pipe, read or not."""
        if self._stream is not None:
            return self._stream.bytes_received - self._received_base
        return self._received

    def _translate(self, exc: StreamReset) -> StreamReset:
        if not exc.by_remote or isinstance(exc, RelayLimitReached):
            return exc
        kind = self.meter.reached(self.bytes_sent, self.bytes_received, trio.current_time())
        if kind is None:
            return exc
        return RelayLimitReached(kind, self.meter.limit, self.relay)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._reader.receive_some(max_bytes)
        except StreamReset as exc:
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        self._received += len(data)
        if not data:
            kind = self.meter.cut_at_eof(self.bytes_sent, self.bytes_received)
            if kind is not None:
                raise RelayLimitReached(kind, self.meter.limit, self.relay)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._reader.send_all(data)
        except StreamReset as exc:
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        self._sent += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._reader.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._reader.send_eof()

    async def aclose(self) -> None:
        await self._reader.aclose()
