"""The demo (scripts/demo.py, what scripts/demo.sh runs after its set-up): three labelled,
interleaved programs, ending with the dialer's result; on loopback and in the NAT lab.

The same runs are what the docs' shown script output (docs/nat-traversal.rst, the blocks
marked ``.. output: <setting>``) is compared with: each run is made once per session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from scripts.screencast import NARROW_COLUMNS, read_cast, render_narrow_svg, render_svg
from tests.docs import shown_output
from tests.examples.conftest import ROOT
from tests.natlab.lab import require_lab

LABELLED = re.compile(r"^(demo|relay|listener|dialer) +\| ")


_RUNS: dict[tuple[str, ...], tuple[int, list[str], str]] = {}


def run_demo(*args: str) -> tuple[int, list[str], str]:
    """``scripts/demo.py --cast <file> args...``: its exit code, its output lines and the cast
    it recorded; made once per session for each ``args`` (the demo tests and the docs'
    comparison share the run)."""
    if args not in _RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            cast = Path(tmp) / "demo.cast"
            done = subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "demo.py"), "--cast", str(cast), *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.stderr == "", done.stderr
            _RUNS[args] = (done.returncode, done.stdout.splitlines(), cast.read_text("utf-8"))
    return _RUNS[args]


def check_shown(setting: str, lines: list[str]) -> None:
    """Every entry the docs show for ``setting`` is one the run printed (see
    tests/docs/shown_output.py: the words exact, what differs between runs a wildcard, the
    shown order kept)."""
    blocks = [block for block in shown_output.blocks() if block.setting == setting]
    assert blocks, f"the docs show no output marked {setting!r}"
    problems = shown_output.match_setting(blocks, shown_output.real_entries(lines))
    assert not problems, "\n".join(
        ["docs/nat-traversal.rst is out of date:", *problems, shown_output.HOW_TO_UPDATE]
    )


def check_labelled_and_interleaved(lines: list[str]) -> list[str]:
    """Every line labelled, all three programs there and interleaved; returns the labels."""
    assert lines, "no output"
    labels = []
    for line in lines:
        match = LABELLED.match(line)
        assert match, f"not labelled: {line!r}"
        labels.append(match.group(1))
    assert labels[0] == "demo"
    first = {label: labels.index(label) for label in ("relay", "listener", "dialer")}
    assert first["relay"] < first["listener"] < first["dialer"], labels
    # Interleaved: the relay and the listener still print after the dialer started.
    assert "relay" in labels[first["dialer"] :], labels
    assert "listener" in labels[first["dialer"] :], labels
    assert "Traceback" not in "\n".join(lines)
    return labels


def check_cast(cast: Path, lines: list[str], command: str) -> None:
    """The recording (``--cast``) is what was shown: an asciinema v2 header, the command, then
    every line in order at non-decreasing times; and it renders as animated SVGs, as wide as
    the recording and in the phone layout, with every row within its columns."""
    rows = [json.loads(row) for row in cast.read_text(encoding="utf-8").splitlines()]
    header, events = rows[0], rows[1:]
    assert header["version"] == 2
    assert header["title"] == command
    assert events[0] == [0.0, "o", f"$ {command}\r\n"]
    shown = [event[2] for event in events[1:]]
    assert shown == [f"{line}\r\n" for line in lines]
    times = [event[0] for event in events]
    assert times == sorted(times)
    recording = read_cast(cast)
    for svg, columns in (
        (render_svg(recording), recording.width),
        (render_narrow_svg(recording), NARROW_COLUMNS),
    ):
        tree = ElementTree.fromstring(svg)
        texts = tree.findall(".//{http://www.w3.org/2000/svg}text[@class='line']")
        rows = ["".join(t.itertext()) for t in texts]
        assert len(rows) >= len(lines) + 1  # the command, and every line (long ones wrapped)
        assert max(len(row) for row in rows) <= columns, rows


def test_demo_on_loopback(tmp_path: Path) -> None:
    cast = tmp_path / "demo.cast"
    code, lines, recorded = run_demo()
    cast.write_text(recorded, encoding="utf-8")
    assert code == 0, "\n".join(lines)
    check_cast(cast, lines, "python scripts/demo.py")
    check_labelled_and_interleaved(lines)
    text = "\n".join(lines)
    assert "echo over the relayed connection: ok" in text
    assert "echo over the direct connection: ok" in text
    assert re.match(
        r"^dialer +\| \[ *\d+\.\d{3} s\] result: direct connection (to|from) /ip4/127\.0\.0\.1/tcp/"
        r"\d+$",
        lines[-1],
    ), lines[-1]


@pytest.mark.natlab
@pytest.mark.parametrize(
    ("nat_b", "code"), [("eim", 0), ("symmetric", 1)], ids=["eim", "symmetric"]
)
def test_demo_in_the_nat_lab(nat_b: str, code: int) -> None:
    require_lab()
    got, lines, _cast = run_demo("--lab", "--nat-b", nat_b)
    assert got == code, "\n".join(lines)
    check_labelled_and_interleaved(lines)
    text = "\n".join(lines)
    assert "echo over the relayed connection: ok" in text
    if code == 0:
        # Through NAT B: the listener's public address is router B's.
        assert re.match(
            r"^dialer +\| \[ *\d+\.\d{3} s\] "
            r"result: direct connection to /ip4/198\.51\.100\.2/tcp/\d+$",
            lines[-1],
        ), lines[-1]
    else:
        assert re.match(
            r"^dialer +\| \[ *\d+\.\d{3} s\] result: no direct connection: all_attempts_failed",
            lines[-1],
        ), lines[-1]


def test_the_docs_show_what_the_demo_prints_on_loopback() -> None:
    code, lines, _cast = run_demo()
    assert code == 0, "\n".join(lines)
    check_shown("loopback", lines)


@pytest.mark.natlab
@pytest.mark.parametrize("nat_b", ["eim", "symmetric"])
def test_the_docs_show_what_the_demo_prints_in_the_nat_lab(nat_b: str) -> None:
    require_lab()
    _code, lines, _cast = run_demo("--lab", "--nat-b", nat_b)
    check_shown(f"lab-{nat_b}", lines)


def test_demo_in_the_lab_without_root_says_how_to_get_it() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the NAT lab is Linux only")
    argv = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--lab"]
    if os.geteuid() == 0:  # be nobody for this one
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, and no setpriv to drop root")
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "demo: --lab builds network namespaces and NATs, which needs root: run "
        "`sudo bash scripts/demo.sh --lab` (or the demo without --lab, on loopback)"
    ]
