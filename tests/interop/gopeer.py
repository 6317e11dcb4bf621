"""Start and drive a stock go-libp2p peer (``p2pd``, go-libp2p-daemon on go-libp2p v0.32.1).

The binary comes out of hivemind 1.1.12's wheel (``scripts/install_go_peer.sh`` puts it in
``.interop-cache/go/p2pd``); tests call :func:`require_go_peer` to skip (or, under
``scripts/test.sh``, fail) without it. ::

    async with go_peer() as go:                 # p2pd listening on 127.0.0.1, port 0
        await host.connect(go.addr)             # we dial go
        await go.connect(host.peer_id, host.listen_addrs)   # go dials us
        info, stream = await go.stream_open(host.peer_id, ["/echo/1.0.0"])
        await go.stream_handler(["/echo/1.0.0"], handler)    # go routes inbound streams here
        peers = await go.dump_peers()           # go's view of each connected peer (SIGUSR1)

The daemon is controlled over a unix socket with its own protocol: one uvarint-length-
prefixed protobuf ``Request`` and ``Response`` per exchange (``tests/interop/go/
p2pd_control.proto``). Each request here uses a connection of its own, as ``STREAM_OPEN``
turns its connection into the stream. For ``STREAM_HANDLER`` the daemon dials a unix
socket we listen on for every inbound stream, writes a bare ``StreamInfo``, then pipes
the stream; note that it closes the whole socket once the remote half-closes (so a reply
must be written before the remote's EOF arrives, as an echo does).

The process is ended through the ``trio.Process`` started here only: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio
from multiaddr import Multiaddr

from libp2p.peer.id import PeerID
from tests.conftest import skip_or_fail
from tests.interop.go import p2pd_control_pb2 as pb

REPO_ROOT = Path(__file__).resolve().parents[2]
P2PD = REPO_ROOT / ".interop-cache" / "go" / "p2pd"

#: What go-libp2p-daemon sends as identify's agentVersion.
AGENT = "p2pd/0.1"

_MAX_MESSAGE = 4 << 20
_STDERR_TAIL = 64 * 1024
_UNIX_CODE = 400  # multiaddr protocol code of /unix


class GoPeerError(Exception):
    """p2pd failed to start, answered a control request with an error, or misbehaved."""

    def __init__(self, message: str, *, stderr: str = ""):
        tail = stderr[-4000:].strip()
        super().__init__(f"{message}\n--- p2pd stderr (tail) ---\n{tail}" if tail else message)
        self.stderr = stderr


def go_peer_available() -> tuple[bool, str]:
    """Whether the pinned p2pd is installed: ``(True, path)`` or ``(False, reason)``."""
    if not P2PD.is_file():
        return False, f"{P2PD} is missing: run scripts/install_go_peer.sh"
    return True, str(P2PD)


def require_go_peer() -> None:
    """Skip the calling test when p2pd is unavailable (fail under scripts/test.sh)."""
    ok, reason = go_peer_available()
    if not ok:
        skip_or_fail(f"go-libp2p peer (p2pd) unavailable: {reason}")


# ---- wire helpers (independent of the library under test) ----------------------------------


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def unix_multiaddr_bytes(path: str) -> bytes:
    """``/unix/<abs path>`` in binary form, as go-multiaddr reads it: the value keeps the
    leading ``/`` (py-multiaddr drops it, and go would then read a relative path)."""
    if not path.startswith("/"):
        raise ValueError(f"unix socket path must be absolute: {path!r}")
    raw = path.encode()
    return _uvarint(_UNIX_CODE) + _uvarint(len(raw)) + raw


class _Reader:
    """Buffered reads of uvarint-delimited messages from a trio stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise GoPeerError("p2pd closed the control connection mid-message")
        self.buf += chunk

    async def read_message(self) -> bytes:
        while True:
            length, shift, pos = 0, 0, 0
            complete = False
            while pos < len(self.buf):
                byte = self.buf[pos]
                length |= (byte & 0x7F) << shift
                shift += 7
                pos += 1
                if not byte & 0x80:
                    complete = True
                    break
            if complete:
                if length > _MAX_MESSAGE:
                    raise GoPeerError(f"p2pd sent a {length}-byte control message")
                if len(self.buf) >= pos + length:
                    message = bytes(self.buf[pos : pos + length])
                    del self.buf[: pos + length]
                    return message
            await self._fill()


