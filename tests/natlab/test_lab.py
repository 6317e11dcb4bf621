"""The NAT lab checked with plain sockets: mapping, filtering, simultaneous open, teardown.

Small Python programs run inside the lab's namespaces and report JSON lines; the test process
coordinates them through stdin. Nothing waits by sleeping: every wait is for a line (or a
counter) with a deadline, and every test has a hard timeout on top.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from tests.natlab.lab import NatLab, Program, lab_unavailable_reason, require_lab
from tests.natlab.topology import EIM_SHIFT_XOR

pytestmark = pytest.mark.natlab

F = TypeVar("F", bound=Callable[..., Any])


def hard_timeout(seconds: float) -> Callable[[F], F]:
    """Fail the (synchronous) test if it runs longer than ``seconds``."""

    def decorate(test: F) -> F:
        @functools.wraps(test)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            def on_alarm(signum: int, frame: Any) -> None:
                raise TimeoutError(f"test exceeded its hard timeout of {seconds} s")

            previous = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                return test(*args, **kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)

        return wrapper  # type: ignore[return-value]

    return decorate


# --- programs run inside the namespaces --------------------------------------------------------

_PRELUDE = """
import json, os, socket, sys, threading

# IPv4 unless LAB_IPV6 is set in the environment (the "ipv6" topology's hosts have both).
FAMILY = socket.AF_INET6 if os.environ.get("LAB_IPV6") else socket.AF_INET
ANY = "::" if FAMILY == socket.AF_INET6 else "0.0.0.0"

def say(**message):
    sys.stdout.write(json.dumps(message) + "\\n")
    sys.stdout.flush()

def exit_on_stdin_eof():
    for _ in sys.stdin:
        pass
    os._exit(0)

def reusable_socket(local_port):
    s = socket.socket(FAMILY, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((ANY, local_port))
    return s

def read_line(s, limit=4096):
    data = b""
    while not data.endswith(b"\\n") and len(data) < limit:
        chunk = s.recv(limit)
        if not chunk:
            break
        data += chunk
    return data.decode()
"""


def _program(body: str) -> str:
    return _PRELUDE + body


# Every program speaks IPv6 when started with LAB_IPV6=1 in its environment (addresses are
# then reported as [ip, port] too).

# Listens on argv[1]; tells each client the address it sees it from (like identify's
# observed address) and keeps the connection open, as a relay would. Exits on stdin EOF.
SERVER = _program("""
port = int(sys.argv[1])
listener = socket.socket(FAMILY)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((ANY, port))
listener.listen(64)
say(listening=port)
kept = []

def serve():
    while True:
        conn, addr = listener.accept()
        conn.sendall((json.dumps({"observed": list(addr)[:2]}) + "\\n").encode())
        kept.append(conn)
        say(accepted=list(addr)[:2])

threading.Thread(target=serve, daemon=True).start()
exit_on_stdin_eof()
""")

# From local port argv[1], connects to each "ip:port" in argv[2:] (all sockets stay open) and
# prints the address each server observed.
CLIENT = _program("""
local_port = int(sys.argv[1])
kept = []
for target in sys.argv[2:]:
    ip, port = target.rsplit(":", 1)
    s = reusable_socket(local_port)
    s.settimeout(5)
    s.connect((ip, int(port)))
    observed = json.loads(read_line(s))["observed"]
    kept.append(s)
    say(target=target, local=list(s.getsockname())[:2], observed=observed)
exit_on_stdin_eof()
""")

# Hole punching with plain sockets. From local port argv[1]: connect to the relay server at
# argv[2]:argv[3] and report the observed address; then wait for {"peer": [ip, port],
# "attempts": n, "timeout": t} on stdin and connect() to the peer from the same local port,
# retrying on failure. On success both sides exchange a line.
PUNCH = _program("""
name, local_port = os.environ["PUNCH_NAME"], int(sys.argv[1])
relay = reusable_socket(local_port)
relay.settimeout(5)
relay.connect((sys.argv[2], int(sys.argv[3])))
say(observed=json.loads(read_line(relay))["observed"])
order = json.loads(sys.stdin.readline())
peer = tuple(order["peer"])
errors = []
say(connecting=True)
for attempt in range(order["attempts"]):
    s = reusable_socket(local_port)
    s.settimeout(order["timeout"])
    try:
        s.connect(peer)
    except OSError as exc:
        errors.append({"type": type(exc).__name__, "errno": exc.errno, "text": str(exc)})
        s.close()
        continue
    s.settimeout(5)
    s.sendall(("hello from " + name + "\\n").encode())
    received = read_line(s).strip()
    say(connected=True, attempt=attempt, local=list(s.getsockname())[:2],
        remote=list(s.getpeername())[:2], received=received, errors=errors)
    break
else:
    say(connected=False, errors=errors)
exit_on_stdin_eof()
""")

# Tries the targets in the JSON list argv[1] ({"proto": "tcp"|"udp", "ip", "port", "timeout"}),
# all at once, and reports what came back for each, in order: "timeout", "connected",
# "refused", or an errno name.
PROBE = _program("""
import errno

def probe(target):
    kind = socket.SOCK_STREAM if target["proto"] == "tcp" else socket.SOCK_DGRAM
    with socket.socket(FAMILY, kind) as s:
        s.settimeout(target["timeout"])
        try:
            s.connect((target["ip"], target["port"]))
            if kind == socket.SOCK_DGRAM:
                # An ICMP port unreachable would surface here as ECONNREFUSED.
                s.send(b"x")
                s.recv(100)
            return "connected"
        except socket.timeout:
            return "timeout"
        except ConnectionRefusedError:
            return "refused"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc))

