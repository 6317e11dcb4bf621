"""AutoNAT v2 against js-libp2p's @libp2p/autonat-v2 (pinned in tests/interop/js), both roles,
on loopback.

Stock js calls loopback and every documentation range private: its client never asks about
such an address and its server never dials one (it closes the stream without any answer;
for an address it has no transport for, it answers ``E_DIAL_REFUSED``). The stock tests pin
down exactly that, and that our client reads it as it should. The exchanges themselves --
nonce, dial-back, dial data -- need js to take loopback for public: the ``public_ranges``
peer (tests/interop/js/public-ranges.mjs: only @libp2p/utils's private-address test is
widened, for the whole process; js's AutoNAT v2 code runs as shipped).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import AddressPolicy, Host, HostConfig
from libp2p.host.autonat.v2 import (
    AutoNATv2Client,
    AutoNATv2ClientConfig,
    AutoNATv2Server,
    AutoNATv2ServerConfig,
    CheckOutcome,
)
from libp2p.peer.id import PeerID
from tests.interop.jspeer import JsServingPeer, js_serving_peer, require_js_peer

pytestmark = pytest.mark.interop

LOCAL = AddressPolicy.local_testing()
TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _need_js() -> None:
    require_js_peer()


def our_config(*, server: bool) -> HostConfig:
    return HostConfig(
        autonat_client=None,
        hole_punching=None,
        autonat_v2_client=AutoNATv2ClientConfig(),
        autonat_v2_server=(
            AutoNATv2ServerConfig(addresses=LOCAL, dial_data_wait=0.0) if server else None
        ),
    )


def v2(host: Host) -> AutoNATv2Client:
    assert host.autonat_v2 is not None
    return host.autonat_v2


def v2_server(host: Host) -> AutoNATv2Server:
    assert host.autonat_v2_server is not None
    return host.autonat_v2_server


def js_v2_peer(**kw: Any) -> Any:
    return js_serving_peer("listen", autonat_v2=True, report_connections=True, **kw)


async def connected(host: Host, js: JsServingPeer) -> PeerID:
    conn = await host.connect(js.addr)
    await host.identify.wait_identified(conn)
    return conn.remote_peer


# -- our client, js server -------------------------------------------------------------------


async def test_stock_js_server_ignores_loopback() -> None:
    async with (
        js_v2_peer() as js,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=our_config(server=False)) as host,
    ):
        with trio.fail_after(TIMEOUT):
            peer = await connected(host, js)
            assert v2(host).servers() == [peer]
            check = await v2(host).check(peer, host.listen_addrs)
    # js throws on the private address and closes the stream: no answer at all.
    assert check.outcome is CheckOutcome.ERROR, check
    assert check.detail == "server closed without a response"
    assert not check.verified


async def test_stock_js_server_refuses_what_it_cannot_dial() -> None:
    async with (
        js_v2_peer() as js,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=our_config(server=False)) as host,
    ):
        with trio.fail_after(TIMEOUT):
            peer = await connected(host, js)
            quic = Multiaddr("/ip4/127.0.0.1/udp/4001/quic-v1")
            check = await v2(host).check(peer, [quic, *host.listen_addrs])
    assert check.outcome is CheckOutcome.REFUSED, check


async def test_js_server_dials_us_back_with_our_nonce() -> None:
    async with (
        js_v2_peer(public_ranges=True) as js,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=our_config(server=False)) as host,
    ):
        with trio.fail_after(TIMEOUT):
            peer = await connected(host, js)
            tested = host.listen_addrs
            # Several in a row: js dials back from the identity we are connected to and
            # closes that connection at once; the next request must not ride on it.
            checks = [await v2(host).check(peer, tested) for _ in range(5)]
    for check in checks:
        assert check.outcome is CheckOutcome.REACHABLE, (check, js.stderr)
        assert check.verified
        assert check.addr == tested[0]
        assert check.dial_data == 0


async def test_js_server_asks_dial_data_for_another_ip() -> None:
    async with (
        js_v2_peer(public_ranges=True) as js,
        Host(
            listen=["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.2/tcp/0"],
            config=our_config(server=False),
        ) as host,
    ):
        with trio.fail_after(TIMEOUT):
            peer = await connected(host, js)
            other = [a for a in host.listen_addrs if "127.0.0.2" in str(a)]
            check = await v2(host).check(peer, other)
    assert check.outcome is CheckOutcome.REACHABLE, (check, js.stderr)
    assert check.verified
    assert 30_000 <= check.dial_data <= 100_000


async def test_js_server_reports_a_closed_port_unreachable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = Multiaddr(f"/ip4/127.0.0.1/tcp/{sock.getsockname()[1]}")
    async with (
        js_v2_peer(public_ranges=True) as js,
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=our_config(server=False)) as host,
    ):
        with trio.fail_after(TIMEOUT):
            peer = await connected(host, js)
            check = await v2(host).check(peer, [closed])
    assert check.outcome is CheckOutcome.UNREACHABLE, (check, js.stderr)
    assert check.addr == closed


# -- js client, our server -------------------------------------------------------------------


async def test_js_client_gets_its_address_verified_by_our_server() -> None:
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"], config=our_config(server=True)) as host,
        js_v2_peer(public_ranges=True) as js,
    ):
        with trio.fail_after(TIMEOUT):
            await connected(host, js)
            # js asks once identify shows our dial-request protocol; it confirms a
            # transport address after one successful dial-back.
            verdict = await js.wait_event("autonat-v2")
    stats = v2_server(host).stats
    assert verdict["reachable"] is True, (verdict, js.stderr)
    assert verdict["addr"] == js.addrs[0].split("/p2p/")[0]
    assert stats.dial_status["OK"] >= 1, stats
    assert stats.answered["OK"] >= 1