def _frame(message: bytes) -> bytes:
    return _uvarint(len(message)) + message


@dataclass
class _BufferedStream(trio.abc.HalfCloseableStream):
    """A unix stream to p2pd whose first bytes (read with the control message) are replayed."""

    inner: trio.SocketStream
    pending: bytearray

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.pending:
            n = len(self.pending) if max_bytes is None else min(max_bytes, len(self.pending))
            out = bytes(self.pending[:n])
            del self.pending[:n]
            return out
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


#: ``async def handler(info, stream)`` for streams go routes to us (see ``stream_handler``).
GoStreamHandler = Callable[[pb.StreamInfo, trio.abc.HalfCloseableStream], Awaitable[None]]


@dataclass
class GoPeerView:
    """What p2pd's peerstore holds about one connected peer (from its SIGUSR1 dump)."""

    peer_id: str
    multiaddr: str
    agent: str
    protocols: list[str]
    streams: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GoLogLine:
    """One JSON log line of p2pd (``GOLOG_LOG_FMT=json``) and when we read it (trio clock)."""

    logger: str
    level: str
    msg: str
    fields: dict[str, object]
    read_at: float


@dataclass
class GoPeer:
    """A running p2pd."""

    peer_id: str
    addrs: list[str]
    process: trio.Process
    control_path: str
    _nursery: trio.Nursery = field(repr=False)
    _tmpdir: str = field(repr=False)
    _stderr: bytearray = field(default_factory=bytearray, repr=False)
    _stdout_lines: list[str] = field(default_factory=list, repr=False)
    _stdout_changed: trio.Event = field(default_factory=trio.Event, repr=False)
    _handler_count: int = field(default=0, repr=False)
    _stdout_closed: bool = field(default=False, repr=False)
    #: p2pd's JSON log lines so far (the loggers turned on by ``go_peer(log_levels=...)``).
    logs: list[GoLogLine] = field(default_factory=list)
    _logs_changed: trio.Event = field(default_factory=trio.Event, repr=False)

    @property
    def addr(self) -> str:
        """The first TCP listen address, with its ``/p2p/<peer id>`` suffix."""
        return self.addrs[0]

    @property
    def id(self) -> PeerID:
        return PeerID.from_string(self.peer_id)

    @property
    def stderr(self) -> str:
        """The tail of what p2pd logged so far (for failure messages)."""
        return self._stderr.decode(errors="replace")

    # -- control protocol ---------------------------------------------------------------------

    async def _open_control(self) -> trio.SocketStream:
        return await trio.open_unix_socket(self.control_path)

    async def _request(self, request: pb.Request) -> pb.Response:
        stream = await self._open_control()
        async with stream:
            await stream.send_all(_frame(request.SerializeToString()))
            return self._check(await _Reader(stream).read_message())

    def _check(self, raw: bytes) -> pb.Response:
        response = pb.Response()
        response.ParseFromString(raw)
        if response.type != pb.Response.OK:
            raise GoPeerError(f"p2pd answered ERROR: {response.error.msg}", stderr=self.stderr)
        return response

    async def identify(self) -> tuple[str, list[str]]:
        """The daemon's peer ID and listen addresses (IDENTIFY)."""
        response = await self._request(pb.Request(type=pb.Request.IDENTIFY))
        peer = PeerID.from_bytes(response.identify.id)
        return str(peer), [str(Multiaddr(a)) for a in response.identify.addrs]

    async def connect(
        self, peer: PeerID, addrs: Sequence[Multiaddr | str], daemon_timeout: int = 10
    ) -> None:
        """Make go dial ``peer`` at ``addrs`` (CONNECT; p2pd gives up after ``daemon_timeout``
        seconds); raises GoPeerError if it fails."""
        request = pb.Request(type=pb.Request.CONNECT)
        request.connect.peer = peer.to_bytes()
        request.connect.addrs.extend(Multiaddr(str(a)).to_bytes() for a in addrs)
        request.connect.timeout = daemon_timeout
        await self._request(request)

    async def disconnect(self, peer: PeerID) -> None:
        """Close go's connections to ``peer`` (DISCONNECT)."""
        request = pb.Request(type=pb.Request.DISCONNECT)
        request.disconnect.peer = peer.to_bytes()
        await self._request(request)

    async def connections(self) -> list[tuple[str, str]]:
        """Every open connection as ``(peer id, remote multiaddr)`` (LIST_PEERS has one entry
        per connection: a peer with a relayed and a direct connection appears twice)."""
        response = await self._request(pb.Request(type=pb.Request.LIST_PEERS))
        return [
            (str(PeerID.from_bytes(p.id)), str(Multiaddr(a)))
            for p in response.peers
            for a in p.addrs
        ]

    async def wait_log(self, start: int, predicate: Callable[[GoLogLine], bool]) -> GoLogLine:
        """The first log line from index ``start`` on that satisfies ``predicate``, waiting for
        it (no time limit of its own: put one around it)."""
        index = start
        while True:
            while index < len(self.logs):
                line = self.logs[index]
                index += 1
                if predicate(line):
                    return line
            if self.process.returncode is not None:
                raise GoPeerError("p2pd exited", stderr=self.stderr)
            await self._logs_changed.wait()

    def _add_log(self, raw: str | None) -> None:
        """A line p2pd wrote on stderr, or None at the end of it."""
        if raw is None:
            self._logs_changed.set()
            return
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            return  # not one of go-log's JSON lines (a panic, a plain print)
        if not isinstance(entry, dict):
            return
        known = ("logger", "level", "msg", "ts", "caller")
        self.logs.append(
            GoLogLine(
                logger=str(entry.get("logger", "")),
                level=str(entry.get("level", "")),
                msg=str(entry.get("msg", "")),
                fields={k: v for k, v in entry.items() if k not in known},
                read_at=trio.current_time(),
            )
        )
        self._logs_changed.set()
        self._logs_changed = trio.Event()

    async def list_peers(self) -> dict[str, list[str]]:
        """Connected peers and their addresses, as go sees them (LIST_PEERS)."""
        response = await self._request(pb.Request(type=pb.Request.LIST_PEERS))
        return {
            str(PeerID.from_bytes(p.id)): [str(Multiaddr(a)) for a in p.addrs]
            for p in response.peers
        }

    async def stream_open(
        self, peer: PeerID, protocols: Sequence[str], daemon_timeout: int = 10
    ) -> tuple[pb.StreamInfo, trio.abc.HalfCloseableStream]:
        """Make go open a stream to ``peer`` (STREAM_OPEN; p2pd gives up after
        ``daemon_timeout`` seconds); returns the negotiated stream's info and a unix stream
        piped to it (close it to close the libp2p stream)."""
        request = pb.Request(type=pb.Request.STREAM_OPEN)
        request.streamOpen.peer = peer.to_bytes()
        request.streamOpen.proto.extend(protocols)
        request.streamOpen.timeout = daemon_timeout
        stream = await self._open_control()
        try:
            await stream.send_all(_frame(request.SerializeToString()))
            reader = _Reader(stream)
            response = self._check(await reader.read_message())
        except BaseException:
            await stream.aclose()
            raise
        return response.streamInfo, _BufferedStream(stream, reader.buf)

    async def stream_handler(self, protocols: Sequence[str], handler: GoStreamHandler) -> None:
        """Route go's inbound streams of ``protocols`` to ``handler`` (STREAM_HANDLER): we
        listen on a unix socket of our own, which the daemon dials for every stream."""
        self._handler_count += 1
        path = str(Path(self._tmpdir) / f"h{self._handler_count}.sock")
        await self._nursery.start(_serve_handler, path, handler)
        request = pb.Request(type=pb.Request.STREAM_HANDLER)
        request.streamHandler.addr = unix_multiaddr_bytes(path)
        request.streamHandler.proto.extend(protocols)
        request.streamHandler.balanced = False
        await self._request(request)

    # -- peerstore dump -------------------------------------------------------------------------

    async def dump_peers(self) -> dict[str, GoPeerView]:
        """go's peerstore entry (agent, protocols) for every peer it is connected to (a peer
        with several connections appears once: see :meth:`dump_connections`)."""
        return {view.peer_id: view for view in await self.dump_connections()}

    async def dump_connections(self) -> list[GoPeerView]:
        """One entry per open connection: its peer, remote address and open streams' protocols,
        with what identify told go about the peer.

        Sends SIGUSR1, on which p2pd prints its connections, and parses that. Waits for the
        whole dump (no time limit of its own: put one around it).
        """
        start = len(self._stdout_lines)
        self.process.send_signal(signal.SIGUSR1)
        while True:
            parsed = _parse_dump(self._stdout_lines[start:])
            if parsed is not None:
                return parsed
            await self._stdout_changed.wait()

    def _add_stdout(self, line: str | None) -> None:
        """A line p2pd printed, or None at the end of its output."""
        if line is None:
            self._stdout_closed = True
        else:
            self._stdout_lines.append(line)
        self._stdout_changed.set()
        self._stdout_changed = trio.Event()


