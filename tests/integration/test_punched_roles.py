"""Who initiates on a hole-punched connection, settled on the connection itself.

After a TCP simultaneous open both ends called ``connect()``; DCUtR assigns A the initiator
role, but go-libp2p before v0.41 swaps the roles on every attempt and later go B's initiate on
their last one. :func:`libp2p.network.upgrader.upgrade` with a ``role_rule`` lets the peer's
first bytes decide. Here each of our two rules meets each other kind of peer over a real
loopback TCP connection, runs the whole upgrade (multistream-select, Noise, Yamux) and then a
stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from libp2p.crypto.keys import PrivateKey, generate_ed25519
from libp2p.multistream import RoleRule
from libp2p.network.upgrader import UpgradedConnection, upgrade
from libp2p.peer.id import PeerID

TIMEOUT = 10
Upgrade = Callable[[trio.SocketStream, PrivateKey, PeerID], Awaitable[UpgradedConnection]]


def fixed(initiator: bool) -> Upgrade:
    """A peer whose role is fixed (the spec's A or B, or go before v0.41 the other way)."""

    async def run(raw: trio.SocketStream, key: PrivateKey, peer: PeerID) -> UpgradedConnection:
        return await upgrade(raw, key, initiator=initiator, expected_peer=peer)

    return run


def either(rule: RoleRule, patience: float = 0.0) -> Upgrade:
    async def run(raw: trio.SocketStream, key: PrivateKey, peer: PeerID) -> UpgradedConnection:
        return await upgrade(
            raw, key, initiator=False, role_rule=rule, role_patience=patience, expected_peer=peer
        )

    return run


OUR_A = either(RoleRule.INITIATE_UNLESS_PROPOSED)
# A long patience: a peer that proposes must be answered at once, not after it.
OUR_B = either(RoleRule.RESPOND_UNLESS_SILENT, patience=3.0)
OUR_B_SHORT = either(RoleRule.RESPOND_UNLESS_SILENT, patience=0.1)


async def connected_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        accepted: list[trio.SocketStream] = []

        async def accept() -> None:
            accepted.append(await listener.accept())

        nursery.start_soon(accept)
        dialed = await trio.open_tcp_stream("127.0.0.1", port)
    await listener.aclose()
    return dialed, accepted[0]


async def run_pair(left: Upgrade, right: Upgrade) -> tuple[UpgradedConnection, UpgradedConnection]:
    """Upgrade both ends of one TCP connection at the same time; then one stream each way."""
    keys = generate_ed25519(), generate_ed25519()
    peers = [PeerID.from_public_key(k.public_key) for k in keys]
    raw_left, raw_right = await connected_pair()
    results: dict[str, UpgradedConnection] = {}
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def side(name: str, up: Upgrade, raw: trio.SocketStream, i: int) -> None:
                results[name] = await up(raw, keys[i], peers[1 - i])

            nursery.start_soon(side, "left", left, raw_left, 0)
            nursery.start_soon(side, "right", right, raw_right, 1)
        a, b = results["left"], results["right"]
        assert a.remote_peer == peers[1]
        assert b.remote_peer == peers[0]
        async with trio.open_nursery() as nursery:
            await nursery.start(a.muxer.run)
            await nursery.start(b.muxer.run)
            stream = await a.muxer.open_stream()
            await stream.send_all(b"ping")
            await stream.send_eof()
            incoming = await b.muxer.accept_stream()
            assert await incoming.receive_some() == b"ping"
            await incoming.send_all(b"pong")
            assert await stream.receive_some() == b"pong"
            nursery.cancel_scope.cancel()
    return a, b


@pytest.mark.parametrize(
    ("left", "right", "left_initiates"),
    [
        pytest.param(OUR_A, OUR_B, True, id="our A, our B"),
        pytest.param(OUR_A, OUR_B_SHORT, True, id="our A, our impatient B"),
        pytest.param(OUR_A, fixed(False), True, id="our A, a responder B (spec)"),
        pytest.param(OUR_A, fixed(True), False, id="our A, an initiating B (go < 0.41)"),
        pytest.param(OUR_B, fixed(True), False, id="our B, an initiating A (spec)"),
        pytest.param(OUR_B_SHORT, fixed(False), True, id="our B, a responder A (go < 0.41)"),
    ],
)
async def test_the_role_is_settled_with_any_peer(
    left: Upgrade, right: Upgrade, left_initiates: bool
) -> None:
    a, b = await run_pair(left, right)
    assert a.initiator is left_initiates
    assert b.initiator is not left_initiates


async def test_our_b_answers_a_proposal_without_waiting_its_patience() -> None:
    """The patience only bounds a silent peer: a proposal is answered when it arrives (the
    pair's TIMEOUT is far below this patience)."""
    a, _ = await run_pair(either(RoleRule.RESPOND_UNLESS_SILENT, patience=60.0), fixed(True))
    assert not a.initiator
