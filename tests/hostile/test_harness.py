"""The harness itself can fail: a crash, a leak and an untyped error are each caught."""

from __future__ import annotations

import pytest
import trio

from libp2p.exceptions import RemoteProtocolError

from . import harness
from .harness import HostCrashed, hostile_case


async def test_a_dying_host_is_reported_as_a_crash() -> None:
    async def boom() -> None:
        raise RuntimeError("a task of the host failed")

    async def crash() -> None:
        async with hostile_case() as case:
            case.host.nursery.start_soon(boom)
            await trio.sleep_forever()

    with pytest.raises(HostCrashed):
        await crash()


async def test_a_leaked_task_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "SETTLE", 0.3)

    async def leak() -> None:
        async with hostile_case() as case:
            case.host.nursery.start_soon(trio.sleep_forever)

    with pytest.raises(AssertionError, match="leak: tasks"):
        await leak()


async def test_an_untyped_error_is_reported() -> None:
    async def untyped() -> None:
        raise AssertionError("bare")

    async def wrong() -> None:
        async with hostile_case() as case:
            await case.fails(RemoteProtocolError, untyped)

    with pytest.raises(AssertionError, match="untyped AssertionError"):
        await wrong()


async def test_a_leaked_socket_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "SETTLE", 0.3)
    leaked: list[trio.socket.SocketType] = []

    async def leak() -> None:
        async with hostile_case():
            leaked.append(trio.socket.socket())

    try:
        with pytest.raises(AssertionError, match=r"leak: .*fds"):
            await leak()
    finally:
        for sock in leaked:
            sock.close()


async def test_lost_echo_data_is_reported() -> None:
    async def lose() -> None:
        async with hostile_case() as case:
            # What a host that dropped a frame would do to the other connection's stream.
            case.good_conn._up.muxer.close_nowait()

    with pytest.raises(AssertionError, match="echo stream"):
        await lose()
