"""The AutoNAT v2 client's trio driver: one check of our addresses with one server.

:meth:`AutoNATv2Client.check` opens ``/libp2p/autonat/2/dial-request`` to the server (over a
direct, unlimited connection), registers a fresh random 64-bit nonce, sends the
``DialRequest``, pays the dial data if asked (within the cap: otherwise it resets the
stream, which the spec defines as declining), and reads the ``DialResponse``. Meanwhile the
dial-back handler (:meth:`AutoNATv2Client.handle_dial_back`, installed on the host) answers
``/libp2p/autonat/2/dial-back`` streams: it reads the ``DialBack``, matches its nonce -- never
the peer ID, since servers dial back from another identity -- against the checks in
progress, notes the connection it came on, and acknowledges with ``DialBackResponse``. A
nonce nobody waits for gets the stream reset. :func:`~.client_core.interpret` then judges.

The request goes over a connection we dialed when there is one: a server that dials back
with the identity we know it by (js does) adds a newer inbound connection, which it closes
right after the nonce. A long address list is cut to the longest prefix whose request fits in
4096 bytes (rust-libp2p servers read at most 4104).

The client keeps no state between checks and schedules nothing: deciding whom to ask, how
often, and what the answers add up to is the host's reachability logic. A check never raises
for what a server does: every failure is an :class:`~.client_core.AddressCheck` with
outcome ``ERROR`` and a detail; only misuse (no address at all) raises
:class:`~libp2p.exceptions.LocalUsageError`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio
from multiaddr import Multiaddr

from ....exceptions import ConnectionClosedError, Libp2pError, LocalUsageError, UnexpectedEOF
from ....io import BufferedStream
from ....network.connection import Direction
from ....peer.id import PeerID
from .client_core import (
    AddressCheck,
    CheckOutcome,
    DialBackSeen,
    dial_data_chunks,
    dial_data_decision,
    interpret,
)
from .config import AutoNATv2ClientConfig
from .protocol import (
    DIAL_BACK_PROTOCOL,
    DIAL_REQUEST_PROTOCOL,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    DialStatus,
    MalformedAutoNATv2Message,
    ResponseStatus,
    encode_dial_back_response,
    encode_message,
    read_dial_back,
    read_message,
)

if TYPE_CHECKING:
    from ....network.connection import Connection, NetStream, StreamHandler

__all__ = ["AutoNATv2Client", "AutoNATv2ClientHost"]

logger = logging.getLogger(__name__)

#: Largest ``DialRequest`` we send, length prefix included (rust-libp2p reads at most 4104).
MAX_REQUEST_SENT = 4096


class _ProtocolBook(Protocol):
    def supports(self, peer: PeerID, protocol: str) -> bool: ...


class AutoNATv2ClientHost(Protocol):
    """What the client needs of its host: connections, streams, the peers' protocols."""

    @property
    def connections(self) -> list[Connection]: ...
    @property
    def peerstore(self) -> _ProtocolBook: ...

    def connections_to(self, peer: PeerID) -> list[Connection]: ...

    def set_stream_handler(
        self, protocol: str, handler: StreamHandler, *, allow_limited: bool = False
    ) -> None: ...

    async def new_stream(
        self, peer: PeerID, protocols: Sequence[str] | str, *, allow_limited: bool = False
    ) -> NetStream: ...


@dataclass(slots=True)
class _Pending:
    """A check waiting for its nonce."""

    request_conn: Connection | None = None
    seen: DialBackSeen | None = None
    arrived: trio.Event = field(default_factory=trio.Event)


