"""The AutoNAT client's state, without I/O: what we believe about our reachability, how sure
we are, and when to ask again.

Each answer from a server is *evidence*:

* ``OK`` -- the server dialed us back: evidence that we are :attr:`~Reachability.PUBLIC`;
* ``E_DIAL_ERROR`` -- it tried and failed: evidence that we are :attr:`~Reachability.PRIVATE`;
* anything else (``E_DIAL_REFUSED``, ``E_BAD_REQUEST``, ``E_INTERNAL_ERROR``, an ``OK``
  without a valid address, no answer at all) says nothing about us: no evidence.

Confidence works as in go and rust: evidence that agrees with the current status raises
``confidence`` by one, up to ``confidence_max`` (3). Evidence that disagrees lowers it by one;
only evidence that disagrees while confidence is already 0 flips the status (and confidence
starts again at 0). From :attr:`~Reachability.UNKNOWN` (confidence 0) the first evidence
flips at once. A single odd answer therefore never flips a confident status: it takes
``confidence + 1`` disagreeing answers in a row. No evidence changes nothing.

Scheduling (:attr:`ReachabilityTracker.next_check`), as go does:

* the first probe ``boot_delay`` after start;
* after a result: ``retry_interval`` while the status is unknown or confidence is below the
  maximum, ``refresh_interval`` once the status is known with full confidence;
* when there is no server to ask (or nothing to ask about): ``retry_interval``, or sooner
  when a server appears (:meth:`server_available`);
* when our address candidates change: at once (after the boot delay), and a full confidence
  drops by one so that confirmation comes at the retry pace (go does the same).

A server is not asked again within ``server_throttle`` of the last time
(:meth:`pick_server`). Time is passed in (``now``); the driver uses ``trio.current_time()``.
"""

from __future__ import annotations

from collections.abc import Iterable

from multiaddr import Multiaddr

from ...peer.id import PeerID
from .config import AutoNATClientConfig
from .events import Reachability, ReachabilityChanged, ReachabilityProbed
from .protocol import DialResponse, ResponseStatus

__all__ = ["ReachabilityTracker", "evidence_of"]


def evidence_of(response: DialResponse | None) -> Reachability | None:
    """What a server's answer says about us: ``PUBLIC``, ``PRIVATE``, or ``None`` (nothing)."""
    if response is None:
        return None
    if response.status is ResponseStatus.OK:
        return Reachability.PUBLIC if response.addr is not None else None
    if response.status is ResponseStatus.E_DIAL_ERROR:
        return Reachability.PRIVATE
    return None


class ReachabilityTracker:
    """Reachability status, confidence and probe schedule of one host."""

    def __init__(self, config: AutoNATClientConfig | None = None, *, now: float) -> None:
        self.config = config or AutoNATClientConfig()
        #: What we believe.
        self.status = Reachability.UNKNOWN
        #: How sure we are: 0 ... ``confidence_max``.
        self.confidence = 0
        #: The address a server last reached us at, while :attr:`status` is ``PUBLIC``.
        self.public_addr: Multiaddr | None = None
        #: When the next probe is due.
        self.next_check = now + self.config.boot_delay
        self._boot_end = self.next_check
        self._last_asked: dict[PeerID, float] = {}
        self._waiting_for_server = False

    # -- scheduling -----------------------------------------------------------------------

    def due(self, now: float) -> bool:
        """Whether a probe should start now."""
        return now >= self.next_check

    def pick_server(self, servers: Iterable[PeerID], now: float) -> PeerID | None:
        """The server to ask: one not asked within ``server_throttle``, the least recently
        asked first (never-asked before all). ``None`` if every one was asked too recently."""
        cutoff = now - self.config.server_throttle
        best: PeerID | None = None
        best_time = float("inf")
        for server in servers:
            last = self._last_asked.get(server)
            if last is not None and last > cutoff:
                continue
            when = -float("inf") if last is None else last
            if best is None or when < best_time:
                best, best_time = server, when
        return best

    def probe_started(self, server: PeerID, now: float) -> None:
        """A request to ``server`` is going out now."""
        self._last_asked[server] = now
        self._waiting_for_server = False
        # Until the result is in, do not start another one.
        self.next_check = now + self.config.retry_interval
        cutoff = now - self.config.server_throttle
        for peer in [p for p, t in self._last_asked.items() if t <= cutoff]:
            del self._last_asked[peer]

    def no_server(self, now: float) -> None:
        """Nobody to ask (or nothing to ask about) now: try again later."""
        self._waiting_for_server = True
        self.next_check = now + self.config.retry_interval

    def server_available(self, now: float) -> None:
        """A peer that serves AutoNAT connected: if we were waiting for one, ask soon."""
        if self._waiting_for_server:
            self._waiting_for_server = False
            self.next_check = min(self.next_check, max(now, self._boot_end))

    def addresses_changed(self, now: float) -> None:
        """Our address candidates changed: what we knew may no longer hold."""
        if self.confidence == self.config.confidence_max and self.confidence > 0:
            self.confidence -= 1
        self.next_check = min(self.next_check, max(now, self._boot_end))

    # -- results --------------------------------------------------------------------------

    def record(
        self,
        server: PeerID,
        response: DialResponse | None,
        now: float,
        *,
        detail: str = "",
    ) -> list[ReachabilityProbed | ReachabilityChanged]:
        """Take in the outcome of asking ``server`` (``response=None``: no answer, because
        of ``detail``). Returns the events to publish: always a :class:`ReachabilityProbed`,
        then a :class:`ReachabilityChanged` if the status flipped."""
        evidence = evidence_of(response)
        changed: ReachabilityChanged | None = None
        if evidence is not None:
            if evidence is self.status:
                self.confidence = min(self.confidence + 1, self.config.confidence_max)
            elif self.confidence > 0:
                self.confidence -= 1
            else:
                changed = ReachabilityChanged(
                    status=evidence,
                    previous=self.status,
                    confidence=0,
                    address=response.addr if response is not None else None,
                    server=server,
                )
                self.status = evidence
            if evidence is Reachability.PUBLIC and self.status is Reachability.PUBLIC:
                assert response is not None
                self.public_addr = response.addr
            elif self.status is not Reachability.PUBLIC:
                self.public_addr = None
        sure = (
            self.status is not Reachability.UNKNOWN
            and self.confidence >= self.config.confidence_max
        )
        interval = self.config.refresh_interval if sure else self.config.retry_interval
        self.next_check = now + interval
        if response is not None:
            detail = detail or response.text
        probed = ReachabilityProbed(
            server=server,
            response=response.status if response is not None else None,
            address=response.addr if response is not None else None,
            detail=detail,
            reachability=self.status,
            confidence=self.confidence,
        )
        return [probed] if changed is None else [probed, changed]
