"""The reachability report in the NAT lab, the cases issue 13 names:

* behind a home router running real router software (miniupnpd 2.3.1: UPnP IGD, NAT-PMP and
  PCP) the listener maps its port, AutoNAT v2 confirms the mapped address from outside, the
  listener becomes public and advertises it, and a dialer behind another NAT connects to it
  directly: no hole punch (both DCUtR outcomes are attempt 0);
* behind a carrier-grade NAT the home router's miniupnpd refuses to map (its external address
  is 100.64.1.2, in the shared address space): the listener stays private and its report says
  why;
* a lying AutoNAT server -- py-libp2p 0.8.1's own, stock, which answers ``OK`` whenever the
  requester is already connected to it, without dialing anything -- cannot make a NATed host
  public: its v1 answer is counted, unverified, and AutoNAT v2's nonce-checked refutation
  stands.

Each test prints how long the listener's report took to settle (from the listener's start).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio

from tests.interop.pypeer import py_peer, require_py_peer
from tests.natlab.lab import NatLab, Program, require_port_mapping
from tests.natlab.test_hole_punch import (
    LAB_PUBLIC_RANGES,
    STEP,
    reachability_where,
    start,
    wait_for,
)

pytestmark = pytest.mark.natlab


def our_relay(lab: NatLab) -> tuple[Program, str]:
    """relay.py on the public host (AutoNAT v1 and v2 server); returns it and its address."""
    relay = start(
        lab, "relay", "relay.py", "--listen", f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
        *LAB_PUBLIC_RANGES, "--min-servers", "1",
    )  # fmt: skip
    ready = wait_for(relay, "ready")
    (addr,) = [a for a in ready["addrs"] if f"/ip4/{lab.ip('relay')}/" in a]
    return relay, addr


def listener_with_port_mapping(lab: NatLab, relay_addr: str) -> tuple[Program, int, float]:
    """listener.py in ``a`` with ``--port-mapping``; returns it, its port and its start."""
    port = lab.fresh_port()
    began = time.monotonic()
    listener = start(
        lab, "a", "listener.py", "--relay", relay_addr, "--listen", f"/ip4/0.0.0.0/tcp/{port}",
        "--port-mapping", *LAB_PUBLIC_RANGES,
    )  # fmt: skip
    return listener, port, began


def test_a_mapped_listener_is_public_and_the_dialer_connects_without_a_punch(
    nat_lab: Any,
) -> None:
    require_port_mapping()
    lab: NatLab = nat_lab(port_mapping=("ra",))
    _relay, relay_addr = our_relay(lab)
    listener, port, began = listener_with_port_mapping(lab, relay_addr)
    mapped = f"/ip4/{lab.public_ip('a')}/tcp/{port}"
    report = reachability_where(listener, lambda line: line["status"] == "public", 2 * STEP)
    settled = time.monotonic() - began
    assert report["expect"] == "direct", report
    (entry,) = [a for a in report["addresses"] if a["status"] == "public"]
    assert (entry["addr"], entry["source"]) == (mapped, "mapped"), report
    assert "confirmed by AutoNAT v2 (nonce-verified dial-back)" in entry["reason"], entry
    assert report["port_mapping"].startswith(f"mapped {mapped} by "), report
    reservation = wait_for(listener, "reservation")
    (relayed,) = reservation["relayed_addrs"]
    # The dialer, behind NAT B, reaches the listener through the relay first; the listener's
    # confirmed mapped address is in its identify, and the dialer dials it directly.
    dialer = start(
        lab, "b", "dialer.py", "--target", relayed, "--listen",
        f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}", "--timeout", "20",
    )  # fmt: skip
    assert dialer.wait(3 * STEP) == 0
    punch = wait_for(dialer, "hole_punch")
    assert punch["ok"], punch
    assert punch["attempt"] == 0, punch  # no punch: a plain dial
    assert punch["direct_addr"] == mapped, punch
    result = wait_for(dialer, "result")
    assert result["ok"], result
    assert result["direct_addr"] == mapped, result
    listener_punch = wait_for(listener, "hole_punch")
    assert (listener_punch["ok"], listener_punch["attempt"]) == (True, 0), listener_punch
    print(
        f"mapped listener: public {settled:.2f} s after start; direct in {punch['elapsed_ms']} ms"
    )


def test_behind_a_carrier_grade_nat_the_listener_stays_private_and_says_why(
    nat_lab: Any,
) -> None:
    require_port_mapping()
    lab: NatLab = nat_lab(topology="double-nat", port_mapping=("ra",), port_mapping_stun=False)
    _relay, relay_addr = our_relay(lab)
    listener, _port, began = listener_with_port_mapping(lab, relay_addr)
    report = reachability_where(
        listener,
        lambda line: line["status"] == "private" and "failed" in (line["port_mapping"] or ""),
        2 * STEP,
    )
    settled = time.monotonic() - began
    assert report["expect"] == "hole punch", report
    assert not any(a["source"] == "mapped" for a in report["addresses"]), report
    assert "100.64.1.2" in report["port_mapping"], report
    assert "carrier-grade NAT" in report["port_mapping"], report
    assert "port mapping: failed" in report["reason"], report
    observed = [a for a in report["addresses"] if a["source"] == "observed"]
    assert observed, report
    assert all(a["status"] == "private" for a in observed), report
    print(f"carrier-grade NAT: private {settled:.2f} s after start: {report['reason']}")


#: Our host behind NAT A: asks the lying server first (AutoNAT v1, by hand), then lets the
#: report settle with AutoNAT v2 from the relay it trusts; prints what it saw.
LIAR_CLIENT = r"""
import json, sys, time, trio
from libp2p import (
    AutoNATClientConfig, Host, HostConfig, Reachability, ReachabilityConfig,
    ReachabilityReportChanged,
)
from libp2p.network.addrs import split_peer_id
from multiaddr import Multiaddr

