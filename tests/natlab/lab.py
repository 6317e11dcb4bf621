"""The NAT lab: real NATs on one Linux machine, built from network namespaces and nftables.

The default topology, ``"two-nats"`` (every box is a network namespace of this lab instance;
nothing touches the root namespace, and no router has a default route, so no packet can leave
the machine)::

                          "internet" namespace: bridge br0, 198.51.100.0/24
        +-----------------+-----------------+-----------------+-----------------+
        |                 |                 |                 |                 |
     relay             relay2            router A          router B
  198.51.100.10     198.51.100.11     WAN 198.51.100.1   WAN 198.51.100.2
                    (optional)        LAN 192.0.2.1/26   LAN 192.0.2.65/26
                                            |                 |
                                         host a            host b
                                       192.0.2.2/26      192.0.2.66/26
                                   (default via .1)   (default via .65)

``NatLab(topology=...)`` picks another one of ``TOPOLOGIES``: ``"same-nat"`` (a and b on one
LAN behind router A, optionally with ``hairpin`` and ``client_isolation``), ``"double-nat"``
(a carrier-grade NAT in 100.64.0.0/10 in front of each home router) or ``"ipv6"`` (two-nats
plus untranslated IPv6 on 2001:db8::/32 behind stateful firewalls; :meth:`NatLab.ip6`).
``topology.py`` draws and describes them, with the nftables rules. ``NatLab(observers=4)``
adds a public host ``"observers"`` with four more addresses (distinct IPv4 /32s and IPv6 /56s)
for peers that trust an observed address only once several observers report it (go-libp2p).

Each router masquerades its LAN behind its WAN address with nftables, in one of
``NAT_MODES``:

``"eim"``
    plain ``masquerade``: the source port is kept whenever the resulting tuple is free, which
    gives endpoint-independent, port-preserving mapping (a typical home router).
``"eim-shifted"``
    endpoint-independent but not port-preserving: the external port is the source port with
    bit 10 flipped (``snat`` to a port computed from the source port alone).
``"symmetric"``
    ``masquerade fully-random``: every new connection gets a random external port, so the port
    a peer observed says nothing about the next connection's port (hole punching must fail).

The forward chain drops everything except replies (``ct state established,related``) and
LAN-to-WAN traffic. What the router does with an unsolicited packet from the WAN addressed to
itself (an early punch SYN: without a DNAT rule it is for the router's own stack) is its
*filtering*, one of ``FILTERINGS``:

``"drop"`` (the default)
    dropped silently: no RST, no ICMP (many home routers). The first SYN that reaches the other
    router before that router's own host has sent its SYN is lost, and the peer's SYN that
    arrives after ours went out matches our conntrack entry in the reply direction.
``"reject"``
    refused by the firewall: TCP with an RST, anything else with ICMP port unreachable
    (OpenWrt's default WAN zone); counted in the ``wan_in_rejected`` counter.
``"none"``
    no filter at all (a Linux box that only does SNAT, like the router of the libp2p
    test-plans hole-punch suite): the router's own TCP/IP stack answers an SYN to a port it
    does not listen on with an RST, and UDP with ICMP port unreachable.

With ``"reject"`` and ``"none"`` an early punch SYN is refused, which is what makes short round
trips hard for hole punching. The IPv6 firewalls of ``"ipv6"`` filter the same way, except that
with ``"none"`` the packet goes on to the host, whose own stack answers.

Use::

    with NatLab(a="eim", b="symmetric") as lab:
        server = lab.spawn_python("relay", SERVER_CODE, "4001")
        lab.run("a", ["ip", "route"])
        lab.public_ip("a")   # "198.51.100.1"

From a trio test: the ``lab`` / ``nat_lab`` fixtures (``conftest.py``) build the lab before the
event loop starts; wait for a program's output with
``await trio.to_thread.run_sync(program.expect, 10)``, or start processes with
``trio.run_process(lab.exec_argv(host, argv))`` (those are not tracked by the lab: end them
yourself).

Processes run inside a namespace through ``ip netns exec``; :meth:`NatLab.popen` and
:meth:`NatLab.spawn_python` remember them and teardown kills those still running, by PID.
For in-process sockets, :meth:`NatLab.netns` moves the *calling thread* into a namespace:
sockets created there belong to that namespace for their whole life, whichever thread uses them.

Teardown (``close``, also run by ``__exit__`` and when set-up fails half way) deletes every
namespace of this instance, which deletes their interfaces and nftables tables with them.
Namespace names carry a random per-instance prefix, so labs can coexist.

Conntrack is per namespace, so each lab starts with empty tables; within one lab, reusing a
local port for the same 4-tuple within the TIME_WAIT of conntrack breaks a punch, so take
ports from :meth:`NatLab.fresh_port`.

Latency: this kernel has no ``sch_netem``. ``NatLab(delays={"ra": 0.025, "relay": 0.01})``
builds the internet without ``br0``: the user-space switch in ``delay_switch.py`` runs in the
internet namespace on the same veth ends (a tracked process, killed on teardown) and holds a
frame from port ``p`` to port ``q`` for ``L_p + L_q``, where ``L`` is the one-way latency of a
public host's port (:attr:`NatLab.switch_ports`: ``"relay"``, ``"relay2"`` and the routers on
the internet, ``"ra"`` and ``"rb"``, or ``"ca"`` and ``"cb"`` in "double-nat"; missing means 0).
So the round trip between two public hosts is ``2 * (L_p + L_q)``; :meth:`NatLab.rtt` computes
it (``a`` and ``b`` use their router's port). Traffic behind a switch port (a host and its
router, a home router and its CGNAT, both hosts of "same-nat") is not delayed. IPv6 frames
cross the switch like any other.
ARP (and IPv6 neighbour discovery) crosses the switch too: the first packet to a new neighbour
waits one more RTT, and while ARP is unresolved the kernel queues only ~200 KB for it (a UDP
burst then loses packets).

Jitter and loss, per port as well: ``NatLab(delays=..., jitter={"ra": 0.002}, loss={"rb":
0.01})``. A frame from ``p`` to ``q`` gets a random extra delay ``X_p + X_q`` (uniform on
``[0, J]`` per port by default, or ``jitter_distribution="normal"``; never negative), without
reordering: frames from one port to another keep their order (``reorder=True`` lifts that).
It is lost with ``1 - (1 - P_p)(1 - P_q)``; loss takes IP frames only, never ARP or IPv6
neighbour discovery, so a lab never stalls on address resolution. ``seed`` makes the draws
reproducible. ``delay_switch.py``'s docstring says why order is kept and ARP spared.
:meth:`NatLab.link` gives a port's :class:`Link`; :meth:`NatLab.mean_rtt` the round trip with
the jitter's mean.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import math
import os
import queue
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.natlab.topology import (
    FILTERINGS,
    INTERNET_NET,
    NAT_MODES,
    OBSERVERS6_IP,
    OBSERVERS_IP,
    RELAY2_6_IP,
    RELAY2_IP,
    RELAY6_IP,
    RELAY_IP,
    STUN2_IP,
    STUN_IP,
    TOPOLOGIES,
    Plan,
    Router,
    firewall6_ruleset,
    make_plan,
    miniupnpd_config,
    miniupnpd_ruleset,
    nat_ruleset,
    observer_addresses,
)

__all__ = [
    "FILTERINGS",
    "INTERNET_NET",
    "NAT_MODES",
    "RELAY2_IP",
    "RELAY_IP",
    "TOPOLOGIES",
    "Daemon",
    "LabError",
    "NatLab",
    "Program",
    "lab_unavailable_reason",
    "port_mapping_unavailable_reason",
    "require_lab",
    "require_port_mapping",
]

ROOT_REASON = "lab needs root"
MINIUPNPD_MISSING = (
    "miniupnpd or stund is not installed (apt-get install -y miniupnpd-nftables stun-server; "
    "scripts/test.sh does it)"
)

_CMD_TIMEOUT = 20.0
_KILL_WAIT = 5.0

_DELAY_SWITCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "delay_switch.py")
_SWITCH_READY_TIMEOUT = 10.0


class LabError(Exception):
    """Building, using or tearing down the lab failed."""


@dataclass(frozen=True)
class Link:
    """What the delay switch does to frames crossing one port (a public host's link).

    ``latency``: one-way seconds; ``jitter``: spread of the random extra delay per crossing
    (seconds; see ``delay_switch.py``); ``loss``: probability that a crossing IP frame is lost.
    """

    latency: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0

    def switch_arg(self, interface: str) -> str:
        """This link as a ``delay_switch.py`` port argument."""
        return f"{interface}={self.latency!r},jitter={self.jitter!r},loss={self.loss!r}"


def _links(
    ports: Sequence[str],
    delays: Mapping[str, float] | None,
    jitter: Mapping[str, float] | None,
    loss: Mapping[str, float] | None,
) -> dict[str, Link] | None:
    """Per-port links from the constructor's maps; None when all three are None (no switch)."""
    if delays is None and jitter is None and loss is None:
        return None
    checked: dict[str, dict[str, float]] = {}
    for what, given in (("delays", delays), ("jitter", jitter), ("loss", loss)):
        for host, value in (given or {}).items():
            if host not in ports:
                raise ValueError(f"{what}: {host!r} is not a public host (use {list(ports)})")
            number = isinstance(value, int | float)
            if what == "loss" and not (number and 0 <= value <= 1):
                raise ValueError(f"loss: {host!r}: want a probability in [0, 1], not {value!r}")
            if what != "loss" and not (number and 0 <= value < 60):
                raise ValueError(f"{what}: {host!r}: want seconds in [0, 60), not {value!r}")
        checked[what] = {port: float((given or {}).get(port, 0.0)) for port in ports}
    return {
        port: Link(checked["delays"][port], checked["jitter"][port], checked["loss"][port])
        for port in ports
    }


# --- prerequisites -----------------------------------------------------------------------------


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@functools.cache
def lab_unavailable_reason() -> str | None:
    """Why the lab cannot run here, or ``None`` if it can.

    Checks: Linux, root, ``ip`` and ``nft`` present, and that a namespace can be created, can
    load an nftables table, and be deleted again. The result is cached for the process.
    """
    if not sys.platform.startswith("linux"):
        return "lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return ROOT_REASON
    ip, nft = _which("ip"), _which("nft")
    if ip is None:
        return "`ip` (iproute2) is not installed"
    if nft is None:
        return "`nft` is not installed (apt-get install -y nftables)"
    probe = f"nlprobe{secrets.token_hex(3)}"
    try:
        _check([ip, "netns", "add", probe])
    except LabError as exc:
        return f"`ip netns add` does not work: {exc}"
    try:
        _check(
            [ip, "netns", "exec", probe, nft, "-f", "-"],
            input="table ip probe {\n chain c {\n  type nat hook postrouting priority srcnat;\n"
            "  masquerade fully-random\n }\n}\n",
        )
    except LabError as exc:
        return f"nftables does not work in a namespace: {exc}"
    finally:
        with contextlib.suppress(LabError):
            _check([ip, "netns", "del", probe])
    return None


def require_lab() -> None:
    """Skip the calling test if the lab cannot run; fail instead under ``scripts/test.sh``.

    Not being root is always a plain skip, so that developers without root can run the suite.
    """
    import pytest

    from tests.conftest import skip_or_fail

    reason = lab_unavailable_reason()
    if reason is None:
        return
    if reason == ROOT_REASON:
        pytest.skip(reason)
    skip_or_fail(f"NAT lab: {reason}")


def port_mapping_unavailable_reason() -> str | None:
    """Why miniupnpd cannot run in the lab here (``None`` if it can)."""
    return lab_unavailable_reason() or (
        MINIUPNPD_MISSING if _which("miniupnpd") is None or _which("stund") is None else None
    )


def require_port_mapping() -> None:
    """:func:`require_lab`, and miniupnpd and stund installed (skip, or fail under
    ``scripts/test.sh``)."""
    from tests.conftest import skip_or_fail

    require_lab()
    if _which("miniupnpd") is None or _which("stund") is None:
        skip_or_fail(f"NAT lab: {MINIUPNPD_MISSING}")


def _check(argv: Sequence[str], *, input: str | None = None, timeout: float = _CMD_TIMEOUT) -> str:
    try:
        done = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _list_netns(ip: str) -> list[str]:
    out = _check([ip, "netns", "list"])
    return [line.split()[0] for line in out.splitlines() if line.strip()]


# --- entering a namespace from this process ----------------------------------------------------

_CLONE_NEWNET = 0x40000000
_libc: Any = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


# --- processes ---------------------------------------------------------------------------------


class Program:
    """A process in a lab namespace that speaks JSON lines on stdin and stdout.

    Reader threads collect stdout lines and stderr, so :meth:`expect` can wait with a timeout
    and error messages can show what the program printed.
    """

    def __init__(self, name: str, popen: subprocess.Popen[str]) -> None:
        self.name = name
        self.popen = popen
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        assert popen.stdout is not None
        assert popen.stderr is not None
        threading.Thread(target=self._read_stdout, args=(popen.stdout,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(popen.stderr,), daemon=True).start()

    def _read_stdout(self, stream: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in stream:
                self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self, stream: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in stream:
                self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def send(self, message: Any) -> None:
        """Write one JSON line to the program's stdin."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(message) + "\n")
        self.popen.stdin.flush()

    def expect(self, timeout: float) -> dict[str, Any]:
        """The next JSON line the program prints; :class:`LabError` on timeout or exit."""
        try:
            line = self._lines.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            raise LabError(f"{self.name}: no output within {timeout:.1f} s{self._tail()}") from None
        if line is None:
            self._lines.put(None)  # stay at end of file for later calls
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1.0)
            raise LabError(f"{self.name}: exited ({self.popen.returncode}){self._tail()}")
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            raise LabError(f"{self.name}: not a JSON line: {line!r}{self._tail()}") from None
        if not isinstance(message, dict):
            raise LabError(f"{self.name}: not a JSON object: {line!r}")
        return message

    def close_stdin(self) -> None:
        """Close stdin: the programs used in these tests take that as their cue to exit."""
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def _tail(self) -> str:
        tail = self.stderr[-3000:].strip()
        return f"\n--- {self.name} stderr (tail) ---\n{tail}" if tail else ""


class Daemon:
    """A long-running program in a lab namespace (miniupnpd, stund) whose output lines (stdout
    and stderr together) are collected by a reader thread, so that its pipe never fills and
    :meth:`wait_for` can wait for a line."""

    def __init__(self, name: str, popen: subprocess.Popen[str]) -> None:
        self.name = name
        self.popen = popen
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        assert popen.stdout is not None
        threading.Thread(target=self._read, args=(popen.stdout,), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float, *, start: int = 0, count: int = 1) -> str:
        """The ``count``-th line from index ``start`` on that matches the regular expression
        ``pattern``; :class:`LabError` (with the output's tail) if the program ends or
        ``timeout`` passes first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._changed:
            while True:
                while index < len(self.lines):
                    if regex.search(self.lines[index]):
                        count -= 1
                        if count == 0:
                            return self.lines[index]
                    index += 1
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    why = "exited" if self._eof else f"no match within {timeout} s"
                    raise LabError(f"{self.name}: {why} waiting for {pattern!r}{self.tail()}")
                self._changed.wait(left)

    def tail(self, n: int = 30) -> str:
        with self._changed:
            text = "\n".join(self.lines[-n:])
        return f"\n--- {self.name} output (tail) ---\n{text}" if text else ""

    def stop(self, timeout: float = _KILL_WAIT) -> int:
        """SIGTERM by PID (the program cleans up), SIGKILL if it does not exit in time."""
        if self.popen.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(self.popen.pid, signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.kill(self.popen.pid, signal.SIGKILL)
        return self.popen.wait(timeout=timeout)


#: How long miniupnpd may take to start: with a STUN test that gets no answer to some of its
#: four requests it waits 3 s for each of its 3 rounds (``upnpstun.c``).
MINIUPNPD_START_TIMEOUT = 20.0


# --- the lab -----------------------------------------------------------------------------------


def _per_router(
    what: str,
    value: str | Mapping[str, str],
    allowed: Sequence[str],
    plan: Plan,
    default: str,
) -> dict[str, str]:
    """One value per router of ``plan``, from one value for all or a mapping whose keys are
    sites (``"a"``, ``"b"``: every router on that site's way out) or router names (win)."""
    routers = plan.router_names()
    if isinstance(value, str):
        if value not in allowed:
            raise ValueError(f"{what} must be one of {allowed}, not {value!r}")
        return dict.fromkeys(routers, value)
    out = dict.fromkeys(routers, default)
    for key in sorted(value, key=lambda k: k in routers):  # sites first, routers override
        how = value[key]
        if how not in allowed:
            raise ValueError(f"{what}: {key!r}: want one of {allowed}, not {how!r}")
        if key in routers:
            out[key] = how
        elif key in plan.host_ips:
            out.update(dict.fromkeys(plan.site_routers(key), how))
        else:
            raise ValueError(f"{what}: {key!r} is neither a site nor a router ({routers})")
    return out


class NatLab:
    """NAT'ed hosts ``a`` and ``b``, a relay (and optionally a second public host) on a bridged
    "internet", in one of ``TOPOLOGIES`` (see ``topology.py``).

    Host names: ``"relay"``, ``"relay2"`` (if ``relay2=True``), ``"a"`` and ``"b"``, the
    routers (:attr:`routers`: ``"ra"``, ``"rb"``; only ``"ra"`` in ``"same-nat"``; plus the
    CGNATs ``"ca"``, ``"cb"`` in ``"double-nat"``) and ``"internet"`` (the bridge).

    ``a`` and ``b`` are the mapping modes (``NAT_MODES``) of the home routers of ``a`` and
    ``b``; in ``"same-nat"`` they share one router, so ``b`` must be left out or equal ``a``.
    ``cgnat`` is the CGNATs' mode (``"double-nat"``), one for both or ``{"a": ..., "b": ...}``.
    ``filtering`` is one of ``FILTERINGS`` for every router, or a mapping whose keys are sites
    (``"a"``: every router on a's way out) or router names (these win); unnamed routers drop.
    ``hairpin`` makes every NAT loop LAN packets for its public address back to the LAN host
    owning that mapping (useful in ``"same-nat"``; see ``topology.nat_ruleset``).
    ``client_isolation`` (``"same-nat"`` only) isolates the LAN bridge's ports from each other,
    as guest Wi-Fi does: ``a`` and ``b`` share the NAT but cannot reach each other's LAN
    address, so hairpinning is their only direct path.
    ``delays`` (one-way seconds per public host: ``relay``, ``relay2`` and the routers on the
    internet, :attr:`switch_ports`) swaps the bridge for the delaying user-space switch (see the
    module docstring, :meth:`rtt` and :meth:`switch_stats`); so do ``jitter`` (seconds) and
    ``loss`` (probability) per public host, with ``jitter_distribution`` (``"uniform"`` or
    ``"normal"``), ``reorder`` and ``seed`` for the switch (module docstring).
    ``observers`` adds the public host ``"observers"`` with that many more addresses, each a
    distinct observer group (:meth:`observer_ips`, :meth:`observer_ip6s`; ``topology.py``).
    ``port_mapping`` names routers that run Debian's miniupnpd 2.3.1 (UPnP IGD on
    ``http://<LAN address>:5000/rootDesc.xml``, NAT-PMP and PCP on port 5351), started by
    PID in the router's namespace once the lab is built (:meth:`start_miniupnpd`,
    :meth:`stop_miniupnpd`, its output in :meth:`miniupnpd`, its forwardings in
    :meth:`miniupnpd_redirects`). miniupnpd refuses to forward while its external address is
    reserved, and every address here is (documentation ranges, 100.64.0.0/10); with
    ``port_mapping_stun`` (the default) it learns its address from a STUN server, stund on
    the public host ``"stun"`` (198.51.100.30 and .31), whose answers it does not check
    against the reserved list: forwarding works behind a router on the internet, and is
    refused behind a CGNAT (its STUN test finds the CGNAT filtering). The rules that hook
    miniupnpd's chains into the router: ``topology.miniupnpd_ruleset``.
    ``port_mapping_options`` adds miniupnpd.conf lines (``topology.miniupnpd_config``).

    Set-up runs in ``__enter__`` (or :meth:`start`); it is blocking and takes a fraction of a
    second. Use it before ``trio.run`` or from a worker thread.
    """

    relay_ip = RELAY_IP
    relay2_ip = RELAY2_IP

    def __init__(
        self,
        a: str = "eim",
        b: str | None = None,
        *,
        relay2: bool = True,
        delays: Mapping[str, float] | None = None,
        filtering: str | Mapping[str, str] = "drop",
        topology: str = "two-nats",
        hairpin: bool = False,
        client_isolation: bool = False,
        cgnat: str | Mapping[str, str] = "eim",
        jitter: Mapping[str, float] | None = None,
        loss: Mapping[str, float] | None = None,
        jitter_distribution: str = "uniform",
        reorder: bool = False,
        seed: int | None = None,
        observers: int = 0,
        port_mapping: Sequence[str] = (),
        port_mapping_stun: bool = True,
        port_mapping_options: Mapping[str, str] | None = None,
    ) -> None:
        #: The address plan (see ``topology.py``).
        self.plan = make_plan(topology)
        self.topology = topology
        if b is None:
            b = a if topology == "same-nat" else "eim"
        for mode in (a, b):
            if mode not in NAT_MODES:
                raise ValueError(f"NAT mode must be one of {NAT_MODES}, not {mode!r}")
        if topology == "same-nat" and a != b:
            raise ValueError("same-nat: a and b share one router; give its mode as a")
        home = {site: self.plan.home_router(site) for site in ("a", "b")}
        if cgnat != "eim" and topology != "double-nat":
            raise ValueError("cgnat: only the double-nat topology has CGNATs")
        if not isinstance(cgnat, str) and set(cgnat) & set(home.values()):
            raise ValueError("cgnat: give the home routers' modes as a and b")
        #: Mapping mode per router name.
        self.mapping = _per_router("cgnat", cgnat, NAT_MODES, self.plan, "eim")
        self.mapping.update({home["a"]: a, home["b"]: b})
        #: Filtering per router name.
        self.router_filtering = _per_router("filtering", filtering, FILTERINGS, self.plan, "drop")
        #: Mapping modes and filtering of the home routers of ``a`` and ``b``.
        self.modes = {"a": a, "b": b}
        self.filtering = {site: self.router_filtering[home[site]] for site in ("a", "b")}
        self.hairpin = hairpin
        if client_isolation and topology != "same-nat":
            raise ValueError("client_isolation: only the same-nat topology has a shared LAN")
        self.client_isolation = client_isolation
        self.has_relay2 = relay2
        #: The ``observers`` host's extra addresses (``topology.observer_addresses``).
        self.observers = observer_addresses(observers)
        #: Routers that run miniupnpd (UPnP IGD, NAT-PMP, PCP), and whether it finds its
        #: external address with STUN (then a public host ``"stun"`` runs stund).
        for router_name in port_mapping:
            if router_name not in self.plan.router_names():
                raise ValueError(
                    f"port_mapping: {router_name!r} is not a router of {topology!r} "
                    f"({self.plan.router_names()})"
                )
        self.port_mapping = tuple(port_mapping)
        self.port_mapping_stun = port_mapping_stun and bool(port_mapping)
        self._miniupnpd_options = dict(port_mapping_options or {})
        self.daemons: dict[str, Daemon] = {}
        self._tmpdir: str | None = None
        # The link of each switch port (public host); None: the kernel bridge, no switch.
        self.links = _links(self.switch_ports, delays, jitter, loss)
        #: One-way latency per switch port; None without the switch.
        self.delays = None if self.links is None else {p: k.latency for p, k in self.links.items()}
        if jitter_distribution not in ("uniform", "normal"):
            raise ValueError(
                f"jitter_distribution: 'uniform' or 'normal', not {jitter_distribution!r}"
            )
        self._jitter_distribution = jitter_distribution
        self._switch_options = [
            f"--jitter-distribution={jitter_distribution}",
            *(["--reorder"] if reorder else []),
            *([f"--seed={seed}"] if seed is not None else []),
        ]
        self.switch: Program | None = None
        self.prefix = f"nl{secrets.token_hex(3)}-"
        roles = ["internet", *self._public, *self.plan.router_names(), *self.plan.host_ips]
        self._ns = {role: self.prefix + role for role in roles}
        self._created: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()
        self._used_ports: set[int] = set()
        self._started = False
        self._closed = False
        ip, nft = _which("ip"), _which("nft")
        if ip is None or nft is None:
            raise LabError(lab_unavailable_reason() or "ip or nft missing")
        self._ip, self._nft = ip, nft
        self.setup_seconds = 0.0
        self.teardown_seconds = 0.0

    # -- names and addresses

    @property
    def _public(self) -> dict[str, tuple[str, str]]:
        """Public hosts other than routers: name -> (IPv4, IPv6) address."""
        hosts = {"relay": (RELAY_IP, RELAY6_IP)}
        if self.has_relay2:
            hosts["relay2"] = (RELAY2_IP, RELAY2_6_IP)
        if self.observers:
            hosts["observers"] = (OBSERVERS_IP, OBSERVERS6_IP)
        if self.port_mapping_stun:
            hosts["stun"] = (STUN_IP, "2001:db8::30")
        return hosts

    @property
    def hosts(self) -> list[str]:
        return list(self._ns)

    @property
    def routers(self) -> list[str]:
        """This topology's routers, each after the router it sits behind."""
        return self.plan.router_names()

    @property
    def switch_ports(self) -> list[str]:
        """The hosts on the internet's bridge or switch: the public hosts and the routers that
        face the internet (the keys of ``delays``)."""
        return [*self._public, *self.plan.internet_routers()]

    @property
    def has_ipv6(self) -> bool:
        return self.plan.ipv6

    @property
    def namespaces(self) -> list[str]:
        """Namespace names of this instance (for ``ip netns exec`` or ``/run/netns/<name>``)."""
        return list(self._ns.values())

    def namespace(self, host: str) -> str:
        try:
            return self._ns[host]
        except KeyError:
            raise ValueError(
                f"no host {host!r} in this lab (hosts: {', '.join(self._ns)})"
            ) from None

    def ip(self, host: str) -> str:
        """The host's own IPv4 address: the LAN address for ``a``/``b``, the WAN address for
        routers (a home router's is in 100.64.0.0/10 behind a CGNAT)."""
        if host in self.plan.host_ips:
            return self.plan.host_ips[host]
        if host in self.routers:
            return self.plan.router(host).wan_ip
        if host in self._public:
            return self._public[host][0]
        raise ValueError(f"host {host!r} has no address")

    def ip6(self, host: str) -> str:
        """The host's IPv6 address (``"ipv6"`` topology): global, untranslated, so also the
        address the internet sees; a router's WAN address."""
        if not self.has_ipv6:
            raise ValueError(f"the {self.topology!r} topology has no IPv6")
        if host in self.plan.host_ip6s:
            return self.plan.host_ip6s[host]
        if host in self.routers:
            wan6 = self.plan.router(host).wan6
            assert wan6 is not None
            return wan6
        if host in self._public:
            return self._public[host][1]
        raise ValueError(f"host {host!r} has no address")

    def observer_ips(self) -> list[str]:
        """The ``observers`` host's observer addresses (IPv4), one per observer group."""
        return [observer.ip for observer in self.observers]

    def observer_ip6s(self) -> list[str]:
        """The ``observers`` host's IPv6 observer addresses, each in a /56 of its own."""
        if not self.has_ipv6:
            raise ValueError(f"the {self.topology!r} topology has no IPv6")
        return [observer.ip6 for observer in self.observers]

    def public_ip(self, host: str) -> str:
        """The IPv4 address the internet sees for ``host``: the WAN address of the router it
        reaches the internet through (the CGNAT's in ``"double-nat"``) if NAT'ed."""
        if host in self.plan.host_ips or host in self.routers:
            return self.plan.internet_router(host).wan_ip
        return self.ip(host)

    def router_of(self, host: str) -> str:
        """The router whose LAN ``host`` (or a router behind a CGNAT) is on."""
        return self.plan.router_of(host).name

    def router_lan_ip(self, site: str) -> str:
        """The LAN address of the home router of ``site`` (``"a"`` or ``"b"``)."""
        return self.plan.router_of(site).lan_ip

    def _switch_port(self, host: str) -> str:
        if host in self.plan.host_ips or host in self.routers:
            port = self.plan.internet_router(host).name
        else:
            port = host
        if port not in self.switch_ports:
            raise ValueError(f"host {host!r} is not on the internet (or behind a router on it)")
        return port

    def latency(self, host: str) -> float:
        """One-way latency (seconds) of the switch port that ``host`` reaches the internet by."""
        return self.link(host).latency

    def link(self, host: str) -> Link:
        """The :class:`Link` of the switch port that ``host`` reaches the internet by."""
        port = self._switch_port(host)
        return Link() if self.links is None else self.links[port]

    def mean_rtt(self, host1: str, host2: str) -> float:
        """:meth:`rtt` plus the mean of the jitter on the way there and back (seconds).

        Each crossing of a port adds its jitter's mean (``J / 2`` for uniform jitter, ``J *
        sqrt(2 / pi)`` for normal, the cap neglected); frames queued behind others wait a bit
        longer than that.
        """
        if self._switch_port(host1) == self._switch_port(host2):
            return 0.0
        factor = 0.5 if self._jitter_distribution == "uniform" else math.sqrt(2 / math.pi)
        spread = self.link(host1).jitter + self.link(host2).jitter
        return self.rtt(host1, host2) + 2 * factor * spread

    def rtt(self, host1: str, host2: str) -> float:
        """The round trip time (seconds) the switch adds between two hosts.

        ``2 * (L_p + L_q)`` for their ports ``p`` and ``q``; hosts behind routers use the port
        of the router that faces the internet. 0 without ``delays``, and between hosts that
        share a port (a host and its router; both hosts in ``"same-nat"``).
        """
        p, q = self._switch_port(host1), self._switch_port(host2)
        if p == q:
            return 0.0
        return 2 * (self.latency(host1) + self.latency(host2))

    def fresh_port(self) -> int:
        """A TCP/UDP port not handed out before in this lab, below the ephemeral range."""
        with self._lock:
            while True:
                port = random.randrange(10000, 32000)
                if port not in self._used_ports:
                    self._used_ports.add(port)
                    return port

    # -- life cycle

    def __enter__(self) -> NatLab:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(raise_errors=exc_info[0] is None)

    def start(self) -> None:
        if self._started:
            raise LabError("lab already started")
        self._started = True
        began = time.monotonic()
        try:
            self._build()
        except BaseException:
            self.close(raise_errors=False)
            raise
        self.setup_seconds = time.monotonic() - began

    def _batch(self, ns: str | None, lines: Sequence[str]) -> None:
        argv = [self._ip, *(["-n", ns] if ns else []), "-batch", "-"]
        _check(argv, input="".join(line + "\n" for line in lines))

    def _sysctl(self, ns: str, settings: dict[str, str]) -> None:
        script = "".join(
            f"echo {value} > /proc/sys/{key.replace('.', '/')} && "
            for key, value in settings.items()
        )
        _check([self._ip, "netns", "exec", ns, "sh", "-c", script + "true"])

    def _build(self) -> None:
        ns = self._ns
        plan = self.plan
        for name in ns.values():
            _check([self._ip, "netns", "add", name])
            self._created.append(name)
        for role, name in ns.items():
            self._sysctl(name, self._sysctl_settings(role))
        # A LAN with several hosts is a bridge in its router: bridged frames between those
        # hosts must not go through the router's (IPv4 and IPv6) firewall, as in a real one.
        for router in plan.routers:
            if len(router.members) > 1:
                _check(
                    [self._ip, "netns", "exec", ns[router.name], "sh", "-c",
                     "for f in /proc/sys/net/bridge/bridge-nf-call-ip*tables; do "
                     '[ ! -e "$f" ] || echo 0 > "$f"; done'],
                )  # fmt: skip

        internet = ["link set lo up"]
        if self.delays is None:
            internet.append("link add br0 type bridge stp_state 0 forward_delay 0")
        for role in self._public:
            internet.append(f"link add p-{role} type veth peer name eth0 netns {ns[role]}")
        for router_name in plan.internet_routers():
            internet.append(
                f"link add p-{router_name} type veth peer name wan0 netns {ns[router_name]}"
            )
        for port in self.switch_ports:
            if self.delays is None:
                internet.append(f"link set p-{port} master br0")
            internet.append(f"link set p-{port} up")
        if self.delays is None:
            internet.append("link set br0 up")
        self._batch(ns["internet"], internet)

        # IPv6 routing on the internet: each LAN prefix via its router, no default route.
        routes6 = [
            (router.lan6_net, router.wan6)
            for router in plan.routers
            if router.lan6_net is not None and router.wan6 is not None
        ]
        # ... and each observer's /56 via the observers host.
        if plan.ipv6:
            routes6 += [(observer.prefix6, OBSERVERS6_IP) for observer in self.observers]
        for role, (address, address6) in self._public.items():
            lines = ["link set lo up", f"addr add {address}/24 dev eth0"]
            if plan.ipv6:
                lines.append(f"addr add {address6}/64 dev eth0 nodad")
            if role == "stun":
                lines.append(f"addr add {STUN2_IP}/24 dev eth0")
            if role == "observers":
                for observer in self.observers:
                    lines.append(f"addr add {observer.ip}/24 dev eth0")
                    if plan.ipv6:
                        lines.append(f"addr add {observer.ip6}/128 dev eth0 nodad")
            lines.append("link set eth0 up")
            if plan.ipv6:
                lines += [f"route add {net} via {via}" for net, via in routes6 if via != address6]
            self._batch(ns[role], lines)
        for router in plan.routers:
            self._build_router(router, routes6)
        for host, address in plan.host_ips.items():
            router = plan.router_of(host)
            lines = [
                "link set lo up",
                f"addr add {address}/{router.lan_len} dev eth0",
                "link set eth0 up",
                f"route add default via {router.lan_ip}",
            ]
            if host in plan.host_ip6s:
                lines += [
                    f"addr add {plan.host_ip6s[host]}/64 dev eth0 nodad",
                    f"route add default via {router.lan6_ip}",
                ]
            self._batch(ns[host], lines)
        if self.links is not None:
            self._start_switch(self.links)
        if self.port_mapping:
            self._start_port_mapping()

    def _start_port_mapping(self) -> None:
        """stund on the ``stun`` host (if used), then miniupnpd on each port-mapping router,
        each waited for until it serves."""
        self._tmpdir = tempfile.mkdtemp(prefix=f"{self.prefix}miniupnpd-")
        if self.port_mapping_stun:
            stund = _which("stund")
            if stund is None:
                raise LabError(MINIUPNPD_MISSING)
            daemon = self.start_daemon(
                "stun", "stund", [stund, "-v", "-h", STUN_IP, "-a", STUN2_IP]
            )
            # It opens four sockets (two addresses x two ports) and says so for each.
            daemon.wait_for(r"^Opened port", 10.0, count=4)
        for router_name in self.port_mapping:
            self.start_miniupnpd(router_name)

    def miniupnpd_config(self, router: str) -> str:
        """The miniupnpd.conf text the lab gives ``router``."""
        return miniupnpd_config(
            self.plan.router(router),
            str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.prefix}{router}")),
            stun=self.port_mapping_stun,
            options=self._miniupnpd_options,
        )

    def start_daemon(self, host: str, name: str, argv: Sequence[str]) -> Daemon:
        """Start a long-running program in ``host`` (tracked: teardown kills it by PID)."""
        proc = self.popen(
            host,
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        daemon = Daemon(f"{name}@{host}", proc)
        self.daemons[name if name != "miniupnpd" else f"miniupnpd@{host}"] = daemon
        return daemon

    def start_miniupnpd(self, router: str) -> Daemon:
        """Load ``table inet miniupnpd`` (once) and start miniupnpd on ``router`` in the
        foreground (``-d``: logs on stderr, no fork, so its PID is ours to stop); returns
        once it listens for NAT-PMP/PCP, its last step of start-up."""
        binary = _which("miniupnpd")
        if binary is None:
            raise LabError(MINIUPNPD_MISSING)
        assert self._tmpdir is not None
        ns = self.namespace(router)
        if "miniupnpd" not in _check([self._ip, "netns", "exec", ns, self._nft, "list", "tables"]):
            _check([self._ip, "netns", "exec", ns, self._nft, "-f", "-"], input=miniupnpd_ruleset())
        conf = os.path.join(self._tmpdir, f"{router}.conf")
        with open(conf, "w", encoding="ascii") as f:
            f.write(self.miniupnpd_config(router))
        pidfile = os.path.join(self._tmpdir, f"{router}.pid")
        daemon = self.start_daemon(router, "miniupnpd", [binary, "-d", "-f", conf, "-P", pidfile])
        daemon.wait_for(r"Listening for NAT-PMP/PCP traffic on port 5351", MINIUPNPD_START_TIMEOUT)
        return daemon

    def miniupnpd(self, router: str) -> Daemon:
        """The miniupnpd running on ``router`` (its output, its PID)."""
        try:
            return self.daemons[f"miniupnpd@{router}"]
        except KeyError:
            raise ValueError(
                f"no miniupnpd on {router!r} (port_mapping={self.port_mapping})"
            ) from None

    def miniupnpd_redirects(self, router: str) -> dict[int, str]:
        """The port forwardings miniupnpd has in ``router``'s nftables now: external TCP
        port -> ``"internal ip:port"``, from the DNAT rules of its ``prerouting_miniupnpd``
        chain (e.g. ``iif "wan0" @nh,72,8 0x6 th dport 4001 dnat ip to 192.0.2.2:4001``;
        ``@nh,72,8 0x6`` is the IPv4 protocol byte, TCP)."""
        out: str = self.run(
            router, [self._nft, "list", "chain", "inet", "miniupnpd", "prerouting_miniupnpd"]
        ).stdout
        return {
            int(port): target
            for port, target in re.findall(r"@nh,72,8 0x6 th dport (\d+) dnat ip to (\S+)", out)
        }

    def stop_miniupnpd(self, router: str) -> int:
        """Stop ``router``'s miniupnpd by its PID (SIGTERM); its exit status."""
        return self.miniupnpd(router).stop()

    def _sysctl_settings(self, role: str) -> dict[str, str]:
        settings: dict[str, str] = {}
        if self.plan.ipv6 and role != "internet":
            # IPv6 without duplicate address detection (addresses usable at once) and without
            # router advertisements: every address and route is configured.
            for scope in ("all", "default"):
                settings[f"net.ipv6.conf.{scope}.disable_ipv6"] = "0"
                settings[f"net.ipv6.conf.{scope}.accept_dad"] = "0"
                settings[f"net.ipv6.conf.{scope}.dad_transmits"] = "0"
                settings[f"net.ipv6.conf.{scope}.accept_ra"] = "0"
                settings[f"net.ipv6.conf.{scope}.router_solicitations"] = "0"
        else:
            # No IPv6 (no link-local chatter, no DAD).
            settings["net.ipv6.conf.all.disable_ipv6"] = "1"
            settings["net.ipv6.conf.default.disable_ipv6"] = "1"
        if role in self.routers:  # forwarding only inside routers
            settings["net.ipv4.ip_forward"] = "1"
            settings["net.ipv4.conf.all.send_redirects"] = "0"
            settings["net.ipv4.conf.default.send_redirects"] = "0"
            if self.plan.ipv6:
                settings["net.ipv6.conf.all.forwarding"] = "1"
        return settings

    def _build_router(self, router: Router, routes6: Sequence[tuple[str, str]]) -> None:
        """Its LAN side (with its members' ends), addresses, routes and nftables rules; its
        ``wan0`` already exists (made by the internet or by the router in front)."""
        ns = self._ns
        lines = ["link set lo up"]
        if len(router.members) == 1:
            ((member, _),) = router.members
            end = "wan0" if member in self.routers else "eth0"
            lines.append(f"link add lan0 type veth peer name {end} netns {ns[member]}")
        else:
            lines.append("link add lan0 type bridge stp_state 0 forward_delay 0")
            for member, _ in router.members:
                end = "wan0" if member in self.routers else "eth0"
                lines += [
                    f"link add l-{member} type veth peer name {end} netns {ns[member]}",
                    f"link set l-{member} master lan0",
                    f"link set l-{member} up",
                ]
                if self.client_isolation:
                    lines.append(f"link set l-{member} type bridge_slave isolated on")
        lines += [
            f"addr add {router.wan_ip}/{router.wan_len} dev wan0",
            f"addr add {router.lan_ip}/{router.lan_len} dev lan0",
        ]
        if router.wan6 is not None and router.lan6_ip is not None:
            lines += [
                f"addr add {router.wan6}/64 dev wan0 nodad",
                f"addr add {router.lan6_ip}/64 dev lan0 nodad",
            ]
        lines += ["link set wan0 up", "link set lan0 up"]
        if router.gateway is not None:
            lines.append(f"route add {INTERNET_NET} via {router.gateway}")
        if router.upstream == "internet":
            lines += [f"route add {net} via {via}" for net, via in routes6 if via != router.wan6]
        self._batch(ns[router.name], lines)
        rules = nat_ruleset(
            router,
            self.mapping[router.name],
            self.router_filtering[router.name],
            hairpin=self.hairpin,
            port_mapping=router.name in self.port_mapping,
        )
        if router.wan6 is not None:
            rules += firewall6_ruleset(router, self.router_filtering[router.name])
        _check([self._ip, "netns", "exec", ns[router.name], self._nft, "-f", "-"], input=rules)

    def _start_switch(self, links: Mapping[str, Link]) -> None:
        """Run ``delay_switch.py`` on the internet's veth ends; wait until it forwards."""
        specs = [link.switch_arg(f"p-{port}") for port, link in links.items()]
        proc = self.popen(
            "internet",
            [sys.executable, "-u", _DELAY_SWITCH, *self._switch_options, *specs],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.switch = Program("delay_switch", proc)
        ready = self.switch.expect(_SWITCH_READY_TIMEOUT)
        if ready != {"event": "ready"}:
            raise LabError(f"delay_switch: expected the ready line, got {ready}")

    def switch_stats(self, timeout: float = 5.0) -> dict[str, Any]:
        """The delay switch's counters (frames in/out, errors, worst lateness, ...)."""
        if self.switch is None:
            raise LabError("this lab has no delay switch (built without delays)")
        self.switch.send({"cmd": "stats"})
        return self.switch.expect(timeout)

    def close(self, *, raise_errors: bool = True) -> None:
        """Kill this lab's processes and delete its namespaces. Idempotent."""
        if self._closed:
            return
        self._closed = True
        began = time.monotonic()
        errors: list[str] = []
        with self._lock:
            procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
        for proc in procs:
            try:
                proc.wait(timeout=_KILL_WAIT)
            except subprocess.TimeoutExpired:
                errors.append(f"process {proc.pid} did not exit after SIGKILL")
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        # Anything else still inside one of *our* namespaces was started there by a test through
        # this lab (e.g. a grandchild); a namespace with live processes would outlive deletion.
        try:
            ours = [name for name in _list_netns(self._ip) if name.startswith(self.prefix)]
        except LabError as exc:
            errors.append(str(exc))
            ours = list(self._created)
        for name in ours:
            with contextlib.suppress(LabError):
                for pid in _check([self._ip, "netns", "pids", name]).split():
                    with contextlib.suppress(OSError, ValueError):
                        os.kill(int(pid), 9)
        # Hosts first, then routers, then the bridge; veths and nft tables go with them.
        for name in sorted(ours, key=lambda n: n.endswith("internet")):
            try:
                _check([self._ip, "netns", "del", name])
            except LabError as exc:
                errors.append(str(exc))
        with contextlib.suppress(LabError):
            left = [name for name in _list_netns(self._ip) if name.startswith(self.prefix)]
            if left:
                errors.append(f"namespaces left behind: {left}")
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self.teardown_seconds = time.monotonic() - began
        if errors and raise_errors:
            raise LabError("teardown: " + "; ".join(errors))
        if errors:
            print(f"NatLab teardown problems: {errors}", file=sys.stderr)

    def leftovers(self) -> list[str]:
        """Namespaces of this instance that still exist (empty after a clean teardown)."""
        return [name for name in _list_netns(self._ip) if name.startswith(self.prefix)]

    # -- running things inside

    def _require_running(self) -> None:
        if not self._started or self._closed:
            raise LabError("lab is not running")

    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside ``host``'s namespace."""
        return [self._ip, "netns", "exec", self.namespace(host), *argv]

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``host``; teardown kills it (by PID) if it is still running."""
        self._require_running()
        proc: subprocess.Popen[Any] = subprocess.Popen(self.exec_argv(host, argv), **kwargs)
        with self._lock:
            self._procs.append(proc)
        return proc

    def run(
        self,
        host: str,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = True,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside ``host`` to completion (killed after ``timeout`` seconds)."""
        self._require_running()
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.exec_argv(host, argv), timeout=timeout, check=check, **kwargs)

    def spawn_python(
        self,
        host: str,
        code: str,
        *args: str,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Program:
        """Run ``python -u -c code args...`` inside ``host``; see :class:`Program`."""
        proc = self.popen(
            host,
            [sys.executable, "-u", "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        return Program(name or host, proc)

    def spawn_example(self, host: str, script: str, *args: str) -> Program:
        """Run ``examples/nat/<script> --json args...`` inside ``host``; see :class:`Program`.

        Its stdin is closed from the start: the example scripts run until they are ended.
        """
        path = Path(__file__).resolve().parents[2] / "examples" / "nat" / script
        proc = self.popen(
            host,
            [sys.executable, "-u", str(path), "--json", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        return Program(f"{script}@{host}", proc)

    @contextlib.contextmanager
    def netns(self, host: str) -> Iterator[None]:
        """Move the calling thread into ``host``'s namespace for the ``with`` block.

        Sockets created inside the block stay in that namespace. Only the calling thread moves;
        run it in a dedicated thread if other code shares this one.
        """
        self._require_running()
        with (
            open("/proc/thread-self/ns/net", "rb") as original,
            open(f"/run/netns/{self.namespace(host)}", "rb") as target,
        ):
            _setns(target.fileno())
            try:
                yield
            finally:
                _setns(original.fileno())

    # -- inspection

    def nft_ruleset(self, router: str) -> str:
        out: str = self.run(router, [self._nft, "list", "ruleset"]).stdout
        return out

    def conntrack(self, host: str) -> list[dict[str, Any]]:
        """The host's conntrack table (``/proc/net/nf_conntrack`` of its namespace), one dict
        per entry: ``family`` ("ipv4"/"ipv6"), ``proto`` ("tcp", "udp", ...), ``state`` (TCP's,
        e.g. "SYN_SENT", "ESTABLISHED", "CLOSE"; None for others), ``original`` and ``reply``
        (each ``{"src", "dst", "sport", "dport"}``, ports as ints where the protocol has them)
        and ``flags`` (e.g. ``["ASSURED"]``). A NAT's mapping shows in ``reply``: the packet
        that would come back is addressed to the external address and port."""
        out: str = self.run(host, ["cat", "/proc/net/nf_conntrack"]).stdout
        entries = []
        for line in out.splitlines():
            fields = line.split()
            if len(fields) < 5:
                continue
            entry: dict[str, Any] = {
                "family": fields[0],
                "proto": fields[2],
                "state": None,
                "original": {},
                "reply": {},
                "flags": [],
            }
            for field in fields[5:]:
                if field.startswith("["):
                    entry["flags"].append(field.strip("[]"))
                elif "=" in field:
                    key, value = field.split("=", 1)
                    if key not in ("src", "dst", "sport", "dport"):
                        continue
                    side = "original" if key not in entry["original"] else "reply"
                    entry[side][key] = int(value) if key in ("sport", "dport") else value
                elif field.isupper():
                    entry["state"] = field
            entries.append(entry)
        return entries

    def counters(self, router: str, *, ipv6: bool = False) -> dict[str, int]:
        """The packet counts of the router's nftables counters (``table ip natlab``, or with
        ``ipv6`` the firewall's ``table ip6 natlab6``), by counter name."""
        if router not in self.routers:
            raise ValueError(f"{router!r} is not a router (this lab has {self.routers})")
        table = ["ip6", "natlab6"] if ipv6 else ["ip", "natlab"]
        out = self.run(router, [self._nft, "list", "counters", "table", *table]).stdout
        return {
            counter: int(packets)
            for counter, packets in re.findall(r"counter (\w+) \{\s*packets (\d+)", out)
        }

    def dropped(self, router: str, *, ipv6: bool = False) -> dict[str, int]:
        """Packets the router dropped or rejected so far: ``{"wan_in": n, "wan_in_rejected":
        r, "forward": m, "invalid": i}`` (unsolicited from the WAN, refused by the firewall,
        dropped while forwarding, invalid for conntrack), for IPv4 also ``"loopback"`` /
        ``"loopback_rejected"`` (LAN packets for the WAN address that were not hairpinned).
        With ``ipv6``: the IPv6 firewall's."""
        return {
            name.removesuffix("_dropped"): packets
            for name, packets in self.counters(router, ipv6=ipv6).items()
            if name.endswith(("_dropped", "_rejected"))
        }
