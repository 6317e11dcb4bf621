"""The hostile-peer harness: a host under test, a peer that misbehaves, and the four checks.

Every case of this tier runs inside :func:`hostile_case`, which

1. starts the **host under test** (short timeouts, so a stalling peer costs about a second)
   and a **well-behaved peer** connected to it, with an echo stream that moves a known byte
   pattern back and forth for as long as the case runs;
2. takes a **snapshot** of what the host holds: trio tasks in its nursery tree, open file
   descriptors of this process (``/proc/self/fd``), live connections, yamux streams,
   inbound upgrades and pending dials;
3. lets the test play the hostile peer (the helpers below) and check that the operation it
   broke failed with a typed :mod:`libp2p.exceptions` error (:meth:`Case.fails`);
4. then checks, in order: (b) the echo stream got back every byte it sent, in order;
   (d) once the hostile peer is gone, the host returns to the snapshot (nothing leaked);
   (a) the host still dials a fresh peer and is dialed by one, and moves data with each; and
   finally that leaving the host's ``async with`` raises nothing. Any ERROR log line from
   the library (an exception that escaped a handler or a dial) fails the case too.

A failure of step (a) -- the host's nursery died, or its ``async with`` raised -- is a
:class:`HostCrashed`; the tier's summary (``conftest.py``) counts those as crashes.

The hostile peer is built from real loopback sockets (:class:`Wire`) and the library's own
I/O-free pieces, so that it speaks correctly up to the step where it misbehaves:
multistream-select messages (:func:`libp2p.multistream.encode_message`), the Noise
handshake core (:class:`EvilNoise`, over the library's ``Libp2pNoiseHandshake``),
Noise transport frames (:class:`~libp2p.security.noise.session.NoiseSession`), raw yamux frames
(:class:`RawYamux`, over :mod:`libp2p.stream_muxer.yamux.frame`), and for application
protocols a whole :class:`~libp2p.Host` whose handler for one protocol is replaced by a
script (:func:`evil_host`).
"""

from __future__ import annotations

import logging
import os
import socket as _socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from multiaddr import Multiaddr

from libp2p import Host, HostConfig
from libp2p.crypto.keys import PrivateKey, generate_ed25519
from libp2p.exceptions import Libp2pError
from libp2p.io import BufferedStream
from libp2p.multistream import PROTOCOL_ID as MULTISTREAM
from libp2p.multistream import encode_message, handle, select
from libp2p.network.connection import Connection, NetStream
from libp2p.peer.id import PeerID
from libp2p.security.noise.handshake import (
    SIGNATURE_PREFIX,
    HandshakePayload,
    Libp2pNoiseHandshake,
)
from libp2p.security.noise.session import NoiseSession
from libp2p.stream_muxer.yamux import HEADER, HEADER_SIZE, YamuxConfig
from libp2p.stream_muxer.yamux import PROTOCOL_ID as YAMUX

__all__ = [
    "FAST",
    "TIMEOUT",
    "Case",
    "EvilNoise",
    "HostCrashed",
    "RawYamux",
    "Wire",
    "evil_host",
    "hostile_case",
    "lp",
    "port_of",
]

#: Handshake and negotiation timeouts of the host under test: a stalling peer costs this.
TIMEOUT = 0.5
#: Bound on anything a case waits for that should happen "at once" (a CPU-starved CI box
#: may be slow, so this is generous; passing cases never wait for it).
PATIENCE = 10.0
#: How long the host may take to release everything after the hostile peer left (its own
#: timeouts are all shorter).
SETTLE = 3.0
#: A protocol of the well-behaved peer: echoes every byte back.
ECHO = "/hostile-test/echo/1.0.0"
#: The probe protocol a raw hostile peer waits for the host to propose.
PROBE = "/hostile-test/probe/1.0.0"


def fast_config(**changes: Any) -> HostConfig:
    """The host-under-test configuration: defaults, with every timeout short."""
    base: dict[str, Any] = {
        "dial_timeout": TIMEOUT,
        "accept_timeout": TIMEOUT,
        "yamux": YamuxConfig(
            max_inbound_streams=64,
            accept_backlog=32,
            ping_timeout=2.0,
            close_timeout=0.5,
        ),
    }
    base.update(changes)
    return HostConfig(**base)


