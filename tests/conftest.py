"""Shared test configuration."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing


def skip_or_fail(reason: str) -> None:
    """Skip a test whose prerequisites are missing, unless the README's test command set them up.

    ``scripts/test.sh`` exports ``LIBP2P_REQUIRE_INTEROP=1`` after installing everything the
    interop tests need; under it a missing prerequisite is a failure, not a silent skip.
    """
    if os.environ.get("LIBP2P_REQUIRE_INTEROP") == "1":
        pytest.fail(f"prerequisite missing under scripts/test.sh: {reason}")
    pytest.skip(reason)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    """A trio MockClock that jumps ahead whenever every task is blocked."""
    return trio.testing.MockClock(autojump_threshold=0)
