"""A stock py-libp2p 0.8.1 peer for our interop tests, driven over stdin/stdout.

Run by the virtual environment ``scripts/install_py_peer.sh`` makes (``.venv-pylibp2p``),
never imported by our tests (our package is also called ``libp2p``): the driver,
``tests/interop/pypeer.py``, starts it with a clean ``PYTHONPATH`` and a working directory
outside our tree.

Usage::

    python peer.py listen [--listen MA] [--muxer default|yamux|mplex]
                          [--relay MA]... [--dcutr] [--connect MA]... [--report-connections]

It listens (default ``/ip4/127.0.0.1/tcp/0``), serves ``/echo/1.0.0`` (echoes every byte
until EOF, then closes) besides py-libp2p's own identify, identify-push and ping, and prints
one JSON line ``{"peerId", "addrs", "muxers"}`` when ready. ``--muxer mplex`` offers mplex
only (py-libp2p's muxer options, nothing patched).

Circuit Relay v2 and DCUtR, all py-libp2p 0.8.1's own classes, unpatched:

- ``--relay MA`` (repeatable) connects to the relay and reserves on it at once (through
  ``CircuitV2Transport.reserve``, which also starts py-libp2p's refresh loop), before the
  ready line, whose ``addrs`` then include ``MA/p2p-circuit/p2p/<own id>``. py-libp2p's NAT
  example reserves only through ``RelayDiscovery``, whose first round after a connection
  comes 300 s later.
- Any relay option runs ``CircuitV2Protocol`` (stop role: accepts relayed connections) and
  ``CircuitV2Transport``; ``--dcutr`` also runs ``DCUtRProtocol``, whose own loop starts a
  hole punch every 2 s towards any peer it is connected to only through a relay (in either
  role: py-libp2p does not leave DCUtR to the peer that received the relayed connection).
- ``--connect MA`` (repeatable; a ``.../p2p-circuit/p2p/ID`` address) dials through the relay
  after the ready line and keeps the connection: ``{"event": "connected", "target",
  "remotePeer", "remoteAddr"}`` or ``{"event": "connect-error", "target", "error"}``.
- ``--nat-example`` also serves ``/nat-example/1.0.0`` with the handler of py-libp2p's own
  NAT example (``examples.nat.listener.handle_example_protocol`` from the 0.8.1 wheel, as
  it is: reads one message, answers with a greeting, closes).
- ``--report-connections`` prints ``{"event": "connection", "remotePeer", "remoteAddr",
  "relayed", "direction"}`` for each connection py-libp2p's swarm reports, and
  ``{"event": "direct", "remotePeer", "remoteAddr", "sinceRelayedSeconds"}`` when a
  non-relayed connection to a peer that had a relayed one appears.

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
  ``{"found": bool, "protocols": [...]}``;
- ``{"op": "reserve", "relay": MA}`` (needs a relay option): reserve on ``MA`` now, as
  ``--relay`` does; answers ``{"reserved": bool, "addrs": [...]}``;
- ``{"op": "hole_punch", "peer": ID}`` (needs ``--dcutr``): ``DCUtRProtocol
  .initiate_hole_punch`` now, as py-libp2p's NAT example dialer does; answers
  ``{"direct": bool}``;
- ``{"op": "connections", "peer": ID}``: py-libp2p's connections to ``ID``:
  ``{"connections": [{"addrs": [...], "relayed": bool}]}``.
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
from libp2p.abc import INotifee
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

from libp2p import MPLEX_PROTOCOL_ID, YAMUX_PROTOCOL_ID, Mplex, Yamux, new_host
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore, PeerStoreError
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol

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


def _is_relayed(conn: Any) -> bool:
    try:
        addrs = conn.get_transport_addresses()
    except Exception:  # noqa: BLE001 - py-libp2p raises what it likes here
        return False
    return any("/p2p-circuit" in str(a) for a in addrs)


def _conn_addrs(conn: Any) -> list[str]:
    try:
        return [str(a) for a in conn.get_transport_addresses()]
    except Exception:  # noqa: BLE001
        return []


class Relaying:
    """py-libp2p's relay client (stop role), its transport and, with ``--dcutr``, DCUtR."""

    def __init__(self, host: Any, dcutr: bool) -> None:
        self.host = host
        self.protocol = CircuitV2Protocol(host, allow_hop=False)
        self.transport = CircuitV2Transport(
            host, self.protocol, RelayConfig(roles=RelayRole.STOP | RelayRole.CLIENT)
        )
        self.dcutr = DCUtRProtocol(host) if dcutr else None
        self.nursery: trio.Nursery | None = None

    async def reserve(self, relay: str) -> list[str]:
        """Connect to ``relay`` and reserve; returns our relayed addresses (none if refused)."""
        assert self.nursery is not None
        info = info_from_p2p_addr(multiaddr.Multiaddr(relay))
        await self.host.connect(info)
        stream = await self.host.new_stream(info.peer_id, [HOP_PROTOCOL_ID])
        try:
            ok = await self.transport.reserve(stream, info.peer_id, self.nursery)
        finally:
            await stream.close()
        me = self.host.get_id().to_string()
        return [f"{relay}/p2p-circuit/p2p/{me}"] if ok else []

    async def connect(self, target: str) -> Any:
        return await self.transport.dial(multiaddr.Multiaddr(target))


