"""Perf (``/perf/1.0.0``) between ``python -m libp2p.perf`` and the js-libp2p peer, both ways.

Small transfers matter as much as big ones: with lazy protocol selection our client's whole
request (protocol proposal, size header, upload and FIN) can reach js in one TCP segment.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
import trio

from tests.integration.test_perf_cli import check_results, perf_server, run_perf_client
from tests.interop.jspeer import JS_DIR, PEER_SCRIPT, js_peer, require_js_peer, run_js_dialer

pytestmark = pytest.mark.interop

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _need_js_peer() -> None:
    require_js_peer()


@pytest.mark.parametrize(
    ("upload", "download", "extra"),
    [
        (1, 1, ()),
        (0, 3 * MIB + 1, ()),
        (5 * MIB + 3, 0, ()),
        (100, 2 * MIB, ("--reuse-connection",)),
    ],
)
async def test_our_perf_client_to_js_server(
    upload: int, download: int, extra: tuple[str, ...]
) -> None:
    async with js_peer("listen", "--no-conn-limits", monitor=False) as js:
        run = await run_perf_client(
            js.addr,
            "--upload-bytes",
            str(upload),
            "--download-bytes",
            str(download),
            "--iterations",
            "3",
            *extra,
        )
    check_results(run, iterations=3, upload=upload, download=download, reused=bool(extra))


@pytest.mark.parametrize(("upload", "download"), [(1, 1), (4 * MIB + 5, 3 * MIB + 1)])
async def test_js_dialer_perf_to_our_server(upload: int, download: int) -> None:
    async with perf_server() as server:
        result = await run_js_dialer(
            server.addr, perf_upload=upload, perf_download=download, monitor=False
        )
    assert result["remotePeer"] == server.peer_id
    # The perf server is a full host: js identified it and learned it serves perf.
    assert "/perf/1.0.0" in result["identify"]["protocols"]
    assert result["perf"]["uploadBytes"] == upload
    assert result["perf"]["downloadBytes"] == download


async def _run_js_perf_client(server: str, *args: str) -> list[dict[str, Any]]:
    """``node peer.mjs perf SERVER ARGS...``: one JSON result line per iteration."""
    node = shutil.which("node")
    assert node is not None
    with trio.fail_after(90):
        done = await trio.run_process(
            [node, str(PEER_SCRIPT), "perf", server, "--no-monitor", *args],
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=JS_DIR,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]


@pytest.mark.parametrize("reuse", [False, True])
async def test_js_perf_mode_iterations_to_our_server(reuse: bool) -> None:
    args = ["--upload-bytes", "1000", "--download-bytes", str(MIB), "--iterations", "3"]
    if reuse:
        args.append("--reuse-connection")
    async with perf_server() as server:
        results = await _run_js_perf_client(server.addr, *args)
    assert [r["iteration"] for r in results] == [0, 1, 2]
    for r in results:
        assert r["upload_bytes"] == 1000
        assert r["download_bytes"] == MIB
        assert 0 <= r["connect_seconds"] <= r["time_seconds"]
        assert (r["connect_seconds"] > 0) is (r["iteration"] == 0 or not reuse)
