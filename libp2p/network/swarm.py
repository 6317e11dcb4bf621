"""The swarm: listeners, dials and live connections of one local peer.

The swarm owns a nursery (open it with ``async with``); every listener's accept loop and every
connection runs inside it, so leaving the block closes everything. It knows nothing about
identify, peer stores or NAT traversal: the host builds those on top. What it guarantees:

* inbound connections are upgraded as responder, outbound ones as initiator, each within a
  time limit, and a failed upgrade costs only that connection;
* :meth:`Swarm.upgrade_stream` runs the same pipeline over any trio stream with an explicit role
  (a relayed pipe, or a hole-punched socket whose role DCUtR decided);
* protocol handlers are looked up when a stream arrives, so handlers may be added at any time.
"""

from __future__ import annotations

import contextlib
import logging
from types import TracebackType

import trio
from multiaddr import Multiaddr

from ..crypto.keys import PrivateKey
from ..exceptions import Libp2pError, LocalUsageError, TransportError
from ..peer.id import PeerID
from ..stream_muxer.yamux import YamuxConfig
from ..transport.tcp import TcpListener, TcpTransport, sockaddr_to_multiaddr
from .connection import Connection, Direction, NetStream, StreamHandler
from .upgrader import upgrade

__all__ = ["Swarm", "split_peer_id"]

logger = logging.getLogger(__name__)

#: Time allowed to upgrade an outbound connection (go's default negotiate timeout).
DIAL_UPGRADE_TIMEOUT = 60.0
#: Time allowed to upgrade an inbound connection (go's default accept timeout).
ACCEPT_UPGRADE_TIMEOUT = 15.0


def split_peer_id(maddr: Multiaddr) -> tuple[Multiaddr, PeerID | None]:
    """Split a trailing ``/p2p/<id>`` off ``maddr``."""
    items = list(maddr.items())
    if items and items[-1][0].name == "p2p":
        peer = PeerID.from_string(str(items[-1][1]))
        return maddr.decapsulate(Multiaddr(f"/p2p/{items[-1][1]}")), peer
    return maddr, None