class AutoNATv2Client:
    """Checks single addresses of ours with AutoNAT v2 servers (``host.autonat_v2``)."""

    def __init__(
        self, host: AutoNATv2ClientHost, config: AutoNATv2ClientConfig | None = None
    ) -> None:
        self.host = host
        self.config = config or AutoNATv2ClientConfig()
        if not 0 < self.config.dial_data_chunk <= 4096:
            raise LocalUsageError("dial_data_chunk must be in 1..4096")
        self._pending: dict[int, _Pending] = {}

    def install(self) -> None:
        """Register the dial-back handler (direct connections only)."""
        self.host.set_stream_handler(DIAL_BACK_PROTOCOL, self.handle_dial_back)

    def servers(self) -> list[PeerID]:
        """Connected peers that serve ``/libp2p/autonat/2/dial-request`` (per identify) over
        a direct, unlimited connection."""
        out: list[PeerID] = []
        for conn in self.host.connections:
            peer = conn.remote_peer
            if conn.relayed or conn.limited or conn.is_closed or peer in out:
                continue
            if self.host.peerstore.supports(peer, DIAL_REQUEST_PROTOCOL):
                out.append(peer)
        return out

    # -- the check --------------------------------------------------------------------------

    async def check(self, server: PeerID, addrs: Sequence[Multiaddr]) -> AddressCheck:
        """Ask ``server`` to dial the first of ``addrs`` (in priority order) it can.

        Returns an :class:`~.client_core.AddressCheck`; never raises for what the server
        does or fails to do (those are ``ERROR`` outcomes with a detail). Bounded by
        ``config.timeout``.
        """
        asked = tuple(Multiaddr(str(a)) for a in addrs)
        if not asked:
            raise LocalUsageError("check() needs at least one address")
        # rust-libp2p's servers read requests of at most 4104 bytes: keep the longest prefix
        # of the list that fits (the server takes the first address it can dial anyway).
        while len(asked) > 1 and len(encode_message(DialRequest(asked, 0))) > MAX_REQUEST_SENT:
            asked = asked[:-1]
        start = trio.current_time()
        nonce = secrets.randbits(64)
        while nonce in self._pending:  # pragma: no cover - 2**-64
            nonce = secrets.randbits(64)
        pending = _Pending()
        self._pending[nonce] = pending
        paid = 0
        chosen: Multiaddr | None = None

        def result(outcome: CheckOutcome, verified: bool, detail: str) -> AddressCheck:
            check = AddressCheck(
                server, chosen, outcome, verified, paid, detail, trio.current_time() - start
            )
            logger.debug("AutoNAT v2 check with %s: %s", server, check)
            return check

        try:
            with trio.move_on_after(self.config.timeout) as scope:
                try:
                    stream = await self._open_request(server)
                except Libp2pError as exc:
                    return result(CheckOutcome.ERROR, False, f"no stream: {exc}")
                pending.request_conn = stream.connection
                reader = BufferedStream.wrap(stream)
                try:
                    await reader.send_all(encode_message(DialRequest(asked, nonce)))
                    msg = await read_message(reader)
                    if isinstance(msg, DialDataRequest):
                        declined = dial_data_decision(
                            msg, asked, max_dial_data=self.config.max_dial_data
                        )
                        if declined is not None:
                            chosen = asked[msg.addr_idx] if msg.addr_idx < len(asked) else None
                            await _reset(stream)
                            return result(CheckOutcome.ERROR, False, f"declined: {declined}")
                        chunk = bytes(self.config.dial_data_chunk)
                        for size in dial_data_chunks(msg.num_bytes, self.config.dial_data_chunk):
                            await reader.send_all(encode_message(DialDataResponse(chunk[:size])))
                            paid += size
                        msg = await read_message(reader)
                    if not isinstance(msg, DialResponse):
                        raise MalformedAutoNATv2Message(
                            f"expected a DialResponse, got {type(msg).__name__}"
                        )
                except UnexpectedEOF:
                    await _reset(stream)
                    return result(CheckOutcome.ERROR, False, "server closed without a response")
                except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    await _reset(stream)
                    return result(CheckOutcome.ERROR, False, f"{type(exc).__name__}: {exc}")
                await reader.aclose()
                if msg.status is ResponseStatus.OK and msg.dial_status is DialStatus.OK:
                    # The server answers after its dial-back; our handler may still be
                    # reading the nonce.
                    with trio.move_on_after(self.config.dial_back_grace):
                        await pending.arrived.wait()
                outcome, chosen, verified, detail = interpret(msg, asked, pending.seen)
                return result(outcome, verified, detail)
            assert scope.cancelled_caught
            return result(CheckOutcome.ERROR, False, f"no answer within {self.config.timeout} s")
        finally:
            del self._pending[nonce]

    async def _open_request(self, server: PeerID) -> NetStream:
        # Prefer a connection we dialed, newest first: a server that dials back with its own
        # identity (js does) leaves an inbound connection that it closes right after the
        # nonce -- the newest, so the host's choice, and possibly still closing.
        conns = [
            c
            for c in self.host.connections_to(server)
            if not (c.is_closed or c.relayed or c.limited)
        ]
        conns.sort(key=lambda c: (c.direction is not Direction.OUTBOUND, -c.opened_at))
        lazy = self.host.peerstore.supports(server, DIAL_REQUEST_PROTOCOL)
        for conn in conns:
            try:
                return await conn.new_stream([DIAL_REQUEST_PROTOCOL], lazy=lazy)
            except ConnectionClosedError:
                continue  # it ended meanwhile: try the next one
        return await self.host.new_stream(server, DIAL_REQUEST_PROTOCOL)

    # -- the dial-back side -------------------------------------------------------------------

    async def handle_dial_back(self, stream: NetStream) -> None:
        """Serve one ``/libp2p/autonat/2/dial-back`` stream (see the module docs)."""
        reader = BufferedStream.wrap(stream)
        conn = stream.connection
        with trio.move_on_after(self.config.dial_back_grace) as scope:
            try:
                msg = await read_dial_back(reader)
            except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                logger.debug("bad AutoNAT v2 dial-back from %s: %s", conn.remote_peer, exc)
                await _reset(stream)
                return
            pending = self._pending.get(msg.nonce)
            if pending is None or pending.seen is not None:
                logger.debug(
                    "AutoNAT v2 dial-back from %s with a nonce no check waits for",
                    conn.remote_peer,
                )
                await _reset(stream)
                return
            fresh = (
                conn.direction is Direction.INBOUND
                and not conn.relayed
                and conn is not pending.request_conn
            )
            pending.seen = DialBackSeen(conn.local_addr, conn.remote_peer, fresh)
            pending.arrived.set()
            try:
                await reader.send_all(encode_dial_back_response())
                await reader.aclose()
            except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError):
                await _reset(stream)
        if scope.cancelled_caught:
            await _reset(stream)


async def _reset(stream: NetStream) -> None:
    with trio.CancelScope(shield=True):
        await stream.reset()
