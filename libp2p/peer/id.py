"""Peer IDs: the multihash of a peer's serialized public key.

A peer ID is derived from ``pk = PublicKey.serialize()``:

* if ``len(pk) <= 42`` it is the *identity* multihash ``00 || len || pk`` -- the key is inlined,
  so a verifier can recover it from the ID alone (Ed25519 IDs print as ``12D3KooW...``,
  secp256k1 as ``16Uiu2HA...``);
* otherwise it is the sha2-256 multihash ``12 20 || SHA-256(pk)`` (RSA and ECDSA, ``Qm...``).

The binary form (the multihash) is what travels in protocols; the text form is base58btc of it
(legacy, still the default for display) or a CIDv1 with the ``libp2p-key`` codec (0x72) in a
multibase encoding, usually base32 (``bafz...``). Parsing follows the spec: strings starting
with ``1`` or ``Qm`` are base58btc, anything else must be a multibase CID.

Like rust-libp2p, only identity (at most 42 bytes of key) and sha2-256 multihashes are valid
peer IDs; anything else is rejected with :class:`InvalidPeerIDError`.
"""

from __future__ import annotations

import base64
import binascii
from hashlib import sha256
from typing import Final, NoReturn

import base58

from ..crypto.keys import PublicKey, deserialize_public_key
from ..exceptions import DecodeError

__all__ = [
    "InvalidPeerIDError",
    "MAX_INLINE_KEY_LENGTH",
    "PeerID",
]

#: Serialized public keys up to this many bytes are inlined with the identity multihash.
MAX_INLINE_KEY_LENGTH: Final = 42

_IDENTITY: Final = 0x00
_SHA2_256: Final = 0x12
_CID_V1: Final = 0x01
_LIBP2P_KEY_CODEC: Final = 0x72
# Longest accepted text form. Real IDs are well below this (a base32 CID of an inlined key is
# about 75 characters); the cap keeps base58's quadratic decoding away from huge inputs.
_MAX_STRING_LENGTH: Final = 256


class InvalidPeerIDError(DecodeError, ValueError):
    """Bytes or text that are not a valid peer ID.

    A :class:`~libp2p.exceptions.DecodeError` (the bytes usually come from a peer) and also a
    :class:`ValueError`, so code parsing user input can catch the usual exception.
    """


def _invalid(message: str, cause: BaseException | None = None) -> NoReturn:
    raise InvalidPeerIDError(message) from cause


def _validate_multihash(mh: bytes) -> None:
    if len(mh) < 2:
        _invalid(f"peer ID too short to be a multihash ({len(mh)} bytes)")
    code, length = mh[0], mh[1]
    if code == _IDENTITY:
        if not 0 < length <= MAX_INLINE_KEY_LENGTH:
            _invalid(f"identity peer ID must inline 1..{MAX_INLINE_KEY_LENGTH} bytes, not {length}")
    elif code == _SHA2_256:
        if length != 32:
            _invalid(f"sha2-256 peer ID must have a 32-byte digest, not {length}")
    else:
        _invalid(f"unsupported multihash code 0x{code:02x} (only identity and sha2-256)")
    if len(mh) != 2 + length:
        _invalid(f"multihash declares a {length}-byte digest but carries {len(mh) - 2} bytes")


