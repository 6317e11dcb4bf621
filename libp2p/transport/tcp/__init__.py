"""TCP transport on trio, with the port reuse that TCP hole punching depends on.

Why not :func:`trio.open_tcp_stream`? It binds every outgoing connection to a fresh ephemeral
port, and trio's listeners set only ``SO_REUSEADDR``. For NAT traversal the connection to the
relay *and* the hole punch itself must leave from the port we listen on: that is the port the
NAT mapped, the port identify reports back to us, and the port the other peer will aim at. So
this module builds its sockets itself:

* listeners set ``SO_REUSEADDR`` and ``SO_REUSEPORT`` and bind the requested address, after
  checking that no other socket listens there (``SO_REUSEPORT`` would otherwise let a second
  process share the port silently);
* an outgoing dial, when a listener of the same address family exists, sets the same options,
  binds the listener's address and port, then connects. If the kernel refuses that bind or the
  connect for reasons tied to the shared port (the same 4-tuple already in use, the listen IP
  cannot reach the target), the dial is retried once from an ephemeral port;
* every stream has ``TCP_NODELAY`` set.

OS errors are mapped here, once: failures to listen or connect raise
:class:`~libp2p.exceptions.TransportError`, and every connected socket is handed out as a
:class:`TcpStream`, whose reads and writes raise :class:`~libp2p.exceptions.ConnectionBrokenError`
when the connection is reset or broken. Nothing above this module sees a raw ``OSError`` or
trio's ``BrokenResourceError`` from a socket.
"""

from __future__ import annotations

import errno
import ipaddress
import socket as _stdsocket
import threading
import time
from collections.abc import Callable

import trio
from multiaddr import Multiaddr

from ...exceptions import (
    ConnectionBrokenError,
    ConnectionRefused,
    LocalUsageError,
    TransportError,
)

__all__ = [
    "TcpListener",
    "TcpStream",
    "TcpTransport",
    "parse_tcp_multiaddr",
    "sockaddr_to_multiaddr",
]

# errnos after which a dial from the shared listen port is retried from an ephemeral port.
_RETRY_UNBOUND = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EINVAL, errno.ENETUNREACH}


class _TcpAddr:
    __slots__ = ("family", "host", "port")

    def __init__(self, family: int, host: str, port: int) -> None:
        self.family = family
        self.host = host
        self.port = port


def parse_tcp_multiaddr(maddr: Multiaddr) -> tuple[int, str, int]:
    """Return ``(family, ip, port)`` for ``/ip4|ip6/<ip>/tcp/<port>[/p2p/<id>]``.

    Raises :class:`LocalUsageError` for any other shape.
    """
    parts = list(maddr.items())
    if len(parts) >= 2 and parts[0][0].name in ("ip4", "ip6") and parts[1][0].name == "tcp":
        rest = parts[2:]
        if all(p.name == "p2p" for p, _ in rest) and len(rest) <= 1:
            family = _stdsocket.AF_INET if parts[0][0].name == "ip4" else _stdsocket.AF_INET6
            return family, str(parts[0][1]), int(parts[1][1])
    raise LocalUsageError(f"not a TCP multiaddr: {maddr}")


def sockaddr_to_multiaddr(family: int, sockaddr: tuple[object, ...]) -> Multiaddr:
    """Convert a socket address to ``/ip4|ip6/<ip>/tcp/<port>``."""
    host, port = str(sockaddr[0]), int(str(sockaddr[1]))
    if family == _stdsocket.AF_INET6:
        ip = ipaddress.IPv6Address(host.split("%", 1)[0])
        if ip.ipv4_mapped is not None:
            return Multiaddr(f"/ip4/{ip.ipv4_mapped}/tcp/{port}")
        return Multiaddr(f"/ip6/{ip}/tcp/{port}")
    return Multiaddr(f"/ip4/{host}/tcp/{port}")


def _set_reuse(sock: trio.socket.SocketType | _stdsocket.socket) -> None:
    """Options of a socket that shares the listen port (IPv6 ones stay IPv6-only, as the
    listener is)."""
    sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
    sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
    if sock.family == _stdsocket.AF_INET6:
        sock.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY, 1)


