"""A learning Ethernet switch in user space that holds every frame for a configured time.

The kernel here has no ``sch_netem``, so the NAT lab cannot add latency with ``tc``. Instead,
when a lab is built with ``delays``, the veth ends in its "internet" namespace are not enslaved
to a bridge; this program (run inside that namespace) opens one ``AF_PACKET`` socket per
interface and does the bridge's work itself:

* **Learning.** The source MAC of every frame is remembered with the port it came in on. A frame
  to a learned unicast MAC goes to that port (or nowhere, if that is the port it came from);
  broadcast, multicast and unknown unicast frames are flooded to every other port.
* **Delay.** Port ``p`` has a one-way latency ``L_p``. A frame that arrives on ``p`` at time
  ``t`` leaves on ``q`` at ``t + L_p + L_q``; so the round trip between hosts on ``p`` and ``q``
  is ``2 * (L_p + L_q)``. Since that delay is the same for every frame of a pair of ports and
  the heap is ordered by (due time, arrival number), frames never overtake each other between
  two ports; a port's transmit queue keeps that order if the kernel pushes back (``EAGAIN``).
* **One loop.** A single ``select`` loop receives (stamping each frame with ``monotonic()``),
  queues frames in a heap of due times, sleeps exactly until the next due time and sends. No
  threads, no per-frame timers.
* **Offloads.** Hosts' veths use TSO and checksum offload, so a frame can be a 64 KiB TCP
  super-segment with its checksum not yet filled in. With ``PACKET_VNET_HDR`` the kernel hands
  us a ``virtio_net_hdr`` that describes that (GSO type and size, checksum start and offset)
  and takes the same header on send, so such frames pass through intact and are segmented or
  checksummed later, as a kernel bridge would. We never look inside the header.
* Frames we transmitted ourselves are not read back: ``PACKET_IGNORE_OUTGOING`` where the
  kernel has it, and frames with ``pkttype == PACKET_OUTGOING`` are dropped regardless.

Usage (as root, inside the namespace)::

    python delay_switch.py p-relay=0.0125 p-ra=0.025 p-rb=0.025 p-relay2

Each argument is ``INTERFACE[=ONE_WAY_SECONDS]`` (default 0). The interfaces must exist; they
are brought up and put in promiscuous mode (``PACKET_MR_PROMISC``, dropped with the socket).
Once every socket is bound, one line ``{"event": "ready"}`` is printed on stdout. A line
``{"cmd": "stats"}`` on stdin is answered with ``{"event": "stats", ...}`` (counters). The
program exits cleanly on SIGTERM or SIGINT or when stdin is closed; problems go to stderr.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import math
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_STATISTICS = 6  # struct tpacket_stats {unsigned tp_packets, tp_drops}; reset when read
PACKET_OUTGOING = 4
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

VNET_HDR_LEN = 10  # struct virtio_net_hdr
SOCKET_BUFFER = 32 * 1024 * 1024
RECV_BUFFER = 256 * 1024  # a GSO frame is at most 64 KiB by default; room for BIG TCP too
RECV_BATCH = 64  # frames read from one socket before the loop looks at due frames again
_ERROR_LOG_LIMIT = 20


@dataclass
class Port:
    index: int
    name: str
    latency: float
    sock: socket.socket
    txq: deque[bytes] = field(default_factory=deque)


@dataclass
class Stats:
    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    flooded: int = 0
    filtered: int = 0  # destination learned on the port it came from
    outgoing_ignored: int = 0
    truncated: int = 0
    rx_errors: int = 0
    socket_drops: int = 0  # frames the kernel dropped because a socket's receive buffer was full
    tx_errors: int = 0
    tx_requeued: int = 0  # sends that hit EAGAIN/ENOBUFS and waited for the socket
    in_flight: int = 0
    max_in_flight: int = 0
    max_late: float = 0.0  # worst lateness of a send behind its due time, seconds
    errors_logged: int = 0

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.pop("errors_logged")
        return out


class _Stop(Exception):
    """Raised by the signal handler to leave the loop."""


def parse_port_spec(spec: str) -> tuple[str, float]:
    name, _, latency_text = spec.partition("=")
    try:
        latency = float(latency_text) if latency_text else 0.0
    except ValueError:
        latency = math.nan
    if not name or not math.isfinite(latency) or latency < 0:
        raise ValueError(f"bad port {spec!r}: want INTERFACE[=ONE_WAY_SECONDS >= 0]")
    return name, latency


def _open_port(index: int, name: str, latency: float) -> Port:
    # Bring the interface up (harmless if it already is); promiscuous mode comes with the socket.
    subprocess.run(["ip", "link", "set", name, "up"], check=True, capture_output=True)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        with contextlib.suppress(OSError):  # Linux >= 4.20; pkttype is checked regardless
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        for force, plain in (
            (SO_RCVBUFFORCE, socket.SO_RCVBUF),
            (SO_SNDBUFFORCE, socket.SO_SNDBUF),
        ):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
        sock.bind((name, ETH_P_ALL))
        ifindex = socket.if_nametoindex(name)
        mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return Port(index, name, latency, sock)


class Switch:
    def __init__(self, ports: Sequence[Port]) -> None:
        self.ports = list(ports)
        self.macs: dict[bytes, Port] = {}
        self.heap: list[tuple[float, int, int, bytes]] = []
        self.seq = 0
        self.stats = Stats()
        self.buffer = bytearray(RECV_BUFFER)
        self.view = memoryview(self.buffer)

    def log(self, text: str) -> None:
        if self.stats.errors_logged < _ERROR_LOG_LIMIT:
            self.stats.errors_logged += 1
            print(f"delay_switch: {text}", file=sys.stderr, flush=True)

    # -- receiving

    def receive(self, port: Port) -> None:
        """Read up to a batch of frames from ``port`` and schedule them."""
        stats = self.stats
        for _ in range(RECV_BATCH):
            try:
                size, address = port.sock.recvfrom_into(self.buffer, 0, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # e.g. EINVAL when a frame's GSO type has no virtio_net_hdr form: that frame is
                # lost (TCP resends it), the socket carries on.
                stats.rx_errors += 1
                self.log(f"recv on {port.name}: {exc}")
                continue
            arrival = time.monotonic()
            if address[2] == PACKET_OUTGOING:
                stats.outgoing_ignored += 1
                continue
            if size > len(self.buffer):
                stats.truncated += 1
                self.log(f"frame of {size} bytes on {port.name} truncated; dropped")
                continue
            if size < VNET_HDR_LEN + 14:
                continue
            frame = bytes(self.view[:size])
            stats.frames_in += 1
            stats.bytes_in += size - VNET_HDR_LEN
            self.schedule(port, frame, arrival)

    def schedule(self, port: Port, frame: bytes, arrival: float) -> None:
        dst = frame[VNET_HDR_LEN : VNET_HDR_LEN + 6]
        src = frame[VNET_HDR_LEN + 6 : VNET_HDR_LEN + 12]
        if not src[0] & 1:
            self.macs[src] = port
        if dst[0] & 1:
            targets = [p for p in self.ports if p is not port]
        else:
            learned = self.macs.get(dst)
            if learned is port:
                self.stats.filtered += 1
                return
            if learned is None:
                targets = [p for p in self.ports if p is not port]
                self.stats.flooded += 1
            else:
                targets = [learned]
        for target in targets:
            due = arrival + port.latency + target.latency
            self.seq += 1
            heapq.heappush(self.heap, (due, self.seq, target.index, frame))
        stats = self.stats
        stats.in_flight = len(self.heap)
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)

    # -- sending

    def release_due(self, now: float) -> None:
        heap, ports, stats = self.heap, self.ports, self.stats
        while heap and heap[0][0] <= now:
            due, _, index, frame = heapq.heappop(heap)
            late = now - due
            if late > stats.max_late:
                stats.max_late = late
            ports[index].txq.append(frame)
        stats.in_flight = len(heap)

    def flush(self, port: Port) -> None:
        stats, txq = self.stats, port.txq
        while txq:
            frame = txq[0]
            try:
                port.sock.send(frame)
            except (BlockingIOError, InterruptedError):
                stats.tx_requeued += 1
                return  # select tells us when the socket takes frames again
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    stats.tx_requeued += 1
                    return
                stats.tx_errors += 1
                self.log(f"send on {port.name} ({len(frame)} bytes): {exc}")
            else:
                stats.frames_out += 1
                stats.bytes_out += len(frame) - VNET_HDR_LEN
            txq.popleft()

    def count_socket_drops(self) -> None:
        for port in self.ports:
            with contextlib.suppress(OSError):
                raw = port.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                self.stats.socket_drops += struct.unpack("II", raw)[1]

    # -- the loop

    def run(self) -> None:
        by_fd = {port.sock.fileno(): port for port in self.ports}
        stdin_fd = sys.stdin.fileno()
        pending_input = b""
        while True:
            now = time.monotonic()
            self.release_due(now)
            for port in self.ports:
                if port.txq:
                    self.flush(port)
            timeout = max(self.heap[0][0] - now, 0.0) if self.heap else None
            writers = [port.sock for port in self.ports if port.txq]
            if writers:
                timeout = 0.001 if timeout is None else min(timeout, 0.001)  # ENOBUFS: poll
            readable, _, _ = select.select([stdin_fd, *by_fd], writers, [], timeout)
            for fd in readable:
                if fd == stdin_fd:
                    chunk = os.read(stdin_fd, 4096)
                    if not chunk:
                        return
                    pending_input += chunk
                    *lines, pending_input = pending_input.split(b"\n")
                    for line in lines:
                        self.command(line)
                else:
                    self.receive(by_fd[fd])

    def command(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            self.log(f"not a JSON line on stdin: {line!r}")
            return
        if isinstance(message, dict) and message.get("cmd") == "stats":
            self.count_socket_drops()
            say({"event": "stats", **self.stats.as_json()})
        else:
            self.log(f"unknown command {message!r}")


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    specs = [parse_port_spec(spec) for spec in argv]
    if len({name for name, _ in specs}) != len(specs):
        print("delay_switch: an interface is named twice", file=sys.stderr)
        return 2

    def stop(signum: int, frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ports: list[Port] = []
    switch: Switch | None = None
    try:
        for index, (name, latency) in enumerate(specs):
            ports.append(_open_port(index, name, latency))
        switch = Switch(ports)
        say({"event": "ready"})
        switch.run()
    except _Stop:
        pass
    finally:
        if switch is not None:
            switch.count_socket_drops()
            print(f"delay_switch: stopped {json.dumps(switch.stats.as_json())}", file=sys.stderr)
        for port in ports:
            port.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
