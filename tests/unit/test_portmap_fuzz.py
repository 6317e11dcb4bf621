"""Hypothesis: every port-mapping decoder, given random or mutated input, returns a value or
raises its typed DecodeError -- never anything else, never hangs."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from libp2p.exceptions import DecodeError
from libp2p.portmap import natpmp, pcp, ssdp, upnp
from tests.fuzzing import mutate
from tests.unit.test_portmap_codecs import (
    DESCRIPTION,
    LOCATION,
    MINIUPNPD_SSDP,
    _map_answer,
    _soap,
)

SEEDS_5351 = [
    bytes.fromhex("0080000000006f66c6336401"),
    bytes.fromhex("0082000000006f660fa10fa10000003c"),
    _map_answer(),
    _map_answer(result=8),
]
FAULT = (
    "<s:Fault><detail><UPnPError><errorCode>718</errorCode><errorDescription>x"
    "</errorDescription></UPnPError></detail></s:Fault>"
)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    return mutate(draw, draw(st.sampled_from(seeds)), max_edits=6)


any_bytes = st.binary(max_size=1500)


@settings(max_examples=300, deadline=None)
@given(st.one_of(any_bytes, mutated(SEEDS_5351)))
def test_natpmp_and_pcp_decoders(data: bytes) -> None:
    for decode in (natpmp.decode_response, pcp.decode_response):
        with contextlib.suppress(DecodeError):
            decode(data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(any_bytes, mutated([MINIUPNPD_SSDP])), st.sampled_from(["192.0.2.1", "::1"]))
def test_ssdp_decoder(data: bytes, source: str) -> None:
    with contextlib.suppress(ssdp.SsdpDecodeError):
        ssdp.decode_response(data, source)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        any_bytes,
        mutated(
            [DESCRIPTION],
        ),
    )
)
def test_description_decoder(data: bytes) -> None:
    try:
        services = upnp.parse_description(data, LOCATION)
    except upnp.UpnpDecodeError:
        return
    assert all(s.control_url.startswith("http://192.0.2.1:5000/") for s in services)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        any_bytes,
        mutated([_soap(FAULT, 500).body, _soap("<u:XResponse><A>1</A></u:XResponse>").body]),
    ),
    st.sampled_from([200, 500, 404]),
)
def test_soap_decoder(body: bytes, status: int) -> None:
    with contextlib.suppress(upnp.UpnpDecodeError):
        upnp.decode_soap_response(upnp.HttpResponse(status, "", {}, body), "X")


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        any_bytes,
        mutated(
            [
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ]
        ),
    )
)
def test_http_response_decoder(data: bytes) -> None:
    upnp.http_response_complete(data)
    with contextlib.suppress(upnp.UpnpDecodeError):
        upnp.parse_http_response(data)
