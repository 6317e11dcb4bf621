"""The NAT lab's delaying switch (``delay_switch.py``): added latency, integrity, life cycle.

The switch never releases a frame before its due time, so every measured round trip is at
least the configured one; the upper bounds leave 40 ms for scheduling on a shared machine.
As in ``test_lab.py``, small programs run inside the namespaces and report JSON lines.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.natlab import delay_switch
from tests.natlab.lab import NatLab, require_lab
from tests.natlab.test_lab import (
    _assert_punched,
    _program,
    _punchers,
    _start_server,
    hard_timeout,
)

pytestmark = pytest.mark.natlab

DELAYS = {"ra": 0.025, "rb": 0.025, "relay": 0.0125}
SLACK = 0.040  # above the configured RTT: the switch's loop and two busy CPUs

# Echoes every byte on every connection to argv[1]. Exits on stdin EOF.
ECHO = _program("""
port = int(sys.argv[1])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", port))
listener.listen(64)
say(listening=port)

def echo(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while data := conn.recv(1 << 16):
            conn.sendall(data)

def serve():
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()

threading.Thread(target=serve, daemon=True).start()
exit_on_stdin_eof()
""")

# argv: ip port mode [n]. First one warm-up round trip on a fresh connection (ARP through the
# switch), then:
#   connect N:  N connect() calls, each timed (SYN to SYN-ACK);
#   pingpong N: N round trips of 32 bytes on one TCP_NODELAY connection, each timed;
#   transfer N: N random bytes sent and echoed back on one connection, compared.
MEASURE = _program("""
import hashlib, time
ip, port, mode, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

def connect():
    s = socket.create_connection((ip, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def recv_exactly(s, size):
    data = bytearray()
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            raise EOFError(len(data))
        data += chunk
    return bytes(data)

with connect() as s:
    s.sendall(b"w")
    recv_exactly(s, 1)

if mode == "connect":
    times = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(10)
        began = time.monotonic()
        s.connect((ip, port))
        times.append(time.monotonic() - began)
        s.close()
    say(times=times)
elif mode == "pingpong":
    times = []
    with connect() as s:
        for i in range(n):
            message = (b"%02d" % i) * 16
            began = time.monotonic()
            s.sendall(message)
            assert recv_exactly(s, len(message)) == message
            times.append(time.monotonic() - began)
    say(times=times)
elif mode == "transfer":
    payload = os.urandom(n)
    with connect() as s:
        began = time.monotonic()
        def send():
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while chunk := s.recv(1 << 20):
            received += chunk
        elapsed = time.monotonic() - began
        sender.join()
    say(size=len(received), intact=bytes(received) == payload, seconds=elapsed,
        sha256=hashlib.sha256(received).hexdigest()[:16])
""")


def _measure(lab: NatLab, mode: str, n: int, timeout: float = 30) -> dict[str, Any]:
    port = lab.fresh_port()
    server = lab.spawn_python("relay", ECHO, str(port), name="echo@relay")
    assert server.expect(10) == {"listening": port}
    client = lab.spawn_python("a", MEASURE, lab.relay_ip, str(port), mode, str(n), name=f"{mode}@a")
    return client.expect(timeout)


def _assert_clean(stats: dict[str, Any]) -> None:
    assert stats["event"] == "stats"
    problems = ("truncated", "rx_errors", "tx_errors", "socket_drops")
    assert {key: stats[key] for key in problems} == dict.fromkeys(problems, 0), stats
    assert stats["frames_in"] > 0


# --- configuration -----------------------------------------------------------------------------


@hard_timeout(30)
def test_bridge_or_switch(nat_lab: Callable[..., NatLab]) -> None:
    plain = nat_lab()
    assert plain.switch is None
    assert plain.delays is None
    assert plain.rtt("a", "relay") == 0.0
    assert "br0" in plain.run("internet", ["ip", "link"]).stdout

    lab = nat_lab(delays=DELAYS)
    assert lab.switch is not None
    assert lab.switch.popen.poll() is None
    links = lab.run("internet", ["ip", "-d", "link"]).stdout
    assert "br0" not in links
    # PACKET_MR_PROMISC counts in "promiscuity" (the PROMISC flag is `ip link set promisc`).
    assert links.count("promiscuity 1 ") == 4  # relay, relay2, ra, rb
    assert lab.delays == {"relay": 0.0125, "relay2": 0.0, "ra": 0.025, "rb": 0.025}
    assert lab.rtt("a", "relay") == lab.rtt("ra", "relay") == pytest.approx(0.075)
    assert lab.rtt("a", "b") == pytest.approx(0.1)
    assert lab.rtt("relay", "relay2") == pytest.approx(0.025)
    assert lab.rtt("a", "ra") == lab.rtt("relay", "relay") == 0.0
    assert lab.latency("b") == 0.025
    with pytest.raises(ValueError, match="not on the internet"):
        lab.rtt("a", "internet")


def test_bad_delays_are_refused() -> None:
    require_lab()
    with pytest.raises(ValueError, match="not a public host"):
        NatLab(delays={"a": 0.01})
    with pytest.raises(ValueError, match="not a public host"):
        NatLab(relay2=False, delays={"relay2": 0.01})
    with pytest.raises(ValueError, match="want seconds"):
        NatLab(delays={"relay": -0.01})


def test_port_spec_parsing() -> None:
    assert delay_switch.parse_port_spec("p-ra=0.025") == ("p-ra", 0.025)
    assert delay_switch.parse_port_spec("p-relay2") == ("p-relay2", 0.0)
    for bad in ("p-ra=-1", "=0.1", "p-ra=nan", "p-ra=x"):
        with pytest.raises(ValueError, match="bad port"):
            delay_switch.parse_port_spec(bad)


class _FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, frame: bytes) -> int:
        self.sent.append(frame)
        return len(frame)


def test_learning_flooding_and_order_without_sockets() -> None:
    """Switch logic alone: learn, flood unknown and broadcast, filter, hold, keep order."""
    socks = [_FakeSocket() for _ in range(3)]
    ports = [
        delay_switch.Port(i, f"p{i}", latency, socks[i])  # type: ignore[arg-type]
        for i, latency in enumerate((0.010, 0.020, 0.0))
    ]
    switch = delay_switch.Switch(ports)
    vnet = bytes(delay_switch.VNET_HDR_LEN)
    mac = [bytes([2, 0, 0, 0, 0, i]) for i in range(3)]
    broadcast = b"\xff" * 6

    def frame(dst: bytes, src: bytes, tag: bytes) -> bytes:
        return vnet + dst + src + b"\x08\x00" + tag

    def deliver(now: float) -> None:
        switch.release_due(now)
        for port in ports:
            switch.flush(port)

    switch.schedule(ports[0], frame(broadcast, mac[0], b"arp"), 100.0)  # floods to 1 and 2
    switch.schedule(ports[1], frame(mac[0], mac[1], b"r1"), 100.001)  # learned: to port 0
    switch.schedule(ports[0], frame(mac[1], mac[0], b"x1"), 100.002)
    switch.schedule(ports[0], frame(mac[1], mac[0], b"x2"), 100.002)  # same time: stays second
    switch.schedule(ports[0], frame(mac[0], mac[0], b"self"), 100.003)  # filtered
    switch.schedule(ports[2], frame(bytes([2, 9, 9, 9, 9, 9]), mac[2], b"unknown"), 100.004)

    def sent(port: int) -> list[bytes]:
        return [f[delay_switch.VNET_HDR_LEN + 14 :] for f in socks[port].sent]

    # Due: 0->2 at +10 ms (arp), 2->0 at 14 (unknown), 2->1 at 24, 0->1 at 30 (arp),
    # 1->0 at 31 (r1), 0->1 at 32 (x1, x2).
    deliver(100.0095)
    assert [sent(i) for i in range(3)] == [[], [], []]
    deliver(100.0105)
    assert sent(2) == [b"arp"]
    deliver(100.0145)
    assert sent(0) == [b"unknown"]
    deliver(100.0295)
    assert sent(1) == [b"unknown"]
    deliver(100.0325)
    assert sent(1) == [b"unknown", b"arp", b"x1", b"x2"]
    assert sent(0) == [b"unknown", b"r1"]
    assert sent(2) == [b"arp"]
    assert switch.heap == []
    assert (switch.stats.filtered, switch.stats.flooded) == (1, 1)
    assert switch.stats.frames_out == 7


# --- latency -----------------------------------------------------------------------------------


@hard_timeout(60)
def test_connect_takes_one_rtt(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(delays=DELAYS)
    rtt = lab.rtt("a", "relay")
    assert rtt == pytest.approx(0.075)
    times = _measure(lab, "connect", 10)["times"]
    assert min(times) >= rtt, times  # never early
    assert statistics.median(times) < rtt + SLACK, times
    _assert_clean(lab.switch_stats())


@hard_timeout(60)
def test_ping_pong_takes_one_rtt(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(delays=DELAYS)
    rtt = lab.rtt("a", "relay")
    times = _measure(lab, "pingpong", 20)["times"]
    assert len(times) == 20
    assert min(times) >= rtt, times
    assert statistics.median(times) < rtt + SLACK, times
    stats = lab.switch_stats()
    _assert_clean(stats)
    assert stats["max_late"] < SLACK


@hard_timeout(60)
def test_one_mib_transfer_is_intact(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(delays=DELAYS)
    report = _measure(lab, "transfer", 1 << 20)
    assert (report["size"], report["intact"]) == (1 << 20, True), report
    stats = lab.switch_stats()
    _assert_clean(stats)
    # Both directions crossed the switch (the kernel may merge segments: TSO frames pass whole).
    assert stats["bytes_out"] >= 2 * (1 << 20)


@hard_timeout(60)
def test_simultaneous_open_with_delay(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(delays=DELAYS)
    assert lab.rtt("a", "b") == pytest.approx(0.1)
    relay_port = lab.fresh_port()
    _start_server(lab, "relay", relay_port)
    a, b, observed = _punchers(lab, relay_port)
    a.send({"peer": observed["b"], "attempts": 3, "timeout": 3})
    b.send({"peer": observed["a"], "attempts": 3, "timeout": 3})
    assert a.expect(5) == {"connecting": True}
    assert b.expect(5) == {"connecting": True}
    _assert_punched(a.expect(15), b.expect(15), lab, observed)
    _assert_clean(lab.switch_stats())


# --- life cycle --------------------------------------------------------------------------------


def _netns_list() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10
    ).stdout


@hard_timeout(30)
@pytest.mark.parametrize("how", ["stdin", "sigterm"])
def test_switch_exits_cleanly(nat_lab: Callable[..., NatLab], how: str) -> None:
    lab = nat_lab(delays={"relay": 0.001})
    switch = lab.switch
    assert switch is not None
    if how == "stdin":
        switch.close_stdin()
    else:
        switch.popen.send_signal(signal.SIGTERM)
    assert switch.wait(10) == 0
    assert "delay_switch: stopped" in switch.stderr


@hard_timeout(30)
def test_teardown_leaves_nothing() -> None:
    require_lab()
    lab = NatLab(delays=DELAYS)
    with lab:
        assert lab.switch is not None
        pid = lab.switch.popen.pid
        port = lab.fresh_port()
        server = _start_server(lab, "relay", port)
        assert all(name in _netns_list() for name in lab.namespaces)
    assert lab.switch.popen.poll() is not None
    assert server.popen.poll() is not None
    assert lab.leftovers() == []
    listed = _netns_list()
    assert not any(name in listed for name in lab.namespaces)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_switch_without_ports_prints_usage() -> None:
    done = subprocess.run(
        [sys.executable, delay_switch.__file__],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "INTERFACE[=ONE_WAY_SECONDS]" in done.stderr
