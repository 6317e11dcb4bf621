"""Every code snippet that the docs include runs, on loopback, using only the public API."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.docs.conftest import DOCS, ROOT
from tests.docs.shown_output import line_pattern

SNIPPETS = sorted((DOCS / "snippets").glob("*.py"))
# The public modules an application imports from (each re-exports its names in __all__).
PUBLIC = {"libp2p", "libp2p.relay.circuit_v2", "libp2p.host.autonat", "libp2p.console"}
TIMEOUT = 60.0


@pytest.mark.parametrize("path", SNIPPETS, ids=[p.name for p in SNIPPETS])
def test_snippet_uses_only_the_public_api(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("libp2p"):
            assert node.module in PUBLIC, f"{path.name}: from {node.module} import ..."
            for alias in node.names:
                module = sys.modules.get(node.module) or __import__(node.module, fromlist=["_"])
                assert alias.name in module.__all__, f"{path.name}: {alias.name} is not public"
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("libp2p.") for a in node.names), path.name


_RUNS: dict[Path, subprocess.CompletedProcess[str]] = {}


def run_snippet(path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``path`` as a user would, from a fresh directory, against this checkout (once per
    session: the output test reuses the run)."""
    if path not in _RUNS:
        with tempfile.TemporaryDirectory() as cwd:
            env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
            _RUNS[path] = subprocess.run(
                [sys.executable, str(path)],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
    return _RUNS[path]


@pytest.mark.parametrize("path", SNIPPETS, ids=[p.name for p in SNIPPETS])
def test_snippet_runs(path: Path) -> None:
    result = run_snippet(path)
    assert result.returncode == 0, f"{path.name} exited {result.returncode}:\n{result.stderr}"
    assert result.stdout.strip(), f"{path.name} printed nothing"


# The page shows what a snippet prints as a text block that starts with the command.
_SHOWN = re.compile(
    r"^\.\. code-block:: text\n\n   \$ \.venv/bin/python docs/snippets/(?P<name>\w+\.py)\n"
    r"(?P<output>(?:   .*\n)+)",
    re.M,
)


def shown_line_pattern(line: str) -> re.Pattern[str]:
    """What changes from run to run is a wildcard (ports, durations, times, peer IDs, which
    the page shortens with an ellipsis; tests/docs/shown_output.py says which); every other
    word and number is exact (``attempt 0``, ``60 s``)."""
    return line_pattern(line)


def shown_outputs() -> list[tuple[str, list[str]]]:
    text = (DOCS / "nat-traversal.rst").read_text()
    return [
        (m.group("name"), [line[3:] for line in m.group("output").splitlines()])
        for m in _SHOWN.finditer(text)
    ]


def test_shown_line_patterns_can_fail() -> None:
    pattern = shown_line_pattern("direct connection to /ip4/127.0.0.1/tcp/32947 on attempt 0")
    assert pattern.fullmatch("direct connection to /ip4/127.0.0.1/tcp/40001 on attempt 0")
    assert not pattern.fullmatch("direct connection to /ip4/127.0.0.1/tcp/40001 on attempt x")
    assert not pattern.fullmatch("direct connection to /ip4/127.0.0.1/tcp/40001 on attempt 1")
    limits = shown_line_pattern("limited: True - 60 s, 4096 bytes per direction")
    assert not limits.fullmatch("limited: True - 120 s, 4096 bytes per direction")
    peer = shown_line_pattern("refused: the only connection to 12D3KooWGSX8… is relayed")
    assert peer.fullmatch("refused: the only connection to 12D3KooWHoZ8dxLYZgra is relayed")
    assert not peer.fullmatch("refused: the connection to 12D3KooWHoZ8dxLYZgra is relayed")


def test_every_snippet_output_shown_is_what_it_prints() -> None:
    shown = shown_outputs()
    assert {name for name, _ in shown} >= {"hole_punch.py", "switch.py", "limits.py"}, shown
    for name, lines in shown:
        result = run_snippet(DOCS / "snippets" / name)
        assert result.returncode == 0, f"{name} exited {result.returncode}:\n{result.stderr}"
        printed = result.stdout.splitlines()
        assert len(printed) == len(lines), (name, lines, printed)
        for want, got in zip(lines, printed, strict=True):
            assert shown_line_pattern(want).fullmatch(got), f"{name}: {want!r} != {got!r}"
