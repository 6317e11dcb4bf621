"""The swarm: listeners, dials and live connections of one local peer.

The swarm owns a nursery (open it with ``async with``); every listener's accept loop and every
connection runs inside it, so leaving the block closes everything. It knows nothing about
identify, peer stores or NAT traversal: the host builds those on top. What it guarantees:

* inbound connections are upgraded as responder, outbound ones as initiator, each within a
  time limit, and a failed upgrade costs only that connection;
* :meth:`Swarm.upgrade_stream` runs the same pipeline over any trio stream with an explicit role
  (a relayed pipe, or a hole-punched socket whose role DCUtR decided);
* protocol handlers are looked up when a stream arrives, so handlers may be added at any time;
* concurrent dials to the same peer are merged into one (:meth:`Swarm.dial_peer`);
* inbound connections beyond a cap are refused before any handshake work;
* every connection that opens or closes is told, reliably and in order, to the observers
  registered with :meth:`Swarm.observe` (the host's services), and then published on
  :attr:`Swarm.events` for applications.

Why two channels: the public :class:`~libp2p.events.EventBus` never blocks the host, so a
subscriber that falls behind loses events. That is acceptable for an application's log, not for
the host's own services: a lost "opened" would mean no hole punch, a lost "closed" a relay slot
never released. Observers are plain synchronous callbacks, called for every connection before the
public event; they must not block (a service that has async work to do starts a task).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from types import TracebackType
from typing import Protocol

import trio
from multiaddr import Multiaddr

from ..crypto.keys import PrivateKey
from ..events import ConnectionClosed, ConnectionOpened, EventBus
from ..exceptions import (
    ConnectionBrokenError,
    ConnectionClosedError,
    Libp2pError,
    LocalUsageError,
    RemoteProtocolError,
    TransportError,
)
from ..multistream import RoleRule
from ..peer.id import PeerID
from ..stream_muxer.yamux import YamuxConfig
from ..transport.tcp import TcpListener, TcpStream, TcpTransport
from .addrs import is_circuit_addr, split_peer_id
from .connection import Connection, ConnectionLimit, Direction, NetStream, StreamHandler
from .resolve import resolve
from .upgrader import upgrade

__all__ = ["CircuitDialer", "ConnectionObserver", "Swarm"]

logger = logging.getLogger(__name__)

#: Time allowed to upgrade an outbound connection (go's default negotiate timeout).
DIAL_UPGRADE_TIMEOUT = 60.0
#: Time allowed to upgrade an inbound connection (go's default accept timeout).
ACCEPT_UPGRADE_TIMEOUT = 15.0
#: Inbound connections (established or upgrading) beyond which new ones are refused.
MAX_INBOUND_CONNECTIONS = 512
#: Pause before accepting again after the listener itself failed (e.g. EMFILE).
_ACCEPT_RETRY_DELAY = 0.1


class _PendingDial:
    """One dial to a peer that any number of callers wait on."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Connection | None = None
        self.error: BaseException | None = None


#: Dials a ``…/p2p/<relay>/p2p-circuit`` address to the given peer (the relay transport).
CircuitDialer = Callable[[Multiaddr, PeerID | None], Awaitable[Connection]]


