"""Events from real hosts on loopback describe themselves: the line names what the dict says."""

from __future__ import annotations

import json

import trio

from libp2p import ConnectionClosed, ConnectionOpened, Host, PeerIdentified
from libp2p.events import Describes

TIMEOUT = 10


async def test_connection_and_identify_events_describe_themselves() -> None:
    async with (
        Host(listen=["/ip4/127.0.0.1/tcp/0"]) as server,
        Host(listen=["/ip4/127.0.0.1/tcp/0"]) as client,
    ):
        addr = server.listen_addrs[0]
        kinds = (ConnectionOpened, ConnectionClosed, PeerIdentified)
        with client.events.subscribe(*kinds) as events, trio.fail_after(TIMEOUT):
            conn = await client.connect(f"{addr}/p2p/{server.peer_id}")
            await client.identify.wait_identified(conn)
            await conn.aclose()
            seen: dict[str, Describes] = {}
            async for event in events:
                seen[event.kind] = event
                if isinstance(event, ConnectionClosed):
                    break
    assert set(seen) == {"connection_opened", "peer_identified", "connection_closed"}
    opened, identified, closed = (
        seen["connection_opened"], seen["peer_identified"], seen["connection_closed"]
    )  # fmt: skip
    assert opened.describe() == (f"outbound direct connection to {server.peer_id} ({addr})")
    assert opened.to_dict() == {
        "peer": str(server.peer_id),
        "remote_addr": str(addr),
        "relayed": False,
        "limited": False,
        "direction": "outbound",
    }
    assert closed.describe().startswith(
        f"outbound direct connection to {server.peer_id} closed after "
    )
    assert closed.to_dict()["duration"] >= 0
    fields = identified.to_dict()
    assert fields["peer"] == str(server.peer_id)
    assert "/ipfs/id/1.0.0" in fields["protocols"]
    assert str(addr) in fields["listen_addrs"]
    assert f"identified {server.peer_id} (" in identified.describe()
    assert f"{len(fields['protocols'])} protocols" in identified.describe()
    for event in seen.values():
        assert json.loads(json.dumps(event.to_dict())) == event.to_dict()
