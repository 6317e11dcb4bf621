"""``python -m libp2p.perf``: see :mod:`libp2p.perf.cli`."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
