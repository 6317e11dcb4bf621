"""Ping and perf, with the host as client and as server: wrong, short or extra replies,
resets mid-transfer, stalls, and requests the host cannot satisfy."""

from __future__ import annotations

import struct

import pytest
import trio

from libp2p import perf, ping
from libp2p.exceptions import Libp2pError, RemoteProtocolError, StreamReset
from libp2p.network.connection import NetStream

from .harness import PATIENCE, TIMEOUT, addr_of, evil_host, hostile_case, until_host_ends

# -- ping: the host pings a broken peer ----------------------------------------------------------

PING_REPLIES = ["wrong_echo", "short_echo_eof", "no_echo_eof", "reset_mid", "extra_bytes"]


async def _evil_ping(stream: NetStream, how: str) -> None:
    try:
        data = await stream.receive_some(32)
        if how == "wrong_echo":
            await stream.send_all(bytes(32))
        elif how == "short_echo_eof":
            await stream.send_all(data[:10])
            await stream.send_eof()
        elif how == "no_echo_eof":
            await stream.send_eof()
        elif how == "reset_mid":
            await stream.send_all(data[:10])
            await stream.reset()
            return
        elif how == "extra_bytes":
            await stream.send_all(data + b"J" * 32)
        elif how == "stall":
            pass
    except (Libp2pError, trio.BrokenResourceError):
        return
    await until_host_ends(stream)


@pytest.mark.parametrize("how", [*PING_REPLIES, "stall"])
async def test_the_host_pings_a_peer_that_answers_with(how: str) -> None:
    async def handler(stream: NetStream) -> None:
        await _evil_ping(stream, how)

    async with hostile_case() as case, evil_host({ping.PROTOCOL_ID: handler}) as evil:
        await case.host.connect(addr_of(evil))
        if how == "stall":
            stream = await case.host.new_stream(evil.peer_id, ping.PROTOCOL_ID)
            # ping() has no timeout of its own: the caller bounds it (design §4).
            with trio.move_on_after(TIMEOUT):
                await ping.ping(stream)
                raise AssertionError("a stalled ping returned")
            await stream.reset()
        else:

            async def run() -> None:
                # The answer to the proposal may arrive with the peer's reset, which drops
                # it unread: then new_stream itself fails, with the same error.
                stream = await case.host.new_stream(evil.peer_id, ping.PROTOCOL_ID)
                try:
                    await ping.ping(stream, count=2)
                finally:
                    await stream.reset()

            expected = StreamReset if how == "reset_mid" else RemoteProtocolError
            await case.fails(expected, run)


@pytest.mark.parametrize("how", ["partial_eof", "partial_reset", "partial_stall", "flood"])
async def test_a_peer_pings_the_host_with(how: str) -> None:
    async with hostile_case() as case, evil_host() as evil:
        await evil.connect(case.addr)
        stream = await evil.new_stream(case.host.peer_id, ping.PROTOCOL_ID)
        try:
            if how == "flood":
                # Never reads the echoes: the host's echo blocks on the stream's window, only.
                with trio.move_on_after(TIMEOUT):
                    while True:
                        await stream.send_all(b"f" * 65536)
                await stream.reset()
                return
            await stream.send_all(b"p" * 10)
            if how == "partial_eof":
                await stream.send_eof()
                await until_host_ends(stream)
            elif how == "partial_reset":
                await stream.reset()
            else:
                with trio.move_on_after(TIMEOUT):
                    await until_host_ends(stream)
                await stream.reset()
        except (Libp2pError, trio.BrokenResourceError):
            pass


# -- perf ------------------------------------------------------------------------------------------

PERF_REPLIES = ["fewer_bytes", "more_bytes", "reset_mid_download", "reset_mid_upload"]


async def _evil_perf(stream: NetStream, how: str) -> None:
    try:
        header = b""
        while len(header) < 8:
            header += await stream.receive_some(8 - len(header))
        (wanted,) = struct.unpack(">Q", header)
        if how == "reset_mid_upload":
            await stream.receive_some(1000)
            await stream.reset()
            return
        if how in ("stall", "no_drain"):
            await until_host_ends(stream)
            return
        while await stream.receive_some(65536):
            pass
        if how == "fewer_bytes":
            await stream.send_all(bytes(wanted // 2))
        elif how == "more_bytes":
            await stream.send_all(bytes(wanted + 10))
        elif how == "reset_mid_download":
            await stream.send_all(bytes(wanted // 2))
            await stream.reset()
            return
        await stream.send_eof()
    except (Libp2pError, trio.BrokenResourceError):
        return
    await until_host_ends(stream)


@pytest.mark.parametrize("how", [*PERF_REPLIES, "stall", "no_drain"])
async def test_the_host_runs_perf_against_a_peer_that(how: str) -> None:
    async def handler(stream: NetStream) -> None:
        await _evil_perf(stream, how)

    async with hostile_case() as case, evil_host({perf.PROTOCOL_ID: handler}) as evil:
        await case.host.connect(addr_of(evil))
        upload = 2_000_000 if how == "no_drain" else 100_000
        if how in ("stall", "no_drain"):
            stream = await case.host.new_stream(evil.peer_id, perf.PROTOCOL_ID)
            with trio.move_on_after(TIMEOUT):
                await perf.perf(stream, upload, 100_000)
                raise AssertionError("a stalled perf run returned")
            await stream.reset()
        else:

            async def run() -> None:
                # As for ping: a reset may overtake the answer, and new_stream fails.
                stream = await case.host.new_stream(evil.peer_id, perf.PROTOCOL_ID)
                try:
                    await perf.perf(stream, upload, 100_000)
                finally:
                    await stream.reset()

            expected = StreamReset if how.startswith("reset") else RemoteProtocolError
            await case.fails(expected, run)


@pytest.mark.parametrize(
    "how", ["short_header_eof", "huge_request_reset", "huge_request_unread", "upload_reset"]
)
async def test_a_peer_runs_perf_against_the_host(how: str) -> None:
    async with hostile_case() as case, evil_host() as evil:
        case.host.set_stream_handler(perf.PROTOCOL_ID, perf.handle_perf)
        await evil.connect(case.addr)
        stream = await evil.new_stream(case.host.peer_id, perf.PROTOCOL_ID)
        try:
            if how == "short_header_eof":
                await stream.send_all(b"\x00\x00\x01")
                await stream.send_eof()
                await until_host_ends(stream)
            elif how == "upload_reset":
                await stream.send_all(struct.pack(">Q", 10) + bytes(50_000))
                await stream.reset()
            else:
                await stream.send_all(struct.pack(">Q", 2**64 - 1))
                await stream.send_eof()
                if how == "huge_request_reset":
                    with trio.fail_after(PATIENCE):
                        got = 0
                        while got < 1_000_000:
                            got += len(await stream.receive_some(65536))
                else:
                    # Reads nothing: the host's writer waits on the window, nothing else.
                    with trio.move_on_after(TIMEOUT):
                        await trio.sleep_forever()
                await stream.reset()
        except (Libp2pError, trio.BrokenResourceError):
            pass
        case.host.remove_stream_handler(perf.PROTOCOL_ID)
