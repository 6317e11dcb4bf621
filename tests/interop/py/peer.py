"""A stock py-libp2p 0.8.1 peer for our interop tests, driven over stdin/stdout.

Run by the virtual environment ``scripts/install_py_peer.sh`` makes (``.venv-pylibp2p``),
never imported by our tests (our package is also called ``libp2p``): the driver,
``tests/interop/pypeer.py``, starts it with a clean ``PYTHONPATH`` and a working directory
outside our tree.

Usage::

    python peer.py listen [--listen MA] [--muxer default|yamux|mplex]

It listens (default ``/ip4/127.0.0.1/tcp/0``), serves ``/echo/1.0.0`` (echoes every byte
until EOF, then closes) besides py-libp2p's own identify, identify-push and ping, and prints
one JSON line ``{"peerId", "addrs", "muxers"}`` when ready. ``--muxer mplex`` offers mplex
only (py-libp2p's muxer options, nothing patched).

Then it reads one JSON command per line on stdin and answers each with one JSON line on
stdout, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``; EOF on stdin ends it.

- ``{"op": "dial", "addr": MA}``: connect to ``MA`` (ending in ``/p2p/ID``);
- ``{"op": "echo", "peer": ID, "data": HEX, "protocol"?: P}``: open a stream, write
  ``data``, read as many bytes back, close; answers ``{"data": HEX}``;
- ``{"op": "ping", "peer": ID}``: one ``/ipfs/ping/1.0.0`` round trip (32 random bytes);
- ``{"op": "peer", "peer": ID}``: the protocols py-libp2p's peerstore holds for ``ID``:
  ``{"protocols": [...]}`` (0.8.1 keeps no agentVersion from identify);
- ``{"op": "wait_protocol", "peer": ID, "protocol": P, "timeout": S}``: wait until the
  peerstore lists ``P`` for ``ID`` (woken by each change of that peer's protocols; the
  peerstore is py-libp2p's own, only observed), at most ``S`` seconds; answers
  ``{"found": bool, "protocols": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr

from libp2p import MPLEX_PROTOCOL_ID, YAMUX_PROTOCOL_ID, Mplex, Yamux, new_host
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore, PeerStoreError

ECHO = TProtocol("/echo/1.0.0")
PING = TProtocol("/ipfs/ping/1.0.0")


class WatchedPeerStore(PeerStore):
    """py-libp2p's PeerStore, unchanged, that also wakes waiters when protocols change."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = trio.Event()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def add_protocols(self, peer_id: ID, protocols: Sequence[str]) -> None:
        super().add_protocols(peer_id, protocols)
        self._wake()

    def set_protocols(self, peer_id: ID, protocols: Sequence[str]) -> None:
        super().set_protocols(peer_id, protocols)
        self._wake()


async def _echo(stream: Any) -> None:
    try:
        while True:
            try:
                chunk = await stream.read(65536)
            except StreamEOF:
                break
            if not chunk:
                break
            await stream.write(chunk)
    finally:
        await stream.close()


async def _read_exactly(stream: Any, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = await stream.read(n - len(got))
        if not chunk:
            break
        got += chunk
    return got


def _protocols(store: PeerStore, peer: ID) -> list[str]:
    try:
        return sorted(str(p) for p in store.get_protocols(peer))
    except PeerStoreError:
        return []


async def _handle(host: Any, store: WatchedPeerStore, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd.get("op")
    if op == "dial":
        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(cmd["addr"])))
        return {}
    peer = ID.from_base58(cmd["peer"])
    if op == "echo":
        data = bytes.fromhex(cmd["data"])
        stream = await host.new_stream(peer, [TProtocol(cmd.get("protocol", ECHO))])
        await stream.write(data)
        got = await _read_exactly(stream, len(data))
        await stream.close()
        return {"data": got.hex()}
    if op == "ping":
        payload = secrets.token_bytes(32)
        stream = await host.new_stream(peer, [PING])
        start = trio.current_time()
        await stream.write(payload)
        got = await _read_exactly(stream, 32)
        rtt = trio.current_time() - start
        await stream.close()
        if got != payload:
            raise RuntimeError(f"ping answer differs: {got.hex()} != {payload.hex()}")
        return {"rttSeconds": rtt}
    if op == "peer":
        return {"protocols": _protocols(store, peer)}
    if op == "wait_protocol":
        wanted = cmd["protocol"]
        with trio.move_on_after(float(cmd.get("timeout", 10))):
            while wanted not in _protocols(store, peer):
                await store.changed.wait()
        protocols = _protocols(store, peer)
        return {"found": wanted in protocols, "protocols": protocols}
    raise ValueError(f"unknown op {op!r}")


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> None:
    muxers: dict[TProtocol, Any] | None
    if args.muxer == "mplex":
        muxers = {TProtocol(MPLEX_PROTOCOL_ID): Mplex}
    elif args.muxer == "yamux":
        muxers = {TProtocol(YAMUX_PROTOCOL_ID): Yamux}
    else:
        muxers = None
    store = WatchedPeerStore()
    host = new_host(muxer_opt=muxers, peerstore_opt=store)
    listen = [multiaddr.Multiaddr(a) for a in (args.listen or ["/ip4/127.0.0.1/tcp/0"])]
    async with host.run(listen_addrs=listen):
        host.set_stream_handler(ECHO, _echo)
        peer_id = host.get_id().to_string()
        addrs = [f"{a}" if "/p2p/" in str(a) else f"{a}/p2p/{peer_id}" for a in host.get_addrs()]
        _emit({"peerId": peer_id, "addrs": addrs, "muxers": [str(m) for m in (muxers or {})]})
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buf = b""
        async with trio.open_nursery() as nursery:

            async def run_one(line: bytes) -> None:
                cmd: Any = None
                try:
                    cmd = json.loads(line)
                    reply = {"ok": True, **await _handle(host, store, cmd)}
                except Exception as exc:  # noqa: BLE001 - reported to the driver as data
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                reply["id"] = cmd.get("id") if isinstance(cmd, dict) else None
                _emit(reply)

            while True:
                chunk = await stdin.receive_some()
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        nursery.start_soon(run_one, line)
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    listen = sub.add_parser("listen")
    listen.add_argument("--listen", action="append")
    listen.add_argument("--muxer", choices=["default", "yamux", "mplex"], default="default")
    args = parser.parse_args()
    trio.run(_serve, args)


if __name__ == "__main__":
    main()