FAST = fast_config()


class HostCrashed(AssertionError):
    """The host under test died: its nursery failed, or its ``async with`` raised."""


def lp(body: bytes) -> bytes:
    """``uvarint(len(body)) || body``."""
    from libp2p.varint import encode_uvarint

    return encode_uvarint(len(body)) + body


def port_of(addr: Multiaddr) -> int:
    """The TCP port of ``/ip4/.../tcp/<port>``."""
    return int(str(addr).split("/tcp/")[1].split("/")[0])


# -- raw sockets ---------------------------------------------------------------------------------


class Wire:
    """The hostile peer's end of one TCP connection, with the ways it can misbehave."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.stream = trio.SocketStream(sock)
        #: Buffered reads (multistream and Noise helpers read through it).
        self.buf = BufferedStream(self.stream)
        self.closed = False

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def fin(self) -> None:
        """Half-close: FIN, keep reading."""
        await self.stream.send_eof()

    def rst(self) -> None:
        """Abort with an RST (SO_LINGER 0, then close)."""
        if self.closed:
            return
        self.closed = True
        self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await trio.aclose_forcefully(self.stream)

    async def until_host_closes(self, within: float = PATIENCE) -> None:
        """Stall: send nothing more and drain until the host gives up on us (EOF or RST).

        Fails the case if the host never closes (its timeouts do not bound this step).
        """
        with trio.fail_after(within):
            try:
                while await self.buf.receive_some(65536):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, Libp2pError, OSError):
                pass


@asynccontextmanager
async def hostile_listener(
    script: Callable[[Wire], Awaitable[None]],
) -> AsyncIterator[Multiaddr]:
    """A loopback TCP listener that runs ``script`` on every connection it accepts."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    addr = Multiaddr(f"/ip4/127.0.0.1/tcp/{listener.getsockname()[1]}")

    async def run(wire: Wire) -> None:
        try:
            await script(wire)
        finally:
            await wire.close()

    async def serve(nursery: trio.Nursery) -> None:
        while True:
            sock, _ = await listener.accept()
            nursery.start_soon(run, Wire(sock))

    try:
        async with _unwrapped(), trio.open_nursery() as nursery:
            nursery.start_soon(serve, nursery)
            yield addr
            nursery.cancel_scope.cancel()
    finally:
        listener.close()


async def hostile_dial(host: Host, script: Callable[[Wire], Awaitable[None]]) -> None:
    """Connect to the host's listener and run ``script`` on the connection."""
    sock = trio.socket.socket()
    try:
        await sock.connect(("127.0.0.1", port_of(host.listen_addrs[0])))
    except BaseException:
        sock.close()
        raise
    wire = Wire(sock)
    try:
        await script(wire)
    finally:
        await wire.close()


# -- multistream and Noise, spoken by the hostile peer --------------------------------------------


async def ms_respond(wire: Wire, protocol: str) -> None:
    """Answer a multistream negotiation for ``protocol`` correctly (as responder)."""
    await handle(wire.buf, (protocol,))


async def ms_propose(wire: Wire, protocol: str) -> None:
    """Negotiate ``protocol`` correctly as initiator."""
    await select(wire.buf, [protocol])


MS_HEADER = encode_message(MULTISTREAM)


class _Handshake(Libp2pNoiseHandshake):
    """The Noise core with a payload the hostile peer chooses."""

    payload: Callable[[bytes], bytes] | None = None

    def _our_payload(self) -> bytes:
        if self.payload is not None:
            return self.payload(self._noise.local_static_public)
        return super()._our_payload()