class Swarm:
    """Listens, dials and keeps the connections of one peer identity."""

    def __init__(
        self,
        key: PrivateKey,
        *,
        transport: TcpTransport | None = None,
        yamux_config: YamuxConfig | None = None,
        dial_timeout: float = DIAL_UPGRADE_TIMEOUT,
        accept_timeout: float = ACCEPT_UPGRADE_TIMEOUT,
    ) -> None:
        self.key = key
        self.peer_id = PeerID.from_public_key(key.public_key)
        self.transport = transport or TcpTransport()
        self.yamux_config = yamux_config
        self.dial_timeout = dial_timeout
        self.accept_timeout = accept_timeout
        self._handlers: dict[str, StreamHandler] = {}
        self._connections: dict[PeerID, list[Connection]] = {}
        self._listeners: list[TcpListener] = []
        self._nursery: trio.Nursery | None = None
        self._stack = contextlib.AsyncExitStack()

    # -- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> Swarm:
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        try:
            return bool(await self._stack.__aexit__(exc_type, exc, tb))
        finally:
            self._nursery = None
            for listener in self._listeners:
                await self.transport.close_listener(listener)
            self._listeners.clear()

    @property
    def nursery(self) -> trio.Nursery:
        """The swarm's nursery (only inside ``async with``)."""
        if self._nursery is None:
            raise LocalUsageError("use the swarm inside 'async with'")
        return self._nursery

    async def aclose(self) -> None:
        """Close every connection and listener."""
        for conns in list(self._connections.values()):
            for conn in conns:
                await conn.aclose()
        self.nursery.cancel_scope.cancel()

    # -- handlers ------------------------------------------------------------------------

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve inbound streams of ``protocol`` with ``handler``."""
        self._handlers[protocol] = handler

    def remove_stream_handler(self, protocol: str) -> None:
        """Stop serving ``protocol``."""
        self._handlers.pop(protocol, None)

    @property
    def protocols(self) -> list[str]:
        """Protocols with a registered handler."""
        return list(self._handlers)

    # -- listening -----------------------------------------------------------------------

    async def listen(self, *maddrs: Multiaddr | str) -> list[Multiaddr]:
        """Listen on each address; return the bound addresses (real ports)."""
        bound = []
        for maddr in maddrs:
            listener = await self.transport.listen(Multiaddr(str(maddr)))
            self._listeners.append(listener)
            self.nursery.start_soon(self._accept_loop, listener)
            bound.append(listener.multiaddr)
        return bound

    @property
    def listen_addrs(self) -> list[Multiaddr]:
        """Addresses we listen on."""
        return [listener.multiaddr for listener in self._listeners]

    async def _accept_loop(self, listener: TcpListener) -> None:
        while True:
            try:
                raw = await listener.accept()
            except (TransportError, trio.ClosedResourceError):
                return
            self.nursery.start_soon(self._handle_inbound, raw)

    async def _handle_inbound(self, raw: trio.SocketStream) -> None:
        local = sockaddr_to_multiaddr(raw.socket.family, raw.socket.getsockname())
        remote = sockaddr_to_multiaddr(raw.socket.family, raw.socket.getpeername())
        try:
            with trio.fail_after(self.accept_timeout):
                conn = await self.upgrade_stream(
                    raw,
                    initiator=False,
                    direction=Direction.INBOUND,
                    local_addr=local,
                    remote_addr=remote,
                )
        except (Libp2pError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            logger.info("inbound connection from %s failed to upgrade: %s", remote, exc)
            await raw.aclose()
            return
        del conn

    # -- dialing -------------------------------------------------------------------------

    async def dial(self, maddr: Multiaddr | str, peer_id: PeerID | None = None) -> Connection:
        """Dial ``maddr`` and upgrade as initiator.

        A trailing ``/p2p/<id>`` (or ``peer_id``) is the identity the remote must prove.
        """
        addr, in_addr = split_peer_id(Multiaddr(str(maddr)))
        if peer_id is not None and in_addr is not None and peer_id != in_addr:
            raise LocalUsageError(f"{maddr} names {in_addr}, but {peer_id} was asked for")
        expected = peer_id or in_addr
        raw = await self.transport.dial(addr)
        local = sockaddr_to_multiaddr(raw.socket.family, raw.socket.getsockname())
        try:
            with trio.fail_after(self.dial_timeout):
                return await self.upgrade_stream(
                    raw,
                    initiator=True,
                    expected_peer=expected,
                    direction=Direction.OUTBOUND,
                    local_addr=local,
                    remote_addr=addr,
                )
        except BaseException:
            with trio.CancelScope(shield=True):
                await raw.aclose()
            raise

    async def upgrade_stream(
        self,
        raw: trio.abc.Stream,
        *,
        initiator: bool,
        direction: Direction,
        expected_peer: PeerID | None = None,
        local_addr: Multiaddr | None = None,
        remote_addr: Multiaddr | None = None,
    ) -> Connection:
        """Upgrade any byte stream with an explicit role and start the connection."""
        upgraded = await upgrade(
            raw,
            self.key,
            initiator=initiator,
            expected_peer=expected_peer,
            yamux_config=self.yamux_config,
        )
        conn = Connection(
            upgraded,
            direction=direction,
            local_addr=local_addr,
            remote_addr=remote_addr,
            handlers=self._handlers,
        )
        await self.nursery.start(self._run_connection, conn)
        return conn

    async def _run_connection(
        self, conn: Connection, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        peer_conns = self._connections.setdefault(conn.remote_peer, [])
        peer_conns.append(conn)
        try:
            await conn.run(task_status=task_status)
        finally:
            peer_conns.remove(conn)
            if not peer_conns and self._connections.get(conn.remote_peer) is peer_conns:
                del self._connections[conn.remote_peer]

    # -- connections and streams ----------------------------------------------------------

    def connections_to(self, peer: PeerID) -> list[Connection]:
        """Live connections to ``peer`` (oldest first)."""
        return list(self._connections.get(peer, ()))

    @property
    def connections(self) -> list[Connection]:
        """Every live connection."""
        return [c for conns in self._connections.values() for c in conns]

    async def new_stream(self, peer: PeerID, protocols: list[str] | str) -> NetStream:
        """Open a protocol stream on an existing connection to ``peer``."""
        conns = [c for c in self.connections_to(peer) if not c.is_closed]
        if not conns:
            raise LocalUsageError(f"no connection to {peer}")
        return await conns[-1].new_stream(protocols)
