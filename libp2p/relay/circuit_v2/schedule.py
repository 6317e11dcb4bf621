"""When the relay client reserves, refreshes and retries: I/O-free cores that take ``now``.

:class:`Backoff` is the retry delay shared by the relay client and auto-relay: it doubles
after each failure up to a cap, and starts over after a success.

:class:`RefreshSchedule` is one maintained reservation's timetable. After a reservation is
made the next ``RESERVE`` is due at three quarters of its remaining lifetime (never sooner
than :data:`MIN_REFRESH`), so that a refresh lost to a slow relay still has a quarter of the
lifetime to be retried in. A failed attempt is retried after the backoff's delay; a
reservation whose lifetime passed without a successful refresh has expired, and the client
withdraws its addresses. Losing the connection to the relay makes the next attempt due at
once (then backing off if that fails too).

Both take times from the caller (``trio.current_time()`` in the client's driver), so tests
pass them in exactly.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BACKOFF_INITIAL", "BACKOFF_MAX", "MIN_REFRESH", "Backoff", "RefreshSchedule"]

#: First retry delay after a failed reservation attempt (seconds).
BACKOFF_INITIAL: Final = 1.0
#: Largest retry delay (seconds).
BACKOFF_MAX: Final = 60.0
#: Never refresh sooner than this after a reservation was made (seconds).
MIN_REFRESH: Final = 5.0
#: Fraction of the remaining lifetime after which a reservation is refreshed.
REFRESH_AT: Final = 0.75


class Backoff:
    """Exponential retry delays: ``initial``, then doubled after each failure up to ``maximum``."""

    def __init__(
        self,
        initial: float = BACKOFF_INITIAL,
        maximum: float = BACKOFF_MAX,
        factor: float = 2.0,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._delay = initial

    @property
    def delay(self) -> float:
        """The delay the next failure will wait."""
        return self._delay

    def failed(self) -> float:
        """Record a failure: returns how long to wait before the next attempt."""
        delay = self._delay
        self._delay = min(self._delay * self.factor, self.maximum)
        return delay

    def succeeded(self) -> None:
        """Record a success: the next failure waits ``initial`` again."""
        self._delay = self.initial


class RefreshSchedule:
    """The timetable of one maintained reservation (see the module docstring).

    ``next_attempt`` is when to send the next ``RESERVE`` (``now`` at first);
    ``expires_at`` when the current reservation ends (``None`` while none is held).
    """

    def __init__(self, now: float, backoff: Backoff | None = None) -> None:
        self.backoff = backoff if backoff is not None else Backoff()
        self.next_attempt = now
        self.expires_at: float | None = None

    def reserved(self, now: float, lifetime: float) -> float:
        """A reservation lasting ``lifetime`` more seconds was made (or refreshed) at ``now``.

        Returns when to refresh it.
        """
        self.backoff.succeeded()
        self.expires_at = now + lifetime
        self.next_attempt = now + max(lifetime * REFRESH_AT, MIN_REFRESH)
        return self.next_attempt

    def failed(self, now: float) -> float:
        """An attempt failed at ``now``: returns the delay before the next one."""
        delay = self.backoff.failed()
        self.next_attempt = now + delay
        return delay

    def connection_lost(self, now: float) -> None:
        """The connection to the relay closed: the reservation is gone, retry at once."""
        self.expires_at = None
        self.next_attempt = now

    def expired(self, now: float) -> bool:
        """Whether the reservation held has run out at ``now`` (then it is forgotten)."""
        if self.expires_at is not None and now >= self.expires_at:
            self.expires_at = None
            return True
        return False