class ConnectionObserver(Protocol):
    """Told of every connection that opens and closes (see :meth:`Swarm.observe`).

    Both methods are called synchronously from the connection's task and must not block.
    ``connection_closed`` is called exactly once for every connection that was reported open.
    """

    def connection_opened(self, conn: Connection) -> None:
        """``conn`` finished upgrading and is ready for streams."""

    def connection_closed(self, conn: Connection) -> None:
        """``conn`` ended (either side closed it, or it failed)."""


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
        max_inbound_connections: int = MAX_INBOUND_CONNECTIONS,
        events: EventBus | None = None,
    ) -> None:
        self.key = key
        self.peer_id = PeerID.from_public_key(key.public_key)
        self.transport = transport or TcpTransport()
        self.yamux_config = yamux_config
        self.dial_timeout = dial_timeout
        self.accept_timeout = accept_timeout
        self.max_inbound_connections = max_inbound_connections
        #: Connection events (:class:`~libp2p.events.ConnectionOpened` / ``ConnectionClosed``).
        self.events = events if events is not None else EventBus()
        self._inbound = 0
        self._pending: dict[PeerID, _PendingDial] = {}
        self._handlers: dict[str, StreamHandler] = {}
        self._limited_ok: set[str] = set()
        self._background: set[str] = set()
        #: Dials ``/p2p-circuit`` addresses; installed by the relay client of the host.
        self.circuit_dialer: CircuitDialer | None = None
        self._connections: dict[PeerID, list[Connection]] = {}
        self._observers: list[ConnectionObserver] = []
        self._claims: dict[Multiaddr, Callable[[TcpStream], Awaitable[None]]] = {}
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
        body_error_alone = False
        try:
            return bool(await self._stack.__aexit__(exc_type, exc, tb))
        except BaseExceptionGroup as group:
            # trio wraps the body's exception in a group with the nursery's own. When nothing
            # else went wrong, the caller gets its exception back as itself, so that
            # `except ValueError` around `async with Host()` works.
            if exc is None or not _only(group, exc):
                raise
            body_error_alone = True
        finally:
            self._nursery = None
            for listener in self._listeners:
                await self.transport.close_listener(listener)
            self._listeners.clear()
        assert body_error_alone
        assert exc is not None
        raise exc

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

    # -- observers -----------------------------------------------------------------------

    def observe(self, observer: ConnectionObserver) -> None:
        """Tell ``observer`` of every connection that opens or closes from now on.

        Unlike :attr:`events`, nothing is ever dropped: this is how the host's services learn
        of connections. Connections already open are not replayed (see :attr:`connections`).
        """
        self._observers.append(observer)

    def unobserve(self, observer: ConnectionObserver) -> None:
        """Stop telling ``observer`` of connections."""
        if observer in self._observers:
            self._observers.remove(observer)

    # -- handlers ------------------------------------------------------------------------

    def set_stream_handler(
        self, protocol: str, handler: StreamHandler, *, allow_limited: bool = False
    ) -> None:
        """Serve inbound streams of ``protocol`` with ``handler``.

        ``allow_limited`` also serves it on relay-limited connections.
        """
        self._handlers[protocol] = handler
        if allow_limited:
            self._limited_ok.add(protocol)
        else:
            self._limited_ok.discard(protocol)

    def remove_stream_handler(self, protocol: str) -> None:
        """Stop serving ``protocol``."""
        self._handlers.pop(protocol, None)
        self._limited_ok.discard(protocol)

    @property
    def protocols(self) -> list[str]:
        """Protocols with a registered handler."""
        return list(self._handlers)

    def set_background(self, protocol: str, background: bool = True) -> None:
        """Mark ``protocol`` as housekeeping (or not, with ``background=False``).

        Streams of a background protocol, in either direction, do not count as activity on
        their connection: they never hold open a connection that waits to close when idle
        (:meth:`Connection.close_when_idle
        <libp2p.network.connection.Connection.close_when_idle>`, which DCUtR uses for a
        relayed connection it has replaced). The host marks identify, identify-push, ping,
        DCUtR and AutoNAT; an application may mark its own heartbeat-like protocols.
        """
        if background:
            self._background.add(protocol)
        else:
            self._background.discard(protocol)

    @property
    def background_protocols(self) -> frozenset[str]:
        """Protocols marked with :meth:`set_background`."""
        return frozenset(self._background)

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
            except ConnectionBrokenError as exc:
                logger.debug("an inbound connection failed as it opened: %s", exc)
                continue
            except TransportError as exc:
                # Out of file descriptors, most likely: keep listening, but give connections
                # time to close before trying again.
                logger.warning("%s; accepting again in %.1f s", exc, _ACCEPT_RETRY_DELAY)
                await trio.sleep(_ACCEPT_RETRY_DELAY)
                continue
            except trio.ClosedResourceError:
                return
            if self._inbound >= self.max_inbound_connections:
                logger.warning(
                    "refusing an inbound connection: %d inbound connections already",
                    self._inbound,
                )
                await trio.aclose_forcefully(raw)
                continue
            self.nursery.start_soon(self._handle_inbound, raw)

    async def _handle_inbound(self, raw: TcpStream) -> None:
        self._inbound += 1
        try:
            await self._upgrade_inbound(raw)
        finally:
            self._inbound -= 1

    @contextlib.contextmanager
    def claim_inbound(
        self, sources: Sequence[Multiaddr], handler: Callable[[TcpStream], Awaitable[None]]
    ) -> Iterator[None]:
        """For the duration of the block, inbound connections from ``sources`` (``/ip4|ip6/
        <ip>/tcp/<port>``) are handed to ``handler`` instead of being upgraded as responder.

        For hole punching: a punch from the peer that reaches our listener is the punched
        connection, whose roles DCUtR decides (we may have to initiate on it).
        """
        claimed = [a for a in sources if a not in self._claims]
        for addr in claimed:
            self._claims[addr] = handler
        try:
            yield
        finally:
            for addr in claimed:
                self._claims.pop(addr, None)

    async def _upgrade_inbound(self, raw: TcpStream) -> None:
        claim = self._claims.get(raw.remote_addr)
        if claim is not None:
            await claim(raw)
            return
        try:
            with trio.fail_after(self.accept_timeout):
                conn = await self.upgrade_stream(
                    raw,
                    initiator=False,
                    direction=Direction.INBOUND,
                    local_addr=raw.local_addr,
                    remote_addr=raw.remote_addr,
                )
        except (Libp2pError, trio.TooSlowError) as exc:
            logger.info("inbound connection from %s failed to upgrade: %s", raw.remote_addr, exc)
            await trio.aclose_forcefully(raw)
            return
        except BaseException:
            await trio.aclose_forcefully(raw)
            raise
        await conn.wait_closed()

    # -- dialing -------------------------------------------------------------------------

    async def dial(self, maddr: Multiaddr | str, peer_id: PeerID | None = None) -> Connection:
        """Dial ``maddr`` and upgrade as initiator.

        A trailing ``/p2p/<id>`` (or ``peer_id``) is the identity the remote must prove.
        A ``…/p2p/<relay>/p2p-circuit`` address is dialed through that relay.
        """
        addr, in_addr = split_peer_id(Multiaddr(str(maddr)))
        if peer_id is not None and in_addr is not None and peer_id != in_addr:
            raise LocalUsageError(f"{maddr} names {in_addr}, but {peer_id} was asked for")
        expected = peer_id or in_addr
        if is_circuit_addr(addr):
            if self.circuit_dialer is None:
                raise LocalUsageError(f"cannot dial {maddr}: no relay transport is installed")
            return await self.circuit_dialer(addr, expected)
        errors: list[str] = []
        for ip_addr in await resolve(addr):
            try:
                raw = await self.transport.dial(ip_addr)
            except TransportError as exc:
                errors.append(str(exc))
                continue
            try:
                with trio.fail_after(self.dial_timeout):
                    return await self.upgrade_stream(
                        raw,
                        initiator=True,
                        expected_peer=expected,
                        direction=Direction.OUTBOUND,
                        local_addr=raw.local_addr,
                        remote_addr=ip_addr,
                    )
            except trio.TooSlowError:
                await trio.aclose_forcefully(raw)
                raise TransportError(
                    f"dial {ip_addr}: the handshakes did not finish within {self.dial_timeout} s"
                ) from None
            except BaseException:
                await trio.aclose_forcefully(raw)
                raise
        raise TransportError("; ".join(errors) or f"no address to dial in {maddr}")

    @contextlib.asynccontextmanager
    async def dial_isolated(
        self, peer: PeerID, addrs: Sequence[Multiaddr], *, key: PrivateKey | None = None
    ) -> AsyncIterator[Connection]:
        """A new, private connection to ``peer``, closed when the block exits.

        For AutoNAT dial-backs, which must prove that a *new* connection can reach the peer:
        it leaves from an ephemeral port (never the listen port, whose NAT mapping or 4-tuple
        the peer may already have), it is never an existing connection, and it is not
        registered -- no other stream uses it and no connection events are published.
        ``addrs`` (TCP, each with the peer's ``/p2p/<id>`` or none) are dialed concurrently;
        the first to finish the handshakes wins. Raises the failure (a
        :class:`TransportError` naming every address when several failed) if none does.
        Bound the whole attempt with a cancel scope around the block.

        ``key`` authenticates the connection with another identity than ours (AutoNAT v2
        dials back from a throwaway identity, so the peer cannot mistake the dial-back for a
        connection it already has with us); such a connection serves none of our protocols.
        """
        if not addrs:
            raise LocalUsageError(f"no address to dial {peer} at")
        winner: Connection | None = None
        errors: list[tuple[Multiaddr, BaseException]] = []

        async def attempt(addr: Multiaddr, race: trio.Nursery) -> None:
            nonlocal winner
            plain, _ = split_peer_id(addr)
            try:
                raw = await self.transport.dial_ephemeral(plain)
            except (TransportError, LocalUsageError) as exc:
                errors.append((addr, exc))
                return
            try:
                with trio.fail_after(self.dial_timeout):
                    upgraded = await upgrade(
                        raw,
                        key if key is not None else self.key,
                        initiator=True,
                        expected_peer=peer,
                        yamux_config=self.yamux_config,
                    )
            except Libp2pError as exc:
                errors.append((addr, exc))
                await trio.aclose_forcefully(raw)
                return
            except trio.TooSlowError:
                # Typed, as dial() says it: the caller sees a TransportError either way.
                timeout = TransportError(
                    f"dial {plain}: the handshakes did not finish within {self.dial_timeout} s"
                )
                errors.append((addr, timeout))
                await trio.aclose_forcefully(raw)
                return
            except BaseException:
                await trio.aclose_forcefully(raw)
                raise
            if winner is not None:
                await trio.aclose_forcefully(raw)
                return
            winner = Connection(
                upgraded,
                direction=Direction.OUTBOUND,
                local_addr=raw.local_addr,
                remote_addr=plain,
                handlers=self._handlers if key is None else {},
                limited_protocols=self._limited_ok,
                background_protocols=self._background,
            )
            race.cancel_scope.cancel()

        async with trio.open_nursery() as race:
            for addr in addrs:
                race.start_soon(attempt, addr, race)
        if winner is None:
            if len(errors) == 1:
                raise errors[0][1]
            detail = "; ".join(f"{addr}: {exc}" for addr, exc in errors)
            raise TransportError(f"could not connect to {peer}: {detail}")
        conn: Connection = winner
        await self.nursery.start(conn.run)
        try:
            yield conn
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()
                await conn.wait_closed()

    async def dial_peer(self, peer: PeerID, addrs: list[Multiaddr]) -> Connection:
        """Return a connection to ``peer``, dialing ``addrs`` in order if there is none.

        Concurrent calls for the same peer share one dial. An existing direct connection is
        reused; a relayed one is not enough when direct addresses are given. Direct addresses
        are tried before relayed (``/p2p-circuit``) ones.
        """
        existing = self.best_connection(peer)
        if existing is not None and (
            not existing.relayed or all(is_circuit_addr(a) for a in addrs)
        ):
            return existing
        pending = self._pending.get(peer)
        if pending is None:
            if not addrs:
                raise LocalUsageError(f"no connection to {peer} and no address to dial")
            ordered = sorted(addrs, key=is_circuit_addr)
            pending = self._pending[peer] = _PendingDial()
            self.nursery.start_soon(self._run_dial, peer, ordered, pending)
        await pending.done.wait()
        if pending.result is None:
            assert pending.error is not None  # _run_dial always sets one of the two
            raise pending.error
        return pending.result

    async def _run_dial(self, peer: PeerID, addrs: list[Multiaddr], pending: _PendingDial) -> None:
        # This task dials on behalf of its callers: whatever ends the dial (short of the
        # host's own cancellation) is theirs to see, never an error of the swarm's nursery.
        errors: list[BaseException] = []
        try:
            for addr in addrs:
                try:
                    pending.result = await self.dial(addr, peer)
                    return
                except Libp2pError as exc:
                    errors.append(exc)
                except Exception as exc:
                    logger.exception("dialing %s at %s failed unexpectedly", peer, addr)
                    errors.append(exc)
            pending.error = _dial_failure(peer, addrs, errors)
        finally:
            del self._pending[peer]
            if pending.result is None and pending.error is None:
                pending.error = ConnectionClosedError(f"the dial to {peer} was cancelled")
            pending.done.set()

    async def upgrade_stream(
        self,
        raw: trio.abc.Stream,
        *,
        initiator: bool,
        direction: Direction,
        expected_peer: PeerID | None = None,
        local_addr: Multiaddr | None = None,
        remote_addr: Multiaddr | None = None,
        relayed: bool = False,
        limit: ConnectionLimit | None = None,
        role_rule: RoleRule | None = None,
        role_patience: float = 0.0,
    ) -> Connection:
        """Upgrade any byte stream with an explicit role and start the connection.

        ``relayed`` and ``limit`` describe a connection through a relay (``limit`` being what
        the relay announced, which makes the connection :attr:`~Connection.limited`).

        ``role_rule`` (a hole-punched connection): the role is not fixed by ``initiator``
        but settled with the peer as the rule says, waiting up to ``role_patience`` where
        it does (see :func:`~libp2p.network.upgrader.upgrade`);
        :attr:`Connection.is_initiator` tells the outcome.
        """
        upgraded = await upgrade(
            raw,
            self.key,
            initiator=initiator,
            expected_peer=expected_peer,
            yamux_config=self.yamux_config,
            role_rule=role_rule,
            role_patience=role_patience,
        )
        conn = Connection(
            upgraded,
            direction=direction,
            local_addr=local_addr,
            remote_addr=remote_addr,
            handlers=self._handlers,
            relayed=relayed,
            limit=limit,
            limited_protocols=self._limited_ok,
            background_protocols=self._background,
        )
        await self.nursery.start(self._run_connection, conn)
        return conn

    async def _run_connection(
        self, conn: Connection, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        peer_conns = self._connections.setdefault(conn.remote_peer, [])
        peer_conns.append(conn)
        info = (conn.remote_peer, conn.direction, conn.remote_addr, conn.relayed, conn.limited)

        was_opened = False

        def opened() -> None:
            nonlocal was_opened
            was_opened = True
            task_status.started()
            for observer in list(self._observers):
                observer.connection_opened(conn)
            self.events.publish(ConnectionOpened(conn, *info))

        try:
            await conn.run(task_status=_Started(opened))
        finally:
            peer_conns.remove(conn)
            if not peer_conns and self._connections.get(conn.remote_peer) is peer_conns:
                del self._connections[conn.remote_peer]
            if was_opened:
                for observer in list(self._observers):
                    observer.connection_closed(conn)
                duration = trio.current_time() - conn.opened_at
                self.events.publish(ConnectionClosed(conn, *info, duration=duration))

    # -- connections and streams ----------------------------------------------------------

    def connections_to(self, peer: PeerID) -> list[Connection]:
        """Live connections to ``peer`` (oldest first)."""
        return [c for c in self._connections.get(peer, ()) if not c.is_closed]

    @property
    def connections(self) -> list[Connection]:
        """Every live connection."""
        return [c for conns in self._connections.values() for c in conns if not c.is_closed]

    def best_connection(self, peer: PeerID) -> Connection | None:
        """The connection new streams to ``peer`` should use: direct before relayed or
        limited, then the newest."""
        conns = [c for c in self._connections.get(peer, ()) if not c.is_closed]
        if not conns:
            return None
        return max(conns, key=lambda c: (not c.limited, not c.relayed, c.opened_at))

    async def new_stream(
        self, peer: PeerID, protocols: list[str] | str, *, allow_limited: bool = False
    ) -> NetStream:
        """Open a protocol stream on the best existing connection to ``peer``."""
        conn = self.best_connection(peer)
        if conn is None:
            raise LocalUsageError(f"no connection to {peer}")
        return await conn.new_stream(protocols, allow_limited=allow_limited)


def _dial_failure(
    peer: PeerID, addrs: list[Multiaddr], errors: list[BaseException]
) -> BaseException:
    """The error to report when every address failed: it must still say whose fault it is.

    A single failure is reported as it was (a ``PeerIDMismatch`` stays one); with several,
    a remote's protocol failure outranks network failures, and otherwise a
    :class:`TransportError` lists every address with its reason.
    """
    if len(errors) == 1:
        return errors[0]
    for exc in errors:
        if isinstance(exc, RemoteProtocolError):
            return exc
    detail = "; ".join(f"{addr}: {exc}" for addr, exc in zip(addrs, errors, strict=False))
    return TransportError(f"could not connect to {peer}: {detail}")


def _only(group: BaseExceptionGroup[BaseException], exc: BaseException) -> bool:
    """True when every exception in ``group`` is ``exc`` itself or a cancellation."""
    for leaf in group.exceptions:
        if isinstance(leaf, BaseExceptionGroup):
            if not _only(leaf, exc):
                return False
        elif leaf is not exc and not isinstance(leaf, trio.Cancelled):
            return False
    return True


class _Started:
    """A task-status object that runs a callback when the task reports it has started."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def started(self, value: object = None) -> None:
        self._callback()
