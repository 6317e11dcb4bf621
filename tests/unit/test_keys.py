"""Keys: spec vectors, deterministic encoding, sign/verify and strict decoding."""

from __future__ import annotations

import coincurve
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from libp2p.crypto import (
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
from libp2p.crypto.pb import crypto_pb2
from libp2p.exceptions import DecodeError, LocalUsageError
from libp2p.varint import encode_uvarint

# Test vectors from the libp2p peer-ids spec (hex of the protobuf encodings).
ECDSA_PRIVATE = bytes.fromhex(
    "08031279307702010104203e5b1fe9712e6c314942a750bd67485de3c1efe85b1bfb520ae8f9ae3dfa4a4ca0"
    "0a06082a8648ce3d030107a14403420004de3d300fa36ae0e8f5d530899d83abab44abf3161f162a4bc901d8"
    "e6ecda020e8b6d5f8da30525e71d6851510c098e5c47c646a597fb4dcec034e9f77c409e62"
)
ECDSA_PUBLIC = bytes.fromhex(
    "0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004de3d300fa36ae0e8f5d530899d"
    "83abab44abf3161f162a4bc901d8e6ecda020e8b6d5f8da30525e71d6851510c098e5c47c646a597fb4dcec0"
    "34e9f77c409e62"
)
ED25519_PRIVATE = bytes.fromhex(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d1ed1e8fae2c4a144"
    "b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
ED25519_PUBLIC = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
SECP256K1_PRIVATE = bytes.fromhex(
    "0802122053dadf1d5a164d6b4acdb15e24aa4c5b1d3461bdbd42abedb0a4404d56ced8fb"
)
SECP256K1_PUBLIC = bytes.fromhex(
    "08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99"
)
RSA_PRIVATE = bytes.fromhex(
    "080012ae123082092a0201000282020100e1beab071d08200bde24eef00d049449b07770ff9910257b2d7d5d"
    "da242ce8f0e2f12e1af4b32d9efd2c090f66b0f29986dbb645dae9880089704a94e5066d594162ae6ee8892e"
    "6ec70701db0a6c445c04778eb3de1293aa1a23c3825b85c6620a2bc3f82f9b0c309bc0ab3aeb1873282bebd3"
    "da03c33e76c21e9beb172fd44c9e43be32e2c99827033cf8d0f0c606f4579326c930eb4e854395ad94125654"
    "2c793902185153c474bed109d6ff5141ebf9cd256cf58893a37f83729f97e7cb435ec679d2e33901d27bb35a"
    "a0d7e20561da08885ef0abbf8e2fb48d6a5487047a9ecb1ad41fa7ed84f6e3e8ecd5d98b3982d2a901b44549"
    "91766da295ab78822add5612a2df83bcee814cf50973e80d7ef38111b1bd87da2ae92438a2c8cbcc70b31ee3"
    "19939a3b9c761dbc13b5c086d6b64bf7ae7dacc14622375d92a8ff9af7eb962162bbddebf90acb32adb5e4e4"
    "029f1c96019949ecfbfeffd7ac1e3fbcc6b6168c34be3d5a2e5999fcbb39bba7adbca78eab09b9bc39f7fa4b"
    "93411f4cc175e70c0a083e96bfaefb04a9580b4753c1738a6a760ae1afd851a1a4bdad231cf56e9284d83248"
    "3df215a46c1c21bdf0c6cfe951c18f1ee4078c79c13d63edb6e14feaeffabc90ad317e4875fe648101b08640"
    "97e998f0ca3025ef9638cd2b0caecd3770ab54a1d9c6ca959b0f5dcbc90caeefc4135baca6fd475224269bbe"
    "1b02030100010282020100a472ffa858efd8588ce59ee264b957452f3673acdf5631d7bfd5ba0ef59779c231"
    "b0bc838a8b14cae367b6d9ef572c03c7883b0a3c652f5c24c316b1ccfd979f13d0cd7da20c7d34d9ec32dfdc"
    "81ee7292167e706d705efde5b8f3edfcba41409e642f8897357df5d320d21c43b33600a7ae4e505db957c1af"
    "bc189d73f0b5d972d9aaaeeb232ca20eebd5de6fe7f29d01470354413cc9a0af1154b7af7c1029adcd67c74b"
    "4798afeb69e09f2cb387305e73a1b5f450202d54f0ef096fe1bde340219a1194d1ac9026e90b366cce0c59b2"
    "39d10e4888f52ca1780824d39ae01a6b9f4dd6059191a7f12b2a3d8db3c2868cd4e5a5862b8b625a4197d52c"
    "6ac77710116ebd3ced81c4d91ad5fdfbed68312ebce7eea45c1833ca3acf7da2052820eacf5c6b07d086dabe"
    "b893391c71417fd8a4b1829ae2cf60d1749d0e25da19530d889461c21da3492a8dc6ccac7de83ac1c2185262"
    "c7473c8cc42f547cc9864b02a8073b6aa54a037d8c0de3914784e6205e83d97918b944f11b877b12084c0dd1"
    "d36592f8a4f8b8da5bb404c3d2c079b22b6ceabfbcb637c0dbe0201f0909d533f8bf308ada47aee641a012a4"
    "94d31b54c974e58b87f140258258bb82f31692659db7aa07e17a5b2a0832c24e122d3a8babcc9ee74cbb07d3"
    "058bb85b15f6f6b2674aba9fd34367be9782d444335fbed31e3c4086c652597c27104938b47fa10282010100"
    "e9fdf843c1550070ca711cb8ff28411466198f0e212511c3186623890c0071bf6561219682fe7dbdfd81176e"
    "ba7c4faba21614a20721e0fcd63768e6d925688ecc90992059ac89256e0524de90bf3d8a052ce6a9f6adafa7"
    "12f3107a016e20c80255c9e37d8206d1bc327e06e66eb24288da866b55904fd8b59e6b2ab31bc5eab47e5970"
    "93c63fab7872102d57b4c589c66077f534a61f5f65127459a33c91f6db61fc431b1ae90be92b4149a3255291"
    "baf94304e3efb77b1107b5a3bda911359c40a53c347ff9100baf8f36dc5cd991066b5bdc28b39ed644f404af"
    "e9213f4d31c9d4e40f3a5f5e3c39bebeb244e84137544e1a1839c1c8aaebf0c78a7fad590282010100f6fa1f"
    "1e6b803742d5490b7441152f500970f46feb0b73a6e4baba2aaf3c0e245ed852fc31d86a8e46eb48e90fac40"
    "9989dfee45238f97e8f1f8e83a136488c1b04b8a7fb695f37b8616307ff8a8d63e8cfa0b4fb9b9167ffaebab"
    "f111aa5a4344afbabd002ae8961c38c02da76a9149abdde93eb389eb32595c29ba30d8283a7885218a5a9d33"
    "f7f01dbdf85f3aad016c071395491338ec318d39220e1c7bd69d3d6b520a13a30d745c102b827ad9984b0dd6"
    "aed73916ffa82a06c1c111e7047dcd2668f988a0570a71474992eecf416e068f029ec323d5d635fd24694fc9"
    "bf96973c255d26c772a95bf8b7f876547a5beabf86f06cd21b67994f944e7a5493028201010095b02fd30069"
    "e547426a8bea58e8a2816f33688dac6c6f6974415af8402244a22133baedf34ce499d7036f3f19b38eb00897"
    "c18949b0c5a25953c71aeeccfc8f6594173157cc854bd98f16dffe8f28ca13b77eb43a2730585c49fc3f608c"
    "d811bb54b03b84bddaa8ef910988567f783012266199667a546a18fd88271fbf63a45ae4fd4884706da8befb"
    "9117c0a4d73de5172f8640b1091ed8a4aea3ed4641463f5ff6a5e3401ad7d0c92811f87956d1fd5f9a1d15c7"
    "f3839a08698d9f35f9d966e5000f7cb2655d7b6c4adcd8a9d950ea5f61bb7c9a33c17508f9baa313eecfee4a"
    "e493249ebe05a5d7770bbd3551b2eeb752e3649e0636de08e3d672e66cb90282010100ad93e4c31072b063fc"
    "5ab5fe22afacece775c795d0efdf7c704cfc027bde0d626a7646fc905bb5a80117e3ca49059af14e0160089f"
    "9190065be9bfecf12c3b2145b211c8e89e42dd91c38e9aa23ca73697063564f6f6aa6590088a738722df0560"
    "04d18d7bccac62b3bafef6172fc2a4b071ea37f31eff7a076bcab7dd144e51a9da8754219352aef2c7347897"
    "1539fa41de4759285ea626fa3c72e7085be47d554d915bbb5149cb6ef835351f231043049cd941506a034bf2"
    "f8767f3e1e42ead92f91cb3d75549b57ef7d56ac39c2d80d67f6a2b4ca192974bfc5060e2dd1712179710021"
    "93dba12e7e4133ab201f07500a90495a38610279b13a48d54f0c99028201003e3a1ac0c2b67d54ed5c4bbe04"
    "a7db99103659d33a4f9d35809e1f60c282e5988dddc964527f3b05e6cc890eab3dcb571d66debf3a5527704c"
    "87264b3954d7265f4e8d2c637dd89b491b9cf23f264801f804b90454d65af0c4c830d1aef76f597ef61b26ca"
    "857ecce9cb78d4f6c2218c00d2975d46c2b013fbf59b750c3b92d8d3ed9e6d1fd0ef1ec091a5c286a3fe2dea"
    "d292f40f380065731e2079ebb9f2a7ef2c415ecbb488da98f3a12609ca1b6ec8c734032c8bd513292ff842c3"
    "75d4acd1b02dfb206b24cd815f8e2f9d4af8e7dea0370b19c1b23cc531d78b40e06e1119ee2e08f6f31c6e2e"
    "8444c568d13c5d451a291ae0c9f1d4f27d23b3a00d60ad"
)
RSA_PUBLIC = bytes.fromhex(
    "080012a60430820222300d06092a864886f70d01010105000382020f003082020a0282020100e1beab071d08"
    "200bde24eef00d049449b07770ff9910257b2d7d5dda242ce8f0e2f12e1af4b32d9efd2c090f66b0f29986db"
    "b645dae9880089704a94e5066d594162ae6ee8892e6ec70701db0a6c445c04778eb3de1293aa1a23c3825b85"
    "c6620a2bc3f82f9b0c309bc0ab3aeb1873282bebd3da03c33e76c21e9beb172fd44c9e43be32e2c99827033c"
    "f8d0f0c606f4579326c930eb4e854395ad941256542c793902185153c474bed109d6ff5141ebf9cd256cf588"
    "93a37f83729f97e7cb435ec679d2e33901d27bb35aa0d7e20561da08885ef0abbf8e2fb48d6a5487047a9ecb"
    "1ad41fa7ed84f6e3e8ecd5d98b3982d2a901b4454991766da295ab78822add5612a2df83bcee814cf50973e8"
    "0d7ef38111b1bd87da2ae92438a2c8cbcc70b31ee319939a3b9c761dbc13b5c086d6b64bf7ae7dacc1462237"
    "5d92a8ff9af7eb962162bbddebf90acb32adb5e4e4029f1c96019949ecfbfeffd7ac1e3fbcc6b6168c34be3d"
    "5a2e5999fcbb39bba7adbca78eab09b9bc39f7fa4b93411f4cc175e70c0a083e96bfaefb04a9580b4753c173"
    "8a6a760ae1afd851a1a4bdad231cf56e9284d832483df215a46c1c21bdf0c6cfe951c18f1ee4078c79c13d63"
    "edb6e14feaeffabc90ad317e4875fe648101b0864097e998f0ca3025ef9638cd2b0caecd3770ab54a1d9c6ca"
    "959b0f5dcbc90caeefc4135baca6fd475224269bbe1b0203010001"
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _pb_data(data: bytes) -> bytes:
    msg = crypto_pb2.PrivateKey()
    msg.ParseFromString(data)
    return msg.Data


# ---------------------------------------------------------------------------------------------
# Spec vectors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vector", "cls", "key_type"),
    [
        (ED25519_PUBLIC, Ed25519PublicKey, KeyType.Ed25519),
        (SECP256K1_PUBLIC, Secp256k1PublicKey, KeyType.Secp256k1),
        (ECDSA_PUBLIC, EcdsaPublicKey, KeyType.ECDSA),
        (RSA_PUBLIC, RsaPublicKey, KeyType.RSA),
    ],
)
def test_public_vectors_round_trip(vector: bytes, cls: type[PublicKey], key_type: KeyType) -> None:
    key = deserialize_public_key(vector)
    assert isinstance(key, cls)
    assert key.key_type is key_type
    assert key.serialize() == vector
    assert key.to_bytes() == vector[-len(key.to_bytes()) :]


@pytest.mark.parametrize(
    ("private", "public", "cls"),
    [
        (ED25519_PRIVATE, ED25519_PUBLIC, Ed25519PrivateKey),
        (SECP256K1_PRIVATE, SECP256K1_PUBLIC, Secp256k1PrivateKey),
    ],
)
def test_private_vectors_give_public_vectors(
    private: bytes, public: bytes, cls: type[PrivateKey]
) -> None:
    key = deserialize_private_key(private)
    assert isinstance(key, cls)
    assert key.serialize() == private
    assert key.public_key.serialize() == public
    assert key.public_key == deserialize_public_key(public)


def test_rsa_private_vector_matches_public_vector() -> None:
    # We cannot load RSA private keys ourselves (verify only), so cryptography loads the
    # PKCS#1 DER and we check that our public key encoding agrees with the vector.
    with pytest.raises(UnsupportedKeyTypeError, match="RSA"):
        deserialize_private_key(RSA_PRIVATE)
    sk = serialization.load_der_private_key(_pb_data(RSA_PRIVATE), password=None)
    assert isinstance(sk, rsa.RSAPrivateKey)
    ours = RsaPublicKey(sk.public_key())
    assert ours.serialize() == RSA_PUBLIC
    msg = b"libp2p rsa vector"
    sig = sk.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    assert deserialize_public_key(RSA_PUBLIC).verify(msg, sig)


def test_ecdsa_private_vector_matches_public_vector() -> None:
    with pytest.raises(UnsupportedKeyTypeError, match="ECDSA"):
        deserialize_private_key(ECDSA_PRIVATE)
    sk = serialization.load_der_private_key(_pb_data(ECDSA_PRIVATE), password=None)
    assert isinstance(sk, ec.EllipticCurvePrivateKey)
    assert EcdsaPublicKey(sk.public_key()).serialize() == ECDSA_PUBLIC
    msg = b"libp2p ecdsa vector"
    sig = sk.sign(msg, ec.ECDSA(hashes.SHA256()))
    assert deserialize_public_key(ECDSA_PUBLIC).verify(msg, sig)


# ---------------------------------------------------------------------------------------------
# Deterministic encoding and strict decoding
# ---------------------------------------------------------------------------------------------


def test_rsa_type_zero_is_emitted() -> None:
    encoded = deserialize_public_key(RSA_PUBLIC).serialize()
    assert encoded[:2] == b"\x08\x00"
    assert encoded[2] == 0x12


def test_fields_in_tag_order_with_minimal_lengths() -> None:
    key = generate_ed25519()
    raw = key.public_key.to_bytes()
    assert key.public_key.serialize() == b"\x08\x01\x12\x20" + raw
    assert key.serialize() == b"\x08\x01\x12\x40" + key.to_bytes()


def test_fields_in_reverse_order_are_accepted_and_reencoded_canonically() -> None:
    raw = ED25519_PUBLIC[4:]
    swapped = b"\x12\x20" + raw + b"\x08\x01"
    assert deserialize_public_key(swapped).serialize() == ED25519_PUBLIC


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x08\x01", "no Data"),
        (b"\x12\x20" + bytes(32), "no Type"),
        (b"\x08\x07\x12\x20" + bytes(32), "unknown key type"),
        (ED25519_PUBLIC + b"\x18\x05", "unknown field"),
        (b"\x08\x01" + ED25519_PUBLIC, "repeated Type"),
        (b"\x08\x81\x00" + ED25519_PUBLIC[2:], "non-minimal varint"),
        (ED25519_PUBLIC[:-1], "truncated"),
        (b"\xff\xff\xff", "garbage"),
        (b"\x08\x01\x12\x1f" + bytes(31), "short Ed25519"),
        (b"\x08\x02\x12\x21\x05" + bytes(32), "bad SEC1 prefix"),
        (b"\x08\x02\x12\x21\x02" + b"\xff" * 32, "x not on curve"),
        (b"\x08\x00\x12\x03abc", "RSA garbage"),
        (b"\x08\x03\x12\x03abc", "ECDSA garbage"),
        (RSA_PUBLIC[:2] + b"\x12\x5b" + ECDSA_PUBLIC[4:], "EC key labelled RSA"),
        (ECDSA_PUBLIC[:1] + b"\x03" + RSA_PUBLIC[2:], "RSA key labelled ECDSA"),
    ],
)
def test_malformed_public_keys_raise_decode_error(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError):
        deserialize_public_key(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x08\x01\x12\x20" + bytes(32),  # Ed25519 needs 64 bytes
        b"\x08\x02\x12\x20" + bytes(32),  # secp256k1 scalar 0 is invalid
        b"\x08\x02\x12\x20" + SECP256K1_N.to_bytes(32, "big"),  # scalar == n is invalid
        ED25519_PRIVATE + b"\x18\x00",
    ],
)
def test_malformed_private_keys_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        deserialize_private_key(data)


