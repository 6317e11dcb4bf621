"""The js interop harness checked against itself: js listens, js dials, over loopback.

If these fail, interop failures elsewhere say nothing about our stack.
"""

from __future__ import annotations

import contextlib
import os

import pytest
import trio

from tests.interop.jspeer import (
    JsPeerError,
    js_peer,
    js_peer_available,
    require_js_peer,
    run_js_dialer,
    sha256_hex,
    source_pattern,
)

pytestmark = pytest.mark.interop

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _need_js_peer() -> None:
    require_js_peer()


async def test_ping() -> None:
    async with js_peer() as listener:
        assert listener.peer_id.startswith("12D3KooW")
        assert listener.addr.startswith("/ip4/127.0.0.1/tcp/")
        assert listener.addr.endswith(f"/p2p/{listener.peer_id}")
        result = await run_js_dialer(listener.addr, ping=3)
    assert result["remotePeer"] == listener.peer_id
    assert result["ping"]["count"] == 3
    rtts = result["ping"]["rttsMs"]
    assert len(rtts) == 3
    assert all(rtt > 0 for rtt in rtts)
    assert len(result["ping"]["reportedMs"]) == 3


async def test_echo_both_ways() -> None:
    size = 4 * MIB + 123
    async with js_peer() as listener:
        result = await run_js_dialer(listener.addr, echo=size)
    echo = result["echo"]
    assert echo["bytes"] == size
    assert echo["receivedBytes"] == size
    assert echo["receivedSha256"] == echo["sentSha256"]
    assert len(echo["sentSha256"]) == 64


async def test_sink_and_source() -> None:
    sink_size = 3 * MIB + 7
    source_size = 3 * MIB + 11
    async with js_peer() as listener:
        result = await run_js_dialer(listener.addr, sink=sink_size, source=source_size)
    sink = result["sink"]
    assert sink["remoteBytes"] == sink_size
    assert sink["remoteSha256"] == sink["sha256"]
    source = result["source"]
    assert source["bytes"] == source_size
    assert source["patternOk"] is True
    # Computed independently here, so a wrong pattern on both js sides would still fail.
    assert source["sha256"] == sha256_hex(source_pattern(source_size))


async def test_perf() -> None:
    up, down = 8 * MIB, 16 * MIB
    async with js_peer() as listener:
        result = await run_js_dialer(listener.addr, perf_upload=up, perf_download=down)
    perf = result["perf"]
    assert perf["type"] == "final"
    assert perf["uploadBytes"] == up
    assert perf["downloadBytes"] == down
    assert perf["timeSeconds"] > 0
    assert perf["timeSeconds"] >= perf["downloadSeconds"] > 0


async def test_two_dialers_share_one_listener() -> None:
    async with js_peer() as listener, trio.open_nursery() as nursery:
        results: list[dict[str, object]] = []

        async def dial() -> None:
            results.append(await run_js_dialer(listener.addr, ping=1, echo=MIB))

        nursery.start_soon(dial)
        nursery.start_soon(dial)
    assert len(results) == 2
    assert results[0]["peerId"] != results[1]["peerId"]


async def test_seed_fixes_peer_id() -> None:
    seed = bytes(range(32))
    async with js_peer(seed=seed) as first:
        pass
    async with js_peer(seed=seed) as second:
        pass
    assert first.peer_id == second.peer_id
    assert first.process.returncode == 0


async def test_dial_errors_are_reported() -> None:
    async with js_peer() as listener:
        wrong = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"  # seed 00..1f
        assert wrong != listener.peer_id
        addr = listener.addr.rsplit("/p2p/", 1)[0] + f"/p2p/{wrong}"
        with pytest.raises(JsPeerError, match="js dialer failed"):
            await run_js_dialer(addr, ping=1, time_limit=20)
        result = await run_js_dialer(addr, ping=1, time_limit=20, check=False)
    assert result["returncode"] != 0
    assert result["error"]


def test_available_reports_reason() -> None:
    ok, reason = js_peer_available()
    assert ok, reason
    assert reason.startswith("node v")
    assert os.path.isfile(os.path.join(os.path.dirname(__file__), "js", "package-lock.json"))


async def test_listener_that_ignores_stdin_is_terminated() -> None:
    async with js_peer("listen", "--ignore-stdin", stop_timeout=2) as listener:
        pass
    # Closing stdin did nothing, so SIGTERM did the job: peer.mjs exits 0 on SIGTERM.
    assert listener.process.returncode == 0
    assert "stopping: SIGTERM" in listener.stderr


async def test_silent_peer_times_out() -> None:
    """A peer that accepts TCP and never answers must not hang the dialer."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    fake = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"

    async def hold(stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError):
            while await stream.receive_some():
                pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, hold, listeners)
        with trio.fail_after(30):
            result = await run_js_dialer(
                f"/ip4/127.0.0.1/tcp/{port}/p2p/{fake}", ping=1, time_limit=3, check=False
            )
        nursery.cancel_scope.cancel()
    assert result["returncode"] != 0
    assert result["error"]
