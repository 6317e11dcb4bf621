"""Errors raised by the Noise layer, placed in the library's "whose fault is it" hierarchy.

* :class:`NoiseHandshakeError` (a :class:`~libp2p.exceptions.HandshakeError`): the remote
  failed the handshake -- a message that does not authenticate, a malformed payload, a bad
  identity signature, or a connection closed half-way. A dialed peer that proves a different
  identity raises :class:`~libp2p.exceptions.PeerIDMismatch` (also a ``HandshakeError``).
* :class:`NoiseTransportError` and its subclasses: after the handshake, the remote sent a
  frame that does not decrypt, or closed its side in the middle of a frame. These are
  :class:`~libp2p.exceptions.RemoteProtocolError` *and* :class:`trio.BrokenResourceError`, so
  code written against plain trio streams treats them as a broken stream.
* :class:`NonceExhausted`: one direction used up its 2**64 - 1 nonces. Unreachable in
  practice (it would take centuries of traffic), but the spec requires terminating first.
"""

from __future__ import annotations

import trio

from ...exceptions import HandshakeError, RemoteProtocolError, ResourceLimitExceeded, UnexpectedEOF

__all__ = [
    "DecryptionFailed",
    "NoiseHandshakeError",
    "NoiseTransportError",
    "NonceExhausted",
    "TruncatedFrame",
]


class NoiseHandshakeError(HandshakeError):
    """The Noise XX handshake with the remote failed; the connection must be closed."""


class NoiseTransportError(RemoteProtocolError, trio.BrokenResourceError):
    """The remote sent transport data that breaks the Noise channel; it stays broken."""


class DecryptionFailed(NoiseTransportError):
    """A ciphertext did not authenticate (wrong key, wrong nonce, or tampered bytes)."""


class TruncatedFrame(NoiseTransportError, UnexpectedEOF):
    """The remote closed its side of the connection in the middle of a Noise frame."""


class NonceExhausted(ResourceLimitExceeded):
    """A cipher state reached the reserved nonce 2**64 - 1; the session must be closed."""
