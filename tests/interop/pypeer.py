"""Start and drive a stock py-libp2p 0.8.1 peer (``tests/interop/py/peer.py``) from trio.

py-libp2p lives in its own virtual environment, ``.venv-pylibp2p``, made by
``scripts/install_py_peer.sh`` (its package is also called ``libp2p``, so it must never see
our tree: the peer runs with its working directory outside the repository and without
``PYTHONPATH``). Tests call :func:`require_py_peer` to skip (or, under ``scripts/test.sh``,
fail) without it. ::

    async with py_peer() as py:                       # py listens on 127.0.0.1, port 0
        await host.connect(py.addr)                   # we dial py
        await py.dial(f"{addr}/p2p/{host.peer_id}")   # py dials us
        echoed = await py.echo(host.peer_id, b"data") # py opens /echo/1.0.0 to us
        view = await py.peer_info(host.peer_id)       # py's peerstore about us

``muxer="mplex"`` makes it offer mplex only. Commands and answers are JSON lines on the
peer's stdin and stdout (see peer.py's docstring); event lines (``{"event": ...}``) collect in
:attr:`PyPeer.events`. For DCUtR, :func:`py_dcutr_listener` (role B: reserves on relays at
once) and :func:`py_dcutr_dialer` (role A: dials a relayed address), as jspeer's
``js_dcutr_listener`` / ``js_dcutr_dialer``; ``command_prefix`` runs the peer inside a lab
host's namespace. The process is ended only through the
``trio.Process`` started here: closing its stdin (its request to exit), then SIGTERM, then
SIGKILL.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from libp2p.peer.id import PeerID
from tests.conftest import skip_or_fail
from tests.interop.jspeer import stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = REPO_ROOT / ".venv-pylibp2p"
PYTHON = VENV / "bin" / "python"
PEER_SCRIPT = Path(__file__).resolve().parent / "py" / "peer.py"
VERSION = "0.8.1"

#: The protocol peer.py serves (an echo until EOF).
ECHO_PROTOCOL = "/echo/1.0.0"

_STDERR_TAIL = 64 * 1024


class PyPeerError(Exception):
    """The py-libp2p peer failed to start, answered an error, or printed something unexpected."""

    def __init__(self, message: str, *, stderr: str = ""):
        tail = stderr[-4000:].strip()
        super().__init__(f"{message}\n--- py-libp2p stderr (tail) ---\n{tail}" if tail else message)
        self.stderr = stderr


def py_peer_available() -> tuple[bool, str]:
    """Whether ``.venv-pylibp2p`` has py-libp2p 0.8.1: ``(True, path)`` or ``(False, why)``."""
    stamp = VENV / ".install-stamp"
    if not PYTHON.is_file() or not stamp.is_file():
        return False, f"{VENV} is missing: run scripts/install_py_peer.sh"
    if stamp.read_text().strip() != f"libp2p=={VERSION}":
        return False, f"{VENV} has {stamp.read_text().strip()}: run scripts/install_py_peer.sh"
    return True, str(PYTHON)


def require_py_peer() -> None:
    """Skip the calling test when py-libp2p is unavailable (fail under scripts/test.sh)."""
    ok, reason = py_peer_available()
    if not ok:
        skip_or_fail(f"py-libp2p peer unavailable: {reason}")


@dataclass
class PyPeer:
    """A running ``peer.py listen``."""

    peer_id: str
    addrs: list[str]
    process: trio.Process
    _stderr: bytearray = field(repr=False)
    _replies: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    _changed: trio.Event = field(default_factory=trio.Event, repr=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _closed: bool = field(default=False, repr=False)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def relayed_addrs(self) -> list[str]:
        """The ``.../p2p-circuit/p2p/<own id>`` addresses (one per ``--relay`` reserved)."""
        return [a for a in self.addrs if "/p2p-circuit" in a]

    def find_event(self, name: str, **fields: Any) -> dict[str, Any] | None:
        """The first event line ``{"event": name, ...}`` whose keys equal ``fields``, or None."""
        for event in self.events:
            if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                return event
        return None

    async def wait_event(self, name: str, **fields: Any) -> dict[str, Any]:
        """Wait for an event line as :meth:`find_event` finds it (no time limit of its own:
        put one around the call); raises PyPeerError if the peer exits first."""
        while (event := self.find_event(name, **fields)) is None:
            if self._closed:
                raise PyPeerError(
                    f"py-libp2p peer exited before {name} {fields}", stderr=self.stderr
                )
            await self._changed.wait()
        return event

    async def wait_direct(self, remote_peer: str) -> dict[str, Any]:
        """Wait for a non-relayed connection to ``remote_peer`` after a relayed one (the
        ``"direct"`` line: ``remoteAddr``, ``direction``, ``sinceRelayedSeconds``)."""
        return await self.wait_event("direct", remotePeer=remote_peer)

    async def reserve(self, relay: str) -> list[str]:
        """Make py-libp2p reserve on ``relay`` now (which starts its refresh loop); returns the
        relayed addresses (empty if refused)."""
        return list((await self.command("reserve", relay=relay))["addrs"])

    async def hole_punch(self, peer: PeerID) -> bool:
        """``DCUtRProtocol.initiate_hole_punch(peer)`` in py-libp2p; returns its verdict."""
        return bool((await self.command("hole_punch", peer=str(peer)))["direct"])

    async def connections(self, peer: PeerID) -> list[dict[str, Any]]:
        """py-libp2p's connections to ``peer``: ``[{"addrs": [...], "relayed": bool}]``."""
        return list((await self.command("connections", peer=str(peer)))["connections"])

    @property
    def addr(self) -> str:
        """The first listen address, with its ``/p2p/<peer id>`` suffix."""
        return self.addrs[0]

    @property
    def id(self) -> PeerID:
        return PeerID.from_string(self.peer_id)

    @property
    def stderr(self) -> str:
        """The tail of what the peer logged so far (for failure messages)."""
        return self._stderr.decode(errors="replace")

    async def command(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one command and wait for its answer; raises PyPeerError on ``"ok": false``."""
        reply = await self.try_command(op, **args)
        if not reply.get("ok"):
            raise PyPeerError(f"py-libp2p {op} failed: {reply.get('error')}", stderr=self.stderr)
        return reply

    async def try_command(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one command and return its answer, successful or not."""
        ident = next(self._ids)
        assert self.process.stdin is not None
        line = json.dumps({"op": op, "id": ident, **args}).encode() + b"\n"
        await self.process.stdin.send_all(line)
        while ident not in self._replies:
            if self._closed:
                raise PyPeerError(f"py-libp2p peer exited during {op}", stderr=self.stderr)
            await self._changed.wait()
        return self._replies.pop(ident)

    async def dial(self, addr: str) -> None:
        """Make py-libp2p connect to ``addr`` (ending in ``/p2p/<id>``)."""
        await self.command("dial", addr=addr)

    async def echo(self, peer: PeerID, data: bytes, protocol: str = ECHO_PROTOCOL) -> bytes:
        """Make py-libp2p open ``protocol`` to ``peer``, write ``data`` and read as much back."""
        reply = await self.command("echo", peer=str(peer), data=data.hex(), protocol=protocol)
        return bytes.fromhex(reply["data"])

    async def ping(self, peer: PeerID) -> float:
        """One ping round trip from py-libp2p to ``peer``; returns the RTT in seconds."""
        return float((await self.command("ping", peer=str(peer)))["rttSeconds"])

    async def peer_info(self, peer: PeerID) -> dict[str, Any]:
        """py-libp2p's peerstore about ``peer``: ``{"protocols": [...]}`` (py-libp2p 0.8.1
        does not keep the agentVersion identify tells it)."""
        return await self.command("peer", peer=str(peer))

    async def wait_protocol(self, peer: PeerID, protocol: str, within: float) -> bool:
        """Wait (at most ``within`` seconds, inside the py-libp2p peer) until its peerstore lists
        ``protocol`` for ``peer``; returns whether it did."""
        reply = await self.command(
            "wait_protocol", peer=str(peer), protocol=protocol, timeout=within
        )
        return bool(reply["found"])

    def _add_reply(self, reply: dict[str, Any] | None) -> None:
        if reply is None:
            self._closed = True
        elif "event" in reply and "id" not in reply:
            self.events.append(reply)
        elif isinstance(reply.get("id"), int):
            self._replies[reply["id"]] = reply
        self._changed.set()
        self._changed = trio.Event()


async def _collect_tail(stream: trio.abc.ReceiveStream, buf: bytearray) -> None:
    with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
        while chunk := await stream.receive_some():
            buf += chunk
            if len(buf) > _STDERR_TAIL:
                del buf[: len(buf) - _STDERR_TAIL]


async def _read_line(stream: trio.abc.ReceiveStream, rest: bytearray) -> bytes | None:
    while b"\n" not in rest:
        chunk = await stream.receive_some()
        if not chunk:
            return None
        rest += chunk
    line, _, tail = bytes(rest).partition(b"\n")
    rest[:] = tail
    return line


async def _collect_replies(stream: trio.abc.ReceiveStream, rest: bytearray, peer: PyPeer) -> None:
    try:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            while (line := await _read_line(stream, rest)) is not None:
                if line.strip():
                    try:
                        reply = json.loads(line)
                    except ValueError:
                        continue  # not ours (py-libp2p printing something)
                    if isinstance(reply, dict):
                        peer._add_reply(reply)
    finally:
        peer._add_reply(None)


def _environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def py_debug_log(path: Path, *modules: str) -> dict[str, str]:
    """Environment for :func:`py_peer` that makes py-libp2p log ``modules`` (e.g.
    ``"relay.circuit_v2.dcutr"``) at DEBUG into ``path`` (its own ``LIBP2P_DEBUG``)."""
    return {
        "LIBP2P_DEBUG": ",".join(f"{m}:DEBUG" for m in modules),
        "LIBP2P_DEBUG_FILE": str(path),
    }


@contextlib.asynccontextmanager
async def py_peer(
    *args: str,
    muxer: str = "default",
    listen: str = "/ip4/127.0.0.1/tcp/0",
    command_prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
    stop_timeout: float = 5.0,
) -> AsyncIterator[PyPeer]:
    """Run ``peer.py listen ARGS`` under py-libp2p 0.8.1 for the duration of the block.

    ``muxer`` is ``"default"`` (py-libp2p's own choice: yamux, then mplex), ``"yamux"`` or
    ``"mplex"`` (only that one offered). ``args`` are more of peer.py's options (``--relay``,
    ``--dcutr``, ``--connect``, ``--report-connections``); ``command_prefix`` goes before the
    interpreter (e.g. a lab host's ``ip netns exec NS``, which execs in place, so the process
    stopped by its PID is py-libp2p's own); ``env`` adds environment variables
    (:func:`py_debug_log`). Ready once it printed its peer ID and addresses
    (after reserving on every ``--relay``).
    """
    cmd = [
        *command_prefix,
        str(PYTHON),
        str(PEER_SCRIPT),
        "listen",
        "--listen",
        listen,
        "--muxer",
        muxer,
        *args,
    ]
    stderr = bytearray()
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env=_environ(env),
        )
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            nursery.start_soon(_collect_tail, process.stderr, stderr)
            rest = bytearray()
            line: bytes | None = None
            early: list[dict[str, Any]] = []  # event lines printed while it was starting
            with trio.move_on_after(startup_timeout) as waited:
                while (line := await _read_line(process.stdout, rest)) is not None:
                    if not line.startswith(b'{"event"'):
                        break
                    early.append(json.loads(line))
            if waited.cancelled_caught or line is None:
                raise PyPeerError(
                    f"py-libp2p peer not listening after {startup_timeout} s"
                    if waited.cancelled_caught
                    else "py-libp2p peer exited before it was listening",
                    stderr=stderr.decode(errors="replace"),
                )
            try:
                ready = json.loads(line)
                peer = PyPeer(
                    str(ready["peerId"]), [str(a) for a in ready["addrs"]], process, stderr
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise PyPeerError(
                    f"unexpected first line from the py-libp2p peer: {line!r}",
                    stderr=stderr.decode(errors="replace"),
                ) from exc
            if not peer.addrs:
                raise PyPeerError("py-libp2p peer reported no address", stderr=peer.stderr)
            peer.events += early
            nursery.start_soon(_collect_replies, process.stdout, rest, peer)
            yield peer
        finally:
            with trio.CancelScope(shield=True):
                await stop_process(process, stop_timeout)
            nursery.cancel_scope.cancel()


def py_dcutr_listener(
    *relays: str, report_connections: bool = True, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[PyPeer]:
    """DCUtR role B: a stock py-libp2p peer holding a reservation on each relay, made at once
    (``--relay``), with ``DCUtRProtocol`` running. Its relayed addresses are
    :attr:`PyPeer.relayed_addrs`; connection lines are on by default. Keywords as for
    :func:`py_peer` (``listen``, ``command_prefix``...)."""
    if not relays:
        raise ValueError("py_dcutr_listener wants at least one relay address")
    options = [arg for relay in relays for arg in ("--relay", relay)]
    if report_connections:
        options.append("--report-connections")
    return py_peer(*options, "--dcutr", **kwargs)


def py_dcutr_dialer(
    *targets: str, report_connections: bool = True, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[PyPeer]:
    """DCUtR role A: a stock py-libp2p peer with ``DCUtRProtocol`` running that dials each
    target (``--connect``, a ``.../p2p-circuit/p2p/B`` address) after its ready line and
    keeps the connection: ``{"event": "connected", ...}`` or ``"connect-error"``. A direct
    connection to B shows as a ``"direct"`` line (:meth:`PyPeer.wait_direct`)."""
    options = [arg for target in targets for arg in ("--connect", target)]
    if report_connections:
        options.append("--report-connections")
    return py_peer(*options, "--dcutr", **kwargs)
