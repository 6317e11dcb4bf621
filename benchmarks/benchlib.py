"""Processes for the benchmarks: perf servers and clients of three kinds, and the delay proxy.

Every peer runs in a process of its own, so each end has a core, as a js peer does. The three
kinds speak the same command-line dialect and print the same JSON lines:

* ``ours``    -- ``python -m libp2p.perf server|client``
* ``js``      -- ``node tests/interop/js/peer.mjs listen|perf`` (timed inside node, so Node's
  start-up is not counted)
* ``ceiling`` -- ``python benchmarks/ceiling.py server|client`` (trio TCP + ChaCha20-Poly1305
  in Noise-sized frames, no libp2p)

Each client prints one ``{"event": "result", "iteration", "time_seconds", "connect_seconds",
"upload_bytes", "download_bytes", ...}`` line per iteration. Servers print one ready line and
are stopped with SIGTERM sent to their own PID.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
JS_DIR = ROOT / "tests" / "interop" / "js"
PEER_SCRIPT = JS_DIR / "peer.mjs"
PY = sys.executable

KINDS = ("ours", "js", "ceiling")
_TAIL = 64 * 1024


class BenchError(Exception):
    """A benchmark process failed; the message carries the tail of its stderr."""


def environ() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def node() -> str:
    path = shutil.which("node")
    if path is None:
        raise BenchError("node is not on PATH")
    return path


def js_available() -> tuple[bool, str]:
    """Whether the pinned js peer can run (same check as the interop tests)."""
    sys.path.insert(0, str(ROOT))
    from tests.interop.jspeer import js_peer_available

    return js_peer_available()


@dataclass
class Server:
    """A running perf server."""

    kind: str
    #: Full multiaddr with /p2p/ (ours, js) or HOST:PORT (ceiling).
    addr: str
    process: trio.Process
    stderr: bytearray = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        if self.kind == "ceiling":
            return int(self.addr.rsplit(":", 1)[1])
        parts = self.addr.split("/")
        return int(parts[parts.index("tcp") + 1])

    def via_port(self, port: int) -> str:
        """This server's address with another TCP port (e.g. a proxy's in front of it)."""
        if self.kind == "ceiling":
            return f"127.0.0.1:{port}"
        parts = self.addr.split("/")
        parts[parts.index("tcp") + 1] = str(port)
        return "/".join(parts)


def _server_command(kind: str) -> tuple[list[str], Path | None]:
    if kind == "ours":
        return [PY, "-m", "libp2p.perf", "server", "--listen", "/ip4/127.0.0.1/tcp/0"], None
    if kind == "js":
        cmd = [node(), str(PEER_SCRIPT), "listen", "--no-monitor", "--no-conn-limits"]
        return [*cmd, "--ignore-stdin", "--lifetime", "7200"], JS_DIR
    if kind == "ceiling":
        return [PY, str(BENCH / "ceiling.py"), "server"], None
    raise ValueError(kind)


def _client_command(
    kind: str, target: str, upload: int, download: int, iterations: int, reuse: bool
) -> tuple[list[str], Path | None]:
    sizes = ["--upload-bytes", str(upload), "--download-bytes", str(download)]
    sizes += ["--iterations", str(iterations)]
    if kind == "ours":
        cmd = [PY, "-m", "libp2p.perf", "client", "--server", target, *sizes]
        return cmd + (["--reuse-connection"] if reuse else []), None
    if kind == "js":
        cmd = [node(), str(PEER_SCRIPT), "perf", target, "--no-monitor", *sizes]
        cmd += ["--timeout", "3600"]
        return cmd + (["--reuse-connection"] if reuse else []), JS_DIR
    if kind == "ceiling":
        if reuse:
            raise ValueError("the ceiling client has no --reuse-connection")
        return [PY, str(BENCH / "ceiling.py"), "client", "--server", target, *sizes], None
    raise ValueError(kind)


async def _collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
        while chunk := await stream.receive_some():
            into += chunk
            if len(into) > _TAIL:
                del into[: len(into) - _TAIL]


async def read_json_line(stream: trio.abc.ReceiveStream, what: str) -> dict[str, Any]:
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            raise BenchError(f"{what} ended before printing its JSON line")
        line += chunk
    obj: dict[str, Any] = json.loads(line)
    return obj


async def stop(process: trio.Process, grace: float = 10.0) -> None:
    """SIGTERM to the process's own PID, then SIGKILL if it lingers."""
    if process.returncode is None:
        process.terminate()
    with trio.move_on_after(grace):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


