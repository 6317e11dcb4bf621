"""``python -m libp2p.perf client`` against a STOCK js-libp2p 3.x perf server (issue 10, item 2).

The js peer runs ``peer.mjs listen`` with js-libp2p's defaults: no ``--no-monitor`` (its
connection monitor pings us), no ``--no-conn-limits``, none of the hole-punch adjustments;
only the /perf/1.0.0 handler is peer.mjs's own (@libp2p/perf is not on the registry we
reach; it speaks the spec's wire format over js-libp2p's stock stream API). js-libp2p drops
a request whose FIN arrives together with the protocol proposal, so a client that sends the
proposal, the 10-byte upload and its FIN at once waits forever: the time limit makes that a
failure rather than a stuck suite.
"""

from __future__ import annotations

import pytest
import trio

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
