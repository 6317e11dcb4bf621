"""``python -m libp2p.perf client`` against a STOCK js-libp2p 3.x perf server (issue 10, item 2).

The js peer runs ``peer.mjs listen`` with js-libp2p's defaults: no ``--no-monitor`` (its
connection monitor pings us), no ``--no-conn-limits``, none of the hole-punch adjustments;
only the /perf/1.0.0 handler is peer.mjs's own (@libp2p/perf is not on the registry we
reach; it speaks the spec's wire format over js-libp2p's stock stream API). js-libp2p drops
a request whose FIN arrives together with the protocol proposal, so a client that sends the
proposal, the 10-byte upload and its FIN at once waits forever: the time limit makes that a
failure rather than a stuck suite.

On an idle machine our frames seldom reach js in one read, so the second test makes sure
they do: it freezes js (SIGSTOP to the process we started) while our client writes, and
thaws it once every task of ours is blocked.
"""

from __future__ import annotations

import signal

import pytest
import trio
import trio.testing

from libp2p import Host, HostConfig, perf
from tests.integration.test_perf_cli import check_results, run_perf_client
from tests.interop.jspeer import js_peer, require_js_peer

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _need_js_peer() -> None:
    require_js_peer()


@pytest.mark.parametrize("extra", [(), ("--reuse-connection",)])
async def test_perf_client_against_stock_js_server_10_bytes(extra: tuple[str, ...]) -> None:
    with trio.fail_after(45):
        async with js_peer() as js:
            run = await run_perf_client(
                js.addr,
                "--upload-bytes",
                "10",
                "--download-bytes",
                "10",
                "--iterations",
                "3",
                *extra,
                time_limit=30,
            )
    check_results(run, iterations=3, upload=10, download=10, reused=bool(extra))


async def test_perf_request_reaching_stock_js_in_one_read_is_answered() -> None:
    async with js_peer() as js, Host(config=HostConfig(autonat_client=None)) as host:
        conn = await host.connect(js.addr)
        await host.identify.wait_identified(conn)
        results: list[perf.PerfResult] = []

        async def client() -> None:
            # As the perf CLI does: a stream on the connection, lazily negotiated.
            stream = await conn.new_stream(perf.PROTOCOL_ID)
            results.append(await perf.perf(stream, upload=10, download=10))
            await stream.aclose()

        js.process.send_signal(signal.SIGSTOP)
        try:
            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client)
                    # Everything our client could send is in js's socket buffer now.
                    await trio.testing.wait_all_tasks_blocked(cushion=0.2)
                    js.process.send_signal(signal.SIGCONT)
        finally:
            js.process.send_signal(signal.SIGCONT)
    assert [(r.uploaded, r.downloaded) for r in results] == [(10, 10)]
