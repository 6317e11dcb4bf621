"""AutoNAT v2: servers that lie or break the protocol, clients that ask badly, and dial-backs
that land on a peer that misbehaves.

The host's client must never count a check as REACHABLE (or verified) unless its own nonce
came back on a fresh connection, whatever the server claims; its server must end a bad
request with a reset or a typed answer, never a crash or a leak (the harness checks both).
"""

from __future__ import annotations

import contextlib

import pytest
import trio
from multiaddr import Multiaddr

from libp2p.crypto.keys import generate_ed25519
from libp2p.exceptions import Libp2pError
from libp2p.host import Host, HostConfig
from libp2p.host.autonat.v2 import (
    DIAL_BACK_PROTOCOL,
    DIAL_REQUEST_PROTOCOL,
    AutoNATv2ClientConfig,
    AutoNATv2ServerConfig,
    CheckOutcome,
    DialStatus,
    ResponseStatus,
)
from libp2p.host.autonat.v2.protocol import (
    DialBack,
    DialDataRequest,
    DialDataResponse,
    DialRequest,
    DialResponse,
    encode_dial_back,
    encode_message,
    read_dial_back_response,
    read_message,
)
from libp2p.io import BufferedStream
from libp2p.network.address_policy import AddressPolicy
from libp2p.network.connection import NetStream

from .harness import (
    PATIENCE,
    SPOILS,
    TIMEOUT,
    Wire,
    addr_of,
    evil_host,
    fast_config,
    hostile_case,
    hostile_listener,
    lp,
    spoil,
    until_host_ends,
)
from .test_autonat import _trap

CLIENT = AutoNATv2ClientConfig(timeout=3 * TIMEOUT, dial_back_grace=TIMEOUT)
SERVER = AutoNATv2ServerConfig(
    stream_timeout=4 * TIMEOUT,
    dial_timeout=TIMEOUT,
    dial_back_stream_timeout=TIMEOUT,
    dial_data_wait=0.0,
    addresses=AddressPolicy.local_testing(),
)


def host_config() -> HostConfig:
    return fast_config(autonat_v2_client=CLIENT, autonat_v2_server=SERVER)


# -- the host asks a server that lies or breaks the protocol ---------------------------------------

LIES = [
    "ok_without_dial_back",
    "wrong_nonce",
    "nonce_over_the_request_connection",
    "nonce_then_says_dial_error",
    "index_out_of_range",
    "unknown_status",
    "ok_with_unused_dial_status",
    "huge_dial_data",
    "dial_data_for_unknown_index",
    "second_dial_data_request",
    "never_answers",
]


async def _fresh_dial_back(evil: Host, host: Host, addr: Multiaddr, nonce: int) -> None:
    """Deliver ``nonce`` as a real server does: new connection, throwaway identity."""
    async with evil.swarm.dial_isolated(host.peer_id, [addr], key=generate_ed25519()) as conn:
        await _deliver(await conn.new_stream([DIAL_BACK_PROTOCOL]), nonce)


async def _deliver(stream: NetStream, nonce: int) -> None:
    reader = BufferedStream.wrap(stream)
    await reader.send_all(encode_dial_back(DialBack(nonce)))
    await reader.send_eof()
    # The host resets a nonce it does not know: what some cases expect.
    with contextlib.suppress(Libp2pError, trio.BrokenResourceError):
        await read_dial_back_response(reader)


