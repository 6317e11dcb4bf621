"""Our dialer script (``examples/nat/dialer.py``) against a py-libp2p 0.8.1 listener that
serves py-libp2p's own NAT example protocol, ``/nat-example/1.0.0``, with that example's own
handler (from the 0.8.1 wheel), on loopback through our relay: what a user who tries our
dialer against py-libp2p's example gets.

The handler reads one message and answers with a greeting (not an echo). py-libp2p's example
listener itself reserves only after 300 s (its relay discovery's interval); the py peer here
reserves at once and serves the same handler. The full example was also run by hand: the
reservation came after 301 s, then the same result as below.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from libp2p import Host, HostConfig
from libp2p.relay.circuit_v2 import RelayConfig
from tests.examples.vocabulary import check_line
from tests.interop.pypeer import py_peer, require_py_peer

pytestmark = pytest.mark.interop

DIALER = Path(__file__).resolve().parents[2] / "examples" / "nat" / "dialer.py"
NAT_EXAMPLE = "/nat-example/1.0.0"


@pytest.fixture(autouse=True)
def _need_py_peer() -> None:
    require_py_peer()


async def run_dialer(target: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    argv = [sys.executable, "-u", str(DIALER), "--json", "--target", target]
    argv += ["--listen", "/ip4/127.0.0.1/tcp/0", "--timeout", "20", *args]
    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    assert done.stderr == b"", done.stderr.decode()
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    for line in lines:
        check_line(line, "dialer")
    return done.returncode, lines


async def test_our_dialer_speaks_py_libp2p_nat_example_protocol() -> None:
    config = HostConfig(relay_service=RelayConfig(), autonat_client=None)
    with trio.fail_after(60):
        async with Host(listen=["/ip4/127.0.0.1/tcp/0"], config=config) as relay:
            relay_addr = f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}"
            async with py_peer("--relay", relay_addr, "--dcutr", "--nat-example") as py:
                (target,) = py.relayed_addrs
                code, lines = await run_dialer(target, "--protocol", NAT_EXAMPLE)
                echoes = [line for line in lines if line["event"] == "echo"]
                result = lines[-1]
                # Served on both connections; the greeting is not our message: "replied".
                assert [(e["via"], e["served"], e["ok"]) for e in echoes] == [
                    ("relayed", True, False),
                    ("direct", True, False),
                ], lines
                assert all(e["reply_bytes"] > 0 for e in echoes)
                assert result["event"] == "result"
                assert (result["ok"], result["app"]) == (True, "replied"), result
                assert code == 0
            # A protocol it does not serve (py's example listener does not serve our default
            # /echo/1.0.0; this peer does): refused, and the result is the hole punch's. A
            # fresh py peer: py-libp2p's DCUtR loop stays stuck on a dialer that left (its
            # new_stream to it has no timeout), so a second dialer would wait in vain.
            async with py_peer("--relay", relay_addr, "--dcutr", "--nat-example") as py:
                (target,) = py.relayed_addrs
                code, lines = await run_dialer(target, "--protocol", "/chat/1.0.0")
                echoes = [line for line in lines if line["event"] == "echo"]
                assert [(e["served"], e["reply_bytes"]) for e in echoes] == [
                    (False, None),
                    (False, None),
                ], lines
                result = lines[-1]
                assert result["event"] == "result"
                assert (result["ok"], result["app"]) == (True, "not_served"), result
                assert code == 0
