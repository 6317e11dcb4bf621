"""RESP2, the Redis wire format, as an I/O-free encoder and incremental decoder.

The libp2p test-plans suites coordinate their peers through a Redis server (a relay pushes its
address, a listener its peer ID, the others block on them). Two commands are all that takes, so
rather than a Redis client dependency this module speaks the protocol itself; ``redis.py`` is
the thin trio driver around it.

A command goes out as an array of bulk strings (``*2\\r\\n$4\\r\\nPING\\r\\n...``). A reply is
one of five RESP2 types, told apart by their first byte:

``+`` simple string (:class:`SimpleString`), ``-`` error (:class:`ErrorReply`), ``:`` integer
(``int``), ``$`` bulk string (``bytes``, or ``None`` for the null bulk ``$-1``) and ``*``
array (``list``, or ``None`` for the null array ``*-1``, which BLPOP answers on a timeout).

:class:`RespParser` takes bytes as they arrive (:meth:`~RespParser.feed`) and hands out whole
replies (:meth:`~RespParser.next_reply`). It is strict: anything else than the grammar above
raises :class:`RespDecodeError`, and every size is bounded (line length, bulk length, array
length, nesting depth, bytes buffered for one reply): a server cannot make it allocate without
limit. Those limits raise :class:`RespTooLarge`. Both are errors of the server's making
(``RemoteProtocolError``); after one the parser is unusable (:attr:`RespParser.failed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..exceptions import DecodeError, LocalUsageError, MessageTooLarge

__all__ = [
    "NEED_DATA",
    "ErrorReply",
    "NeedData",
    "Reply",
    "RespDecodeError",
    "RespParser",
    "RespTooLarge",
    "SimpleString",
    "encode_command",
]

#: A line (a simple string, an error, an integer or a length header) longer than this without
#: its CRLF is refused.
MAX_LINE: Final = 64 * 1024
#: Largest bulk string accepted (a peer ID or a multiaddr is well under 1 KiB).
MAX_BULK: Final = 1024 * 1024
#: Most elements in one array.
MAX_ARRAY: Final = 1024
#: Deepest nesting of arrays.
MAX_DEPTH: Final = 8
#: Most bytes buffered while one reply is incomplete.
MAX_BUFFER: Final = 4 * 1024 * 1024

_CRLF: Final = b"\r\n"
_TYPES: Final = frozenset(b"+-:$*")


class RespDecodeError(DecodeError):
    """The server's bytes are not RESP2: unknown type byte, bad number, missing CRLF ..."""


class RespTooLarge(MessageTooLarge):
    """A reply from the server goes beyond one of :class:`RespParser`'s size limits."""


@dataclass(frozen=True, slots=True)
class SimpleString:
    """A ``+`` reply, such as ``OK`` or ``PONG``."""

    text: str


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A ``-`` reply: the server refused the command (``ERR ...``, ``WRONGTYPE ...``)."""

    text: str


#: A decoded reply.
Reply = SimpleString | ErrorReply | int | bytes | None | list["Reply"]


class NeedData:
    """The type of :data:`NEED_DATA`."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`RespParser.next_reply` while no whole reply is buffered.
NEED_DATA: Final = NeedData()


def encode_command(*args: str | bytes | int) -> bytes:
    """One command as RESP2: an array of bulk strings (``str`` as UTF-8, ``int`` in decimal)."""
    if not args:
        raise LocalUsageError("a Redis command needs at least its name")
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bool):  # bool is an int: refuse it rather than send "True"
            raise LocalUsageError("a Redis argument is str, bytes or int, not bool")
        if isinstance(arg, int):
            data = b"%d" % arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes | bytearray | memoryview):
            data = bytes(arg)
        else:
            raise LocalUsageError(f"a Redis argument is str, bytes or int, not {type(arg)!r}")
        parts += [b"$%d\r\n" % len(data), data, _CRLF]
    return b"".join(parts)


class _Incomplete(Exception):
    """Not enough bytes buffered yet for the reply."""


