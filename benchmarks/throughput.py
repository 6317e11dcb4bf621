"""Throughput only: ``benchmarks/run.py --only throughput`` (kept for the README's command).

    .venv/bin/python benchmarks/throughput.py [--mib 1024] [--runs 3] [--skip-js] [--quick]

See ``benchmarks/run.py`` for what is measured and how.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run

if __name__ == "__main__":
    sys.exit(trio.run(run.main, [*sys.argv[1:], "--only", "throughput"]))
