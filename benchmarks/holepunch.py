"""Hole-punch success rate and time to a direct connection, in the NAT lab (needs root).

    .venv/bin/python benchmarks/holepunch.py [--runs 20] [--delay-ms 25] [--skip-js]

Builds the NAT lab of ``tests/natlab`` (two endpoint-independent NATs and a public relay) and,
for each pairing, starts a relay on the public host and a listener (DCUtR's B) behind NAT B,
then a dialer (DCUtR's A) behind NAT A ``--runs`` times, each a new process, identity and
port. Pairings: ours throughout (examples/nat/*.py), js-libp2p throughout (the pinned js test
peer with its hole-punching fixes), and the two mixed ones. For each it prints how many runs
ended on a direct connection and the dialer's time from its relayed connection being ready
to its direct connection being ready (median and 90th percentile).

It runs twice: without added delay, and with ``--delay-ms`` of one-way latency on each
router's and half of it on the relay's link of the lab's delaying switch. With delay it also
prints the floor for that time (see :func:`floor_ms`) and each median's ratio to it.
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.interop.jspeer import (  # noqa: E402
    JsHolePunch,
    JsPeerError,
    js_dcutr_dialer,
    js_dcutr_listener,
    js_peer_available,
    js_relay,
)
from tests.natlab.lab import LabError, NatLab, Program, lab_unavailable_reason  # noqa: E402

# {"ok": bool, "ms": float | None, "reason": str | None; optional: "detail" (a failure's
# attempts and time), "addr" (the direct connection's remote address)}
Result = dict[str, Any]

#: Seconds one dialer run may take before it counts as failed (``"run_timeout"``) and its
#: process is ended: a run that fails must not hang the benchmark.
RUN_TIMEOUT = 30.0


def start(lab: NatLab, host: str, script: str, *args: str) -> Program:
    return lab.spawn_example(host, script, *args)


async def until(program: Program, event: str, within: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        line = await trio.to_thread.run_sync(program.expect, deadline - time.monotonic())
        if line["event"] == event:
            return line


def port(lab: NatLab, ip: int = 4) -> str:
    """A listen address on a fresh port, IPv4 or IPv6 (``ip``): peers listening on one version
    only have addresses of that version to punch with."""
    if ip == 6:
        return f"/ip6/::/tcp/{lab.fresh_port()}"
    return f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}"


def relay_ip(lab: NatLab, ip: int = 4) -> str:
    """The relay's address in IP version ``ip`` (IPv6 needs a lab topology that has it)."""
    if ip == 6:
        address: str = lab.ip6("relay")  # type: ignore[attr-defined]
        return address
    return lab.ip("relay")


def ns(lab: NatLab, host: str) -> list[str]:
    return lab.exec_argv(host, [])


async def our_dialer(lab: NatLab, target: str, limit: float = RUN_TIMEOUT, ip: int = 4) -> Result:
    """One run of examples/nat/dialer.py behind NAT A, ended after ``limit`` seconds."""
    listen = port(lab, ip)
    dialer = start(
        lab, "a", "dialer.py", "--target", target, "--listen", listen, "--timeout", str(limit)
    )
    punch: dict[str, Any] | None = None  # the dialer's hole_punch line, if any
    try:
        # The dialer gives up by itself after ``limit``; the margin covers its start-up.
        deadline = time.monotonic() + limit + 15.0
        while True:
            line = await trio.to_thread.run_sync(dialer.expect, deadline - time.monotonic())
            if line["event"] == "hole_punch":
                punch = line
            elif line["event"] == "result":
                result = line
                break
    except LabError as exc:  # no result line in time, or the process died
        reason = "run_timeout" if "no output within" in str(exc) else "dialer_exited"
        return {"ok": False, "ms": None, "reason": reason}
    finally:
        if dialer.popen.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await trio.to_thread.run_sync(dialer.wait, 10.0)
        if dialer.popen.poll() is None:
            dialer.popen.kill()
    detail = None
    if punch is not None and not punch["ok"]:
        detail = f"{punch['attempt']} attempt(s), {punch['elapsed_ms']} ms"
    return {
        "ok": bool(result["ok"]),
        "ms": result["direct_ms"],
        "reason": result["reason"],
        "detail": detail,
        "addr": result["direct_addr"],
    }


async def js_dialer(lab: NatLab, target: str, limit: float = 20.0, ip: int = 4) -> Result:
    """One run of the js dialer (with its fixes) behind NAT A, ended after ``limit`` s."""
    listener_id = target.rsplit("/p2p/", 1)[1]
    result: Result = {"ok": False, "ms": None, "reason": "run_timeout"}
    try:
        async with js_dcutr_dialer(
            target, holepunch=JsHolePunch.fixed(), listen=port(lab, ip), command_prefix=ns(lab, "a")
        ) as dialer:
            with trio.move_on_after(limit):
                direct = await dialer.wait_direct(listener_id)
                result = {"ok": True, "ms": direct["sinceRelayedSeconds"] * 1000, "reason": None}
    except JsPeerError as exc:
        result = {"ok": False, "ms": None, "reason": f"js_error: {str(exc)[:60]}"}
    return result


