"""multistream-select 1.0: agree on the protocol that a connection or stream speaks.

Theory of operation
-------------------
Every message is ``uvarint(len) || utf8 || "\\n"`` where the length counts the newline. Both
sides first send the header ``/multistream/1.0.0``. The *initiator* (the side that opened the
connection or stream) then proposes one protocol ID at a time; the *responder* echoes the ID to
accept it or answers ``na``. After an echo the stream belongs to that protocol, starting with
the very next byte.

Two initiator styles are supported:

* :func:`select` -- propose in order, waiting for each answer (one round trip per proposal).
* :func:`select_lazy` -- the "0-RTT" form used by go and rust (``V1Lazy``) when exactly one
  protocol is proposed: header and proposal are written at once and the application may start
  writing immediately; the responder's header and echo are checked on the first read. An ``na``
  then surfaces as :class:`ProtocolNotSupported` from that read. As in go, it is for protocols
  the peer is known to support (identify said so); otherwise :func:`select` waits.

The responder (:func:`handle`) never reads past the proposal it accepts: bytes that a lazy
initiator pipelined behind it stay in the :class:`~libp2p.io.BufferedStream` for the protocol.
``ls`` is answered with ``na``, as go does; nobody may depend on it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Container, Sequence

import trio

from ..exceptions import DecodeError, Libp2pError, LocalUsageError, ProtocolNotSupported
from ..io import BufferedStream
from ..varint import encode_uvarint

__all__ = [
    "CLOSE_ANSWER_TIMEOUT",
    "MAX_MESSAGE_SIZE",
    "MAX_PROPOSALS",
    "PROTOCOL_ID",
    "LazyNegotiatedStream",
    "RoleRule",
    "encode_message",
    "handle",
    "negotiate_either_role",
    "read_message",
    "select",
    "select_lazy",
]

#: The multistream-select protocol ID, sent as the header by both sides.
PROTOCOL_ID = "/multistream/1.0.0"
#: Longest message we accept (go-multistream's limit on a token, 1024 bytes).
MAX_MESSAGE_SIZE = 1024
#: How many proposals a responder answers on one stream before giving up on the initiator.
MAX_PROPOSALS = 64
#: Longest a lazily negotiated stream's close waits for the answer to its proposal.
CLOSE_ANSWER_TIMEOUT = 5.0

_NA = "na"
_LS = "ls"


def encode_message(text: str) -> bytes:
    """Encode one multistream message (length prefix, UTF-8, trailing newline)."""
    raw = text.encode() + b"\n"
    if len(raw) > MAX_MESSAGE_SIZE:
        raise LocalUsageError(f"multistream message too long: {text[:40]!r}...")
    return encode_uvarint(len(raw)) + raw


_HEADER = encode_message(PROTOCOL_ID)
_NA_MSG = encode_message(_NA)


async def read_message(stream: BufferedStream) -> str:
    """Read one multistream message and return its text without the newline."""
    return _decode_message(await stream.read_lp(MAX_MESSAGE_SIZE))


def _decode_message(raw: bytes) -> str:
    if not raw or raw[-1] != 0x0A:
        raise DecodeError("multistream message did not end with a newline")
    try:
        return raw[:-1].decode()
    except UnicodeDecodeError as exc:
        raise DecodeError("multistream message is not valid UTF-8") from exc


async def _expect_header(stream: BufferedStream) -> None:
    header = await read_message(stream)
    if header != PROTOCOL_ID:
        raise DecodeError(f"expected multistream header {PROTOCOL_ID!r}, got {header[:64]!r}")


async def select(stream: BufferedStream, protocols: Sequence[str]) -> str:
    """Negotiate as initiator, proposing ``protocols`` in order; return the accepted one.

    The header and the first proposal go out in one write. Raises
    :class:`ProtocolNotSupported` when the responder refuses every proposal.
    """
    if not protocols:
        raise LocalUsageError("select() needs at least one protocol")
    await stream.send_all(_HEADER + encode_message(protocols[0]))
    await _expect_header(stream)
    for i, proto in enumerate(protocols):
        if i:
            await stream.send_all(encode_message(proto))
        reply = await read_message(stream)
        if reply == proto:
            return proto
        if reply != _NA:
            raise DecodeError(f"responder answered {reply[:64]!r} to proposal {proto!r}")
    raise ProtocolNotSupported(f"peer supports none of {list(protocols)}")


async def select_lazy(stream: BufferedStream, protocol: str) -> LazyNegotiatedStream:
    """Propose one protocol without waiting for the answer ("0-RTT").

    Returns a stream the application can write to at once; the responder's answer is checked
    on its first read. Use it only when the peer is known to support ``protocol`` (identify
    said so): a peer that answers ``na`` may read the bytes that followed the proposal as
    its next proposal and reset the stream (go-libp2p does), so the refusal could surface as
    a reset. :func:`select` waits for the answer instead.

    Two rules keep a lazily negotiated request from being lost (see
    :class:`LazyNegotiatedStream`): the half-close (FIN) waits for the answer, and so does
    closing the stream.
    """
    await stream.send_all(_HEADER + encode_message(protocol))
    return LazyNegotiatedStream(stream, protocol)


class LazyNegotiatedStream(trio.abc.HalfCloseableStream):
    """The initiator's stream after :func:`select_lazy`: validates the answer on first read.

    Until the responder's answer has been read:

    * :meth:`send_eof` first waits for it. js-libp2p 3.x drops a request whose proposal,
      data and FIN arrive together; the wait costs a round trip only for a request that is
      closed before any reply could arrive.
    * :meth:`aclose` waits for it too (at most :data:`CLOSE_ANSWER_TIMEOUT`). The answer is
      still on its way when a "write then close" closes the stream; arriving on a closed
      stream it would be answered with a reset, and a peer that sees the reset before it
      read our request drops the request (py-libp2p drops identify-push that way).
    """

    __slots__ = ("_checked", "_failed", "_header_read", "_lock", "protocol", "stream")

    def __init__(self, stream: BufferedStream, protocol: str, *, header_read: bool = False) -> None:
        #: The underlying buffered stream.
        self.stream = stream
        #: The protocol that was proposed.
        self.protocol = protocol
        self._checked = False
        # The responder's header was read already (see negotiate_either_role).
        self._header_read = header_read
        # The error the answer was (na, garbage, EOF), once read: never read twice.
        self._failed: Libp2pError | None = None
        self._lock = trio.Lock()

    async def ensure_negotiated(self) -> None:
        """Read and check the responder's header and answer, if not done yet."""
        if self._checked:
            return
        async with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._checked:
                return
            try:
                if not self._header_read:
                    await _expect_header(self.stream)
                reply = await read_message(self.stream)
                if reply == _NA:
                    raise ProtocolNotSupported(f"peer does not support {self.protocol!r}")
                if reply != self.protocol:
                    raise DecodeError(f"responder answered {reply[:64]!r} to {self.protocol!r}")
            except Libp2pError as exc:
                self._failed = exc
                raise
            self._checked = True

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if not self._checked:
            await self.ensure_negotiated()
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if not self._checked:
            await self.ensure_negotiated()
        await self.stream.send_eof()

    async def aclose(self) -> None:
        """Close; if the answer to the proposal has not been read yet, wait for it first.

        Raises :class:`ProtocolNotSupported` (after closing) when the answer was ``na``:
        whatever was written never reached a handler.
        """
        refused: ProtocolNotSupported | None = None
        if not self._checked and self._failed is None:
            with trio.move_on_after(CLOSE_ANSWER_TIMEOUT):
                try:
                    await self.send_eof()
                except ProtocolNotSupported as exc:
                    refused = exc
                except (Libp2pError, trio.ClosedResourceError):
                    # The stream failed (reset, broken, already closed): closing it is all
                    # that is left to do, and there is nobody else to tell.
                    pass
        await self.stream.aclose()
        if refused is not None:
            raise refused


