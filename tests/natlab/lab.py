"""The NAT lab: real NATs on one Linux machine, built from network namespaces and nftables.

Topology (every box is a network namespace of this lab instance; nothing touches the root
namespace, and no router has a default route, so no packet can leave the machine)::

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

Each router masquerades its LAN behind its WAN address with nftables, in one of two modes:

``"eim"``
    plain ``masquerade``: the source port is kept whenever the resulting tuple is free, which
    gives endpoint-independent, port-preserving mapping (a typical home router).
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
trips hard for hole punching.

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
public host's port (``"relay"``, ``"relay2"``, ``"ra"``, ``"rb"``; missing means 0). So the round
trip between two public hosts is ``2 * (L_p + L_q)``; :meth:`NatLab.rtt` computes it (``a`` and
``b`` use their router's port). Traffic between a host and its own router is not delayed.
ARP crosses the switch too: the first packet to a new neighbour waits one more RTT, and while
ARP is unresolved the kernel queues only ~200 KB for it (a UDP burst then loses packets).

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
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

INTERNET_NET = "198.51.100.0/24"
RELAY_IP = "198.51.100.10"
RELAY2_IP = "198.51.100.11"

NAT_MODES = ("eim", "symmetric")
#: What a router does with unsolicited inbound packets (see the module docstring).
FILTERINGS = ("drop", "reject", "none")

ROOT_REASON = "lab needs root"

_CMD_TIMEOUT = 20.0
_KILL_WAIT = 5.0


@dataclass(frozen=True)
class _Site:
    """One NAT'ed site: a router and the host behind it."""

    wan_ip: str
    lan_net: str
    lan_router_ip: str
    host_ip: str
    prefix_len: int


_SITES = {
    "a": _Site("198.51.100.1", "192.0.2.0/26", "192.0.2.1", "192.0.2.2", 26),
    "b": _Site("198.51.100.2", "192.0.2.64/26", "192.0.2.65", "192.0.2.66", 26),
}
_ROUTERS = {"ra": "a", "rb": "b"}
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


# --- the lab -----------------------------------------------------------------------------------


def _nft_ruleset(site: _Site, mode: str, filtering: str = "drop") -> str:
    masquerade = "masquerade fully-random" if mode == "symmetric" else "masquerade"
    unsolicited = {
        "drop": 'iifname "wan0" counter name "wan_in_dropped" drop',
        "reject": (
            'iifname "wan0" meta l4proto tcp counter name "wan_in_rejected" '
            "reject with tcp reset\n"
            '        iifname "wan0" counter name "wan_in_rejected" reject'
        ),
        "none": "",
    }[filtering]
    return f"""
table ip natlab {{
    counter wan_in_dropped {{ }}
    counter wan_in_rejected {{ }}
    counter forward_dropped {{ }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" ip saddr {site.lan_net} {masquerade}
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid counter name "forward_dropped" drop
        iifname "lan0" oifname "wan0" accept
        counter name "forward_dropped" drop
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        {unsolicited}
    }}
}}
"""


