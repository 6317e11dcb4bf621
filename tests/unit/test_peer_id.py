"""Peer IDs: derivation from keys, binary and text forms, spec examples."""

from __future__ import annotations

import base64
import copy
import hashlib
import pickle
from collections.abc import Callable

import base58
import pytest

from libp2p.crypto import (
    KeyType,
    PrivateKey,
    PublicKey,
    deserialize_public_key,
    generate_ed25519,
    generate_secp256k1,
)
from libp2p.exceptions import DecodeError
from libp2p.peer import InvalidPeerIDError, PeerID

ED25519_PUBLIC = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
SECP256K1_PUBLIC = bytes.fromhex(
    "08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99"
)
ECDSA_PUBLIC = bytes.fromhex(
    "0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004de3d300fa36ae0e8f5d530899d8"
    "3abab44abf3161f162a4bc901d8e6ecda020e8b6d5f8da30525e71d6851510c098e5c47c646a597fb4dcec034"
    "e9f77c409e62"
)

# (serialized public key, base58btc peer ID, CIDv1 base32) -- wire digest section 2.
VECTORS = [
    (
        ED25519_PUBLIC,
        "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq",
        "bafzaajaiaejcahwr5d5ofrfbis4l5d6uwr57hu5tjodrypfm6yaq6dsc2r2pzyt6",
    ),
    (
        SECP256K1_PUBLIC,
        "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY",
        "bafzaajiiaijcca3xo7uzjzcsyilaj6i54cj44qk7kqzpoao5rti2pjx6udtdbp6kte",
    ),
    (
        ECDSA_PUBLIC,
        "QmVMT29id3TUASyfZZ6k9hmNyc2nYabCo4uMSpDw4zrgDk",
        "bafzbeidigywdclqvl5hxfefwp5onbffcfife7pza57mmfb4tiqmtkdjw64",
    ),
]


@pytest.mark.parametrize(("key", "b58", "cid"), VECTORS)
def test_vectors(key: bytes, b58: str, cid: str) -> None:
    pid = PeerID.from_public_key(deserialize_public_key(key))
    assert pid.to_base58() == b58
    assert str(pid) == b58
    assert pid.to_cid() == cid
    assert PeerID.from_string(b58) == pid
    assert PeerID.from_string(cid) == pid
    assert PeerID.from_bytes(pid.to_bytes()) == pid


def test_identity_multihash_layout() -> None:
    pid = PeerID.from_public_key(deserialize_public_key(ED25519_PUBLIC))
    assert pid.to_bytes() == b"\x00\x24" + ED25519_PUBLIC
    pid = PeerID.from_public_key(deserialize_public_key(SECP256K1_PUBLIC))
    assert pid.to_bytes() == b"\x00\x25" + SECP256K1_PUBLIC


def test_sha256_multihash_layout() -> None:
    pid = PeerID.from_public_key(deserialize_public_key(ECDSA_PUBLIC))
    assert pid.to_bytes() == b"\x12\x20" + hashlib.sha256(ECDSA_PUBLIC).digest()
    assert pid.extract_public_key() is None


def test_spec_text_example_qm_and_cid() -> None:
    b58 = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    cid = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"
    pid = PeerID.from_string(b58)
    assert pid.to_bytes().hex().startswith("12209dff3b")
    assert pid.to_bytes().hex().endswith("f0b9")
    assert pid.to_cid() == cid
    assert PeerID.from_string(cid) == pid
    assert PeerID.from_string(cid).to_base58() == b58


