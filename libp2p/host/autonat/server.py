"""The AutoNAT server's trio driver: read one ``DIAL``, decide, dial back, answer.

The stream handler (:meth:`AutoNATServer.handle`) reads one length-prefixed request of at
most 4 KiB; a longer one, a truncated one or a stalled one resets the stream. A request that
decodes but is not a well-formed ``DIAL`` is answered ``E_BAD_REQUEST``. The
:class:`~.policy.DialBackPolicy` decides the rest (relayed connections, peer ID, address
filtering, rate limits).

The dial-back runs on a **new connection from an ephemeral port**
(:meth:`Swarm.dial_isolated <libp2p.network.swarm.Swarm.dial_isolated>`): answering over
the existing connection, or from the shared listen port, could ride on a NAT mapping the
requester already has and falsely report it reachable. The connection is closed as soon as
the handshakes finish; the answer is ``OK`` with the address that worked, or
``E_DIAL_ERROR`` once ``dial_timeout`` has passed (go waits out the timeout on failure so that
the timing of the answer does not reveal why a port failed: no port scanning through us).

The handler is registered with ``allow_limited=True`` so that a request arriving over a
relayed, limited connection gets an explicit ``E_DIAL_REFUSED`` instead of a protocol
negotiation failure; relayed connections are never served.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import trio
from multiaddr import Multiaddr

from ...exceptions import Libp2pError
from ...io import BufferedStream
from ...network.connection import NetStream
from ...peer.id import PeerID
from .config import AutoNATServerConfig, AutoNATServerStats
from .policy import DialBackPolicy, Refuse
from .protocol import (
    PROTOCOL_ID,
    DialRequest,
    DialResponse,
    MalformedAutoNATMessage,
    ResponseStatus,
    encode_message,
    read_message,
)

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from ...network.connection import Connection, StreamHandler

__all__ = ["AutoNATServer", "AutoNATServerHost"]

logger = logging.getLogger(__name__)


class _Dialable(Protocol):
    def can_dial(self, maddr: Multiaddr) -> bool: ...


class _DialBack(Protocol):
    @property
    def transport(self) -> _Dialable: ...

    def dial_isolated(
        self, peer: PeerID, addrs: Sequence[Multiaddr]
    ) -> AbstractAsyncContextManager[Connection]: ...


class AutoNATServerHost(Protocol):
    """What the server needs of its host: a stream handler, and private dial-backs
    (:meth:`Swarm.dial_isolated <libp2p.network.swarm.Swarm.dial_isolated>`)."""

    @property
    def swarm(self) -> _DialBack: ...

    def set_stream_handler(
        self, protocol: str, handler: StreamHandler, *, allow_limited: bool = False
    ) -> None: ...


class AutoNATServer:
    """Serves ``/libp2p/autonat/1.0.0`` for a host (``HostConfig(autonat_server=...)``)."""

    def __init__(self, host: AutoNATServerHost, config: AutoNATServerConfig | None = None) -> None:
        self.host = host
        self.config = config or AutoNATServerConfig()
        #: The decision core (rate-limit windows included).
        self.policy = DialBackPolicy(self.config, can_dial=host.swarm.transport.can_dial)
        #: Counters of requests, answers and refusals.
        self.stats = AutoNATServerStats()

    def install(self) -> None:
        """Register the stream handler."""
        self.host.set_stream_handler(PROTOCOL_ID, self.handle, allow_limited=True)

    async def handle(self, stream: NetStream) -> None:
        """Serve one request on ``stream``."""
        reader = BufferedStream.wrap(stream)
        conn = stream.connection
        with trio.move_on_after(self.config.stream_timeout) as scope:
            try:
                msg = await read_message(reader)
            except MalformedAutoNATMessage as exc:
                logger.debug("bad AutoNAT request from %s: %s", conn.remote_peer, exc)
                await self._answer(reader, DialResponse(ResponseStatus.E_BAD_REQUEST, str(exc)))
                return
            self.stats.requests += 1
            if not isinstance(msg, DialRequest):
                response = DialResponse(ResponseStatus.E_BAD_REQUEST, "expected a DIAL message")
                await self._answer(reader, response)
                return
            decision = self.policy.decide(
                msg,
                remote_peer=conn.remote_peer,
                observed=conn.remote_addr,
                relayed=conn.relayed,
                limited=conn.limited,
                now=trio.current_time(),
            )
            if isinstance(decision, Refuse):
                self.stats.refused[decision.reason] += 1
                logger.debug(
                    "AutoNAT request from %s refused: %s", conn.remote_peer, decision.reason
                )
                await self._answer(reader, DialResponse(decision.status, decision.reason))
                return
            response = await self.dial_back(conn.remote_peer, decision.addrs)
            await self._answer(reader, response)
        if scope.cancelled_caught:
            logger.debug("AutoNAT request from %s timed out", conn.remote_peer)
            await stream.reset()

    async def dial_back(self, peer: PeerID, addrs: Sequence[Multiaddr]) -> DialResponse:
        """Dial ``peer`` at ``addrs`` on a new connection; the response to send."""
        self.stats.dialed.append(tuple(addrs))
        deadline = trio.current_time() + self.config.dial_timeout
        reached: Multiaddr | None = None
        failure = f"no connection within {self.config.dial_timeout} s"
        with trio.move_on_at(deadline):
            try:
                async with self.host.swarm.dial_isolated(peer, addrs) as dialed:
                    reached = dialed.remote_addr
            except Libp2pError as exc:
                failure = str(exc)
        if reached is not None:
            logger.debug("AutoNAT dial-back to %s reached %s", peer, reached)
            return DialResponse(ResponseStatus.OK, "", reached)
        logger.debug("AutoNAT dial-back to %s failed: %s", peer, failure)
        if self.config.hide_failure_timing:
            await trio.sleep_until(deadline)
        return DialResponse(ResponseStatus.E_DIAL_ERROR, "dial failed")

    async def _answer(self, reader: BufferedStream, response: DialResponse) -> None:
        self.stats.answered[response.status.name] += 1
        await reader.send_all(encode_message(response))
        await reader.aclose()
