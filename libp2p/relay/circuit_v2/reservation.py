"""A reservation held on a relay, as the relay client sees it."""

from __future__ import annotations

from dataclasses import dataclass

from multiaddr import Multiaddr

from ...network.addrs import with_peer_id
from ...network.connection import ConnectionLimit
from ...peer.id import PeerID

__all__ = ["Reservation"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """A relay's promise to connect peers to us, until :attr:`expire`."""

    #: The relay.
    relay: PeerID
    #: Our addresses through this relay (``<relay addr>/p2p/<relay>/p2p-circuit``); append
    #: ``/p2p/<our id>`` to hand one to a dialer.
    addrs: tuple[Multiaddr, ...]
    #: Unix time (seconds) at which the reservation ends unless refreshed.
    expire: int
    #: The limits the relay applies to each circuit to us (``None``: unlimited).
    limit: ConnectionLimit | None
    #: Whether the relay sent a reservation voucher (verified: signed by the relay, for us).
    has_voucher: bool
    #: Us: the peer the relay keeps the slot for.
    peer: PeerID

    @property
    def dial_addrs(self) -> tuple[Multiaddr, ...]:
        """The addresses to hand a dialer: :attr:`addrs` with ``/p2p/<our id>`` appended."""
        return tuple(with_peer_id(a, self.peer) for a in self.addrs)