_HEADER = re.compile(r"^Connections and streams \((\d+)\):$")
_PEER = re.compile(r"^peer: (\S+), multiaddr: (\S+)$")
_VERSIONS = re.compile(r"^\s*protoVersion: (.*), agent: (.*)$")
_PROTOCOLS = re.compile(r"^\s*protocols: \[(.*)\]$")
_STREAMS = re.compile(r"^\s*streams \((\d+)\):$")
_STREAM = re.compile(r"^\s*protocol:\s+(.*)$")


def _parse_dump(lines: list[str]) -> list[GoPeerView] | None:
    """Parse one SIGUSR1 dump from ``lines``; None while it is incomplete."""
    for i, line in enumerate(lines):
        header = _HEADER.match(line)
        if header is None:
            continue
        count, pos, views = int(header.group(1)), i + 1, []
        for _ in range(count):
            if pos + 4 > len(lines):
                return None
            peer = _PEER.match(lines[pos])
            versions = _VERSIONS.match(lines[pos + 1])
            protocols = _PROTOCOLS.match(lines[pos + 2])
            streams = _STREAMS.match(lines[pos + 3])
            if not (peer and versions and protocols and streams):
                raise GoPeerError(f"unexpected p2pd dump: {lines[pos : pos + 4]!r}")
            n = int(streams.group(1))
            if pos + 4 + n > len(lines):
                return None
            stream_protocols = []
            for stream_line in lines[pos + 4 : pos + 4 + n]:
                match = _STREAM.match(stream_line)
                stream_protocols.append(match.group(1).strip() if match else stream_line)
            views.append(
                GoPeerView(
                    peer_id=peer.group(1),
                    multiaddr=peer.group(2),
                    agent=versions.group(2),
                    protocols=protocols.group(1).split(),
                    streams=stream_protocols,
                )
            )
            pos += 4 + n
        return views
    return None


