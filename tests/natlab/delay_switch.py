"""A learning Ethernet switch in user space that holds every frame for a configured time.

The kernel here has no ``sch_netem``, so the NAT lab cannot add latency with ``tc``. Instead,
when a lab is built with ``delays`` (or ``jitter`` or ``loss``), the veth ends in its "internet"
namespace are not enslaved to a bridge; this program (run inside that namespace) opens one
``AF_PACKET`` socket per interface and does the bridge's work itself:

* **Learning.** The source MAC of every frame is remembered with the port it came in on. A frame
  to a learned unicast MAC goes to that port (or nowhere, if that is the port it came from);
  broadcast, multicast and unknown unicast frames are flooded to every other port.
* **Delay.** Port ``p`` has a one-way latency ``L_p``. A frame that arrives on ``p`` at time
  ``t`` leaves on ``q`` at ``t + L_p + L_q`` (plus jitter, below); so the round trip between
  hosts on ``p`` and ``q`` is ``2 * (L_p + L_q)``.
* **Jitter.** Port ``p`` may add a random extra delay ``X_p`` on every crossing, drawn per
  frame: ``uniform`` on ``[0, J_p]`` (the default; mean ``J_p / 2``) or ``normal``, the
  absolute value of a normal draw with standard deviation ``J_p`` capped at ``3 J_p`` (mean
  about ``0.8 J_p``). A frame from ``p`` to ``q`` gets ``X_p + X_q``; jitter only ever adds, so
  no frame is early. **Order is kept** (the default): a frame never leaves before an earlier
  frame from the same port to the same port, it waits behind it, as in a real router's FIFO
  queue. That keeps every flow in order. Why: on a real path, jitter is queueing, and queues
  are first in, first out; reordering comes from parallel paths (per-packet load balancing,
  bonded links) and is rare on most paths. netem-style independent delays reorder whenever the
  jitter exceeds the gap between two packets, which TCP reads as loss (duplicate ACKs, fast
  retransmit, a halved window), a path far worse than the jitter figure says. ``--reorder``
  gives every frame its own independent delay, for tests that want reordering. The price of
  keeping order: a frame behind an unlucky one waits for it, so the delays of a burst are a
  little longer than the draws alone (at most ``L_p + L_q + max X_p + max X_q`` for any frame).
* **Loss.** Port ``p`` may drop each crossing frame with probability ``P_p`` (a frame from ``p``
  to ``q`` is lost with ``1 - (1 - P_p)(1 - P_q)``), counted in the ``lost`` counter. Loss
  applies to IP frames only: ARP and IPv6 neighbour discovery (ICMPv6 types 133-137) always
  pass. Why: the lab's "internet" is one Ethernet segment, so ARP/ND between public hosts is a
  lab artefact; on the real internet the path between two peers is routed and address
  resolution happens only on the first hop, a LAN that does not lose frames. A lost ARP
  request would also stall the next packets for seconds (the neighbour entry goes FAILED).
  Loss is per frame as the switch sees it: a TCP super-segment (below) is one frame holding
  several segments, so bulk TCP sees a smaller share of its segments lost than ``P``; for the
  small packets of a handshake the two are the same.
* **Order between ports.** The heap is ordered by (due time, arrival number), and a port's
  transmit queue keeps that order if the kernel pushes back (``EAGAIN``).
* **One loop.** A single ``select`` loop receives (stamping each frame with ``monotonic()``),
  queues frames in a heap of due times, sleeps exactly until the next due time and sends. No
  threads, no per-frame timers. Jitter and loss use their own seeded generators (``--seed``),
  so a run is reproducible as far as the order of arriving frames is.
* **Offloads.** Hosts' veths use TSO and checksum offload, so a frame can be a 64 KiB TCP
  super-segment with its checksum not yet filled in. With ``PACKET_VNET_HDR`` the kernel hands
  us a ``virtio_net_hdr`` that describes that (GSO type and size, checksum start and offset)
  and takes the same header on send, so such frames pass through intact and are segmented or
  checksummed later, as a kernel bridge would. We never look inside the header.
* Frames we transmitted ourselves are not read back: ``PACKET_IGNORE_OUTGOING`` where the
  kernel has it, and frames with ``pkttype == PACKET_OUTGOING`` are dropped regardless.

Usage (as root, inside the namespace)::

    python delay_switch.py [--seed N] [--reorder] [--jitter-distribution uniform|normal] \\
        p-relay=0.0125 p-ra=0.025,jitter=0.005,loss=0.01 p-rb=0.025 p-relay2

Each port is ``INTERFACE[=ONE_WAY_SECONDS[,jitter=SECONDS][,loss=PROBABILITY]]`` (all default
0). The interfaces must exist; they are brought up and put in promiscuous mode
(``PACKET_MR_PROMISC``, dropped with the socket).
Once every socket is bound, one line ``{"event": "ready"}`` is printed on stdout. A line
``{"cmd": "stats"}`` on stdin is answered with ``{"event": "stats", ...}`` (counters). The
program exits cleanly on SIGTERM or SIGINT or when stdin is closed; problems go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import heapq
import json
import math
import os
import random
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

JITTER_DISTRIBUTIONS = ("uniform", "normal")
_NORMAL_CAP = 3.0  # a normal jitter draw is capped at this many standard deviations

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
# Router/neighbour solicitation and advertisement, redirect: the parts of ND that must pass.
ND_TYPES = range(133, 138)


@dataclass(frozen=True)
class PortSpec:
    """One port on the command line: interface name and its link's properties."""

    name: str
    latency: float = 0.0  # one-way seconds
    jitter: float = 0.0  # spread of the random extra delay, seconds
    loss: float = 0.0  # probability that a crossing IP frame is dropped


