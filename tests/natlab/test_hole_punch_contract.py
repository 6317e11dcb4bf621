"""The test-plans hole-punch contract, run the way the suite runs it (tests/natlab/contract.py).

One run per pairing: our client in both roles (listener and dialer against each other), then
js-libp2p (through our adapter, tests/interop/js_contract_client.py) as the listener and as
the dialer against ours, then go-libp2p (p2pd, through tests/interop/go_contract_client.py) the
same way, in the runner's IPv6 mode (dual-stack lab with observers: see contract.py). Each run
checks the contract itself: the dialer exits 0 within the suite's 60 s with exactly one line on
stdout, ``{"rtt_to_holepunched_peer_millis":N}``; the listener prints nothing on stdout and is
still running when the dialer is done; and N is at least the round trip the routers' delays put
on the direct path (200 ms).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest
import trio

from tests.interop.gopeer import require_go_peer
from tests.interop.jspeer import require_js_peer
from tests.natlab.contract import (
    DIRECT_RTT_MS,
    GO_CLIENT,
    JS_CLIENT,
    OUR_CLIENT,
    ContractRun,
    contract_lab_options,
    run_contract,
)
from tests.natlab.lab import NatLab
from tests.redisserver import require_redis

pytestmark = pytest.mark.natlab


async def run(
    nat_lab: Callable[..., NatLab],
    listener: Sequence[str],
    dialer: Sequence[str],
    *,
    ipv6: bool = False,
) -> tuple[NatLab, ContractRun]:
    require_redis()
    lab = nat_lab(**contract_lab_options(ipv6=ipv6))
    assert lab.rtt("a", "b") * 1000 == pytest.approx(DIRECT_RTT_MS)
    result = await trio.to_thread.run_sync(
        lambda: run_contract(lab, listener=listener, dialer=dialer)
    )
    return lab, result


def check_contract(lab: NatLab, result: ContractRun) -> None:
    assert result.dialer_exit == 0, result.describe()
    assert result.report_error is None, result.describe()
    assert result.rtt_ms is not None
    # The switch holds every frame for its delay: the direct round trip cannot be shorter.
    assert result.rtt_ms >= DIRECT_RTT_MS, result.describe()
    assert result.listener_running, result.describe()
    assert result.listener_stdout == "", result.describe()
    assert result.ok


async def test_our_client_in_both_roles(nat_lab: Callable[..., NatLab]) -> None:
    lab, result = await run(nat_lab, OUR_CLIENT, OUR_CLIENT)
    check_contract(lab, result)
    # Our dialer (A) punched through to router B's public address (and not to B's LAN one).
    punched = re.search(r"hole punch succeeded \(attempt \d+.*: (/ip4/\S+)", result.dialer_stderr)
    assert punched is not None, result.describe()
    assert punched.group(1).startswith(f"/ip4/{lab.public_ip('b')}/tcp/")


@pytest.mark.interop
async def test_a_js_listener_and_our_dialer(nat_lab: Callable[..., NatLab]) -> None:
    require_js_peer()
    lab, result = await run(nat_lab, JS_CLIENT, OUR_CLIENT)
    check_contract(lab, result)


@pytest.mark.interop
async def test_our_listener_and_a_js_dialer(nat_lab: Callable[..., NatLab]) -> None:
    require_js_peer()
    lab, result = await run(nat_lab, OUR_CLIENT, JS_CLIENT)
    check_contract(lab, result)


@pytest.mark.interop
async def test_a_go_listener_and_our_dialer(nat_lab: Callable[..., NatLab]) -> None:
    require_go_peer()
    lab, result = await run(nat_lab, GO_CLIENT, OUR_CLIENT, ipv6=True)
    check_contract(lab, result)
    # Our dialer punched through to go's address behind B's firewall, over IPv6.
    punched = re.search(r"hole punch succeeded \(attempt \d+.*: (/ip6/\S+)", result.dialer_stderr)
    assert punched is not None, result.describe()
    assert punched.group(1).startswith(f"/ip6/{lab.ip6('b')}/tcp/"), result.describe()
    # go's B logged its side of the punch (its log is in the adapter's stderr).
    assert '"msg":"hole punching with successful"' in result.listener_stderr, result.describe()


@pytest.mark.interop
async def test_our_listener_and_a_go_dialer(nat_lab: Callable[..., NatLab]) -> None:
    require_go_peer()
    lab, result = await run(nat_lab, OUR_CLIENT, GO_CLIENT, ipv6=True)
    check_contract(lab, result)
    # go pinged over its direct connection to our listener's address behind B's firewall.
    pinged = re.search(r"ping over (/ip6/\S+):", result.dialer_stderr)
    assert pinged is not None, result.describe()
    assert pinged.group(1).startswith(f"/ip6/{lab.ip6('b')}/tcp/"), result.describe()
    # Our listener (B) saw the same punch from its side.
    assert re.search(r"hole punch with \S+ succeeded", result.listener_stderr), result.describe()
