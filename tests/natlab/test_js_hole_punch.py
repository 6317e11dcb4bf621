"""Hole punching with js-libp2p peers in the NAT lab, each side playing either DCUtR role.

Line-ups (relay on the public host, listener behind NAT B, dialer behind NAT A):
our listener with a js dialer, and a js listener with our dialer, each through our relay and
through a js relay. js runs with the adjustments of tests/interop/js/peer.mjs (address filter,
observed address, fixed dial port, and the responder role as B); stock js is checked too, and
never gets a direct connection here, because it takes every address of the lab for private.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from tests.interop.jspeer import (
    JsHolePunch,
    JsServingPeer,
    js_dcutr_dialer,
    js_dcutr_listener,
    js_relay,
    require_js_peer,
)
from tests.natlab.lab import NatLab, Program

pytestmark = [pytest.mark.natlab, pytest.mark.interop]

STEP = 30.0


@pytest.fixture(autouse=True)
def _need_js_peer() -> None:
    require_js_peer()


def start(lab: NatLab, host: str, script: str, *args: str) -> Program:
    return lab.spawn_example(host, script, *args)


async def until(program: Program, event: str, within: float = STEP) -> dict[str, Any]:
    """The next line of ``program`` with this ``event`` (earlier lines are skipped)."""
    deadline = time.monotonic() + within
    while True:
        line = await trio.to_thread.run_sync(program.expect, deadline - time.monotonic())
        if line["event"] == event:
            return line


def js_in(lab: NatLab, host: str) -> dict[str, Any]:
    """Keywords that run a js peer inside ``host``, listening on a fresh port."""
    return {
        "listen": f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
        "command_prefix": ns(lab, host),
    }


@contextlib.asynccontextmanager
async def a_relay(lab: NatLab, kind: str) -> AsyncIterator[str]:
    """Our relay.py or a js relay on the public host; yields its address with /p2p/."""
    if kind == "ours":
        relay = start(lab, "relay", "relay.py", "--listen", f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}")
        ready = await until(relay, "ready")
        yield next(a for a in ready["addrs"] if f"/ip4/{lab.ip('relay')}/" in a)
        return
    async with js_relay(**js_in(lab, "relay")) as js:
        yield next(a for a in js.addrs if f"/ip4/{lab.ip('relay')}/" in a)


def our_dialer(lab: NatLab, target: str, timeout: int) -> Program:
    """examples/nat/dialer.py behind NAT A, dialing ``target``, giving up after ``timeout`` s."""
    listen = f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}"
    return start(
        lab, "a", "dialer.py", "--target", target, "--listen", listen, "--timeout", str(timeout)
    )


def ns(lab: NatLab, host: str) -> list[str]:
    return lab.exec_argv(host, [])


@pytest.mark.parametrize("relay_kind", ["ours", "js"])
@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
async def test_our_listener_and_a_js_dialer(lab: NatLab, relay_kind: str) -> None:
    async with a_relay(lab, relay_kind) as relay_addr:
        port = lab.fresh_port()
        listener = start(
            lab, "b", "listener.py", "--relay", relay_addr, "--listen", f"/ip4/0.0.0.0/tcp/{port}"
        )
        (target,) = (await until(listener, "reservation"))["relayed_addrs"]
        listener_id = target.rsplit("/p2p/", 1)[1]
        async with js_dcutr_dialer(
            target,
            holepunch=JsHolePunch.fixed(),
            listen=f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
            command_prefix=ns(lab, "a"),
        ) as dialer:
            with trio.fail_after(STEP):
                connected = await dialer.wait_event("connected", remotePeer=listener_id)
                assert connected["limited"] is True
                direct = await dialer.wait_direct(listener_id)
            punch = await until(listener, "hole_punch")
        # js (A) reached router B's public address on the listener's own port: a punch.
        assert direct["remoteAddr"] == f"/ip4/{lab.public_ip('b')}/tcp/{port}/p2p/{listener_id}"
        assert punch["ok"], punch
        assert punch["attempt"] >= 1
        assert punch["direct_addr"].startswith(f"/ip4/{lab.public_ip('a')}/tcp/")


@pytest.mark.parametrize("relay_kind", ["ours", "js"])
@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
async def test_a_js_listener_and_our_dialer(lab: NatLab, relay_kind: str) -> None:
    async with (
        a_relay(lab, relay_kind) as relay_addr,
        js_dcutr_listener(
            relay_addr,
            holepunch=JsHolePunch.fixed(),
            listen=f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
            command_prefix=ns(lab, "b"),
        ) as listener,
    ):
        (target,) = [a for a in listener.relayed_addrs if relay_addr in a]
        dialer = our_dialer(lab, target, timeout=25)
        result = await until(dialer, "result", STEP + 10)
        assert result["ok"], (result, listener.events[-10:])
        dial_port = listener.find_event("dial-port")
        assert dial_port is not None
        # Our dialer (A) reached router B's public address at js's dial port: a punch.
        assert result["direct_addr"] == f"/ip4/{lab.public_ip('b')}/tcp/{dial_port['port']}"
        with trio.fail_after(STEP):
            seen = await listener.wait_direct(next(iter(_dialer_ids(listener))))
        assert "/p2p-circuit" not in seen["remoteAddr"]


@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
async def test_a_js_listener_in_its_own_initiating_role_and_our_dialer(lab: NatLab) -> None:
    """js's B dials its punch as the initiator (peer.mjs fix 4 left out): both ends would
    start Noise as initiator. Our A sees B's proposal come with its multistream header and
    responds, on the first attempt (as it does for go-libp2p before v0.41)."""
    async with (
        a_relay(lab, "ours") as relay_addr,
        js_dcutr_listener(
            relay_addr,
            holepunch=JsHolePunch.fixed(responder=False),
            listen=f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
            command_prefix=ns(lab, "b"),
        ) as listener,
    ):
        (target,) = [a for a in listener.relayed_addrs if relay_addr in a]
        dialer = our_dialer(lab, target, timeout=25)
        punch = await until(dialer, "hole_punch", STEP + 10)
        assert punch["ok"], (punch, listener.events[-10:])
        # On the first attempt when the machine is idle; with the CPU busy (two spinning
        # processes beside it) the first attempt failed in 2 of 6 runs, with our direct dial
        # turned off too (1 of 6), and the second then worked: the role is settled either way.
        assert punch["attempt"] in (1, 2), punch
        dial_port = listener.find_event("dial-port")
        assert dial_port is not None
        assert punch["direct_addr"] == f"/ip4/{lab.public_ip('b')}/tcp/{dial_port['port']}"
        result = await until(dialer, "result", STEP)
        assert result["ok"], result


def _dialer_ids(listener: JsServingPeer) -> list[str]:
    return [e["remotePeer"] for e in listener.connections if e.get("limited")]


@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
async def test_stock_js_never_gets_a_direct_connection_in_the_lab(lab: NatLab) -> None:
    async with a_relay(lab, "ours") as relay_addr:
        listener = start(
            lab,
            "b",
            "listener.py",
            "--relay",
            relay_addr,
            "--listen",
            f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
        )
        (target,) = (await until(listener, "reservation"))["relayed_addrs"]
        listener_id = target.rsplit("/p2p/", 1)[1]
        async with js_dcutr_dialer(
            target,
            holepunch=JsHolePunch.stock(),
            listen=f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
            command_prefix=ns(lab, "a"),
        ) as dialer:
            with trio.fail_after(STEP):
                await dialer.wait_event("connected", remotePeer=listener_id)
            # Stock js (A) refuses every CONNECT: it takes 192.0.2/198.51.100 for private.
            punch = await until(listener, "hole_punch")
        assert not punch["ok"]
        assert dialer.find_event("direct", remotePeer=listener_id) is None


@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
async def test_a_stock_js_listener_never_starts_a_hole_punch_in_the_lab(lab: NatLab) -> None:
    async with (
        a_relay(lab, "ours") as relay_addr,
        js_dcutr_listener(
            relay_addr,
            holepunch=JsHolePunch.stock(),
            listen=f"/ip4/0.0.0.0/tcp/{lab.fresh_port()}",
            command_prefix=ns(lab, "b"),
        ) as listener,
    ):
        (target,) = [a for a in listener.relayed_addrs if relay_addr in a]
        dialer = our_dialer(lab, target, timeout=8)
        result = await until(dialer, "result", STEP)
        # The relayed echo worked, but stock js (B) offers no address it deems public: the
        # punch ends without a direct connection, with a reason.
        assert not result["ok"]
        assert result["reason"] in ("protocol_error", "peer_no_address", "timeout"), result
        assert result["relayed_ms"] is not None
        relay_id = relay_addr.rsplit("/p2p/", 1)[1]
        direct_peers = {e["remotePeer"] for e in listener.events if e.get("event") == "direct"}
        assert direct_peers <= {relay_id}
