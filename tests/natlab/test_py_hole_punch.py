"""Hole punching with stock py-libp2p 0.8.1 peers in the NAT lab: two endpoint-independent
NATs, IPv4 documentation ranges, our relay on the public host.

Line-ups (listener, role B, behind NAT B; dialer, role A, behind NAT A): our listener and a py
dialer; py on both ends; a py listener and our dialer. All three punch. py-libp2p runs
unpatched (``tests/interop/py/peer.py``); it reserves at once (``CircuitV2Transport.reserve``)
instead of after its relay discovery's 300 s, which changes nothing in how it hole punches.

What py-libp2p 0.8.1 does, from its code (``libp2p/relay/circuit_v2/dcutr.py``,
``libp2p/transport/tcp/tcp.py``, ``libp2p/host/observed_addr_manager.py``):

- its TCP listeners set SO_REUSEPORT and its hole-punch dials bind the listen address, so a
  punch leaves from the listen port (its dial to the relay does not: the relay observes an
  ephemeral port);
- it accepts any address in a CONNECT (no private-range filter, unlike js) and offers its
  WAN IP from identify's observations (one observer is enough) with its *listen* port: a
  prediction that holds behind a port-preserving NAT such as the lab's;
- roles: the side that sends CONNECT upgrades its punch as the responder, the side that
  receives it as the initiator, as the spec says; but its ``DCUtRProtocol`` starts a hole
  punch itself, every 2 s, towards any peer it reaches only through a relay, in either role
  (the spec leaves that to B);
- before each DCUtR exchange it first dials the peer's known addresses plainly
  (``_try_unilateral_upgrade``), with its 10 s ``DEFAULT_DIAL_TIMEOUT``.

That last step makes a py listener start late: it first dials our dialer's advertised LAN
address (192.0.2.2, behind NAT A, whose SYNs are dropped), and opens the DCUtR stream only when
that dial times out, 10-12 s after the relayed connection. Our dialer (A) used to wait 10 s
after identify for B to start (``stream_timeout``), a race it lost about as often as it won;
it now waits ``HolePunchConfig.start_timeout`` (20 s) for B's first CONNECT, and punches.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.interop.pypeer import (
    py_dcutr_dialer,
    py_dcutr_listener,
    py_debug_log,
    require_py_peer,
)
from tests.natlab.lab import NatLab, Program

pytestmark = [pytest.mark.natlab, pytest.mark.interop]

STEP = 30.0


@pytest.fixture(autouse=True)
def _need_py_peer() -> None:
    require_py_peer()


async def until(program: Program, event: str, within: float = STEP) -> dict[str, Any]:
    """The next line of ``program`` with this ``event`` (earlier lines are skipped)."""
    deadline = time.monotonic() + within
    while True:
        line = await trio.to_thread.run_sync(program.expect, deadline - time.monotonic())
        if line["event"] == event:
            return line


def py_in(lab: NatLab, host: str, port: int) -> dict[str, Any]:
    """Keywords that run a py-libp2p peer inside ``host``, listening on ``port``."""
    return {"listen": f"/ip4/0.0.0.0/tcp/{port}", "command_prefix": lab.exec_argv(host, [])}


async def our_relay(lab: NatLab) -> str:
    """Our relay.py on the public host; returns its address with /p2p/."""
    relay = lab.spawn_example(
        "relay", "relay.py", "--listen", f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}"
    )
    ready = await until(relay, "ready")
    return next(a for a in ready["addrs"] if f"/ip4/{lab.ip('relay')}/" in a)


@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
async def test_our_listener_and_a_py_dialer(lab: NatLab) -> None:
    relay_addr = await our_relay(lab)
    port = lab.fresh_port()
    listener = lab.spawn_example(
        "b", "listener.py", "--relay", relay_addr, "--listen", f"/ip4/0.0.0.0/tcp/{port}"
    )
    (target,) = (await until(listener, "reservation"))["relayed_addrs"]
    listener_id = target.rsplit("/p2p/", 1)[1]
    async with py_dcutr_dialer(target, **py_in(lab, "a", lab.fresh_port())) as dialer:
        with trio.fail_after(STEP):
            connected = await dialer.wait_event("connected", remotePeer=listener_id)
            assert "/p2p-circuit" in connected["remoteAddr"]
            direct = await dialer.wait_direct(listener_id)
        punch = await until(listener, "hole_punch")
    print(f"our listener + py dialer: {punch}; py: {direct}")
    # Our listener (B) started DCUtR and punched on its first attempt; py (A) reached router
    # B's public address on the listener's own port: a punched path, not a relayed one.
    assert punch["ok"], punch
    assert punch["attempt"] >= 1
    assert punch["direct_addr"].startswith(f"/ip4/{lab.public_ip('a')}/tcp/")
    assert direct["remoteAddr"] == f"/ip4/{lab.public_ip('b')}/tcp/{port}"


@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
async def test_py_on_both_ends_through_our_relay(lab: NatLab) -> None:
    relay_addr = await our_relay(lab)
    port = lab.fresh_port()
    async with py_dcutr_listener(relay_addr, **py_in(lab, "b", port)) as listener:
        (target,) = listener.relayed_addrs
        assert target.startswith(relay_addr)
        async with py_dcutr_dialer(target, **py_in(lab, "a", lab.fresh_port())) as dialer:
            with trio.fail_after(STEP):
                await dialer.wait_event("connected", remotePeer=listener.peer_id)
                direct = await dialer.wait_direct(listener.peer_id)
    print(f"py + py: {direct}")
    assert direct["remoteAddr"] == f"/ip4/{lab.public_ip('b')}/tcp/{port}"


@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
async def test_a_py_listener_and_our_dialer(lab: NatLab, tmp_path: Path) -> None:
    relay_addr = await our_relay(lab)
    port = lab.fresh_port()
    log = tmp_path / "py-listener.log"
    env = py_debug_log(log, "relay.circuit_v2.dcutr")
    async with py_dcutr_listener(relay_addr, env=env, **py_in(lab, "b", port)) as py:
        (target,) = py.relayed_addrs
        dialer = lab.spawn_example(
            "a",
            "dialer.py",
            "--target",
            target,
            "--listen",
            f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
            "--timeout",
            "25",
        )
        dialer_id = (await until(dialer, "ready"))["peer_id"]
        punch = await until(dialer, "hole_punch", STEP + 10)
        result = await until(dialer, "result")
    print(f"py listener + our dialer: {result}")
    # Punched: router B's public address, on py's listen port.
    assert result["ok"], result
    assert result["app"] == "echoed"
    assert result["direct_addr"] == f"/ip4/{lab.public_ip('b')}/tcp/{port}"
    assert punch["ok"]
    assert punch["attempt"] >= 1  # a punch, not a plain dial
    # ... but late: py (B) first spent 10 s on a plain dial to our dialer's LAN address behind
    # NAT A, before any DCUtR message (its log, DEBUG, in py-libp2p's own wording).
    assert result["direct_ms"] >= 10_000, result
    text = log.read_text()
    unilateral = text.find(f"Attempting to dial {dialer_id} at /ip4/{lab.ip('a')}/tcp/")
    assert unilateral >= 0, text[-3000:]
    first_exchange = text.find("Sent CONNECT message")
    assert first_exchange > unilateral, text[-3000:]