async def pairing(
    lab: NatLab,
    relay: str,
    listener: str,
    dial: Callable[[NatLab, str], Awaitable[Result]],
    runs: int,
    name: str,
    ip: int = 4,
) -> list[Result]:
    """Start the relay and listener (ours or js), then run the dialer ``runs`` times.

    ``ip``: the IP version every peer listens on (and so punches with)."""
    public = relay_ip(lab, ip)
    results: list[Result] = []
    async with contextlib.AsyncExitStack() as stack:
        if relay == "ours":
            prog = start(lab, "relay", "relay.py", "--listen", port(lab, ip))
            ready = await until(prog, "ready")
            relay_addr = next(a for a in ready["addrs"] if f"/{public}/" in a)
        else:
            relay_listen = f"/ip{ip}/{public}/tcp/{lab.fresh_port()}"
            js = await stack.enter_async_context(
                js_relay(listen=relay_listen, command_prefix=ns(lab, "relay"))
            )
            relay_addr = next(a for a in js.addrs if f"/{public}/" in a)
        if listener == "ours":
            prog = start(lab, "b", "listener.py", "--relay", relay_addr, "--listen", port(lab, ip))
            (target,) = (await until(prog, "reservation"))["relayed_addrs"]
        else:
            js_listener = await stack.enter_async_context(
                js_dcutr_listener(
                    relay_addr,
                    holepunch=JsHolePunch.fixed(),
                    listen=port(lab, ip),
                    command_prefix=ns(lab, "b"),
                )
            )
            target = next(a for a in js_listener.relayed_addrs if relay_addr in a)
        for run in range(runs):
            results.append(await dial(lab, target))
            _progress(name, run, results[-1])
    return results


def _progress(name: str, run: int, result: Result) -> None:
    ms = "-" if result["ms"] is None else f"{result['ms']:.0f} ms"
    why = "" if result["ok"] else f" {result.get('reason')} ({result.get('detail') or '-'})"
    addr = f" via {result['addr']}" if result.get("addr") else ""
    print(f"[bench] {name} run {run + 1}: ok={result['ok']} {ms}{why}{addr}", file=sys.stderr)


def floor_ms(lab: NatLab) -> float:
    """The dialer's (A's) least time from its relayed connection to its direct one.

    Every round trip below is the lab's mean one (:meth:`NatLab.mean_rtt`: the configured
    latency plus the mean of the jitter, if any); without jitter that is the configured one.

    After A's last Noise message B's side of the relayed connection opens half a relayed
    round trip later; B's CONNECT and A's answer take one relayed round trip, and B's SYNC
    half of one to reach A, which then dials at once (B dials at the same moment, having
    waited half its measured RTT). The TCP simultaneous open then takes one direct round
    trip and Noise XX (the muxer agreed inside it) one more for A, the initiator:
    2 relayed RTT + 2 direct RTT. Without the half round trip before B can start (B only
    knows of the connection then), this is the issue's floor of 1.5 relayed RTT plus the
    direct TCP and Noise handshakes.
    """
    relayed = lab.mean_rtt("a", "relay") + lab.mean_rtt("relay", "b")
    direct = lab.mean_rtt("a", "b")
    return 1000 * (2 * relayed + 2 * direct)


def summarize(name: str, results: list[Result], floor: float | None) -> str:
    ok = [r for r in results if r["ok"]]
    times = sorted(r["ms"] for r in ok if r["ms"] is not None)
    line = f"  {name:<30} {len(ok):>3}/{len(results):<3}"
    if times:
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        median = statistics.median(times)
        line += f" {median:>10.1f} {p90:>8.1f}"
        if floor:
            line += f" {median / floor:>8.2f}"
    return line


PAIRINGS: list[tuple[str, str, str, str]] = [
    # name, relay, listener, dialer
    ("ours (relay, listener, dialer)", "ours", "ours", "ours"),
    ("js (relay, listener, dialer)", "js", "js", "js"),
    ("our listener, js dialer", "ours", "ours", "js"),
    ("js listener, our dialer", "ours", "js", "ours"),
]


async def run_all(args: argparse.Namespace) -> int:
    pairings = [p for p in PAIRINGS if not args.skip_js or "js" not in p[0]]
    d = args.delay_ms / 1000
    for delays in (None, {"ra": d, "rb": d, "relay": d / 2}):
        rows = []
        floor = None
        for name, relay, listener, dialer in pairings:
            with NatLab("eim", "eim", delays=delays, filtering=args.filtering) as lab:
                if delays:
                    floor = floor_ms(lab)
                dial = our_dialer if dialer == "ours" else js_dialer
                rows.append(
                    summarize(
                        name, await pairing(lab, relay, listener, dial, args.runs, name), floor
                    )
                )
        if delays is None:
            print(
                "Hole punching in the NAT lab: two endpoint-independent NATs "
                f"(filtering: {args.filtering}), no added delay"
            )
        else:
            print(
                f"With delay: {args.delay_ms} ms one way on each router's link, "
                f"{args.delay_ms / 2} ms on the relay's: direct RTT {lab.rtt('a', 'b') * 1000:.0f}"
                f" ms, relayed RTT {(lab.rtt('a', 'relay') + lab.rtt('relay', 'b')) * 1000:.0f}"
                f" ms; floor {floor:.0f} ms (2 relayed + 2 direct RTT)"
            )
        head = f"  {'pairing':<30} {'direct':>7} {'median ms':>10} {'p90 ms':>8}"
        print(head + (f" {'/floor':>8}" if delays else ""))
        for row in rows:
            print(row)
        print("  (time: the dialer's, from its relayed connection to its direct connection)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="dialer runs per pairing (20)")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way router delay")
    parser.add_argument("--skip-js", action="store_true", help="only our own pairing")
    parser.add_argument(
        "--filtering",
        choices=("drop", "reject", "none"),
        default="drop",
        help="what both routers do with unsolicited inbound packets (drop)",
    )
    args = parser.parse_args()
    reason = lab_unavailable_reason()
    if reason is not None:
        print(f"the NAT lab cannot run here: {reason}", file=sys.stderr)
        return 2
    if not args.skip_js and not js_peer_available()[0]:
        print(f"js peer unavailable: {js_peer_available()[1]}", file=sys.stderr)
        return 2
    return trio.run(run_all, args)


if __name__ == "__main__":
    sys.exit(main())