targets = json.loads(sys.argv[1])
results = [None] * len(targets)

def run(i):
    results[i] = probe(targets[i])

threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
for t in threads:
    t.start()
for t in threads:
    t.join()
for target, result in zip(targets, results):
    say(target=target, result=result)
""")


def _env(ipv6: bool, **extra: str) -> dict[str, str]:
    """The environment for a program above: IPv6 with ``ipv6``."""
    return {**os.environ, **extra, **({"LAB_IPV6": "1"} if ipv6 else {})}


def _start_server(lab: NatLab, host: str, port: int, *, ipv6: bool = False) -> Program:
    server = lab.spawn_python(host, SERVER, str(port), name=f"server@{host}", env=_env(ipv6))
    assert server.expect(10) == {"listening": port}
    return server


# --- 0. topology -------------------------------------------------------------------------------


def test_unavailable_reason_is_none_or_text() -> None:
    reason = lab_unavailable_reason()
    assert reason is None or (isinstance(reason, str) and reason)


@hard_timeout(30)
def test_topology(lab: NatLab) -> None:
    names = lab.namespaces
    assert len(set(names)) == len(names) == 7
    assert all(name.startswith(lab.prefix) for name in names)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert all(name in listed for name in names)

    for router in ("ra", "rb"):
        assert "default" not in lab.run(router, ["ip", "route"]).stdout
        forward = lab.run(router, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip()
        assert forward == "1"
        assert lab.dropped(router) == {
            "wan_in": 0,
            "wan_in_rejected": 0,
            "forward": 0,
            "invalid": 0,
            "loopback": 0,
            "loopback_rejected": 0,
        }
    for host in ("relay", "relay2", "a", "b", "internet"):
        forward = lab.run(host, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip()
        assert forward == "0", host
    assert "default via 192.0.2.1 " in lab.run("a", ["ip", "route"]).stdout
    assert "default via 192.0.2.65 " in lab.run("b", ["ip", "route"]).stdout
    assert "default" not in lab.run("relay", ["ip", "route"]).stdout
    assert (lab.ip("a"), lab.public_ip("a")) == ("192.0.2.2", "198.51.100.1")
    assert (lab.ip("b"), lab.public_ip("b")) == ("192.0.2.66", "198.51.100.2")
    assert lab.relay_ip == lab.ip("relay") == lab.public_ip("relay") == "198.51.100.10"
    assert lab.relay2_ip == "198.51.100.11"

    # Nothing beyond the lab is reachable: router A has no route for it and says so to its LAN.
    probe = lab.spawn_python(
        "a",
        PROBE,
        '[{"proto": "tcp", "ip": "203.0.113.7", "port": 80, "timeout": 2}]',
        name="probe@a",
    )
    assert probe.expect(10)["result"] in ("ENETUNREACH", "EHOSTUNREACH")


# --- 1. mapping --------------------------------------------------------------------------------


@hard_timeout(30)
@pytest.mark.parametrize("mode", ["eim", "eim-shifted", "symmetric"])
def test_mapping(nat_lab: Callable[..., NatLab], mode: str) -> None:
    lab = nat_lab(a=mode)
    server_port = lab.fresh_port()
    _start_server(lab, "relay", server_port)
    _start_server(lab, "relay2", server_port)
    local_port = lab.fresh_port()
    client = lab.spawn_python(
        "a",
        CLIENT,
        str(local_port),
        f"{lab.relay_ip}:{server_port}",
        f"{lab.relay2_ip}:{server_port}",
        name="client@a",
    )
    seen = [client.expect(10), client.expect(10)]
    for report in seen:
        assert report["local"] == [lab.ip("a"), local_port]
        assert report["observed"][0] == lab.public_ip("a")
    ports = [report["observed"][1] for report in seen]
    # Router A's conntrack holds those mappings: the reply comes back to the observed port.
    mappings = {
        (entry["original"]["dst"], entry["reply"]["dst"], entry["reply"]["dport"])
        for entry in lab.conntrack("ra")
        if entry["proto"] == "tcp" and entry["original"]["sport"] == local_port
    }
    wan = lab.public_ip("a")
    assert mappings == {(lab.relay_ip, wan, ports[0]), (lab.relay2_ip, wan, ports[1])}
    if mode == "eim":
        # Port preserved, and the same mapping whichever destination: endpoint-independent.
        assert ports == [local_port, local_port]
    elif mode == "eim-shifted":
        # The same mapping whichever destination, but not the source port: bit 10 flipped.
        assert ports[0] == ports[1] != local_port
        assert ports[0] == local_port ^ EIM_SHIFT_XOR
        assert abs(ports[0] - local_port) == 1024
    else:
        # A fresh random port per destination.
        assert ports[0] != ports[1]
        assert ports != [local_port, local_port]


# --- 2. filtering ------------------------------------------------------------------------------


@hard_timeout(30)
@pytest.mark.parametrize("lab", [("eim", "eim"), ("symmetric", "eim")], indirect=True)
def test_unsolicited_inbound_is_dropped_silently(lab: NatLab) -> None:
    server_port = lab.fresh_port()
    _start_server(lab, "relay", server_port)
    # A live mapping on router A: host a connected to the relay from local_port.
    local_port = lab.fresh_port()
    client = lab.spawn_python(
        "a", CLIENT, str(local_port), f"{lab.relay_ip}:{server_port}", name="client@a"
    )
    mapped_port = client.expect(10)["observed"][1]

    targets = [
        # Nothing listens on router A: an unfiltered router would answer RST / port unreachable.
        {"proto": "tcp", "ip": lab.public_ip("a"), "port": lab.fresh_port(), "timeout": 1.5},
        {"proto": "udp", "ip": lab.public_ip("a"), "port": lab.fresh_port(), "timeout": 1.0},
        # The mapped port, but from another host than the one host a talks to: filtered too.
        {"proto": "tcp", "ip": lab.public_ip("a"), "port": mapped_port, "timeout": 1.5},
        # Host a's private address is not routed on the internet.
        {"proto": "tcp", "ip": lab.ip("a"), "port": local_port, "timeout": 1.5},
    ]
    probe = lab.spawn_python("relay2", PROBE, json.dumps(targets), name="probe@relay2")
    results = [probe.expect(10)["result"] for _ in targets]
    assert results[:3] == ["timeout", "timeout", "timeout"]
    assert results[3] in ("ENETUNREACH", "EHOSTUNREACH", "timeout")
    # The drops happened at router A's input chain (TCP SYNs retransmitted, so at least 3).
    assert lab.dropped("ra")["wan_in"] >= 3


@hard_timeout(30)
@pytest.mark.parametrize("filtering", ["reject", "none"])
def test_unsolicited_inbound_is_refused_by_a_rejecting_or_unfiltered_router(
    nat_lab: Callable[..., NatLab], filtering: str
) -> None:
    # Router A refuses (firewall reject, or its own stack with no filter); router B drops.
    lab = nat_lab(filtering={"a": filtering, "b": "drop"})
    targets = [
        {"proto": "tcp", "ip": lab.public_ip("a"), "port": lab.fresh_port(), "timeout": 3.0},
        {"proto": "udp", "ip": lab.public_ip("a"), "port": lab.fresh_port(), "timeout": 3.0},
        {"proto": "tcp", "ip": lab.public_ip("b"), "port": lab.fresh_port(), "timeout": 1.5},
    ]
    probe = lab.spawn_python("relay2", PROBE, json.dumps(targets), name="probe@relay2")
    results = [probe.expect(10)["result"] for _ in targets]
    assert results == ["refused", "refused", "timeout"]
    counts = lab.dropped("ra")
    # The firewall refused them itself; without a filter the router's stack answered.
    assert counts["wan_in_rejected"] == (2 if filtering == "reject" else 0)
    assert counts["wan_in"] == 0
    assert lab.dropped("rb")["wan_in"] >= 1


# --- 3. simultaneous open ----------------------------------------------------------------------


def _punchers(
    lab: NatLab, relay_port: int, *, ipv6: bool = False
) -> tuple[Program, Program, dict[str, list[Any]]]:
    programs = {}
    observed = {}
    for host in ("a", "b"):
        local_port = lab.fresh_port()
        programs[host] = lab.spawn_python(
            host,
            PUNCH,
            str(local_port),
            lab.ip6("relay") if ipv6 else lab.relay_ip,
            str(relay_port),
            name=f"punch@{host}",
            env=_env(ipv6, PUNCH_NAME=host),
        )
    for host, program in programs.items():
        observed[host] = program.expect(10)["observed"]
        assert observed[host][0] == (lab.ip6(host) if ipv6 else lab.public_ip(host))
    return programs["a"], programs["b"], observed


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")


def _assert_punched(
    a: dict[str, Any],
    b: dict[str, Any],
    lab: NatLab,
    observed: dict[str, Any],
    *,
    ipv6: bool = False,
    port_preserving: bool = True,
) -> None:
    assert (a["connected"], b["connected"]) == (True, True), (a, b)
    assert a["received"] == "hello from b"
    assert b["received"] == "hello from a"
    # Each side sees the other's public (mapped) address; its own socket is its LAN address.
    assert (a["remote"], b["remote"]) == (observed["b"], observed["a"])
    for host, result in (("a", a), ("b", b)):
        assert result["local"][0] == (lab.ip6(host) if ipv6 else lab.ip(host))
        if port_preserving:
            assert result["local"][1] == observed[host][1]


@hard_timeout(40)
def test_simultaneous_open_through_two_eim_nats(lab: NatLab) -> None:
    relay_port = lab.fresh_port()
    _start_server(lab, "relay", relay_port)
    a, b, observed = _punchers(lab, relay_port)
    # Release both at nearly the same time.
    a.send({"peer": observed["b"], "attempts": 3, "timeout": 3})
    b.send({"peer": observed["a"], "attempts": 3, "timeout": 3})
    assert a.expect(5) == {"connecting": True}
    assert b.expect(5) == {"connecting": True}
    _assert_punched(a.expect(15), b.expect(15), lab, observed)


@hard_timeout(40)
def test_early_syn_vanishes_and_the_punch_still_succeeds(lab: NatLab) -> None:
    """A's SYN reaches router B before B has sent anything: dropped silently, no RST.

    Then B's SYN goes out, matches A's conntrack entry on router A in the reply direction, and
    the two SYNs' handshake completes as a TCP simultaneous open on the first attempt.
    """
    relay_port = lab.fresh_port()
    _start_server(lab, "relay", relay_port)
    a, b, observed = _punchers(lab, relay_port)
    a.send({"peer": observed["b"], "attempts": 1, "timeout": 8})
    assert a.expect(5) == {"connecting": True}
    _wait_for(lambda: lab.dropped("rb")["wan_in"] >= 1, 5, "router B to drop A's SYN")
    b.send({"peer": observed["a"], "attempts": 1, "timeout": 8})
    assert b.expect(5) == {"connecting": True}
    result_a, result_b = a.expect(15), b.expect(15)
    _assert_punched(result_a, result_b, lab, observed)
    assert (result_a["errors"], result_b["errors"]) == ([], [])
    assert lab.dropped("ra")["wan_in"] == 0


@hard_timeout(40)
@pytest.mark.parametrize("lab", [("symmetric", "eim")], indirect=True)
def test_simultaneous_open_fails_through_a_symmetric_nat(lab: NatLab) -> None:
    relay_port = lab.fresh_port()
    _start_server(lab, "relay", relay_port)
    a, b, observed = _punchers(lab, relay_port)
    a.send({"peer": observed["b"], "attempts": 2, "timeout": 1.5})
    b.send({"peer": observed["a"], "attempts": 2, "timeout": 1.5})
    assert a.expect(5) == {"connecting": True}
    assert b.expect(5) == {"connecting": True}
    for result in (a.expect(10), b.expect(10)):
        assert result["connected"] is False
        # Every attempt timed out: nothing was refused or reset, the SYNs just vanished.
        assert [error["type"] for error in result["errors"]] == ["TimeoutError", "TimeoutError"]
    assert lab.dropped("ra")["wan_in"] > 0
    assert lab.dropped("rb")["wan_in"] > 0


# --- 4. teardown -------------------------------------------------------------------------------


def _netns_list() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10
    ).stdout


@hard_timeout(40)
def test_teardown_on_exception_and_two_labs_coexist() -> None:
    require_lab()
    first, second = NatLab(), NatLab(a="symmetric", relay2=False)
    programs: list[Program] = []

    def body() -> None:
        with first, second:
            assert not set(first.namespaces) & set(second.namespaces)
            for lab in (first, second):
                # Same addresses in both labs, yet each host reaches its own lab's relay.
                port = lab.fresh_port()
                programs.append(_start_server(lab, "relay", port))
                client = lab.spawn_python(
                    "a", CLIENT, str(lab.fresh_port()), f"{lab.relay_ip}:{port}"
                )
                assert client.expect(10)["observed"][0] == lab.public_ip("a")
                assert programs[-1].expect(10)["accepted"][0] == lab.public_ip("a")
                programs.append(client)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    listed = _netns_list()
    for lab in (first, second):
        assert lab.leftovers() == []
        assert not any(name in listed for name in lab.namespaces)
    for program in programs:
        assert program.popen.poll() is not None  # killed by teardown


@hard_timeout(30)
def test_teardown_when_setup_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    require_lab()
    lab = NatLab()

    def broken() -> None:
        NatLab._build(lab)
        raise RuntimeError("setup broke")

    monkeypatch.setattr(lab, "_build", broken)
    with pytest.raises(RuntimeError, match="setup broke"), lab:
        pass
    assert lab.leftovers() == []


# --- in-process sockets ------------------------------------------------------------------------


@hard_timeout(30)
def test_sockets_created_in_netns_belong_to_it(lab: NatLab) -> None:
    port = lab.fresh_port()
    server = _start_server(lab, "relay", port)
    before = os.readlink("/proc/thread-self/ns/net")
    results: dict[str, Any] = {}

    def in_thread() -> None:
        with lab.netns("a"):
            sock = socket.create_connection((lab.relay_ip, port), timeout=5)
        # Used outside the block (and the namespace) it still talks through router A.
        with sock:
            results["observed"] = sock.makefile().readline()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(10)
    assert "198.51.100.1" in results["observed"]
    assert server.expect(10)["accepted"][0] == lab.public_ip("a")
    with lab.netns("b"):
        assert os.readlink("/proc/thread-self/ns/net") != before
    assert os.readlink("/proc/thread-self/ns/net") == before


# --- prerequisites -----------------------------------------------------------------------------


def test_missing_nft_skips_or_fails_under_test_sh(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.natlab import lab as lab_module

    if os.geteuid() != 0:
        pytest.skip("lab needs root")
    real_which = lab_module._which
    monkeypatch.setattr(lab_module, "_which", lambda n: None if n == "nft" else real_which(n))
    lab_module.lab_unavailable_reason.cache_clear()
    try:
        monkeypatch.setenv("LIBP2P_REQUIRE_INTEROP", "1")
        with pytest.raises(pytest.fail.Exception, match="`nft` is not installed"):
            require_lab()
        monkeypatch.delenv("LIBP2P_REQUIRE_INTEROP")
        with pytest.raises(pytest.skip.Exception, match="`nft` is not installed"):
            require_lab()
    finally:
        lab_module.lab_unavailable_reason.cache_clear()
