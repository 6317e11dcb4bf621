"""Hypothesis: random and mutated identify input only ever raises our remote-error family.

Decoders must never crash with a foreign exception, never hang, and never keep more than the
limits allow; the observed-address manager must stay within its bounds whatever it is fed.
"""

from __future__ import annotations

import contextlib

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multiaddr import Multiaddr

from libp2p.crypto.keys import Ed25519PublicKey
from libp2p.exceptions import RemoteProtocolError
from libp2p.identify import (
    MAX_OWN_MESSAGE_SIZE,
    IdentifyInfo,
    ObservedAddrManager,
    decode_identify,
    encode_identify,
    parse_multiaddr_bytes,
    read_identify,
)
from libp2p.varint import encode_lp
from tests.fuzzing import mutate

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PUB = Ed25519PublicKey.from_bytes(
    bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
)

ADDR_TEXTS = [
    "/ip4/192.0.2.42/tcp/443",
    "/ip6/2001:db8::1/udp/4001/quic-v1",
    "/dns4/example.com/tcp/443/wss",
    "/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    "/p2p/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC/p2p-circuit",
    "/ip4/1.2.3.4/udp/1/quic-v1/webtransport/certhash/uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g",
]
ADDRS = [Multiaddr(t) for t in ADDR_TEXTS]


@st.composite
def infos(draw: st.DrawFn) -> IdentifyInfo:
    return IdentifyInfo(
        protocol_version=draw(st.none() | st.text(max_size=20)),
        agent_version=draw(st.none() | st.text(max_size=20)),
        public_key=draw(st.none() | st.just(PUB)),
        listen_addrs=tuple(draw(st.lists(st.sampled_from(ADDRS), max_size=6))),
        observed_addr=draw(st.none() | st.sampled_from(ADDRS)),
        protocols=tuple(draw(st.lists(st.text(max_size=20), max_size=6))),
        signed_peer_record=draw(st.none() | st.binary(max_size=64)),
    )


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    return mutate(draw, encode_identify(draw(infos())))


@st.composite
def mutated_addrs(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(st.sampled_from(ADDRS)).to_bytes(), max_edits=2)


def check_decode(data: bytes) -> None:
    try:
        info = decode_identify(data)
    except RemoteProtocolError:
        return
    # Whatever decodes re-encodes into something that decodes to the same thing.
    assert decode_identify(encode_identify(info)) == info


@FUZZ
@given(st.binary(max_size=300))
def test_decode_random_bytes(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(mutated_messages())
def test_decode_mutated_messages(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(infos())
def test_valid_messages_round_trip(info: IdentifyInfo) -> None:
    data = encode_identify(info)
    assert len(data) <= MAX_OWN_MESSAGE_SIZE
    assert decode_identify(data, strict=True) == info


@FUZZ
@given(
    st.lists(st.sampled_from(ADDRS), max_size=400),
    st.none() | st.binary(max_size=5000),
    st.lists(st.text(max_size=30), max_size=30),
)
def test_encode_never_exceeds_4_kib(
    addrs: list[Multiaddr], record: bytes | None, protocols: list[str]
) -> None:
    info = IdentifyInfo(
        public_key=PUB,
        listen_addrs=tuple(addrs),
        protocols=tuple(protocols),
        signed_peer_record=record,
    )
    data = encode_identify(info)
    assert len(data) <= MAX_OWN_MESSAGE_SIZE
    decoded = decode_identify(data)
    # What was dropped was dropped in order: the record first, then addresses from the end.
    assert decoded.listen_addrs == info.listen_addrs[: len(decoded.listen_addrs)]
    if decoded.listen_addrs != info.listen_addrs:
        assert decoded.signed_peer_record is None
    assert decoded.protocols == info.protocols
    assert decoded.public_key == PUB


@FUZZ
@given(st.binary(max_size=60) | mutated_addrs())
def test_parse_multiaddr_bytes(data: bytes) -> None:
    try:
        addr = parse_multiaddr_bytes(data)
    except RemoteProtocolError:
        return
    assert addr.to_bytes() == data
    assert Multiaddr(str(addr)).to_bytes() == data


@st.composite
def stream_inputs(draw: st.DrawFn) -> list[bytes]:
    messages = [encode_lp(encode_identify(i)) for i in draw(st.lists(infos(), max_size=12))]
    data = mutate(draw, b"".join(messages), max_edits=draw(st.integers(0, 6)))
    if draw(st.booleans()):
        data = draw(st.binary(max_size=200))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@FUZZ
@given(stream_inputs(), st.booleans())
def test_read_identify_never_crashes_or_hangs(chunks: list[bytes], eof: bool) -> None:
    async def main() -> None:
        left, right = trio.testing.memory_stream_pair()
        for chunk in chunks:
            await left.send_all(chunk)
        if eof:
            await left.send_eof()
        # Without EOF the reader may legitimately wait for more; the mock clock jumps ahead
        # as soon as it blocks, so a wait shows up as a timeout, instantly.
        with trio.move_on_after(60) as scope:
            with contextlib.suppress(RemoteProtocolError):
                await read_identify(right)
        if eof:
            assert not scope.cancelled_caught, "read_identify blocked after EOF"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- observed addresses ------------------------------------------------------------------------

IPS = ["198.51.100.20", "203.0.113.1", "127.0.0.1", "0.0.0.0", "10.0.0.2", "2001:db8::1", "::1"]


@st.composite
def maddrs(draw: st.DrawFn) -> Multiaddr:
    ip = draw(st.sampled_from(IPS))
    family = "ip6" if ":" in ip else "ip4"
    transport = draw(st.sampled_from(["tcp", "udp"]))
    port = draw(st.sampled_from([0, 4001, 4002, 61000]))
    text = f"/{family}/{ip}/{transport}/{port}"
    text += draw(st.sampled_from(["", "/quic-v1", "/ws", "/p2p-circuit"]))
    return Multiaddr(draw(st.sampled_from([text, "/dns4/example.com/tcp/4001", text])))


@FUZZ
@given(
    st.lists(st.tuples(maddrs(), maddrs(), st.none() | maddrs(), st.floats(0, 1000)), max_size=40),
    st.lists(maddrs(), max_size=3),
    st.integers(1, 8),
)
def test_observed_addr_manager_stays_bounded(
    observations: list[tuple[Multiaddr, Multiaddr, Multiaddr | None, float]],
    listen: list[Multiaddr],
    cap: int,
) -> None:
    mgr = ObservedAddrManager(max_observations=cap, ttl=100.0)
    now = 0.0
    for observed, observer, local, dt in observations:
        now += dt
        mgr.record(observed, observer=observer, local_addr=local, listen_addrs=listen, now=now)
        assert len(mgr) <= cap
        for addr in mgr.candidates(now, min_observers=1):
            assert len(mgr.observers_of(addr, now)) >= 1
            assert "p2p-circuit" not in str(addr)
        mgr.poll_events(now)
