"""Every code snippet that the docs include runs, on loopback, using only the public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.conftest import DOCS, ROOT

SNIPPETS = sorted((DOCS / "snippets").glob("*.py"))
# The public modules an application imports from (each re-exports its names in __all__).
PUBLIC = {"libp2p", "libp2p.relay.circuit_v2", "libp2p.host.autonat"}
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


@pytest.mark.parametrize("path", SNIPPETS, ids=[p.name for p in SNIPPETS])
def test_snippet_runs(path: Path, tmp_path: Path) -> None:
    # Run as a user would, from a fresh directory, against this checkout.
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{path.name} exited {result.returncode}:\n{result.stderr}"
    assert result.stdout.strip(), f"{path.name} printed nothing"
