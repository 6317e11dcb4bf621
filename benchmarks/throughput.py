"""One stream, N MiB each way over loopback, measured side by side in one run.

Rows (each the /perf/1.0.0 exchange: upload N bytes, then download N bytes, on one stream):

* raw TCP            -- Python client and server, plain sockets (the physical limit here)
* ChaCha20-Poly1305  -- encrypt + decrypt of 65519-byte frames in one process (the cipher limit)
* ours -> ours       -- our stack in this process dialing our stack in another process
* ours -> js         -- our stack dialing a js-libp2p peer
* js   -> ours       -- a js-libp2p peer dialing our stack
* js   -> js         -- js-libp2p on both ends, for reference

Every peer that is not this process runs in its own process, so each end has a core.
Ratios are printed against raw TCP and against js -> js. This is a measurement, not a test.

    .venv/bin/python benchmarks/throughput.py [--mib 256] [--skip-js]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402

from libp2p import perf  # noqa: E402
from libp2p.crypto.keys import generate_ed25519  # noqa: E402
from libp2p.network.swarm import Swarm  # noqa: E402
from tests.interop.jspeer import js_peer, js_peer_available, run_js_dialer  # noqa: E402

_U64 = struct.Struct(">Q")
_BLOCK = bytes(256 * 1024)


@asynccontextmanager
async def py_peer(mode: str) -> AsyncIterator[dict[str, object]]:
    """Start benchmarks/py_peer.py in its own process; yield its JSON announcement."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "benchmarks" / "py_peer.py"), mode],
        stdin=-1,
        stdout=-1,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError(f"py_peer {mode} exited before announcing itself")
                line += chunk
        yield json.loads(line)
    finally:
        await proc.stdin.aclose()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def bench_raw(nbytes: int) -> tuple[float, float]:
    async with py_peer("raw") as info:
        host, port = str(info["addr"]).rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        t0 = time.perf_counter()
        await stream.send_all(_U64.pack(nbytes))
        view, left = memoryview(_BLOCK), nbytes
        while left > 0:
            n = min(left, len(_BLOCK))
            await stream.send_all(view[:n])
            left -= n
        await stream.send_eof()
        t1 = time.perf_counter()
        got = 0
        while chunk := await stream.receive_some(256 * 1024):
            got += len(chunk)
        t2 = time.perf_counter()
        await stream.aclose()
        assert got == nbytes, got
        return nbytes / (t1 - t0), nbytes / (t2 - t1)


def bench_cipher(nbytes: int) -> float:
    aead = ChaCha20Poly1305(os.urandom(32))
    frame = os.urandom(65519)
    nonce = struct.Struct("<4xQ")
    frames = max(1, nbytes // len(frame))
    t0 = time.perf_counter()
    for i in range(frames):
        ct = aead.encrypt(nonce.pack(i), frame, None)
        aead.decrypt(nonce.pack(i), ct, None)
    return frames * len(frame) / (time.perf_counter() - t0)


async def bench_ours_to(addr: str, nbytes: int) -> tuple[float, float]:
    async with Swarm(generate_ed25519()) as swarm:
        conn = await swarm.dial(addr)
        stream = await conn.new_stream(perf.PROTOCOL_ID)
        t0 = time.perf_counter()
        result = await perf.perf(stream, upload=nbytes, download=nbytes)
        total = time.perf_counter() - t0
        del total
        return result.upload_bps, result.download_bps


async def bench_js_dialer(addr: str, nbytes: int) -> tuple[float, float]:
    out = await run_js_dialer(
        addr, perf_upload=nbytes, perf_download=nbytes, monitor=False, time_limit=300
    )
    p = out["perf"]
    return p["uploadBytes"] / p["uploadSeconds"], p["downloadBytes"] / p["downloadSeconds"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB each way (default 256)")
    parser.add_argument("--skip-js", action="store_true", help="skip the js-libp2p rows")
    args = parser.parse_args()
    nbytes = args.mib * 1024 * 1024
    rows: dict[str, tuple[float, float]] = {}

    rows["raw TCP"] = await bench_raw(nbytes)
    c = bench_cipher(nbytes)
    rows["ChaCha20-Poly1305 (enc+dec)"] = (c, c)
    async with py_peer("libp2p") as info:
        rows["ours -> ours"] = await bench_ours_to(str(info["addrs"][0]), nbytes)  # type: ignore[index]
    ok, why = js_peer_available()
    if args.skip_js or not ok:
        print(f"(js rows skipped: {'--skip-js' if args.skip_js else why})")
    else:
        async with js_peer("listen", monitor=False) as js:
            rows["ours -> js"] = await bench_ours_to(js.addr, nbytes)
        async with py_peer("libp2p") as info:
            rows["js -> ours"] = await bench_js_dialer(str(info["addrs"][0]), nbytes)  # type: ignore[index]
        async with js_peer("listen", monitor=False) as js:
            rows["js -> js"] = await bench_js_dialer(js.addr, nbytes)

    raw_up, raw_down = rows["raw TCP"]
    ref = rows.get("js -> js")
    print(f"\nOne stream, {args.mib} MiB each way, loopback, {os.cpu_count()} cores")
    header = f"{'path':30} {'up MB/s':>9} {'down MB/s':>10} {'vs raw':>8}"
    header += f" {'vs js->js':>10}" if ref else ""
    print(header)
    for name, (up, down) in rows.items():
        line = (
            f"{name:30} {up / 1e6:9.1f} {down / 1e6:10.1f} {(up + down) / (raw_up + raw_down):8.2f}"
        )
        if ref:
            line += f" {(up + down) / (ref[0] + ref[1]):10.2f}"
        print(line)


if __name__ == "__main__":
    trio.run(main)