async def _serve_handler(
    path: str, handler: GoStreamHandler, *, task_status: trio.TaskStatus[None]
) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(64)
    listener = trio.SocketListener(sock)

    async def one(stream: trio.SocketStream) -> None:
        async with stream:
            reader = _Reader(stream)
            info = pb.StreamInfo()
            info.ParseFromString(await reader.read_message())
            await handler(info, _BufferedStream(stream, reader.buf))

    async with listener:
        task_status.started()
        await trio.serve_listeners(one, [listener])


async def _collect_tail(
    stream: trio.abc.ReceiveStream,
    buf: bytearray,
    on_line: Callable[[str | None], None] | None = None,
) -> None:
    rest = b""
    with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
        while chunk := await stream.receive_some():
            buf += chunk
            if len(buf) > _STDERR_TAIL:
                del buf[: len(buf) - _STDERR_TAIL]
            if on_line is not None:
                rest += chunk
                *lines, rest = rest.split(b"\n")
                for line in lines:
                    on_line(line.decode(errors="replace"))
    if on_line is not None:
        on_line(None)


async def _collect_lines(
    stream: trio.abc.ReceiveStream,
    on_line: Callable[[str | None], None],
) -> None:
    rest = b""
    try:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            while chunk := await stream.receive_some():
                rest += chunk
                *lines, rest = rest.split(b"\n")
                for line in lines:
                    on_line(line.decode(errors="replace"))
    finally:
        on_line(None)


async def _stop(process: trio.Process, grace: float) -> None:
    """SIGTERM (p2pd closes its host and exits), then SIGKILL: by the PID we started."""
    if process.returncode is None:
        process.terminate()
        with trio.move_on_after(grace):
            await process.wait()
            return
        process.kill()
    await process.wait()


