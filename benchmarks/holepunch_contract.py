"""The test-plans hole-punch contract, pairing by pairing, in the NAT lab (needs root).

    .venv/bin/python benchmarks/holepunch_contract.py [--runs 5] [--skip-js] [--skip-go]
        [--only "ours x go" ...]

Each run is one run of the libp2p test-plans hole-punch suite as ``tests/natlab/contract.py``
mirrors it: a new lab (SNAT-only routers with 100 ms of delay each, 25 ms on the relay), a
real Redis, our relay pushing its address, a listener behind router B and a dialer behind
router A, all started at once, and the suite's 60 s limit. Pairings (listener x dialer): ours x
ours, and with js-libp2p through our adapter (tests/interop/js_contract_client.py) js x ours
and ours x js, and with go-libp2p (p2pd) through our adapter (tests/interop/go_contract_client.py)
go x ours and ours x go. The go pairings run in the runner's IPv6 mode (the dual-stack lab
with observers, where go hole punches; the same delays).

For each pairing it prints how many runs kept the contract (dialer exit 0 with one valid
result line, listener still up), the RTTs the dialers reported (median, min, max; the suite
expects ~200 ms, the direct path's round trip) and the time from start to the dialer's exit
(median, max). A failed run's reason is printed with it. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.interop.gopeer import go_peer_available  # noqa: E402
from tests.interop.jspeer import js_peer_available  # noqa: E402
from tests.natlab.contract import (  # noqa: E402
    DIRECT_RTT_MS,
    GO_CLIENT,
    JS_CLIENT,
    OUR_CLIENT,
    ContractRun,
    contract_lab_options,
    run_contract,
)
from tests.natlab.lab import NatLab, lab_unavailable_reason  # noqa: E402
from tests.redisserver import redis_server_path  # noqa: E402

PAIRINGS: dict[str, tuple[Sequence[str], Sequence[str]]] = {
    "ours x ours": (OUR_CLIENT, OUR_CLIENT),
    "js x ours": (JS_CLIENT, OUR_CLIENT),
    "ours x js": (OUR_CLIENT, JS_CLIENT),
    "go x ours": (GO_CLIENT, OUR_CLIENT),
    "ours x go": (OUR_CLIENT, GO_CLIENT),
}
#: Pairings with go run in the runner's IPv6 mode (go hole punches over IPv6 only here).
GO_PAIRINGS = ("go x ours", "ours x go")


def why_failed(run: ContractRun) -> str:
    if run.dialer_exit is None:
        return "dialer still running at 60 s"
    if run.dialer_exit != 0:
        lines = run.dialer_stderr.strip().splitlines()
        return f"dialer exit {run.dialer_exit}: {lines[-1] if lines else '(no stderr)'}"
    if run.report_error is not None:
        return run.report_error
    return "listener had exited"


def one_run(listener: Sequence[str], dialer: Sequence[str], ipv6: bool) -> ContractRun:
    with NatLab(**contract_lab_options(ipv6=ipv6)) as lab:
        return run_contract(lab, listener=listener, dialer=dialer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per pairing (default 5)")
    parser.add_argument("--skip-js", action="store_true", help="no js pairings")
    parser.add_argument("--skip-go", action="store_true", help="no go pairings")
    parser.add_argument("--only", action="append", help="only this pairing (repeatable)")
    args = parser.parse_args()
    reason = lab_unavailable_reason()
    if reason is not None:
        print(f"the NAT lab cannot run here: {reason}", file=sys.stderr)
        return 2
    if redis_server_path() is None:
        print("redis-server is not installed (apt-get install -y redis-server)", file=sys.stderr)
        return 2
    pairings = dict(PAIRINGS)
    for peer, available, skip in (
        ("js", js_peer_available, args.skip_js),
        ("go", go_peer_available, args.skip_go),
    ):
        ok, why = available()
        if skip or not ok:
            if not skip:
                print(f"{peer} pairings skipped: {why}", file=sys.stderr)
            pairings = {k: v for k, v in pairings.items() if peer not in k.split(" x ")}
    if args.only:
        unknown = set(args.only) - set(PAIRINGS)
        if unknown:
            parser.error(f"unknown pairing(s) {sorted(unknown)}; known: {list(PAIRINGS)}")
        pairings = {k: v for k, v in pairings.items() if k in args.only}
    print(f"direct round trip set by the routers' delays: {DIRECT_RTT_MS} ms; {args.runs} runs")
    header = ("listener x dialer", "ok", "rtt ms med/min/max", "time s med/max")
    print(f"{header[0]:<18} {header[1]:>6}  {header[2]:>20}  {header[3]:>15}")
    for name, (listener, dialer) in pairings.items():
        runs = [one_run(listener, dialer, name in GO_PAIRINGS) for _ in range(args.runs)]
        good = [r for r in runs if r.ok]
        rtts = [r.rtt_ms for r in good if r.rtt_ms is not None]
        times = [r.seconds for r in runs]
        rtt_text = f"{statistics.median(rtts):.0f}/{min(rtts)}/{max(rtts)}" if rtts else "-"
        print(
            f"{name:<18} {len(good):>2}/{len(runs):<3}  {rtt_text:>20}  "
            f"{statistics.median(times):>6.1f}/{max(times):<6.1f}",
            flush=True,
        )
        for i, run in enumerate(runs):
            if not run.ok:
                print(f"    run {i + 1}: {why_failed(run)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