class EvilNoise:
    """One side of the libp2p Noise handshake, driven message by message over a :class:`Wire`.

    ``identity``: ``"own"`` (correct), ``"bad_sig"`` (claims our key, signature over the wrong
    static key), ``"other_key"`` (claims another peer's key, signed with ours) or
    ``"no_key"`` (empty identity key).
    """

    def __init__(
        self,
        wire: Wire,
        *,
        initiator: bool,
        key: PrivateKey | None = None,
        identity: str = "own",
        muxers: Sequence[str] = (YAMUX,),
    ) -> None:
        self.wire = wire
        self.key = key or generate_ed25519()
        self.peer_id = PeerID.from_public_key(self.key.public_key)
        self.hs = _Handshake(self.key, initiator=initiator, muxers=muxers)
        if identity != "own":
            self.hs.payload = self._payload(identity, tuple(muxers))

    def _payload(self, identity: str, muxers: tuple[str, ...]) -> Callable[[bytes], bytes]:
        key = self.key
        other = generate_ed25519()

        def build(static_public: bytes) -> bytes:
            if identity == "bad_sig":
                sig = key.sign(SIGNATURE_PREFIX + bytes(32))
                ident = key.public_key.serialize()
            elif identity == "other_key":
                sig = key.sign(SIGNATURE_PREFIX + static_public)
                ident = other.public_key.serialize()
            elif identity == "no_key":
                sig, ident = b"", b""
            else:  # pragma: no cover - a typo in a test
                raise ValueError(identity)
            return HandshakePayload(ident, sig, muxers).encode()

        return build

    def next_message(self) -> bytes:
        """Our next handshake message, unframed."""
        return self.hs.write_message()

    async def write(self, message: bytes | None = None) -> None:
        """Send our next message (or ``message``, a tampered one) with its length prefix."""
        if message is None:
            message = self.next_message()
        await self.wire.send(len(message).to_bytes(2, "big") + message)

    async def read(self) -> None:
        """Read and verify the host's next message."""
        length = int.from_bytes(await self.wire.buf.read_exactly(2), "big")
        self.hs.read_message(await self.wire.buf.read_exactly(length))

    async def complete(self) -> NoiseSession:
        """Finish the handshake correctly from wherever it stands; the encrypted session."""
        while not self.hs.complete:
            if self.hs.is_my_turn:
                await self.write()
            else:
                await self.read()
        return NoiseSession(self.wire.stream, self.hs.result(), self.wire.buf.take_buffered())


async def secure_as_responder(wire: Wire, **kwargs: Any) -> tuple[NoiseSession, EvilNoise]:
    """The host dialed us: multistream /noise, then a correct Noise handshake."""
    await ms_respond(wire, "/noise")
    noise = EvilNoise(wire, initiator=False, **kwargs)
    return await noise.complete(), noise


async def secure_as_initiator(wire: Wire, **kwargs: Any) -> tuple[NoiseSession, EvilNoise]:
    """We dialed the host: multistream /noise, then a correct Noise handshake."""
    await ms_propose(wire, "/noise")
    noise = EvilNoise(wire, initiator=True, **kwargs)
    return await noise.complete(), noise


# -- raw yamux ----------------------------------------------------------------------------------


@dataclass
class Frame:
    version: int
    type: int
    flags: int
    stream_id: int
    length: int
    payload: bytes = b""