class RespParser:
    """Incremental RESP2 reply decoder; see the module docstring.

    ``feed(data)`` appends received bytes; ``next_reply()`` returns the next whole reply, or
    :data:`NEED_DATA`. Limits are keyword arguments (the module's ``MAX_*`` by default).
    """

    def __init__(
        self,
        *,
        max_line: int = MAX_LINE,
        max_bulk: int = MAX_BULK,
        max_array: int = MAX_ARRAY,
        max_depth: int = MAX_DEPTH,
        max_buffer: int = MAX_BUFFER,
    ) -> None:
        self.max_line = max_line
        self.max_bulk = max_bulk
        self.max_array = max_array
        self.max_depth = max_depth
        self.max_buffer = max_buffer
        self._buf = bytearray()
        #: The error that broke the stream, once one did; the parser then refuses to go on
        #: (the bytes after a bad reply cannot be trusted to start a reply).
        self.failed: RespDecodeError | RespTooLarge | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as replies."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""
        self._buf += data

    def next_reply(self) -> Reply | NeedData:
        """The next whole reply, or :data:`NEED_DATA`.

        Raises :class:`RespDecodeError` or :class:`RespTooLarge` (and again on every later
        call) when the buffered bytes break the protocol or its limits.
        """
        if self.failed is not None:
            raise self.failed
        try:
            try:
                reply, end = self._parse(0, 0)
            except _Incomplete:
                if len(self._buf) > self.max_buffer:
                    raise RespTooLarge(
                        f"Redis reply: more than {self.max_buffer} bytes buffered for one reply"
                    ) from None
                return NEED_DATA
        except (RespDecodeError, RespTooLarge) as exc:
            self.failed = exc
            raise
        del self._buf[:end]
        return reply

    # -- the grammar; each returns (value, position after it) or raises _Incomplete

    def _line(self, pos: int) -> tuple[bytes, int]:
        """The bytes from ``pos`` to the next CRLF (excluded), and the position after it."""
        end = self._buf.find(_CRLF, pos, pos + self.max_line + 2)
        if end < 0:
            if len(self._buf) - pos > self.max_line + 1:
                raise RespTooLarge(f"Redis reply: a line longer than {self.max_line} bytes")
            raise _Incomplete
        line = bytes(self._buf[pos:end])
        if b"\r" in line or b"\n" in line:
            raise RespDecodeError("Redis reply: a bare CR or LF inside a line")
        return line, end + 2

    @staticmethod
    def _integer(text: bytes, what: str) -> int:
        digits = text[1:] if text[:1] == b"-" else text
        # int() alone would take "+5", " 5", "5_0" and non-ASCII digits; RESP allows none.
        if not digits or not digits.isdigit() or not digits.isascii() or len(digits) > 19:
            raise RespDecodeError(f"Redis reply: {what} is not an integer: {text[:40]!r}")
        return int(text)

    def _parse(self, pos: int, depth: int) -> tuple[Reply, int]:
        if pos >= len(self._buf):
            raise _Incomplete
        kind = self._buf[pos]
        if kind not in _TYPES:  # refuse at once, before waiting for a CRLF that may not come
            raise RespDecodeError(f"Redis reply: unknown type byte {bytes([kind])!r}")
        line, after = self._line(pos + 1)
        if kind == ord("+"):
            return SimpleString(self._text(line)), after
        if kind == ord("-"):
            return ErrorReply(self._text(line)), after
        if kind == ord(":"):
            return self._integer(line, "an integer reply"), after
        if kind == ord("$"):
            length = self._integer(line, "a bulk length")
            if length == -1:
                return None, after
            if length < 0:
                raise RespDecodeError(f"Redis reply: bulk length {length}")
            if length > self.max_bulk:
                raise RespTooLarge(
                    f"Redis reply: a bulk string of {length} bytes (limit {self.max_bulk})"
                )
            end = after + length
            if len(self._buf) < end + 2:
                raise _Incomplete
            if self._buf[end : end + 2] != _CRLF:
                raise RespDecodeError("Redis reply: a bulk string not followed by CRLF")
            return bytes(self._buf[after:end]), end + 2
        if kind == ord("*"):
            count = self._integer(line, "an array length")
            if count == -1:
                return None, after
            if count < 0:
                raise RespDecodeError(f"Redis reply: array length {count}")
            if count > self.max_array:
                raise RespTooLarge(
                    f"Redis reply: an array of {count} elements (limit {self.max_array})"
                )
            if depth >= self.max_depth:
                raise RespTooLarge(f"Redis reply: arrays nested deeper than {self.max_depth}")
            items: list[Reply] = []
            for _ in range(count):
                item, after = self._parse(after, depth + 1)
                items.append(item)
            return items, after
        raise AssertionError("unreachable: kind was checked against _TYPES")

    @staticmethod
    def _text(line: bytes) -> str:
        try:
            return line.decode()
        except UnicodeDecodeError:
            raise RespDecodeError(
                f"Redis reply: a status line is not UTF-8: {line[:40]!r}"
            ) from None
