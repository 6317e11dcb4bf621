"""``python -m libp2p.perf`` server and client as real processes over loopback.

The server's readiness signal is its ``{"event": "ready"}`` line; it is stopped with SIGTERM
(or SIGINT) sent to its own PID and must exit 0. Nothing here asserts a wall-clock time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from libp2p.crypto.keys import generate_ed25519
from libp2p.peer.id import PeerID

ROOT = Path(__file__).resolve().parents[2]
PERF = [sys.executable, "-m", "libp2p.perf"]
MIB = 1 << 20


def _environ() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class PerfServer:
    """A running ``python -m libp2p.perf server``."""

    process: trio.Process
    peer_id: str
    addrs: list[str]
    stderr: bytearray

    @property
    def addr(self) -> str:
        return self.addrs[0]


async def _read_line(stream: trio.abc.ReceiveStream) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            break
        line += chunk
    return bytes(line)


async def _collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    while chunk := await stream.receive_some():
        into += chunk


@asynccontextmanager
async def perf_server(
    *args: str, stop: signal.Signals = signal.SIGTERM
) -> AsyncIterator[PerfServer]:
    """Run the perf server on loopback; on exit send ``stop`` to its PID and expect exit 0."""
    listen = [] if "--listen" in args else ["--listen", "/ip4/127.0.0.1/tcp/0"]
    stderr = bytearray()
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            [*PERF, "server", *listen, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_environ(),
        )
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            nursery.start_soon(_collect, process.stderr, stderr)
            with trio.fail_after(30):
                line = await _read_line(process.stdout)
            assert line, f"server exited before it was ready: {stderr.decode(errors='replace')}"
            ready = json.loads(line)
            assert ready["event"] == "ready"
            yield PerfServer(process, ready["peer_id"], ready["addrs"], stderr)
            process.send_signal(stop)
            with trio.fail_after(15):
                await process.wait()
            assert process.returncode == 0, stderr.decode(errors="replace")
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
            nursery.cancel_scope.cancel()


@dataclass
class ClientRun:
    returncode: int
    results: list[dict[str, Any]]
    stderr: str

    @property
    def error(self) -> dict[str, Any]:
        """The JSON error line the client wrote last on stderr."""
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith("{")]
        assert lines, f"no JSON error line on stderr: {self.stderr!r}"
        obj: dict[str, Any] = json.loads(lines[-1])
        return obj


async def run_perf_client(server: str, *args: str, time_limit: float = 60) -> ClientRun:
    """Run ``python -m libp2p.perf client --server SERVER ARGS...`` to completion."""
    with trio.fail_after(time_limit):
        done = await trio.run_process(
            [*PERF, "client", "--server", server, *args],
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=_environ(),
        )
    results = [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]
    return ClientRun(done.returncode, results, done.stderr.decode(errors="replace"))


def check_results(
    run: ClientRun, *, iterations: int, upload: int, download: int, reused: bool = False
) -> None:
    """Assert one well-formed result line per iteration with the asked byte counts."""
    assert run.returncode == 0, run.stderr
    assert [r["iteration"] for r in run.results] == list(range(iterations))
    for r in run.results:
        assert r["event"] == "result"
        assert r["upload_bytes"] == upload
        assert r["download_bytes"] == download
        assert r["time_seconds"] > 0
        assert 0 <= r["connect_seconds"] <= r["time_seconds"]
        dialed = r["iteration"] == 0 or not reused
        assert (r["connect_seconds"] > 0) is dialed


def unused_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_server_announces_full_addrs_and_stops_cleanly(stop: signal.Signals) -> None:
    async with perf_server(stop=stop) as server:
        PeerID.from_string(server.peer_id)
        assert len(server.addrs) == 1
        assert server.addr.startswith("/ip4/127.0.0.1/tcp/")
        assert server.addr.endswith(f"/p2p/{server.peer_id}")
    # Nothing but the ready line went to stdout; logs (if any) went to stderr.


async def test_client_new_connection_per_iteration() -> None:
    async with perf_server() as server:
        run = await run_perf_client(
            server.addr,
            "--upload-bytes",
            str(MIB + 7),
            "--download-bytes",
            str(2 * MIB + 3),
            "--iterations",
            "3",
        )
    check_results(run, iterations=3, upload=MIB + 7, download=2 * MIB + 3)


async def test_client_reuse_connection() -> None:
    async with perf_server() as server:
        run = await run_perf_client(
            server.addr,
            "--upload-bytes",
            "1",
            "--download-bytes",
            "1",
            "--iterations",
            "4",
            "--reuse-connection",
        )
    check_results(run, iterations=4, upload=1, download=1, reused=True)


async def test_client_zero_bytes_and_no_peer_id_in_addr() -> None:
    async with perf_server() as server:
        bare = server.addr.rsplit("/p2p/", 1)[0]
        run = await run_perf_client(bare, "--upload-bytes", "0", "--download-bytes", "0")
    check_results(run, iterations=1, upload=0, download=0)


async def test_client_fails_when_nobody_listens() -> None:
    run = await run_perf_client(
        f"/ip4/127.0.0.1/tcp/{unused_port()}", "--upload-bytes", "1", "--download-bytes", "1"
    )
    assert run.returncode != 0
    assert run.results == []
    assert run.error["event"] == "error"
    assert "refused" in run.error["error"].lower()


async def test_client_fails_on_wrong_peer_id() -> None:
    impostor = PeerID.from_public_key(generate_ed25519().public_key)
    async with perf_server() as server:
        bare = server.addr.rsplit("/p2p/", 1)[0]
        run = await run_perf_client(
            f"{bare}/p2p/{impostor}", "--upload-bytes", "1", "--download-bytes", "1"
        )
    assert run.returncode != 0
    assert run.results == []
    assert run.error["type"] == "PeerIDMismatch"


async def test_key_file_gives_a_stable_peer_id(tmp_path: Path) -> None:
    key_file = tmp_path / "perf.key"
    async with perf_server("--key-file", str(key_file)) as first:
        pass
    assert key_file.exists()
    async with perf_server("--key-file", str(key_file)) as second:
        run = await run_perf_client(second.addr, "--upload-bytes", "5", "--download-bytes", "5")
    assert first.peer_id == second.peer_id
    check_results(run, iterations=1, upload=5, download=5)


async def test_bad_arguments_exit_2() -> None:
    run = await run_perf_client("/ip4/127.0.0.1/tcp/1", "--upload-bytes", "-1")
    assert run.returncode == 2
    run = await run_perf_client("not-a-multiaddr", "--upload-bytes", "1", "--download-bytes", "1")
    assert run.returncode == 2


@pytest.mark.slow
async def test_benchmarks_quick_smoke() -> None:
    """``benchmarks/run.py --quick`` runs end to end (about 20 s; js rows only if installed)."""
    with trio.fail_after(180):
        done = await trio.run_process(
            [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick"],
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=_environ(),
        )
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    for section in ("Throughput:", "Latency:", "Latency with", "Memory per idle", "Import:"):
        assert section in output


ONE_BYTE = ("--upload-bytes", "1", "--download-bytes", "1")


async def test_log_level_debug_governs_our_loggers_only() -> None:
    # --log-level DEBUG shows the library's debug lines, not those of the packages it uses
    # (multiaddr logs every parse at DEBUG when the root logger is set to it).
    async with perf_server() as server:
        with trio.fail_after(60):
            done = await trio.run_process(
                [*PERF, "--log-level", "DEBUG", "client", "--server", server.addr, *ONE_BYTE],
                stdin=b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=_environ(),
            )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr
    names = {line.split(" ")[3].rstrip(":") for line in stderr.splitlines() if " DEBUG " in line}
    assert names, f"no debug lines at all: {stderr!r}"
    assert all(name == "libp2p" or name.startswith("libp2p.") for name in names), names
