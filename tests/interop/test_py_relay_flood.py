"""py-libp2p 0.8.1's reservation refresh loop against our relay, on loopback.

py-libp2p refreshes every reservation that ends within 30 s (``RESERVATION_REFRESH_MARGIN``
in its ``circuit_v2/transport.py``) and then sleeps until 30 s before the earliest end: with a
relay whose reservations last 20 s it never sleeps, and sends RESERVE after RESERVE, each on
a new stream. This counts its requests over a few seconds against our relay with the rate
limits off and with the defaults, and checks that meanwhile another peer's reservation and
circuit work as usual. The figures print (``-s``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import trio

from libp2p import Host, HostConfig
from libp2p.network.connection import NetStream
from libp2p.relay.circuit_v2 import RelayConfig
from tests.interop.pypeer import py_peer, require_py_peer

pytestmark = pytest.mark.interop

TTL = 20.0  # under py-libp2p's 30 s refresh margin: its loop never sleeps
WINDOW = 3.0  # seconds counted
ECHO = "/flood-test/echo/1.0.0"


@pytest.fixture(autouse=True)
def _need_py_peer() -> None:
    require_py_peer()


@contextlib.asynccontextmanager
async def relay(config: RelayConfig) -> AsyncIterator[Host]:
    cfg = HostConfig(relay_service=config, autonat_client=None)
    async with Host(listen=["/ip4/127.0.0.1/tcp/0"], config=cfg) as host:
        yield host


def requests(host: Host) -> int:
    """RESERVE requests the relay answered so far (accepted and refused)."""
    assert host.relay_service is not None
    stats = host.relay_service.stats
    return stats.reservations_accepted + sum(stats.reservations_refused.values())


async def _echo(stream: NetStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.aclose()


async def count_py_refreshes(config: RelayConfig) -> tuple[int, dict[str, int], bool]:
    """py-libp2p reserves on a relay of ``config``; its requests in WINDOW seconds, the
    refusal reasons, and whether another peer reserved and echoed through a circuit
    meanwhile."""
    async with relay(config) as r:
        addr = f"{r.listen_addrs[0]}/p2p/{r.peer_id}"
        async with py_peer("--relay", addr) as py:
            assert py.relayed_addrs, py.stderr
            start = requests(r)
            with trio.move_on_after(WINDOW):
                healthy = await other_peer_works(r, addr)
                await trio.sleep_forever()  # the window is the measurement, not a wait
            count = requests(r) - start
            assert r.relay_service is not None
            reasons = dict(r.relay_service.stats.reservations_refused)
            assert py.id in r.relay_service.reservations()
    return count, reasons, healthy


async def other_peer_works(r: Host, relay_addr: str) -> bool:
    """Our listener reserves on ``r``, our dialer reaches it through a circuit and echoes."""
    async with Host() as listener, Host() as dialer:
        listener.set_stream_handler(ECHO, _echo, allow_limited=True)
        await listener.listen(f"{relay_addr}/p2p-circuit")
        conn = await dialer.connect(f"{relay_addr}/p2p-circuit/p2p/{listener.peer_id}")
        stream = await conn.new_stream(ECHO, allow_limited=True)
        await stream.send_all(b"still relaying")
        await stream.send_eof()
        back = b""
        while data := await stream.receive_some():
            back += data
        return back == b"still relaying"


async def test_py_refresh_loop_is_held_to_the_rate_limit() -> None:
    unlimited = RelayConfig(
        reservation_ttl=TTL, reserve_rate_per_peer=None, reserve_rate_per_ip=None
    )
    limited = RelayConfig(reservation_ttl=TTL)
    with trio.fail_after(60):
        before, _, healthy_before = await count_py_refreshes(unlimited)
        after, reasons, healthy_after = await count_py_refreshes(limited)
    print(
        f"\npy-libp2p 0.8.1 refresh loop, {WINDOW:g} s against our relay (TTL {TTL:g} s): "
        f"{before} RESERVE requests without rate limits, {after} with the defaults "
        f"({reasons}); {before / max(after, 1):.0f}x fewer"
    )
    # Without limits the loop runs as fast as loopback round trips allow.
    assert before > 100 * WINDOW, before
    # With the defaults: the burst (10), then a request a second admitted and about as many
    # refusals, each held until the next token.
    limit = RelayConfig()
    assert limit.reserve_rate_per_peer is not None
    most = limit.reserve_burst_per_peer + 2 * (limit.reserve_rate_per_peer * WINDOW + 1)
    assert after <= most, (after, reasons)
    assert reasons.get("reserve_rate_per_peer", 0) >= 1, reasons
    assert healthy_before
    assert healthy_after