def test_spec_text_example_ed25519() -> None:
    pid = PeerID.from_string("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
    hexed = pid.to_bytes().hex()
    assert hexed.startswith("0024080112202ffa35a9")
    assert hexed.endswith("336b")
    key = pid.extract_public_key()
    assert key is not None
    assert pid.matches_public_key(key)


@pytest.mark.parametrize("make", [generate_ed25519, generate_secp256k1])
def test_extract_and_match_generated_keys(make: Callable[[], PrivateKey]) -> None:
    sk = make()
    pid = PeerID.from_public_key(sk.public_key)
    assert pid.extract_public_key() == sk.public_key
    assert pid.matches_public_key(sk.public_key)
    assert not pid.matches_public_key(generate_ed25519().public_key)


def test_sha256_peer_id_matches_its_key() -> None:
    key = deserialize_public_key(ECDSA_PUBLIC)
    pid = PeerID.from_public_key(key)
    assert pid.matches_public_key(key)
    assert not pid.matches_public_key(generate_ed25519().public_key)


@pytest.mark.parametrize("prefix", ["B", "z", "f", "F", "k", "m", "u"])
def test_other_multibases_parse(prefix: str) -> None:
    pid = PeerID.from_public_key(generate_ed25519().public_key)
    raw = b"\x01\x72" + pid.to_bytes()
    encoded = {
        "B": base64.b32encode(raw).decode().rstrip("="),
        "z": base58.b58encode(raw).decode(),
        "f": raw.hex(),
        "F": raw.hex().upper(),
        "k": _base36(raw),
        "m": base64.b64encode(raw).decode().rstrip("="),
        "u": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }[prefix]
    assert PeerID.from_string(prefix + encoded) == pid


def _base36(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + out
    return out


@pytest.mark.parametrize(
    "text",
    [
        "",
        "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p0",  # '0' not base58
        "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p",  # truncated
        "QmVMT29id3TUASyfZZ6k9hmNyc2nYabCo4uMSpDw4zrgD",  # truncated
        "xyz",  # unknown multibase
        "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqx",  # truncated base32
        "Bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe",  # B wants upper case
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb CID, not 0x72
        "b" + "a" * 300,  # too long
        "zQmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # CIDv0 bytes behind a prefix
    ],
)
def test_invalid_strings(text: str) -> None:
    with pytest.raises(InvalidPeerIDError):
        PeerID.from_string(text)


def test_non_canonical_base32_tail_is_rejected() -> None:
    # The last base32 digit carries one padding bit that must be zero ('e' -> 'f' sets it).
    with pytest.raises(InvalidPeerIDError, match="non-canonical"):
        PeerID.from_string("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxf")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x00",  # empty identity
        b"\x00\x2b" + bytes(43),  # identity longer than 42 bytes
        b"\x00\x05abc",  # length mismatch
        b"\x12\x20" + bytes(31),
        b"\x12\x20" + bytes(33),
        b"\x12\x14" + bytes(20),  # truncated sha2-256 digest
        b"\x11\x14" + bytes(20),  # sha1
        b"\x13\x40" + bytes(64),  # sha2-512
    ],
)
def test_invalid_bytes(data: bytes) -> None:
    with pytest.raises(InvalidPeerIDError):
        PeerID.from_bytes(data)


def test_invalid_peer_id_error_is_decode_and_value_error() -> None:
    with pytest.raises(DecodeError):
        PeerID(b"\x99")
    with pytest.raises(ValueError, match="multihash"):
        PeerID(b"\x99\x00")


def test_identity_with_garbage_key_fails_only_on_extraction() -> None:
    pid = PeerID(b"\x00\x03abc")
    with pytest.raises(DecodeError):
        pid.extract_public_key()


def test_immutable_hashable_ordered() -> None:
    a = PeerID.from_string(VECTORS[0][1])
    b = PeerID.from_string(VECTORS[2][1])
    assert a < b  # 0x00... sorts before 0x12...
    assert b > a
    assert a <= PeerID(a.to_bytes())
    assert sorted([b, a]) == [a, b]
    assert len({a, PeerID(a.to_bytes()), b}) == 2
    assert a != a.to_bytes()
    with pytest.raises(AttributeError):
        a._bytes = b""
    assert pickle.loads(pickle.dumps(a)) == a
    assert copy.deepcopy(a) == a
    assert bytes(a) == a.to_bytes()
    assert repr(a) == f"PeerID({VECTORS[0][1]!r})"


class _FakeKey(PublicKey):
    """A key with an arbitrary-length Data field, to probe the 42-byte inlining boundary."""

    def __init__(self, size: int) -> None:
        self._raw = bytes(size)

    @property
    def key_type(self) -> KeyType:
        return KeyType.Ed25519

    def to_bytes(self) -> bytes:
        return self._raw

    def verify(self, data: bytes, signature: bytes) -> bool:
        return False


def test_inlining_boundary_is_42_bytes() -> None:
    at_limit = _FakeKey(38)  # 08 01 12 26 + 38 bytes = 42 bytes serialized
    assert len(at_limit.serialize()) == 42
    assert PeerID.from_public_key(at_limit).to_bytes() == b"\x00\x2a" + at_limit.serialize()
    over = _FakeKey(39)
    assert len(over.serialize()) == 43
    expected = b"\x12\x20" + hashlib.sha256(over.serialize()).digest()
    assert PeerID.from_public_key(over).to_bytes() == expected