def emit(**line):
    print(json.dumps(line), flush=True)

async def main(port, relay, liar, ranges):
    relay_id = split_peer_id(Multiaddr(relay))[1]
    liar_id = split_peer_id(Multiaddr(liar))[1]
    config = HostConfig(
        hole_punching=None,
        autonat_client=AutoNATClientConfig(boot_delay=3600.0),
        reachability=ReachabilityConfig(
            public_ranges=tuple(ranges.split(",")), trusted_servers=(relay_id,)
        ),
    )
    began = time.monotonic()
    async with Host(listen=[f"/ip4/0.0.0.0/tcp/{port}"], config=config) as host:
        seen = []
        host.reachability_service.on_report_changed.append(
            lambda change: seen.append(change.report.status.value)
        )
        with host.events.subscribe(ReachabilityReportChanged) as changes:
            for addr in (relay, liar):
                conn = await host.connect(addr)
                await host.identify.wait_identified(conn)
            probed = await host.autonat.probe(liar_id)
            answer = probed.response
            emit(event="liar", response=answer.name if answer is not None else None,
                 address=str(probed.address), v1_status=host.autonat.status.value)
            async for change in changes:
                if change.report.status is not Reachability.UNKNOWN:
                    break
        emit(event="settled", status=change.report.status.value,
             seconds=time.monotonic() - began)
        probed = await host.autonat.probe(liar_id)  # the liar again, once decided
        report = host.reachability
        entry = next(a for a in report.addresses if a.source.value == "observed")
        emit(event="final", status=report.status.value, expect=report.expect.value,
             reason=entry.reason, v1_yes=entry.v1_reachable_by, refuted=entry.refuted_by,
             liar_again=probed.response.name if probed.response is not None else None, seen=seen)

trio.run(main, *sys.argv[1:])
"""


async def test_a_lying_autonat_server_cannot_make_a_natted_host_public(nat_lab: Any) -> None:
    require_py_peer()
    lab: NatLab = nat_lab()
    _relay, relay_addr = our_relay(lab)
    liar_port = lab.fresh_port()
    async with py_peer(
        "--autonat",
        listen=f"/ip4/0.0.0.0/tcp/{liar_port}",
        command_prefix=lab.exec_argv("relay2", []),
    ) as liar:
        liar_addr = f"/ip4/{lab.ip('relay2')}/tcp/{liar_port}/p2p/{liar.peer_id}"
        ranges = ",".join(r for r in LAB_PUBLIC_RANGES if r.startswith(("1", "2")))
        host = lab.spawn_python(
            "a", LIAR_CLIENT, str(lab.fresh_port()), relay_addr, liar_addr, ranges
        )
        lines = await trio.to_thread.run_sync(_lines_until, host, "final", 3 * STEP)
    first = next(line for line in lines if line["event"] == "liar")
    # The lie: py-libp2p "dialed" us over the connection we already had, and says OK. The
    # AutoNAT v1 client, on its own, believes it (one answer from UNKNOWN flips it).
    assert first["response"] == "OK", lines
    assert first["v1_status"] == "public", lines
    final = next(line for line in lines if line["event"] == "final")
    assert final["liar_again"] == "OK", lines
    # The report never turned public: the trusted relay's AutoNAT v2 dial-back failed.
    assert "public" not in final["seen"], lines
    assert (final["status"], final["expect"]) == ("private", "hole punch"), lines
    assert final["v1_yes"] == 1, lines  # the liar's answer is counted, once
    assert final["refuted"] == 1, lines
    assert "refuted by AutoNAT v2 (the dial-back failed)" in final["reason"], lines
    settled = next(line for line in lines if line["event"] == "settled")
    print(f"lying server: private {settled['seconds']:.2f} s after start; {final['reason']}")


def _lines_until(program: Program, event: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    out = []
    while True:
        line = program.expect(deadline - time.monotonic())
        out.append(line)
        if line["event"] == event:
            return out


__all__ = ["json"]
