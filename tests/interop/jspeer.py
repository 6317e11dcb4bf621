"""Start and stop the pinned js-libp2p test peer (``tests/interop/js/peer.mjs``) from trio.

Two ways to use it::

    async with js_peer() as peer:            # js listens; we dial peer.addrs[0]
        ...

    result = await run_js_dialer(addr, ping=3, echo=1 << 22)   # js dials our listener

For Circuit Relay v2: :func:`js_relay` runs a js relay, :func:`js_relayed_listener` a js
listener that reserves on relays, and ``run_js_dialer`` dials ``.../p2p-circuit/p2p/ID``
addresses too (its result gains ``"connection": {"remoteAddr", "limited", "limits"}``).

For DCUtR and AutoNAT v1: :func:`js_dcutr_listener` (role B, reserving on relays),
:func:`js_dcutr_dialer` (role A, dialing B through a relay and staying up),
:func:`js_autonat_server`, with :class:`JsHolePunch` choosing between stock js and the fixes
js needs to hole punch. Every starter takes ``listen`` (one address or several) and
``command_prefix`` (e.g. ``["ip", "netns", "exec", NS]``) for the NAT lab.

The listener's first stdout line (its peer ID and addresses) is the readiness signal.
Processes are ended only through the ``trio.Process`` objects started here: first by
closing the listener's stdin (its request to exit), then SIGTERM, then SIGKILL.

The js side is installed by ``scripts/install_js_peer.sh``; tests call
:func:`require_js_peer` to skip (or, under ``scripts/test.sh``, fail) without it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from tests.conftest import skip_or_fail

JS_DIR = Path(__file__).resolve().parent / "js"
PEER_SCRIPT = JS_DIR / "peer.mjs"

# Protocols served by peer.mjs (see its header for the wire behaviour of each).
ECHO_PROTOCOL = "/interop/echo/1.0.0"
SINK_PROTOCOL = "/interop/sink/1.0.0"
SOURCE_PROTOCOL = "/interop/source/1.0.0"
PERF_PROTOCOL = "/perf/1.0.0"
PING_PROTOCOL = "/ipfs/ping/1.0.0"

_STDERR_TAIL = 64 * 1024
_MAX_READY_LINE = 1 << 20


class JsPeerError(Exception):
    """The js peer failed to start, reported an error, or printed something unexpected."""

    def __init__(self, message: str, *, stderr: str = "", result: dict[str, Any] | None = None):
        tail = stderr[-4000:].strip()
        super().__init__(f"{message}\n--- js stderr (tail) ---\n{tail}" if tail else message)
        self.stderr = stderr
        self.result = result


@functools.cache
def js_peer_available() -> tuple[bool, str]:
    """Whether node (>= 20) is on PATH and the pinned node_modules are installed.

    Returns ``(True, "node vX.Y.Z")`` or ``(False, reason)``.
    """
    node = shutil.which("node")
    if node is None:
        return False, "node is not on PATH"
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"`node --version` failed: {exc}"
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        return False, f"cannot parse node version {version!r}"
    if major < 20:
        return False, f"node >= 20 needed, found {version}"
    manifest = json.loads((JS_DIR / "package.json").read_text())
    for name, wanted in manifest.get("dependencies", {}).items():
        installed = JS_DIR / "node_modules" / name / "package.json"
        if not installed.is_file():
            return False, f"{name} not installed in {JS_DIR}: run scripts/install_js_peer.sh"
        have = json.loads(installed.read_text()).get("version")
        if have != wanted:
            return False, f"{name} is {have}, package.json pins {wanted}: run install_js_peer.sh"
    return True, f"node {version}"


def require_js_peer() -> None:
    """Skip the calling test when the js peer is unavailable (fail under scripts/test.sh)."""
    ok, reason = js_peer_available()
    if not ok:
        skip_or_fail(f"js-libp2p peer unavailable: {reason}")


def source_pattern(n: int) -> bytes:
    """The N bytes /interop/source/1.0.0 sends: byte i is ``i % 251``."""
    period = bytes(range(251))
    return (period * (n // 251 + 1))[:n]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class JsPeer:
    """A running ``peer.mjs listen``."""

    peer_id: str
    addrs: list[str]
    process: trio.Process
    _stderr: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def addr(self) -> str:
        """The first listen address, with its ``/p2p/<peer id>`` suffix."""
        return self.addrs[0]

    @property
    def stderr(self) -> str:
        """The tail of what the js peer logged so far (for failure messages)."""
        return self._stderr.decode(errors="replace")


def _command(
    mode: str,
    *args: str,
    listen: str | Sequence[str] | None,
    seed: bytes | None,
    monitor: bool,
    prefix: Sequence[str] = (),
    node_args: Sequence[str] = (),
) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise JsPeerError("node is not on PATH")
    cmd = [*prefix, node, *node_args, str(PEER_SCRIPT), mode, *args]
    for addr in [listen] if isinstance(listen, str) else (listen or ()):
        cmd += ["--listen", addr]
    if seed is not None:
        if len(seed) != 32:
            raise ValueError("seed must be 32 bytes (an Ed25519 seed)")
        cmd += ["--seed", seed.hex()]
    if not monitor:
        cmd.append("--no-monitor")
    return cmd


def _environ(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    if env:
        merged.update(env)
    return merged


async def _collect_tail(stream: trio.abc.ReceiveStream, buf: bytearray) -> None:
    with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
        while chunk := await stream.receive_some():
            buf += chunk
            if len(buf) > _STDERR_TAIL:
                del buf[: len(buf) - _STDERR_TAIL]


async def _read_line(stream: trio.abc.ReceiveStream, rest: bytearray) -> bytes | None:
    """Read up to the first newline; bytes after it stay in ``rest``. None at EOF."""
    while b"\n" not in rest:
        if len(rest) > _MAX_READY_LINE:
            raise JsPeerError("js peer printed an over-long line on stdout")
        chunk = await stream.receive_some()
        if not chunk:
            return None
        rest += chunk
    line, _, tail = bytes(rest).partition(b"\n")
    rest[:] = tail
    return line


async def stop_process(process: trio.Process, grace: float) -> None:
    """Ask the process to exit (close stdin), then SIGTERM, then SIGKILL: by its own PID."""
    if process.stdin is not None:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await process.stdin.aclose()
    with trio.move_on_after(grace):
        await process.wait()
        return
    process.terminate()
    with trio.move_on_after(grace):
        await process.wait()
        return
    process.kill()
    await process.wait()


async def _wait_ready(
    process: trio.Process,
    stdout: trio.abc.ReceiveStream,
    stderr: bytearray,
    startup_timeout: float,
    rest: bytearray | None = None,
) -> JsPeer:
    """Read the listener's first stdout line: its peer ID and listen addresses.

    Whatever was read past that line is dropped, or kept in ``rest`` when given.
    """
    line: bytes | None = None
    with trio.move_on_after(startup_timeout) as waited:
        line = await _read_line(stdout, bytearray() if rest is None else rest)
        if line is None:
            await process.wait()
    if waited.cancelled_caught:
        raise JsPeerError(
            f"js peer not listening after {startup_timeout} s",
            stderr=stderr.decode(errors="replace"),
        )
    if line is None:
        raise JsPeerError(
            f"js peer exited with {process.returncode} before it was listening",
            stderr=stderr.decode(errors="replace"),
        )
    try:
        ready = json.loads(line)
        peer = JsPeer(str(ready["peerId"]), [str(a) for a in ready["addrs"]], process, stderr)
    except (ValueError, KeyError, TypeError) as exc:
        raise JsPeerError(
            f"unexpected first line from js peer: {line!r}", stderr=stderr.decode(errors="replace")
        ) from exc
    if not peer.addrs:
        raise JsPeerError(
            "js peer reported no listen addresses", stderr=stderr.decode(errors="replace")
        )
    return peer


@contextlib.asynccontextmanager
async def js_peer(
    mode: str = "listen",
    *args: str,
    listen: str | None = None,
    seed: bytes | None = None,
    monitor: bool = True,
    command_prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
    stop_timeout: float = 5.0,
) -> AsyncIterator[JsPeer]:
    """Run ``node peer.mjs listen`` for the duration of the ``async with`` block.

    ``listen`` defaults to ``/ip4/127.0.0.1/tcp/0`` (in peer.mjs); ``seed`` fixes the
    Ed25519 identity; ``monitor=False`` turns off js's 10 s connection-monitor pings;
    ``env`` adds variables (e.g. ``{"DEBUG": "libp2p:*"}``); ``args`` are passed through;
    ``command_prefix`` goes before ``node`` (e.g. ``["ip", "netns", "exec", NS]``).
    """
    if mode != "listen":
        raise ValueError(f"js_peer only runs 'listen'; use run_js_dialer for 'dial', not {mode!r}")
    cmd = _command(mode, *args, listen=listen, seed=seed, monitor=monitor, prefix=command_prefix)
    stderr = bytearray()
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=JS_DIR,
            env=_environ(env),
        )
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            nursery.start_soon(_collect_tail, process.stderr, stderr)
            peer = await _wait_ready(process, process.stdout, stderr, startup_timeout)
            nursery.start_soon(_collect_tail, process.stdout, bytearray())
            yield peer
        finally:
            with trio.CancelScope(shield=True):
                await stop_process(process, stop_timeout)
            nursery.cancel_scope.cancel()


async def run_js_dialer(
    addr: str,
    *,
    ping: int | None = None,
    echo: int | None = None,
    sink: int | None = None,
    source: int | None = None,
    perf_upload: int | None = None,
    perf_download: int | None = None,
    listen: str | None = None,
    seed: bytes | None = None,
    monitor: bool = True,
    extra_args: Sequence[str] = (),
    command_prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    time_limit: float = 60.0,
    check: bool = True,
) -> dict[str, Any]:
    """Run ``node peer.mjs dial ADDR ...`` to completion and return its JSON result.

    ``addr`` must end in ``/p2p/<peer id>``. Each keyword that is not None adds that
    operation (sizes in bytes, ``ping`` a count); they run in the order ping, echo, sink,
    source, perf. js enforces ``time_limit`` (seconds); we end it a little later if it
    does not.
    With ``check`` (the default) a non-zero exit or an ``{"error": ...}`` result raises
    :class:`JsPeerError`; without it the error object is returned with ``"returncode"``.
    """
    options = {
        "--ping": ping,
        "--echo": echo,
        "--sink": sink,
        "--source": source,
        "--perf-upload": perf_upload,
        "--perf-download": perf_download,
    }
    args = ["--timeout", str(time_limit)]
    for flag, value in options.items():
        if value is not None:
            args += [flag, str(value)]
    cmd = _command(
        "dial",
        addr,
        *args,
        *extra_args,
        listen=listen,
        seed=seed,
        monitor=monitor,
        prefix=command_prefix,
    )
    with trio.fail_after(time_limit + 15):
        # On cancellation trio.run_process terminates, then kills, the process it started.
        completed = await trio.run_process(
            cmd,
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=JS_DIR,
            env=_environ(env),
        )
    stderr = completed.stderr.decode(errors="replace")
    lines = [ln for ln in completed.stdout.decode(errors="replace").splitlines() if ln.strip()]
    try:
        result = json.loads(lines[-1])
        if not isinstance(result, dict):
            raise TypeError(type(result).__name__)
    except (IndexError, ValueError, TypeError) as exc:
        raise JsPeerError(
            f"js dialer (exit {completed.returncode}) printed no JSON object: {lines!r}",
            stderr=stderr,
        ) from exc
    if completed.returncode != 0 or "error" in result:
        if check:
            raise JsPeerError(
                f"js dialer failed (exit {completed.returncode}): {result.get('error')}",
                stderr=stderr,
                result=result,
            )
        result["returncode"] = completed.returncode
    return result


# ---- Circuit Relay v2 roles (peer.mjs `relay`, `listen --relay`, `--report-connections`)


@dataclass
class JsServingPeer(JsPeer):
    """A running ``peer.mjs relay`` or ``peer.mjs listen``, with its later stdout lines.

    With ``--report-connections`` peer.mjs prints, after the ready line, one
    ``{"event": "connection", "remotePeer", "remoteAddr", "direction", "limited", "limits"}``
    line per connection opened (``limits`` is ``{"seconds", "bytes"}`` as the relay granted
    them, either may be None, or None for an unlimited connection); they collect in ``events``.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event, repr=False)

    @property
    def relayed_addrs(self) -> list[str]:
        """The ``.../p2p/<relay>/p2p-circuit/p2p/<own id>`` addresses (listen --relay)."""
        return [a for a in self.addrs if "/p2p-circuit" in a]

    @property
    def connections(self) -> list[dict[str, Any]]:
        """The ``"connection"`` events reported so far (needs ``report_connections``)."""
        return [e for e in self.events if e.get("event") == "connection"]

    async def wait_connection(
        self, remote_peer: str | None = None, *, limited: bool | None = None
    ) -> dict[str, Any]:
        """The first reported connection from ``remote_peer`` (any when None) and, when
        ``limited`` is not None, with that ``"limited"`` value. Waits for it without a time
        limit: put one around the call (``trio.fail_after``)."""
        while True:
            for event in self.connections:
                if remote_peer is not None and event.get("remotePeer") != remote_peer:
                    continue
                if limited is not None and event.get("limited") is not limited:
                    continue
                return event
            await self._changed.wait()

    def find_event(self, name: str, **fields: Any) -> dict[str, Any] | None:
        """The first event line ``{"event": name, ...}`` whose keys equal ``fields``, or None."""
        for event in self.events:
            if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                return event
        return None

    async def wait_event(self, name: str, **fields: Any) -> dict[str, Any]:
        """Wait for the first event line ``{"event": name, ...}`` whose keys equal ``fields``
        (e.g. ``wait_event("dcutr", phase="end", role="B")``). No time limit of its own: put
        one around the call (``trio.fail_after``). Event lines need ``report_connections``."""
        while (event := self.find_event(name, **fields)) is None:
            await self._changed.wait()
        return event

    async def wait_direct(self, remote_peer: str) -> dict[str, Any]:
        """Wait for a non-relayed connection with ``remote_peer`` (its ``"direct"`` line:
        ``remoteAddr``, ``direction``, ``sinceRelayedSeconds`` = time since the first relayed
        connection with that peer opened, None if there was none)."""
        return await self.wait_event("direct", remotePeer=remote_peer)

    async def wait_dcutr_end(self, remote_peer: str | None = None) -> dict[str, Any]:
        """Wait for the end of a DCUtR run (``{"event": "dcutr", "phase": "end", "role",
        "remotePeer", "direct": bool, "error"}``; js B swallows its attempts' errors, which
        come as ``"phase": "error"`` lines)."""
        fields: dict[str, Any] = {"phase": "end"}
        if remote_peer is not None:
            fields["remotePeer"] = remote_peer
        return await self.wait_event("dcutr", **fields)

    def _add_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()