@contextlib.asynccontextmanager
async def go_peer(
    *args: str,
    host_addrs: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
    key_file: str | None = None,
    relay: bool = True,
    startup_timeout: float = 20.0,
    stop_timeout: float = 5.0,
    command_prefix: Sequence[str] = (),
    log_levels: Mapping[str, str] | None = None,
    require_addrs: bool = True,
) -> AsyncIterator[GoPeer]:
    """Run p2pd for the duration of the ``async with`` block.

    ``host_addrs`` are its libp2p listen addresses (``-hostAddrs``), ``key_file`` its identity
    (``-id``, a marshalled private key; a fresh one when None), ``args`` extra flags (e.g.
    ``"-autonat"``). ``relay=False`` turns Circuit Relay off entirely (no hop service): p2pd's
    defaults turn it on and its ``-relay`` flag can only turn it on, so this passes a JSON
    config (``-f``) with ``Relay.Enabled`` false as well as ``-relay=false``; otherwise
    p2pd serves hop (``-relayService=false`` alone does not remove it).
    ``command_prefix`` goes before the command (e.g. ``NatLab.exec_argv(host, [])`` to run it in
    a lab namespace: ``ip netns exec`` execs p2pd, so the process we end is p2pd itself; the
    control socket is a file, reachable from any namespace). ``log_levels`` turns on go-log
    loggers (``{"p2p-holepunch": "debug"}``), logged as JSON lines on stderr and parsed into
    :attr:`GoPeer.logs`; others stay at ``error``. ``require_addrs=False`` accepts a p2pd that
    announces no TCP address (auto-relay while private announces only relayed addresses, none
    before it reserved): then :attr:`GoPeer.addrs` is empty.
    Ready once it printed its peer ID (its control socket is listening by then) and
    answered IDENTIFY.
    """
    with tempfile.TemporaryDirectory(prefix="p2pd.") as tmpdir:
        control = str(Path(tmpdir) / "control.sock")
        cmd = [
            *command_prefix,
            str(P2PD),
            "-listen",
            f"/unix{control}",
            "-hostAddrs",
            ",".join(host_addrs),
        ]
        if key_file is not None:
            cmd += ["-id", key_file]
        if not relay:
            config = Path(tmpdir) / "config.json"
            config.write_text('{"Relay": {"Enabled": false}}')
            cmd += ["-f", str(config), "-relay=false"]
        cmd += list(args)
        stderr = bytearray()
        env = None
        if log_levels:
            levels = ",".join(["error", *(f"{k}={v}" for k, v in log_levels.items())])
            env = {**os.environ, "GOLOG_LOG_LEVEL": levels, "GOLOG_LOG_FMT": "json"}
        async with trio.open_nursery() as nursery:
            process = await trio.lowlevel.open_process(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=tmpdir,
                env=env,
            )
            assert process.stdout is not None
            assert process.stderr is not None
            try:
                peer = GoPeer("", [], process, control, nursery, tmpdir, stderr)
                nursery.start_soon(_collect_tail, process.stderr, stderr, peer._add_log)
                nursery.start_soon(_collect_lines, process.stdout, peer._add_stdout)
                with trio.move_on_after(startup_timeout) as waited:
                    while not any(ln.startswith("Peer ID: ") for ln in peer._stdout_lines):
                        if peer._stdout_closed:
                            await process.wait()
                            break
                        await peer._stdout_changed.wait()
                if waited.cancelled_caught or process.returncode is not None:
                    raise GoPeerError(
                        f"p2pd not ready after {startup_timeout} s"
                        if process.returncode is None
                        else f"p2pd exited with {process.returncode} before it was ready",
                        stderr=stderr.decode(errors="replace"),
                    )
                peer_id, addrs = await peer.identify()
                peer.peer_id = peer_id
                peer.addrs = [f"{a}/p2p/{peer_id}" for a in addrs if "/tcp/" in a]
                if not peer.addrs and require_addrs:
                    raise GoPeerError(
                        f"p2pd listens on no TCP address: {addrs}", stderr=peer.stderr
                    )
                yield peer
            finally:
                with trio.CancelScope(shield=True):
                    await _stop(process, stop_timeout)
                nursery.cancel_scope.cancel()