async def handle(
    stream: BufferedStream,
    supported: Container[str] | Callable[[str], bool],
) -> str:
    """Negotiate as responder; return the protocol the initiator chose among ``supported``.

    ``supported`` is a container of protocol IDs or a predicate. Raises
    :class:`ProtocolNotSupported` if the initiator gives up (closes) after refusals, and
    :class:`DecodeError` for malformed messages or too many proposals.
    """
    accepts: Callable[[str], bool] = supported if callable(supported) else supported.__contains__
    await _expect_header(stream)
    pending = _HEADER
    if not stream.buffered:
        # The initiator may wait for our header before proposing: send it now.
        await stream.send_all(pending)
        pending = b""
    return await _answer(stream, accepts, pending)


async def _answer(stream: BufferedStream, accepts: Callable[[str], bool], pending: bytes) -> str:
    """The responder's loop: answer proposals until one is accepted (``pending`` goes out
    in front of the first answer)."""
    for _ in range(MAX_PROPOSALS):
        raw = await stream.read_lp_or_eof(MAX_MESSAGE_SIZE)
        if raw is None:
            raise ProtocolNotSupported("initiator closed the stream without agreeing on a protocol")
        proposal = _decode_message(raw)
        if proposal != _LS and accepts(proposal):
            await stream.send_all(pending + encode_message(proposal))
            return proposal
        await stream.send_all(pending + _NA_MSG)
        pending = b""
    raise DecodeError(f"initiator made more than {MAX_PROPOSALS} proposals")