@dataclass
class Port:
    index: int
    name: str
    latency: float
    sock: socket.socket
    jitter: float = 0.0
    loss: float = 0.0
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
    lost: int = 0  # frames dropped on purpose by a port's configured loss
    errors_logged: int = 0

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.pop("errors_logged")
        return out


class _Stop(Exception):
    """Raised by the signal handler to leave the loop."""


def parse_port_spec(spec: str) -> PortSpec:
    """A port argument, ``INTERFACE[=ONE_WAY_SECONDS[,jitter=S][,loss=P]]``, parsed."""
    name, has_link, link = spec.partition("=")
    usage = (
        f"bad port {spec!r}: want INTERFACE[=ONE_WAY_SECONDS >= 0"
        "[,jitter=SECONDS >= 0][,loss=PROBABILITY in [0, 1]]]"
    )
    if not name or "," in name:
        raise ValueError(usage)
    values = {"latency": 0.0, "jitter": 0.0, "loss": 0.0}
    if has_link:
        latency_text, *options = link.split(",")
        items = [("latency", latency_text)]
        for option in options:
            key, eq, text = option.partition("=")
            if not eq or key not in ("jitter", "loss"):
                raise ValueError(usage)
            items.append((key, text))
        for key, text in items:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(usage) from None
            if not math.isfinite(value) or value < 0 or (key == "loss" and value > 1):
                raise ValueError(usage)
            values[key] = value
    return PortSpec(name, **values)


def is_losable(frame: bytes | memoryview, offset: int = VNET_HDR_LEN) -> bool:
    """Whether a port's loss may drop this Ethernet frame (starting at ``offset``).

    IPv4 and IPv6 frames may be lost, except IPv6 neighbour discovery; ARP and everything else
    passes (see the module docstring for why).
    """
    if len(frame) < offset + 14:
        return False
    ethertype = int.from_bytes(frame[offset + 12 : offset + 14], "big")
    if ethertype == ETHERTYPE_IPV4:
        return True
    if ethertype != ETHERTYPE_IPV6:
        return False
    ip = offset + 14
    # ND messages carry no extension headers (RFC 4861 wants hop limit 255, one hop): the
    # ICMPv6 header follows the 40-byte fixed header directly.
    if len(frame) >= ip + 41 and frame[ip + 6] == IPPROTO_ICMPV6:
        return frame[ip + 40] not in ND_TYPES
    return True


