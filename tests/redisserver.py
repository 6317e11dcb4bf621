"""A real ``redis-server`` (Debian's package) for tests: on loopback, or inside a lab namespace.

``scripts/test.sh`` installs ``redis-server`` (as root, with apt-get). Tests call
:func:`require_redis` to skip (or, under ``scripts/test.sh``, fail) without it.

:func:`redis_argv` is the command line: no persistence, no protected mode, logs on stdout.
:class:`RedisServer` starts it from any ``Popen``-like factory (``subprocess.Popen`` on the
root namespace's loopback, or ``lab.popen`` in a NAT lab), waits for its "Ready to accept
connections" log line, and ends it by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any

from tests.conftest import skip_or_fail

READY_LINE = "Ready to accept connections"
_STOP_WAIT = 5.0


def redis_server_path() -> str | None:
    """Where ``redis-server`` is, or None."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


def require_redis() -> str:
    """The path of ``redis-server``; skips (fails under scripts/test.sh) the test without it."""
    path = redis_server_path()
    if path is None:
        skip_or_fail("redis-server is not installed (apt-get install -y redis-server)")
        raise AssertionError("unreachable")
    return path


def redis_argv(server: str, bind: str, port: int) -> list[str]:
    """``redis-server`` on ``bind:port``, keeping nothing on disk and logging to stdout."""
    return [
        server,
        "--bind",
        bind,
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--logfile",
        "",
        "--dir",
        "/tmp",
    ]


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (redis-server has no "pick one" option)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A running ``redis-server``; use as a context manager (``with RedisServer(...)``)."""

    def __init__(
        self,
        bind: str,
        port: int,
        *,
        popen: Callable[..., subprocess.Popen[Any]] | None = None,
        argv_prefix: Sequence[str] = (),
        ready_timeout: float = 15.0,
    ) -> None:
        self.bind, self.port = bind, port
        self.addr = f"{bind}:{port}"
        self._popen = popen
        self._argv = [*argv_prefix, *redis_argv(require_redis(), bind, port)]
        self._ready_timeout = ready_timeout
        self._log: list[str] = []
        self._ready = threading.Event()
        self.process: subprocess.Popen[str] | None = None

    @property
    def log(self) -> str:
        return "".join(self._log)

    def _read(self, stream: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in stream:
                self._log.append(line)
                if READY_LINE in line:
                    self._ready.set()
        self._ready.set()  # exited: wake the waiter, which checks the process

    def __enter__(self) -> RedisServer:
        popen = self._popen or subprocess.Popen
        self.process = popen(
            self._argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        if not self._ready.wait(self._ready_timeout) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError(f"redis-server did not start on {self.addr}:\n{self.log[-2000:]}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the server by its PID: SIGTERM, then SIGKILL."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(_STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(_STOP_WAIT)
