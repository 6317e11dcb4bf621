"""Hole punching with the stock go-libp2p peer (p2pd v0.32.1) in the NAT lab, in every role.

go hole punches only over addresses it deems public, so these run in the dual-stack lab over
IPv6 (2001:db8::/32 behind stateful firewalls that drop unsolicited packets) with four observer
hosts of ours, from which go learns its address (``tests/interop/golab.py`` says why and how).
One lab and its observers are shared by the module's tests; every relay, listener and dialer
is fresh (new process, identity and ports).

The links have 5 ms of one-way delay per router (10 ms direct round trip, 15 ms relayed) rather
than none: go's B first dials A's public-looking address directly (5 s ``dialTimeout``,
dropped by A's firewall), which leaves a SYN_SENT conntrack entry for that same 4-tuple on B's
firewall. With no delay at all, A's punch SYN then reaches B's firewall before B's own punch
SYN has re-armed that entry; B's kernel answers it from the listen socket with a new sequence
number, the firewall drops that SYN-ACK as invalid, and go B's punch dial cannot bind the
taken 4-tuple and falls back to an ephemeral port. Without delays go with go ends direct in 3
of 10 runs, and a go listener with our dialer in 0 of 5 (``benchmarks/holepunch_go.py
--rtt-ms 0``; B's firewall counts ``invalid`` drops and its conntrack shows go B's punch from
an ephemeral port); with 10 ms, every pairing 10 of 10.

Line-ups: go throughout; our relay with a go listener and a go dialer; our relay and listener
with a go dialer; our relay and dialer with a go listener; a go relay with our listener and
dialer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from tests.interop import golab
from tests.interop.gopeer import go_peer, require_go_peer
from tests.natlab.lab import NatLab, Program, require_lab

pytestmark = [pytest.mark.natlab, pytest.mark.interop]

STEP = 30.0
#: One-way delay per router port (the relay's is half): see the module docstring.
DELAYS = {"ra": 0.005, "rb": 0.005, "relay": 0.0025}
#: go B's direct dial to A before it hole punches (holepunch.dialTimeout in go v0.32.1).
GO_DIRECT_DIAL_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def go_lab() -> Iterator[tuple[NatLab, golab.Observers]]:
    require_lab()
    require_go_peer()
    with NatLab(topology="ipv6", observers=golab.GO_OBSERVERS, delays=DELAYS) as lab:
        yield lab, golab.start_observers(lab)


async def until(program: Program, event: str, within: float = STEP) -> dict[str, Any]:
    """The next line of ``program`` with this ``event`` (earlier lines are skipped)."""
    deadline = time.monotonic() + within
    while True:
        line = await trio.to_thread.run_sync(program.expect, deadline - time.monotonic())
        if line["event"] == event:
            return line


def port6(lab: NatLab) -> str:
    return f"/ip6/::/tcp/{lab.fresh_port()}"


@asynccontextmanager
async def our_relay(lab: NatLab) -> AsyncIterator[str]:
    relay = lab.spawn_example("relay", "relay.py", "--listen", port6(lab))
    try:
        ready = await until(relay, "ready")
        yield golab.relay_addr_in(ready["addrs"], lab)
    finally:
        relay.popen.kill()


async def our_listener(lab: NatLab, relay_addr: str) -> tuple[Program, str, int]:
    """examples/nat/listener.py behind NAT B, reserved on ``relay_addr``: (program, relayed
    address, listen port)."""
    port = lab.fresh_port()
    listener = lab.spawn_example(
        "b", "listener.py", "--relay", relay_addr, "--listen", f"/ip6/::/tcp/{port}"
    )
    (target,) = (await until(listener, "reservation"))["relayed_addrs"]
    return listener, target, port


async def our_dialer(lab: NatLab, target: str, limit: float = 20.0) -> dict[str, Any]:
    dialer = lab.spawn_example(
        "a", "dialer.py", "--target", target, "--listen", port6(lab), "--timeout", str(limit)
    )
    return await until(dialer, "result", limit + 10)


async def our_plain_dialer(lab: NatLab, target: str) -> dict[str, Any]:
    """Our dialer without the example's echo (see ``golab.OUR_DIALER``): the outcome line."""
    program = golab.start_our_plain_dialer(lab, target, port6(lab))
    try:
        return await until(program, "result")
    finally:
        program.popen.kill()


def assert_direct_to(result: golab.Result, listen: str) -> None:
    """go's dialer (A) holds a direct connection to the listener's listen address: a punch."""
    assert result["ok"], result
    assert result["addr"] == listen, result


