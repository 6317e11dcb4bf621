"""The NAT lab's delaying switch (``delay_switch.py``): latency, jitter, loss, integrity,
life cycle.

The switch never releases a frame before its due time, so every measured round trip is at
least the configured one; the upper bounds leave 40 ms for scheduling on a shared machine.
As in ``test_lab.py``, small programs run inside the namespaces and report JSON lines.
Jitter and loss are random: their labs are seeded, and the statistical bounds are many
standard deviations wide, so a correct switch passes whatever the draws.
"""

from __future__ import annotations

import heapq
import math
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.natlab import delay_switch
from tests.natlab.lab import Link, NatLab, require_lab
from tests.natlab.test_lab import (
    _assert_punched,
    _program,
    _punchers,
    _start_server,
    _wait_for,
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
    spec = delay_switch.PortSpec
    assert delay_switch.parse_port_spec("p-ra=0.025") == spec("p-ra", 0.025)
    assert delay_switch.parse_port_spec("p-relay2") == spec("p-relay2", 0.0, 0.0, 0.0)
    assert delay_switch.parse_port_spec("p-rb=0.01,jitter=0.002,loss=0.5") == spec(
        "p-rb", 0.01, 0.002, 0.5
    )
    assert delay_switch.parse_port_spec("p-rb=0,loss=1") == spec("p-rb", loss=1.0)
    bad_specs = (
        "p-ra=-1",
        "=0.1",
        "p-ra=nan",
        "p-ra=x",
        "p-ra=0.1,loss=1.5",
        "p-ra=0.1,jitter=-0.1",
        "p-ra=0.1,jitter=inf",
        "p-ra=0.1,rate=5",
        "p-ra=0.1,loss",
        "p-ra,loss=0.1",
    )
    for bad in bad_specs:
        with pytest.raises(ValueError, match="bad port"):
            delay_switch.parse_port_spec(bad)


def test_links_in_the_lab_constructor() -> None:
    require_lab()
    lab = NatLab(delays={"ra": 0.01}, jitter={"ra": 0.002, "relay": 0.001}, loss={"rb": 0.1})
    assert lab.link("a") == Link(0.01, 0.002, 0.0)
    assert lab.link("rb") == Link(0.0, 0.0, 0.1)
    assert lab.delays == {"relay": 0.0, "relay2": 0.0, "ra": 0.01, "rb": 0.0}
    assert lab.rtt("a", "relay") == pytest.approx(0.02)
    # Uniform jitter: each crossing adds J / 2 on average; a round trip crosses each port twice.
    assert lab.mean_rtt("a", "relay") == pytest.approx(0.02 + 0.002 + 0.001)
    assert lab.mean_rtt("a", "ra") == 0.0
    assert NatLab(loss={"relay": 0.5}).delays == dict.fromkeys(("relay", "relay2", "ra", "rb"), 0)
    assert NatLab().links is None
    with pytest.raises(ValueError, match="not a public host"):
        NatLab(jitter={"a": 0.01})
    with pytest.raises(ValueError, match="want a probability"):
        NatLab(loss={"ra": 1.5})
    with pytest.raises(ValueError, match="want seconds"):
        NatLab(jitter={"ra": -1})
    with pytest.raises(ValueError, match="jitter_distribution"):
        NatLab(jitter={"ra": 0.01}, jitter_distribution="pareto")


# Ethernet frames (after a zeroed virtio_net_hdr) for the loss classifier.
_MACS = b"\xff" * 6 + bytes([2, 0, 0, 0, 0, 1])


def _ipv6(next_header: int, payload: bytes) -> bytes:
    header = bytes([0x60, 0, 0, 0]) + len(payload).to_bytes(2, "big") + bytes([next_header, 255])
    return header + bytes(32) + payload


def test_loss_spares_arp_and_neighbour_discovery() -> None:
    vnet = bytes(delay_switch.VNET_HDR_LEN)

    def losable(ethertype: int, payload: bytes) -> bool:
        return delay_switch.is_losable(vnet + _MACS + ethertype.to_bytes(2, "big") + payload)

    assert losable(0x0800, bytes(20))  # IPv4
    assert not losable(0x0806, bytes(28))  # ARP
    assert losable(0x86DD, _ipv6(17, bytes(8)))  # UDP over IPv6
    assert losable(0x86DD, _ipv6(58, bytes([128, 0, 0, 0])))  # ICMPv6 echo request
    assert losable(0x86DD, _ipv6(58, bytes([1, 4, 0, 0])))  # ICMPv6 port unreachable
    for nd_type in range(133, 138):  # RS, RA, NS, NA, redirect
        assert not losable(0x86DD, _ipv6(58, bytes([nd_type, 0, 0, 0])))
    assert not losable(0x88CC, bytes(40))  # LLDP and other non-IP: passes
    assert not delay_switch.is_losable(vnet + _MACS[:10])  # runt


def _fake_switch(
    links: list[tuple[float, float, float]], **options: Any
) -> tuple[delay_switch.Switch, list[delay_switch.Port], list[_FakeSocket]]:
    socks = [_FakeSocket() for _ in links]
    ports = [
        delay_switch.Port(i, f"p{i}", latency, socks[i], jitter=jitter, loss=loss)  # type: ignore[arg-type]
        for i, (latency, jitter, loss) in enumerate(links)
    ]
    return delay_switch.Switch(ports, **options), ports, socks


def _frame(dst: int, src: int, payload: bytes, ethertype: int = 0x0800) -> bytes:
    return (
        bytes(delay_switch.VNET_HDR_LEN)
        + bytes([2, 0, 0, 0, 0, dst])
        + bytes([2, 0, 0, 0, 0, src])
        + ethertype.to_bytes(2, "big")
        + payload
    )


def _due_times(switch: delay_switch.Switch) -> list[tuple[float, int]]:
    """Pop the whole heap: (due time, sequence number in the payload), in sending order."""
    out = []
    while switch.heap:
        due, _, _, frame = heapq.heappop(switch.heap)
        out.append((due, int.from_bytes(frame[-4:], "big")))
    return out


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_jitter_without_sockets(distribution: str) -> None:
    """Frames 0.1 ms apart from port 0 to port 1, jitter 5 ms + 2 ms: each frame is delayed
    by latency plus a draw within the bounds, the draws spread over most of the range, and
    the order is kept; with ``reorder`` it is not."""
    links = [(0.010, 0.005, 0.0), (0.002, 0.002, 0.0)]
    cap = 1.0 if distribution == "uniform" else 3.0
    for reorder in (False, True):
        switch, ports, _ = _fake_switch(
            links, seed=7, reorder=reorder, jitter_distribution=distribution
        )
        switch.macs[bytes([2, 0, 0, 0, 0, 1])] = ports[1]
        arrivals = [100.0 + i * 0.0001 for i in range(2000)]
        for i, arrival in enumerate(arrivals):
            switch.schedule(ports[0], _frame(1, 0, i.to_bytes(4, "big")), arrival)
        sent = _due_times(switch)
        extra = [due - arrivals[seq] - 0.012 for due, seq in sent]
        assert min(extra) >= -1e-9  # never early
        assert max(extra) <= cap * 0.007 + 1e-9
        order = [seq for _, seq in sent]
        if reorder:
            assert order != sorted(order)
            # Independent draws: their spread is the distribution's, about the whole range.
            assert max(extra) - min(extra) > 0.8 * 0.007
            mean = statistics.fmean(extra)
            expected = 0.0035 if distribution == "uniform" else 0.007 * (2 / math.pi) ** 0.5
            assert mean == pytest.approx(expected, rel=0.1)
        else:
            assert order == sorted(order)
            # Queued behind the slowest frame of the last few ms, so above the plain draws.
            assert statistics.fmean(extra) > 0.0035


def test_loss_without_sockets() -> None:
    """Loss 10% on port 0 and 20% on port 1: 28% of IPv4 frames from 0 to 1 are lost, none
    of the ARP frames; the same seed loses the same frames."""
    lost_sets = []
    for _ in range(2):
        switch, ports, socks = _fake_switch([(0.0, 0.0, 0.1), (0.0, 0.0, 0.2)], seed=3)
        switch.macs[bytes([2, 0, 0, 0, 0, 1])] = ports[1]
        for i in range(10000):
            switch.schedule(ports[0], _frame(1, 0, i.to_bytes(4, "big")), 100.0)
            switch.schedule(ports[0], _frame(1, 0, i.to_bytes(4, "big"), 0x0806), 100.0)
        switch.release_due(100.0)
        switch.flush(ports[1])
        arp = [f for f in socks[1].sent if f[22:24] == b"\x08\x06"]
        ip = {int.from_bytes(f[-4:], "big") for f in socks[1].sent if f[22:24] == b"\x08\x00"}
        assert len(arp) == 10000
        assert switch.stats.lost == 10000 - len(ip)
        # 1 - 0.9 * 0.8 = 0.28; binomial standard deviation 45 frames.
        assert 2800 - 450 < switch.stats.lost < 2800 + 450
        lost_sets.append(set(range(10000)) - ip)
    assert lost_sets[0] == lost_sets[1]


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


# --- jitter and loss, with real packets -------------------------------------------------------

# UDP sink on argv[1] (and a TCP control listener on the same port number). A datagram that
# starts with b"echo" or b"hello" is sent back; any other is a 4-byte sequence number,
# recorded. A TCP client that sends a line gets one JSON line back: datagrams received,
# distinct, and inversions (a number lower than one received before it). Pending datagrams are
# read first: a TCP SYN that crossed the switch after them (in order) finds them queued.
UDP_SINK = _program("""
import select
port = int(sys.argv[1])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: a burst must not overflow
udp.bind(("0.0.0.0", port))
control = socket.socket()
control.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
control.bind(("0.0.0.0", port))
control.listen(8)
say(listening=port)
seqs = []

def drain():
    udp.setblocking(False)
    try:
        while True:
            data, addr = udp.recvfrom(2048)
            if data.startswith((b"echo", b"hello")):
                udp.sendto(data, addr)
            else:
                seqs.append(int.from_bytes(data[:4], "big"))
    except BlockingIOError:
        pass

def serve():
    while True:
        readable, _, _ = select.select([udp, control], [], [])
        drain()
        if control in readable:
            conn, _ = control.accept()
            read_line(conn)
            drain()
            highest, inversions = -1, 0
            for seq in seqs:
                inversions += seq < highest
                highest = max(highest, seq)
            report = {"received": len(seqs), "distinct": len(set(seqs)), "inversions": inversions}
            conn.sendall((json.dumps(report) + "\\n").encode())
            conn.close()

threading.Thread(target=serve, daemon=True).start()
exit_on_stdin_eof()
""")

# argv: ip port mode n [gap]. First a "hello" until it comes back (ARP resolved both ways,
# retried every 0.2 s in case it is lost), then:
#   burst N GAP: N numbered datagrams GAP seconds apart, then the sink's report over TCP;
#   echo N:      N echo round trips, one after the other, each timed.
UDP_SENDER = _program("""
import time
ip, port, mode, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.settimeout(0.2)
for _ in range(50):
    udp.sendto(b"hello", (ip, port))
    try:
        if udp.recv(2048) == b"hello":
            break
    except socket.timeout:
        pass
else:
    raise SystemExit("no answer to hello")
if mode == "burst":
    gap = float(sys.argv[5])
    began = time.monotonic()
    for i in range(n):
        while time.monotonic() < began + i * gap:
            pass
        udp.sendto(i.to_bytes(4, "big") + bytes(60), (ip, port))
    with socket.create_connection((ip, port), timeout=30) as control:
        control.sendall(b"report\\n")
        say(sent=n, **json.loads(read_line(control)))
elif mode == "echo":
    udp.settimeout(5)
    times = []
    for i in range(n):
        message = b"echo%d" % i
        began = time.monotonic()
        udp.sendto(message, (ip, port))
        while udp.recv(2048) != message:
            pass
        times.append(time.monotonic() - began)
    say(times=times)
""")


def _udp(lab: NatLab, mode: str, *args: object, timeout: float = 40) -> dict[str, Any]:
    """Run the UDP sender on relay2 against a sink on relay; its report."""
    port = lab.fresh_port()
    sink = lab.spawn_python("relay", UDP_SINK, str(port), name="sink@relay")
    assert sink.expect(10) == {"listening": port}
    sender = lab.spawn_python(
        "relay2", UDP_SENDER, lab.relay_ip, str(port), mode, *map(str, args), name="udp@relay2"
    )
    return sender.expect(timeout)


@hard_timeout(60)
def test_loss_drops_that_share_of_datagrams(nat_lab: Callable[..., NatLab]) -> None:
    """2000 datagrams over a port with 20% loss: about 400 lost (binomial sd 18), and the
    switch counted at least as many losses (it also counts lost TCP frames of the report)."""
    lab = nat_lab(loss={"relay2": 0.2}, seed=11)
    before = lab.switch_stats()["lost"]
    report = _udp(lab, "burst", 2000, 0.0002)
    lost = lab.switch_stats()["lost"] - before
    assert report["distinct"] == report["received"], report
    assert 1600 - 100 < report["received"] < 1600 + 100, report  # about 5.5 sd either way
    assert lost >= 2000 - report["received"], (lost, report)
    _assert_clean(lab.switch_stats())


@hard_timeout(60)
def test_without_loss_every_datagram_arrives(nat_lab: Callable[..., NatLab]) -> None:
    """The control for the loss test: the same burst through the switch, with jitter but no
    loss, arrives whole and in order."""
    lab = nat_lab(jitter={"relay2": 0.005}, seed=11)
    report = _udp(lab, "burst", 2000, 0.0002)
    assert report == {"sent": 2000, "received": 2000, "distinct": 2000, "inversions": 0}
    stats = lab.switch_stats()
    _assert_clean(stats)
    assert stats["lost"] == 0


@hard_timeout(60)
@pytest.mark.parametrize("reorder", [False, True])
def test_jitter_keeps_order_unless_asked(nat_lab: Callable[..., NatLab], reorder: bool) -> None:
    """500 datagrams 0.2 ms apart through 20 ms of jitter: in order by default; with
    ``reorder`` each gets its own delay and many overtake each other."""
    lab = nat_lab(jitter={"relay2": 0.020}, reorder=reorder, seed=5)
    report = _udp(lab, "burst", 500, 0.0002)
    assert (report["received"], report["distinct"]) == (500, 500), report
    if reorder:
        assert report["inversions"] > 50, report
    else:
        assert report["inversions"] == 0, report


@hard_timeout(60)
def test_jitter_spreads_round_trips(nat_lab: Callable[..., NatLab]) -> None:
    """5 ms one way plus up to 10 ms of uniform jitter on relay2's port: a round trip crosses
    it twice, so RTT = 10 ms + U1 + U2 (U uniform on [0, 10 ms]), a triangle from 10 to 30 ms
    with its median at 20 ms. Without jitter the median would be 10 ms."""
    lab = nat_lab(delays={"relay2": 0.005}, jitter={"relay2": 0.010}, seed=2)
    assert lab.rtt("relay", "relay2") == pytest.approx(0.010)
    assert lab.mean_rtt("relay", "relay2") == pytest.approx(0.020)
    times = sorted(_udp(lab, "echo", 100)["times"])
    assert min(times) >= 0.010, times
    assert max(times) < 0.030 + SLACK, times
    assert 0.017 < statistics.median(times) < 0.020 + SLACK, times
    # Quantiles of U1 + U2: 10% at 4.5 ms, 90% at 15.5 ms.
    assert times[90] - times[10] > 0.006, times
    _assert_clean(lab.switch_stats())


@hard_timeout(60)
def test_total_loss_spares_arp(nat_lab: Callable[..., NatLab]) -> None:
    """With loss 1 on relay2's port every IP frame is lost, yet relay2 resolves the relay's
    MAC address: ARP crosses."""
    lab = nat_lab(loss={"relay2": 1.0})
    send = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for _ in range(5): s.sendto(b'x', ('{lab.relay_ip}', 9))"
    )
    lab.run("relay2", [sys.executable, "-c", send])

    def resolved() -> bool:
        neigh = lab.run("relay2", ["ip", "neigh", "show", lab.relay_ip]).stdout
        return "lladdr" in neigh and "FAILED" not in neigh and "INCOMPLETE" not in neigh

    _wait_for(resolved, 10, "relay2 to resolve the relay's MAC address")
    stats = lab.switch_stats()
    assert stats["lost"] == 5, stats  # the five datagrams, nothing else IP crossed
    _assert_clean(stats)


@hard_timeout(60)
def test_tcp_transfer_survives_loss(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(delays={"ra": 0.002}, jitter={"ra": 0.001}, loss={"ra": 0.02}, seed=4)
    report = _measure(lab, "transfer", 1 << 20, timeout=50)
    assert (report["size"], report["intact"]) == (1 << 20, True), report
    stats = lab.switch_stats()
    _assert_clean(stats)
    assert stats["lost"] > 0


@hard_timeout(60)
def test_simultaneous_open_with_jitter(nat_lab: Callable[..., NatLab]) -> None:
    lab = nat_lab(delays=DELAYS, jitter={"ra": 0.005, "rb": 0.005, "relay": 0.002}, seed=9)
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
    assert "INTERFACE[=ONE_WAY_SECONDS[,jitter=" in done.stderr


def test_switch_refuses_a_bad_port() -> None:
    done = subprocess.run(
        [sys.executable, delay_switch.__file__, "p-ra=0.01,loss=2"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "bad port 'p-ra=0.01,loss=2'" in done.stderr
