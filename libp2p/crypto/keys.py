"""libp2p identity keys: the four key types, their signatures and their protobuf envelopes.

A libp2p peer proves who it is by signing with its identity key; the peer ID is derived from the
*serialized public key* (see :mod:`libp2p.peer.id`). That serialized form is the ``PublicKey``
protobuf of the peer-ids spec (``Type`` + ``Data``), and it must be byte-exact across
implementations, so this module owns it:

* encoding is deterministic: both fields, in tag order, minimal varints, ``Type`` written even
  when it is ``RSA = 0`` (``08 00``);
* decoding accepts the two fields in either order but nothing else: unknown, repeated or
  non-minimally encoded fields are rejected, so one key has exactly one accepted encoding
  length-wise and a peer cannot smuggle data into a key;
* everything that can come from the network raises :class:`~libp2p.exceptions.DecodeError` when
  malformed -- never a protobuf, ``cryptography`` or ``coincurve`` exception.

Key types and what we can do with them:

=========  ==================================  ========================  ==========================
type       public ``Data``                     private ``Data``          signature
=========  ==================================  ========================  ==========================
Ed25519    32 raw bytes                        64 bytes ``seed || pub``  RFC 8032, 64 bytes
Secp256k1  33-byte compressed SEC1 point       32-byte scalar            ECDSA(SHA-256(msg)), DER
RSA        DER SubjectPublicKeyInfo            (not supported)           PKCS#1 v1.5 over SHA-256
ECDSA      DER SubjectPublicKeyInfo            (not supported)           ECDSA(SHA-256(msg)), DER
=========  ==================================  ========================  ==========================

RSA and ECDSA are verify-only: we must check signatures from peers that use them, but we never
create such identities ourselves.
"""

from __future__ import annotations

import abc
import enum
import hmac
from hashlib import sha256
from typing import TYPE_CHECKING, Final, TypeVar

from ..exceptions import DecodeError, LocalUsageError

# ``cryptography``, ``coincurve`` and protobuf take a good part of ``import libp2p``'s time, and
# nothing needs them until a key is generated, loaded, serialized or used: they are imported
# inside the functions that use them (once per key operation, never per frame).
if TYPE_CHECKING:
    import coincurve
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.asymmetric import ed25519 as _ed25519

    from .pb import crypto_pb2

__all__ = [
    "EcdsaPublicKey",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "RSA_MAX_BITS",
    "RSA_MIN_BITS",
    "RsaPublicKey",
    "Secp256k1PrivateKey",
    "Secp256k1PublicKey",
    "UnsupportedKeyTypeError",
    "deserialize_private_key",
    "deserialize_public_key",
    "generate_ed25519",
    "generate_key_pair",
    "generate_secp256k1",
]

#: Smallest RSA modulus accepted, in bits (go-libp2p ``MinRsaKeyBits``).
RSA_MIN_BITS: Final = 2048
#: Largest RSA modulus accepted, in bits (go-libp2p ``maxRsaKeyBits``); bounds verify cost.
RSA_MAX_BITS: Final = 8192

# Order of the secp256k1 group, used to normalise high-S signatures before verification.
_SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class KeyType(enum.IntEnum):
    """Key algorithm, with the numbering of the ``KeyType`` protobuf enum."""

    RSA = 0
    Ed25519 = 1
    Secp256k1 = 2
    ECDSA = 3


class UnsupportedKeyTypeError(DecodeError):
    """The key type is valid libp2p but this library cannot handle it in this role.

    Raised, for example, when loading an RSA or ECDSA *private* key (we only verify with those).
    """


# --------------------------------------------------------------------------------------------
# Protobuf edge
# --------------------------------------------------------------------------------------------

_Msg = TypeVar("_Msg", "crypto_pb2.PublicKey", "crypto_pb2.PrivateKey")


def _encode(cls: type[_Msg], key_type: KeyType, data: bytes) -> bytes:
    from .pb import crypto_pb2

    msg = cls(Type=crypto_pb2.KeyType.ValueType(int(key_type)), Data=data)
    return msg.SerializeToString(deterministic=True)