class RoleRule(enum.Enum):
    """How :func:`negotiate_either_role` settles who initiates."""

    #: Initiate, unless the peer's header came with a proposal: then respond.
    INITIATE_UNLESS_PROPOSED = "initiate_unless_proposed"
    #: Respond, unless the peer has proposed nothing within the patience: then initiate.
    RESPOND_UNLESS_SILENT = "respond_unless_silent"


async def negotiate_either_role(
    stream: BufferedStream, protocol: str, *, rule: RoleRule, patience: float = 0.0
) -> tuple[bool, trio.abc.HalfCloseableStream]:
    """Agree on ``protocol`` on a connection that both ends opened, where either may initiate.

    After a TCP simultaneous open (a hole punch) both sides called ``connect()``. DCUtR
    says which of them initiates, but deployed peers disagree: go-libp2p before v0.41 has
    the roles the wrong way round on every attempt, and later go B's initiate on their last
    attempt. Two initiators, or two responders, cannot agree on anything, so both rules
    start by sending only the header (which both roles send) and let the peer's first
    bytes decide:

    * :attr:`RoleRule.INITIATE_UNLESS_PROPOSED` (DCUtR's A): read the peer's header; if a
      proposal came with it (an initiator writes header and proposal at once, as go,
      rust, js and we do), respond to it; otherwise the peer is a responder: propose.
    * :attr:`RoleRule.RESPOND_UNLESS_SILENT` (DCUtR's B): wait up to ``patience`` seconds
      for a proposal and answer it; a peer that proposed nothing by then is a responder
      waiting for us (an old go A): propose. The patience must exceed the time an
      :attr:`~RoleRule.INITIATE_UNLESS_PROPOSED` peer takes to see our header and answer
      with its proposal (one round trip); otherwise both would propose.

    Only ``protocol`` is accepted or proposed. Returns ``(initiator, channel)``: our role,
    and the stream to speak ``protocol`` on (as initiator the answer to our proposal is
    checked on its first read, as with :func:`select_lazy`).
    """
    await stream.send_all(_HEADER)
    if rule is RoleRule.INITIATE_UNLESS_PROPOSED:
        await _expect_header(stream)
        proposed = stream.buffered > 0
    else:
        with trio.move_on_after(patience):
            await stream.wait_buffered(len(_HEADER) + 1)
        proposed = stream.buffered > len(_HEADER)
        if proposed:
            await _expect_header(stream)
    if proposed:
        await _answer(stream, lambda p: p == protocol, b"")
        return False, stream
    await stream.send_all(encode_message(protocol))
    header_read = rule is RoleRule.INITIATE_UNLESS_PROPOSED
    return True, LazyNegotiatedStream(stream, protocol, header_read=header_read)
