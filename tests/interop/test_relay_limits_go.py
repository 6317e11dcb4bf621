"""A stock go-libp2p v0.32.1 relay (p2pd) cuts a circuit at its data limit (go half-closes the
receiving side after exactly ``Limit.data`` bytes and stops reading from the sender): both ends
of our relayed connection say it was the relay's data limit (issue 10 item 10), not a bare
EOF or reset."""

from __future__ import annotations

import pytest
import trio

from libp2p import Host, HostConfig
from libp2p.network.connection import NetStream
from libp2p.relay.circuit_v2 import LimitKind, RelayLimitReached
from tests.interop.gopeer import go_peer, require_go_peer

pytestmark = pytest.mark.interop

SINK = "/test/limits-sink/1.0.0"
BIG = b"x" * (1 << 20)


@pytest.fixture(autouse=True)
def _need_go_peer() -> None:
    require_go_peer()


def _host() -> Host:
    return Host(listen=["/ip4/127.0.0.1/tcp/0"], config=HostConfig(autonat_client=None))


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
async def test_go_relays_data_limit_is_named_at_both_ends(sender: str) -> None:
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
        async with go_peer() as go, _host() as host, _host() as other:
            host.set_stream_handler(SINK, sink, allow_limited=True)
            relayed = await host.listen(f"{go.addr}/p2p-circuit")
            conn = await other.connect(f"{relayed[0]}/p2p/{host.peer_id}")
            assert conn.limit is not None
            assert conn.limit.data is not None  # go's default: 128 KiB per direction
            stream = await other.new_stream(host.peer_id, SINK, allow_limited=True)
            await stream.send_all(b"g")
            dialer_error = await _pump(stream, send=sender == "dialer")
            await done.wait()
            for error in (dialer_error, *seen):
                assert isinstance(error, RelayLimitReached), repr(error)
                assert error.kind is LimitKind.DATA
                assert error.relay == go.id
            assert len(seen) == 1
            await conn.wait_closed()
            assert isinstance(conn.error, RelayLimitReached)