def _decode(cls: type[_Msg], data: bytes) -> tuple[KeyType, bytes]:
    """Parse a key envelope strictly; see the module docstring for the policy."""
    from google.protobuf import message as _pb_message

    what = cls.DESCRIPTOR.name
    msg = cls()
    try:
        msg.ParseFromString(data)
    except _pb_message.Error as exc:
        # Includes missing required fields (upb reports these as EncodeError) and unknown
        # key type numbers: proto2 enums are closed, so an unknown Type counts as missing.
        raise DecodeError(
            f"malformed {what} protobuf (a field is corrupt or missing, or the key type "
            f"is unknown): {exc}"
        ) from exc
    if not (msg.HasField("Type") and msg.HasField("Data")):  # pragma: no cover - upb checks
        raise DecodeError(f"{what} protobuf lacks a required field")
    if cls(Type=msg.Type, Data=msg.Data).ByteSize() != len(data):
        raise DecodeError(f"{what} protobuf has unknown, repeated or non-minimally encoded fields")
    return KeyType(msg.Type), bytes(msg.Data)


# --------------------------------------------------------------------------------------------
# Abstract interfaces
# --------------------------------------------------------------------------------------------


class PublicKey(abc.ABC):
    """A public key that can check signatures made by a libp2p peer.

    Two public keys are equal when their serialized forms are equal, so keys can be used in
    sets and as dict keys.
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def key_type(self) -> KeyType:
        """The algorithm of this key."""

    @abc.abstractmethod
    def to_bytes(self) -> bytes:
        """The raw key bytes: the ``Data`` field of the ``PublicKey`` protobuf."""

    @abc.abstractmethod
    def verify(self, data: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is a valid signature of ``data`` by this key.

        Never raises for a bad or malformed signature; it simply returns ``False``.
        """

    def serialize(self) -> bytes:
        """The deterministic ``PublicKey`` protobuf encoding (the input of peer ID derivation)."""
        from .pb import crypto_pb2

        return _encode(crypto_pb2.PublicKey, self.key_type, self.to_bytes())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash(self.serialize())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_bytes().hex()})"


class PrivateKey(abc.ABC):
    """A private identity key: signs data and knows its public half.

    The ``repr`` never shows secret material. Equality compares serialized forms in constant
    time.
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def key_type(self) -> KeyType:
        """The algorithm of this key."""

    @abc.abstractmethod
    def to_bytes(self) -> bytes:
        """The raw secret key bytes: the ``Data`` field of the ``PrivateKey`` protobuf."""

    @abc.abstractmethod
    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` according to the rules of this key type."""

    @property
    @abc.abstractmethod
    def public_key(self) -> PublicKey:
        """The matching public key."""

    def serialize(self) -> bytes:
        """The ``PrivateKey`` protobuf encoding, as stored in key files."""
        from .pb import crypto_pb2

        return _encode(crypto_pb2.PrivateKey, self.key_type, self.to_bytes())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrivateKey):
            return NotImplemented
        return hmac.compare_digest(self.serialize(), other.serialize())

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(public={self.public_key.to_bytes().hex()})"


# --------------------------------------------------------------------------------------------
# Ed25519
# --------------------------------------------------------------------------------------------


