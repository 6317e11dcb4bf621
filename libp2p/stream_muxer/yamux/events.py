"""Events returned by the sans-I/O core (:class:`~.connection.YamuxConnection`).

The core turns received bytes into these typed, immutable events; the trio driver turns them
into wake-ups of the tasks that wait on streams, pings and the accept queue. Frames that need
an answer (Ping requests, refused streams, window updates) are answered by the core itself:
the reply bytes are already queued when the event is returned.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any, ClassVar

__all__ = [
    "DataReceived",
    "GoAwayReceived",
    "PingAcknowledged",
    "PingReceived",
    "SendWindowUpdated",
    "StreamAborted",
    "StreamAcknowledged",
    "StreamEnded",
    "StreamOpened",
    "YamuxEvent",
]


# Each event would naturally be a ``@dataclass(frozen=True, slots=True)``, but building nine of
# them costs ~3 ms of ``import libp2p`` (dataclasses compiles every generated method). These
# hand-written classes behave the same -- same constructor, attributes, ``__match_args__``,
# equality, hash, repr and immutability (``FrozenInstanceError``), picklable -- except that
# the ``dataclasses`` helpers (``fields``, ``replace``, ``asdict``) do not apply to them.

_set = object.__setattr__


class _Event:
    """Value semantics shared by the events; fields are the subclass's ``__match_args__``."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self.__match_args__])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__ and isinstance(other, _Event):
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__qualname__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type[_Event], tuple[Any, ...]]:
        return type(self), self._values()


class StreamOpened(_Event):
    """The peer opened a stream (SYN). It waits in the accept backlog until accepted."""

    __slots__ = ("stream_id",)
    __match_args__ = ("stream_id",)

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        _set(self, "stream_id", stream_id)


class StreamAcknowledged(_Event):
    """The peer accepted (ACK) a stream we opened; it no longer counts in the ACK backlog."""

    __slots__ = ("stream_id",)
    __match_args__ = ("stream_id",)

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        _set(self, "stream_id", stream_id)


class DataReceived(_Event):
    """Payload bytes for a stream. Call ``acknowledge_received`` once they are consumed."""

    __slots__ = ("data", "stream_id")
    __match_args__ = ("stream_id", "data")

    stream_id: int
    data: bytes

    def __init__(self, stream_id: int, data: bytes) -> None:
        _set(self, "stream_id", stream_id)
        _set(self, "data", data)


class StreamEnded(_Event):
    """The peer half-closed the stream (FIN): no more data will arrive on it.

    Also reported for a stream the application already closed (``aclose``), whose record
    the driver can then drop: with our FIN sent too, the stream is over.
    """

    __slots__ = ("stream_id",)
    __match_args__ = ("stream_id",)

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        _set(self, "stream_id", stream_id)


class StreamAborted(_Event):
    """The stream was reset, by the peer's RST or by the core after a peer violation.

    ``error_code`` is the code a go-yamux >= v5 peer put in a WindowUpdate|RST (usually 0).
    """

    __slots__ = ("by_remote", "error_code", "reason", "stream_id")
    __match_args__ = ("stream_id", "error_code", "by_remote", "reason")

    stream_id: int
    error_code: int
    by_remote: bool
    reason: str

    def __init__(self, stream_id: int, error_code: int, by_remote: bool, reason: str) -> None:
        _set(self, "stream_id", stream_id)
        _set(self, "error_code", error_code)
        _set(self, "by_remote", by_remote)
        _set(self, "reason", reason)


class SendWindowUpdated(_Event):
    """The peer granted more send window on a stream."""

    __slots__ = ("stream_id", "window")
    __match_args__ = ("stream_id", "window")

    stream_id: int
    window: int

    def __init__(self, stream_id: int, window: int) -> None:
        _set(self, "stream_id", stream_id)
        _set(self, "window", window)


class PingReceived(_Event):
    """The peer pinged us; the reply is already queued."""

    __slots__ = ("opaque",)
    __match_args__ = ("opaque",)

    opaque: int

    def __init__(self, opaque: int) -> None:
        _set(self, "opaque", opaque)


class PingAcknowledged(_Event):
    """The peer answered one of our pings after ``rtt`` seconds."""

    __slots__ = ("opaque", "rtt")
    __match_args__ = ("opaque", "rtt")

    opaque: int
    rtt: float

    def __init__(self, opaque: int, rtt: float) -> None:
        _set(self, "opaque", opaque)
        _set(self, "rtt", rtt)


class GoAwayReceived(_Event):
    """The peer will accept no new streams. Existing streams continue."""

    __slots__ = ("code",)
    __match_args__ = ("code",)

    code: int

    def __init__(self, code: int) -> None:
        _set(self, "code", code)


YamuxEvent = (
    StreamOpened
    | StreamAcknowledged
    | DataReceived
    | StreamEnded
    | StreamAborted
    | SendWindowUpdated
    | PingReceived
    | PingAcknowledged
    | GoAwayReceived
)
