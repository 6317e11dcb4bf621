"""Run the example scripts as subprocesses and read their ``--json`` lines (see ``Script``)."""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.examples.vocabulary import check_line

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "nat"
STEP = 20.0  # seconds any one step may take before the test fails


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Script:
    """One of ``relay.py``, ``listener.py``, ``dialer.py`` running with ``--json``.

    A reader thread parses stdout; every line is checked against the vocabulary as it is read.
    :meth:`expect` waits for a line of an event (holding other lines for later calls).
    """

    def __init__(self, role: str, *args: str) -> None:
        self.role = role
        argv = [sys.executable, "-u", str(EXAMPLES / f"{role}.py"), "--json", *args]
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            # Ctrl-C must reach the script as it does from a terminal, also when the tests
            # run in a background job: a non-interactive shell starts those with SIGINT
            # ignored, which children inherit, and Python then installs no handler for it.
            preexec_fn=_default_sigint,
        )
        self.lines: list[dict[str, Any]] = []  # every line read, in order
        self._new: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._held: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        assert self.popen.stdout is not None
        assert self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self.popen.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.popen.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self, stream: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):
            for text in stream:
                line = json.loads(text)
                self.lines.append(line)
                self._new.put(line)
        self._new.put(None)

    def _read_stderr(self, stream: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):
            for text in stream:
                self._stderr.append(text)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def expect(self, event: str, timeout: float = STEP) -> dict[str, Any]:
        """The first line of ``event`` not taken yet; fails after ``timeout`` or at exit."""
        for line in self._held:
            if line["event"] == event:
                self._held.remove(line)
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._new.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                pytest.fail(f"{self.role}: no {event!r} within {timeout} s\n{self.report()}")
            if line is None:
                self._new.put(None)
                pytest.fail(f"{self.role}: exited before {event!r}\n{self.report()}")
            check_line(line, self.role)
            if line["event"] == event:
                return line
            self._held.append(line)

    def wait(self, timeout: float = STEP) -> int:
        """Wait for the exit (and the end of output); every line must follow the vocabulary."""
        code = self.popen.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout)
        for line in self.lines:
            check_line(line, self.role)
        return code

    def stop(self, timeout: float = STEP) -> int:
        """Ctrl-C (SIGINT) and wait for the exit: every script exits 130 on it, after a last
        ``interrupted`` line (checked here)."""
        assert self.popen.poll() is None, f"{self.role} exited before Ctrl-C\n{self.report()}"
        self.popen.send_signal(signal.SIGINT)
        code = self.wait(timeout)
        assert self.lines, self.report()
        assert self.lines[-1]["event"] == "interrupted", self.report()
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5.0)

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == event]

    def report(self) -> str:
        out = "\n".join(json.dumps(line) for line in self.lines[-20:])
        return f"--- {self.role} stdout (tail) ---\n{out}\n--- stderr ---\n{self.stderr[-3000:]}"


@pytest.fixture
def script() -> Iterator[Callable[..., Script]]:
    """``script("relay", "--listen", ...)`` starts a script; teardown kills those still running
    (each by its own PID)."""
    started: list[Script] = []

    def start(role: str, *args: str) -> Script:
        started.append(Script(role, *args))
        return started[-1]

    try:
        yield start
    finally:
        for program in started:
            program.kill()