async def _collect_events(
    stdout: trio.abc.ReceiveStream, rest: bytearray, peer: JsServingPeer
) -> None:
    """Parse the JSON lines printed after the ready line into ``peer.events``."""
    with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
        while (line := await _read_line(stdout, rest)) is not None:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line.decode(errors="replace")}
            peer._add_event(event if isinstance(event, dict) else {"event": "unparsed"})


@dataclass(frozen=True)
class JsHolePunch:
    """DCUtR on a js peer, and which of the fixes js needs to hole punch (peer.mjs header).

    ``JsHolePunch.stock()`` is @libp2p/dcutr as shipped; ``JsHolePunch.fixed()`` turns on all
    four fixes. ``accept_cidrs`` (IPv4) restricts the widened address filter to public
    addresses and those ranges (useful in a NAT lab: js dials the remote's addresses one at a
    time, so an unreachable private one first costs the whole 5 s attempt). ``dial_port``
    fixes the port dials leave from (default: a free one; never the listen port, which Linux
    refuses on Node 20). ``announce`` appends static announce addresses.
    """

    dcutr: bool = True
    addr_filter: bool = False
    observed: bool = False
    dial_port: bool = False
    responder: bool = False
    accept_cidrs: Sequence[str] = ()
    dial_port_number: int | None = None
    announce: Sequence[str] = ()

    @classmethod
    def stock(cls, **changes: Any) -> JsHolePunch:
        return cls(**changes)

    @classmethod
    def fixed(cls, **changes: Any) -> JsHolePunch:
        return cls(
            **{
                "addr_filter": True,
                "observed": True,
                "dial_port": True,
                "responder": True,
                **changes,
            }
        )

    def args(self) -> list[str]:
        out: list[str] = ["--dcutr"] if self.dcutr else []
        for flag, on in (
            ("--fix-addr-filter", self.addr_filter),
            ("--fix-observed", self.observed),
            ("--fix-dial-port", self.dial_port),
            ("--fix-responder", self.responder),
        ):
            if on:
                out.append(flag)
        for cidr in self.accept_cidrs:
            out += ["--dcutr-accept", cidr]
        if self.dial_port_number is not None:
            out += ["--dial-port", str(self.dial_port_number)]
        for addr in self.announce:
            out += ["--announce", addr]
        return out


