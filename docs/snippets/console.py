"""Printing what the host does: every event describes itself, for people or as JSON.

``console.event(e)`` prints ``e.describe()`` after the time since start, or with
``json=True`` a JSON line of ``e.to_dict()`` under ``e.kind``. This file runs the three roles
on loopback (tests/docs/test_snippets.py runs it), with the plain direct dials turned off so
that the hole punch itself happens even with no NAT in the way.
"""

from __future__ import annotations

import trio
from multiaddr import Multiaddr

from libp2p import AddressPolicy, Host, HostConfig
from libp2p.console import Console
from libp2p.relay.circuit_v2 import (
    HolePunchConfig,
    HolePunchFailed,
    HolePunchSucceeded,
    RelayConfig,
    ReservationMade,
)


async def main() -> None:
    with trio.fail_after(30):
        await run()


async def run() -> None:
    punch_only = HolePunchConfig(
        address_policy=AddressPolicy.local_testing(), direct_dial=False, connection_reversal=False
    )
    local, relaying = HostConfig(hole_punching=punch_only), HostConfig(relay_service=RelayConfig())
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=relaying) as relay,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=local) as listener,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=local) as dialer,
    ):
        console, json_lines = Console("demo"), Console("demo", json=True)
        with listener.events.subscribe(ReservationMade) as made:
            await listener.listen(f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}/p2p-circuit")
            reservation = await made.receive()
        console.event(reservation)  # "reserved on <relay> ...; dial me at:" and the address

        with dialer.events.subscribe(HolePunchSucceeded, HolePunchFailed) as outcomes:
            await dialer.connect(Multiaddr(reservation.reservation.dial_addrs[0]))
            outcome = await outcomes.receive()
        console.event(outcome)  # how it went, in words
        json_lines.event(outcome)  # the same, as a JSON line


if __name__ == "__main__":
    trio.run(main)