@pytest.mark.parametrize("how", SPOILS + LIES)
async def test_the_host_asks_a_server_that(how: str) -> None:
    host_ref: list[Host] = []
    evil_ref: list[Host] = []

    async def server(stream: NetStream) -> None:
        reader = BufferedStream.wrap(stream)
        request = await read_message(reader)
        assert isinstance(request, DialRequest)
        addr = request.addrs[0]
        assert addr is not None
        if how in SPOILS:
            await spoil(stream, how, encode_message(request))  # out of order: a DialRequest
            return
        response = DialResponse(ResponseStatus.OK, 0, DialStatus.OK)
        try:
            if how == "wrong_nonce":
                await _fresh_dial_back(evil_ref[0], host_ref[0], addr, request.nonce ^ 1)
            elif how == "nonce_over_the_request_connection":
                await _deliver(
                    await stream.connection.new_stream([DIAL_BACK_PROTOCOL]), request.nonce
                )
            elif how == "nonce_then_says_dial_error":
                await _fresh_dial_back(evil_ref[0], host_ref[0], addr, request.nonce)
                response = DialResponse(ResponseStatus.OK, 0, DialStatus.E_DIAL_ERROR)
            elif how == "index_out_of_range":
                await _fresh_dial_back(evil_ref[0], host_ref[0], addr, request.nonce)
                response = DialResponse(ResponseStatus.OK, 7, DialStatus.OK)
            elif how == "ok_with_unused_dial_status":
                response = DialResponse(ResponseStatus.OK, 0, DialStatus.UNUSED)
            elif how == "huge_dial_data":
                await reader.send_all(encode_message(DialDataRequest(0, 10**9)))
            elif how == "dial_data_for_unknown_index":
                await reader.send_all(encode_message(DialDataRequest(3, 30_000)))
            elif how == "second_dial_data_request":
                await reader.send_all(encode_message(DialDataRequest(0, 100)))
                msg = await read_message(reader)
                assert isinstance(msg, DialDataResponse)
                await reader.send_all(encode_message(DialDataRequest(0, 100)))
            elif how == "never_answers":
                await until_host_ends(stream)
                return
            if how == "unknown_status":
                await reader.send_all(lp(bytes.fromhex("1202" + "0807")))
            else:
                await reader.send_all(encode_message(response))
            await reader.send_eof()
        except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        await until_host_ends(stream)

    async with (
        hostile_case(host_config()) as case,
        evil_host({DIAL_REQUEST_PROTOCOL: server}) as evil,
    ):
        host_ref.append(case.host)
        evil_ref.append(evil)
        conn = await case.host.connect(addr_of(evil))
        with trio.fail_after(PATIENCE):
            await case.host.identify.wait_identified(conn)
        client = case.host.autonat_v2
        assert client is not None
        with trio.fail_after(PATIENCE):
            check = await client.check(evil.peer_id, case.host.listen_addrs)
        assert check.outcome is CheckOutcome.ERROR, check
        # ``verified`` states a fact: only a server that did deliver our nonce on a fresh
        # connection (and then contradicts itself) gets it.
        assert check.verified is (how == "nonce_then_says_dial_error")
        assert check.detail
        assert not conn.is_closed


# -- the host is the server: a client asks badly -------------------------------------------------

CLIENT_ABUSE = [
    "tiny_dial_data_chunks",
    "oversized_dial_data_chunk",
    "request_instead_of_dial_data",
    "stalls_during_dial_data",
    "no_addresses",
]