class RawYamux:
    """Yamux frames written and read by hand over the hostile peer's Noise session.

    ``initiator`` is the hostile peer's yamux role (odd stream IDs when True).
    """

    def __init__(self, session: NoiseSession, *, initiator: bool) -> None:
        self.session = session
        self.buf = BufferedStream(session)
        self.next_id = 1 if initiator else 2
        #: Data received per stream ID.
        self.received: dict[int, bytearray] = {}
        self._claimed: set[int] = set()

    def new_id(self) -> int:
        sid = self.next_id
        self.next_id += 2
        return sid

    @staticmethod
    def frame(type_: int, flags: int, stream_id: int, length: int, *, version: int = 0) -> bytes:
        return HEADER.pack(version, type_, flags, stream_id, length)

    async def send(self, data: bytes) -> None:
        await self.session.send_all(data)

    async def send_frame(
        self, type_: int, flags: int, stream_id: int, length: int, payload: bytes = b"", **kw: Any
    ) -> None:
        await self.send(self.frame(type_, flags, stream_id, length, **kw) + payload)

    async def data(self, stream_id: int, payload: bytes, flags: int = 0) -> None:
        await self.send_frame(0, flags, stream_id, len(payload), payload)

    async def read_frame(self) -> Frame | None:
        """The next frame from the host, ``None`` at EOF."""
        try:
            header = await self.buf.read_exactly(HEADER_SIZE)
        except Libp2pError:
            return None
        frame = Frame(*HEADER.unpack(header))
        if frame.type == 0 and frame.length:
            frame.payload = await self.buf.read_exactly(frame.length)
            self.received.setdefault(frame.stream_id, bytearray()).extend(frame.payload)
        return frame

    async def wait_for_proposal(self, protocol: str = PROBE) -> int:
        """Read frames until the host proposes ``protocol`` on a new stream; its ID."""
        needle = protocol.encode()
        while True:
            frame = await self.read_frame()
            if frame is None:
                raise AssertionError(f"the host closed before proposing {protocol}")
            sid = frame.stream_id
            if (
                frame.type == 0
                and sid not in self._claimed
                and needle in self.received.get(sid, b"")
            ):
                self._claimed.add(sid)
                return sid

    async def accept_proposal(self, stream_id: int, protocol: str = PROBE) -> None:
        """ACK the host's stream and answer its multistream proposal with acceptance."""
        answer = MS_HEADER + encode_message(protocol)
        await self.send_frame(0, 0x2, stream_id, len(answer), answer)

    async def drain(self) -> None:
        """Read (and ignore) whatever the host sends until it closes."""
        while await self.read_frame() is not None:
            pass


async def yamux_over(wire: Wire, *, host_dials: bool, muxers: Sequence[str] = (YAMUX,)) -> RawYamux:
    """Secure ``wire`` correctly in the right role and hand back raw yamux framing."""
    if host_dials:
        session, _ = await secure_as_responder(wire, muxers=muxers)
    else:
        session, _ = await secure_as_initiator(wire, muxers=muxers)
    return RawYamux(session, initiator=not host_dials)


# -- application-level hostile peers ---------------------------------------------------------------


@asynccontextmanager
async def evil_host(
    handlers: dict[str, Callable[[NetStream], Awaitable[None]]] | None = None,
    config: HostConfig | None = None,
    *,
    listen: bool = True,
) -> AsyncIterator[Host]:
    """A real host of ours whose handlers for some protocols are hostile scripts."""
    addrs = ["/ip4/127.0.0.1/tcp/0"] if listen else []
    async with Host(listen=addrs, config=config or fast_config()) as peer:
        for protocol, handler in (handlers or {}).items():
            peer.set_stream_handler(protocol, handler, allow_limited=True)
        yield peer


def addr_of(host: Host) -> str:
    return f"{host.listen_addrs[0]}/p2p/{host.peer_id}"


# -- the checks ---------------------------------------------------------------------------------