def test_ed25519_private_key_with_wrong_embedded_public_key_is_rejected() -> None:
    raw = Ed25519PrivateKey.from_bytes(ED25519_PRIVATE[4:]).to_bytes()
    other = generate_ed25519().public_key.to_bytes()
    with pytest.raises(DecodeError, match="does not match"):
        Ed25519PrivateKey.from_bytes(raw[:32] + other)


def test_ed25519_legacy_96_byte_form() -> None:
    raw = ED25519_PRIVATE[4:]
    legacy = raw + raw[32:]
    key = Ed25519PrivateKey.from_bytes(legacy)
    assert key.serialize() == ED25519_PRIVATE  # re-encoded in the 64-byte form
    mismatched = raw + generate_ed25519().public_key.to_bytes()
    with pytest.raises(DecodeError, match="legacy"):
        Ed25519PrivateKey.from_bytes(mismatched)


def test_secp256k1_uncompressed_public_key_is_normalised() -> None:
    key = generate_secp256k1()
    uncompressed = coincurve.PublicKey(key.public_key.to_bytes()).format(compressed=False)
    loaded = Secp256k1PublicKey.from_bytes(uncompressed)
    assert loaded == key.public_key
    assert len(loaded.to_bytes()) == 33


def test_rsa_key_size_limits() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    der = small.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(DecodeError, match="1024 bits"):
        RsaPublicKey.from_bytes(der)
    with pytest.raises(DecodeError):
        deserialize_public_key(b"\x08\x00\x12" + encode_uvarint(len(der)) + der)