@pytest.mark.parametrize("how", SPOILS + CLIENT_ABUSE)
async def test_a_client_asks_the_host(how: str) -> None:
    async with hostile_case(host_config()) as case, evil_host(listen=False) as evil:
        await evil.connect(case.addr)
        stream = await evil.new_stream(case.host.peer_id, DIAL_REQUEST_PROTOCOL)
        reader = BufferedStream.wrap(stream)
        if how in SPOILS:
            out_of_order = encode_message(DialDataResponse(b"\x00" * 200))
            await spoil(stream, how, out_of_order)
            return
        # An address on another IP than the one we come from (127.0.0.1): dial data first.
        other = Multiaddr("/ip4/127.0.0.2/tcp/9")
        addrs: tuple[Multiaddr, ...] = () if how == "no_addresses" else (other,)
        await stream.send_all(encode_message(DialRequest(addrs, 5)))
        answer = await read_message(reader)
        if how == "no_addresses":
            assert answer == DialResponse(ResponseStatus.E_DIAL_REFUSED)
            await until_host_ends(stream)
            return
        assert isinstance(answer, DialDataRequest)
        assert 30_000 <= answer.num_bytes <= 100_000
        try:
            if how == "tiny_dial_data_chunks":
                for _ in range(5):
                    await stream.send_all(encode_message(DialDataResponse(b"\x00" * 10)))
            elif how == "oversized_dial_data_chunk":
                # 4097 bytes of data: past the spec's limit (built by hand; our encoder refuses).
                body = b"\x22\x83\x20" + b"\x0a\x81\x20" + b"\x00" * 4097
                await stream.send_all(lp(body))
            elif how == "request_instead_of_dial_data":
                await stream.send_all(encode_message(DialRequest((other,), 6)))
            # stalls_during_dial_data: send nothing more.
        except (Libp2pError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the host reset the stream already
        await until_host_ends(stream)
        server = case.host.autonat_v2_server
        assert server is not None
        assert sum(server.stats.aborted.values()) == 1, server.stats
        assert not server.stats.dialed


async def test_a_client_floods_the_host_with_requests() -> None:
    async with hostile_case(host_config()) as case, evil_host(listen=False) as evil:
        await evil.connect(case.addr)
        answers: list[object] = []

        async def ask() -> None:
            stream = await evil.new_stream(case.host.peer_id, DIAL_REQUEST_PROTOCOL)
            reader = BufferedStream.wrap(stream)
            # Nothing listens on port 9 of 127.0.0.1: each admitted request dials and fails.
            await stream.send_all(
                encode_message(DialRequest((Multiaddr("/ip4/127.0.0.1/tcp/9"),), 1))
            )
            answers.append(await read_message(reader))
            await until_host_ends(stream)

        with trio.fail_after(PATIENCE):
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(ask)
        rejected = [a for a in answers if a == DialResponse(ResponseStatus.E_REQUEST_REJECTED)]
        dialed = [
            a for a in answers if isinstance(a, DialResponse) and a.status is ResponseStatus.OK
        ]
        # Two at a time per peer (go's default), and at most 12 a minute.
        assert 1 <= len(dialed) <= 12
        assert len(rejected) == 20 - len(dialed)


# -- the host dials back into a trap -------------------------------------------------------------


@pytest.mark.parametrize("how", ["rst", "garbage", "stall", "refuses_noise", "another_identity"])
async def test_the_dial_back_lands_on_a_peer_that(how: str) -> None:
    async def trap(wire: Wire) -> None:
        await _trap(wire, how)

    async with (
        hostile_case(host_config()) as case,
        hostile_listener(trap) as addr,
        evil_host(listen=False) as evil,
    ):
        await evil.connect(case.addr)
        stream = await evil.new_stream(case.host.peer_id, DIAL_REQUEST_PROTOCOL)
        await stream.send_all(encode_message(DialRequest((addr,), 77)))
        with trio.fail_after(PATIENCE):
            answer = await read_message(BufferedStream(stream))
        assert answer == DialResponse(ResponseStatus.OK, 0, DialStatus.E_DIAL_ERROR), answer
        await until_host_ends(stream)


async def test_a_client_that_never_acknowledges_the_nonce() -> None:
    got: list[int] = []

    async def silent(stream: NetStream) -> None:
        reader = BufferedStream.wrap(stream)
        from libp2p.host.autonat.v2.protocol import read_dial_back

        got.append((await read_dial_back(reader)).nonce)
        await until_host_ends(stream)

    async with (
        hostile_case(host_config()) as case,
        evil_host({DIAL_BACK_PROTOCOL: silent}) as evil,
    ):
        await evil.connect(case.addr)
        stream = await evil.new_stream(case.host.peer_id, DIAL_REQUEST_PROTOCOL)
        await stream.send_all(encode_message(DialRequest((evil.listen_addrs[0],), 99)))
        with trio.fail_after(PATIENCE):
            answer = await read_message(BufferedStream(stream))
        assert answer == DialResponse(ResponseStatus.OK, 0, DialStatus.E_DIAL_BACK_ERROR)
        assert got == [99]
        await until_host_ends(stream)