def _tasks_in(nursery: trio.Nursery) -> int:
    count = 0
    for task in nursery.child_tasks:
        count += 1
        for child in task.child_nurseries:
            count += _tasks_in(child)
    return count


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass(frozen=True)
class Snapshot:
    tasks: int
    fds: int
    connections: frozenset[int]
    streams: int
    inbound_upgrades: int
    pending_dials: int

    @classmethod
    def of(cls, host: Host) -> Snapshot:
        conns = host.connections
        return cls(
            tasks=_tasks_in(host.nursery),
            fds=_fds(),
            connections=frozenset(id(c) for c in conns),
            streams=sum(c._up.muxer.num_streams for c in conns),
            inbound_upgrades=host.swarm._inbound,
            pending_dials=len(host.swarm._pending),
        )

    def diff(self, other: Snapshot) -> str:
        """What ``other`` (taken after a case) holds that this baseline did not; empty when
        nothing leaked. File descriptors count only when there are more: one that a
        background task of the host (an AutoNAT check, a dial) held at the baseline and
        closed since is no leak."""
        parts = []
        for name in ("tasks", "fds", "streams", "inbound_upgrades", "pending_dials"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b and not (name == "fds" and b < a):
                parts.append(f"{name}: {a} before, {b} after")
        if self.connections != other.connections:
            parts.append(
                f"connections: {len(self.connections)} before, {len(other.connections)} after"
            )
        return "; ".join(parts)


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _Echo:
    """A stream to the well-behaved peer carrying a known byte pattern both ways."""

    CHUNK = 4096

    def __init__(self, stream: NetStream) -> None:
        self.stream = stream
        self.sent = 0
        self.received = bytearray()
        self.stop = trio.Event()
        self.finished = trio.Event()
        self.error: BaseException | None = None

    @staticmethod
    def pattern(start: int, n: int) -> bytes:
        return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(start, start + n))

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await self._pump()
        except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.error = exc
        finally:
            self.finished.set()

    async def _pump(self) -> None:
        while not self.stop.is_set():
            chunk = self.pattern(self.sent, self.CHUNK)
            await self.stream.send_all(chunk)
            self.sent += len(chunk)
            while len(self.received) < self.sent:
                self.received += await self.stream.receive_some(65536)
            # Pace the traffic (one round trip per millisecond at most): it only has to be
            # in flight while the case runs, not to load a 2-core machine.
            await trio.sleep(0.001)
        await self.stream.send_eof()
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                break
            self.received += data
        await self.stream.aclose()

    def check(self) -> None:
        assert self.error is None, f"the echo stream failed: {self.error!r}"
        assert self.sent > 0
        assert len(self.received) == self.sent, (
            f"echo stream lost data: sent {self.sent}, got back {len(self.received)}"
        )
        assert bytes(self.received) == self.pattern(0, self.sent), "echo stream corrupted data"


async def _serve_echo(stream: NetStream) -> None:
    while True:
        data = await stream.receive_some(65536)
        if not data:
            break
        await stream.send_all(data)
    await stream.aclose()


@dataclass
class Case:
    """What a test body gets: the host under test and helpers to fail it."""

    host: Host
    good: Host
    good_conn: Connection
    nursery: trio.Nursery
    errors: list[BaseException] = field(default_factory=list)

    @property
    def addr(self) -> str:
        """The host's address with its peer ID."""
        return addr_of(self.host)

    async def fails(
        self,
        expected: type[BaseException] | tuple[type[BaseException], ...],
        fn: Callable[[], Awaitable[object]],
    ) -> BaseException:
        """Run ``fn``; it must raise a :class:`Libp2pError` of the ``expected`` type."""
        try:
            result = await fn()
        except Libp2pError as exc:
            if not isinstance(exc, expected):
                raise AssertionError(
                    f"expected {_names(expected)}, got {type(exc).__name__}: {exc}"
                ) from exc
            self.errors.append(exc)
            return exc
        except BaseException as exc:
            if isinstance(exc, trio.Cancelled):
                raise
            raise AssertionError(
                f"expected {_names(expected)}, got an untyped {type(exc).__name__}: {exc!r}"
            ) from exc
        raise AssertionError(f"expected {_names(expected)}, but it succeeded: {result!r}")

    async def dials(self, script: Callable[[Wire], Awaitable[None]]) -> None:
        """Play a peer that dials the host and runs ``script`` on the connection."""
        await hostile_dial(self.host, script)

    def listener(
        self, script: Callable[[Wire], Awaitable[None]]
    ) -> Any:  # an async context manager yielding the listen address
        """A hostile listener for the host to dial (``async with case.listener(s) as addr``)."""
        return hostile_listener(script)


def _names(expected: type[BaseException] | tuple[type[BaseException], ...]) -> str:
    if isinstance(expected, tuple):
        return " or ".join(t.__name__ for t in expected)
    return expected.__name__


async def _settle(host: Host, baseline: Snapshot) -> Snapshot:
    """Wait until the host is back at ``baseline`` (or :data:`PATIENCE` passed).

    Cleanup has no single event to wait on (sockets close, tasks end, timers fire), so this
    waits until every task is blocked, compares, and repeats; a case that leaks nothing
    passes at the first comparison that follows the host's own cleanup.
    """
    now = Snapshot.of(host)
    with trio.move_on_after(SETTLE):
        while baseline.diff(now):
            await trio.testing.wait_all_tasks_blocked(cushion=0.02)
            now = Snapshot.of(host)
    return now


