"""Run the libp2p test-plans hole-punch contract in the NAT lab, the way the suite runs it.

The suite (libp2p/test-plans ``hole-punch-interop``) starts, with docker compose, six
containers: Redis, a relay, and a dialer and a listener each behind its own router. What that
comes to, and how this runner mirrors it:

=====================================  ==========================================================
test-plans                             here
=====================================  ==========================================================
``redis:7-alpine`` on every network    Debian's ``redis-server`` in the relay's namespace, on
                                       the relay's address and a fresh port (so the clients
                                       reach it through their routers: Redis traffic is delayed
                                       too, which changes nothing the contract checks)
its rust relay, pushing its address    the relay command given (``hole-punch-relay`` by
twice to ``RELAY_TCP_ADDRESS``         default), in the ``relay`` namespace
routers: nftables ``snat`` to the      ``NatLab(a="eim", b="eim", filtering="none")``: a
WAN address, no filter at all          port-preserving SNAT and no firewall, so the router's
                                       own stack answers an unsolicited SYN with an RST
``DELAY_MS=100`` per router, as        the delaying switch with 50 ms one way on each router's
``netem 50ms`` on each of its two      port: 100 ms per round trip through one router, 200 ms
interfaces (router/run.sh)             between the clients (the suite expects ~200 ms)
``netem 25ms`` on the relay's egress   12.5 ms one way on the relay's port: the same 25 ms per
                                       round trip (client to relay: 125 ms, as there)
``docker compose up`` killed after     the dialer must exit within 60 s of the start
60 s, ``--exit-code-from dialer``
result: the dialer's last stdout line  :func:`~libp2p.interop.hole_punch_client.parse_report`
                                       on the dialer's whole stdout: stricter, exactly one line
=====================================  ==========================================================

Round trips between any two hosts match the suite's. One path differs: the suite delays at the
routers' interfaces, so the RST that router B's own stack sends back to an early punch SYN
crosses B's WAN side only (SYN to RST at A: 150 ms there); the switch delays by port, so that
RST takes the full 100 ms back (200 ms here). A refused early SYN costs a little more here.

Clients are commands, so any implementation that follows the contract can run here: ours is
``python -m libp2p.interop.hole_punch_client`` (the ``hole-punch-client`` console script), js
runs behind ``python -m tests.interop.js_contract_client``, go behind ``python -m
tests.interop.go_contract_client``. The dialer runs in host ``a`` (behind router ``ra``), the
listener in host ``b``. All start at once, as compose starts them.

IPv6 mode (``contract_lab_options(ipv6=True)``), for runs where go takes part: the pinned go
(p2pd, go-libp2p v0.32.1) hole punches only from an address it deems public, which no IPv4
address of the lab is, and trusts an observed address only once four observers reported it
(``tests/interop/golab.py``). So the lab is the dual-stack ``"ipv6"`` topology with four
observer addresses, whose observer hosts (ours, ``golab.start_observers``) start before the
run; their addresses go to every process in ``NATLAB_OBSERVERS``, which only the go adapter
reads (our lab's addition, not the contract's). The relay listens on its IPv6 address only and
so pushes that; the clients listen in the relay's IP version, so the run is over IPv6, through
the routers' stateful firewalls (no NAT), with the same delays. The firewalls answer an
unsolicited SYN with an RST (``filtering="reject"``), as the suite's routers' own stacks do;
with no filter at all, a plain dial between the clients would get through without a hole
punch. Redis stays on IPv4 (through the NATs).

Processes are ended by PID (SIGTERM, then SIGKILL): the listener and the relay after the
dialer has exited (or the time ran out), then Redis. The lab itself belongs to the caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from libp2p.interop.hole_punch_client import parse_report
from tests.interop.go_contract_client import OBSERVERS_ENV
from tests.interop.golab import GO_OBSERVERS, start_observers
from tests.natlab.lab import NatLab
from tests.redisserver import RedisServer

ROOT = Path(__file__).resolve().parents[2]

#: test-plans' ``routerDelay`` (testplans.ts): each router delays by DELAY_MS / 2 on each of
#: its two interfaces (router/run.sh), so one crossing of a router costs DELAY_MS / 2.
ROUTER_DELAY_MS = 100
#: test-plans' ``relayDelay``: netem on the relay's egress only, so 25 ms per round trip.
RELAY_DELAY_MS = 25
#: ``docker compose up`` runs under an exec timeout of 60 s (compose-runner.ts).
SUITE_TIMEOUT = 60.0
#: The direct round trip between the clients (ms): ``routerDelay * 2`` in testplans.ts.
DIRECT_RTT_MS = 2 * ROUTER_DELAY_MS

#: Our client and relay, as commands.
OUR_CLIENT = (sys.executable, "-m", "libp2p.interop.hole_punch_client")
OUR_RELAY = (sys.executable, "-m", "libp2p.interop.hole_punch_client", "relay")
#: js-libp2p through our adapter.
JS_CLIENT = (sys.executable, "-m", "tests.interop.js_contract_client")
#: go-libp2p (p2pd) through our adapter: IPv6 mode only (``contract_lab_options(ipv6=True)``).
GO_CLIENT = (sys.executable, "-m", "tests.interop.go_contract_client")

_STOP_WAIT = 5.0


def contract_lab_options(ipv6: bool = False) -> dict[str, Any]:
    """``NatLab`` keywords for the suite's network (see the module docstring).

    ``ipv6=True`` is the IPv6 mode, for runs where go takes part (see the module docstring):
    the dual-stack topology with four observer addresses, and routers whose IPv6 firewalls
    refuse an unsolicited SYN with an RST (``filtering="reject"``): without NAT, ``"none"``
    would leave the hosts open to any direct dial, and an RST is what the suite's routers
    answer an early SYN with. The delays are the same.
    """
    router = ROUTER_DELAY_MS / 2 / 1000  # one way through a router
    relay = RELAY_DELAY_MS / 2 / 1000  # the switch delays both ways: half each
    options: dict[str, Any] = {
        "a": "eim",
        "b": "eim",
        "filtering": "none",
        "relay2": False,
        "delays": {"ra": router, "rb": router, "relay": relay},
    }
    if ipv6:
        options.update(topology="ipv6", observers=GO_OBSERVERS, filtering="reject")
    return options


@dataclass(frozen=True)
class ContractRun:
    """What one run gave: the dialer's exit and output, the listener's state, timings."""

    #: The dialer's exit code; None when it was still running at the time limit (killed).
    dialer_exit: int | None
    dialer_stdout: str
    dialer_stderr: str
    #: Whether the listener was still running when the dialer exited (it must be).
    listener_running: bool
    listener_exit: int | None
    listener_stdout: str
    listener_stderr: str
    relay_stderr: str
    #: Seconds from starting the clients to the dialer's exit (or the time limit).
    seconds: float
    #: The RTT the dialer reported (ms), or None with ``report_error`` saying why.
    rtt_ms: int | None
    report_error: str | None

    @property
    def ok(self) -> bool:
        """The contract held: dialer exit 0, one valid result line, listener still up."""
        return self.dialer_exit == 0 and self.rtt_ms is not None and self.listener_running

    def describe(self) -> str:
        """Everything the processes printed, for a failure message."""

        def tail(text: str) -> str:
            return text[-6000:].strip() or "(nothing)"

        return (
            f"dialer exit {self.dialer_exit}, listener running {self.listener_running} "
            f"(exit {self.listener_exit}), {self.seconds:.1f} s, rtt {self.rtt_ms} "
            f"({self.report_error})\n--- dialer stdout ---\n{self.dialer_stdout!r}\n"
            f"--- dialer stderr ---\n{tail(self.dialer_stderr)}\n"
            f"--- listener stdout ---\n{self.listener_stdout!r}\n"
            f"--- listener stderr ---\n{tail(self.listener_stderr)}\n"
            f"--- relay stderr ---\n{tail(self.relay_stderr)}"
        )


def _stop(proc: subprocess.Popen[Any]) -> int | None:
    """End ``proc`` by its PID (SIGTERM, then SIGKILL); its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(_STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(_STOP_WAIT)
    return proc.returncode


def _env(redis_addr: str, extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "REDIS_ADDR": redis_addr,
        "TRANSPORT": "tcp",
    }
    env.update(extra)
    return env


def run_contract(
    lab: NatLab,
    *,
    listener: Sequence[str] = OUR_CLIENT,
    dialer: Sequence[str] = OUR_CLIENT,
    relay: Sequence[str] = OUR_RELAY,
    env: Mapping[str, str] | None = None,
    timeout: float = SUITE_TIMEOUT,
) -> ContractRun:
    """One run of the contract in ``lab`` (built with :func:`contract_lab_options`).

    ``listener``, ``dialer`` and ``relay`` are commands; ``env`` adds variables to all three
    (``MODE``, ``TRANSPORT=tcp`` and ``REDIS_ADDR`` are set here). In a lab with IPv6
    (``contract_lab_options(ipv6=True)``) the observers are started first and their addresses
    passed in ``NATLAB_OBSERVERS``, and the relay listens on its IPv6 address. Blocking: call
    it from a thread in trio code.
    """
    extra = dict(env or {})
    if lab.has_ipv6:
        # IPv6 mode: go learns its public address from our observers (our lab's addition to
        # the contract, read by the go adapter alone), and the relay listens on IPv6 only, so
        # it pushes its IPv6 address.
        observers = start_observers(lab)
        extra.setdefault(OBSERVERS_ENV, " ".join(observers.addrs))
        relay_listen = f"/ip6/{lab.ip6('relay')}/tcp/{lab.fresh_port()}"
    else:
        relay_listen = f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}"
    with (
        tempfile.TemporaryDirectory(prefix="hole-punch-contract-") as tmp,
        RedisServer(lab.ip("relay"), lab.fresh_port(), popen=partial(lab.popen, "relay")) as redis,
    ):
        files: dict[str, IO[str]] = {}

        def out(name: str) -> IO[str]:
            files[name] = open(os.path.join(tmp, name), "w+")  # noqa: SIM115 - closed below
            return files[name]

        def start(host: str, argv: Sequence[str], role_env: dict[str, str], name: str) -> Any:
            return lab.popen(
                host,
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out(f"{name}.out"),
                stderr=out(f"{name}.err"),
                env=_env(redis.addr, {**extra, **role_env}),
                cwd=ROOT,
                text=True,
            )

        procs: list[subprocess.Popen[Any]] = []
        try:
            began = time.monotonic()
            relay_env = {"RELAY_LISTEN": relay_listen}
            procs.append(relay_proc := start("relay", relay, relay_env, "relay"))
            procs.append(listen_proc := start("b", listener, {"MODE": "listen"}, "listener"))
            procs.append(dial_proc := start("a", dialer, {"MODE": "dial"}, "dialer"))
            dialer_exit: int | None
            try:
                dialer_exit = dial_proc.wait(max(0.0, timeout - (time.monotonic() - began)))
            except subprocess.TimeoutExpired:
                dialer_exit = None
            seconds = time.monotonic() - began
            listener_running = listen_proc.poll() is None
            if dialer_exit is None:
                _stop(dial_proc)
            listener_exit = _stop(listen_proc)
            _stop(relay_proc)
        finally:
            for proc in procs:
                _stop(proc)

        def read(name: str) -> str:
            handle = files[name]
            handle.flush()
            handle.seek(0)
            return handle.read()

        try:
            dialer_stdout = read("dialer.out")
            rtt_ms: int | None = None
            report_error: str | None = None
            try:
                rtt_ms = parse_report(dialer_stdout)
            except ValueError as exc:
                report_error = str(exc)
            return ContractRun(
                dialer_exit=dialer_exit,
                dialer_stdout=dialer_stdout,
                dialer_stderr=read("dialer.err"),
                listener_running=listener_running,
                listener_exit=listener_exit,
                listener_stdout=read("listener.out"),
                listener_stderr=read("listener.err"),
                relay_stderr=read("relay.err"),
                seconds=seconds,
                rtt_ms=rtt_ms,
                report_error=report_error,
            )
        finally:
            for handle in files.values():
                with contextlib.suppress(OSError):
                    handle.close()
