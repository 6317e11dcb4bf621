"""Fixtures for the documentation tests: one Sphinx build per test session.

The build runs with warnings as errors (``-W``) into a temporary directory, so a test run
is self-sufficient and never touches ``docs/_build``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BUILD_TIMEOUT = 600.0


@pytest.fixture(scope="session")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML build of ``docs/``, made with ``sphinx-build -W --keep-going``."""
    if importlib.util.find_spec("sphinx") is None:
        skip_or_fail("Sphinx is not installed (pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("docs-html")
    doctrees = tmp_path_factory.mktemp("docs-doctrees")
    argv = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html"]
    argv += ["-d", str(doctrees), "-q", str(DOCS), str(out)]
    result = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"sphinx-build -W failed (exit {result.returncode}):\n{result.stderr}{result.stdout}"
        )
    return out
