"""A stream opened on the relayed connection before a hole punch keeps working after it, through
real NATs (issue 11: it used to be reset about 2 s after the punch).

relay.py and listener.py (B, behind router B) run as in test_hole_punch.py; A, behind router A,
is a small script: it opens an echo stream on the relayed connection and uses it, lets the punch
happen (its DCUtR answers are held until then, so the stream surely predates the punch), opens a
new stream (which must go direct), keeps the old one open for a second longer than the idle
grace after which the relayed connection would close, echoes on it again, ends it, and reports
when the relayed connection closed. Everything runs with the hosts' default configuration.
"""

from __future__ import annotations

import pytest

from tests.natlab.lab import NatLab
from tests.natlab.test_hole_punch import STEP, relay_and_listener, wait_for

pytestmark = pytest.mark.natlab

#: Seconds A keeps the old stream open beyond the idle grace once the direct connection is up.
HOLD = 1.0

DIALER = """
import json, sys, trio
from libp2p import Host, HostConfig
from libp2p.relay.circuit_v2 import HolePunchFailed, HolePunchSucceeded
from libp2p.relay.circuit_v2.dcutr import PROTOCOL_ID

ECHO = "/echo/1.0.0"

def say(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)

async def echo_once(stream, data):
    await stream.send_all(data)
    got = b""
    while len(got) < len(data):
        chunk = await stream.receive_some()
        if not chunk:
            break
        got += chunk
    return got == data

async def finish(stream):
    await stream.send_eof()
    while await stream.receive_some():
        pass
    await stream.aclose()

async def main(target, port, hold):
    config = HostConfig()
    grace = config.hole_punching.relay_close_grace
    async with Host(listen=[f"/ip4/0.0.0.0/tcp/{port}"], config=config) as host:
        release = trio.Event()
        answer = host.swarm._handlers[PROTOCOL_ID]

        async def held(stream):
            await release.wait()
            await answer(stream)

        host.swarm.set_stream_handler(PROTOCOL_ID, held, allow_limited=True)
        with host.events.subscribe(HolePunchSucceeded, HolePunchFailed) as outcomes:
            relayed = await host.connect(target)
            peer = relayed.remote_peer
            before = await relayed.new_stream(ECHO, allow_limited=True)
            ok = await echo_once(before, b"before the punch")
            direct = [c for c in host.connections_to(peer) if not c.relayed]
            say("before", ok=ok, relayed=before.connection.relayed, direct_yet=bool(direct))
            release.set()
            outcome = await outcomes.receive()
        if isinstance(outcome, HolePunchFailed):
            say("punch", ok=False, reason=outcome.reason.value)
            return
        up = trio.current_time()
        new = await host.new_stream(peer, ECHO)
        ok = await echo_once(new, b"a new stream")
        await finish(new)
        say("punch", ok=True, attempt=outcome.attempt,
            direct_addr=str(outcome.connection.remote_addr),
            new_relayed=new.connection.relayed, new_ok=ok)
        await trio.sleep_until(up + grace + hold)
        held_for = trio.current_time() - up
        closed_meanwhile = relayed.is_closed
        ok = await echo_once(before, b"after the punch")
        say("after", ok=ok, held_s=held_for, grace_s=grace, closed_meanwhile=closed_meanwhile)
        await finish(before)
        ended = trio.current_time()
        with trio.fail_after(grace + 10):
            await relayed.wait_closed()
        error = relayed.error
        say("relayed_closed", after_s=trio.current_time() - ended,
            error=None if error is None else repr(error),
            left=[c.relayed for c in host.connections_to(peer)])

trio.run(main, sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
"""


@pytest.mark.parametrize("lab", [("eim", "eim")], indirect=True)
def test_a_stream_from_before_the_punch_outlives_the_switch(lab: NatLab) -> None:
    _relay, listener, relayed, listener_port = relay_and_listener(lab)
    dialer = lab.spawn_python("a", DIALER, relayed, str(lab.fresh_port()), str(HOLD), name="a")
    # A's lines come in a fixed order (they are not the examples' vocabulary).
    before = dialer.expect(STEP)
    assert before == {"event": "before", "ok": True, "relayed": True, "direct_yet": False}
    punch = dialer.expect(STEP)
    assert punch["event"] == "punch"
    assert punch["ok"], (punch, dialer.stderr)
    assert punch["attempt"] >= 1  # a real punch through both NATs
    assert punch["direct_addr"] == f"/ip4/{lab.public_ip('b')}/tcp/{listener_port}"
    assert punch["new_relayed"] is False  # new streams go direct
    assert punch["new_ok"]
    after = dialer.expect(STEP + HOLD)
    assert after["event"] == "after"
    # Still open, and still echoing, a second past the idle grace after the switch.
    assert after["held_s"] >= after["grace_s"] + HOLD
    assert after["closed_meanwhile"] is False
    assert after["ok"], (after, dialer.stderr)
    closed = dialer.expect(STEP + after["grace_s"])
    assert closed["event"] == "relayed_closed"
    # Closed cleanly once the stream ended and the grace passed; the direct one is left.
    assert closed["after_s"] >= after["grace_s"]
    assert closed["error"] is None
    assert closed["left"] == [False]
    assert dialer.wait(STEP) == 0, dialer.stderr
    # B served the old stream to its end over the relayed connection (no reset on its side).
    served = [wait_for(listener, "echo_served") for _ in range(2)]
    assert sorted((s["via"], s["bytes"]) for s in served) == [
        ("direct", len(b"a new stream")),
        ("relayed", len(b"before the punch") + len(b"after the punch")),
    ]
