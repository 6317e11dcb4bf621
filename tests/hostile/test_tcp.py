"""TCP: a peer that accepts or connects, then resets, half-closes or stalls."""

from __future__ import annotations

import pytest

from libp2p.exceptions import RemoteProtocolError, TransportError

from .harness import Wire, hostile_case

#: What the hostile peer does after reading ``n`` bytes (or sending ``n`` bytes of garbage).
ENDINGS = ["rst", "fin", "stall"]


async def _end(wire: Wire, how: str) -> None:
    if how == "rst":
        wire.rst()
    elif how == "fin":
        await wire.fin()
        await wire.until_host_closes()
    else:
        await wire.until_host_closes()


@pytest.mark.parametrize("how", ENDINGS)
@pytest.mark.parametrize("read_first", [0, 1, 40])
async def test_host_dials_a_peer_that_accepts_then(how: str, read_first: int) -> None:
    async def script(wire: Wire) -> None:
        if read_first:
            await wire.buf.read_exactly(read_first)
        await _end(wire, how)

    expected = TransportError if how != "fin" else (TransportError, RemoteProtocolError)
    async with hostile_case() as case, case.listener(script) as addr:
        await case.fails(expected, lambda: case.host.connect(addr))


@pytest.mark.parametrize("how", ENDINGS)
@pytest.mark.parametrize("send_first", [b"", b"\x13/multistream/1.0.0\n", b"\x13/multi"])
async def test_peer_dials_the_host_then(how: str, send_first: bytes) -> None:
    async def script(wire: Wire) -> None:
        if send_first:
            await wire.send(send_first)
        await _end(wire, how)

    async with hostile_case() as case:
        await case.dials(script)
