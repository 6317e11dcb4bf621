"""AutoNAT v1: a server that answers badly, a client that asks badly, and dial-backs that
land on a peer that misbehaves."""

from __future__ import annotations

import pytest
import trio
from multiaddr import Multiaddr

from libp2p.exceptions import Libp2pError, RemoteProtocolError, StreamReset
from libp2p.host.autonat import AutoNATClientConfig, AutoNATServerConfig, Reachability
from libp2p.host.autonat.protocol import (
    PROTOCOL_ID,
    DialRequest,
    DialResponse,
    ResponseStatus,
    encode_message,
    read_message,
)
from libp2p.io import BufferedStream
from libp2p.network.address_policy import AddressPolicy
from libp2p.network.connection import NetStream
from libp2p.peer.id import PeerID

from .harness import (
    MS_HEADER,
    PATIENCE,
    SPOILS,
    TIMEOUT,
    EvilNoise,
    Wire,
    addr_of,
    evil_host,
    fast_config,
    hostile_case,
    hostile_listener,
    lp,
    ms_respond,
    spoil,
    until_host_ends,
)

ASKED = [Multiaddr("/ip4/127.0.0.1/tcp/9")]

# -- the host asks a broken server ---------------------------------------------------------------

SERVER_ANSWERS = ["response_without_status", "unknown_type"]


@pytest.mark.parametrize("how", SPOILS + SERVER_ANSWERS)
async def test_the_host_asks_a_server_that_answers(how: str) -> None:
    async def autonat(stream: NetStream) -> None:
        reader = BufferedStream(stream)
        request = await read_message(reader)
        assert isinstance(request, DialRequest)
        if how in SPOILS:
            # Out of order: a DIAL where the DIAL_RESPONSE belongs.
            await spoil(stream, how, encode_message(request))
            return
        body = b"\x08\x01" if how == "response_without_status" else b"\x08\x07"
        try:
            await stream.send_all(lp(body))
            await stream.send_eof()
        except (Libp2pError, trio.BrokenResourceError):
            return
        await until_host_ends(stream)

    config = fast_config(autonat_client=AutoNATClientConfig(request_timeout=TIMEOUT))
    async with hostile_case(config) as case, evil_host({PROTOCOL_ID: autonat}) as evil:
        conn = await case.host.connect(addr_of(evil))
        with trio.fail_after(PATIENCE):
            await case.host.identify.wait_identified(conn)
        autonat_client = case.host.autonat
        assert autonat_client is not None
        if how != "stall_mid":
            await case.fails(
                (RemoteProtocolError, StreamReset),
                lambda: autonat_client.ask(evil.peer_id, ASKED),
            )
        # A scheduled-style probe records the failure as "no answer" and learns nothing.
        probed = await autonat_client.probe(evil.peer_id, ASKED)
        assert probed.response is None
        assert case.host.reachability.status is Reachability.UNKNOWN
        assert not conn.is_closed


# -- the host is the server: a client asks badly --------------------------------------------------

SERVER = AutoNATServerConfig(
    dial_timeout=TIMEOUT,
    hide_failure_timing=False,
    # Longer than a dial-back, as go's (60 s against 15 s): a stalled dial-back is answered.
    stream_timeout=3 * TIMEOUT,
    addresses=AddressPolicy.local_testing(),
)

CLIENT_REQUESTS = ["dial_for_another_peer", "dial_without_addrs"]


@pytest.mark.parametrize("how", SPOILS + CLIENT_REQUESTS)
async def test_a_client_asks_the_host(how: str) -> None:
    async with (
        hostile_case(fast_config(autonat_server=SERVER)) as case,
        evil_host(listen=False) as evil,
    ):
        await evil.connect(case.addr)
        stream = await evil.new_stream(case.host.peer_id, PROTOCOL_ID)
        if how in SPOILS:
            response = encode_message(DialResponse(ResponseStatus.OK, "", ASKED[0]))
            await spoil(stream, how, response)
            return
        peer = evil.peer_id
        if how == "dial_for_another_peer":
            peer = PeerID.from_public_key(case.good.key.public_key)
        await stream.send_all(encode_message(DialRequest(peer, ())))
        answer = await read_message(BufferedStream(stream))
        assert isinstance(answer, DialResponse)
        assert answer.status in (
            ResponseStatus.E_BAD_REQUEST,
            ResponseStatus.E_DIAL_ERROR,
            ResponseStatus.E_DIAL_REFUSED,
        ), answer
        await until_host_ends(stream)


# -- the host dials back into a trap -----------------------------------------------------------


async def _trap(wire: Wire, how: str) -> None:
    if how == "rst":
        wire.rst()
    elif how == "garbage":
        await wire.send(b"\xde\xad\xbe\xef" * 8)
        await wire.until_host_closes()
    elif how == "stall":
        await wire.until_host_closes()
    elif how == "refuses_noise":
        await wire.send(MS_HEADER + b"\x03na\n")
        await wire.until_host_closes()
    elif how == "another_identity":
        # A correct handshake, by some peer that is not the one that asked.
        await ms_respond(wire, "/noise")
        noise = EvilNoise(wire, initiator=False)
        await noise.read()
        await noise.write()
        await wire.until_host_closes()


@pytest.mark.parametrize("how", ["rst", "garbage", "stall", "refuses_noise", "another_identity"])
async def test_the_dial_back_lands_on_a_peer_that(how: str) -> None:
    async def trap(wire: Wire) -> None:
        await _trap(wire, how)

    async with (
        hostile_case(fast_config(autonat_server=SERVER)) as case,
        hostile_listener(trap) as addr,
        evil_host(listen=False) as evil,
    ):
        await evil.connect(case.addr)
        stream = await evil.new_stream(case.host.peer_id, PROTOCOL_ID)
        await stream.send_all(encode_message(DialRequest(evil.peer_id, (addr,))))
        with trio.fail_after(PATIENCE):
            answer = await read_message(BufferedStream(stream))
        assert isinstance(answer, DialResponse)
        assert answer.status is ResponseStatus.E_DIAL_ERROR, answer
        await until_host_ends(stream)
