"""Hole-punch success rate and time to a direct connection, in the NAT lab (needs root).

    .venv/bin/python benchmarks/holepunch.py [--runs 20]

Builds the NAT lab of ``tests/natlab`` (two endpoint-independent NATs and a public relay),
runs ``examples/nat/relay.py`` on the relay and ``listener.py`` behind NAT B, then
``dialer.py`` behind NAT A ``--runs`` times, each a new process and identity from a fresh
port. For every pairing it prints how many runs ended on a direct connection and the time
from the relayed connection being ready to the direct one being ready (the dialer's
``direct_ms``), median and 90th percentile. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.natlab.lab import NatLab, Program, lab_unavailable_reason  # noqa: E402

EXAMPLES = ROOT / "examples" / "nat"


def start(lab: NatLab, host: str, script: str, *args: str) -> Program:
    argv = [sys.executable, "-u", str(EXAMPLES / script), "--json", *args]
    proc = lab.popen(
        host,
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    return Program(f"{script}@{host}", proc)


def until(program: Program, event: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        line = program.expect(deadline - time.monotonic())
        if line["event"] == event:
            return line


def ours(lab: NatLab, runs: int) -> list[dict[str, Any]]:
    relay = start(lab, "relay", "relay.py", "--listen", f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}")
    relay_addr = next(a for a in until(relay, "ready")["addrs"] if lab.ip("relay") in a)
    listener = start(
        lab,
        "b",
        "listener.py",
        "--relay",
        relay_addr,
        "--listen",
        f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
    )
    (target,) = until(listener, "reservation")["relayed_addrs"]
    results = []
    for run in range(runs):
        dialer = start(
            lab,
            "a",
            "dialer.py",
            "--target",
            target,
            "--listen",
            f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
            "--timeout",
            "20",
        )
        result = until(dialer, "result", 60.0)
        dialer.wait(10.0)
        print(
            f"  run {run + 1:>2}: ok={result['ok']} direct_ms={result['direct_ms']} "
            f"reason={result['reason']}",
            file=sys.stderr,
        )
        results.append(result)
    return results


def summarize(name: str, results: list[dict[str, Any]]) -> None:
    ok = [r for r in results if r["ok"]]
    times = sorted(r["direct_ms"] for r in ok)
    line = f"  {name:<24} {len(ok):>3}/{len(results):<3}"
    if times:
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        line += f" {statistics.median(times):>10.1f} {p90:>8.1f}"
    print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="dialer runs per pairing (20)")
    args = parser.parse_args()
    reason = lab_unavailable_reason()
    if reason is not None:
        print(f"the NAT lab cannot run here: {reason}", file=sys.stderr)
        return 2
    rows = []
    with NatLab("eim", "eim") as lab:
        print("[bench] ours: relay, listener behind NAT B, dialer behind NAT A", file=sys.stderr)
        rows.append(("ours -> ours (our relay)", ours(lab, args.runs)))
    print("Hole punching in the NAT lab: two endpoint-independent NATs, no added delay")
    print(
        f"  {'pairing':<24} {'direct':>7} {'median ms':>10} {'p90 ms':>8}"
        "   (time from relayed connection to direct connection)"
    )
    for name, results in rows:
        summarize(name, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
