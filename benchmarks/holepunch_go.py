"""Hole punching with the stock go-libp2p peer (p2pd v0.32.1) in the NAT lab (needs root).

    .venv/bin/python benchmarks/holepunch_go.py [--runs 10] [--rtt-ms 10] [--filtering drop]
        [--pairings go go-listener-go-dialer go-dialer go-listener go-relay]

go punches only over addresses it deems public, so every cell runs in the dual-stack lab over
IPv6 (2001:db8::/32 behind two stateful firewalls) with four observer hosts of ours from which
go learns its address (tests/interop/golab.py). Per pairing (relay, listener, dialer):

``go``                    go, go, go
``go-listener-go-dialer`` ours, go, go
``go-dialer``             ours, ours, go
``go-listener``           ours, go, ours (our dialer without the example's echo: golab.OUR_DIALER)
``go-relay``              go, ours, ours (examples/nat/*.py)

it starts the relay and the listener once, then runs a fresh dialer ``--runs`` times, each
bounded by ``--run-timeout``. Links: each router ``R / 4`` one way, the relay ``R / 8``
(direct round trip ``R``, relayed ``1.5 R``; benchmarks/holepunch_matrix.py's proportions).
Printed: direct connections k/N, the dialer's time from its relayed connection to its direct
one (median, 90th percentile; go's time is from its CONNECT returning), why runs failed.
go's B dials A's public-looking address directly before it punches (5 s when A's firewall
drops), so with a go listener the times include that. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import holepunch  # noqa: E402

from tests.interop import golab  # noqa: E402
from tests.interop.gopeer import GoPeerError, go_peer_available  # noqa: E402
from tests.natlab.lab import FILTERINGS, LabError, NatLab, lab_unavailable_reason  # noqa: E402

#: pairing -> (relay, listener, dialer), each "ours" or "go"
PAIRINGS: dict[str, tuple[str, str, str]] = {
    "go": ("go", "go", "go"),
    "go-listener-go-dialer": ("ours", "go", "go"),
    "go-dialer": ("ours", "ours", "go"),
    "go-listener": ("ours", "go", "ours"),
    "go-relay": ("go", "ours", "ours"),
}


async def go_pairing(
    lab: NatLab,
    observers: golab.Observers,
    relay: str,
    listener: str,
    dial: Callable[[NatLab, str], Awaitable[holepunch.Result]],
    runs: int,
    name: str,
) -> list[holepunch.Result]:
    """``holepunch.pairing`` with go in any role (IPv6): start the relay and listener, run the
    dialer ``runs`` times."""
    results: list[holepunch.Result] = []
    async with contextlib.AsyncExitStack() as stack:
        if relay == "ours":
            prog = holepunch.start(lab, "relay", "relay.py", "--listen", holepunch.port(lab, 6))
            ready = await holepunch.until(prog, "ready")
            relay_addr = golab.relay_addr_in(ready["addrs"], lab)
        else:
            relay_addr = await stack.enter_async_context(golab.go_relay(lab))
        if listener == "ours":
            prog = holepunch.start(
                lab, "b", "listener.py", "--relay", relay_addr, "--listen", holepunch.port(lab, 6)
            )
            (target,) = (await holepunch.until(prog, "reservation"))["relayed_addrs"]
        else:
            go = await stack.enter_async_context(golab.go_listener(lab, relay_addr, observers))
            target = go.target
        for run in range(runs):
            results.append(await dial(lab, target))
            holepunch._progress(name, run, results[-1])
    return results


def row(name: str, results: list[holepunch.Result], error: str | None) -> str:
    if error:
        return f"  {name:<24} start-up failed: {error}"
    ok = [r for r in results if r["ok"]]
    times = sorted(r["ms"] for r in ok if r["ms"] is not None)
    line = f"  {name:<24} {len(ok):>3}/{len(results):<3}"
    if times:
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        line += f" {statistics.median(times):>10.1f} {p90:>8.1f}"
    else:
        line += f" {'-':>10} {'-':>8}"
    reasons = collections.Counter(r["reason"] or "?" for r in results if not r["ok"])
    if reasons:
        line += "  " + ", ".join(f"{why} x{n}" for why, n in reasons.most_common())
    return line


async def run_all(args: argparse.Namespace) -> int:
    rtt = args.rtt_ms / 1000
    delays = {"ra": rtt / 4, "rb": rtt / 4, "relay": rtt / 8} if rtt else None
    began = time.monotonic()
    rows = []
    for name in args.pairings:
        relay, listener, dialer = PAIRINGS[name]
        results: list[holepunch.Result] = []
        error = None
        try:
            with NatLab(
                topology="ipv6",
                observers=golab.GO_OBSERVERS,
                delays=delays,
                filtering=args.filtering,
            ) as lab:
                observers = await trio.to_thread.run_sync(golab.start_observers, lab)
                dial: Callable[[NatLab, str], Awaitable[holepunch.Result]]
                if dialer == "go":
                    dial = functools.partial(
                        golab.go_dialer_run, observers=observers, limit=args.run_timeout
                    )
                else:
                    dial = functools.partial(golab.our_plain_dialer_run, limit=args.run_timeout)
                results = await go_pairing(lab, observers, relay, listener, dial, args.runs, name)
        except (LabError, GoPeerError, RuntimeError) as exc:
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
        rows.append(row(name, results, error))
        print(rows[-1], file=sys.stderr)
    print(
        f"Hole punching with go-libp2p (p2pd v0.32.1), NAT lab over IPv6: two stateful "
        f"firewalls ({args.filtering}), direct RTT {args.rtt_ms:g} ms, relayed "
        f"{1.5 * args.rtt_ms:g} ms; {args.runs} dialer runs per pairing"
    )
    print(f"  {'pairing':<24} {'direct':>7} {'median ms':>10} {'p90 ms':>8}")
    for line in rows:
        print(line)
    print("  (time: the dialer's, from its relayed connection to its direct connection)")
    print(f"({time.monotonic() - began:.0f} s)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="dialer runs per pairing (10)")
    parser.add_argument("--rtt-ms", type=float, default=10.0, help="direct round trip (10)")
    parser.add_argument("--filtering", choices=FILTERINGS, default="drop")
    parser.add_argument(
        "--pairings", nargs="+", choices=list(PAIRINGS), default=list(PAIRINGS), metavar="P"
    )
    parser.add_argument("--run-timeout", type=float, default=holepunch.RUN_TIMEOUT)
    args: Any = parser.parse_args()
    reason = lab_unavailable_reason()
    if reason is not None:
        print(f"the NAT lab cannot run here: {reason}", file=sys.stderr)
        return 2
    if not go_peer_available()[0]:
        print(f"go peer unavailable: {go_peer_available()[1]}", file=sys.stderr)
        return 2
    return trio.run(run_all, args)


if __name__ == "__main__":
    sys.exit(main())
