"""Issue 12's cross-implementation hole-punch matrix, in the NAT lab (needs root).

    .venv/bin/python benchmarks/interop_matrix.py [--runs 10] [--rtt-ms 10]
        [--filtering drop] [--relays ours go js] [--listeners ours go js py]
        [--dialers ours go js py] [--run-timeout 30] [--give-up-after 3]

Every cell is a relay, a listener (DCUtR's B, reserved on the relay, behind NAT B) and a dialer
(DCUtR's A, behind NAT A): relay in {ours, go, js} x listener in {ours, go, js, py} x dialer in
{ours, go, js, py}. Each cell builds a fresh lab with two endpoint-independent NATs, starts the
relay and the listener once, then runs a fresh dialer (new process, identity and port) ``--runs``
times, each bounded by ``--run-timeout``; it prints how many runs ended on a direct connection and
the dialer's time from its relayed connection to its direct one.

The peers:

``ours`` examples/nat/relay.py, listener.py, dialer.py (against a go listener our dialer is
         tests/interop/golab.py's, without the example's echo: p2pd's stream handler closes
         the stream when the remote half-closes);
``go``   p2pd v0.32.1 from hivemind's wheel (tests/interop/golab.py). go punches only over
         addresses it deems public, so every cell with a go listener or dialer runs in the
         dual-stack lab over IPv6 (2001:db8::/32 behind stateful firewalls) with four observer
         hosts of ours from which go learns its address; the other cells (a go relay too) run
         over IPv4 through two NATs. py-libp2p 0.8.1 offers no address to punch over IPv6
         (an empty CONNECT), so cells of py with a go peer cannot work;
``js``   the pinned js-libp2p test peer with its hole-punching fixes (tests/interop/jspeer.py);
``py``   stock py-libp2p 0.8.1 (tests/interop/pypeer.py), never a relay here (not in the issue).

A py-libp2p listener is started anew for each run (``--fresh-listener``): py-libp2p 0.8.1's DCUtR
loop awaits a stream to a dialer that has left, without a timeout, and never punches for the
next one (its bug; the others serve every run from one listener).

A cell whose first ``--give-up-after`` runs all fail stops there (its runs are counted as run):
a pairing that cannot work is reported with its reason instead of waiting out every run.

Links (the lab's delaying switch): each router ``R / 4`` one way and the relay ``R / 8``, so the
direct round trip is ``R`` and the relayed one ``1.5 R`` (holepunch_matrix.py's proportions).
The default ``R`` is 10 ms: with no delay at all a go listener's own plain dial races its punch
(see golab.py), which is go's, not the pairing's, failure. Times: our dialer's and js's from
their relayed connection to their direct one, go's from its CONNECT returning, py's from its
relayed connection's event line. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import holepunch  # noqa: E402  (benchmarks/holepunch.py: our peers and js's runs)
import holepunch_matrix  # noqa: E402  (the links of a cell)

from tests.interop import golab  # noqa: E402
from tests.interop.gopeer import GoPeerError, go_peer_available  # noqa: E402
from tests.interop.jspeer import (  # noqa: E402
    JsHolePunch,
    JsPeerError,
    js_dcutr_listener,
    js_peer_available,
    js_relay,
)
from tests.interop.pypeer import PyPeerError, py_peer_available  # noqa: E402
from tests.natlab.lab import LabError, NatLab, lab_unavailable_reason  # noqa: E402

Result = holepunch.Result
KINDS = ("ours", "go", "js", "py")
RELAYS = ("ours", "go", "js")
STARTUP = 60.0  # seconds a relay or listener may take to be ready (go learns its address first)


@dataclass
class Cell:
    relay: str
    listener: str
    dialer: str
    results: list[Result] = field(default_factory=list)
    error: str | None = None
    stopped: bool = False
    ip: int = 4

    @property
    def name(self) -> str:
        return f"relay {self.relay}, listener {self.listener}, dialer {self.dialer}"

    @property
    def ok(self) -> int:
        return sum(1 for r in self.results if r["ok"])

    @property
    def go(self) -> bool:
        """go hole punches here (a go relay only relays, over IPv4 as well)."""
        return "go" in (self.listener, self.dialer)


def listen(lab: NatLab, ip: int) -> str:
    return holepunch.port(lab, ip)


async def start_relay(kind: str, lab: NatLab, stack: contextlib.AsyncExitStack, ip: int) -> str:
    """The relay on the public host; its address (with ``/p2p/``) on its public IP."""
    public = holepunch.relay_ip(lab, ip)
    if kind == "ours":
        prog = holepunch.start(lab, "relay", "relay.py", "--listen", listen(lab, ip))
        ready = await holepunch.until(prog, "ready", STARTUP)
        return next(a for a in ready["addrs"] if f"/{public}/" in a)
    if kind == "go":
        return await stack.enter_async_context(golab.go_relay(lab, ip=ip))
    addr = f"/ip{ip}/{public}/tcp/{lab.fresh_port()}"
    js = await stack.enter_async_context(
        js_relay(listen=addr, command_prefix=holepunch.ns(lab, "relay"))
    )
    return next(a for a in js.addrs if f"/{public}/" in a)


async def start_listener(
    kind: str,
    lab: NatLab,
    stack: contextlib.AsyncExitStack,
    relay_addr: str,
    ip: int,
    observers: golab.Observers | None,
) -> str:
    """The listener behind NAT B, reserved on the relay; its relayed address."""
    if kind == "ours":
        prog = holepunch.start(
            lab, "b", "listener.py", "--relay", relay_addr, "--listen", listen(lab, ip)
        )
        (target,) = (await holepunch.until(prog, "reservation", STARTUP))["relayed_addrs"]
        return str(target)
    if kind == "go":
        assert observers is not None
        go = await stack.enter_async_context(
            golab.go_listener(lab, relay_addr, observers, ip=ip, within=STARTUP)
        )
        return go.target
    prefix = holepunch.ns(lab, "b")
    if kind == "js":
        js = await stack.enter_async_context(
            js_dcutr_listener(
                relay_addr,
                holepunch=JsHolePunch.fixed(),
                listen=listen(lab, ip),
                command_prefix=prefix,
            )
        )
        return through(js.relayed_addrs, relay_addr, "js listener")
    from tests.interop.pypeer import py_dcutr_listener

    py = await stack.enter_async_context(
        py_dcutr_listener(relay_addr, listen=listen(lab, ip), command_prefix=prefix)
    )
    return through(py.relayed_addrs, relay_addr, "py listener")


def through(addrs: Sequence[str], relay_addr: str, who: str) -> str:
    """The one of ``addrs`` through ``relay_addr`` (a LabError, not a StopIteration, when
    there is none: that would end the whole benchmark from inside a coroutine)."""
    for addr in addrs:
        if relay_addr in addr:
            return addr
    raise LabError(f"{who} has no address through {relay_addr}: {list(addrs)}")


async def py_dialer_run(lab: NatLab, target: str, limit: float, ip: int) -> Result:
    """One run of a fresh py-libp2p dialer (DCUtR's A) against ``target``."""
    from tests.interop.pypeer import py_dcutr_dialer

    listener_id = target.rsplit("/p2p/", 1)[1]
    try:
        async with py_dcutr_dialer(
            target, listen=listen(lab, ip), command_prefix=holepunch.ns(lab, "a")
        ) as py:
            with trio.move_on_after(limit):
                direct = await py.wait_direct(listener_id)
                return {
                    "ok": True,
                    "ms": float(direct["sinceRelayedSeconds"]) * 1000,
                    "reason": None,
                    "addr": direct.get("remoteAddr"),
                }
            failed = py.find_event("connect-error")
            reason = "relayed_dial_failed" if failed else "run_timeout"
            return {"ok": False, "ms": None, "reason": reason, "detail": str(failed or "")[:200]}
    except PyPeerError as exc:
        return {"ok": False, "ms": None, "reason": "py_error", "detail": str(exc)[:200]}


async def run_dialer(
    cell: Cell,
    lab: NatLab,
    target: str,
    args: argparse.Namespace,
    observers: golab.Observers | None,
) -> Result:
    limit, ip = args.run_timeout, cell.ip
    if cell.dialer == "ours":
        if cell.listener == "go":
            return await golab.our_plain_dialer_run(lab, target, limit, ip)
        return await holepunch.our_dialer(lab, target, limit, ip)
    if cell.dialer == "go":
        assert observers is not None
        return await golab.go_dialer_run(lab, target, observers, limit=limit, ip=ip)
    if cell.dialer == "js":
        return await holepunch.js_dialer(lab, target, limit, ip)
    return await py_dialer_run(lab, target, limit, ip)


def lab_options(cell: Cell, args: argparse.Namespace) -> dict[str, Any]:
    topology = (
        holepunch_matrix.IPV6_TOPOLOGY if cell.go else holepunch_matrix.TOPOLOGIES["two-nats"]
    )
    options: dict[str, Any] = {**topology.options, "filtering": args.filtering}
    options.update(holepunch_matrix.links(topology, args.rtt_ms, 0.0, 0.0))
    if cell.go:
        options["observers"] = golab.GO_OBSERVERS
    return options


async def run_cell(cell: Cell, args: argparse.Namespace) -> None:
    cell.ip = 6 if cell.go else 4
    try:
        with NatLab("eim", "eim", **lab_options(cell, args)) as lab:
            observers = None
            if cell.go:
                observers = await trio.to_thread.run_sync(golab.start_observers, lab)
            async with contextlib.AsyncExitStack() as stack:
                # Each start is bounded by its own wait (STARTUP); a cancel scope around
                # them could not be: the peers' nurseries outlive it in the exit stack.
                relay_addr = await start_relay(cell.relay, lab, stack, cell.ip)
                fresh = cell.listener in args.fresh_listener
                if not fresh:
                    target = await start_listener(
                        cell.listener, lab, stack, relay_addr, cell.ip, observers
                    )
                for run in range(args.runs):
                    try:
                        async with contextlib.AsyncExitStack() as run_stack:
                            if fresh:
                                target = await start_listener(
                                    cell.listener, lab, run_stack, relay_addr, cell.ip, observers
                                )
                            result = await run_dialer(cell, lab, target, args, observers)
                    except* (LabError, PyPeerError, JsPeerError, GoPeerError) as group:
                        # A listener started for this run only: its failure is this run's
                        # (raised through the peer's nursery, so in an exception group).
                        exc = group.exceptions[0]
                        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                        result = {
                            "ok": False,
                            "ms": None,
                            "reason": "listener_start_failed",
                            "detail": first[:200],
                        }
                    cell.results.append(result)
                    holepunch._progress(cell.name, run, cell.results[-1])
                    if run + 1 == args.give_up_after and cell.ok == 0:
                        cell.stopped = True
                        break
    except* (
        LabError,
        JsPeerError,
        GoPeerError,
        PyPeerError,
        RuntimeError,
        trio.TooSlowError,
        ValueError,
    ) as group:
        # Start-up failures, raised through the peers' nurseries (exception groups).
        exc = group.exceptions[0]
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        cell.error = f"{type(exc).__name__}: {first[:120]}"
        print(f"[bench] {cell.name}: {cell.error}", file=sys.stderr)


def percentile(times: Sequence[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(cell: Cell) -> str:
    """``k/N median`` for the grid."""
    if cell.error:
        return "start failed"
    times = [r["ms"] for r in cell.results if r["ok"] and r["ms"] is not None]
    text = f"{cell.ok}/{len(cell.results)}"
    if times:
        text += f" {statistics.median(times):.0f} ms"
    return text + ("*" if cell.stopped else "")


def detail(cell: Cell) -> str:
    head = f"  {cell.name:<44} IPv{cell.ip}"
    if cell.error:
        return f"{head}  start-up failed: {cell.error}"
    times = [r["ms"] for r in cell.results if r["ok"] and r["ms"] is not None]
    line = f"{head} {cell.ok:>3}/{len(cell.results):<3}"
    if times:
        line += f" median {statistics.median(times):>7.1f} p90 {percentile(times, 0.9):>7.1f} ms"
    reasons = collections.Counter(
        f"{r['reason']}" + (f" ({str(r.get('detail'))[:70]})" if r.get("detail") else "")
        for r in cell.results
        if not r["ok"]
    )
    if reasons:
        line += "  failed: " + "; ".join(f"{why} x{n}" for why, n in reasons.most_common(2))
    return line


async def run_all(args: argparse.Namespace) -> int:
    began = time.monotonic()
    cells: list[Cell] = []
    for relay in args.relays:
        for listener in args.listeners:
            for dialer in args.dialers:
                cell = Cell(relay, listener, dialer)
                await run_cell(cell, args)
                cells.append(cell)
                print(detail(cell), file=sys.stderr)
    print(
        f"Hole-punch interop matrix, NAT lab: two endpoint-independent NATs (filtering "
        f"{args.filtering}), direct RTT {args.rtt_ms:g} ms, relayed {1.5 * args.rtt_ms:g} ms; "
        f"IPv4, IPv6 where go punches; {args.runs} dialer runs per cell, each bounded by "
        f"{args.run_timeout:g} s; * = stopped after {args.give_up_after} failed runs"
    )
    by_key = {(c.relay, c.listener, c.dialer): c for c in cells}
    width = 16
    for relay in args.relays:
        print(f"relay {relay}: listener (rows) x dialer (columns), direct k/N and median ms")
        print(f"  {'':<10}" + "".join(f"{d:>{width}}" for d in args.dialers))
        for listener in args.listeners:
            row = f"  {listener:<10}"
            for dialer in args.dialers:
                c = by_key.get((relay, listener, dialer))
                row += f"{summary(c) if c else '-':>{width}}"
            print(row)
    print("Per cell (failure reasons: the dialer's view):")
    for cell in cells:
        print(detail(cell))
    print(f"({time.monotonic() - began:.0f} s)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="dialer runs per cell (10)")
    parser.add_argument("--rtt-ms", type=float, default=10.0, help="direct round trip R (10)")
    parser.add_argument("--filtering", choices=("drop", "reject", "none"), default="drop")
    parser.add_argument("--relays", nargs="+", choices=RELAYS, default=list(RELAYS))
    parser.add_argument("--listeners", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--dialers", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--run-timeout", type=float, default=30.0, help="per dialer run (30 s)")
    parser.add_argument(
        "--fresh-listener",
        nargs="*",
        choices=KINDS,
        default=["py"],
        help="kinds whose listener is started anew for each run (py: py-libp2p 0.8.1's DCUtR "
        "loop waits without a timeout on a dialer that left, so it serves one dialer only)",
    )
    parser.add_argument(
        "--give-up-after", type=int, default=3, help="stop a cell whose first N runs all fail"
    )
    args = parser.parse_args()
    reason = lab_unavailable_reason()
    if reason is not None:
        print(f"the NAT lab cannot run here: {reason}", file=sys.stderr)
        return 2
    wanted = {*args.relays, *args.listeners, *args.dialers}
    for kind, available in (
        ("go", go_peer_available),
        ("js", js_peer_available),
        ("py", py_peer_available),
    ):
        ok, why = available()
        if kind in wanted and not ok:
            print(f"{kind} peer unavailable: {why}", file=sys.stderr)
            return 2
    return trio.run(run_all, args)


if __name__ == "__main__":
    sys.exit(main())
