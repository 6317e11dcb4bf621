"""Peer identities: :class:`PeerID`, derived from a peer's public key."""

from .id import MAX_INLINE_KEY_LENGTH, InvalidPeerIDError, PeerID

__all__ = ["MAX_INLINE_KEY_LENGTH", "InvalidPeerIDError", "PeerID"]