class NatLab:
    """Two NAT'ed hosts, a relay (and optionally a second public host) on a bridged "internet".

    Host names: ``"relay"``, ``"relay2"`` (if ``relay2=True``), ``"a"`` and ``"b"`` (behind
    routers A and B), ``"ra"`` and ``"rb"`` (the routers), ``"internet"`` (the bridge).
    ``a`` and ``b`` are the NAT modes of routers A and B, each ``"eim"`` or ``"symmetric"``;
    ``filtering`` is one of ``FILTERINGS`` for both routers, or a mapping ``{"a": ..., "b": ...}``.
    ``delays`` (one-way seconds per public host) swaps the bridge for the delaying user-space
    switch (see the module docstring, :meth:`rtt` and :meth:`switch_stats`); so do ``jitter``
    (seconds) and ``loss`` (probability) per public host, with ``jitter_distribution``
    (``"uniform"`` or ``"normal"``), ``reorder`` and ``seed`` for the switch (module docstring).

    Set-up runs in ``__enter__`` (or :meth:`start`); it is blocking and takes a fraction of a
    second. Use it before ``trio.run`` or from a worker thread.
    """

    relay_ip = RELAY_IP
    relay2_ip = RELAY2_IP

    def __init__(
        self,
        a: str = "eim",
        b: str = "eim",
        *,
        relay2: bool = True,
        delays: Mapping[str, float] | None = None,
        filtering: str | Mapping[str, str] = "drop",
        jitter: Mapping[str, float] | None = None,
        loss: Mapping[str, float] | None = None,
        jitter_distribution: str = "uniform",
        reorder: bool = False,
        seed: int | None = None,
    ) -> None:
        for mode in (a, b):
            if mode not in NAT_MODES:
                raise ValueError(f"NAT mode must be one of {NAT_MODES}, not {mode!r}")
        self.modes = {"a": a, "b": b}
        per_site = {"a": filtering, "b": filtering} if isinstance(filtering, str) else filtering
        for site_name, how in per_site.items():
            if site_name not in ("a", "b") or how not in FILTERINGS:
                raise ValueError(f"filtering: want 'a'/'b' -> one of {FILTERINGS}, not {per_site}")
        #: Filtering of routers A and B (see ``FILTERINGS``).
        self.filtering = {"a": per_site.get("a", "drop"), "b": per_site.get("b", "drop")}
        self.has_relay2 = relay2
        # The link of each switch port (public host); None: the kernel bridge, no switch.
        ports = ["relay", *(["relay2"] if relay2 else []), *_ROUTERS]
        self.links = _links(ports, delays, jitter, loss)
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
        roles = ["internet", "relay", *(["relay2"] if relay2 else []), "ra", "rb", "a", "b"]
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
    def hosts(self) -> list[str]:
        return list(self._ns)

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
        """The host's own address: LAN address for ``a``/``b``, WAN address for routers."""
        if host in _SITES:
            return _SITES[host].host_ip
        if host in _ROUTERS:
            return _SITES[_ROUTERS[host]].wan_ip
        if host == "relay":
            return RELAY_IP
        if host == "relay2" and self.has_relay2:
            return RELAY2_IP
        raise ValueError(f"host {host!r} has no address")

    def public_ip(self, host: str) -> str:
        """The address the internet sees for ``host`` (its router's WAN address if NAT'ed)."""
        if host in _SITES:
            return _SITES[host].wan_ip
        return self.ip(host)

    def router_lan_ip(self, site: str) -> str:
        return _SITES[site].lan_router_ip

    def _switch_port(self, host: str) -> str:
        port = f"r{host}" if host in _SITES else host
        if port not in ("relay", "ra", "rb") and not (port == "relay2" and self.has_relay2):
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

        ``2 * (L_p + L_q)`` for their ports ``p`` and ``q``; ``a``/``b`` use their router's port.
        0 without ``delays``, and between a host and its own router (no switch on that path).
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
        for name in ns.values():
            _check([self._ip, "netns", "add", name])
            self._created.append(name)
        # No IPv6 anywhere (no link-local chatter, no DAD); forwarding only inside routers.
        no_v6 = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
        for role, name in ns.items():
            settings = dict(no_v6)
            if role in _ROUTERS:
                settings["net.ipv4.ip_forward"] = "1"
                settings["net.ipv4.conf.all.send_redirects"] = "0"
                settings["net.ipv4.conf.default.send_redirects"] = "0"
            self._sysctl(name, settings)

        internet = ["link set lo up"]
        if self.delays is None:
            internet.append("link add br0 type bridge stp_state 0 forward_delay 0")
        public = [("relay", RELAY_IP)] + ([("relay2", RELAY2_IP)] if self.has_relay2 else [])
        for role, _ in public:
            internet.append(f"link add p-{role} type veth peer name eth0 netns {ns[role]}")
        for router in _ROUTERS:
            internet.append(f"link add p-{router} type veth peer name wan0 netns {ns[router]}")
        for port in [role for role, _ in public] + list(_ROUTERS):
            if self.delays is None:
                internet.append(f"link set p-{port} master br0")
            internet.append(f"link set p-{port} up")
        if self.delays is None:
            internet.append("link set br0 up")
        self._batch(ns["internet"], internet)

        for role, address in public:
            self._batch(
                ns[role],
                ["link set lo up", f"addr add {address}/24 dev eth0", "link set eth0 up"],
            )
        for router, site_name in _ROUTERS.items():
            site = _SITES[site_name]
            self._batch(
                ns[router],
                [
                    "link set lo up",
                    f"link add lan0 type veth peer name eth0 netns {ns[site_name]}",
                    f"addr add {site.wan_ip}/24 dev wan0",
                    f"addr add {site.lan_router_ip}/{site.prefix_len} dev lan0",
                    "link set wan0 up",
                    "link set lan0 up",
                ],
            )
            _check(
                [self._ip, "netns", "exec", ns[router], self._nft, "-f", "-"],
                input=_nft_ruleset(site, self.modes[site_name], self.filtering[site_name]),
            )
            self._batch(
                ns[site_name],
                [
                    "link set lo up",
                    f"addr add {site.host_ip}/{site.prefix_len} dev eth0",
                    "link set eth0 up",
                    f"route add default via {site.lan_router_ip}",
                ],
            )
        if self.links is not None:
            self._start_switch(self.links)

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

    def dropped(self, router: str) -> dict[str, int]:
        """Packets the router dropped or rejected so far:
        ``{"wan_in": n, "wan_in_rejected": r, "forward": m}``."""
        if router not in _ROUTERS:
            raise ValueError(f"{router!r} is not a router (use 'ra' or 'rb')")
        out = self.run(router, [self._nft, "list", "counters", "table", "ip", "natlab"]).stdout
        counts: dict[str, int] = {}
        for counter, packets in re.findall(r"counter (\w+) \{\s*packets (\d+)", out):
            counts[counter.removesuffix("_dropped")] = int(packets)
        return counts