async def _check_port_free(maddr: Multiaddr, family: int, host: str, port: int) -> None:
    """Raise :class:`TransportError` when another socket already listens on ``host:port``.

    Our listeners set ``SO_REUSEPORT`` so that dials can leave from the listen port; but with
    it, a second process listening on the same port also succeeds, and the kernel then splits
    incoming connections between the two. A probe bound *without* ``SO_REUSEPORT`` (with
    ``SO_REUSEADDR``, so that connections of an earlier run in TIME_WAIT don't count) fails
    exactly when a listening socket holds the port.
    """
    probe = trio.socket.socket(family, _stdsocket.SOCK_STREAM)
    try:
        probe.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
        if family == _stdsocket.AF_INET6:
            probe.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY, 1)
        await probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise TransportError(
                f"cannot listen on {maddr}: {exc.strerror} (another socket listens there)"
            ) from exc
        raise TransportError(f"cannot listen on {maddr}: {exc.strerror or exc}") from exc
    finally:
        probe.close()


class TcpStream(trio.abc.HalfCloseableStream):
    """A connected TCP socket: a trio stream whose failures are libp2p errors.

    Wraps a :class:`trio.SocketStream`. Its addresses are read once, when it is created (a peer
    that resets at once makes ``getpeername`` fail later); a connection reset before that is
    reported by :meth:`wrap` as a :class:`ConnectionBrokenError`.
    """

    __slots__ = ("_stream", "local_addr", "remote_addr")

    def __init__(self, stream: trio.SocketStream, local: Multiaddr, remote: Multiaddr) -> None:
        self._stream = stream
        #: Our end of the connection, ``/ip4|ip6/<ip>/tcp/<port>``.
        self.local_addr = local
        #: The peer's end of the connection.
        self.remote_addr = remote

    @classmethod
    def wrap(cls, stream: trio.SocketStream) -> TcpStream:
        """Wrap a connected socket stream (closing it if its addresses cannot be read)."""
        sock = stream.socket
        try:
            local = sockaddr_to_multiaddr(sock.family, sock.getsockname())
            remote = sockaddr_to_multiaddr(sock.family, sock.getpeername())
        except OSError as exc:
            sock.close()
            raise ConnectionBrokenError(
                f"connection failed as it opened: {exc.strerror or exc}"
            ) from exc
        return cls(stream, local, remote)

    @property
    def socket(self) -> trio.socket.SocketType:
        """The underlying socket."""
        return self._stream.socket

    def _broken(self, exc: BaseException) -> ConnectionBrokenError:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        return ConnectionBrokenError(f"connection to {self.remote_addr} broken: {detail}")

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            return await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, OSError) as exc:
            raise self._broken(exc) from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, OSError) as exc:
            raise self._broken(exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        try:
            await self._stream.wait_send_all_might_not_block()
        except (trio.BrokenResourceError, OSError) as exc:
            raise self._broken(exc) from exc

    async def send_eof(self) -> None:
        try:
            await self._stream.send_eof()
        except (trio.BrokenResourceError, OSError) as exc:
            raise self._broken(exc) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """Set a socket option (see :meth:`trio.SocketStream.setsockopt`)."""
        self._stream.setsockopt(level, option, value)


class TcpListener:
    """A listening TCP socket; :meth:`accept` returns connected :class:`TcpStream`."""

    def __init__(self, listener: trio.SocketListener, family: int) -> None:
        self._listener = listener
        self.family = family
        sockaddr = listener.socket.getsockname()
        self._addr = _TcpAddr(family, str(sockaddr[0]), int(sockaddr[1]))

    @property
    def multiaddr(self) -> Multiaddr:
        """The bound address, with the real port when port 0 was requested."""
        return sockaddr_to_multiaddr(self.family, (self._addr.host, self._addr.port))

    @property
    def port(self) -> int:
        """The bound port."""
        return self._addr.port

    @property
    def host(self) -> str:
        """The bound IP address (may be the unspecified address)."""
        return self._addr.host

    async def accept(self) -> TcpStream:
        """Wait for the next inbound connection.

        Raises :class:`ConnectionBrokenError` for a connection that was reset before it could
        be handed out (accept again), :class:`TransportError` when the listener failed.
        """
        try:
            stream = await self._listener.accept()
        except OSError as exc:  # pragma: no cover - e.g. EMFILE; trio retries most others
            raise TransportError(f"accept failed on {self.multiaddr}: {exc}") from exc
        return TcpStream.wrap(stream)

    async def aclose(self) -> None:
        """Stop listening."""
        await self._listener.aclose()


class TcpTransport:
    """Dials and listens on TCP multiaddrs, reusing the listen port for outgoing dials."""

    def __init__(self, *, reuse_port: bool = True, backlog: int = 128) -> None:
        self.reuse_port = reuse_port
        self.backlog = backlog
        self._listeners: list[TcpListener] = []
        # Threads for punch dials, apart from trio's default pool: a hole punch may dial up
        # to 20 addresses at once, each blocking in connect until its SYN is answered.
        self._punch_threads = trio.CapacityLimiter(128)

    @staticmethod
    def can_dial(maddr: Multiaddr) -> bool:
        """True when ``maddr`` is a plain TCP address (optionally with ``/p2p``)."""
        try:
            parse_tcp_multiaddr(maddr)
        except LocalUsageError:
            return False
        return True

    @property
    def listeners(self) -> list[TcpListener]:
        """Active listeners, in the order they were opened."""
        return list(self._listeners)

    async def dial_ephemeral(self, maddr: Multiaddr) -> TcpStream:
        """Connect to ``maddr`` from a fresh ephemeral port, never from a listen port.

        For AutoNAT dial-backs: leaving from the listen port could reproduce the 4-tuple, or
        ride the NAT mapping, of a connection the peer already has, and falsely prove the
        peer reachable.
        """
        family, host, port = parse_tcp_multiaddr(maddr)
        return await self._connect_or_raise(maddr, family, host, port, None)

    async def listen(self, maddr: Multiaddr) -> TcpListener:
        """Open a listener on ``maddr`` (port 0 picks a free port)."""
        family, host, port = parse_tcp_multiaddr(maddr)
        if port and self.reuse_port:
            await _check_port_free(maddr, family, host, port)
        sock = trio.socket.socket(family, _stdsocket.SOCK_STREAM)
        try:
            if self.reuse_port:
                _set_reuse(sock)
            else:
                sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
            if family == _stdsocket.AF_INET6:
                sock.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY, 1)
            await sock.bind((host, port))
            sock.listen(self.backlog)
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot listen on {maddr}: {exc.strerror or exc}") from exc
        listener = TcpListener(trio.SocketListener(sock), family)
        self._listeners.append(listener)
        return listener

    async def close_listener(self, listener: TcpListener) -> None:
        """Close one listener and stop reusing its port."""
        if listener in self._listeners:
            self._listeners.remove(listener)
        await listener.aclose()

    def _bind_source(self, family: int) -> tuple[str, int] | None:
        if not self.reuse_port:
            return None
        for listener in self._listeners:
            if listener.family == family:
                return listener.host, listener.port
        return None

    async def dial(self, maddr: Multiaddr, *, reuse_only: bool = False) -> TcpStream:
        """Connect to ``maddr``; leaves from a listen port when one exists for the family.

        ``reuse_only`` (for hole punching) never falls back to an ephemeral port: a dial
        from any other port would be useless to the punch, and a failure says so.
        """
        family, host, port = parse_tcp_multiaddr(maddr)
        source = self._bind_source(family)
        if reuse_only:
            if source is None:
                raise TransportError(f"dial {maddr}: no listener to reuse the port of")
            return await self._connect_or_raise(maddr, family, host, port, source)
        if source is not None:
            try:
                return await self._connect(family, host, port, source)
            except OSError as exc:
                if exc.errno not in _RETRY_UNBOUND:
                    raise TransportError(f"dial {maddr} failed: {exc.strerror or exc}") from exc
        return await self._connect_or_raise(maddr, family, host, port, None)

    async def dial_punch(
        self,
        maddr: Multiaddr,
        *,
        within: float,
        silence: float,
        pause_after_refusal: Callable[[int, float], float | None],
    ) -> TcpStream:
        """Hole punching's dial: from the listen port, again and again, for ``within`` seconds.

        A refused SYN (RST or ICMP) is dialed again after ``pause_after_refusal(refusals,
        seconds the refused dial took)`` seconds, until it returns None; a SYN that got no
        answer within ``silence`` seconds is dialed again at once (closing a socket in
        SYN-SENT sends nothing, so the NAT mapping it opened stays; a SYN dropped as invalid
        by a router would otherwise wait for the kernel's one-second retransmission).

        The loop runs in a worker thread with blocking sockets: a refusal and the next SYN
        then take tens of microseconds instead of the event loop's milliseconds, which is
        what makes two punches meet at round trips of microseconds (two SYNs pass each
        other's NAT only when they leave less than one one-way trip apart). Raises
        :class:`ConnectionRefused` when ``pause_after_refusal`` gave up, and
        :class:`TransportError` when the time ran out or the dial failed otherwise.
        """
        family, host, port = parse_tcp_multiaddr(maddr)
        source = self._bind_source(family)
        if source is None:
            raise TransportError(f"dial {maddr}: no listener to reuse the port of")
        abandoned = threading.Event()

        def loop() -> _stdsocket.socket:
            deadline = time.monotonic() + within
            refusals = silences = 0
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or abandoned.is_set():
                    raise TransportError(
                        f"dial {maddr}: no connection within {within:.1f} s "
                        f"({refusals} SYNs refused, {silences} unanswered)"
                    )
                sock = _stdsocket.socket(family, _stdsocket.SOCK_STREAM)
                try:
                    _set_reuse(sock)
                    sock.bind(source)
                    sock.settimeout(min(remaining, silence))
                    began = time.monotonic()
                    sock.connect((host, port))
                except ConnectionRefusedError as exc:
                    sock.close()
                    refusals += 1
                    pause = pause_after_refusal(refusals, time.monotonic() - began)
                    if pause is None:
                        raise ConnectionRefused(
                            f"dial {maddr}: refused {refusals} times ({silences} SYNs unanswered)"
                        ) from exc
                    if pause > 0:
                        time.sleep(pause)
                    continue
                except TimeoutError:
                    sock.close()
                    silences += 1
                    continue
                except OSError as exc:
                    sock.close()
                    raise TransportError(f"dial {maddr} failed: {exc.strerror or exc}") from exc
                if abandoned.is_set():  # nobody waits for it any more
                    sock.close()
                    raise TransportError(f"dial {maddr}: abandoned")
                sock.setblocking(False)
                return sock

        try:
            connected = await trio.to_thread.run_sync(
                loop, abandon_on_cancel=True, limiter=self._punch_threads
            )
        finally:
            abandoned.set()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(connected))
        stream.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        return TcpStream.wrap(stream)

    @classmethod
    async def _connect_or_raise(
        cls, maddr: Multiaddr, family: int, host: str, port: int, source: tuple[str, int] | None
    ) -> TcpStream:
        """:meth:`_connect`, with an OS error mapped to a :class:`TransportError`."""
        try:
            return await cls._connect(family, host, port, source)
        except OSError as exc:
            detail = f"dial {maddr} failed: {exc.strerror or exc}"
            if exc.errno == errno.ECONNREFUSED:
                raise ConnectionRefused(detail) from exc
            raise TransportError(detail) from exc

    @staticmethod
    async def _connect(
        family: int, host: str, port: int, source: tuple[str, int] | None
    ) -> TcpStream:
        sock = trio.socket.socket(family, _stdsocket.SOCK_STREAM)
        try:
            if source is not None:
                _set_reuse(sock)
                await sock.bind(source)
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        stream = trio.SocketStream(sock)
        stream.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        return TcpStream.wrap(stream)
