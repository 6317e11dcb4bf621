"""Load on one relay and on one listener: memory, CPU, handshake rate, leaks, client crashes.

    .venv/bin/python benchmarks/load.py [--quick] [--reservations N] [--circuits C]
        [--circuit-mib M] [--cycles K] [--procs P] [--dialers D] [--tracemalloc]

Two parts, every role in processes of its own (the server alone in its process, so its
memory and CPU are its own; the clients spread over ``--procs`` processes to use the cores):

* relay -- our relay (``RelayConfig.unlimited()``: no per-IP, reservation or circuit caps,
  since every client shares loopback) and ``--reservations`` client hosts, each a full
  :class:`libp2p.Host` that listens on ``<relay>/p2p-circuit`` (a maintained reservation).
  Then ``--circuits`` of them dial another one through the relay, open a stream and, all at
  once, push ``--circuit-mib`` MiB each to the target, which answers with the count. Printed:
  relay RSS before, with the reservations and with the circuits open (per reservation and
  per circuit), and relay CPU seconds (utime + stime, /proc) per GiB it forwarded (its own
  ``bytes_relayed`` counter, both directions) while the circuits move data.
* listener -- one host listening, and ``--dialers`` client hosts per process that connect
  and disconnect as fast as they can until ``--cycles`` connections are done. Printed: the
  upgrades the listener completed per second of wall time, and its RSS before the cycles
  (after a warm-up) and after them (once every connection is gone), with the growth per
  cycle (a leak shows as growth).

For both parts it counts the client hosts that crashed (their ``async with Host()`` ending
with an exception) and the unexpected exceptions (anything but a typed ``Libp2pError`` or
our own timeout) in client tasks, and prints the first few of each; the goal is 0. Typed
failures (e.g. a refused reservation) are counted apart. ``--tracemalloc`` adds Python heap
figures from the servers (slow: it traces every allocation).

``--quick`` runs small numbers as a smoke check. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from libp2p import Host, HostConfig, Libp2pError, NetStream, ping  # noqa: E402
from libp2p.network.connection import Connection  # noqa: E402
from libp2p.relay.circuit_v2 import RelayConfig  # noqa: E402

PY = sys.executable
SCRIPT = str(Path(__file__).resolve())
MIB = 1 << 20
GIB = 1 << 30
SINK = "/libp2p-load/sink/1.0.0"
CHUNK = 64 * 1024
#: Crash and failure samples printed per kind.
SAMPLES = 5
#: Time any one client operation may take before it counts as a (typed) failure.
OP_TIMEOUT = 120.0


def log(message: str) -> None:
    print(f"[load] {message}", file=sys.stderr, flush=True)


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int | None = None, field: str = "VmRSS") -> int:
    """Resident set size (or ``VmHWM``, its peak) of ``pid``, from /proc."""
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field}")


def cpu_seconds(pid: int | None = None) -> float:
    """utime + stime of ``pid`` from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5); fields[0] here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_config() -> HostConfig:
    # Hole punching would turn circuits into direct connections and AutoNAT would send dials
    # of its own: neither is what is measured here.
    return HostConfig(hole_punching=None, autonat_client=None)


async def read_line(stream: trio.abc.ReceiveStream, buf: bytearray) -> bytes | None:
    """One line from ``stream`` (``buf`` keeps what came after it); ``None`` at EOF."""
    while b"\n" not in buf:
        chunk = await stream.receive_some(1 << 16)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


def stdin_stream() -> trio.lowlevel.FdStream:
    return trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))


# -- crash and failure accounting (client processes) -------------------------------------------


@dataclass
class Tally:
    """What went wrong in a client process."""

    #: Hosts whose ``async with Host()`` ended with an exception.
    host_crashes: list[str] = field(default_factory=list)
    #: Exceptions in client tasks that are neither a Libp2pError nor our own timeout.
    unexpected: list[str] = field(default_factory=list)
    #: Typed failures (Libp2pError, or our OP_TIMEOUT) by "phase: type".
    failures: Counter[str] = field(default_factory=Counter)
    failure_samples: list[str] = field(default_factory=list)
    #: Oddities that are not failures, by what happened.
    notes: Counter[str] = field(default_factory=Counter)

    def failed(self, phase: str, exc: BaseException) -> None:
        self.failures[f"{phase}: {type(exc).__name__}"] += 1
        if len(self.failure_samples) < SAMPLES:
            self.failure_samples.append(f"{phase}: {describe(exc)}")

    def summary(self) -> dict[str, Any]:
        return {
            "host_crashes": len(self.host_crashes),
            "host_crash_samples": self.host_crashes[:SAMPLES],
            "unexpected": len(self.unexpected),
            "unexpected_samples": self.unexpected[:SAMPLES],
            "failures": dict(self.failures),
            "failure_samples": self.failure_samples,
            "notes": dict(self.notes),
        }


