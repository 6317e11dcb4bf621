"""Start and stop the pinned js-libp2p test peer (``tests/interop/js/peer.mjs``) from trio.

Two ways to use it::

    async with js_peer() as peer:            # js listens; we dial peer.addrs[0]
        ...

    result = await run_js_dialer(addr, ping=3, echo=1 << 22)   # js dials our listener

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
    listen: str | None,
    seed: bytes | None,
    monitor: bool,
) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise JsPeerError("node is not on PATH")
    cmd = [node, str(PEER_SCRIPT), mode, *args]
    if listen is not None:
        cmd += ["--listen", listen]
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


async def _stop(process: trio.Process, grace: float) -> None:
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
    process: trio.Process, stdout: trio.abc.ReceiveStream, stderr: bytearray, startup_timeout: float
) -> JsPeer:
    """Read the listener's first stdout line: its peer ID and listen addresses."""
    line: bytes | None = None
    with trio.move_on_after(startup_timeout) as waited:
        line = await _read_line(stdout, bytearray())
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
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
    stop_timeout: float = 5.0,
) -> AsyncIterator[JsPeer]:
    """Run ``node peer.mjs listen`` for the duration of the ``async with`` block.

    ``listen`` defaults to ``/ip4/127.0.0.1/tcp/0`` (in peer.mjs); ``seed`` fixes the
    Ed25519 identity; ``monitor=False`` turns off js's 10 s connection-monitor pings;
    ``env`` adds variables (e.g. ``{"DEBUG": "libp2p:*"}``); ``args`` are passed through.
    """
    if mode != "listen":
        raise ValueError(f"js_peer only runs 'listen'; use run_js_dialer for 'dial', not {mode!r}")
    cmd = _command(mode, *args, listen=listen, seed=seed, monitor=monitor)
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
                await _stop(process, stop_timeout)
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
    cmd = _command("dial", addr, *args, *extra_args, listen=listen, seed=seed, monitor=monitor)
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
