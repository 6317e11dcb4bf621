"""The AutoNAT v2 server's trio driver: admit, read, choose, charge, dial back, answer.

One ``/libp2p/autonat/2/dial-request`` stream is one request. The
:class:`~.server_policy.DialRequestPolicy` decides; this driver does the I/O:

1. admission before reading (rate limits, relayed connections): ``E_REQUEST_REJECTED``;
2. read the ``DialRequest`` (at most 8 KiB; anything else, malformed, or nothing within
   ``stream_timeout``: the stream is reset, as go does -- no answer to a peer that does not
   speak the protocol);
3. choose the address; none: ``E_DIAL_REFUSED``;
4. if the chosen address's IP is not the observed one: ``DialDataRequest``, then count the
   ``DialDataResponse`` chunks (:class:`~.server_policy.DialDataCounter`); a reset, a
   stall, another message or an invalid chunk aborts the request without an answer; then
   wait a random time up to ``dial_data_wait``;
5. dial back and answer ``OK`` with the dial status.

**The dial-back is a new connection from a throwaway identity.** It must prove that a
connection *to the address* works, so it can never be an existing connection to the client,
and it leaves from an ephemeral port (never our listen port, whose mapping the client's NAT
may already hold: the spec's advice against accidental hole punches).
:meth:`Swarm.dial_isolated <libp2p.network.swarm.Swarm.dial_isolated>` does both. We
authenticate it with a key generated for this server, not with the host's: a client
(go's and js's swarms, or ours) that receives a second connection from a peer it is
already connected to may merge or prefer connections by peer, and could then answer the
nonce on the old one; from an unknown peer ID the dial-back can only be that connection.
go-libp2p does the same with a separate dialer host; the spec tells clients to match
dial-backs by nonce, not by peer ID. The connection serves none of our protocols and is
closed as soon as the nonce exchange ends.

On the dial-back stream we send ``DialBack{nonce}``, half-close, and wait (at most
``dial_back_stream_timeout``) for the client's ``DialBackResponse{OK}``: ``OK`` only once the
client acknowledged; connected but no acknowledgement: ``E_DIAL_BACK_ERROR``; no
connection: ``E_DIAL_ERROR``.

The handler is registered with ``allow_limited=True`` so that a request over a relayed,
limited connection gets an explicit ``E_REQUEST_REJECTED`` instead of a negotiation failure.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import trio
from multiaddr import Multiaddr

from ....crypto.keys import PrivateKey, generate_ed25519
from ....exceptions import Libp2pError
from ....io import BufferedStream
from ....peer.id import PeerID
from .config import AutoNATv2ServerConfig, AutoNATv2ServerStats
from .protocol import (
    DIAL_BACK_PROTOCOL,
    DIAL_REQUEST_PROTOCOL,
    DialBack,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    DialStatus,
    MalformedAutoNATv2Message,
    ResponseStatus,
    encode_dial_back,
    encode_message,
    read_dial_back_response,
    read_message,
)
from .server_policy import DialDataCounter, DialRequestPolicy, Reject

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from ....network.connection import Connection, NetStream, StreamHandler

__all__ = ["AutoNATv2Server", "AutoNATv2ServerHost"]

logger = logging.getLogger(__name__)


class _Dialable(Protocol):
    def can_dial(self, maddr: Multiaddr) -> bool: ...


class _DialBack(Protocol):
    @property
    def transport(self) -> _Dialable: ...

    def dial_isolated(
        self, peer: PeerID, addrs: Sequence[Multiaddr], *, key: PrivateKey | None = None
    ) -> AbstractAsyncContextManager[Connection]: ...


class AutoNATv2ServerHost(Protocol):
    """What the server needs of its host: a stream handler and private dial-backs."""

    @property
    def swarm(self) -> _DialBack: ...

    def set_stream_handler(
        self, protocol: str, handler: StreamHandler, *, allow_limited: bool = False
    ) -> None: ...


class _Aborted(Exception):
    """The request ends without an answer (the stream is reset)."""


class AutoNATv2Server:
    """Serves ``/libp2p/autonat/2/dial-request`` (``HostConfig(autonat_v2_server=...)``)."""

    def __init__(
        self,
        host: AutoNATv2ServerHost,
        config: AutoNATv2ServerConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.config = config or AutoNATv2ServerConfig()
        self._rng = rng or random.SystemRandom()
        #: The decision core (rate-limit windows included).
        self.policy = DialRequestPolicy(
            self.config, can_dial=host.swarm.transport.can_dial, rng=self._rng
        )
        #: Counters of requests, answers, dial-backs and aborts.
        self.stats = AutoNATv2ServerStats()
        #: The identity dial-backs are authenticated with (not the host's; see module docs).
        self.dial_back_key: PrivateKey = generate_ed25519()

    @property
    def dial_back_peer_id(self) -> PeerID:
        """The peer ID clients see on our dial-backs."""
        return PeerID.from_public_key(self.dial_back_key.public_key)

    def install(self) -> None:
        """Register the stream handler."""
        self.host.set_stream_handler(DIAL_REQUEST_PROTOCOL, self.handle, allow_limited=True)

    async def handle(self, stream: NetStream) -> None:
        """Serve one request on ``stream``."""
        conn = stream.connection
        peer = conn.remote_peer
        reader = BufferedStream.wrap(stream)
        self.stats.requests += 1
        rejected = self.policy.admit(
            peer, relayed=conn.relayed, limited=conn.limited, now=trio.current_time()
        )
        if rejected is not None:
            await self._refuse(reader, stream, peer, rejected)
            return
        try:
            with trio.move_on_after(self.config.stream_timeout) as scope:
                try:
                    await self._serve(reader, stream, conn)
                except _Aborted as exc:
                    self._abort(peer, str(exc))
                    with trio.CancelScope(shield=True):
                        await stream.reset()
                except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._abort(peer, f"{type(exc).__name__}: {exc}")
                    with trio.CancelScope(shield=True):
                        await stream.reset()
            if scope.cancelled_caught:
                self._abort(peer, "timeout")
                with trio.CancelScope(shield=True):
                    await stream.reset()
        finally:
            self.policy.finish(peer)

    async def _serve(self, reader: BufferedStream, stream: NetStream, conn: Connection) -> None:
        peer = conn.remote_peer
        try:
            msg = await read_message(reader)
        except MalformedAutoNATv2Message as exc:
            raise _Aborted(f"malformed request: {exc}") from exc
        if not isinstance(msg, DialRequest):
            raise _Aborted(f"expected a DialRequest, got {type(msg).__name__}")
        decision = self.policy.choose(
            msg, peer=peer, observed=conn.remote_addr, now=trio.current_time()
        )
        if isinstance(decision, Reject):
            await self._refuse(reader, stream, peer, decision)
            return
        if decision.dial_data:
            await self._collect_dial_data(reader, decision.addr_idx, decision.dial_data)
            wait = self._rng.uniform(0.0, self.config.dial_data_wait)
            await trio.sleep(wait)
        status = await self.dial_back(peer, decision.addr, msg.nonce)
        self.stats.dial_status[status.name] += 1
        self.stats.dialed.append((decision.addr, status.name))
        await self._answer(reader, DialResponse(ResponseStatus.OK, decision.addr_idx, status))

    async def _collect_dial_data(self, reader: BufferedStream, idx: int, amount: int) -> None:
        await reader.send_all(encode_message(DialDataRequest(idx, amount)))
        counter = DialDataCounter(amount, self.config.min_dial_data_chunk)
        try:
            while not counter.done:
                msg = await read_message(reader)
                if not isinstance(msg, DialDataResponse):
                    raise _Aborted(f"expected dial data, got {type(msg).__name__}")
                counter.feed(len(msg.data))
        except MalformedAutoNATv2Message as exc:
            raise _Aborted(f"bad dial data: {exc}") from exc
        finally:
            self.stats.dial_data_bytes += counter.received

    async def dial_back(self, peer: PeerID, addr: Multiaddr, nonce: int) -> DialStatus:
        """Connect to ``peer`` at ``addr`` on a new connection and deliver ``nonce``."""
        connected = False
        status = DialStatus.E_DIAL_ERROR
        # ``dial_timeout`` bounds the connection (a NAT that drops our SYN costs that much),
        # then ``dial_back_stream_timeout`` the nonce exchange.
        with trio.move_on_after(self.config.dial_timeout) as scope:
            try:
                async with self.host.swarm.dial_isolated(
                    peer, [addr], key=self.dial_back_key
                ) as dialed:
                    connected = True
                    scope.deadline = trio.current_time() + self.config.dial_back_stream_timeout
                    status = await self._deliver(dialed, nonce)
            except (Libp2pError, trio.TooSlowError) as exc:
                # dial_isolated re-raises the upgrade's own time-out as a bare TooSlowError
                # when it had a single address.
                logger.debug("AutoNAT v2 dial-back to %s at %s failed: %r", peer, addr, exc)
        if connected and status is DialStatus.E_DIAL_ERROR:
            status = DialStatus.E_DIAL_BACK_ERROR  # timed out after connecting
        return status

    async def _deliver(self, conn: Connection, nonce: int) -> DialStatus:
        with trio.move_on_after(self.config.dial_back_stream_timeout):
            try:
                stream = await conn.new_stream([DIAL_BACK_PROTOCOL])
                reader = BufferedStream.wrap(stream)
                await reader.send_all(encode_dial_back(DialBack(nonce)))
                await reader.send_eof()
                await read_dial_back_response(reader)
                await reader.aclose()
                return DialStatus.OK
            except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                logger.debug("AutoNAT v2 nonce delivery to %s failed: %s", conn.remote_peer, exc)
        return DialStatus.E_DIAL_BACK_ERROR

    async def _refuse(
        self, reader: BufferedStream, stream: NetStream, peer: PeerID, reject: Reject
    ) -> None:
        self.stats.rejected[reject.reason] += 1
        logger.debug("AutoNAT v2 request from %s: %s (%s)", peer, reject.status.name, reject.reason)
        try:
            await self._answer(reader, DialResponse(reject.status))
        except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError):
            with trio.CancelScope(shield=True):
                await stream.reset()

    async def _answer(self, reader: BufferedStream, response: DialResponse) -> None:
        self.stats.answered[response.status.name] += 1
        await reader.send_all(encode_message(response))
        await reader.aclose()

    def _abort(self, peer: PeerID, reason: str) -> None:
        key = reason.split(":", 1)[0]
        self.stats.aborted[key] += 1
        logger.debug("AutoNAT v2 request from %s aborted: %s", peer, reason)