class PeerID:
    """An immutable, hashable peer ID, ordered by its binary form."""

    __slots__ = ("_bytes", "_hash")

    _bytes: bytes
    _hash: int

    def __init__(self, multihash: bytes) -> None:
        """Wrap a binary multihash; raises :class:`InvalidPeerIDError` if it is not valid."""
        mh = bytes(multihash)
        _validate_multihash(mh)
        object.__setattr__(self, "_bytes", mh)
        object.__setattr__(self, "_hash", hash(mh))

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes) -> PeerID:
        """Parse the binary form (a multihash), e.g. from a ``/p2p`` multiaddr or a protobuf."""
        return cls(data)

    @classmethod
    def from_public_key(cls, public_key: PublicKey) -> PeerID:
        """Derive the peer ID of ``public_key`` (identity multihash for keys of ≤ 42 bytes)."""
        pk = public_key.serialize()
        if len(pk) <= MAX_INLINE_KEY_LENGTH:
            return cls(bytes((_IDENTITY, len(pk))) + pk)
        return cls(bytes((_SHA2_256, 32)) + sha256(pk).digest())

    @classmethod
    def from_string(cls, text: str) -> PeerID:
        """Parse a base58btc peer ID (``12D3KooW...``, ``Qm...``) or a ``libp2p-key`` CID.

        Supported multibases for CIDs: base32 (``b``/``B``), base36 (``k``/``K``), base58btc
        (``z``), base16 (``f``/``F``) and base64 (``m``/``M``/``u``/``U``). Encodings must be
        canonical. Raises :class:`InvalidPeerIDError` for anything else.
        """
        if not isinstance(text, str):
            _invalid(f"peer ID text must be str, not {type(text).__name__}")
        if not text:
            _invalid("empty peer ID string")
        if len(text) > _MAX_STRING_LENGTH:
            _invalid(f"peer ID string too long ({len(text)} characters)")
        if text.startswith(("1", "Qm")):
            return cls(_b58decode(text))
        return cls(_multihash_from_cid(_multibase_decode(text)))

    # -- accessors -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The binary form (the multihash)."""
        return self._bytes

    def to_base58(self) -> str:
        """The legacy text form: base58btc of the multihash, no multibase prefix."""
        return str(base58.b58encode(self._bytes).decode("ascii"))

    def to_cid(self) -> str:
        """The CIDv1 text form: ``b`` + base32 (lower case, no padding) of ``01 72 || mh``."""
        raw = bytes((_CID_V1, _LIBP2P_KEY_CODEC)) + self._bytes
        return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")

    def extract_public_key(self) -> PublicKey | None:
        """The public key inlined in an identity peer ID, or ``None`` for a hashed one.

        Raises :class:`~libp2p.exceptions.DecodeError` if the inlined bytes are not a valid key.
        """
        if self._bytes[0] != _IDENTITY:
            return None
        return deserialize_public_key(self._bytes[2:])

    def matches_public_key(self, public_key: PublicKey) -> bool:
        """Whether this peer ID is the one derived from ``public_key``."""
        return PeerID.from_public_key(public_key) == self

    # -- dunder ----------------------------------------------------------------------------

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PeerID is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("PeerID is immutable")

    def __reduce__(self) -> tuple[type[PeerID], tuple[bytes]]:
        return (PeerID, (self._bytes,))

    def __bytes__(self) -> bytes:
        return self._bytes

    def __str__(self) -> str:
        return self.to_base58()

    def __repr__(self) -> str:
        return f"PeerID({self.to_base58()!r})"

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PeerID):
            return NotImplemented
        return self._bytes == other._bytes

    def __lt__(self, other: PeerID) -> bool:
        if not isinstance(other, PeerID):
            return NotImplemented
        return self._bytes < other._bytes

    def __le__(self, other: PeerID) -> bool:
        if not isinstance(other, PeerID):
            return NotImplemented
        return self._bytes <= other._bytes

    def __gt__(self, other: PeerID) -> bool:
        if not isinstance(other, PeerID):
            return NotImplemented
        return self._bytes > other._bytes

    def __ge__(self, other: PeerID) -> bool:
        if not isinstance(other, PeerID):
            return NotImplemented
        return self._bytes >= other._bytes


# ------------------------------------------------------------------------------------------
# Text encodings
# ------------------------------------------------------------------------------------------

_B58_ALPHABET: Final = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
_B36_ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyz"


def _b58decode(text: str) -> bytes:
    if not set(text) <= _B58_ALPHABET:
        _invalid(f"invalid base58btc character in peer ID {text!r}")
    return bytes(base58.b58decode(text))


def _b36decode(text: str) -> bytes:
    if not text or not set(text) <= set(_B36_ALPHABET):
        _invalid("invalid base36 text in peer ID")
    zeros = len(text) - len(text.lstrip("0"))
    value = int(text, 36)
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return b"\x00" * zeros + body


def _b36encode(data: bytes) -> str:
    zeros = len(data) - len(data.lstrip(b"\x00"))
    value = int.from_bytes(data, "big")
    digits = []
    while value:
        value, rem = divmod(value, 36)
        digits.append(_B36_ALPHABET[rem])
    return "0" * zeros + "".join(reversed(digits))


def _b32decode_nopad(text: str) -> bytes:
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


def _b64decode_nopad(text: str, alt: bytes | None) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=alt, validate=True)


def _multibase_decode(text: str) -> bytes:
    """Decode multibase ``text`` and check the encoding was canonical (re-encodes equal)."""
    prefix, body = text[0], text[1:]
    try:
        if prefix in "bB":
            data = _b32decode_nopad(body)
            canon = base64.b32encode(data).decode("ascii").rstrip("=")
            canon = canon.lower() if prefix == "b" else canon
        elif prefix in "kK":
            data = _b36decode(body.lower())
            canon = _b36encode(data)
            canon = canon.upper() if prefix == "K" else canon
        elif prefix == "z":
            data = _b58decode(body)
            canon = str(base58.b58encode(data).decode("ascii"))
        elif prefix in "fF":
            data = bytes.fromhex(body)
            canon = data.hex()
            canon = canon.upper() if prefix == "F" else canon
        elif prefix in "mMuU":
            alt = b"-_" if prefix in "uU" else None
            if prefix in "MU":
                data = base64.b64decode(body, altchars=alt, validate=True)
                canon = base64.b64encode(data, altchars=alt).decode("ascii")
            else:
                data = _b64decode_nopad(body, alt)
                canon = base64.b64encode(data, altchars=alt).decode("ascii").rstrip("=")
        else:
            _invalid(f"peer ID {text!r} is neither base58btc nor a supported multibase CID")
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, InvalidPeerIDError):
            raise
        _invalid(f"invalid multibase encoding in peer ID {text!r}", exc)
    if canon != body:
        _invalid(f"non-canonical multibase encoding in peer ID {text!r}")
    return data


def _multihash_from_cid(cid: bytes) -> bytes:
    # Version and codec are varints; 1 and 0x72 are both one byte, and since varints must be
    # minimal, any other first bytes mean a different version or codec.
    if len(cid) < 2 or cid[0] != _CID_V1:
        _invalid("peer ID CID is not a CIDv1")
    if cid[1] != _LIBP2P_KEY_CODEC:
        _invalid(f"peer ID CID has codec 0x{cid[1]:02x}, expected libp2p-key (0x72)")
    return cid[2:]