def _open_port(index: int, spec: PortSpec) -> Port:
    name = spec.name
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
    return Port(index, name, spec.latency, sock, jitter=spec.jitter, loss=spec.loss)


class Switch:
    """The switch's state and loop. ``seed`` seeds jitter and loss (each its own generator);
    ``reorder`` gives every frame an independent delay instead of keeping order between two
    ports; ``jitter_distribution`` is one of ``JITTER_DISTRIBUTIONS``."""

    def __init__(
        self,
        ports: Sequence[Port],
        *,
        seed: int | None = None,
        reorder: bool = False,
        jitter_distribution: str = "uniform",
    ) -> None:
        if jitter_distribution not in JITTER_DISTRIBUTIONS:
            raise ValueError(f"jitter distribution: want one of {JITTER_DISTRIBUTIONS}")
        self.ports = list(ports)
        self.macs: dict[bytes, Port] = {}
        self.heap: list[tuple[float, int, int, bytes]] = []
        self.seq = 0
        # Separate generators, so that turning loss on does not change the jitter draws.
        self.jitter_rng = random.Random(None if seed is None else f"jitter/{seed}")
        self.loss_rng = random.Random(None if seed is None else f"loss/{seed}")
        self.reorder = reorder
        self.normal_jitter = jitter_distribution == "normal"
        # Due time of the last frame queued from port p to port q: the next may not go earlier.
        self.last_due: dict[tuple[int, int], float] = {}
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
        losable: bool | None = None
        for target in targets:
            if port.loss or target.loss:
                if losable is None:
                    losable = is_losable(frame)
                kept = (1.0 - port.loss) * (1.0 - target.loss)
                if losable and self.loss_rng.random() >= kept:
                    self.stats.lost += 1
                    continue
            due = arrival + port.latency + target.latency
            if port.jitter or target.jitter:
                due += self.extra_delay(port) + self.extra_delay(target)
                if not self.reorder:
                    pair = (port.index, target.index)
                    due = max(due, self.last_due.get(pair, due))
                    self.last_due[pair] = due
            self.seq += 1
            heapq.heappush(self.heap, (due, self.seq, target.index, frame))
        stats = self.stats
        stats.in_flight = len(self.heap)
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)

    def extra_delay(self, port: Port) -> float:
        """One draw of ``port``'s jitter (seconds, >= 0)."""
        if not port.jitter:
            return 0.0
        if self.normal_jitter:
            return min(abs(self.jitter_rng.gauss(0.0, port.jitter)), _NORMAL_CAP * port.jitter)
        return self.jitter_rng.uniform(0.0, port.jitter)

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
    parser = argparse.ArgumentParser(
        prog="delay_switch.py",
        usage="%(prog)s [--seed N] [--reorder] [--jitter-distribution uniform|normal] "
        "INTERFACE[=ONE_WAY_SECONDS[,jitter=S][,loss=P]] ...",
        description="A delaying user-space switch (see the module docstring).",
    )
    parser.add_argument("--seed", type=int, help="seed for jitter and loss (default: random)")
    parser.add_argument("--reorder", action="store_true", help="independent per-frame delays")
    parser.add_argument("--jitter-distribution", choices=JITTER_DISTRIBUTIONS, default="uniform")
    parser.add_argument("ports", nargs="+", metavar="INTERFACE[=...]")
    args = parser.parse_args(argv)
    try:
        specs = [parse_port_spec(spec) for spec in args.ports]
    except ValueError as exc:
        print(f"delay_switch: {exc}", file=sys.stderr)
        return 2
    if len({spec.name for spec in specs}) != len(specs):
        print("delay_switch: an interface is named twice", file=sys.stderr)
        return 2

    def stop(signum: int, frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ports: list[Port] = []
    switch: Switch | None = None
    try:
        for index, spec in enumerate(specs):
            ports.append(_open_port(index, spec))
        switch = Switch(
            ports,
            seed=args.seed,
            reorder=args.reorder,
            jitter_distribution=args.jitter_distribution,
        )
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