async def _still_works(host: Host) -> None:
    """(a) The host dials a fresh peer and is dialed by one, and moves data with each."""
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as fresh:
        fresh.set_stream_handler(ECHO, _serve_echo)
        host.set_stream_handler(ECHO, _serve_echo)
        with trio.fail_after(PATIENCE):
            conn = await host.connect(addr_of(fresh))
            for opener, peer in ((host, fresh.peer_id), (fresh, host.peer_id)):
                stream = await opener.new_stream(peer, ECHO)
                await stream.send_all(b"still alive")
                await stream.send_eof()
                got = b""
                while chunk := await stream.receive_some():
                    got += chunk
                assert got == b"still alive"
                await stream.aclose()
            await conn.aclose()
            for gone in fresh.connections_to(host.peer_id):
                await gone.wait_closed()
            # And the other way round: the fresh peer dials the host.
            back = await fresh.connect(addr_of(host))
            stream = await fresh.new_stream(host.peer_id, ECHO)
            await stream.send_all(b"dialed")
            await stream.send_eof()
            got = b""
            while chunk := await stream.receive_some():
                got += chunk
            assert got == b"dialed"
            await back.aclose()
        host.remove_stream_handler(ECHO)


@asynccontextmanager
async def hostile_case(config: HostConfig | None = None) -> AsyncIterator[Case]:
    """Run one hostile case; see the module docstring for what is checked on exit."""
    errors = _ErrorLog()
    logging.getLogger("libp2p").addHandler(errors)
    try:
        async with _unwrapped(), trio.open_nursery() as outer:
            good_peer = _GoodPeer()
            good = await good_peer.start(outer)
            body_error: BaseException | None = None
            try:
                async with Host(listen=["/ip4/127.0.0.1/tcp/0"], config=config or FAST) as host:
                    case, baseline, echo = await _prepare(host, good, outer)
                    try:
                        yield case
                    except BaseException as exc:
                        body_error = exc
                        raise
                    await _finish(host, baseline, echo)
            except BaseException as exc:
                # The host hands the body's own exception back as itself; anything else
                # (a group, a Cancelled from its dying nursery) means the host died.
                own = {id(leaf) for leaf in _leaves(body_error)} if body_error else set()
                foreign = [
                    leaf
                    for leaf in _leaves(exc)
                    if id(leaf) not in own and not isinstance(leaf, trio.Cancelled)
                ]
                if not foreign and body_error is not None:
                    raise body_error from None
                if isinstance(exc, AssertionError | KeyboardInterrupt):
                    raise
                raise HostCrashed(
                    f"the host under test died: {type(exc).__name__}: {exc!r}"
                ) from exc
            finally:
                with trio.CancelScope(shield=True):
                    await good_peer.stop()
    finally:
        logging.getLogger("libp2p").removeHandler(errors)
    if errors.records:
        lines = [f"{r.name}: {r.getMessage()}" for r in errors.records]
        raise AssertionError("the library logged errors:\n" + "\n".join(lines))