class Ed25519PublicKey(PublicKey):
    """An Ed25519 public key (32 raw bytes); signatures are plain RFC 8032, no prehash."""

    __slots__ = ("_key", "_raw")

    def __init__(self, key: _ed25519.Ed25519PublicKey) -> None:
        self._key = key
        self._raw = key.public_bytes_raw()

    @classmethod
    def from_bytes(cls, data: bytes) -> Ed25519PublicKey:
        """Load a key from its 32 raw bytes; raises :class:`DecodeError` if malformed."""
        if len(data) != 32:
            raise DecodeError(f"Ed25519 public key must be 32 bytes, got {len(data)}")
        from cryptography.hazmat.primitives.asymmetric import ed25519 as _ed25519

        try:
            return cls(_ed25519.Ed25519PublicKey.from_public_bytes(bytes(data)))
        except ValueError as exc:
            raise DecodeError(f"invalid Ed25519 public key: {exc}") from exc

    @property
    def key_type(self) -> KeyType:
        """Always :attr:`KeyType.Ed25519`."""
        return KeyType.Ed25519

    def to_bytes(self) -> bytes:
        """The 32-byte public key."""
        return self._raw

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Check an RFC 8032 signature; ``False`` for any bad or malformed signature."""
        if len(signature) != 64:
            return False
        from cryptography.exceptions import InvalidSignature

        try:
            self._key.verify(bytes(signature), bytes(data))
        except InvalidSignature:
            return False
        return True


class Ed25519PrivateKey(PrivateKey):
    """An Ed25519 private key; serialized as 64 bytes ``seed || public key``."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: _ed25519.Ed25519PrivateKey) -> None:
        self._key = key
        self._public = Ed25519PublicKey(key.public_key())

    @classmethod
    def generate(cls) -> Ed25519PrivateKey:
        """A fresh random key."""
        from cryptography.hazmat.primitives.asymmetric import ed25519 as _ed25519

        return cls(_ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519PrivateKey:
        """Derive the key from a 32-byte RFC 8032 seed."""
        if len(seed) != 32:
            raise LocalUsageError(f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        from cryptography.hazmat.primitives.asymmetric import ed25519 as _ed25519

        return cls(_ed25519.Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @classmethod
    def from_bytes(cls, data: bytes) -> Ed25519PrivateKey:
        """Load the 64-byte ``seed || pub`` form (or legacy 96-byte ``seed || pub || pub``).

        The embedded public key must match the one derived from the seed, otherwise
        :class:`DecodeError` is raised.
        """
        data = bytes(data)
        if len(data) == 96:
            if not hmac.compare_digest(data[32:64], data[64:96]):
                raise DecodeError("legacy 96-byte Ed25519 private key has two different pubkeys")
            data = data[:64]
        if len(data) != 64:
            raise DecodeError(f"Ed25519 private key must be 64 bytes, got {len(data)}")
        from cryptography.hazmat.primitives.asymmetric import ed25519 as _ed25519

        key = cls(_ed25519.Ed25519PrivateKey.from_private_bytes(data[:32]))
        if not hmac.compare_digest(key.public_key.to_bytes(), data[32:]):
            raise DecodeError("Ed25519 private key: embedded public key does not match the seed")
        return key

    @property
    def key_type(self) -> KeyType:
        """Always :attr:`KeyType.Ed25519`."""
        return KeyType.Ed25519

    def to_bytes(self) -> bytes:
        """64 bytes: the seed followed by the public key."""
        return self._key.private_bytes_raw() + self._public.to_bytes()

    def sign(self, data: bytes) -> bytes:
        """A 64-byte RFC 8032 signature of ``data``."""
        return self._key.sign(bytes(data))

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self._public


# --------------------------------------------------------------------------------------------
# Secp256k1
# --------------------------------------------------------------------------------------------


class Secp256k1PublicKey(PublicKey):
    """A secp256k1 public key, serialized as a 33-byte compressed SEC1 point.

    Signatures are ECDSA over SHA-256 of the message, DER-encoded.
    """

    __slots__ = ("_key", "_raw")

    def __init__(self, key: coincurve.PublicKey) -> None:
        self._key = key
        self._raw = bytes(key.format(compressed=True))

    @classmethod
    def from_bytes(cls, data: bytes) -> Secp256k1PublicKey:
        """Load a SEC1 point; compressed (33 bytes) or, like go, uncompressed (65 bytes)."""
        if len(data) not in (33, 65):
            raise DecodeError(f"secp256k1 public key must be 33 or 65 bytes, got {len(data)}")
        import coincurve

        try:
            return cls(coincurve.PublicKey(bytes(data)))
        except ValueError as exc:
            raise DecodeError(f"invalid secp256k1 public key: {exc}") from exc

    @property
    def key_type(self) -> KeyType:
        """Always :attr:`KeyType.Secp256k1`."""
        return KeyType.Secp256k1

    def to_bytes(self) -> bytes:
        """The 33-byte compressed point."""
        return self._raw

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Check a DER ECDSA signature of SHA-256(``data``); ``False`` if bad or malformed.

        libsecp256k1 only accepts low-S signatures while go-libp2p accepts both, so a high-S
        signature is normalised before it is checked.
        """
        from cryptography.hazmat.primitives.asymmetric.utils import (
            decode_dss_signature,
            encode_dss_signature,
        )

        try:
            r, s = decode_dss_signature(bytes(signature))
        except ValueError:
            return False
        if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
            return False
        if s > _SECP256K1_N // 2:
            s = _SECP256K1_N - s
        try:
            return bool(self._key.verify(encode_dss_signature(r, s), bytes(data), hasher=_sha256))
        except ValueError:
            return False


def _sha256(data: bytes) -> bytes:
    return sha256(data).digest()


class Secp256k1PrivateKey(PrivateKey):
    """A secp256k1 private key; serialized as its 32-byte big-endian scalar."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: coincurve.PrivateKey) -> None:
        self._key = key
        self._public = Secp256k1PublicKey(key.public_key)

    @classmethod
    def generate(cls) -> Secp256k1PrivateKey:
        """A fresh random key."""
        import coincurve

        return cls(coincurve.PrivateKey())

    @classmethod
    def from_bytes(cls, data: bytes) -> Secp256k1PrivateKey:
        """Load a 32-byte scalar; raises :class:`DecodeError` if it is not a valid key."""
        if len(data) != 32:
            raise DecodeError(f"secp256k1 private key must be 32 bytes, got {len(data)}")
        import coincurve

        try:
            return cls(coincurve.PrivateKey(bytes(data)))
        except ValueError as exc:
            raise DecodeError(f"invalid secp256k1 private key: {exc}") from exc

    @property
    def key_type(self) -> KeyType:
        """Always :attr:`KeyType.Secp256k1`."""
        return KeyType.Secp256k1

    def to_bytes(self) -> bytes:
        """The 32-byte secret scalar."""
        return bytes(self._key.secret)

    def sign(self, data: bytes) -> bytes:
        """A DER-encoded (low-S) ECDSA signature of SHA-256(``data``)."""
        return bytes(self._key.sign(bytes(data), hasher=_sha256))

    @property
    def public_key(self) -> Secp256k1PublicKey:
        """The matching public key."""
        return self._public


# --------------------------------------------------------------------------------------------
# RSA and ECDSA (verify only)
# --------------------------------------------------------------------------------------------


def _load_spki(data: bytes, what: str) -> object:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_der_public_key(bytes(data))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise DecodeError(f"invalid {what} public key (expected DER SubjectPublicKeyInfo)") from exc


def _spki(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class RsaPublicKey(PublicKey):
    """An RSA public key (verify only): DER SubjectPublicKeyInfo, PKCS#1 v1.5 over SHA-256.

    Like go-libp2p, keys smaller than :data:`RSA_MIN_BITS` or larger than :data:`RSA_MAX_BITS`
    are refused.
    """

    __slots__ = ("_key", "_raw")

    def __init__(self, key: rsa.RSAPublicKey) -> None:
        if not RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
            raise DecodeError(
                f"RSA key of {key.key_size} bits is outside the accepted range "
                f"{RSA_MIN_BITS}..{RSA_MAX_BITS}"
            )
        self._key = key
        self._raw = _spki(key)

    @classmethod
    def from_bytes(cls, data: bytes) -> RsaPublicKey:
        """Load a DER SubjectPublicKeyInfo; raises :class:`DecodeError` if malformed."""
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = _load_spki(data, "RSA")
        if not isinstance(key, rsa.RSAPublicKey):
            raise DecodeError("RSA public key: the SubjectPublicKeyInfo is not an RSA key")
        return cls(key)

    @property
    def key_type(self) -> KeyType:
        """Always :attr:`KeyType.RSA`."""
        return KeyType.RSA

    def to_bytes(self) -> bytes:
        """DER SubjectPublicKeyInfo (re-encoded canonically, as go does)."""
        return self._raw

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Check a PKCS#1 v1.5 SHA-256 signature; ``False`` if bad or malformed."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            self._key.verify(bytes(signature), bytes(data), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


class EcdsaPublicKey(PublicKey):
    """A NIST-curve ECDSA public key (verify only): DER SubjectPublicKeyInfo.

    Signatures are ECDSA over SHA-256 of the message (whatever the curve), DER-encoded.
    """

    __slots__ = ("_key", "_raw")

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        # The curves go's x509.ParsePKIXPublicKey accepts for ECDSA keys.
        if not isinstance(key.curve, (ec.SECP224R1, ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)):
            raise DecodeError(f"ECDSA public key on unsupported curve {key.curve.name}")
        self._key = key
        self._raw = _spki(key)

    @classmethod
    def from_bytes(cls, data: bytes) -> EcdsaPublicKey:
        """Load a DER SubjectPublicKeyInfo; raises :class:`DecodeError` if malformed."""
        from cryptography.hazmat.primitives.asymmetric import ec

        key = _load_spki(data, "ECDSA")
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise DecodeError("ECDSA public key: the SubjectPublicKeyInfo is not an EC key")
        return cls(key)

    @property
    def key_type(self) -> KeyType:
        """Always :attr:`KeyType.ECDSA`."""
        return KeyType.ECDSA

    def to_bytes(self) -> bytes:
        """DER SubjectPublicKeyInfo with an uncompressed point (canonical, as go does)."""
        return self._raw

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Check a DER ECDSA signature of SHA-256(``data``); ``False`` if bad or malformed."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            self._key.verify(bytes(signature), bytes(data), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


# --------------------------------------------------------------------------------------------
# Construction and (de)serialization
# --------------------------------------------------------------------------------------------


def generate_ed25519() -> Ed25519PrivateKey:
    """A fresh random Ed25519 identity (the recommended key type)."""
    return Ed25519PrivateKey.generate()


def generate_secp256k1() -> Secp256k1PrivateKey:
    """A fresh random secp256k1 identity."""
    return Secp256k1PrivateKey.generate()


def generate_key_pair(key_type: KeyType = KeyType.Ed25519) -> PrivateKey:
    """A fresh random identity of ``key_type``; only Ed25519 and Secp256k1 can be generated."""
    if key_type == KeyType.Ed25519:
        return generate_ed25519()
    if key_type == KeyType.Secp256k1:
        return generate_secp256k1()
    raise LocalUsageError(f"cannot generate {KeyType(key_type).name} keys; use Ed25519")


def deserialize_public_key(data: bytes) -> PublicKey:
    """Decode a ``PublicKey`` protobuf (e.g. from a Noise handshake or an identity peer ID).

    Raises :class:`DecodeError` for anything malformed, including keys that fail the type's
    own validation (wrong length, point not on the curve, RSA size out of range).
    """
    from .pb import crypto_pb2

    key_type, raw = _decode(crypto_pb2.PublicKey, bytes(data))
    if key_type == KeyType.Ed25519:
        return Ed25519PublicKey.from_bytes(raw)
    if key_type == KeyType.Secp256k1:
        return Secp256k1PublicKey.from_bytes(raw)
    if key_type == KeyType.RSA:
        return RsaPublicKey.from_bytes(raw)
    return EcdsaPublicKey.from_bytes(raw)


def deserialize_private_key(data: bytes) -> PrivateKey:
    """Decode a ``PrivateKey`` protobuf (as written by :meth:`PrivateKey.serialize`).

    Only Ed25519 and Secp256k1 private keys are supported; RSA and ECDSA raise
    :class:`UnsupportedKeyTypeError`. Malformed input raises :class:`DecodeError`.
    """
    from .pb import crypto_pb2

    key_type, raw = _decode(crypto_pb2.PrivateKey, bytes(data))
    if key_type == KeyType.Ed25519:
        return Ed25519PrivateKey.from_bytes(raw)
    if key_type == KeyType.Secp256k1:
        return Secp256k1PrivateKey.from_bytes(raw)
    raise UnsupportedKeyTypeError(
        f"{key_type.name} private keys are not supported (only Ed25519 and Secp256k1)"
    )