@contextlib.asynccontextmanager
async def js_serving_peer(
    mode: str,
    *args: str,
    listen: str | Sequence[str] | None = None,
    seed: bytes | None = None,
    monitor: bool = True,
    report_connections: bool = False,
    holepunch: JsHolePunch | None = None,
    autonat: bool = False,
    autonat_v2: bool = False,
    public_ranges: bool = False,
    command_prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
    stop_timeout: float = 5.0,
) -> AsyncIterator[JsServingPeer]:
    """Run ``node peer.mjs listen|relay ARGS`` like :func:`js_peer`, keeping its later lines.

    Readiness, options and shutdown are those of :func:`js_peer`; ``report_connections``
    adds ``--report-connections``, whose lines collect in :attr:`JsServingPeer.events`.
    ``listen`` may list several addresses (default ``/ip4/127.0.0.1/tcp/0``);
    ``holepunch`` adds DCUtR and its fixes (:class:`JsHolePunch`), ``autonat`` the AutoNAT v1
    service, ``autonat_v2`` the AutoNAT v2 service (@libp2p/autonat-v2);
    ``public_ranges`` makes js count loopback and the documentation ranges as public
    (``node --import public-ranges.mjs``: stock js calls them private and neither asks about
    nor dials such addresses in AutoNAT v2); ``command_prefix`` goes before ``node`` (e.g.
    ``["ip", "netns", "exec", NS]``, which execs node in place, so the process we stop by its
    PID is node itself).
    """
    if mode not in ("listen", "relay"):
        raise ValueError(f"js_serving_peer runs 'listen' or 'relay', not {mode!r}")
    extra = ["--report-connections"] if report_connections else []
    if holepunch is not None:
        extra += holepunch.args()
    if autonat:
        extra.append("--autonat")
    if autonat_v2:
        extra.append("--autonat-v2")
    node_args: list[str] = []
    if public_ranges:
        extra.append("--public-ranges")
        node_args = ["--import", str(JS_DIR / "public-ranges.mjs")]
    cmd = _command(
        mode,
        *args,
        *extra,
        listen=listen,
        seed=seed,
        monitor=monitor,
        prefix=command_prefix,
        node_args=node_args,
    )
    stderr = bytearray()
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=JS_DIR,
            env=_environ(env),
        )
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            nursery.start_soon(_collect_tail, process.stderr, stderr)
            rest = bytearray()
            ready = await _wait_ready(process, process.stdout, stderr, startup_timeout, rest)
            peer = JsServingPeer(ready.peer_id, ready.addrs, process, stderr)
            nursery.start_soon(_collect_events, process.stdout, rest, peer)
            yield peer
        finally:
            with trio.CancelScope(shield=True):
                await stop_process(process, stop_timeout)
            nursery.cancel_scope.cancel()


