"""The AutoNAT v2 client's judgement, without I/O: what a server's answers are worth.

A server's word is not enough: a server can answer ``OK`` without having dialed at all. What
the client trusts is the nonce: it drew 64 random bits for the request, and only a server
that really connected to the tested address can hand them back on a dial-back stream. So
the outcome of a check (:func:`interpret`) combines the response with what the dial-back
handler saw (:class:`DialBackSeen`):

====================================  ========================================  ==========
response                              dial-back with our nonce                  outcome
====================================  ========================================  ==========
``OK`` / ``OK``                       fresh, consistent with the address        REACHABLE
``OK`` / ``OK``                       none, stale or inconsistent               ERROR
``OK`` / ``E_DIAL_BACK_ERROR``        any (``verified`` says if it came)        DIAL_BACK_ERROR
``OK`` / ``E_DIAL_ERROR``             none                                      UNREACHABLE
``OK`` / ``E_DIAL_ERROR``             arrived (the server contradicts itself)   ERROR
``OK`` with ``addrIdx`` out of range  --                                        ERROR
``E_DIAL_REFUSED``                    --                                        REFUSED
``E_REQUEST_REJECTED``                --                                        REJECTED
``E_INTERNAL_ERROR``                  --                                        ERROR
====================================  ========================================  ==========

*Fresh* means the nonce came on a connection the server opened to us (inbound), direct, and
not the connection the request went over: a server that sends the nonce back over that
connection proves nothing about the address. *Consistent* (:func:`consistent_local_addr`)
means our end of that connection has the tested address's shape -- same IP family, same
transport stack -- as go checks: the port may differ, because a NAT or a port mapping
translates it; the transport may not (a server claiming a TCP address while reaching us over
another transport).

The amplification guard costs the client bandwidth: :func:`dial_data_decision` agrees to
pay only for an address of the request, only once, and only up to a cap.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from multiaddr import Multiaddr

from ....peer.id import PeerID
from .protocol import DialDataRequest, DialResponse, DialStatus, ResponseStatus

__all__ = [
    "AddressCheck",
    "CheckOutcome",
    "DialBackSeen",
    "consistent_local_addr",
    "dial_data_chunks",
    "dial_data_decision",
    "interpret",
]


class CheckOutcome(enum.Enum):
    """What one AutoNAT v2 check found out about an address."""

    #: The server dialed the address and our nonce came back on that new connection.
    REACHABLE = "reachable"
    #: The server chose the address and could not connect to it.
    UNREACHABLE = "unreachable"
    #: The server connected but says delivering the nonce failed (``verified`` tells
    #: whether the nonce reached us anyway).
    DIAL_BACK_ERROR = "dial-back-error"
    #: The server would not dial any of the addresses (``E_DIAL_REFUSED``).
    REFUSED = "refused"
    #: The server did not consider the request (``E_REQUEST_REJECTED``: rate limits).
    REJECTED = "rejected"
    #: Nothing learned: internal error, a malformed or contradictory answer, a claim the
    #: nonce does not back, a reset, a timeout, or dial data we declined to send.
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class AddressCheck:
    """The result of one AutoNAT v2 check (:meth:`.AutoNATv2Client.check`)."""

    #: The server asked.
    server: PeerID
    #: The address the server chose (by ``addrIdx``), when it said which.
    addr: Multiaddr | None
    outcome: CheckOutcome
    #: True when our nonce came back on a fresh connection consistent with :attr:`addr`.
    verified: bool
    #: Dial data bytes we sent (the amplification guard's price).
    dial_data: int
    #: Why, in words (empty when nothing needs saying).
    detail: str
    #: Seconds from the start of the check to its end.
    elapsed: float


@dataclass(frozen=True, slots=True)
class DialBackSeen:
    """A dial-back stream that carried our nonce, as the handler saw it."""

    #: Our end of the connection it came on.
    local_addr: Multiaddr | None
    #: Who dialed (the server may use a throwaway identity).
    remote_peer: PeerID
    #: Inbound, direct, and not the connection the request went over.
    fresh: bool


def dial_data_decision(
    request: DialDataRequest, addrs: tuple[Multiaddr, ...], *, max_dial_data: int
) -> str | None:
    """``None`` if we pay the dial data ``request`` asks, else why we decline."""
    if request.addr_idx >= len(addrs):
        return f"dial data asked for address #{request.addr_idx} of {len(addrs)}"
    if request.num_bytes > max_dial_data:
        return f"server asked {request.num_bytes} bytes of dial data (we pay up to {max_dial_data})"
    return None


def dial_data_chunks(num_bytes: int, chunk: int) -> list[int]:
    """Sizes of the ``DialDataResponse`` chunks that make up ``num_bytes``."""
    full, rest = divmod(num_bytes, chunk)
    return [chunk] * full + ([rest] if rest else [])


_FAMILY = {"ip4": "ip4", "ip6": "ip6", "dns4": "ip4", "dns6": "ip6", "dns": "ip", "dnsaddr": "ip"}


def _shape(addr: Multiaddr) -> list[str]:
    names = [proto.name for proto in addr.protocols()]
    while names and names[-1] in ("p2p", "certhash"):
        names.pop()
    return names


def consistent_local_addr(local: Multiaddr | None, tested: Multiaddr) -> bool:
    """True when a connection whose local end is ``local`` can be one made to ``tested``:
    same IP family and the same transport protocols (ports and IPs may differ: NATs)."""
    if local is None:
        return False
    ours, theirs = _shape(local), _shape(tested)
    if len(ours) != len(theirs) or not ours:
        return False
    family = _FAMILY.get(theirs[0])
    if family is None or ours[0] not in ("ip4", "ip6"):
        return False
    if family != "ip" and family != ours[0]:
        return False
    return ours[1:] == theirs[1:]


def interpret(
    response: DialResponse, addrs: tuple[Multiaddr, ...], seen: DialBackSeen | None
) -> tuple[CheckOutcome, Multiaddr | None, bool, str]:
    """The outcome of a check from its ``response`` and the dial-back ``seen`` (``None``:
    none with our nonce): ``(outcome, chosen address, verified, detail)``."""
    if response.status is ResponseStatus.E_DIAL_REFUSED:
        return CheckOutcome.REFUSED, None, False, "server refused to dial any address"
    if response.status is ResponseStatus.E_REQUEST_REJECTED:
        return CheckOutcome.REJECTED, None, False, "server rejected the request"
    if response.status is ResponseStatus.E_INTERNAL_ERROR:
        return CheckOutcome.ERROR, None, False, "server reported an internal error"
    if response.addr_idx >= len(addrs):
        detail = f"server answered for address #{response.addr_idx} of {len(addrs)}"
        return CheckOutcome.ERROR, None, False, detail
    addr = addrs[response.addr_idx]
    verified = seen is not None and seen.fresh and consistent_local_addr(seen.local_addr, addr)
    if response.dial_status is DialStatus.OK:
        if verified:
            return CheckOutcome.REACHABLE, addr, True, ""
        if seen is None:
            detail = "server claims a dial-back but our nonce never arrived"
        elif not seen.fresh:
            detail = "our nonce came back on a connection the server did not open for it"
        else:
            detail = (
                f"our nonce came back on a connection from {seen.local_addr}, "
                f"inconsistent with {addr}"
            )
        return CheckOutcome.ERROR, addr, False, detail
    if response.dial_status is DialStatus.E_DIAL_BACK_ERROR:
        detail = "server connected but could not deliver the nonce"
        if verified:
            detail = "server reports a dial-back error, but our nonce arrived"
        return CheckOutcome.DIAL_BACK_ERROR, addr, verified, detail
    if response.dial_status is DialStatus.E_DIAL_ERROR:
        if seen is not None:
            detail = "server reports a dial error, but our nonce arrived"
            return CheckOutcome.ERROR, addr, verified, detail
        return CheckOutcome.UNREACHABLE, addr, False, "server could not connect"
    return CheckOutcome.ERROR, addr, False, "server answered OK with dial status UNUSED"
