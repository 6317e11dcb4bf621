"""Identity keys (Ed25519, secp256k1; RSA and ECDSA verify-only) and their key files."""

from .keyfile import KeyFileError, load_or_create_identity
from .keys import (
    RSA_MAX_BITS,
    RSA_MIN_BITS,
    EcdsaPublicKey,
    Ed25519PrivateKey,
    Ed25519PublicKey,
    KeyType,
    PrivateKey,
    PublicKey,
    RsaPublicKey,
    Secp256k1PrivateKey,
    Secp256k1PublicKey,
    UnsupportedKeyTypeError,
    deserialize_private_key,
    deserialize_public_key,
    generate_ed25519,
    generate_key_pair,
    generate_secp256k1,
)

__all__ = [
    "RSA_MAX_BITS",
    "RSA_MIN_BITS",
    "EcdsaPublicKey",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "KeyFileError",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "RsaPublicKey",
    "Secp256k1PrivateKey",
    "Secp256k1PublicKey",
    "UnsupportedKeyTypeError",
    "deserialize_private_key",
    "deserialize_public_key",
    "generate_ed25519",
    "generate_key_pair",
    "generate_secp256k1",
    "load_or_create_identity",
]
