"""hole-punch-client's contract pieces that need no network: settings from the environment,
the result line and its strict parser, the console scripts."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from multiaddr import Multiaddr

from libp2p.exceptions import LocalUsageError
from libp2p.interop.hole_punch_client import (
    LISTEN_ADDR,
    LISTEN_ADDR6,
    ContractConfigError,
    ContractSettings,
    _listen_for,
    parse_report,
    report_line,
)

ROOT = Path(__file__).resolve().parents[2]


def test_settings_from_env() -> None:
    settings = ContractSettings.from_env({"MODE": "dial", "TRANSPORT": "tcp"})
    assert settings == ContractSettings("dial", "tcp", "redis:6379")  # the suite's Redis
    env = {"MODE": "listen", "TRANSPORT": "tcp", "REDIS_ADDR": "198.51.100.10:7000"}
    assert ContractSettings.from_env(env).redis_addr == "198.51.100.10:7000"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRANSPORT": "tcp"}, "MODE must be"),
        ({"MODE": "relay", "TRANSPORT": "tcp"}, "MODE must be"),
        ({"MODE": "dial"}, "TRANSPORT is not set"),
        ({"MODE": "dial", "TRANSPORT": "quic"}, "TRANSPORT is 'quic'"),
        ({"MODE": "dial", "TRANSPORT": "tcp", "REDIS_ADDR": "redis"}, "REDIS_ADDR"),
    ],
)
def test_bad_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ContractConfigError, match=message):
        ContractSettings.from_env(env)


def test_report_line_is_compact_json_in_whole_milliseconds_rounded_down() -> None:
    # As rust (Duration::as_millis + serde_json) and go (Milliseconds + encoding/json) print.
    assert report_line(0.2019) == '{"rtt_to_holepunched_peer_millis":201}'
    assert report_line(0.0) == '{"rtt_to_holepunched_peer_millis":0}'
    assert parse_report(report_line(12.3456) + "\n") == 12345
    with pytest.raises(LocalUsageError):
        report_line(-0.001)
    with pytest.raises(LocalUsageError):
        report_line(float("nan"))


def test_parse_report_accepts_the_suite_format_with_spaces() -> None:
    assert parse_report('{ "rtt_to_holepunched_peer_millis": 12 }\n') == 12


@pytest.mark.parametrize(
    "stdout",
    [
        "",
        '{"rtt_to_holepunched_peer_millis":12}',  # no newline: not a whole line
        'hello\n{"rtt_to_holepunched_peer_millis":12}\n',  # something else on stdout
        '{"rtt_to_holepunched_peer_millis":12}\n\n',
        '{"rtt_to_holepunched_peer_millis":12.5}\n',
        '{"rtt_to_holepunched_peer_millis":-1}\n',
        '{"rtt_to_holepunched_peer_millis":true}\n',
        '{"rtt_to_holepunched_peer_millis":"12"}\n',
        '{"rtt_to_holepunched_peer_millis":12,"extra":1}\n',
        '{"rtt":12}\n',
        "[12]\n",
        "12\n",
    ],
)
def test_parse_report_is_strict(stdout: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with what is wrong
        parse_report(stdout)


def test_console_scripts_point_at_the_entry_points() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"hole-punch-client", "hole-punch-relay"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODE": "dial", "TRANSPORT": "quic"}, "speaks only 'tcp'"),
        ({"TRANSPORT": "tcp"}, "MODE must be"),
    ],
)
def test_the_client_refuses_what_it_cannot_do_with_exit_2(
    env: dict[str, str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "libp2p.interop.hole_punch_client"],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""  # stdout is for the result line only
    assert message in done.stderr


def test_a_client_listens_in_the_ip_version_of_the_relay() -> None:
    relay = "/tcp/4001/p2p/12D3KooWErt8ShhRJt72c26f6xdXN6ewYwfjNShBmr7acquCKX5N"
    assert _listen_for(Multiaddr(f"/ip4/198.51.100.10{relay}"), None) == [LISTEN_ADDR]
    assert _listen_for(Multiaddr(f"/ip6/2001:db8::10{relay}"), None) == [LISTEN_ADDR6]
    # Addresses given explicitly win.
    assert _listen_for(Multiaddr(f"/ip6/2001:db8::10{relay}"), ["/ip4/127.0.0.1/tcp/0"]) == [
        "/ip4/127.0.0.1/tcp/0"
    ]