@asynccontextmanager
async def spawn(
    cmd: Sequence[str], cwd: Path | None, what: str, *, stdin: int = subprocess.DEVNULL
) -> AsyncIterator[tuple[trio.Process, dict[str, Any], bytearray]]:
    """Start ``cmd``; yield it with its first JSON line and its stderr tail; stop it after."""
    stderr = bytearray()
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            list(cmd), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
            env=environ(),
        )  # fmt: skip
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            nursery.start_soon(_collect, process.stderr, stderr)
            try:
                with trio.fail_after(60):
                    first = await read_json_line(process.stdout, what)
            except (BenchError, trio.TooSlowError, ValueError) as exc:
                tail = stderr.decode(errors="replace")[-3000:]
                raise BenchError(f"{what} did not start: {exc}\n{tail}") from exc
            yield process, first, stderr
        finally:
            with trio.CancelScope(shield=True):
                if process.stdin is not None:
                    with suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                        await process.stdin.aclose()
                await stop(process)
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def server(kind: str) -> AsyncIterator[Server]:
    """Run a perf server of ``kind`` on loopback."""
    cmd, cwd = _server_command(kind)
    async with spawn(cmd, cwd, f"{kind} server") as (process, ready, stderr):
        addr = ready["addr"] if kind == "ceiling" else ready["addrs"][0]
        yield Server(kind, str(addr), process, stderr)


async def client(
    kind: str,
    target: str,
    *,
    upload: int,
    download: int,
    iterations: int = 1,
    reuse: bool = False,
    time_limit: float = 3600,
) -> list[dict[str, Any]]:
    """Run a perf client of ``kind`` to completion; return its per-iteration results."""
    cmd, cwd = _client_command(kind, target, upload, download, iterations, reuse)
    with trio.fail_after(time_limit):
        done = await trio.run_process(
            cmd, stdin=b"", capture_stdout=True, capture_stderr=True, check=False, cwd=cwd,
            env=environ(),
        )  # fmt: skip
    lines = [json.loads(ln) for ln in done.stdout.decode().splitlines() if ln.startswith("{")]
    results = [r for r in lines if r.get("event") == "result"]
    if done.returncode != 0 or len(results) != iterations:
        tail = done.stderr.decode(errors="replace")[-3000:]
        raise BenchError(f"{kind} client -> {target} failed (exit {done.returncode}): {tail}")
    for r in results:
        if r["upload_bytes"] != upload or r["download_bytes"] != download:
            raise BenchError(f"{kind} client moved the wrong number of bytes: {r}")
    return results


@asynccontextmanager
async def delay_proxy(target_port: int, rtt_ms: float) -> AsyncIterator[int]:
    """Run benchmarks/delay_proxy.py in front of 127.0.0.1:``target_port``; yield its port."""
    cmd = [PY, str(BENCH / "delay_proxy.py"), "--target", f"127.0.0.1:{target_port}"]
    cmd += ["--rtt-ms", str(rtt_ms)]
    async with spawn(cmd, None, "delay proxy") as (_process, ready, _stderr):
        yield int(str(ready["addr"]).rsplit(":", 1)[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid``, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True)
class MemoryResult:
    connections: int
    listener_bytes: int
    dialer_bytes: int


async def memory_per_connection(kind: str, count: int) -> MemoryResult:
    """RSS growth of a listener and of a dialer of ``kind`` holding ``count`` idle connections."""
    async with server(kind) as srv:
        if kind == "ours":
            cmd, cwd = [PY, str(BENCH / "hold_conns.py"), "--server", srv.addr], None
        elif kind == "js":
            cmd = [node(), "--expose-gc", str(PEER_SCRIPT), "hold", srv.addr, "--no-monitor"]
            cwd = JS_DIR
        else:
            raise ValueError(kind)
        cmd += ["--connections", str(count)]
        async with spawn(cmd, cwd, f"{kind} holder", stdin=subprocess.PIPE) as (proc, warm, _):
            assert warm["event"] == "warm"
            assert proc.stdin is not None
            assert proc.stdout is not None
            await trio.sleep(0.3)  # let the server finish with the warm-up connection
            listener_before = rss_bytes(srv.pid)
            await proc.stdin.send_all(b"go\n")
            with trio.fail_after(300):
                ready = await read_json_line(proc.stdout, f"{kind} holder")
            await trio.sleep(0.5)  # let the server settle: every connection is idle now
            listener_after = rss_bytes(srv.pid)
    return MemoryResult(
        connections=int(ready["connections"]),
        listener_bytes=listener_after - listener_before,
        dialer_bytes=int(ready["rss"]) - int(warm["rss"]),
    )