def describe(exc: BaseException) -> str:
    """Type and message, with the innermost frame, and the leaves of an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = "; ".join(describe(e) for e in exc.exceptions[:3])
        return f"{type(exc).__name__}({len(exc.exceptions)}): [{leaves}]"
    where = ""
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        frame = tb[-1]
        where = f" at {Path(frame.filename).name}:{frame.lineno} ({frame.name})"
    return f"{type(exc).__name__}: {exc}{where}"


async def guarded(tally: Tally, phase: str, op: Callable[[], Awaitable[Any]]) -> Any:
    """Run one client operation; sort what it raises into typed failures and the unexpected."""
    try:
        with trio.fail_after(OP_TIMEOUT):
            return await op()
    except (Libp2pError, trio.TooSlowError) as exc:
        tally.failed(phase, exc)
    except Exception as exc:  # noqa: BLE001 -- counting them is the point
        tally.unexpected.append(f"{phase}: {describe(exc)}")
    return None


class HostPool:
    """``count`` client hosts, each kept alive in a task of its own until :meth:`close`."""

    def __init__(self, count: int, tally: Tally) -> None:
        self.hosts: list[Host | None] = [None] * count
        self.tally = tally
        self._done = trio.Event()
        self._started = 0
        self._all_started = trio.Event()
        self._count = count

    async def run(self, nursery: trio.Nursery, setup: Callable[[Host], None]) -> None:
        for i in range(self._count):
            nursery.start_soon(self._hold, i, setup)
        if self._count:
            await self._all_started.wait()

    async def _hold(self, i: int, setup: Callable[[Host], None]) -> None:
        started = False
        try:
            async with Host(config=client_config()) as host:
                setup(host)
                self.hosts[i] = host
                started = True
                self._mark_started()
                await self._done.wait()
        except Exception as exc:  # noqa: BLE001 -- a crashed host is what is counted
            self.tally.host_crashes.append(describe(exc))
        finally:
            self.hosts[i] = None
            if not started:
                self._mark_started()

    def _mark_started(self) -> None:
        """Once per host: it is up, or it failed to start."""
        self._started += 1
        if self._started == self._count:
            self._all_started.set()

    def close(self) -> None:
        self._done.set()


async def throttled(items: list[Any], limit: int, fn: Callable[[Any], Awaitable[None]]) -> None:
    """``fn(item)`` for every item, at most ``limit`` at once."""
    sem = trio.Semaphore(limit)

    async def one(item: Any) -> None:
        async with sem:
            await fn(item)

    async with trio.open_nursery() as nursery:
        for item in items:
            nursery.start_soon(one, item)


# -- server process: relay or listener ---------------------------------------------------------


class _Counter:
    """Swarm observer: counts connections opened (every one is a completed upgrade)."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0

    def connection_opened(self, conn: Connection) -> None:
        self.opened += 1

    def connection_closed(self, conn: Connection) -> None:
        self.closed += 1


async def serve(args: argparse.Namespace) -> None:
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    relay = RelayConfig.unlimited() if args.relay else None
    config = HostConfig(
        relay_service=relay,
        max_inbound_connections=1 << 20,
        hole_punching=None,
        autonat_client=None,
    )
    counter = _Counter()
    stdin = stdin_stream()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with Host(listen=["/ip4/127.0.0.1/tcp/0"], config=config) as host:
            host.swarm.observe(counter)
            host.nursery.start_soon(_stop_on_signal, signals, host.nursery.cancel_scope)
            addr = f"{host.listen_addrs[0]}/p2p/{host.peer_id}"
            emit({"event": "ready", "addr": addr, "fd_limit": raise_fd_limit()})
            buf = bytearray()
            while (line := await read_line(stdin, buf)) is not None:
                if line.strip() in (b"stats", b"peek"):
                    # peek: without the full collection (cheap enough to poll under load).
                    full = line.strip() == b"stats"
                    emit(_server_stats(host, counter, args.tracemalloc, full))
            host.nursery.cancel_scope.cancel()


