"""The demo: a real hole punch with the three example scripts (``examples/nat``).

    python scripts/demo.py          # relay, listener and dialer on loopback
    python scripts/demo.py --lab    # ... behind two NATs of the NAT lab (Linux, root, nftables)

It starts ``relay.py``, then ``listener.py`` with the relay's address, then ``dialer.py`` with
the relayed address the listener printed, just as a user would copy them between three
terminals (on one machine once the listener has said whether it is reachable, within a
second, as the docs' walkthrough shows; the docs' shown output is compared with these runs
by tests/examples/test_demo.py). Their output is shown as it comes, each line labelled with
its program, and ends with the dialer's result; the exit code is the dialer's (0: direct
connection, 1: none).
``scripts/demo.sh`` does the set-up first (``.venv``), then runs this.

With ``--lab`` the three run in the namespaces of ``tests/natlab/lab.py``: the relay on the
"internet", the listener behind NAT B, the dialer behind NAT A (``--nat-a``/``--nat-b``
choose endpoint-independent ``eim`` or ``symmetric`` NATs; through a symmetric one the hole
punch fails, and the dialer says why).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "nat"
STEP = 20.0  # seconds the relay and the listener have to print their addresses
STOP = 10.0  # seconds a program has to exit after Ctrl-C (SIGINT) before it is killed
# On one machine: seconds the dialer waits for the listener to know whether it is reachable
# (it does within a second), as a person would look at the listener's output while copying
# its address into the third terminal.
PACE = 3.0
LAB_HOW = "run `sudo bash scripts/demo.sh --lab` (or the demo without --lab, on loopback)"

# Starts a program: (argv, host in the lab or None) -> Popen with stdout piped.
Launcher = Callable[[Sequence[str], str | None], "subprocess.Popen[str]"]


class DemoError(Exception):
    """The demo could not go on (a program exited early or printed no address in time)."""


class Console:
    """Prints the programs' lines as they come, each with its label; one line at a time.

    Every line shown is also kept with its time since the start (:attr:`shown`), for
    ``--cast``: a recording of the run in asciinema's v2 format (``scripts/screencast.py``
    renders it as an animated SVG for the docs).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.monotonic()
        #: (seconds since start, label, line) of every line shown, in order.
        self.shown: list[tuple[float, str, str]] = []

    def show(self, label: str, line: str) -> None:
        with self.lock:
            self.shown.append((time.monotonic() - self.started, label, line))
            print(f"{label:<8} | {line}", flush=True)

    def write_cast(self, path: Path, command: str, width: int = 120) -> None:
        """The run so far as an asciinema v2 cast: a header line, then one output event per
        line shown (the command typed first, as a user would see it)."""
        header = {
            "version": 2,
            "width": width,
            "height": 32,
            "timestamp": int(time.time()),
            "title": command,
            "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
        }
        events = [[0.0, "o", f"$ {command}\r\n"]]
        events += [[round(t, 3), "o", f"{label:<8} | {line}\r\n"] for t, label, line in self.shown]
        text = "\n".join(json.dumps(item) for item in [header, *events]) + "\n"
        path.write_text(text, encoding="utf-8")


