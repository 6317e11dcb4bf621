"""How long the reachability report takes to settle, in each NAT-lab case.

Run as root (the NAT lab): ``python benchmarks/reachability_settle.py [--runs N]``.

Each run builds a fresh lab, starts ``relay.py`` (AutoNAT v1 and v2 server) on the public
host, and ``listener.py`` where the case puts it, and times, from the listener's start, the
first report that is no longer ``unknown`` and its verdict; a case also says what the report
must end on (status, what a dialer should expect). Printed per case: runs, the verdict they
settled on, and the median / min / max seconds.

Cases: behind a home NAT that drops, rejects or does not filter unsolicited SYNs; behind a
symmetric NAT (two relays, so identify sees the mapping change); behind a home router with
miniupnpd (the listener maps its port and AutoNAT v2 confirms it); behind a carrier-grade NAT
whose home router's miniupnpd refuses (the report says why); on a public host; behind a NAT
with two untrusted servers (``--no-trust-relay``: two server groups must agree).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.natlab.lab import (  # noqa: E402
    LabError,
    NatLab,
    Program,
    lab_unavailable_reason,
    port_mapping_unavailable_reason,
)
from tests.natlab.topology import INTERNET_NET  # noqa: E402

PUBLIC = ("--public-range", INTERNET_NET, "--public-range", "2001:db8::/32")
TIMEOUT = 60.0


@dataclass
class Case:
    name: str
    #: Where the listener runs.
    host: str = "a"
    lab: dict[str, Any] = field(default_factory=dict)
    #: Two relays (both reserved on).
    two_relays: bool = False
    listener_args: tuple[str, ...] = ()
    #: The verdict the report must settle on: (status, expect).
    wanted: tuple[str, str] = ("private", "hole punch")


CASES = [
    Case("NAT, drops unsolicited SYNs", lab={"filtering": "drop"}),
    Case("NAT, rejects (RST)", lab={"filtering": "reject"}),
    Case("NAT, no filter (SNAT only)", lab={"filtering": "none"}),
    Case(
        "symmetric NAT, two relays",
        lab={"a": "symmetric"},
        two_relays=True,
        wanted=("private", "relay only"),
    ),
    Case(
        "miniupnpd router (port mapping)",
        lab={"port_mapping": ("ra",)},
        listener_args=("--port-mapping",),
        wanted=("public", "direct"),
    ),
    Case(
        "carrier-grade NAT, miniupnpd refuses",
        lab={"topology": "double-nat", "port_mapping": ("ra",), "port_mapping_stun": False},
        listener_args=("--port-mapping",),
    ),
    Case("public host (no NAT)", host="relay2", wanted=("public", "direct")),
    Case(
        "NAT, two untrusted servers",
        two_relays=True,
        listener_args=("--no-trust-relay",),
    ),
]


def until(program: Program, event: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        line = program.expect(deadline - time.monotonic())
        if line["event"] == event:
            return line


def relay(lab: NatLab, host: str) -> str:
    program = lab.spawn_example(
        host, "relay.py", "--listen", f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}", *PUBLIC,
        "--min-servers", "1",
    )  # fmt: skip
    ready = until(program, "ready", 20.0)
    (addr,) = [a for a in ready["addrs"] if f"/ip4/{lab.ip(host)}/" in a]
    return addr


def one_run(case: Case) -> tuple[str, float]:
    """One run: the settled verdict ("status, expect") and its time in seconds."""
    with NatLab(**case.lab) as lab:
        relays = [relay(lab, "relay")]
        if case.two_relays:
            relays.append(relay(lab, "relay2"))
        args = [arg for r in relays for arg in ("--relay", r)]
        began = time.monotonic()
        listener = lab.spawn_example(
            case.host, "listener.py", *args, "--listen",
            f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}", *case.listener_args, *PUBLIC,
        )  # fmt: skip
        deadline = began + TIMEOUT
        last = "unknown, unknown"
        while True:
            try:
                line = until(listener, "reachability", deadline - time.monotonic())
            except LabError:
                return f"{last} (still, after {TIMEOUT:g} s)", float("nan")
            verdict = (line["status"], line["expect"])
            last = f"{verdict[0]}, {verdict[1]}"
            if verdict == case.wanted:
                return last, time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--case", action="append", help="substring of the case names to run")
    args = parser.parse_args()
    reason = lab_unavailable_reason()
    if reason is not None:
        print(f"the NAT lab is not available: {reason}", file=sys.stderr)
        return 2
    mapping_missing = port_mapping_unavailable_reason()
    rows = []
    for case in CASES:
        if args.case and not any(s in case.name for s in args.case):
            continue
        if case.lab.get("port_mapping") and mapping_missing:
            rows.append((case.name, "skipped", mapping_missing, ""))
            continue
        times: list[float] = []
        verdicts: dict[str, int] = {}
        for _ in range(args.runs):
            try:
                verdict, seconds = one_run(case)
            except LabError as exc:
                verdict, seconds = f"no verdict ({str(exc).splitlines()[0]})", float("nan")
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
            if verdict == ", ".join(case.wanted):
                times.append(seconds)
        shown = "; ".join(f"{v} x{n}" for v, n in verdicts.items())
        if times:
            spread = f"{statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f})"
        else:
            spread = "-"
        rows.append((case.name, f"{len(times)}/{args.runs}", shown, spread))
        print(f"{case.name}: {shown}; {spread}", flush=True)
    print()
    print("| case | settled as wanted | verdicts | median (min-max) from listener start |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