async def _stop_on_signal(signals: Any, scope: trio.CancelScope) -> None:
    async for _ in signals:
        scope.cancel()
        return


def _server_stats(host: Host, counter: _Counter, traced: bool, full: bool) -> dict[str, Any]:
    if full:
        gc.collect()
    stats: dict[str, Any] = {
        "event": "stats" if full else "peek",
        "rss": rss_bytes(),
        "hwm": rss_bytes(field="VmHWM"),
        "cpu": cpu_seconds(),
        "connections": len(host.connections),
        "opened": counter.opened,
        "closed": counter.closed,
    }
    if host.relay_service is not None:
        rs = host.relay_service.stats
        stats.update(
            reservations=rs.reservations_active,
            circuits=rs.circuits_active,
            bytes_relayed=rs.bytes_relayed,
            reservations_refused=dict(rs.reservations_refused),
            circuits_refused=dict(rs.circuits_refused),
        )
    if traced:
        import tracemalloc

        stats["traced"] = tracemalloc.get_traced_memory()[0]
        top = tracemalloc.take_snapshot().statistics("lineno")[:4]
        stats["top"] = [f"{kib(t.size)} in {t.count} blocks at {t.traceback}" for t in top]
    return stats


# -- relay client process ----------------------------------------------------------------------


async def _sink(stream: NetStream) -> None:
    """Read to EOF, answer with the byte count (8 bytes), close."""
    total = 0
    while chunk := await stream.receive_some():
        total += len(chunk)
    await stream.send_all(total.to_bytes(8, "big"))
    await stream.aclose()


async def _open_circuit(host: Host, relay: str, target: str) -> NetStream:
    """Connect to ``target`` through ``relay``; open a sink stream on that circuit."""
    conn = await host.connect(f"{relay}/p2p/{target}")
    if not conn.relayed:
        raise RuntimeError(f"connection to {target} is not relayed: {conn}")
    return await host.new_stream(conn.remote_peer, SINK, allow_limited=True)


async def _push(stream: NetStream, nbytes: int) -> int:
    """Send ``nbytes`` and EOF; check the sink's count; return it."""
    block = bytes(CHUNK)
    left = nbytes
    while left > 0:
        n = min(left, CHUNK)
        await stream.send_all(block[:n] if n < CHUNK else block)
        left -= n
    await stream.send_eof()
    answer = b""
    while len(answer) < 8:
        chunk = await stream.receive_some(8 - len(answer))
        if not chunk:
            raise RuntimeError("data lost: the sink closed without its count")
        answer += chunk
    got = int.from_bytes(answer, "big")
    if got != nbytes:
        raise RuntimeError(f"data lost: the sink got {got} bytes of {nbytes}")
    await stream.aclose()
    return got


async def _push_all(tally: Tally, streams: dict[int, NetStream], nbytes: int) -> int:
    """Every stream pushes ``nbytes`` at once; return the bytes the sinks confirmed."""
    moved = 0

    async def push(stream: NetStream) -> None:
        nonlocal moved
        got = await guarded(tally, "send", partial(_push, stream, nbytes))
        moved += got or 0

    await throttled(list(streams.values()), len(streams) or 1, push)
    return moved


async def _cycle(tally: Tally, host: Host, target: str) -> None:
    """One connect/disconnect cycle; the ping round trip proves the listener's side is up."""
    conn = await host.connect(target)
    stream = await conn.new_stream([ping.PROTOCOL_ID])
    await ping.ping(stream)
    await stream.aclose()
    await host.disconnect(conn.remote_peer)
    if not conn.is_closed:
        # Host.disconnect used to return before the connection had left the swarm, and a
        # connect() then returned the closing connection (its first stream failed with
        # "yamux session closed: closed locally"). Should it happen again it is counted
        # (and printed), then waited out, so the next cycle is a new connection.
        tally.notes["disconnect() returned before the connection closed"] += 1
        await conn.wait_closed()