class Reporter(INotifee):
    """Prints connection events (``--report-connections``) from the swarm's notifications."""

    def __init__(self) -> None:
        self.relayed_since: dict[str, float] = {}
        self.direct: set[str] = set()

    async def connected(self, network: Any, conn: Any) -> None:
        peer = conn.muxed_conn.peer_id.to_string()
        relayed = _is_relayed(conn)
        addrs = _conn_addrs(conn)
        direction = "outbound" if getattr(conn.muxed_conn, "is_initiator", False) else "inbound"
        _emit(
            {
                "event": "connection",
                "remotePeer": peer,
                "remoteAddr": addrs[0] if addrs else None,
                "relayed": relayed,
                "direction": direction,
            }
        )
        if relayed:
            self.relayed_since.setdefault(peer, trio.current_time())
        elif peer in self.relayed_since and peer not in self.direct:
            self.direct.add(peer)
            _emit(
                {
                    "event": "direct",
                    "remotePeer": peer,
                    "remoteAddr": addrs[0] if addrs else None,
                    "direction": direction,
                    "sinceRelayedSeconds": trio.current_time() - self.relayed_since[peer],
                }
            )

    async def disconnected(self, network: Any, conn: Any) -> None:
        return None

    async def opened_stream(self, network: Any, stream: Any) -> None:
        return None

    async def closed_stream(self, network: Any, stream: Any) -> None:
        return None

    async def listen(self, network: Any, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        return None


def _protocols(store: PeerStore, peer: ID) -> list[str]:
    try:
        return sorted(str(p) for p in store.get_protocols(peer))
    except PeerStoreError:
        return []


async def _handle(
    host: Any, store: WatchedPeerStore, relaying: Relaying | None, cmd: dict[str, Any]
) -> dict[str, Any]:
    op = cmd.get("op")
    if op == "dial":
        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(cmd["addr"])))
        return {}
    if op == "reserve":
        if relaying is None:
            raise ValueError("reserve needs a relay option (--relay, --dcutr or --connect)")
        addrs = await relaying.reserve(cmd["relay"])
        return {"reserved": bool(addrs), "addrs": addrs}
    peer = ID.from_base58(cmd["peer"])
    if op == "hole_punch":
        if relaying is None or relaying.dcutr is None:
            raise ValueError("hole_punch needs --dcutr")
        return {"direct": bool(await relaying.dcutr.initiate_hole_punch(peer))}
    if op == "connections":
        conns = host.get_network().get_connections(peer)
        return {
            "connections": [{"addrs": _conn_addrs(c), "relayed": _is_relayed(c)} for c in conns]
        }
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
    relaying = Relaying(host, args.dcutr) if (args.relay or args.dcutr or args.connect) else None
    async with host.run(listen_addrs=listen), trio.open_nursery() as services:
        host.set_stream_handler(ECHO, _echo)
        if args.autonat:
            # py-libp2p's own AutoNAT v1 server, as it ships (it answers OK whenever the
            # requester is connected already: a stock liar).
            from libp2p.host.autonat.autonat import AutoNATService

            AutoNATService(host, serve=True)
        if args.nat_example:
            from examples.nat.listener import EXAMPLE_PROTOCOL_ID, handle_example_protocol

            host.set_stream_handler(EXAMPLE_PROTOCOL_ID, handle_example_protocol)
        if args.report_connections:
            host.get_network().register_notifee(Reporter())
        relayed: list[str] = []
        if relaying is not None:
            relaying.nursery = services
            await services.start(_run_services, relaying)
            for relay in args.relay:
                relayed += await relaying.reserve(relay)
        peer_id = host.get_id().to_string()
        addrs = [f"{a}" if "/p2p/" in str(a) else f"{a}/p2p/{peer_id}" for a in host.get_addrs()]
        _emit(
            {
                "peerId": peer_id,
                "addrs": addrs + relayed,
                "muxers": [str(m) for m in (muxers or {})],
            }
        )
        if relaying is not None:
            for target in args.connect:
                services.start_soon(_connect, relaying, target)
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        buf = b""
        async with trio.open_nursery() as nursery:

            async def run_one(line: bytes) -> None:
                cmd: Any = None
                try:
                    cmd = json.loads(line)
                    reply = {"ok": True, **await _handle(host, store, relaying, cmd)}
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
        services.cancel_scope.cancel()


async def _run_services(
    relaying: Relaying, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """py-libp2p's services, as its NAT example runs them (``background_trio_service``)."""
    async with background_trio_service(relaying.protocol):
        if relaying.dcutr is None:
            task_status.started()
            await trio.sleep_forever()
        async with background_trio_service(relaying.dcutr):
            await relaying.dcutr.event_started.wait()
            task_status.started()
            await trio.sleep_forever()


async def _connect(relaying: Relaying, target: str) -> None:
    try:
        conn = await relaying.connect(target)
    except Exception as exc:  # noqa: BLE001 - reported to the driver as data
        _emit({"event": "connect-error", "target": target, "error": f"{type(exc).__name__}: {exc}"})
        return
    addrs = _conn_addrs(conn)
    _emit(
        {
            "event": "connected",
            "target": target,
            "remotePeer": conn.muxed_conn.peer_id.to_string(),
            "remoteAddr": addrs[0] if addrs else None,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    listen = sub.add_parser("listen")
    listen.add_argument("--listen", action="append")
    listen.add_argument("--muxer", choices=["default", "yamux", "mplex"], default="default")
    listen.add_argument("--relay", action="append", default=[])
    listen.add_argument("--dcutr", action="store_true")
    listen.add_argument("--connect", action="append", default=[])
    listen.add_argument("--report-connections", action="store_true")
    listen.add_argument("--nat-example", action="store_true")
    listen.add_argument("--autonat", action="store_true", help="serve AutoNAT v1")
    args = parser.parse_args()
    trio.run(_serve, args)


if __name__ == "__main__":
    main()
