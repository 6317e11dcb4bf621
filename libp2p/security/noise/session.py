"""The trio driver: run the libp2p Noise handshake over a stream, then encrypt everything.

:func:`noise_handshake` moves the three handshake messages of
:class:`~.handshake.Libp2pNoiseHandshake` over any ``trio.abc.Stream``, each framed as
``u16 big-endian length || message``. It reads through a :class:`~libp2p.io.BufferedStream`
(reusing the caller's one if it passes one), because a peer may pipeline its first transport
frames -- typically a multistream-select proposal for the muxer -- in the same segment as
handshake message 3; whatever was read past that message becomes the first input of the
transport phase instead of being lost.

The result is a :class:`NoiseSession`, a ``trio.abc.HalfCloseableStream`` that follows trio's
stream contract:

* one task at a time may send (``send_all``, ``wait_send_all_might_not_block``,
  ``send_eof``) and one may receive, or :class:`trio.BusyResourceError`;
* after :meth:`~NoiseSession.aclose` every call raises :class:`trio.ClosedResourceError`, and
  so does ``send_all`` after ``send_eof``;
* a write that is cancelled or fails part-way leaves the peer with a partial frame and our
  nonce out of step, so the sending side is then broken (:class:`trio.BrokenResourceError`);
* a frame that does not authenticate, or an EOF in the middle of a frame, raises a
  :class:`~.errors.NoiseTransportError` (a ``RemoteProtocolError`` that is also a
  ``BrokenResourceError``); the session is broken in both directions afterwards.

Noise has no close message of its own: ``send_eof`` half-closes the underlying stream, and a
clean EOF between frames is a clean EOF of the session.

Throughput (design §8): a receive reads up to 256 KiB from the underlying stream and
decrypts every complete frame in it before returning, so there is one await per socket read,
not per frame; a send encrypts all its frames into one buffer and writes it with one
``send_all`` (in batches of about 1 MiB for very large writes, which bounds memory).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from types import TracebackType

import trio

from ...crypto.keys import PrivateKey, PublicKey
from ...exceptions import ConnectionBrokenError, LocalUsageError, UnexpectedEOF
from ...io import BufferedStream
from ...peer.id import PeerID
from .errors import NoiseHandshakeError
from .handshake import HandshakeResult, Libp2pNoiseHandshake
from .transport import MAX_PLAINTEXT_SIZE, NoiseTransport

__all__ = ["NoiseSession", "noise_handshake"]

#: Bytes requested from the underlying stream per receive (several full frames).
RECEIVE_CHUNK = 256 * 1024
#: Plaintext encrypted per underlying ``send_all`` for very large writes (16 full frames).
SEND_BATCH = 16 * MAX_PLAINTEXT_SIZE


class _Guard:
    """Raise :class:`trio.BusyResourceError` when two tasks use one direction at once."""

    __slots__ = ("_held", "_what")

    def __init__(self, what: str) -> None:
        self._what = what
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(f"another task is already {self._what} this stream")
        self._held = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._held = False


class NoiseSession(trio.abc.HalfCloseableStream):
    """An authenticated, encrypted stream to a proven remote peer.

    Normally built by :func:`noise_handshake`. ``initial`` are bytes already read from
    ``transport_stream`` that follow the last handshake message.
    """

    def __init__(
        self, transport_stream: trio.abc.Stream, result: HandshakeResult, initial: bytes = b""
    ) -> None:
        #: The stream the encrypted frames travel on.
        self.transport_stream = transport_stream
        #: Our own peer ID.
        self.local_peer: PeerID = result.local_peer
        #: The peer ID the remote proved in the handshake.
        self.remote_peer: PeerID = result.remote_peer
        #: The remote's identity key.
        self.remote_public_key: PublicKey = result.remote_public_key
        #: The muxer agreed inside the handshake, or None (use multistream-select).
        self.negotiated_muxer: str | None = result.negotiated_muxer
        #: The muxers the remote advertised in its handshake payload.
        self.remote_muxers: tuple[str, ...] = result.remote_muxers
        #: The final Noise handshake hash (identical on both sides; usable as channel binding).
        self.handshake_hash: bytes = result.handshake_hash
        self._transport = NoiseTransport(result.send_cipher, result.receive_cipher, initial)
        self._send_guard = _Guard("sending on")
        self._receive_guard = _Guard("receiving from")
        self._plain: bytes | bytearray = b""
        self._plain_pos = 0
        self._closed = False
        self._eof_sent = False
        self._eof_received = False
        self._send_broken: BaseException | None = None

    def __repr__(self) -> str:
        return f"<NoiseSession {self.local_peer} <-> {self.remote_peer}>"

    # -- sending -----------------------------------------------------------------------------

    def _check_can_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the Noise session is closed")
        if self._eof_sent:
            raise trio.ClosedResourceError("cannot send after send_eof()")
        if self._send_broken is not None:
            raise ConnectionBrokenError(
                "the Noise session's sending side is broken"
            ) from self._send_broken
        error = self._transport.error
        if error is not None:
            raise ConnectionBrokenError(
                "the Noise session is broken: the remote sent an invalid frame"
            ) from error

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_guard:
            self._check_can_send()
            if not data:
                await trio.lowlevel.checkpoint()
                return
            # A cancellation that is already pending must not cost the stream: nothing has
            # been encrypted (no nonce used) and nothing sent yet.
            await trio.lowlevel.checkpoint_if_cancelled()
            view = memoryview(data).cast("B")
            try:
                for start in range(0, len(view), SEND_BATCH):
                    frames = self._transport.encrypt(view[start : start + SEND_BATCH])
                    await self.transport_stream.send_all(frames)
            except BaseException as exc:
                # Partially written frames and used nonces cannot be taken back.
                self._send_broken = exc
                raise

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_guard:
            if self._closed:
                raise trio.ClosedResourceError("the Noise session is closed")
            await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        with self._send_guard:
            if self._closed:
                raise trio.ClosedResourceError("the Noise session is closed")
            if self._eof_sent:
                await trio.lowlevel.checkpoint()
                return
            self._check_can_send()
            send_eof = getattr(self.transport_stream, "send_eof", None)
            if send_eof is None:
                raise LocalUsageError("the stream under this Noise session cannot half-close")
            self._eof_sent = True
            await send_eof()

    # -- receiving ---------------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        with self._receive_guard:
            if self._closed:
                raise trio.ClosedResourceError("the Noise session is closed")
            if self._plain_pos < len(self._plain):
                await trio.lowlevel.checkpoint()
            elif not await self._receive_plaintext():
                return b""
            return self._take(max_bytes)

    async def _receive_plaintext(self) -> bool:
        """Fill the plaintext buffer; False at a clean EOF. Always executes a checkpoint."""
        transport = self._transport
        if transport.error is not None:
            raise transport.error
        if self._eof_received:
            await trio.lowlevel.checkpoint()
            return False
        plain = transport.decrypt(b"") if transport.has_initial_data else b""
        checkpointed = False
        while not plain:
            chunk = await self.transport_stream.receive_some(RECEIVE_CHUNK)
            checkpointed = True
            if not chunk:
                self._eof_received = True
                transport.end_of_input()
                return False
            plain = transport.decrypt(chunk)
        # Store before the checkpoint so that a cancellation there loses nothing.
        self._plain = plain
        self._plain_pos = 0
        if not checkpointed:
            await trio.lowlevel.checkpoint()
        return True

    def _take(self, max_bytes: int | None) -> bytes | bytearray:
        plain = self._plain
        pos = self._plain_pos
        available = len(plain) - pos
        if max_bytes is None or max_bytes >= available:
            self._plain = b""
            self._plain_pos = 0
            return plain if pos == 0 else plain[pos:]
        self._plain_pos = pos + max_bytes
        return plain[pos : pos + max_bytes]

    # -- closing -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        self._plain = b""
        self._plain_pos = 0
        await self.transport_stream.aclose()


async def noise_handshake(
    stream: trio.abc.Stream,
    local_key: PrivateKey,
    *,
    initiator: bool,
    expected_peer: PeerID | None = None,
    muxers: Sequence[str] = (),
    prologue: bytes = b"",
) -> NoiseSession:
    """Run the libp2p Noise XX handshake on ``stream`` and return the encrypted session.

    ``initiator`` is the role decided by the caller (the dialer, or after a hole punch the
    peer that dialed through the relay). ``expected_peer`` is checked against the identity
    the remote proves (:class:`~libp2p.exceptions.PeerIDMismatch`). ``muxers`` are advertised
    for early muxer negotiation; see :attr:`NoiseSession.negotiated_muxer`.

    Raises a :class:`~libp2p.exceptions.HandshakeError` subclass when the remote fails the
    handshake (including closing the stream half-way); transport failures propagate as the
    underlying stream raised them. On any error the caller still owns ``stream`` and must
    close it. Bound the time with a cancel scope (``trio.fail_after``) around the call.
    """
    buffered = BufferedStream.wrap(stream)
    handshake = Libp2pNoiseHandshake(
        local_key,
        initiator=initiator,
        expected_peer=expected_peer,
        muxers=muxers,
        prologue=prologue,
    )
    while not handshake.complete:
        if handshake.is_my_turn:
            message = handshake.write_message()
            await buffered.send_all(len(message).to_bytes(2, "big") + message)
        else:
            number = handshake.message_index + 1
            try:
                length = int.from_bytes(await buffered.read_exactly(2), "big")
                message = await buffered.read_exactly(length)
            except UnexpectedEOF as exc:
                raise NoiseHandshakeError(
                    f"the remote closed the connection before Noise handshake message {number}"
                ) from exc
            handshake.read_message(message)
    leftover = buffered.take_buffered()
    return NoiseSession(buffered.stream, handshake.result(), leftover)
