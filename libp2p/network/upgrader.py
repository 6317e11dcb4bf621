"""Turn any trio byte stream into an authenticated, multiplexed libp2p connection.

The pipeline (design §2)::

    raw stream -> multistream-select /noise -> Noise XX -> [multistream-select /yamux/1.0.0]
               -> Yamux session

The caller says which *role* we play; it is not inferred from who called ``connect()``. That
matters twice: after a TCP simultaneous open (a hole punch) both sides called ``connect()`` and
DCUtR assigns the roles, and a relayed connection runs this same pipeline over a hop or stop
stream rather than a socket.

As initiator we negotiate lazily: the multistream header, ``/noise`` and the first Noise message
leave together, saving a round trip. The muxer is negotiated inside the Noise handshake when both
sides offer one (inlined muxer negotiation); otherwise a second multistream-select runs over the
encrypted channel, and the initiator waits for its answer. Either way a peer with no muxer in
common fails the upgrade with :class:`~libp2p.exceptions.ProtocolNotSupported` before any
connection is reported. Every layer reads through one :class:`~libp2p.io.BufferedStream`, so bytes a
peer pipelines across a layer boundary are never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from .. import multistream
from ..crypto.keys import PrivateKey
from ..exceptions import ProtocolNotSupported
from ..io import BufferedStream
from ..peer.id import PeerID
from ..security.noise import NoiseSession, noise_handshake
from ..stream_muxer.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from ..stream_muxer.yamux import YamuxConfig, YamuxSession

__all__ = ["NOISE_PROTOCOL_ID", "UpgradedConnection", "upgrade"]

#: Security protocol negotiated with multistream-select on raw connections.
NOISE_PROTOCOL_ID = "/noise"


@dataclass(slots=True)
class UpgradedConnection:
    """The result of :func:`upgrade`: the secure channel and the (not yet running) muxer."""

    secure: NoiseSession
    muxer: YamuxSession
    initiator: bool
    #: True when the muxer was agreed inside the Noise handshake (no extra round trip).
    early_muxer: bool

    @property
    def remote_peer(self) -> PeerID:
        """The peer ID the remote proved in the handshake."""
        return self.secure.remote_peer


async def upgrade(
    raw: trio.abc.Stream,
    local_key: PrivateKey,
    *,
    initiator: bool,
    expected_peer: PeerID | None = None,
    yamux_config: YamuxConfig | None = None,
    inline_muxer: bool = True,
    role_rule: multistream.RoleRule | None = None,
    role_patience: float = 0.0,
) -> UpgradedConnection:
    """Secure and multiplex ``raw`` as ``initiator`` (or responder).

    ``expected_peer`` is checked against the identity the remote proves; a mismatch raises
    :class:`~libp2p.exceptions.PeerIDMismatch`. The returned muxer is not running yet: start
    it with ``await nursery.start(result.muxer.run)``. Wrap this call in a cancel scope
    (``trio.fail_after``) to bound the time a stalled peer can hold it.

    ``inline_muxer=False`` offers no muxer inside the Noise handshake (as rust-libp2p does),
    which forces the multistream-select muxer step.

    ``role_rule`` (a connection both ends opened, a hole punch): ``initiator`` is not used;
    the first multistream-select exchange settles the role as the rule says, waiting up to
    ``role_patience`` where it does (see :func:`multistream.negotiate_either_role
    <libp2p.multistream.negotiate_either_role>`), and Noise and Yamux follow it.
    :attr:`UpgradedConnection.initiator` tells the role we ended up with.
    """
    stream = BufferedStream.wrap(raw)
    channel: trio.abc.Stream
    if role_rule is not None:
        initiator, channel = await multistream.negotiate_either_role(
            stream, NOISE_PROTOCOL_ID, rule=role_rule, patience=role_patience
        )
    elif initiator:
        channel = await multistream.select_lazy(stream, NOISE_PROTOCOL_ID)
    else:
        await multistream.handle(stream, (NOISE_PROTOCOL_ID,))
        channel = stream
    secure = await noise_handshake(
        channel,
        local_key,
        initiator=initiator,
        expected_peer=expected_peer,
        muxers=(YAMUX_PROTOCOL_ID,) if inline_muxer else (),
    )
    offered = (YAMUX_PROTOCOL_ID,) if inline_muxer else ()
    if offered and secure.remote_muxers and secure.negotiated_muxer is None:
        # Both sides listed their muxers and no entry is common: multistream-select could
        # only fail the same way (the spec says MUST fail here).
        await trio.aclose_forcefully(secure)
        raise ProtocolNotSupported(
            f"no stream muxer in common with {secure.remote_peer}: we support "
            f"{list(offered)}, it offers {list(secure.remote_muxers)}"
        )
    early = secure.negotiated_muxer == YAMUX_PROTOCOL_ID
    muxed: trio.abc.Stream = secure
    if not early:
        buffered = BufferedStream(secure)
        if initiator:
            # Wait for the answer (no lazy proposal): a peer without yamux must fail the
            # connection here, not its first stream after the connection was reported.
            try:
                await multistream.select(buffered, (YAMUX_PROTOCOL_ID,))
            except ProtocolNotSupported:
                await trio.aclose_forcefully(secure)
                raise ProtocolNotSupported(
                    f"no stream muxer in common with {secure.remote_peer}: it refused "
                    f"{YAMUX_PROTOCOL_ID}"
                ) from None
        else:
            await multistream.handle(buffered, (YAMUX_PROTOCOL_ID,))
        muxed = buffered
    session = YamuxSession(muxed, is_initiator=initiator, config=yamux_config)
    return UpgradedConnection(secure=secure, muxer=session, initiator=initiator, early_muxer=early)
