"""The harness itself can fail: a crash, a leak and an untyped error are each caught."""

from __future__ import annotations

import pytest
import trio

from libp2p.exceptions import RemoteProtocolError

from .harness import HostCrashed, hostile_case


async def test_a_dying_host_is_reported_as_a_crash() -> None:
    async def boom() -> None:
        raise RuntimeError("a task of the host failed")

    with pytest.raises(HostCrashed):
        async with hostile_case() as case:
            case.host.nursery.start_soon(boom)
            await trio.sleep_forever()


async def test_a_leaked_task_is_reported() -> None:
    with pytest.raises(AssertionError, match="leak: tasks"):
        async with hostile_case() as case:
            case.host.nursery.start_soon(trio.sleep_forever)


async def test_an_untyped_error_is_reported() -> None:
    async def untyped() -> None:
        raise AssertionError("bare")

    with pytest.raises(AssertionError, match="untyped AssertionError"):
        async with hostile_case() as case:
            await case.fails(RemoteProtocolError, untyped)