async def relay_clients(args: argparse.Namespace) -> None:
    raise_fd_limit()
    tally = Tally()
    pool = HostPool(args.hosts, tally)
    stdin = stdin_stream()
    circuit = f"{args.relay}/p2p-circuit"
    relay_prefix = circuit

    def setup(host: Host) -> None:
        host.set_stream_handler(SINK, _sink, allow_limited=True)

    async with trio.open_nursery() as nursery:
        rss0 = rss_bytes()
        await pool.run(nursery, setup)
        rss_hosts = rss_bytes()
        peers: list[str | None] = [None] * args.hosts

        async def reserve(i: int) -> None:
            host = pool.hosts[i]
            if host is None:
                return
            if await guarded(tally, "reserve", lambda: host.listen(circuit)) is not None:
                peers[i] = str(host.peer_id)

        t0 = time.perf_counter()
        attempts = [0] * (args.retries + 1)
        for attempt in range(args.retries + 1):
            # A client whose reservation failed tries again after the others (as auto-relay
            # would, later); every failed attempt stays counted as a typed failure.
            todo = [i for i in range(args.hosts) if peers[i] is None and pool.hosts[i]]
            attempts[attempt] = len(todo)
            await throttled(todo, args.concurrency, reserve)
        emit({
            "event": "reserved", "peers": peers, "seconds": time.perf_counter() - t0,
            "attempts": attempts,
            "rss_empty_hosts": rss_hosts - rss0, "rss_reserved": rss_bytes() - rss0,
            **tally.summary(),
        })  # fmt: skip
        streams: dict[int, NetStream] = {}
        buf = bytearray()
        while (line := await read_line(stdin, buf)) is not None:
            command, _, payload = line.decode().partition(" ")
            if command == "open":
                pairs: list[tuple[int, str]] = json.loads(payload)
                t0 = time.perf_counter()

                async def open_one(pair: tuple[int, str]) -> None:
                    i, target = pair
                    host = pool.hosts[i]
                    if host is None:
                        return

                    stream = await guarded(
                        tally, "open circuit", partial(_open_circuit, host, relay_prefix, target)
                    )
                    if stream is not None:
                        streams[i] = stream

                await throttled(pairs, args.concurrency, open_one)
                emit({"event": "opened", "circuits": len(streams),
                      "seconds": time.perf_counter() - t0, **tally.summary()})  # fmt: skip
            elif command == "send":
                t0 = time.perf_counter()
                moved = await _push_all(tally, streams, int(payload))
                emit({"event": "sent", "bytes": moved, "seconds": time.perf_counter() - t0,
                      **tally.summary()})  # fmt: skip
            elif command == "close":
                break
        pool.close()
    emit({"event": "done", **tally.summary()})


# -- dialer process (connect/disconnect cycles) ------------------------------------------------


async def dialers(args: argparse.Namespace) -> None:
    raise_fd_limit()
    tally = Tally()
    pool = HostPool(args.hosts, tally)
    stdin = stdin_stream()
    target = args.target

    async def cycles(budget: list[int], done: list[int]) -> None:
        async def loop(i: int) -> None:
            host = pool.hosts[i]
            while budget[0] > 0 and host is not None:
                budget[0] -= 1

                await guarded(tally, "cycle", partial(_cycle, tally, host, target))
                done[0] += 1
                host = pool.hosts[i]

        async with trio.open_nursery() as nursery:
            for i in range(args.hosts):
                nursery.start_soon(loop, i)

    async with trio.open_nursery() as nursery:
        await pool.run(nursery, lambda host: None)
        warm_done = [0]
        await cycles([args.warm], warm_done)
        emit({"event": "warm", "cycles": warm_done[0], **tally.summary()})
        buf = bytearray()
        if await read_line(stdin, buf) is not None:
            done = [0]
            t0 = time.perf_counter()
            await cycles([args.cycles], done)
            emit({"event": "cycled", "cycles": done[0], "seconds": time.perf_counter() - t0,
                  **tally.summary()})  # fmt: skip
            await read_line(stdin, buf)
        pool.close()
    emit({"event": "done", **tally.summary()})


# -- orchestrator --------------------------------------------------------------------------------


