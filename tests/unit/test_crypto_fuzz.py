"""Fuzzing the key and peer ID decoders: bad input only ever raises our DecodeError family.

Anything else (a protobuf, cryptography or coincurve exception, IndexError, a crash or a hang,
which Hypothesis's deadline catches) is a bug, because these decoders eat bytes from the network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libp2p.crypto import (
    EcdsaPublicKey,
    RsaPublicKey,
    deserialize_private_key,
    deserialize_public_key,
    generate_ed25519,
    generate_secp256k1,
)
from libp2p.exceptions import DecodeError
from libp2p.peer import PeerID

T = TypeVar("T")

_ED = generate_ed25519()
_K1 = generate_secp256k1()
_RSA = RsaPublicKey(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
_P256 = EcdsaPublicKey(ec.generate_private_key(ec.SECP256R1()).public_key())

VALID_PUBLIC = [
    _ED.public_key.serialize(),
    _K1.public_key.serialize(),
    _RSA.serialize(),
    _P256.serialize(),
    bytes.fromhex("08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99"),
]
VALID_PRIVATE = [_ED.serialize(), _K1.serialize()]
VALID_PEER_IDS = [PeerID.from_public_key(key) for key in (_ED.public_key, _RSA)]
VALID_PEER_ID_BYTES = [p.to_bytes() for p in VALID_PEER_IDS]
VALID_PEER_ID_TEXT = [s for p in VALID_PEER_IDS for s in (p.to_base58(), p.to_cid())]

FUZZ = settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid encoding with a few random edits (flip, insert, delete, truncate, extend)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[pos]
        elif op == "truncate":
            del data[pos:]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@st.composite
def mutated_text(draw: st.DrawFn, seeds: list[str]) -> str:
    """A valid peer ID string with a few random character edits."""
    text = list(draw(st.sampled_from(seeds)))
    alphabet = st.characters(codec="utf-8")
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(text) - 1, 0)))
        if op == "set" and text:
            text[pos] = draw(alphabet)
        elif op == "insert":
            text.insert(pos, draw(alphabet))
        elif op == "delete" and text:
            del text[pos]
        elif op == "truncate":
            del text[pos:]
    return "".join(text)


def _decoded_or_none(fn: Callable[[], T]) -> T | None:
    """``fn()``, or ``None`` if it raised our DecodeError; any other exception fails the test."""
    try:
        return fn()
    except DecodeError:
        return None


_ANY_BYTES = st.binary(max_size=2048)


@FUZZ
@given(st.one_of(_ANY_BYTES, mutated(VALID_PUBLIC)))
def test_deserialize_public_key(data: bytes) -> None:
    key = _decoded_or_none(lambda: deserialize_public_key(data))
    if key is not None:
        assert deserialize_public_key(key.serialize()) == key


@FUZZ
@given(st.one_of(_ANY_BYTES, mutated(VALID_PRIVATE)))
def test_deserialize_private_key(data: bytes) -> None:
    key = _decoded_or_none(lambda: deserialize_private_key(data))
    if key is not None:
        assert deserialize_private_key(key.serialize()) == key
        assert key.public_key.verify(b"x", key.sign(b"x"))


@FUZZ
@given(st.one_of(_ANY_BYTES, mutated(VALID_PEER_ID_BYTES)))
def test_peer_id_from_bytes(data: bytes) -> None:
    pid = _decoded_or_none(lambda: PeerID.from_bytes(data))
    if pid is not None:
        assert pid.to_bytes() == data
        assert PeerID.from_string(pid.to_base58()) == pid
        assert PeerID.from_string(pid.to_cid()) == pid
        key = _decoded_or_none(pid.extract_public_key)
        if key is not None:
            assert pid.matches_public_key(key) == (key.serialize() == data[2:])


@FUZZ
@given(st.one_of(st.text(max_size=300), mutated_text(VALID_PEER_ID_TEXT)))
def test_peer_id_from_string(text: str) -> None:
    pid = _decoded_or_none(lambda: PeerID.from_string(text))
    if pid is not None:
        assert PeerID.from_bytes(pid.to_bytes()) == pid
        assert text in (pid.to_base58(), pid.to_cid()) or text[0] not in "1Qb"


@FUZZ
@given(
    key_index=st.integers(0, 3),
    message=st.binary(max_size=64),
    signature=st.one_of(st.binary(max_size=600), mutated([_ED.sign(b"m"), _K1.sign(b"m")])),
)
def test_verify_never_raises(key_index: int, message: bytes, signature: bytes) -> None:
    key = [_ED.public_key, _K1.public_key, _RSA, _P256][key_index]
    assert key.verify(message, signature) in (True, False)


@pytest.mark.parametrize("seed", VALID_PUBLIC)
def test_seeds_are_valid(seed: bytes) -> None:
    # The mutation seeds must themselves decode, or the mutated strategy tests little.
    assert deserialize_public_key(seed).serialize() == seed


def test_spki_der_of_other_algorithms_is_a_decode_error() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed448

    der = (
        ed448.Ed448PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(DecodeError):
        RsaPublicKey.from_bytes(der)
    with pytest.raises(DecodeError):
        EcdsaPublicKey.from_bytes(der)
