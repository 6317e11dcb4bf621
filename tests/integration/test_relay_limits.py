"""A relay's limit reset says so, over real sockets on 127.0.0.1 (issue 10 item 10).

A relay with tiny limits resets a circuit once its data or time limit is reached. Both ends of
the relayed connection must then raise :class:`RelayLimitReached` naming that limit, from
reads and writes on the connection's streams, and report it as the connection's error; a
reset for any other reason stays an ordinary :class:`StreamReset`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import Host, HostConfig
from libp2p.exceptions import ConnectionClosedError, StreamReset
from libp2p.network.connection import Connection, ConnectionLimit, NetStream
from libp2p.relay.circuit_v2 import LimitKind, RelayConfig, RelayLimitReached

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
SINK = "/test/limits-sink/1.0.0"
REAL_TIMEOUT = 20.0
#: Enough for the relayed handshakes and identify, far less than a transfer.
DATA_LIMIT = 32 * 1024
BIG = b"x" * (1 << 20)


def circuit(relay: Host, target: Host | None = None) -> Multiaddr:
    base = f"{relay.listen_addrs[0]}/p2p/{relay.peer_id}/p2p-circuit"
    return Multiaddr(base if target is None else f"{base}/p2p/{target.peer_id}")


class Ends:
    """What each end's stream saw: the exception its reads or writes ended with."""

    def __init__(self) -> None:
        self.listener: BaseException | None = None
        self.listener_done = trio.Event()
        self.listener_ready = trio.Event()
        self.listener_conn: Connection | None = None
        #: When the dialer asked for the circuit (before the relay could start its timer).
        self.dialed_at = 0.0


async def pump(stream: NetStream, *, send: bool) -> BaseException:
    """Send BIG over and over (``send``), or read until the stream breaks; return the error."""
    try:
        while True:
            if send:
                await stream.send_all(BIG)
            elif not await stream.receive_some():
                raise AssertionError("clean EOF where the relay's reset was expected")
    except trio.BrokenResourceError as exc:
        return exc


@asynccontextmanager
async def limited(
    config: RelayConfig, *, listener_sends: bool
) -> AsyncIterator[tuple[Host, Host, Host, Connection, Ends]]:
    """A relay with ``config``, a listener reserved on it serving SINK, and a dialer's relayed
    connection to the listener."""
    ends = Ends()

    async def serve(stream: NetStream) -> None:
        ends.listener_conn = stream.connection
        try:
            # The dialer speaks first: its stream is negotiated before any flood (a reset
            # would otherwise discard the protocol answer it has not read yet).
            first = b""
            while len(first) < 2:
                first += await stream.receive_some(2 - len(first))
            assert first == b"go"
            ends.listener_ready.set()
            ends.listener = await pump(stream, send=listener_sends)
        except trio.BrokenResourceError as exc:
            ends.listener = exc  # the reset came while the dialer's first bytes were unread
        finally:
            ends.listener_done.set()

    async with (
        Host(listen=[LOOPBACK], config=HostConfig(relay_service=config)) as relay,
        Host() as listener,
        Host() as dialer,
    ):
        listener.set_stream_handler(SINK, serve, allow_limited=True)
        await listener.listen(circuit(relay))
        ends.dialed_at = trio.current_time()
        conn = await dialer.connect(circuit(relay, listener))
        assert conn.relayed
        yield relay, listener, dialer, conn, ends


def check_limit_error(exc: BaseException | None, kind: LimitKind, relay: Host) -> None:
    assert isinstance(exc, RelayLimitReached), repr(exc)
    # Code that handles any reset, or a closed connection, still catches it.
    assert isinstance(exc, StreamReset)
    assert isinstance(exc, ConnectionClosedError)
    assert exc.kind is kind
    assert exc.relay == relay.peer_id
    assert f"its {'data' if kind is LimitKind.DATA else 'time'} limit" in str(exc)
    assert str(relay.peer_id) in str(exc)


@pytest.mark.parametrize("sender", ["dialer", "listener"])
async def test_data_limit_reset_is_reported_as_the_data_limit_at_both_ends(sender: str) -> None:
    config = RelayConfig(circuit_data=DATA_LIMIT, circuit_duration=None)
    with trio.fail_after(REAL_TIMEOUT):
        async with limited(config, listener_sends=sender == "listener") as (
            relay,
            _listener,
            _dialer,
            conn,
            ends,
        ):
            assert conn.limit == ConnectionLimit(duration=None, data=DATA_LIMIT)
            stream = await conn.new_stream(SINK, allow_limited=True)
            await stream.send_all(b"go")
            dialer_error = await pump(stream, send=sender == "dialer")
            await ends.listener_done.wait()

            check_limit_error(dialer_error, LimitKind.DATA, relay)
            check_limit_error(ends.listener, LimitKind.DATA, relay)
            # The connections ended, and say why.
            await conn.wait_closed()
            check_limit_error(conn.error, LimitKind.DATA, relay)
            assert ends.listener_conn is not None
            await ends.listener_conn.wait_closed()
            check_limit_error(ends.listener_conn.error, LimitKind.DATA, relay)
            # Any other stream of that connection says the same.
            with pytest.raises(RelayLimitReached):
                await stream.send_all(b"more")
            assert relay.relay_service is not None
            assert relay.relay_service.stats.circuits_limited == 1


async def test_duration_limit_reset_is_reported_as_the_time_limit_at_both_ends() -> None:
    # The shortest limit the wire can say (whole seconds); the test waits on the reset itself.
    config = RelayConfig(circuit_data=None, circuit_duration=1)
    with trio.fail_after(REAL_TIMEOUT):
        async with limited(config, listener_sends=False) as (relay, _l, _d, conn, ends):
            assert conn.limit == ConnectionLimit(duration=1, data=None)
            stream = await conn.new_stream(SINK, allow_limited=True)
            await stream.send_all(b"go")
            dialer_error = await pump(stream, send=False)
            await ends.listener_done.wait()
            assert trio.current_time() - ends.dialed_at >= 1.0

            check_limit_error(dialer_error, LimitKind.DURATION, relay)
            check_limit_error(ends.listener, LimitKind.DURATION, relay)
            await conn.wait_closed()
            check_limit_error(conn.error, LimitKind.DURATION, relay)


async def test_another_reset_of_a_limited_circuit_stays_an_ordinary_reset() -> None:
    # Limits far away; the listener's own connection to the relay breaks instead.
    config = RelayConfig(circuit_data=1 << 30, circuit_duration=3600)
    with trio.fail_after(REAL_TIMEOUT):
        async with limited(config, listener_sends=False) as (relay, listener, _d, conn, ends):
            stream = await conn.new_stream(SINK, allow_limited=True)
            await stream.send_all(b"go")
            await ends.listener_ready.wait()
            await listener.relay.stop_listening(relay.peer_id)
            await listener.disconnect(relay.peer_id)
            dialer_error = await pump(stream, send=False)
            assert isinstance(dialer_error, StreamReset), repr(dialer_error)
            assert not isinstance(dialer_error, RelayLimitReached)
            await conn.wait_closed()
            assert not isinstance(conn.error, RelayLimitReached)
            await ends.listener_done.wait()
            assert not isinstance(ends.listener, RelayLimitReached)
