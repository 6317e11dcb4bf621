"""Noise XX (``/noise``): the libp2p secure channel.

Layers, bottom up (each module opens with its own theory of operation):

* :mod:`.core` -- the Noise Protocol Framework objects for
  ``Noise_XX_25519_ChaChaPoly_SHA256`` (``CipherState``, ``SymmetricState``,
  ``HandshakeState``), sans-I/O and checked against the cacophony test vectors.
* :mod:`.handshake` -- the libp2p rules on top: the signed identity payload, peer ID checks
  and early muxer negotiation (:class:`Libp2pNoiseHandshake`), still sans-I/O.
* :mod:`.transport` -- framing and AEAD for the data phase (:class:`NoiseTransport`).
* :mod:`.session` -- the trio driver :func:`noise_handshake` and the resulting
  :class:`NoiseSession` stream.

Typical use (the upgrader does this after multistream-select picked :data:`PROTOCOL_ID`)::

    session = await noise_handshake(stream, identity_key, initiator=True,
                                    expected_peer=peer_id, muxers=["/yamux/1.0.0"])
    session.remote_peer, session.negotiated_muxer
"""

from .core import (
    MAX_MESSAGE_SIZE,
    PROTOCOL_NAME,
    CipherState,
    HandshakeState,
    SymmetricState,
)
from .errors import (
    DecryptionFailed,
    NoiseHandshakeError,
    NoiseTransportError,
    NonceExhausted,
    TruncatedFrame,
)
from .handshake import (
    SIGNATURE_PREFIX,
    HandshakePayload,
    HandshakeResult,
    Libp2pNoiseHandshake,
    negotiate_muxer,
)
from .session import NoiseSession, noise_handshake
from .transport import MAX_PLAINTEXT_SIZE, NoiseTransport

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_PLAINTEXT_SIZE",
    "PROTOCOL_ID",
    "PROTOCOL_NAME",
    "SIGNATURE_PREFIX",
    "CipherState",
    "DecryptionFailed",
    "HandshakePayload",
    "HandshakeResult",
    "HandshakeState",
    "Libp2pNoiseHandshake",
    "NoiseHandshakeError",
    "NoiseSession",
    "NoiseTransport",
    "NoiseTransportError",
    "NonceExhausted",
    "SymmetricState",
    "TruncatedFrame",
    "negotiate_muxer",
    "noise_handshake",
]

#: The protocol ID negotiated with multistream-select on a raw connection.
PROTOCOL_ID = "/noise"