def js_relay(
    *args: str,
    limit_duration: int | None = None,
    limit_data: int | None = None,
    no_limit: bool = False,
    spec_duration: bool = False,
    reservation_ttl: int | None = None,
    max_reservations: int | None = None,
    **kwargs: Any,
) -> contextlib.AbstractAsyncContextManager[JsServingPeer]:
    """Run ``node peer.mjs relay``: a js Circuit Relay v2 server (hop), see peer.mjs.

    ``limit_duration`` (seconds) and ``limit_data`` (bytes) replace js's default per-connection
    limits (2 min, 128 KiB); ``no_limit`` sends no limit at all. Stock js announces the
    duration in milliseconds (120000 for 2 min); ``spec_duration`` makes it announce seconds.
    ``reservation_ttl`` (seconds, js default 2 h), ``max_reservations`` (js default 15).
    Other keywords as for :func:`js_serving_peer`.
    """
    options: list[str] = []
    for flag, value in (
        ("--limit-duration", limit_duration),
        ("--limit-data", limit_data),
        ("--reservation-ttl", reservation_ttl),
        ("--max-reservations", max_reservations),
    ):
        if value is not None:
            options += [flag, str(value)]
    if no_limit:
        options.append("--no-limit")
    if spec_duration:
        options.append("--spec-duration")
    return js_serving_peer("relay", *options, *args, **kwargs)


