"""A stock js-libp2p relay (@libp2p/circuit-relay-v2) resets a circuit at its data limit: the end
that sent the bytes says it was the relay's data limit (issue 10 item 10).

js counts one budget for both directions, on the bytes it *receives*, and resets both streams
as soon as a received message overdraws it, before forwarding that message. So the sending end
knows (it sent at least the limit), but the receiving end got fewer bytes than the limit and
cannot tell this reset from any other: it sees an ordinary :class:`StreamReset`.
"""

from __future__ import annotations

import pytest
import trio
from multiaddr import Multiaddr

from libp2p import Host
from libp2p.exceptions import StreamReset
from libp2p.network.connection import NetStream
from libp2p.peer.id import PeerID
from libp2p.relay.circuit_v2 import LimitKind, RelayLimitReached
from tests.interop.jspeer import js_relay, require_js_peer

pytestmark = pytest.mark.interop

SINK = "/test/limits-sink/1.0.0"
BIG = b"x" * (1 << 20)
DATA_LIMIT = 64 * 1024


@pytest.fixture(autouse=True)
def _need_js_peer() -> None:
    require_js_peer()


async def _pump(stream: NetStream, *, send: bool) -> BaseException:
    try:
        while True:
            if send:
                await stream.send_all(BIG)
            elif not await stream.receive_some():
                raise AssertionError("a clean EOF where the relay's cut was expected")
    except trio.BrokenResourceError as exc:
        return exc


@pytest.mark.parametrize("sender", ["dialer", "listener"])
async def test_js_relays_data_limit_is_named_at_both_ends(sender: str) -> None:
    seen: list[BaseException] = []
    done = trio.Event()

    async def sink(stream: NetStream) -> None:
        try:
            assert await stream.receive_some(1) == b"g"
            seen.append(await _pump(stream, send=sender == "listener"))
        except trio.BrokenResourceError as exc:
            seen.append(exc)  # the cut came before this handler read the first byte
        finally:
            done.set()

    with trio.fail_after(30):
        async with (
            js_relay(limit_data=DATA_LIMIT, spec_duration=True) as relay,
            Host(listen=["/ip4/127.0.0.1/tcp/0"]) as listener,
            Host() as dialer,
        ):
            relay_id = PeerID.from_string(relay.peer_id)
            listener.set_stream_handler(SINK, sink, allow_limited=True)
            (addr,) = await listener.listen(Multiaddr(f"{relay.addr}/p2p-circuit"))
            conn = await dialer.connect(f"{addr}/p2p/{listener.peer_id}")
            assert conn.limit is not None
            assert conn.limit.data == DATA_LIMIT
            stream = await conn.new_stream(SINK, allow_limited=True)
            await stream.send_all(b"g")
            dialer_error = await _pump(stream, send=sender == "dialer")
            await done.wait()
            (listener_error,) = seen
            sent, received = (
                (dialer_error, listener_error)
                if sender == "dialer"
                else (listener_error, dialer_error)
            )
            assert isinstance(sent, RelayLimitReached), repr(sent)
            assert sent.kind is LimitKind.DATA
            assert sent.relay == relay_id
            assert isinstance(received, StreamReset), repr(received)
