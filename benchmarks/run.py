"""Side-by-side benchmarks of our stack, js-libp2p and the physical ceiling, in one run.

    .venv/bin/python benchmarks/run.py [--quick] [--mib N] [--skip-js] [--only SECTION ...]

Sections (every peer in its own process; figures are medians; nothing here is a test):

* throughput -- ``/perf/1.0.0`` on one stream, ``--mib`` MiB up (client to server) and then
  down, each a new connection, for ours->ours, js->js, ours->js, js->ours and the ceiling
  (trio TCP + ChaCha20-Poly1305 in 65535-byte Noise frames, ``benchmarks/ceiling.py``). The
  rate excludes the dial; it counts from opening the stream to the last byte.
* relay -- the same transfer from our client to our server directly and through our relay
  (``benchmarks/relay_server.py``, unlimited configuration, its own process), alternated, as
  the ratio relayed/direct. Three processes share the machine's cores in the relayed case.
* latency -- a new connection and a 1-byte perf round trip (start of the dial to the last
  byte), ours->ours and js->js, on loopback; timed inside each client, so process start-up
  is not counted.
* delay -- the same through ``benchmarks/delay_proxy.py``, which adds ``--rtt-ms`` of round
  trip (and one RTT before the client's first bytes for the TCP handshake); reported in RTTs
  against the floor of 3: TCP handshake, Noise XX with the muxer inlined, lazy protocol
  selection with the request.
* memory -- RSS growth of a listener and of a dialer holding ``--connections`` idle
  connections (each used once for a 1-byte perf), divided by their number.
* import -- ``python -c "import libp2p"`` minus ``python -c pass``, medians of fresh processes,
  with bytecode cached (as an installed package has it).

``--quick`` shrinks everything for a smoke check (the figures mean little then).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

MIB = 1 << 20
SECTIONS = ("throughput", "relay", "latency", "delay", "memory", "import")
PATHS = [
    ("ceiling", "ceiling"),
    ("ours", "ours"),
    ("js", "js"),
    ("ours", "js"),
    ("js", "ours"),
]
NAMES = {"ceiling": "ceiling (trio+ChaCha20)"}

# Targets (from the issue).
THROUGHPUT_VS_JS = 1.5
THROUGHPUT_VS_CEILING = 0.5
LATENCY_SPEEDUP = 2.0
RTT_FLOOR = 3.0
IMPORT_BUDGET_MS = 150.0
RELAYED_VS_DIRECT = 0.30


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def path_name(client: str, server: str) -> str:
    return NAMES[client] if client == "ceiling" else f"{client} -> {server}"


@dataclass
class Target:
    what: str
    value: str
    wanted: str
    ok: bool | None  # None: not measured


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def add(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)

    def target(self, what: str, value: str, wanted: str, ok: bool | None) -> None:
        self.targets.append(Target(what, value, wanted, ok))


def mark(ok: bool | None) -> str:
    return {True: "ok", False: "MISS", None: "n/a"}[ok]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(x: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


# -- throughput -----------------------------------------------------------------------------------


def _rate(nbytes: int, results: list[dict[str, float]]) -> float:
    return statistics.median(nbytes / (r["time_seconds"] - r["connect_seconds"]) for r in results)


async def throughput(report: Report, mib: int, runs: int, kinds: set[str]) -> None:
    nbytes = mib * MIB
    paths = [(c, s) for c, s in PATHS if c in kinds and s in kinds]
    samples: dict[tuple[str, str], tuple[list[float], list[float]]] = {p: ([], []) for p in paths}
    async with contextlib.AsyncExitStack() as stack:
        servers = {}
        for kind in sorted({s for _, s in paths}):
            servers[kind] = await stack.enter_async_context(benchlib.server(kind))
        # Round-robin over the paths, one transfer per client process, so that a slow spell
        # of the machine (other load, CPU frequency) hits every path alike.
        for run in range(runs):
            for client_kind, server_kind in paths:
                log(f"throughput {path_name(client_kind, server_kind)}: {mib} MiB up and down"
                    f" (run {run + 1}/{runs})")  # fmt: skip
                target = servers[server_kind].addr
                for i, (up, down) in enumerate(((nbytes, 0), (0, nbytes))):
                    results = await benchlib.client(client_kind, target, upload=up, download=down)
                    samples[client_kind, server_kind][i].append(_rate(nbytes, results))
    rates = {
        p: (statistics.median(ups), statistics.median(downs)) for p, (ups, downs) in samples.items()
    }

    js = rates.get(("js", "js"))
    ceiling = rates.get(("ceiling", "ceiling"))
    report.add(f"Throughput: one stream, {mib} MiB each way, median of {runs} runs (MiB/s)")
    report.add(
        f"  {'path':26} {'up':>8} {'down':>8}   {'up/js':>6} {'down/js':>7}"
        f"   {'up/ceil':>7} {'down/ceil':>9}"
    )
    for key in PATHS:
        if key not in rates:
            continue
        up, down = rates[key]
        report.add(
            f"  {path_name(*key):26} {up / MIB:8.1f} {down / MIB:8.1f}"
            f"   {fmt(ratio(up, js and js[0]), '.2f', 'x'):>6}"
            f" {fmt(ratio(down, js and js[1]), '.2f', 'x'):>7}"
            f"   {fmt(ratio(up, ceiling and ceiling[0])):>7}"
            f" {fmt(ratio(down, ceiling and ceiling[1])):>9}"
        )
    ours = rates.get(("ours", "ours"))
    for i, direction in enumerate(("up", "down")):
        vs_js = ratio(ours[i], js[i]) if ours and js else None
        report.target(
            f"throughput {direction}, ours/js",
            fmt(vs_js, ".2f", "x"),
            f">= {THROUGHPUT_VS_JS}x",
            None if vs_js is None else vs_js >= THROUGHPUT_VS_JS,
        )
    for i, direction in enumerate(("up", "down")):
        vs_ceiling = ratio(ours[i], ceiling[i]) if ours and ceiling else None
        report.target(
            f"throughput {direction}, ours/ceiling (aim)",
            fmt(vs_ceiling),
            f">= {THROUGHPUT_VS_CEILING}",
            None if vs_ceiling is None else vs_ceiling >= THROUGHPUT_VS_CEILING,
        )
    report.add()


# -- relay ----------------------------------------------------------------------------------------


async def relay_throughput(report: Report, mib: int, runs: int) -> None:
    nbytes = mib * MIB
    relay_cmd = [benchlib.PY, str(benchlib.BENCH / "relay_server.py")]
    async with benchlib.spawn(relay_cmd, None, "relay") as (_relay, relay_ready, _err):
        circuit = f"{relay_ready['addrs'][0]}/p2p-circuit"
        server_cmd = [benchlib.PY, "-m", "libp2p.perf", "server"]
        server_cmd += ["--listen", "/ip4/127.0.0.1/tcp/0", "--listen", circuit]
        async with benchlib.spawn(server_cmd, None, "perf server") as (_srv, ready, _err2):
            direct = next(a for a in ready["addrs"] if "p2p-circuit" not in a)
            relayed = next(a for a in ready["addrs"] if "p2p-circuit" in a)
            samples: dict[str, tuple[list[float], list[float]]] = {
                "direct": ([], []),
                "relayed": ([], []),
            }
            for run in range(runs):
                for name, target in (("direct", direct), ("relayed", relayed)):
                    log(f"relay throughput {name}: {mib} MiB up and down (run {run + 1}/{runs})")
                    for i, (up, down) in enumerate(((nbytes, 0), (0, nbytes))):
                        results = await benchlib.client("ours", target, upload=up, download=down)
                        samples[name][i].append(_rate(nbytes, results))
    rates = {k: (statistics.median(u), statistics.median(d)) for k, (u, d) in samples.items()}
    report.add(f"Relay: ours->ours, one stream, {mib} MiB each way, median of {runs} runs (MiB/s)")
    report.add(f"  {'path':26} {'up':>8} {'down':>8}   {'up/direct':>9} {'down/direct':>11}")
    for name in ("direct", "relayed"):
        up, down = rates[name]
        report.add(
            f"  {name:26} {up / MIB:8.1f} {down / MIB:8.1f}"
            f"   {fmt(ratio(up, rates['direct'][0])):>9} {fmt(ratio(down, rates['direct'][1])):>11}"
        )
    for i, direction in enumerate(("up", "down")):
        share = ratio(rates["relayed"][i], rates["direct"][i])
        report.target(
            f"relayed throughput {direction}, relayed/direct",
            fmt(share),
            f">= {RELAYED_VS_DIRECT}",
            None if share is None else share >= RELAYED_VS_DIRECT,
        )
    report.add()


# -- latency --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    total: float
    connect: float
    p90: float


def _latency(results: list[dict[str, float]]) -> Latency:
    totals = sorted(r["time_seconds"] for r in results)
    return Latency(
        total=statistics.median(totals),
        connect=statistics.median(r["connect_seconds"] for r in results),
        p90=totals[min(len(totals) - 1, int(0.9 * len(totals)))],
    )


async def _measure_latency(kind: str, iterations: int, rtt_ms: float | None) -> Latency:
    async with benchlib.server(kind) as srv:
        if rtt_ms is None:
            results = await benchlib.client(
                kind, srv.addr, upload=1, download=1, iterations=iterations
            )
        else:
            async with benchlib.delay_proxy(srv.port, rtt_ms) as port:
                results = await benchlib.client(
                    kind, srv.via_port(port), upload=1, download=1, iterations=iterations
                )
    return _latency(results)


async def latency(report: Report, iterations: int, kinds: set[str]) -> None:
    found: dict[str, Latency] = {}
    for kind in ("ours", "js"):
        if kind in kinds:
            log(f"latency {kind} -> {kind}: {iterations} new connections")
            found[kind] = await _measure_latency(kind, iterations, None)
    report.add(
        f"Latency: new connection + 1-byte perf round trip, loopback, median of {iterations} (ms)"
    )
    report.add(f"  {'path':14} {'total':>7} {'connect':>8} {'p90':>7}")
    for kind, lat in found.items():
        report.add(
            f"  {kind + ' -> ' + kind:14} {lat.total * 1e3:7.2f} {lat.connect * 1e3:8.2f}"
            f" {lat.p90 * 1e3:7.2f}"
        )
    speedup = ratio(found["js"].total, found["ours"].total) if len(found) == 2 else None
    report.add(f"  js/ours: {fmt(speedup, '.2f', 'x')} (target >= {LATENCY_SPEEDUP}x faster)")
    report.target(
        "loopback connect+round trip, js/ours",
        fmt(speedup, ".2f", "x"),
        f">= {LATENCY_SPEEDUP}x",
        None if speedup is None else speedup >= LATENCY_SPEEDUP,
    )
    report.add()


async def _measure_delayed(kind: str, iterations: int, rtt_ms: float) -> tuple[Latency, Latency]:
    """Through the proxy with no delay (its own cost) and with ``rtt_ms``: one server each."""
    async with benchlib.server(kind) as srv:
        found = []
        for ms in (0.0, rtt_ms):
            async with benchlib.delay_proxy(srv.port, ms) as port:
                results = await benchlib.client(
                    kind, srv.via_port(port), upload=1, download=1, iterations=iterations
                )
            found.append(_latency(results))
    return found[0], found[1]


async def delay(report: Report, iterations: int, rtt_ms: float, kinds: set[str]) -> None:
    rtt = rtt_ms / 1000
    found: dict[str, tuple[Latency, Latency]] = {}
    for kind in ("ours", "js"):
        if kind in kinds:
            log(f"latency {kind} -> {kind} through the proxy, 0 and {rtt_ms:g} ms RTT:"
                f" {iterations} new connections each")  # fmt: skip
            found[kind] = await _measure_delayed(kind, iterations, rtt_ms)
    report.add(
        f"Latency with {rtt_ms:g} ms RTT added by a delaying proxy, median of {iterations}"
        f" (floor {RTT_FLOOR:g} RTT: TCP handshake, Noise XX with inlined muxer, lazy protocol"
        " selection)"
    )
    report.add(
        "  RTTs = total / RTT; round trips = (total - total through the proxy at 0 ms) / RTT,"
        " i.e. without processing time"
    )
    report.add(
        f"  {'path':14} {'total ms':>9} {'at 0 ms':>8} {'RTTs':>6} {'round trips':>12}"
        f" {'connect RTTs':>13} {'p90 RTTs':>9}"
    )
    for kind, (base, lat) in found.items():
        report.add(
            f"  {kind + ' -> ' + kind:14} {lat.total * 1e3:9.1f} {base.total * 1e3:8.1f}"
            f" {lat.total / rtt:6.2f} {(lat.total - base.total) / rtt:12.2f}"
            f" {lat.connect / rtt:13.2f} {lat.p90 / rtt:9.2f}"
        )
    ours = found.get("ours")
    rounds = (ours[1].total - ours[0].total) / rtt if ours else None
    # Anything under half an RTT above the floor is processing, not a round trip.
    report.target(
        f"round trips with {rtt_ms:g} ms RTT, ours",
        fmt(rounds),
        f"{RTT_FLOOR:g} (floor; < {RTT_FLOOR + 0.5:g}: no extra round trip)",
        None if rounds is None else rounds < RTT_FLOOR + 0.5,
    )
    if ours:
        raw = ours[1].total / rtt
        report.target(
            f"RTTs with {rtt_ms:g} ms RTT incl. processing, ours",
            fmt(raw),
            f"{RTT_FLOOR:g} (floor)",
            None,
        )
    speedup = ratio(found["js"][1].total, found["ours"][1].total) if len(found) == 2 else None
    report.add(f"  js/ours: {fmt(speedup, '.2f', 'x')}")
    # Information, not a target: with the delay the ratio tends to js's round trips over ours.
    report.target(
        f"connect+round trip with {rtt_ms:g} ms RTT, js/ours",
        fmt(speedup, ".2f", "x"),
        "(info: js round trips / ours)",
        None,
    )
    report.add()


# -- memory ---------------------------------------------------------------------------------------


async def memory(report: Report, connections: int, kinds: set[str]) -> None:
    found: dict[str, benchlib.MemoryResult] = {}
    for kind in ("ours", "js"):
        if kind in kinds:
            log(f"memory: {kind} holding {connections} idle connections")
            found[kind] = await benchlib.memory_per_connection(kind, connections)
    report.add(
        f"Memory per idle connection: RSS growth / {connections} connections (KiB);"
        " js dialer measured after a forced GC, js listener without"
    )
    report.add(f"  {'impl':6} {'listener':>9} {'dialer':>9}")
    for kind, mem in found.items():
        report.add(
            f"  {kind:6} {mem.listener_bytes / mem.connections / 1024:9.1f}"
            f" {mem.dialer_bytes / mem.connections / 1024:9.1f}"
        )
    if len(found) == 2:
        ours, js = found["ours"], found["js"]
        report.add(
            f"  ours/js: listener {fmt(ratio(ours.listener_bytes, js.listener_bytes))},"
            f" dialer {fmt(ratio(ours.dialer_bytes, js.dialer_bytes))}"
        )
    report.add()


# -- import time ----------------------------------------------------------------------------------


_PYCACHE = Path(tempfile.mkdtemp(prefix="libp2p-bench-pycache-"))


def _import_env() -> dict[str, str]:
    """The environment of import timing: bytecode cached, as an installed package has it.

    ``PYTHONDONTWRITEBYTECODE`` (set on some machines) would make every run recompile our
    source; the cache goes to a temporary directory rather than into the tree.
    """
    env = benchlib.environ()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(_PYCACHE)
    return env


def _time_process(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env=_import_env(), cwd=benchlib.ROOT)
    return time.perf_counter() - start


def _largest_imports(limit: int = 7) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """What ``import libp2p`` spends its time on, per top-level package (``-X importtime``).

    Each package libp2p imports is charged the cumulative time of that import (what it pulls
    in, e.g. attrs for trio, included); libp2p's own modules get the rest.
    """
    done = subprocess.run(
        [benchlib.PY, "-X", "importtime", "-c", "import libp2p"],
        capture_output=True,
        text=True,
        check=True,
        env=_import_env(),
        cwd=benchlib.ROOT,
    )
    entries = []
    own: list[tuple[str, float]] = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m is not None:
            entries.append((len(m.group(3)) // 2, m.group(4), int(m.group(2)) / 1000))
            if m.group(4).startswith("libp2p."):
                own.append((m.group(4), int(m.group(1)) / 1000))
    own.sort(key=lambda item: -item[1])
    # Children are printed before their parent: walk backwards to know each one's parent.
    costs: dict[str, float] = {}
    ancestors: list[str] = []
    total = 0.0
    under_libp2p = False
    for depth, name, cumulative in reversed(entries):
        del ancestors[depth:]
        if depth == 0:
            under_libp2p = name == "libp2p"
            if under_libp2p:
                total = cumulative
        parent = ancestors[-1] if ancestors else None
        ancestors.append(name)
        package = name.split(".")[0]
        if under_libp2p and parent is not None and parent.split(".")[0] == "libp2p" != package:
            costs[package] = costs.get(package, 0.0) + cumulative
    costs["libp2p (own modules)"] = total - sum(costs.values())
    return sorted(costs.items(), key=lambda item: -item[1])[:limit], own[:limit]


async def import_time(report: Report, runs: int) -> None:
    log(f"import time: {runs} fresh processes each")
    py = benchlib.PY
    run: Callable[[list[str]], float] = _time_process
    await trio.to_thread.run_sync(run, [py, "-c", "import libp2p"])  # warm the bytecode cache
    bare, full = [], []
    for _ in range(runs):
        bare.append(await trio.to_thread.run_sync(run, [py, "-c", "pass"]))
        full.append(await trio.to_thread.run_sync(run, [py, "-c", "import libp2p"]))
    cost = (statistics.median(full) - statistics.median(bare)) * 1000
    largest, own = await trio.to_thread.run_sync(_largest_imports)
    report.add(f"Import: `import libp2p`, median of {runs} fresh processes")
    report.add(
        f"  {cost:.1f} ms (import {statistics.median(full) * 1000:.1f} ms minus interpreter start"
        f" {statistics.median(bare) * 1000:.1f} ms); target < {IMPORT_BUDGET_MS:g} ms"
    )
    report.add("  by package (-X importtime, which inflates them): " + ", ".join(
        f"{name} {ms:.0f} ms" for name, ms in largest
    ))  # fmt: skip
    report.add("  slowest own modules (self time): " + ", ".join(
        f"{name} {ms:.1f} ms" for name, ms in own
    ))  # fmt: skip
    report.target(
        "import libp2p", f"{cost:.0f} ms", f"< {IMPORT_BUDGET_MS:g} ms", cost < IMPORT_BUDGET_MS
    )
    report.add()


# -- main -----------------------------------------------------------------------------------------


def _versions(js_ok: bool, js_why: str) -> str:
    parts = [f"Python {platform.python_version()}", f"trio {trio.__version__}"]
    parts.append(js_why if js_ok else f"js skipped ({js_why})")
    return ", ".join(parts)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check")
    parser.add_argument("--mib", type=int, help="MiB each way for throughput (default 1024)")
    parser.add_argument("--runs", type=int, help="throughput runs per direction (default 3)")
    parser.add_argument("--iterations", type=int, help="latency connections (default 100)")
    parser.add_argument(
        "--delay-iterations", type=int, help="connections with added delay (default 100)"
    )
    parser.add_argument("--rtt-ms", type=float, help="added RTT for the delay section (50)")
    parser.add_argument("--connections", type=int, help="idle connections for memory (200)")
    parser.add_argument("--import-runs", type=int, help="processes for import time (10)")
    parser.add_argument("--skip-js", action="store_true", help="leave out every js figure")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
        help=f"run only these sections ({', '.join(SECTIONS)})",
    )  # fmt: skip
    args = parser.parse_args(argv)
    defaults = (
        {"mib": 16, "runs": 2, "iterations": 10, "delay_iterations": 5, "rtt_ms": 20.0,
         "connections": 20, "import_runs": 3}
        if args.quick
        else {"mib": 1024, "runs": 3, "iterations": 100, "delay_iterations": 100,
              "rtt_ms": 50.0, "connections": 200, "import_runs": 10}
    )  # fmt: skip
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    js_ok, js_why = (False, "--skip-js") if args.skip_js else benchlib.js_available()
    kinds = {"ours", "ceiling"} | ({"js"} if js_ok else set())
    report = Report()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    report.add(
        f"libp2p benchmarks{' (--quick: smoke check only)' if args.quick else ''} -- {stamp},"
        f" {benchlib.os.cpu_count()} cores ({_cpu()}), {_versions(js_ok, js_why)}"
    )
    report.add("Every peer runs in its own process; figures are medians; ratios are ours/other.")
    report.add()
    if "throughput" in args.only:
        await throughput(report, args.mib, args.runs, kinds)
    if "relay" in args.only:
        await relay_throughput(report, args.mib, args.runs)
    if "latency" in args.only:
        await latency(report, args.iterations, kinds)
    if "delay" in args.only:
        await delay(report, args.delay_iterations, args.rtt_ms, kinds)
    if "memory" in args.only:
        await memory(report, args.connections, kinds)
    if "import" in args.only:
        await import_time(report, args.import_runs)
    if report.targets:
        report.add("Targets")
        for t in report.targets:
            report.add(f"  [{mark(t.ok):>4}] {t.what:44} {t.value:>9}   target {t.wanted}")
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