@asynccontextmanager
async def _unwrapped() -> AsyncIterator[None]:
    """Let one exception out of a nursery's group as itself (readable failures)."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


async def _prepare(host: Host, good: Host, outer: trio.Nursery) -> tuple[Case, Snapshot, _Echo]:
    with trio.fail_after(PATIENCE):
        conn = await host.connect(addr_of(good))
        await host.identify.wait_identified(conn)
        for c in good.connections_to(host.peer_id):
            await good.identify.wait_identified(c)
        await trio.testing.wait_all_tasks_blocked(cushion=0.02)
    baseline = Snapshot.of(host)
    echo = _Echo(await host.new_stream(good.peer_id, ECHO))
    await outer.start(echo.run)
    return Case(host=host, good=good, good_conn=conn, nursery=outer), baseline, echo


async def _finish(host: Host, baseline: Snapshot, echo: _Echo) -> None:
    echo.stop.set()
    with trio.fail_after(PATIENCE):
        await echo.finished.wait()
    echo.check()
    after = await _settle(host, baseline)
    leaked = baseline.diff(after)
    assert not leaked, f"leak: {leaked}"
    await _still_works(host)


class _GoodPeer:
    """The well-behaved peer, run in the case's outer nursery."""

    def __init__(self) -> None:
        self._done = trio.Event()
        self._stopped = trio.Event()

    async def start(self, nursery: trio.Nursery) -> Host:
        host: Host = await nursery.start(self._run)
        return host

    async def _run(self, task_status: trio.TaskStatus[Host] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with Host(listen=["/ip4/127.0.0.1/tcp/0"]) as good:
                good.set_stream_handler(ECHO, _serve_echo)
                task_status.started(good)
                await self._done.wait()
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        self._done.set()
        await self._stopped.wait()


def skip_unless_linux() -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")


async def raw_peer(
    case: Case,
    *,
    host_dials: bool,
    behaviour: Callable[[RawYamux], Awaitable[None]],
    body: Callable[[PeerID, RawYamux], Awaitable[None]],
    muxers: Sequence[str] = (YAMUX,),
) -> None:
    """Connect the host and a raw-yamux hostile peer (either side dialing), then run the
    peer's ``behaviour`` and the test's ``body`` (the host's side) side by side.

    The peer keeps the connection (draining what the host sends) until ``body`` is done.
    """
    ready = trio.Event()
    box: list[RawYamux] = []

    async def script(wire: Wire) -> None:
        raw = await yamux_over(wire, host_dials=host_dials, muxers=muxers)
        box.append(raw)
        ready.set()
        await behaviour(raw)
        await raw.drain()

    async def drive() -> None:
        with trio.fail_after(PATIENCE):
            await ready.wait()
            peer = box[0].session.local_peer
            await case.host.wait_for_connection(peer)
        await body(peer, box[0])

    async def connect(addr: Multiaddr) -> None:
        await case.host.connect(addr)

    if host_dials:
        async with hostile_listener(script) as addr, trio.open_nursery() as nursery:
            nursery.start_soon(connect, addr)
            await drive()
            nursery.cancel_scope.cancel()
    else:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(case.dials, script)
            await drive()
            nursery.cancel_scope.cancel()


# -- spoiled length-prefixed messages (identify, relay, DCUtR, AutoNAT) ---------------------------

#: Ways to spoil one uvarint-length-prefixed protobuf message. ``out_of_order`` sends a
#: well-formed message of a type that is not allowed at that step (the test supplies it).
SPOILS = [
    "malformed",
    "oversized",
    "truncated",
    "reset_mid",
    "stall_mid",
    "silent_eof",
    "out_of_order",
]


async def until_host_ends(stream: NetStream | trio.abc.Stream, within: float = PATIENCE) -> None:
    """Read until the host closes or resets ``stream``; fail if it does not within ``within``."""
    with trio.fail_after(within):
        try:
            while await stream.receive_some(65536):
                pass
        except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def spoil(stream: NetStream, how: str, out_of_order: bytes = b"") -> None:
    """Write one spoiled message on ``stream`` (see :data:`SPOILS`), then wait for the host.

    The host may reset the stream before everything is written: that ends the script too.
    """
    try:
        await _spoil(stream, how, out_of_order)
    except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError):
        return
    await until_host_ends(stream)


async def _spoil(stream: NetStream, how: str, out_of_order: bytes) -> None:
    from libp2p.varint import encode_uvarint

    partial = encode_uvarint(100) + b"\x08" * 10
    if how == "malformed":
        await stream.send_all(lp(b"\xff\xff\xff\xff\x0f"))
        await stream.send_eof()
    elif how == "oversized":
        await stream.send_all(encode_uvarint(1 << 20) + b"\x08" * 64)
    elif how == "truncated":
        await stream.send_all(partial)
        await stream.send_eof()
    elif how == "reset_mid":
        await stream.send_all(partial)
        await stream.reset()
        raise trio.ClosedResourceError  # nothing to wait for
    elif how == "stall_mid":
        await stream.send_all(partial)
    elif how == "silent_eof":
        await stream.send_eof()
    elif how == "out_of_order":
        await stream.send_all(out_of_order)
        await stream.send_eof()
    else:  # pragma: no cover - a typo in a test
        raise ValueError(how)
