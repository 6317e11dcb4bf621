"""Identify and identify-push: answers and pushes that are malformed, oversized, truncated,
reset or stalled mid-message, out of order, or that carry another peer's key."""

from __future__ import annotations

import pytest
import trio

from libp2p import ping
from libp2p.crypto.keys import generate_ed25519
from libp2p.exceptions import Libp2pError, RemoteProtocolError, StreamReset
from libp2p.host import identify_service
from libp2p.identify import PROTOCOL_ID, PUSH_PROTOCOL_ID, IdentifyInfo, read_identify
from libp2p.identify.message import encode_identify
from libp2p.network.connection import NetStream
from libp2p.varint import encode_lp

from .harness import (
    PATIENCE,
    SPOILS,
    TIMEOUT,
    addr_of,
    evil_host,
    hostile_case,
    spoil,
    until_host_ends,
)

OTHER = [
    "other_key",
    "too_many_messages",
    "bad_signed_record",
    "garbage_public_key",
    "invalid_utf8_and_bad_addrs",
]


def _message(protocols: tuple[str, ...], key_of_another: bool = False) -> bytes:
    key = generate_ed25519().public_key
    return encode_identify(IdentifyInfo(public_key=key, protocols=protocols))


async def _answer(stream: NetStream, how: str, own_key: object) -> None:
    """The evil side's identify answer (or push)."""
    protocols = ("/evil/1.0.0",)
    if how in SPOILS:
        # Out of order: identify has one message type; a push-shaped message is fine, so the
        # "wrong step" is a second, conflicting response after the first.
        info = IdentifyInfo(public_key=own_key, protocols=protocols)  # type: ignore[arg-type]
        wrong = encode_lp(encode_identify(info)) * 2 + b"\x05garbage"
        await spoil(stream, how, wrong)
    else:
        try:
            await _other(stream, how, own_key)
        except (Libp2pError, trio.BrokenResourceError):
            return  # the host reset the stream before we were done: fine
        await until_host_ends(stream)


async def _other(stream: NetStream, how: str, own_key: object) -> None:
    protocols = ("/evil/1.0.0",)
    if how == "other_key":
        await stream.send_all(encode_lp(_message(protocols, key_of_another=True)))
        await stream.send_eof()
    elif how == "too_many_messages":
        info = IdentifyInfo(protocols=protocols)
        await stream.send_all(encode_lp(encode_identify(info)) * 11)
        await stream.send_eof()
    elif how == "bad_signed_record":
        info = IdentifyInfo(
            public_key=own_key,  # type: ignore[arg-type]
            protocols=protocols,
            signed_peer_record=b"\x0a\x03abc",
        )
        await stream.send_all(encode_lp(encode_identify(info)))
        await stream.send_eof()
    elif how == "garbage_public_key":
        # Field 1 (publicKey): bytes that are no serialized key.
        await stream.send_all(encode_lp(b"\x0a\x05\x08\x63\x12\x01\x00" + b"\x1a\x04/x/1"))
        await stream.send_eof()
    elif how == "invalid_utf8_and_bad_addrs":
        body = encode_identify(IdentifyInfo(public_key=own_key, protocols=protocols))  # type: ignore[arg-type]
        # + protocols: invalid UTF-8; listenAddrs and observedAddr: no multiaddrs.
        body += b"\x1a\x03\xff\xfe\xfd" + b"\x12\x03\x99\x99\x99" + b"\x22\x02\x04\x01"
        await stream.send_all(encode_lp(body))
        await stream.send_eof()


def _accepted(how: str) -> bool:
    """Whether the host should believe the message: a bad record, bad addresses and bad
    UTF-8 are dropped field by field (as go and rust do), the rest of the message is used."""
    return how in ("bad_signed_record", "invalid_utf8_and_bad_addrs")


@pytest.mark.parametrize("how", SPOILS + OTHER)
async def test_the_peer_answers_identify_with(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identify_service, "IDENTIFY_TIMEOUT", TIMEOUT)
    key: list[object] = []

    async def evil_identify(stream: NetStream) -> None:
        await _answer(stream, how, key[0])

    async with hostile_case() as case, evil_host({PROTOCOL_ID: evil_identify}) as evil:
        key.append(evil.key.public_key)
        conn = await case.host.connect(addr_of(evil))
        with trio.fail_after(PATIENCE):
            await case.host.identify.wait_identified(conn)
        believed = "/evil/1.0.0" in case.host.peerstore.protocols(evil.peer_id)
        assert believed == _accepted(how)
        # The error identify got, as a caller of read_identify sees it.
        if how not in ("stall_mid", "other_key") and not _accepted(how):

            async def query() -> IdentifyInfo:
                stream = await case.host.new_stream(evil.peer_id, PROTOCOL_ID)
                try:
                    return await read_identify(stream)
                finally:
                    await stream.aclose()

            await case.fails((RemoteProtocolError, StreamReset), query)
        # The connection is fine.
        stream = await case.host.new_stream(evil.peer_id, ping.PROTOCOL_ID)
        await ping.ping(stream)
        await stream.aclose()
        assert not conn.is_closed


@pytest.mark.parametrize("how", SPOILS + OTHER)
async def test_the_peer_pushes(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identify_service, "IDENTIFY_TIMEOUT", TIMEOUT)
    async with hostile_case() as case, evil_host() as evil:
        conn = await evil.connect(case.addr)
        for mine in case.host.connections_to(evil.peer_id):
            with trio.fail_after(PATIENCE):
                await case.host.identify.wait_identified(mine)
        await evil.identify.wait_identified(conn)
        before = case.host.peerstore.protocols(evil.peer_id)
        stream = await evil.new_stream(case.host.peer_id, PUSH_PROTOCOL_ID)
        await _answer(stream, how, evil.key.public_key)
        after = case.host.peerstore.protocols(evil.peer_id)
        if _accepted(how):
            assert "/evil/1.0.0" in after
        else:
            assert after == before
        # The connection is fine, both ways.
        stream = await case.host.new_stream(evil.peer_id, ping.PROTOCOL_ID)
        await ping.ping(stream)
        await stream.aclose()
