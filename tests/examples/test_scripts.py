"""The example scripts, run as subprocesses on loopback: the whole story with ``--json``
(every line checked against the vocabulary), a hole punch that fails, and the mistakes a user
can make, each answered with one line on stderr and a non-zero exit."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.examples.conftest import EXAMPLES, STEP, Script
from tests.examples.vocabulary import check_line

ANY_LOOPBACK = "/ip4/127.0.0.1/tcp/0"
# A valid peer ID that belongs to none of the peers a test starts.
OTHER_PEER = "12D3KooWLxb2r3ekgYMzkvF1tgp83kwUuiXouHnst6cTJgsBrjc4"
ANOTHER_PEER = "12D3KooWSEZ2jjjaPN97T8eKSkV38gFjpZofn5C9SRTFWmQKMvfU"

ScriptFactory = Callable[..., Script]
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as a shell reports it


def start_relay(script: ScriptFactory, *listen: str) -> tuple[Script, str]:
    """A relay; returns it and its loopback address with /p2p/<id>."""
    args = [arg for addr in listen or (ANY_LOOPBACK,) for arg in ("--listen", addr)]
    relay = script("relay", *args)
    ready = relay.expect("ready")
    (addr, *_) = [a for a in ready["addrs"] if a.startswith("/ip4/127.0.0.1/")]
    return relay, addr


def start_listener(script: ScriptFactory, relay_addr: str, *more: str) -> tuple[Script, str]:
    """A listener with a reservation on ``relay_addr``; returns it and its relayed address."""
    listener = script("listener", "--relay", relay_addr, "--listen", ANY_LOOPBACK, *more)
    reservation = listener.expect("reservation")
    (relayed,) = reservation["relayed_addrs"]
    return listener, relayed


@pytest.mark.parametrize("role", ["relay", "listener", "dialer"])
def test_help_works(role: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{role}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=STEP,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: "), done.stdout
    assert "--json" in done.stdout
    assert "--listen" in done.stdout
    assert done.stderr == ""


def test_relay_prints_dialable_addresses_of_every_listen_address(script: ScriptFactory) -> None:
    relay = script("relay", "--listen", "/ip4/0.0.0.0/tcp/0", "--listen", ANY_LOOPBACK)
    ready = relay.expect("ready")
    addrs = ready["addrs"]
    assert all(a.endswith(f"/p2p/{ready['peer_id']}") for a in addrs), addrs
    assert not any("/0.0.0.0/" in a for a in addrs), addrs
    # Two listeners, both loopback-dialable: two ports on 127.0.0.1.
    ports = {a.split("/")[4] for a in addrs if a.startswith("/ip4/127.0.0.1/tcp/")}
    assert len(ports) == 2, addrs
    assert relay.stop() == EXIT_INTERRUPTED, relay.stderr
    assert relay.stderr == ""


def test_relayed_then_direct_echo_on_loopback(script: ScriptFactory) -> None:
    relay, relay_addr = start_relay(script)
    listener, relayed = start_listener(script, relay_addr)
    relay_id = relay.lines[0]["peer_id"]
    listener_id = listener.lines[0]["peer_id"]
    assert relayed == f"{relay_addr}/p2p-circuit/p2p/{listener_id}"
    assert relay.expect("reservation")["peer"] == listener_id
    (made,) = listener.events("reservation")
    assert made["relay"] == relay_id
    assert made["limits"] == {"duration": 120, "data": 131072}

    dialer = script(
        "dialer", "--target", relayed, "--listen", ANY_LOOPBACK, "--message", "hi there"
    )
    assert dialer.wait(STEP + 30) == 0, dialer.report()
    events = [line["event"] for line in dialer.lines]
    assert events == [
        "ready",
        "relayed_connection",
        "echo",
        "hole_punch",
        "direct_connection",
        "echo",
        "result",
    ], dialer.report()
    dialer_id = dialer.lines[0]["peer_id"]
    _, connected, relayed_echo, punch, direct, direct_echo, result = dialer.lines
    assert connected["peer"] == listener_id
    assert connected["remote_addr"] == f"{relay_addr}/p2p-circuit"
    assert connected["limits"] == {"duration": 120, "data": 131072}
    assert (relayed_echo["via"], relayed_echo["ok"], relayed_echo["bytes"]) == ("relayed", True, 8)
    assert (relayed_echo["protocol"], relayed_echo["served"]) == ("/echo/1.0.0", True)
    assert punch["ok"]
    assert punch["peer"] == listener_id
    # The listener's listen port when the punch made it; on loopback the listener's plain
    # dial back to the dialer (connection reversal, from an ephemeral port) may win instead.
    assert direct["remote_addr"].startswith("/ip4/127.0.0.1/tcp/"), direct
    assert punch["direct_addr"] == direct["remote_addr"]
    assert (direct_echo["via"], direct_echo["ok"], direct_echo["bytes"]) == ("direct", True, 8)
    assert result["ok"]
    assert result["reason"] is None
    assert (result["protocol"], result["app"]) == ("/echo/1.0.0", "echoed")
    assert result["direct_addr"] == direct["remote_addr"]
    assert result["relayed_ms"] >= 0
    assert result["direct_ms"] >= 0
    assert result["echo_direct_ms"] is not None
    assert dialer.stderr == ""

    # The listener saw both connections and the upgrade, and echoed over each.
    inbound = listener.expect("connection_opened")
    if inbound["peer"] == relay_id:  # its own connection to the relay came first
        inbound = listener.expect("connection_opened")
    assert inbound["peer"] == dialer_id
    assert (inbound["relayed"], inbound["limited"], inbound["direction"]) == (True, True, "inbound")
    served = listener.expect("echo_served")
    assert (served["peer"], served["bytes"], served["via"]) == (dialer_id, 8, "relayed")
    upgrade = listener.expect("hole_punch")
    assert upgrade["ok"]
    assert upgrade["peer"] == dialer_id
    direct_in = listener.expect("connection_opened")
    assert (direct_in["relayed"], direct_in["limited"]) == (False, False)
    assert listener.expect("echo_served")["via"] == "direct"

    # The relay carried the circuit, and closes it once the peers went direct.
    opened = relay.expect("circuit_opened")
    assert (opened["src"], opened["dst"]) == (dialer_id, listener_id)
    closed = relay.expect("circuit_closed")
    assert (closed["src"], closed["dst"]) == (dialer_id, listener_id)
    assert closed["bytes"] > 0

    assert listener.stop() == EXIT_INTERRUPTED, listener.report()
    assert relay.stop() == EXIT_INTERRUPTED, relay.report()
    assert listener.stderr == ""
    assert relay.stderr == ""


def test_the_listener_trusts_its_relay_and_reports_public_on_loopback(
    script: ScriptFactory,
) -> None:
    # The relay is the listener's own: its one dial-back decides. On one machine nothing is
    # in the way, and loopback counts as public there.
    _relay, relay_addr = start_relay(script)
    listener, _relayed = start_listener(script, relay_addr)
    port = listener.lines[0]["addrs"][0].split("/tcp/")[1]
    while (report := listener.expect("reachability"))["status"] == "unknown":
        assert report["expect"] == "unknown", report
    assert (report["status"], report["expect"]) == ("public", "direct"), report
    addr = f"/ip4/127.0.0.1/tcp/{port}"
    (entry,) = [a for a in report["addresses"] if a["addr"] == addr]
    assert entry["status"] == "public", report
    # AutoNAT v1's answer may come first; the nonce-verified v2 check then takes over.
    while "AutoNAT v2" not in entry["reason"]:
        report = listener.expect("reachability")
        assert report["status"] == "public", report
        (entry,) = [a for a in report["addresses"] if a["addr"] == addr]
    assert entry["reason"].endswith(
        "confirmed by AutoNAT v2 (nonce-verified dial-back) from 1 server group(s), "
        "1 of them trusted"
    ), entry
    assert report["reason"].startswith(f"public: {entry['addr']} "), report
    assert listener.stop() == EXIT_INTERRUPTED, listener.report()


def test_a_failed_hole_punch_says_why_after_the_relayed_echo(script: ScriptFactory) -> None:
    # Named by DNS, the relay is not "on loopback" for the scripts: they keep the default
    # address policy, so the listener has no address worth offering and no punch can start
    # (and the dialer no loopback address to dial directly).
    _relay, relay_addr = start_relay(script)
    by_name = relay_addr.replace("/ip4/127.0.0.1/", "/dns4/localhost/")
    listener, relayed = start_listener(script, by_name)
    relayed = relayed.replace("/ip4/127.0.0.1/", "/dns4/localhost/")
    dialer = script("dialer", "--target", relayed, "--listen", ANY_LOOPBACK, "--timeout", "3")
    assert dialer.wait(STEP) == 1, dialer.report()
    echoes = dialer.events("echo")
    assert [(e["via"], e["ok"]) for e in echoes] == [("relayed", True)]
    assert dialer.lines[-1]["event"] == "result"
    result = dialer.lines[-1]
    assert not result["ok"]
    # The listener told the dialer (an empty CONNECT): it does not wait for its timeout.
    assert result["reason"] == "peer_no_address"
    assert result["direct_addr"] is None
    assert result["relayed_ms"] is not None
    # The listener, which starts DCUtR, says why it did not.
    punch = listener.expect("hole_punch")
    assert not punch["ok"]
    assert punch["reason"] == "no_public_address"
    assert dialer.stderr == ""


def test_custom_protocol_on_both_sides(script: ScriptFactory) -> None:
    # The listener serves the protocol it is given, as an echo, over both connections.
    custom = "/my-app/2.0.0"
    _relay, relay_addr = start_relay(script)
    listener, relayed = start_listener(script, relay_addr, "--protocol", custom)
    dialer = script("dialer", "--target", relayed, "--listen", ANY_LOOPBACK, "--protocol", custom)
    assert dialer.wait(STEP + 30) == 0, dialer.report()
    echoes = dialer.events("echo")
    assert [(e["via"], e["protocol"], e["ok"], e["reply_bytes"]) for e in echoes] == [
        ("relayed", custom, True, 21),
        ("direct", custom, True, 21),
    ], dialer.report()
    result = dialer.lines[-1]
    assert (result["event"], result["ok"], result["app"]) == ("result", True, "echoed")
    assert result["protocol"] == custom
    assert result["echo_direct_ms"] is not None
    served = [listener.expect("echo_served") for _ in range(2)]
    assert [(s["via"], s["protocol"], s["bytes"]) for s in served] == [
        ("relayed", custom, 21),
        ("direct", custom, 21),
    ]
    assert dialer.stderr == ""


def test_a_protocol_the_listener_does_not_serve_still_gives_the_hole_punch(
    script: ScriptFactory,
) -> None:
    # Our listener serves /echo/1.0.0 only; the dialer asks for py-libp2p's example protocol.
    # The exchange is refused (multistream "na") on both connections; the hole punch is
    # still made, reported and decides the exit status (it used to exit 2, no result line).
    _relay, relay_addr = start_relay(script)
    listener, relayed = start_listener(script, relay_addr)
    dialer = script(
        "dialer",
        "--target",
        relayed,
        "--listen",
        ANY_LOOPBACK,
        "--protocol",
        "/nat-example/1.0.0",
    )
    assert dialer.wait(STEP + 30) == 0, dialer.report()
    events = [line["event"] for line in dialer.lines]
    assert events == [
        "ready",
        "relayed_connection",
        "echo",
        "hole_punch",
        "direct_connection",
        "echo",
        "result",
    ], dialer.report()
    echoes = dialer.events("echo")
    assert [(e["via"], e["served"], e["ok"], e["reply_bytes"]) for e in echoes] == [
        ("relayed", False, False, None),
        ("direct", False, False, None),
    ]
    assert dialer.events("hole_punch")[0]["ok"]
    result = dialer.lines[-1]
    assert result["ok"]
    assert (result["protocol"], result["app"]) == ("/nat-example/1.0.0", "not_served")
    assert result["direct_addr"] is not None
    assert result["echo_direct_ms"] is None
    assert result["reason"] is None
    assert dialer.stderr == ""
    assert listener.events("echo_served") == []


def test_a_protocol_not_served_and_a_failed_hole_punch(script: ScriptFactory) -> None:
    # As test_a_failed_hole_punch_says_why_after_the_relayed_echo, with nothing served:
    # exit 1 for the punch, and the result line says both.
    _relay, relay_addr = start_relay(script)
    by_name = relay_addr.replace("/ip4/127.0.0.1/", "/dns4/localhost/")
    _listener, relayed = start_listener(script, by_name)
    relayed = relayed.replace("/ip4/127.0.0.1/", "/dns4/localhost/")
    dialer = script(
        "dialer", "--target", relayed, "--listen", ANY_LOOPBACK, "--timeout", "3",
        "--protocol", "/nat-example/1.0.0",
    )  # fmt: skip
    assert dialer.wait(STEP) == 1, dialer.report()
    result = dialer.lines[-1]
    assert result["event"] == "result"
    assert (result["ok"], result["reason"], result["app"]) == (
        False,
        "peer_no_address",
        "not_served",
    )
    assert dialer.stderr == ""


def test_dialer_protocol_that_is_not_a_protocol_id() -> None:
    line = run_to_error(
        "dialer",
        "--target",
        f"/ip4/127.0.0.1/tcp/1/p2p/{OTHER_PEER}/p2p-circuit/p2p/{ANOTHER_PEER}",
        "--protocol",
        "echo",
    )
    assert "--protocol" in line


# -- mistakes: one line on stderr, no traceback, non-zero exit ---------------------------------


def run_to_error(role: str, *args: str) -> str:
    """Run a script that must fail with exit code 2; returns its one stderr line."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{role}.py"), "--json", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STEP + 40,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{role}: error: "), lines[0]
    # With --json the same message is the last line on stdout, an ``error`` event.
    out = [json.loads(line) for line in done.stdout.splitlines()]
    for line in out:
        check_line(line, role)
    assert out, done.stdout
    assert out[-1]["event"] == "error", done.stdout
    assert f"{role}: error: {out[-1]['message']}" == lines[0]
    return lines[0]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port where nothing listens (held bound, so no one else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(params=["plain", "reuseport"])
def busy_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A loopback port another socket listens on: a plain one, or one with SO_REUSEPORT as
    another of our relays has (which a second listener used to share silently)."""
    with socket.socket() as sock:
        if request.param == "reuseport":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_listener_relay_address_without_p2p() -> None:
    line = run_to_error("listener", "--relay", "/ip4/127.0.0.1/tcp/4001")
    assert "/p2p/<relay id>" in line


def test_listener_relay_address_that_is_not_a_multiaddr() -> None:
    line = run_to_error("listener", "--relay", "127.0.0.1:4001")
    assert "not a multiaddr" in line


def test_dialer_target_without_p2p() -> None:
    line = run_to_error("dialer", "--target", "/ip4/127.0.0.1/tcp/4001/p2p-circuit")
    assert "relayed address" in line


def test_dialer_target_that_is_not_relayed() -> None:
    line = run_to_error("dialer", "--target", f"/ip4/127.0.0.1/tcp/4001/p2p/{OTHER_PEER}")
    assert "relayed address" in line
    assert "/p2p-circuit/" in line


@pytest.mark.parametrize("role", ["relay", "listener"])
def test_a_public_range_that_is_not_a_range(role: str) -> None:
    relay = ["--relay", f"/ip4/127.0.0.1/tcp/1/p2p/{OTHER_PEER}"] if role == "listener" else []
    line = run_to_error(role, *relay, "--public-range", "198.51.100.7/24")
    assert "--public-range: not an IP range: 198.51.100.7/24 has host bits set" in line


@pytest.mark.parametrize("role", ["relay", "listener"])
def test_min_servers_that_is_not_positive(role: str) -> None:
    relay = ["--relay", f"/ip4/127.0.0.1/tcp/1/p2p/{OTHER_PEER}"] if role == "listener" else []
    line = run_to_error(role, *relay, "--min-servers", "0")
    assert "--min-servers: '0' is not a positive whole number" in line


def test_listener_relay_that_is_down(closed_port: int) -> None:
    line = run_to_error("listener", "--relay", f"/ip4/127.0.0.1/tcp/{closed_port}/p2p/{OTHER_PEER}")
    assert "cannot reserve on relay" in line
    assert "is the relay running" in line


def test_dialer_relay_that_is_down(closed_port: int) -> None:
    target = f"/ip4/127.0.0.1/tcp/{closed_port}/p2p/{OTHER_PEER}/p2p-circuit/p2p/{ANOTHER_PEER}"
    line = run_to_error("dialer", "--target", target)
    assert "cannot connect through the relay" in line
    assert "is the relay running" in line


@pytest.mark.parametrize("role", ["relay", "listener", "dialer"])
def test_port_in_use(role: str, busy_port: int) -> None:
    addr = f"/ip4/127.0.0.1/tcp/{busy_port}"
    args = {
        "relay": [],
        "listener": ["--relay", f"/ip4/127.0.0.1/tcp/4001/p2p/{OTHER_PEER}"],
        "dialer": [
            "--target",
            f"/ip4/127.0.0.1/tcp/4001/p2p/{OTHER_PEER}/p2p-circuit/p2p/{ANOTHER_PEER}",
        ],
    }[role]
    line = run_to_error(role, "--listen", addr, *args)
    assert "Address already in use" in line, line


def test_listener_relay_with_a_wrong_peer_id(script: ScriptFactory) -> None:
    relay, relay_addr = start_relay(script)
    wrong = relay_addr.rsplit("/p2p/", 1)[0] + f"/p2p/{OTHER_PEER}"
    line = run_to_error("listener", "--relay", wrong, "--listen", ANY_LOOPBACK)
    assert OTHER_PEER in line
    assert relay.lines[0]["peer_id"] in line
    assert "is the /p2p/ part of --relay right?" in line


def test_dialer_relay_with_a_wrong_peer_id(script: ScriptFactory) -> None:
    _relay, relay_addr = start_relay(script)
    wrong = relay_addr.rsplit("/p2p/", 1)[0] + f"/p2p/{OTHER_PEER}"
    line = run_to_error("dialer", "--target", f"{wrong}/p2p-circuit/p2p/{ANOTHER_PEER}")
    assert "is the relay's /p2p/ part of --target right?" in line


def test_dialer_listener_with_a_wrong_peer_id(script: ScriptFactory) -> None:
    # The relay is there, but no peer of that ID holds a reservation on it.
    _relay, relay_addr = start_relay(script)
    line = run_to_error("dialer", "--target", f"{relay_addr}/p2p-circuit/p2p/{OTHER_PEER}")
    assert "NO_RESERVATION" in line


@pytest.fixture
def plain_host() -> Iterator[str]:
    """A stock host of ours that is up but runs no relay service (in a thread, on loopback);
    yields its address with /p2p/<id>."""

    import trio

    from libp2p import Host

    ready: list[str] = []
    started = threading.Event()
    stop = trio.Event()
    token: list[trio.lowlevel.TrioToken] = []

    async def serve() -> None:
        async with Host(listen=[ANY_LOOPBACK]) as host:
            token.append(trio.lowlevel.current_trio_token())
            ready.append(f"{host.listen_addrs[0]}/p2p/{host.peer_id}")
            started.set()
            await stop.wait()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert started.wait(STEP), "the plain host did not start"
    try:
        yield ready[0]
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token[0])
        thread.join(STEP)


def test_listener_relay_that_is_not_a_relay(plain_host: str) -> None:
    # The peer is up and answers, but serves no hop protocol: say so, not "is it running?".
    line = run_to_error("listener", "--relay", plain_host, "--listen", ANY_LOOPBACK)
    assert "cannot reserve on relay" in line
    assert "is not a relay" in line
    assert "is the relay running" not in line


# -- Ctrl-C, silent relays, key files, log levels, reservation TTL -----------------------------


@pytest.fixture
def silent_relay() -> Iterator[str]:
    """A loopback TCP server that accepts connections and never says a word (not a relay, not
    libp2p); yields its address with a /p2p/ part, as a relay's would be given."""

    held: list[socket.socket] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def accept() -> None:
            with contextlib.suppress(OSError):  # the server socket closed: the test is over
                while True:
                    held.append(server.accept()[0])

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield f"/ip4/127.0.0.1/tcp/{server.getsockname()[1]}/p2p/{OTHER_PEER}"
        finally:
            server.shutdown(socket.SHUT_RDWR)
    thread.join(STEP)
    for conn in held:
        conn.close()


def test_dialer_relay_that_accepts_and_never_answers(silent_relay: str) -> None:
    target = f"{silent_relay}/p2p-circuit/p2p/{ANOTHER_PEER}"
    line = run_to_error("dialer", "--target", target, "--connect-timeout", "1")
    assert "cannot connect through the relay" in line
    assert "no libp2p handshake within 1 s (--connect-timeout)" in line


def test_listener_relay_that_accepts_and_never_answers(silent_relay: str) -> None:
    line = run_to_error("listener", "--relay", silent_relay, "--connect-timeout", "1")
    assert "cannot reserve on relay" in line
    assert "no answer within 1 s (--connect-timeout)" in line


@pytest.mark.parametrize("role", ["relay", "listener", "dialer"])
def test_ctrl_c_exits_130_after_an_interrupted_line(
    role: str, script: ScriptFactory, silent_relay: str
) -> None:
    # The listener and the dialer are interrupted while they wait for a relay that never
    # answers (the connect timeout far away): Ctrl-C must end any wait.
    args = {
        "relay": ["--listen", ANY_LOOPBACK],
        "listener": ["--relay", silent_relay, "--listen", ANY_LOOPBACK],
        "dialer": ["--target", f"{silent_relay}/p2p-circuit/p2p/{ANOTHER_PEER}"],
    }[role]
    program = script(role, *args, "--connect-timeout", "600") if role != "relay" else None
    program = program or script(role, *args)
    program.expect("ready")
    assert program.stop() == EXIT_INTERRUPTED, program.report()
    assert program.stderr == ""


def test_listener_text_output(script: ScriptFactory) -> None:
    # Without --json: seconds since the start with milliseconds, the connection to the relay
    # said as "to" (we dialed it), the relayed address on the line after "dial me at:", and
    # Ctrl-C ends with an "interrupted" line and exit 130.
    _relay, relay_addr = start_relay(script)
    relay_id = relay_addr.rsplit("/p2p/", 1)[1]
    program = subprocess.Popen(
        [
            *(sys.executable, "-u", str(EXAMPLES / "listener.py")),
            *("--relay", relay_addr, "--listen", ANY_LOOPBACK),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # A listener that hangs on Ctrl-C is killed, which ends the reads below.
    killer = threading.Timer(STEP, program.kill)
    killer.start()
    try:
        assert program.stdout is not None
        assert program.stderr is not None
        lines: list[str] = []
        for line in program.stdout:
            lines.append(line.rstrip("\n"))
            if " dial me at:" in line:
                program.send_signal(signal.SIGINT)
        # The rest is read from the same stream object, not with communicate(): that reads the
        # pipe itself, and whatever this stream had already buffered would be lost (the
        # relayed address, which print() writes before its newline, comes with the "dial me
        # at:" line when the read falls between the two writes; what communicate() then
        # got began with the lone newline, a blank line).
        err = program.stderr.read()
        program.wait(timeout=STEP)
    finally:
        killer.cancel()
        if program.poll() is None:
            program.kill()
            program.wait()
    assert program.returncode == EXIT_INTERRUPTED, (lines, err)
    assert err == ""
    stamped = [line for line in lines if not line.startswith("    ")]
    assert all(re.match(r"^\[ *\d+\.\d{3} s\] ", line) for line in stamped), lines
    assert any(f"outbound direct connection to {relay_id} (" in line for line in lines), lines
    (reserved,) = [i for i, line in enumerate(lines) if " dial me at:" in line]
    assert re.fullmatch(
        rf"    /ip4/127\.0\.0\.1/tcp/\d+/p2p/{relay_id}/p2p-circuit/p2p/\w+", lines[reserved + 1]
    ), lines
    assert re.match(r"^\[ *\d+\.\d{3} s\] interrupted$", lines[-1]), lines


@pytest.mark.parametrize("role", ["relay", "listener", "dialer"])
def test_key_file_in_a_missing_directory(role: str, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    args = {
        "relay": ["--listen", ANY_LOOPBACK],
        "listener": ["--relay", f"/ip4/127.0.0.1/tcp/1/p2p/{OTHER_PEER}"],
        "dialer": [
            "--target",
            f"/ip4/127.0.0.1/tcp/1/p2p/{OTHER_PEER}/p2p-circuit/p2p/{ANOTHER_PEER}",
        ],
    }[role]
    line = run_to_error(role, *args, "--key-file", str(missing / "k"))
    assert f"the directory '{missing}' does not exist" in line
    assert not (tmp_path / "nonexistent").exists()


def test_log_level_debug_shows_our_loggers_only(silent_relay: str) -> None:
    # Our loggers' lines on stderr (INFO and DEBUG ones), before the one error line; none from
    # multiaddr, which logs every parse at DEBUG when the root logger is set to it.
    done = subprocess.run(
        [
            *(sys.executable, str(EXAMPLES / "listener.py"), "--relay", silent_relay),
            *("--connect-timeout", "1", "--log-level", "debug"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STEP,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    *logs, error = done.stderr.splitlines()
    assert error.startswith("listener: error: cannot reserve on relay"), error
    assert logs, done.stderr
    assert all(line.split(" ")[2] in ("DEBUG", "INFO") for line in logs), logs
    names = {line.split(" ")[3].rstrip(":") for line in logs}
    assert all(name == "libp2p" or name.startswith("libp2p.") for name in names), names


def test_reservation_ttl(script: ScriptFactory) -> None:
    relay = script("relay", "--listen", ANY_LOOPBACK, "--reservation-ttl", "30")
    ready = relay.expect("ready")
    (relay_addr, *_) = [a for a in ready["addrs"] if a.startswith("/ip4/127.0.0.1/")]
    listener = script("listener", "--relay", relay_addr, "--listen", ANY_LOOPBACK)
    reservation = listener.expect("reservation")
    # The relay grants 30 s instead of its default hour.
    assert 0 < reservation["expires"] - time.time() <= 31, reservation
    relay.expect("reservation")