class Program:
    """One example script; a thread shows its output (stdout and stderr) line by line."""

    def __init__(self, label: str, popen: subprocess.Popen[str], console: Console) -> None:
        self.label, self.popen, self.console = label, popen, console
        self.result: str | None = None  # the dialer's result line, shown last
        self.lines: list[str] = []  # every line read so far
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert popen.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(popen.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):
            for raw in stream:
                line = raw.rstrip("\n")
                if self.label == "dialer" and "] result: " in line:
                    self.result = line
                else:
                    self.console.show(self.label, line)
                self.lines.append(line)
                self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, wanted: Callable[[str], bool], timeout: float, what: str) -> str:
        """The next line for which ``wanted`` is true; :class:`DemoError` on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                late = f"the {self.label} printed no {what} within {timeout:g} s"
                raise DemoError(late) from None
            if line is None:
                self._lines.put(None)
                code = self.popen.wait()
                raise DemoError(f"the {self.label} exited ({code}) before printing {what}")
            if wanted(line):
                return line

    def has_printed(self, wanted: Callable[[str], bool], timeout: float) -> bool:
        """Whether a line for which ``wanted`` is true was printed, or is within ``timeout``
        (a line before the last :meth:`wait_for` counts too)."""
        if any(wanted(line) for line in list(self.lines)):
            return True
        try:
            self.wait_for(wanted, timeout, "")
        except DemoError:
            return False
        return True

    def finish(self, timeout: float) -> int:
        """Wait for the exit and the end of the output."""
        code = self.popen.wait(timeout=timeout)
        self._reader.join(timeout)
        return code

    def stop(self) -> None:
        """Ctrl-C (the scripts exit cleanly on it), then SIGKILL if it takes too long."""
        if self.popen.poll() is None:
            with contextlib.suppress(OSError):
                self.popen.send_signal(signal.SIGINT)
        try:
            self.finish(STOP)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.finish(STOP)


def address_line(prefix: str) -> Callable[[str], bool]:
    """An indented address line (as the scripts print them) that starts with ``prefix``."""
    return lambda line: line.startswith("    /") and line.strip().startswith(prefix)


def decided(line: str) -> bool:
    """A reachability report that is no longer ``unknown`` (as the listener prints it)."""
    return bool(re.match(r"^\[ *[\d.]+ s\] reachability: (public|private),", line))


def run_demo(
    launch: Launcher,
    console: Console,
    *,
    relay_ip: str,
    hosts: dict[str, str | None],
    listen: dict[str, str],
    timeout: float,
    pace: float = 0.0,
    extra: dict[str, list[str]] | None = None,
) -> int:
    """Relay, then listener, then dialer (each with its ``extra`` arguments); returns the
    dialer's exit code. The dialer starts once the listener has printed its relayed address
    and, within ``pace`` seconds, whether it is reachable."""
    extra = extra or {}
    python = [sys.executable, "-u"]
    programs: list[Program] = []

    def start(label: str, *args: str) -> Program:
        argv = [*python, str(EXAMPLES / f"{label}.py"), *args, *extra.get(label, [])]
        popen = launch(argv, hosts[label])
        programs.append(Program(label, popen, console))
        return programs[-1]

    try:
        relay = start("relay", "--listen", listen["relay"])
        relay_addr = relay.wait_for(address_line(f"/ip4/{relay_ip}/"), STEP, "its address")
        listener = start("listener", "--relay", relay_addr.strip(), "--listen", listen["listener"])
        target = listener.wait_for(
            lambda line: "/p2p-circuit/p2p/" in line, STEP, "its relayed address"
        )
        # On one machine the listener learns within a second that it is public, and then
        # gives the dialer's direct dial a chance before it punches (as the docs' walkthrough
        # shows); behind a NAT that drops the AutoNAT dial-back it knows only after 10 s,
        # which the demo in the lab does not wait for (pace 0).
        if pace > 0:
            listener.has_printed(decided, pace)
        dialer = start(
            "dialer",
            "--target",
            target.strip(),
            "--listen",
            listen["dialer"],
            "--timeout",
            f"{timeout:g}",
        )
        code = dialer.finish(timeout + STEP)
        if code == 0:
            # The story's last steps: the listener echoes over the direct connection, and
            # the relay closes the circuit it no longer needs.
            with contextlib.suppress(DemoError):
                listener.wait_for(lambda line: "(direct" in line, STOP, "the direct echo")
            with contextlib.suppress(DemoError):
                relay.wait_for(lambda line: " closed (" in line, STOP, "the closed circuit")
        elif code == 1:
            # The listener's side of the failure, and what AutoNAT tells it about itself.
            listener.has_printed(lambda line: "] hole punch with " in line, STOP)
            listener.has_printed(decided, STOP)
    finally:
        for program in reversed(programs):
            program.stop()
    if dialer.result is not None:
        console.show("dialer", dialer.result)
    return code


def loopback(args: argparse.Namespace, console: Console) -> int:
    console.show("demo", "relay, listener and dialer on loopback (127.0.0.1), three processes")

    def launch(argv: Sequence[str], host: str | None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )

    any_port = "/ip4/127.0.0.1/tcp/0"
    return run_demo(
        launch,
        console,
        relay_ip="127.0.0.1",
        hosts=dict.fromkeys(("relay", "listener", "dialer")),
        listen=dict.fromkeys(("relay", "listener", "dialer"), any_port),
        timeout=args.timeout,
        pace=PACE,
    )


def in_lab(args: argparse.Namespace, console: Console) -> int:
    sys.path.insert(0, str(ROOT))
    from tests.natlab.lab import ROOT_REASON, NatLab, lab_unavailable_reason
    from tests.natlab.topology import INTERNET_NET

    reason = lab_unavailable_reason()
    if reason == ROOT_REASON:
        print(
            f"demo: --lab builds network namespaces and NATs, which needs root: {LAB_HOW}",
            file=sys.stderr,
        )
        return 1
    if reason is not None:
        print(f"demo: the NAT lab cannot run here: {reason}", file=sys.stderr)
        return 1
    with NatLab(a=args.nat_a, b=args.nat_b, relay2=False) as lab:
        console.show(
            "demo",
            f"NAT lab: relay on the internet at {lab.ip('relay')}; listener at {lab.ip('b')} "
            f"behind NAT B ({args.nat_b}, public {lab.public_ip('b')}); dialer at "
            f"{lab.ip('a')} behind NAT A ({args.nat_a}, public {lab.public_ip('a')})",
        )

        def launch(argv: Sequence[str], host: str | None) -> subprocess.Popen[str]:
            assert host is not None
            popen: subprocess.Popen[str] = lab.popen(
                host,
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            return popen

        return run_demo(
            launch,
            console,
            relay_ip=lab.ip("relay"),
            hosts={"relay": "relay", "listener": "b", "dialer": "a"},
            listen={
                name: f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}"
                for name in ("relay", "listener", "dialer")
            },
            timeout=args.timeout,
            # The lab's internet is a documentation range, which is not globally routable:
            # tell the reachability reports that it counts as public. The listener is the
            # relay's only AutoNAT server here, so one server group decides for the relay.
            extra={
                "relay": ["--public-range", INTERNET_NET, "--min-servers", "1"],
                "listener": ["--public-range", INTERNET_NET],
            },
        )


@contextlib.contextmanager
def reported(console: Console) -> Iterator[None]:
    try:
        yield
    except DemoError as exc:
        console.show("demo", f"error: {exc}")
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--lab", action="store_true", help="run behind two NATs of the NAT lab (needs root)"
    )
    for side in ("a", "b"):
        parser.add_argument(
            f"--nat-{side}",
            choices=("eim", "symmetric"),
            default="eim",
            help=f"with --lab: NAT {side.upper()}'s kind (default eim: endpoint-independent)",
        )
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="the dialer's --timeout"
    )
    parser.add_argument(
        "--cast",
        type=Path,
        metavar="FILE",
        help="also record the run as an asciinema v2 cast (scripts/screencast.py)",
    )
    args = parser.parse_args(argv)
    console = Console()
    try:
        with reported(console):
            return in_lab(args, console) if args.lab else loopback(args, console)
    finally:
        if args.cast is not None:
            command = "python scripts/demo.py" + (" --lab" if args.lab else "")
            for side in ("a", "b"):
                if getattr(args, f"nat_{side}") != "eim":
                    command += f" --nat-{side} {getattr(args, f'nat_{side}')}"
            console.write_cast(args.cast, command)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