def js_relayed_listener(
    *relays: str, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[JsServingPeer]:
    """Run ``node peer.mjs listen --relay R ...``: a js listener holding a reservation on each
    relay (``R`` = relay address ending in ``/p2p/<relay id>``); ready once every relay shows in
    its addresses, so :attr:`JsServingPeer.relayed_addrs` is dialable. Keywords as for
    :func:`js_serving_peer` (``report_connections=True`` to see limited connections arrive).
    """
    if not relays:
        raise ValueError("js_relayed_listener wants at least one relay address")
    options: list[str] = []
    for relay in relays:
        options += ["--relay", relay]
    return js_serving_peer("listen", *options, **kwargs)


# ---- DCUtR and AutoNAT v1 roles (peer.mjs --dcutr, --fix-*, --connect, --autonat)


def js_dcutr_listener(
    *relays: str,
    holepunch: JsHolePunch | None = None,
    report_connections: bool = True,
    **kwargs: Any,
) -> contextlib.AbstractAsyncContextManager[JsServingPeer]:
    """DCUtR role B: a js listener holding a reservation on each relay (``listen --relay R
    --dcutr ...``). It starts DCUtR itself when a peer arrives over a relayed connection
    (after identify lists /libp2p/dcutr). ``holepunch`` defaults to ``JsHolePunch.fixed()``;
    event lines are on by default. Other keywords as for :func:`js_serving_peer`
    (``listen``, ``command_prefix``, ``autonat``, ``seed``, ``env``...).
    """
    if not relays:
        raise ValueError("js_dcutr_listener wants at least one relay address")
    options: list[str] = []
    for relay in relays:
        options += ["--relay", relay]
    return js_serving_peer(
        "listen",
        *options,
        holepunch=JsHolePunch.fixed() if holepunch is None else holepunch,
        report_connections=report_connections,
        **kwargs,
    )


def js_dcutr_dialer(
    *targets: str,
    holepunch: JsHolePunch | None = None,
    report_connections: bool = True,
    **kwargs: Any,
) -> contextlib.AbstractAsyncContextManager[JsServingPeer]:
    """DCUtR role A: a js peer that listens (``listen`` as usual) and, after its ready line,
    dials each target (``--connect``; typically B's ``.../p2p-circuit/p2p/B`` address) and
    keeps the connection, printing ``{"event": "connected", "target", "remoteAddr", "limited",
    ...}`` or ``{"event": "connect-error", "target", "error"}``. It answers B's DCUtR and, on
    success, prints a ``"direct"`` line for B (:meth:`JsServingPeer.wait_direct`).
    ``holepunch`` defaults to ``JsHolePunch.fixed()``; keywords as for :func:`js_serving_peer`.
    """
    options: list[str] = []
    for target in targets:
        options += ["--connect", target]
    return js_serving_peer(
        "listen",
        *options,
        holepunch=JsHolePunch.fixed() if holepunch is None else holepunch,
        report_connections=report_connections,
        **kwargs,
    )


def js_autonat_server(
    *args: str, report_connections: bool = True, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[JsServingPeer]:
    """A js AutoNAT v1 server (``listen --autonat``; ``js_relay(autonat=True)`` for a relay
    that serves AutoNAT too). Each request answered prints ``{"event": "autonat-server",
    "remotePeer", "remoteAddr", "requested", "status", "statusText", "addr"}``. Stock js
    refuses private addresses (loopback, RFC 1918, the documentation ranges...), addresses
    whose IP is not the requester's and addresses on its own hosts (E_DIAL_REFUSED), and dials
    back without ``force``, so over an existing connection to that address it answers from
    it. Keywords as for :func:`js_serving_peer`.
    """
    return js_serving_peer(
        "listen", *args, autonat=True, report_connections=report_connections, **kwargs
    )
