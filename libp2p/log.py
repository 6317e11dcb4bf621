"""Logging switches that govern this library's loggers only.

Every logger of the library lives under ``libp2p`` (``logging.getLogger(__name__)``).
:func:`configure_logging` gives that hierarchy a level and a handler of its own and leaves
the root logger alone, so a command-line ``--log-level DEBUG`` shows our debug lines without
the debug output of third-party packages (``multiaddr`` logs every parse at DEBUG).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["LOGGER_NAME", "LOG_LEVELS", "configure_logging"]

#: The root of the library's logger hierarchy.
LOGGER_NAME = "libp2p"
#: The level names a ``--log-level`` switch accepts.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _OurHandler(logging.StreamHandler[TextIO]):
    """Marks the handler :func:`configure_logging` installed, so a second call replaces it."""


def configure_logging(level: str | int = "WARNING", stream: TextIO | None = None) -> None:
    """Send the ``libp2p`` loggers' records at ``level`` and above to ``stream`` (stderr by
    default), one line each, and stop them from reaching the root logger's handlers.

    Nothing outside the ``libp2p`` hierarchy changes: the root logger and other packages'
    loggers keep their levels and handlers. Calling it again replaces the handler it added.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if isinstance(h, _OurHandler)]:
        logger.removeHandler(old)
    handler = _OurHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    # Our handler prints them; the root's (if an application set one up) would print twice.
    logger.propagate = False
