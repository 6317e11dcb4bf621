"""libp2p.console: events printed for people or as JSON lines, and a program's exit codes."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from typing import Any

import pytest
import trio
from multiaddr import Multiaddr

from libp2p.console import (
    EXIT_INTERRUPTED,
    EXIT_MISTAKE,
    ArgumentParser,
    Console,
    UsageError,
)
from libp2p.events import Describes
from libp2p.exceptions import LocalUsageError
from libp2p.host.autonat.events import Reachability, ReachabilityChanged, ReachabilityProbed
from libp2p.host.autonat.protocol import ResponseStatus
from libp2p.identify.nat_mapping import NatMapping, NatMappingChanged, NatMappingStatus
from libp2p.network.connection import ConnectionLimit
from libp2p.peer.id import PeerID
from libp2p.portmap.events import (
    PortMapping,
    PortMappingChange,
    PortMappingChanged,
    PortMappingFailed,
    PortMappingFailure,
    PortMappingProtocol,
)
from libp2p.relay.circuit_v2 import (
    RelayCircuitClosed,
    RelayCircuitOpened,
    RelayReservationAccepted,
    Reservation,
    ReservationAttemptFailed,
    ReservationLost,
    ReservationMade,
    ReservationRefreshed,
    ReservationRefused,
)
from libp2p.relay.circuit_v2.dcutr import HolePunchAttemptFailed
from libp2p.relay.circuit_v2.dcutr_core import HolePunchRole

RELAY = PeerID.from_string("12D3KooWKfFmaWhjRQeu3Y3WYaqJDX8D8XvbzcBcRZjhBgHFMPcR")
US = PeerID.from_string("12D3KooWR1Jr3okHVemdoTg5H6oLzUXQmfEvvs5ssTBfGLcDKi4n")


def samples() -> list[Describes]:
    """One event of every kind that holds only data (those holding a live connection are
    printed by the example scripts' tests, from real runs)."""
    reservation = Reservation(
        relay=RELAY,
        addrs=(Multiaddr(f"/ip4/203.0.113.5/tcp/4001/p2p/{RELAY}/p2p-circuit"),),
        expire=int(time.time()) + 3600,
        limit=ConnectionLimit(duration=120, data=131072),
        has_voucher=True,
        peer=US,
    )
    mapping = PortMapping(
        protocol=PortMappingProtocol.PCP,
        internal=Multiaddr("/ip4/192.0.2.2/tcp/4001"),
        external=Multiaddr("/ip4/198.51.100.1/tcp/4001"),
        lease=7200.0,
        expires=7200.0,
        gateway="192.0.2.1",
        external_is_public=True,
    )
    return [
        ReservationMade(reservation),
        ReservationRefreshed(reservation),
        ReservationLost(RELAY, "the connection to the relay closed"),
        ReservationRefused(RELAY, 200, "RESERVATION_REFUSED", 10.0),
        ReservationAttemptFailed(RELAY, "connection refused", 2.5),
        RelayReservationAccepted(US, 3600.0, refresh=False),
        RelayCircuitOpened(RELAY, US),
        RelayCircuitClosed(RELAY, US, 2344, "reset", 0.25),
        HolePunchAttemptFailed(US, HolePunchRole.LISTENER, 2, "no direct connection in 1.5 s"),
        ReachabilityProbed(
            RELAY,
            ResponseStatus.OK,
            Multiaddr("/ip4/198.51.100.1/tcp/4001"),
            "dialed",
            Reachability.PUBLIC,
            1,
        ),
        ReachabilityProbed(RELAY, None, None, "timed out", Reachability.UNKNOWN, 0),
        ReachabilityChanged(Reachability.PRIVATE, Reachability.UNKNOWN, 2, None, None),
        NatMappingStatus(NatMapping.UNKNOWN, "no observation yet", (), ()),
        NatMappingChanged(
            NatMapping.UNKNOWN, NatMapping.ENDPOINT_DEPENDENT, ("198.51.100.10",), "two ports", ()
        ),
        PortMappingChanged(PortMappingChange.ADDED, mapping),
        PortMappingFailed(
            Multiaddr("/ip4/192.0.2.2/tcp/4001"),
            PortMappingFailure.REFUSED,
            "router refused: PCP result 8 NO_RESOURCES",
            PortMappingProtocol.PCP,
            "192.0.2.1",
            retry_at=60.0,
        ),
    ]


@pytest.mark.parametrize("event", samples(), ids=lambda e: type(e).__name__)
def test_every_event_describes_itself_in_words_and_in_json(event: Describes) -> None:
    assert isinstance(event, Describes)
    assert event.kind
    assert event.kind == event.kind.lower()
    assert " " not in event.kind
    text = event.describe()
    assert text, event
    assert not text.endswith("\n"), text
    assert "\n\n" not in text, text
    fields = event.to_dict()
    assert json.loads(json.dumps(fields)) == fields  # JSON types only
    assert not {"t", "role", "event"} & set(fields)
    # What the line names, the dict carries too: peers and addresses.
    for value in fields.values():
        if isinstance(value, str) and value.startswith(("12D3KooW", "/ip4/")):
            assert value in text, (value, text)


def test_a_reservation_tells_the_dialer_where_to_dial() -> None:
    made = next(e for e in samples() if isinstance(e, ReservationMade))
    (addr,) = made.to_dict()["relayed_addrs"]
    assert addr.endswith(f"/p2p-circuit/p2p/{US}")
    lines = made.describe().split("\n")
    assert lines[0].endswith("dial me at:")
    assert lines[1:] == [f"    {addr}"]  # one address a line, and no empty line


def test_console_prints_text_with_seconds_and_json_with_milliseconds() -> None:
    text, js = io.StringIO(), io.StringIO()
    lost = ReservationLost(RELAY, "expired")
    Console("listener", stream=text).event(lost)
    Console("listener", json=True, stream=js).event(lost)
    assert text.getvalue().endswith(f"s] reservation on {RELAY} lost: expired\n")
    assert text.getvalue().startswith("[   0.0")
    line = json.loads(js.getvalue())
    assert line == {
        "t": line["t"],
        "role": "listener",
        "event": "reservation_lost",
        "relay": str(RELAY),
        "reason": "expired",
    }
    assert 0 <= line["t"] < 1000


def test_console_refuses_fields_that_would_overwrite_its_own() -> None:
    console = Console("dialer", json=True, stream=io.StringIO())
    with pytest.raises(LocalUsageError, match="role"):
        console.say("x", "x", role="initiator")


def test_run_returns_main_s_code() -> None:
    async def main(code: int) -> int:
        await trio.lowlevel.checkpoint()
        return code

    assert Console("relay", stream=io.StringIO()).run(main, 3) == 3


def test_a_mistake_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> int:
        async with trio.open_nursery() as nursery:  # a task's error arrives in a group
            nursery.start_soon(trio.sleep_forever)
            raise UsageError("cannot reserve on relay: no answer")
        return 0

    out = io.StringIO()
    assert Console("listener", json=True, stream=out).run(main) == EXIT_MISTAKE
    assert capsys.readouterr().err == "listener: error: cannot reserve on relay: no answer\n"
    line = json.loads(out.getvalue())
    assert (line["event"], line["message"]) == ("error", "cannot reserve on relay: no answer")


def test_a_bug_keeps_its_traceback() -> None:
    async def main() -> int:
        raise ZeroDivisionError

    with pytest.raises(BaseExceptionGroup) as raised:  # as trio's nursery raised it
        Console("dialer", stream=io.StringIO()).run(main)
    assert raised.value.subgroup(ZeroDivisionError) is not None


def test_ctrl_c_cancels_main_at_a_checkpoint_and_exits_130() -> None:
    cancelled: list[bool] = []

    async def main() -> int:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(True)
            raise
        return 0

    out = io.StringIO()
    assert Console("relay", stream=out).run(main) == EXIT_INTERRUPTED
    assert cancelled == [True]  # main ended by cancellation, not by a stray KeyboardInterrupt
    assert out.getvalue().rstrip().endswith("] interrupted")


@pytest.mark.parametrize("as_json", [False, True])
def test_argument_parser_reports_a_mistake_in_one_line(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = ArgumentParser("dialer")
    parser.add_argument("--target", required=True)
    argv = ["--json"] if as_json else []
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(argv)
    assert exited.value.code == EXIT_MISTAKE
    got = capsys.readouterr()
    assert got.err.count("\n") == 1
    assert got.err.startswith("dialer: error: the following arguments are required: --target")
    if as_json:
        line: dict[str, Any] = json.loads(got.out)
        assert line["event"] == "error"
        assert "--target" in line["message"]
    else:
        assert got.out == ""


def test_argument_parser_has_the_common_options() -> None:
    args = ArgumentParser("relay").parse_args(["--json", "--log-level", "debug"])
    assert (args.json, args.log_level) == (True, "DEBUG")