def test_ecdsa_rejects_curves_go_does_not_accept() -> None:
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    der = k1.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(DecodeError, match="curve"):
        EcdsaPublicKey.from_bytes(der)


# ---------------------------------------------------------------------------------------------
# Sign and verify
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", [KeyType.Ed25519, KeyType.Secp256k1])
def test_sign_verify_round_trip(key_type: KeyType) -> None:
    key = generate_key_pair(key_type)
    assert key.key_type is key_type
    msg = b"hello libp2p"
    sig = key.sign(msg)
    pub = deserialize_public_key(key.public_key.serialize())
    assert pub.verify(msg, sig)
    assert not pub.verify(msg + b"!", sig)
    tampered = bytearray(sig)
    tampered[len(tampered) // 2] ^= 0x01
    assert not pub.verify(msg, bytes(tampered))
    assert not pub.verify(msg, b"")
    assert not pub.verify(msg, sig + b"\x00")
    assert not pub.verify(msg, b"\x00" * len(sig))
    # Round trip through the private key encoding keeps the key.
    again = deserialize_private_key(key.serialize())
    assert again == key
    assert again.public_key == key.public_key
    assert pub.verify(msg, again.sign(msg))


def test_ed25519_signature_is_rfc8032_over_the_raw_message() -> None:
    key = deserialize_private_key(ED25519_PRIVATE)
    sig = key.sign(b"msg")
    assert len(sig) == 64
    # Ed25519 is deterministic, and cryptography's own implementation agrees.
    ref = ed25519.Ed25519PrivateKey.from_private_bytes(key.to_bytes()[:32])
    assert sig == ref.sign(b"msg")


def test_secp256k1_signature_is_der_ecdsa_over_sha256() -> None:
    key = deserialize_private_key(SECP256K1_PRIVATE)
    msg = b"secp256k1 message"
    sig = key.sign(msg)
    # Verify with an independent implementation (OpenSSL via cryptography).
    scalar = int.from_bytes(key.to_bytes(), "big")
    ref = ec.derive_private_key(scalar, ec.SECP256K1()).public_key()
    ref.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
    _r, s = decode_dss_signature(sig)
    assert s <= SECP256K1_N // 2  # libsecp256k1 emits low-S


def test_secp256k1_high_s_signature_is_accepted_like_go() -> None:
    key = generate_secp256k1()
    msg = b"malleable"
    r, s = decode_dss_signature(key.sign(msg))
    high = encode_dss_signature(r, SECP256K1_N - s)
    assert key.public_key.verify(msg, high)
    assert not key.public_key.verify(msg, encode_dss_signature(r, 0))
    assert not key.public_key.verify(msg, encode_dss_signature(r, SECP256K1_N))


def test_rsa_verify_with_generated_key() -> None:
    sk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = RsaPublicKey(sk.public_key())
    decoded = deserialize_public_key(pub.serialize())
    assert decoded.key_type is KeyType.RSA
    msg = b"rsa message"
    sig = sk.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    assert decoded.verify(msg, sig)
    assert not decoded.verify(b"other", sig)
    assert not decoded.verify(msg, sig[:-1])
    assert not decoded.verify(msg, b"")
    pss = sk.sign(
        msg, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
    )
    assert not decoded.verify(msg, pss)
    sha1 = sk.sign(msg, padding.PKCS1v15(), hashes.SHA1())
    assert not decoded.verify(msg, sha1)


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_ecdsa_verify_with_generated_key(curve: ec.EllipticCurve) -> None:
    sk = ec.generate_private_key(curve)
    pub = EcdsaPublicKey(sk.public_key())
    decoded = deserialize_public_key(pub.serialize())
    assert decoded == pub
    msg = b"ecdsa message"
    sig = sk.sign(msg, ec.ECDSA(hashes.SHA256()))
    assert decoded.verify(msg, sig)
    assert not decoded.verify(b"other", sig)
    assert not decoded.verify(msg, sig[:-2])
    assert not decoded.verify(msg, b"\x30\x00")
    assert not decoded.verify(msg, b"")


def test_cross_type_signatures_are_rejected() -> None:
    ed = generate_ed25519()
    k1 = generate_secp256k1()
    p256 = ec.generate_private_key(ec.SECP256R1())
    msg = b"cross"
    ed_sig, k1_sig = ed.sign(msg), k1.sign(msg)
    p256_sig = p256.sign(msg, ec.ECDSA(hashes.SHA256()))
    assert not ed.public_key.verify(msg, k1_sig)
    assert not k1.public_key.verify(msg, ed_sig)
    assert not k1.public_key.verify(msg, p256_sig)
    ecdsa_pub = EcdsaPublicKey(p256.public_key())
    assert not ecdsa_pub.verify(msg, k1_sig)
    assert not ecdsa_pub.verify(msg, ed_sig)
    rsa_pub = deserialize_public_key(RSA_PUBLIC)
    assert not rsa_pub.verify(msg, ed_sig)
    assert not rsa_pub.verify(msg, k1_sig)


# ---------------------------------------------------------------------------------------------
# Object behaviour
# ---------------------------------------------------------------------------------------------


def test_public_keys_compare_and_hash_by_serialization() -> None:
    a = deserialize_public_key(ED25519_PUBLIC)
    b = deserialize_public_key(ED25519_PUBLIC)
    c = generate_ed25519().public_key
    assert a == b
    assert hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    assert a != ED25519_PUBLIC  # not equal to raw bytes


def test_private_key_repr_hides_the_secret() -> None:
    key = deserialize_private_key(ED25519_PRIVATE)
    secret = key.to_bytes()[:32].hex()
    assert secret not in repr(key)
    assert key.public_key.to_bytes().hex() in repr(key)


def test_generate_unsupported_types_is_a_local_error() -> None:
    for key_type in (KeyType.RSA, KeyType.ECDSA):
        with pytest.raises(LocalUsageError):
            generate_key_pair(key_type)


def test_ed25519_from_seed_is_deterministic() -> None:
    seed = bytes(range(32))
    assert Ed25519PrivateKey.from_seed(seed) == Ed25519PrivateKey.from_seed(seed)
    with pytest.raises(LocalUsageError):
        Ed25519PrivateKey.from_seed(b"short")