async def test_go_throughout(go_lab: tuple[NatLab, golab.Observers]) -> None:
    lab, observers = go_lab
    async with (
        golab.go_relay(lab) as relay,
        golab.go_listener(lab, relay, observers) as listener,
        golab.go_dialer(lab, observers) as dialer,
    ):
        result = await golab.dial_and_wait_direct(dialer, listener.target, STEP)
        assert_direct_to(result, listener.listen)
        # go B dialed A directly first and waited out its dial timeout (A's firewall drops).
        assert result["ms"] > GO_DIRECT_DIAL_TIMEOUT * 1000 * 0.9, result
        punched = [ln for ln in listener.go.logs if ln.msg == "hole punching with successful"]
        assert punched, golab.holepunch_outcomes(listener.go)


async def test_our_relay_with_a_go_listener_and_a_go_dialer(
    go_lab: tuple[NatLab, golab.Observers],
) -> None:
    lab, observers = go_lab
    async with (
        our_relay(lab) as relay,
        golab.go_listener(lab, relay, observers) as listener,
        golab.go_dialer(lab, observers) as dialer,
    ):
        result = await golab.dial_and_wait_direct(dialer, listener.target, STEP)
        assert_direct_to(result, listener.listen)


async def test_go_relay_with_our_listener_and_our_dialer(
    go_lab: tuple[NatLab, golab.Observers],
) -> None:
    lab, _observers = go_lab
    async with golab.go_relay(lab) as relay:
        listener, target, port = await our_listener(lab, relay)
        try:
            result = await our_dialer(lab, target)
        finally:
            listener.popen.kill()
    assert result["ok"], result
    assert result["direct_addr"] == f"/ip6/{lab.ip6('b')}/tcp/{port}"


async def test_our_listener_and_a_go_dialer(go_lab: tuple[NatLab, golab.Observers]) -> None:
    lab, observers = go_lab
    async with our_relay(lab) as relay:
        listener, target, port = await our_listener(lab, relay)
        try:
            async with golab.go_dialer(lab, observers) as dialer:
                result = await golab.dial_and_wait_direct(dialer, target, STEP)
            punch = await until(listener, "hole_punch")
        finally:
            listener.popen.kill()
    assert_direct_to(result, f"/ip6/{lab.ip6('b')}/tcp/{port}")
    assert punch["ok"], punch


async def test_a_go_listener_and_our_dialer(go_lab: tuple[NatLab, golab.Observers]) -> None:
    lab, observers = go_lab
    async with (
        our_relay(lab) as relay,
        golab.go_listener(lab, relay, observers) as listener,
    ):
        result = await our_plain_dialer(lab, listener.target)
        assert result["ok"], (result, golab.holepunch_outcomes(listener.go))
        assert result["addr"] == listener.listen
        # A punch (go B initiates on the punched connection, pre-v0.41 roles: our A lets it),
        # after go B's direct dial to our firewalled address timed out.
        assert result["attempt"] >= 1, result
        assert result["ms"] > GO_DIRECT_DIAL_TIMEOUT * 1000 * 0.9, result


async def test_a_go_relay_loses_reservations_when_it_finds_itself_public(
    go_lab: tuple[NatLab, golab.Observers],
) -> None:
    """p2pd's second relay service (built from its flags, ``-relayService`` on by default)
    starts once AutoNAT finds the relay public and takes over the hop protocol: reservations
    made before are gone, and a dial through the relay gets NO_RESERVATION although the
    listener's reservation is valid. Our listener serves AutoNAT, so the relay learns at once
    that it is public. (``golab.go_relay`` passes ``-relayService=false``.)"""
    lab, _observers = go_lab
    listen = f"/ip6/{lab.ip6('relay')}/tcp/{lab.fresh_port()}"
    async with go_peer(
        host_addrs=[listen],
        command_prefix=lab.exec_argv("relay", []),
        log_levels={"autonat": "debug"},
    ) as relay:
        listener, target, _port = await our_listener(lab, relay.addr)
        try:
            with trio.fail_after(STEP):
                await relay.wait_log(0, lambda line: line.msg == "NAT status is public")
            dialer = lab.spawn_example(
                "a", "dialer.py", "--target", target, "--listen", port6(lab), "--timeout", "10"
            )
            assert await trio.to_thread.run_sync(dialer.wait, STEP) == 2
        finally:
            listener.popen.kill()
    assert "NO_RESERVATION" in dialer.stderr, dialer.stderr
