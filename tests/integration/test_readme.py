"""The README's example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def test_readme_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no Python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rtt [")


def test_every_readme_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    outputs = []
    for i, block in enumerate(blocks):
        script = tmp_path / f"example{i}.py"
        script.write_text(block)
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, (i, done.stderr)
        outputs.append(done.stdout)
    # The hole-punching example ends on a direct connection.
    assert outputs[2].startswith("HolePunchSucceeded /ip4/127.0.0.1/tcp/"), outputs[2]


# The pages that tell a user what to run. A fresh shell in a fresh clone has no virtual
# environment active: `python examples/nat/relay.py` there is the system Python, without the
# library or its dependencies (ModuleNotFoundError). Commands must name the project's venv
# interpreter, or come after an activation step on the same page.
COMMAND_PAGES = [
    ROOT / "README.md",
    ROOT / "examples" / "nat" / "README.md",
    ROOT / "docs" / "nat-traversal.rst",
]
# A Python interpreter run on one of the project's files or modules.
_PYTHON_COMMAND = re.compile(
    r"(?P<interpreter>[\w./~-]*python[\d.]*)\s+"
    r"(?P<target>(?:examples|docs|scripts|benchmarks|tests)/\S+|-m\s+(?:libp2p|pytest)\S*)"
)
_ACTIVATE = re.compile(r"(?:^|[\s`$])(?:source|\.)\s+\.venv/bin/activate\b", re.M)
_SETUP = re.compile(r"bash scripts/(?:setup|demo)\.sh")


def commands_without_the_venv(text: str) -> list[str]:
    """The project commands in ``text`` run by an interpreter other than ``.venv/bin/python``
    and not preceded (anywhere earlier in the text) by ``source .venv/bin/activate``."""
    bad = []
    for match in _PYTHON_COMMAND.finditer(text):
        if match.group("interpreter") == ".venv/bin/python":
            continue
        if _ACTIVATE.search(text, 0, match.start()):
            continue
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.end())
        bad.append(text[line_start : line_end if line_end >= 0 else None].strip())
    return bad


def test_the_venv_check_can_fail() -> None:
    assert commands_without_the_venv("run:\n\n    python examples/nat/relay.py\n") == [
        "python examples/nat/relay.py"
    ]
    assert commands_without_the_venv("`python3 -m libp2p.perf server`") != []
    assert commands_without_the_venv("$ .venv/bin/python examples/nat/relay.py") == []
    assert commands_without_the_venv("source .venv/bin/activate\npython examples/a.py") == []
    # An activation after the command does not help it.
    assert commands_without_the_venv("python examples/a.py\n. .venv/bin/activate") != []
    # Making the venv is not running the project.
    assert commands_without_the_venv("python3 -m venv .venv") == []


@pytest.mark.parametrize("page", COMMAND_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_shown_use_the_projects_venv(page: Path) -> None:
    text = page.read_text()
    commands = list(_PYTHON_COMMAND.finditer(text))
    assert len(commands) >= 3, f"{page}: expected the example commands, found {len(commands)}"
    assert commands_without_the_venv(text) == [], f"{page}: run without the venv"
    # The venv those commands use is made by a set-up command the page shows first.
    setup = _SETUP.search(text)
    assert setup is not None, f"{page}: no set-up command (bash scripts/setup.sh)"
    first = min(m.start() for m in commands)
    assert setup.start() < first, f"{page}: the set-up comes after the first command"