@dataclass
class Proc:
    """A benchmark process speaking JSON lines on stdout and commands on stdin."""

    process: trio.Process
    what: str
    buf: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def expect(self, event: str, within: float = 3600.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        with trio.fail_after(within):
            while True:
                line = await read_line(self.process.stdout, self.buf)
                if line is None:
                    tail = self.stderr.decode(errors="replace")[-3000:]
                    raise RuntimeError(f"{self.what} ended before {event!r}:\n{tail}")
                if line.startswith(b"{"):
                    obj: dict[str, Any] = json.loads(line)
                    if obj.get("event") == event:
                        return obj

    async def stats(self, kind: str = "stats") -> dict[str, Any]:
        await self.send(kind)
        return await self.expect(kind, 120)


async def _collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
        while chunk := await stream.receive_some():
            into += chunk
            del into[: max(0, len(into) - 64 * 1024)]


@contextlib.asynccontextmanager
async def spawn(what: str, *argv: str) -> AsyncIterator[Proc]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            [PY, SCRIPT, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        proc = Proc(process, what)
        assert process.stderr is not None
        nursery.start_soon(_collect, process.stderr, proc.stderr)
        try:
            yield proc
        finally:
            with trio.CancelScope(shield=True):
                assert process.stdin is not None
                with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                    await process.stdin.aclose()
                with trio.move_on_after(30):
                    await process.wait()
                if process.returncode is None:
                    process.terminate()
                    with trio.move_on_after(10):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            nursery.cancel_scope.cancel()


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@dataclass
class Crashes:
    host_crashes: int = 0
    unexpected: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)

    def add(self, summary: dict[str, Any]) -> None:
        self.host_crashes += summary["host_crashes"]
        self.unexpected += summary["unexpected"]
        self.failures.update(summary["failures"])
        self.notes.update(summary["notes"])
        for s in summary["host_crash_samples"]:
            self.samples.append(f"host crash: {s}")
        for s in summary["unexpected_samples"]:
            self.samples.append(f"unexpected: {s}")
        for s in summary["failure_samples"]:
            self.samples.append(f"typed failure: {s}")

    def report(self, what: str) -> None:
        failed = sum(self.failures.values())
        print(f"  client hosts crashed: {self.host_crashes}; unexpected exceptions in client"
              f" tasks: {self.unexpected} (goal 0 and 0); typed failures: {failed}"
              + (f" {dict(self.failures)}" if failed else ""))  # fmt: skip
        for note, count in self.notes.items():
            print(f"  {note}: {count} times")
        for s in self.samples[: 3 * SAMPLES]:
            print(f"    {s}")


def kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


async def relay_part(args: argparse.Namespace) -> None:
    argv = ["serve", "--relay"] + (["--tracemalloc"] if args.tracemalloc else [])
    async with spawn("relay", *argv) as relay, contextlib.AsyncExitStack() as stack:
        ready = await relay.expect("ready", 60)
        base = await relay.stats()
        log(f"relay up (pid {relay.pid}, fd limit {ready['fd_limit']});"
            f" {args.reservations} client hosts in {args.procs} processes reserving")  # fmt: skip
        counts = split(args.reservations, args.procs)
        clients = []
        for p, n in enumerate(counts):
            clients.append(await stack.enter_async_context(spawn(
                f"relay clients {p}", "relay-clients", "--relay", ready["addr"], "--hosts",
                str(n), "--concurrency", str(args.concurrency), "--retries", str(args.retries),
            )))  # fmt: skip
        crashes = Crashes()
        t0 = time.perf_counter()
        samples: list[tuple[float, int]] = [(0.0, 0)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_poll_reservations, relay, t0, samples, args.poll)
            reserved = [await c.expect("reserved") for c in clients]
            nursery.cancel_scope.cancel()
        reserve_secs = time.perf_counter() - t0
        held = await relay.stats()
        samples.append((reserve_secs, held["reservations"]))
        # (process, local index, peer id) of every host that holds a reservation.
        hosts = [(p, i, peer) for p, r in enumerate(reserved) for i, peer in enumerate(r["peers"])
                 if peer is not None]  # fmt: skip
        log(f"{held['reservations']} reservations held ({len(hosts)} reported by clients) in"
            f" {reserve_secs:.1f} s; opening {args.circuits} circuits")  # fmt: skip
        n_circ = min(args.circuits, len(hosts) // 2)
        # Source k dials target from the other end of the list: with two processes the
        # source and the target live in different ones.
        orders: list[list[tuple[int, str]]] = [[] for _ in clients]
        for k in range(n_circ):
            p, i, _ = hosts[k]
            orders[p].append((i, hosts[len(hosts) - 1 - k][2]))
        t0 = time.perf_counter()
        for c, order in zip(clients, orders, strict=True):
            await c.send("open " + json.dumps(order))
        opened = [await c.expect("opened") for c in clients]
        open_secs = time.perf_counter() - t0
        with_circuits = await relay.stats()
        n_open = sum(o["circuits"] for o in opened)
        log(f"{with_circuits['circuits']} circuits open ({n_open} streams) in {open_secs:.1f} s;"
            f" each pushes {args.circuit_mib} MiB")  # fmt: skip
        nbytes = int(args.circuit_mib * MIB)
        for c in clients:
            await c.send(f"send {nbytes}")
        sent = [await c.expect("sent") for c in clients]
        after_data = await relay.stats()
        for c in clients:
            await c.send("close")
        for c in clients:
            crashes.add(await c.expect("done", 300))
        left = await _settled(relay, 120)
    delivered = sum(s["bytes"] for s in sent)
    relayed = after_data["bytes_relayed"] - with_circuits["bytes_relayed"]
    cpu = after_data["cpu"] - with_circuits["cpu"]
    data_secs = max(s["seconds"] for s in sent)
    n_res = held["reservations"]
    print(f"Relay under load: {n_res} reservations, {with_circuits['circuits']} circuits"
          f" (client hosts in {args.procs} processes, relay in its own)")  # fmt: skip
    print(f"  {'':34} {'RSS':>10} {'growth':>10} {'per item':>12}")
    print(f"  {'relay idle':34} {mib(base['rss']):>10}")
    grow_res = held["rss"] - base["rss"]
    print(f"  {f'+ {n_res} reservations':34} {mib(held['rss']):>10} {mib(grow_res):>10}"
          f" {kib(grow_res / max(n_res, 1)):>12}")  # fmt: skip
    grow_circ = with_circuits["rss"] - held["rss"]
    n_c = max(with_circuits["circuits"], 1)
    label = f"+ {with_circuits['circuits']} circuits (idle)"
    print(f"  {label:34} {mib(with_circuits['rss']):>10} {mib(grow_circ):>10}"
          f" {kib(grow_circ / n_c):>12}")  # fmt: skip
    print(f"  {'after the data':34} {mib(after_data['rss']):>10}")
    if args.tracemalloc:
        t_res = held["traced"] - base["traced"]
        t_circ = with_circuits["traced"] - held["traced"]
        print(f"  tracemalloc (Python heap): {kib(t_res / max(n_res, 1))} per reservation,"
              f" {kib(t_circ / n_c)} per circuit")  # fmt: skip
    print(f"  after the data: {after_data['circuits']} circuits still open (idle), peak relay"
          f" RSS {mib(after_data['hwm'])}, i.e. {kib((after_data['hwm'] - held['rss']) / n_c)}"
          " per circuit at the peak")  # fmt: skip
    print(f"  after every client left: RSS {mib(left['rss'])}, {left['reservations']}"
          f" reservations, {left['circuits']} circuits,"
          f" {left['connections']} connections")  # fmt: skip
    if args.tracemalloc:
        print(f"  tracemalloc (Python heap): idle {mib(base['traced'])}, with the circuits"
              f" {mib(with_circuits['traced'])}, after the data {mib(after_data['traced'])},"
              f" after every client left {mib(left['traced'])}")  # fmt: skip
        for when, stats in (("after the data", after_data), ("after every client left", left)):
            print(f"  largest Python allocation sites {when}:")
            for line in stats["top"]:
                print(f"    {line}")
    per_host = sum(r["rss_reserved"] for r in reserved) / max(len(hosts), 1)
    print(f"  client processes: {kib(per_host)} RSS per client host holding a reservation")
    tries = [sum(col) for col in zip(*(r["attempts"] for r in reserved), strict=True)]
    print(f"  reserving took {reserve_secs:.1f} s ({n_res / reserve_secs:.0f}/s; hosts trying"
          f" in each round: {', '.join(map(str, tries))}); opening the circuits"
          f" {open_secs:.1f} s")  # fmt: skip
    print(f"  reservations/s as they pile up: {_rates(samples, n_res, max(n_res // 5, 1))}")
    gib = relayed / GIB
    print(f"  data: {mib(delivered)} delivered end to end in {data_secs:.1f} s"
          f" ({delivered / MIB / data_secs:.1f} MiB/s); relay forwarded {mib(relayed)}"
          f" (both directions) using {cpu:.1f} CPU s")  # fmt: skip
    per_gib = f"{cpu / gib:.1f}" if gib else "-"
    print(f"  relay CPU seconds per relayed GiB: {per_gib}")
    refused = {**held["reservations_refused"], **after_data["circuits_refused"]}
    if refused:
        print(f"  relay refusals: {refused}")
    crashes.report("relay")
    print()


async def _poll_reservations(
    relay: Proc, t0: float, samples: list[tuple[float, int]], every: float
) -> None:
    """Reservations held over time, to show whether the rate holds up as they pile up."""
    while True:
        await trio.sleep(every)
        peek = await relay.stats("peek")
        samples.append((time.perf_counter() - t0, peek["reservations"]))


def _rates(samples: list[tuple[float, int]], total: int, step: int) -> str:
    """Reservations per second over each successive ``step`` reservations."""
    out = []
    t_prev, n_prev = samples[0]
    for i, (t, n) in enumerate(samples[1:], 1):
        if n > n_prev and (n - n_prev >= step or n >= total or i == len(samples) - 1):
            out.append(f"{n_prev}-{n}: {(n - n_prev) / max(t - t_prev, 1e-9):.0f}/s")
            t_prev, n_prev = t, n
    return ", ".join(out)


async def listener_part(args: argparse.Namespace) -> None:
    argv = ["serve"] + (["--tracemalloc"] if args.tracemalloc else [])
    async with spawn("listener", *argv) as listener, contextlib.AsyncExitStack() as stack:
        ready = await listener.expect("ready", 60)
        counts = split(args.cycles, args.procs)
        clients = []
        for p, n in enumerate(counts):
            clients.append(await stack.enter_async_context(spawn(
                f"dialers {p}", "dialers", "--target", ready["addr"], "--hosts",
                str(args.dialers), "--cycles", str(n), "--warm", str(args.warm),
            )))  # fmt: skip
        crashes = Crashes()
        for c in clients:
            await c.expect("warm", 300)
        await _settled(listener)
        before = await listener.stats()
        log(f"listener (pid {listener.pid}) warmed up; {args.cycles} connect/disconnect cycles"
            f" from {args.procs} x {args.dialers} client hosts")  # fmt: skip
        t0 = time.perf_counter()
        for c in clients:
            await c.send("go")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_progress, listener, before["opened"], args.cycles, args.poll * 15)
            cycled = [await c.expect("cycled") for c in clients]
            nursery.cancel_scope.cancel()
        wall = time.perf_counter() - t0
        at_end = await listener.stats()
        after = await _settled(listener)
        for c in clients:
            await c.send("close")
        for c in clients:
            crashes.add(await c.expect("done", 300))
    accepted = at_end["opened"] - before["opened"]
    done = sum(c["cycles"] for c in cycled)
    growth = after["rss"] - before["rss"]
    print(f"Listener: {done} connect/disconnect cycles from {args.procs * args.dialers} client"
          f" hosts in {args.procs} processes, listener in its own")  # fmt: skip
    print(
        f"  handshakes accepted: {accepted} in {wall:.1f} s = {accepted / wall:.0f}/s"
        f" (listener CPU {at_end['cpu'] - before['cpu']:.1f} s,"
        f" {(at_end['cpu'] - before['cpu']) / max(accepted, 1) * 1e3:.2f} ms per handshake)"
    )
    print(f"  listener RSS before {mib(before['rss'])}, after {mib(after['rss'])}:"
          f" growth {mib(growth)}, {growth / max(accepted, 1):.1f} bytes per cycle"
          f" ({after['connections']} connections left open)")  # fmt: skip
    if args.tracemalloc:
        t = after["traced"] - before["traced"]
        print(f"  tracemalloc (Python heap): growth {kib(t)}, {t / max(accepted, 1):.1f} bytes"
              " per cycle")  # fmt: skip
    crashes.report("listener")
    print()


async def _progress(listener: Proc, base: int, total: int, every: float) -> None:
    t0 = time.perf_counter()
    while True:
        await trio.sleep(every)
        done = (await listener.stats("peek"))["opened"] - base
        log(f"{done}/{total} cycles after {time.perf_counter() - t0:.0f} s")


async def _settled(server: Proc, within: float = 60.0) -> dict[str, Any]:
    """A server's stats once every connection is gone (polled: it is another process)."""
    deadline = time.monotonic() + within
    while True:
        stats = await server.stats()
        if stats["connections"] == 0 or time.monotonic() > deadline:
            return stats
        await trio.sleep(0.2)


def _sysinfo() -> str:
    ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    tw = Path("/proc/sys/net/ipv4/tcp_tw_reuse").read_text().strip()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (f"{os.cpu_count()} cores; fd limit {soft} (hard {hard}, raised to it in every"
            f" process); ephemeral ports {ports[0]}-{ports[1]}; tcp_tw_reuse={tw}")  # fmt: skip


async def orchestrate(args: argparse.Namespace) -> int:
    raise_fd_limit()
    print(f"libp2p load benchmark{' (--quick: smoke check only)' if args.quick else ''} --"
          f" {time.strftime('%Y-%m-%d %H:%M')}, {_sysinfo()}", flush=True)  # fmt: skip
    print()
    if "relay" in args.only:
        await relay_part(args)
    if "listener" in args.only:
        await listener_part(args)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    s = sub.add_parser("serve", help="(internal) the relay or listener process")
    s.add_argument("--relay", action="store_true")
    s.add_argument("--tracemalloc", action="store_true")
    c = sub.add_parser("relay-clients", help="(internal) a process of relay client hosts")
    c.add_argument("--relay", required=True)
    c.add_argument("--hosts", type=int, required=True)
    c.add_argument("--concurrency", type=int, default=200)
    c.add_argument("--retries", type=int, default=2)
    d = sub.add_parser("dialers", help="(internal) a process of connect/disconnect hosts")
    d.add_argument("--target", required=True)
    d.add_argument("--hosts", type=int, required=True)
    d.add_argument("--cycles", type=int, required=True)
    d.add_argument("--warm", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke check")
    parser.add_argument("--reservations", type=int, help="client hosts reserving (10000)")
    parser.add_argument("--circuits", type=int, help="circuits moving data at once (1000)")
    parser.add_argument("--circuit-mib", type=float, help="MiB pushed through each circuit (1)")
    parser.add_argument("--cycles", type=int, help="connect/disconnect cycles (100000)")
    parser.add_argument("--procs", type=int, default=2, help="client processes (2)")
    parser.add_argument("--dialers", type=int, default=32, help="cycling hosts per process")
    parser.add_argument("--warm", type=int, help="warm-up cycles per dialer process (500)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=200,
        help="reservations or circuits being set up at once per process",
    )
    parser.add_argument("--tracemalloc", action="store_true", help="Python heap figures too")
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="rounds in which failed reservations are tried again (2)",
    )
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between relay polls")
    parser.add_argument("--only", nargs="+", choices=("relay", "listener"),
                        default=["relay", "listener"])  # fmt: skip
    args = parser.parse_args(argv)
    if args.role is None:
        defaults = (
            {"reservations": 200, "circuits": 20, "circuit_mib": 0.25, "cycles": 2000,
             "warm": 100}
            if args.quick
            else {"reservations": 10000, "circuits": 1000, "circuit_mib": 1.0,
                  "cycles": 100000, "warm": 500}
        )  # fmt: skip
        for name, value in defaults.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
    return args


def main() -> int:
    args = parse_args()
    if args.role == "serve":
        trio.run(serve, args)
        return 0
    if args.role == "relay-clients":
        trio.run(relay_clients, args)
        return 0
    if args.role == "dialers":
        trio.run(dialers, args)
        return 0
    return trio.run(orchestrate, args)


if __name__ == "__main__":
    sys.exit(main())
