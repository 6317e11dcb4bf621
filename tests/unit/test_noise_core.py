"""Sans-I/O Noise: the spec objects against cacophony vectors, core pairs, transport framing.

Tier 1 of the test plan (design §6): cores wired back to back with bytes shuttled between
them, plus byte-exact vectors.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from libp2p.crypto.keys import PrivateKey, generate_ed25519, generate_secp256k1
from libp2p.exceptions import HandshakeError, LocalUsageError, PeerIDMismatch
from libp2p.peer.id import PeerID
from libp2p.security.noise import (
    MAX_PLAINTEXT_SIZE,
    PROTOCOL_NAME,
    SIGNATURE_PREFIX,
    CipherState,
    DecryptionFailed,
    HandshakePayload,
    HandshakeState,
    Libp2pNoiseHandshake,
    NoiseHandshakeError,
    NoiseTransport,
    NonceExhausted,
    SymmetricState,
    TruncatedFrame,
    negotiate_muxer,
)
from libp2p.security.noise.core import MAX_NONCE

# ---------------------------------------------------------------------------------------------
# Test vector: "Noise_XX_25519_ChaChaPoly_SHA256" from the cacophony vectors file
# (haskell-cryptography/cacophony, vectors/cacophony.txt). Messages alternate initiator,
# responder, ...; the first three are the handshake, the rest transport messages.
# ---------------------------------------------------------------------------------------------

XX_VECTOR = {
    "prologue": "4a6f686e2047616c74",
    "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
    "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    "handshake_hash": "c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e",
    "messages": [
        (
            "4c756477696720766f6e204d69736573",
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
            "4c756477696720766f6e204d69736573",
        ),
        (
            "4d757272617920526f746862617264",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f"
            "276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488"
            "ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f8814c7194e83f23dbd8d162c"
            "9326ad",
        ),
        (
            "462e20412e20486179656b",
            "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9"
            "df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49"
            "b25030",
        ),
        ("4361726c204d656e676572", "96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df"),
        (
            "4a65616e2d426170746973746520536179",
            "3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5",
        ),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            "eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f",
        ),
    ],
}


def _vector_pair() -> tuple[HandshakeState, HandshakeState]:
    v = XX_VECTOR
    prologue = bytes.fromhex(str(v["prologue"]))
    initiator = HandshakeState(
        initiator=True,
        prologue=prologue,
        static_key=bytes.fromhex(str(v["init_static"])),
        ephemeral_key=bytes.fromhex(str(v["init_ephemeral"])),
    )
    responder = HandshakeState(
        initiator=False,
        prologue=prologue,
        static_key=bytes.fromhex(str(v["resp_static"])),
        ephemeral_key=bytes.fromhex(str(v["resp_ephemeral"])),
    )
    return initiator, responder


def test_protocol_name_is_the_initial_hash() -> None:
    assert len(PROTOCOL_NAME) == 32
    ss = SymmetricState()
    assert ss.h == PROTOCOL_NAME
    assert ss.ck == PROTOCOL_NAME


def test_cacophony_xx_vector_byte_exact() -> None:
    initiator, responder = _vector_pair()
    messages = XX_VECTOR["messages"]
    assert isinstance(messages, list)
    parties = (initiator, responder)
    for index, (payload_hex, ciphertext_hex) in enumerate(messages[:3]):
        writer, reader = parties[index % 2], parties[(index + 1) % 2]
        assert writer.is_my_turn
        assert not reader.is_my_turn
        message = writer.write_message(bytes.fromhex(payload_hex))
        assert message.hex() == ciphertext_hex
        assert reader.read_message(message) == bytes.fromhex(payload_hex)
    assert initiator.complete
    assert responder.complete
    assert initiator.handshake_hash.hex() == XX_VECTOR["handshake_hash"]
    assert responder.handshake_hash.hex() == XX_VECTOR["handshake_hash"]
    # Static keys were exchanged.
    resp_static = X25519PrivateKey.from_private_bytes(bytes.fromhex(str(XX_VECTOR["resp_static"])))
    assert initiator.remote_static == resp_static.public_key().public_bytes_raw()
    assert responder.remote_static == initiator.local_static_public

    # Transport messages continue alternating: index 3 is sent by the responder.
    i_send, i_recv = initiator.split()
    r_send, r_recv = responder.split()
    for index, (payload_hex, ciphertext_hex) in enumerate(messages[3:], start=3):
        sender, receiver = (i_send, r_recv) if index % 2 == 0 else (r_send, i_recv)
        ciphertext = sender.encrypt_with_ad(b"", bytes.fromhex(payload_hex))
        assert ciphertext.hex() == ciphertext_hex
        assert receiver.decrypt_with_ad(b"", ciphertext) == bytes.fromhex(payload_hex)


def test_cacophony_vector_through_transport_framing() -> None:
    """The same transport ciphertexts appear inside NoiseTransport's length-prefixed frames."""
    initiator, responder = _vector_pair()
    messages = XX_VECTOR["messages"]
    assert isinstance(messages, list)
    parties = (initiator, responder)
    for index, (payload_hex, _) in enumerate(messages[:3]):
        parties[(index + 1) % 2].read_message(
            parties[index % 2].write_message(bytes.fromhex(payload_hex))
        )
    init_t = NoiseTransport(*initiator.split())
    resp_t = NoiseTransport(*responder.split())
    for index, (payload_hex, ciphertext_hex) in enumerate(messages[3:], start=3):
        sender, receiver = (init_t, resp_t) if index % 2 == 0 else (resp_t, init_t)
        frame = sender.encrypt(bytes.fromhex(payload_hex))
        assert frame[:2] == len(bytes.fromhex(ciphertext_hex)).to_bytes(2, "big")
        assert frame[2:].hex() == ciphertext_hex
        assert receiver.decrypt(frame) == bytes.fromhex(payload_hex)


def _core_handshake(
    prologue_i: bytes = b"", prologue_r: bytes = b"", payloads: tuple[bytes, ...] = (b"", b"", b"")
) -> tuple[HandshakeState, HandshakeState]:
    initiator = HandshakeState(initiator=True, prologue=prologue_i)
    responder = HandshakeState(initiator=False, prologue=prologue_r)
    parties = (initiator, responder)
    for index, payload in enumerate(payloads):
        assert (
            parties[(index + 1) % 2].read_message(parties[index % 2].write_message(payload))
            == payload
        )
    return initiator, responder


def test_core_pair_random_payloads() -> None:
    rng = random.Random(1)
    for _ in range(20):
        payloads = tuple(rng.randbytes(rng.randrange(0, 2000)) for _ in range(3))
        initiator, responder = _core_handshake(payloads=payloads)
        assert initiator.handshake_hash == responder.handshake_hash
        i_send, i_recv = initiator.split()
        r_send, r_recv = responder.split()
        for _ in range(5):
            data = rng.randbytes(rng.randrange(0, 3000))
            assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", data)) == data
            assert i_recv.decrypt_with_ad(b"", r_send.encrypt_with_ad(b"", data)) == data


def test_first_message_is_cleartext_ephemeral_plus_payload() -> None:
    initiator = HandshakeState(initiator=True)
    message = initiator.write_message(b"hello")
    assert len(message) == 32 + 5
    assert message.endswith(b"hello")


def test_prologue_mismatch_fails_at_message_two() -> None:
    initiator = HandshakeState(initiator=True, prologue=b"a")
    responder = HandshakeState(initiator=False, prologue=b"b")
    responder.read_message(initiator.write_message())
    with pytest.raises(NoiseHandshakeError, match="authentication"):
        initiator.read_message(responder.write_message())


@pytest.mark.parametrize("message_index", [1, 2])
@pytest.mark.parametrize("where", [0, 20, 40, -1])
def test_tampered_handshake_message_fails(message_index: int, where: int) -> None:
    initiator = HandshakeState(initiator=True)
    responder = HandshakeState(initiator=False)
    parties = (initiator, responder)
    for index in range(3):
        message = bytearray(parties[index % 2].write_message(b"payload"))
        reader = parties[(index + 1) % 2]
        if index == message_index:
            message[where] ^= 0x01
            with pytest.raises(NoiseHandshakeError):
                reader.read_message(bytes(message))
            # The state cannot be resumed after a failure.
            with pytest.raises(LocalUsageError, match="failed"):
                reader.read_message(bytes(message))
            return
        reader.read_message(bytes(message))


@pytest.mark.parametrize("length", [0, 31, 32 + 47, 32 + 48 + 15])
def test_short_message_two_rejected(length: int) -> None:
    initiator = HandshakeState(initiator=True)
    responder = HandshakeState(initiator=False)
    responder.read_message(initiator.write_message())
    message = responder.write_message(b"")
    assert len(message) == 32 + 48 + 16
    with pytest.raises(NoiseHandshakeError, match="too short"):
        initiator.read_message(message[:length])


def test_short_message_one_rejected() -> None:
    with pytest.raises(NoiseHandshakeError, match="too short"):
        HandshakeState(initiator=False).read_message(b"\x01" * 31)


def test_oversized_handshake_message_rejected() -> None:
    with pytest.raises(NoiseHandshakeError, match="65535"):
        HandshakeState(initiator=False).read_message(b"\x01" * 65536)
    with pytest.raises(LocalUsageError, match="65535"):
        HandshakeState(initiator=True).write_message(b"\x00" * (65535 - 31))


def test_low_order_ephemeral_rejected() -> None:
    # The all-zero point has small order: X25519 with it yields zeros, which we refuse.
    responder = HandshakeState(initiator=False)
    responder.read_message(bytes(32))
    with pytest.raises(NoiseHandshakeError, match="invalid X25519"):
        responder.write_message(b"")
    with pytest.raises(LocalUsageError, match="failed"):
        responder.write_message(b"")


def test_turn_order_enforced() -> None:
    initiator = HandshakeState(initiator=True)
    responder = HandshakeState(initiator=False)
    with pytest.raises(LocalUsageError, match="cannot write"):
        responder.write_message(b"")
    with pytest.raises(LocalUsageError, match="cannot read"):
        initiator.read_message(b"\x00" * 32)
    with pytest.raises(LocalUsageError, match="completed"):
        initiator.split()
    i, _r = _core_handshake()
    with pytest.raises(LocalUsageError, match="already complete"):
        i.write_message(b"")


def test_split_orders_ciphers_by_role() -> None:
    initiator, responder = _core_handshake()
    i_send, i_recv = initiator.split()
    _r_send, r_recv = responder.split()
    assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"x")) == b"x"
    # A ciphertext for the other direction does not decrypt.
    with pytest.raises(DecryptionFailed):
        i_recv.decrypt_with_ad(b"", CipherState(_key_of(i_send)).encrypt_with_ad(b"", b"x"))


def _key_of(cipher: CipherState) -> bytes:
    key = cipher._key
    assert key is not None
    return key


# ---------------------------------------------------------------------------------------------
# CipherState: nonces
# ---------------------------------------------------------------------------------------------


def test_cipher_without_key_is_identity() -> None:
    cipher = CipherState()
    assert not cipher.has_key()
    assert cipher.encrypt_with_ad(b"ad", b"abc") == b"abc"
    assert cipher.decrypt_with_ad(b"ad", b"abc") == b"abc"
    assert cipher.n == 0


def test_nonce_is_little_endian_counter() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    key = os.urandom(32)
    cipher = CipherState(key)
    cipher.set_nonce(0x0102030405060708)
    ciphertext = cipher.encrypt_with_ad(b"", b"data")
    nonce = bytes(4) + bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert ChaCha20Poly1305(key).decrypt(nonce, ciphertext, b"") == b"data"
    assert cipher.n == 0x0102030405060709


def test_nonce_advances_only_on_success() -> None:
    key = os.urandom(32)
    sender, receiver = CipherState(key), CipherState(key)
    first = sender.encrypt_with_ad(b"", b"one")
    second = sender.encrypt_with_ad(b"", b"two")
    with pytest.raises(DecryptionFailed):
        receiver.decrypt_with_ad(b"", second)  # out of order
    assert receiver.n == 0
    assert receiver.decrypt_with_ad(b"", first) == b"one"
    assert receiver.decrypt_with_ad(b"", second) == b"two"
    with pytest.raises(DecryptionFailed):
        receiver.decrypt_with_ad(b"", second)  # replay
    assert receiver.n == 2


def test_nonce_exhaustion() -> None:
    key = os.urandom(32)
    sender, receiver = CipherState(key), CipherState(key)
    sender.set_nonce(MAX_NONCE - 1)
    receiver.set_nonce(MAX_NONCE - 1)
    last = sender.encrypt_with_ad(b"", b"last")
    assert receiver.decrypt_with_ad(b"", last) == b"last"
    with pytest.raises(NonceExhausted):
        sender.encrypt_with_ad(b"", b"x")
    with pytest.raises(NonceExhausted):
        receiver.decrypt_with_ad(b"", last)
    with pytest.raises(NonceExhausted):
        sender.encrypt_into(b"x", memoryview(bytearray(17)))
    with pytest.raises(LocalUsageError):
        sender.set_nonce(MAX_NONCE + 1)


def test_transport_nonce_exhaustion_in_encrypt() -> None:
    send, receive = CipherState(os.urandom(32)), CipherState(os.urandom(32))
    transport = NoiseTransport(send, receive)
    send.set_nonce(MAX_NONCE)
    with pytest.raises(NonceExhausted):
        transport.encrypt(b"x")


# ---------------------------------------------------------------------------------------------
# NoiseTransport: framing
# ---------------------------------------------------------------------------------------------


def _transport_pair() -> tuple[NoiseTransport, NoiseTransport]:
    initiator, responder = _core_handshake()
    return NoiseTransport(*initiator.split()), NoiseTransport(*responder.split())


def _frames(wire: bytes | bytearray) -> list[int]:
    """Lengths of the frames in ``wire`` (which must consist of whole frames)."""
    lengths = []
    pos = 0
    while pos < len(wire):
        length = int.from_bytes(wire[pos : pos + 2], "big")
        lengths.append(length)
        pos += 2 + length
    assert pos == len(wire)
    return lengths


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, []),
        (1, [17]),
        (MAX_PLAINTEXT_SIZE, [65535]),
        (MAX_PLAINTEXT_SIZE + 1, [65535, 17]),
        (3 * MAX_PLAINTEXT_SIZE + 5, [65535, 65535, 65535, 21]),
    ],
)
def test_encrypt_chunks_to_max_frames(size: int, expected: list[int]) -> None:
    a, b = _transport_pair()
    data = os.urandom(size)
    wire = a.encrypt(data)
    assert _frames(wire) == expected
    assert bytes(b.decrypt(wire)) == data
    assert b.buffered == 0


def test_decrypt_byte_by_byte_and_random_splits() -> None:
    a, b = _transport_pair()
    rng = random.Random(7)
    messages = [rng.randbytes(rng.randrange(0, 70000)) for _ in range(12)]
    wire = b"".join(bytes(a.encrypt(m)) for m in messages)
    expected = b"".join(messages)
    # Byte by byte over the first few frames, then random chunk sizes.
    got = bytearray()
    pos = 0
    while pos < 300:
        got += b.decrypt(wire[pos : pos + 1])
        pos += 1
    while pos < len(wire):
        step = rng.randrange(1, 200_000)
        got += b.decrypt(memoryview(wire)[pos : pos + step])
        pos += step
    assert got == expected
    b.end_of_input()


def test_decrypt_accepts_bytearray_input_and_empty_frames() -> None:
    a, b = _transport_pair()
    # An empty frame (tag only) is valid and yields nothing.
    empty = bytearray(len(b"").to_bytes(2, "big"))
    empty[:] = (16).to_bytes(2, "big")
    ciphertext = a.send_cipher.encrypt_with_ad(b"", b"")
    assert b.decrypt(bytearray(empty + ciphertext)) == b""
    assert b.decrypt(bytearray(a.encrypt(b"after"))) == b"after"


def test_initial_bytes_are_decrypted_first() -> None:
    initiator, responder = _core_handshake()
    i_send, i_recv = initiator.split()
    sender = NoiseTransport(i_send, i_recv)
    wire = bytes(sender.encrypt(b"early")) + bytes(sender.encrypt(b"later"))
    receiver = NoiseTransport(*responder.split(), initial=wire[:30])
    assert receiver.has_initial_data
    assert receiver.decrypt(b"") == b"early"
    assert not receiver.has_initial_data
    assert receiver.decrypt(wire[30:]) == b"later"


def test_truncated_frame_at_eof() -> None:
    a, b = _transport_pair()
    wire = a.encrypt(b"hello world")
    assert b.decrypt(wire[:-1]) == b""
    with pytest.raises(TruncatedFrame, match="inside a Noise frame"):
        b.end_of_input()
    with pytest.raises(TruncatedFrame):
        b.decrypt(wire[-1:])


def test_eof_between_frames_is_clean() -> None:
    a, b = _transport_pair()
    assert b.decrypt(a.encrypt(b"x")) == b"x"
    b.end_of_input()


def test_tampered_frame_fails_and_stays_failed() -> None:
    a, b = _transport_pair()
    wire = bytearray(a.encrypt(b"hello"))
    wire[5] ^= 0x80
    with pytest.raises(DecryptionFailed):
        b.decrypt(wire)
    assert b.error is not None
    with pytest.raises(DecryptionFailed):
        b.decrypt(a.encrypt(b"more"))
    with pytest.raises(DecryptionFailed):
        b.end_of_input()


def test_good_frames_before_a_bad_one_are_delivered_then_error() -> None:
    a, b = _transport_pair()
    good = bytes(a.encrypt(b"one")) + bytes(a.encrypt(b"two"))
    bad = bytearray(a.encrypt(b"three"))
    bad[-1] ^= 1
    assert b.decrypt(good + bytes(bad) + bytes(a.encrypt(b"four"))) == b"onetwo"
    assert isinstance(b.error, DecryptionFailed)
    with pytest.raises(DecryptionFailed):
        b.decrypt(b"")


@pytest.mark.parametrize("length", [0, 1, 15])
def test_frame_shorter_than_tag_fails(length: int) -> None:
    _, b = _transport_pair()
    with pytest.raises(DecryptionFailed):
        b.decrypt(length.to_bytes(2, "big") + bytes(length))


def test_short_frame_among_several_fails() -> None:
    a, b = _transport_pair()
    wire = bytes(a.encrypt(b"ok")) + (3).to_bytes(2, "big") + b"abc" + bytes(a.encrypt(b"x"))
    assert b.decrypt(wire) == b"ok"
    with pytest.raises(DecryptionFailed):
        b.decrypt(b"")


def test_replayed_and_reordered_frames_fail() -> None:
    a, b = _transport_pair()
    first, second = a.encrypt(b"1"), a.encrypt(b"2")
    assert b.decrypt(first) == b"1"
    with pytest.raises(DecryptionFailed):
        b.decrypt(first)
    a2, b2 = _transport_pair()
    first, second = a2.encrypt(b"1"), a2.encrypt(b"2")
    with pytest.raises(DecryptionFailed):
        b2.decrypt(second)


def test_transport_requires_keyed_ciphers() -> None:
    with pytest.raises(ValueError, match="keys"):
        NoiseTransport(CipherState(), CipherState())


# ---------------------------------------------------------------------------------------------
# The libp2p layer, sans-I/O
# ---------------------------------------------------------------------------------------------


def _run_libp2p(
    initiator: Libp2pNoiseHandshake, responder: Libp2pNoiseHandshake
) -> tuple[Libp2pNoiseHandshake, Libp2pNoiseHandshake]:
    parties = (initiator, responder)
    for index in range(3):
        writer, reader = parties[index % 2], parties[(index + 1) % 2]
        assert writer.is_my_turn
        reader.read_message(writer.write_message())
    assert initiator.complete
    assert responder.complete
    return initiator, responder


@pytest.mark.parametrize("make_key", [generate_ed25519, generate_secp256k1])
def test_libp2p_handshake_proves_both_identities(make_key: Callable[[], PrivateKey]) -> None:
    key_i, key_r = make_key(), generate_ed25519()
    peer_i = PeerID.from_public_key(key_i.public_key)
    peer_r = PeerID.from_public_key(key_r.public_key)
    i, r = _run_libp2p(
        Libp2pNoiseHandshake(key_i, initiator=True, expected_peer=peer_r),
        Libp2pNoiseHandshake(key_r, initiator=False, expected_peer=peer_i),
    )
    ri, rr = i.result(), r.result()
    assert ri.remote_peer == peer_r
    assert rr.remote_peer == peer_i
    assert ri.local_peer == peer_i
    assert ri.remote_public_key == key_r.public_key
    assert rr.remote_public_key == key_i.public_key
    assert ri.handshake_hash == rr.handshake_hash
    assert ri.negotiated_muxer is None
    assert i.result() is ri  # cached: cipher states are handed out once
    assert rr.receive_cipher.decrypt_with_ad(b"", ri.send_cipher.encrypt_with_ad(b"", b"x")) == (
        b"x"
    )


def test_what_we_send_message_one_empty_then_signed_payloads() -> None:
    """Inspect our messages with plain cores: msg 1 is just ``e``; msgs 2/3 carry signed ids."""
    key_i, key_r = generate_ed25519(), generate_secp256k1()
    initiator = Libp2pNoiseHandshake(key_i, initiator=True, muxers=("/yamux/1.0.0",))
    responder = Libp2pNoiseHandshake(key_r, initiator=False)
    probe_r = HandshakeState(initiator=False)
    msg1 = initiator.write_message()
    assert len(msg1) == 32
    assert probe_r.read_message(msg1) == b""

    probe_i = HandshakeState(initiator=True)
    responder.read_message(probe_i.write_message())
    payload2 = HandshakePayload.decode(probe_i.read_message(responder.write_message()))
    assert payload2.identity_key == key_r.public_key.serialize()
    assert probe_i.remote_static is not None
    assert key_r.public_key.verify(SIGNATURE_PREFIX + probe_i.remote_static, payload2.identity_sig)
    assert payload2.stream_muxers == ()

    # Let the real initiator finish against the probe responder and inspect message 3.
    initiator_payload = _payload_for(key_r, probe_r.local_static_public)
    initiator.read_message(probe_r.write_message(initiator_payload))
    payload3 = HandshakePayload.decode(probe_r.read_message(initiator.write_message()))
    assert payload3.identity_key == key_i.public_key.serialize()
    assert probe_r.remote_static is not None
    assert key_i.public_key.verify(SIGNATURE_PREFIX + probe_r.remote_static, payload3.identity_sig)
    assert payload3.stream_muxers == ("/yamux/1.0.0",)


def _payload_for(
    key: PrivateKey, static_public: bytes, muxers: tuple[str, ...] = (), sig: bytes | None = None
) -> bytes:
    return HandshakePayload(
        identity_key=key.public_key.serialize(),
        identity_sig=key.sign(SIGNATURE_PREFIX + static_public) if sig is None else sig,
        stream_muxers=muxers,
    ).encode()


def _responder_with_payload(payload: bytes) -> tuple[Libp2pNoiseHandshake, bytes]:
    """An initiator that has sent msg 1, and a raw msg 2 carrying ``payload``."""
    initiator = Libp2pNoiseHandshake(generate_ed25519(), initiator=True)
    responder_static = X25519PrivateKey.generate()
    raw = HandshakeState(initiator=False, static_key=responder_static)
    raw.read_message(initiator.write_message())
    return initiator, raw.write_message(payload)


def _static_pub(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def test_signature_over_wrong_static_key_rejected() -> None:
    key = generate_ed25519()
    other_static = _static_pub(X25519PrivateKey.generate())
    initiator, msg2 = _responder_with_payload(_payload_for(key, other_static))
    with pytest.raises(NoiseHandshakeError, match="signature"):
        initiator.read_message(msg2)
    assert not initiator.complete
    with pytest.raises(LocalUsageError, match="failed"):
        initiator.write_message()


def test_missing_identity_key_rejected() -> None:
    initiator, msg2 = _responder_with_payload(b"")
    with pytest.raises(NoiseHandshakeError, match="no identity key"):
        initiator.read_message(msg2)


def test_invalid_identity_key_rejected() -> None:
    payload = HandshakePayload(identity_key=b"\x08\x01\x12\x03abc", identity_sig=b"x").encode()
    initiator, msg2 = _responder_with_payload(payload)
    with pytest.raises(NoiseHandshakeError, match="identity key is invalid"):
        initiator.read_message(msg2)


def test_malformed_payload_rejected() -> None:
    initiator, msg2 = _responder_with_payload(b"\x0a\xff")
    with pytest.raises(NoiseHandshakeError, match="malformed"):
        initiator.read_message(msg2)


def test_wrong_expected_peer_rejected_before_initiator_reveals_itself() -> None:
    key_r = generate_ed25519()
    someone_else = PeerID.from_public_key(generate_ed25519().public_key)
    initiator = Libp2pNoiseHandshake(generate_ed25519(), initiator=True, expected_peer=someone_else)
    responder = Libp2pNoiseHandshake(key_r, initiator=False)
    responder.read_message(initiator.write_message())
    with pytest.raises(PeerIDMismatch) as info:
        initiator.read_message(responder.write_message())
    assert isinstance(info.value, HandshakeError)
    assert info.value.expected == someone_else
    assert info.value.actual == PeerID.from_public_key(key_r.public_key)
    with pytest.raises(LocalUsageError):
        initiator.write_message()  # message 3 (our identity) is never produced


def test_responder_checks_expected_peer_too() -> None:
    someone_else = PeerID.from_public_key(generate_ed25519().public_key)
    initiator = Libp2pNoiseHandshake(generate_ed25519(), initiator=True)
    responder = Libp2pNoiseHandshake(
        generate_ed25519(), initiator=False, expected_peer=someone_else
    )
    responder.read_message(initiator.write_message())
    initiator.read_message(responder.write_message())
    with pytest.raises(PeerIDMismatch):
        responder.read_message(initiator.write_message())
    with pytest.raises(LocalUsageError):
        responder.result()


@pytest.mark.parametrize(
    ("initiator_muxers", "responder_muxers", "expected"),
    [
        (("/yamux/1.0.0",), ("/yamux/1.0.0",), "/yamux/1.0.0"),
        (("/mplex/6.7.0", "/yamux/1.0.0"), ("/yamux/1.0.0", "/mplex/6.7.0"), "/mplex/6.7.0"),
        (("/yamux/1.0.0", "/mplex/6.7.0"), ("/mplex/6.7.0", "/yamux/1.0.0"), "/yamux/1.0.0"),
        (("/yamux/1.0.0",), (), None),
        ((), ("/yamux/1.0.0",), None),
        ((), (), None),
        (("/yamux/1.0.0",), ("/mplex/6.7.0",), None),
    ],
)
def test_early_muxer_negotiation(
    initiator_muxers: tuple[str, ...], responder_muxers: tuple[str, ...], expected: str | None
) -> None:
    assert negotiate_muxer(initiator_muxers, responder_muxers) == expected
    i, r = _run_libp2p(
        Libp2pNoiseHandshake(generate_ed25519(), initiator=True, muxers=initiator_muxers),
        Libp2pNoiseHandshake(generate_ed25519(), initiator=False, muxers=responder_muxers),
    )
    assert i.result().negotiated_muxer == expected
    assert r.result().negotiated_muxer == expected
    assert i.result().remote_muxers == responder_muxers
    assert r.result().remote_muxers == initiator_muxers


def test_muxers_must_not_be_a_bare_string() -> None:
    with pytest.raises(LocalUsageError, match="sequence"):
        Libp2pNoiseHandshake(generate_ed25519(), initiator=True, muxers="/yamux/1.0.0")


def test_payload_roundtrip_and_field_layout() -> None:
    payload = HandshakePayload(
        identity_key=b"K", identity_sig=b"S", stream_muxers=("/yamux/1.0.0",)
    )
    encoded = payload.encode()
    # Fields 1, 2, then 4 (extensions) holding field 2 (stream_muxers); no field 3.
    assert encoded == b"\x0a\x01K\x12\x01S\x22\x0e\x12\x0c/yamux/1.0.0"
    assert HandshakePayload.decode(encoded) == payload
    # Without muxers the extensions field is omitted entirely.
    assert HandshakePayload(identity_key=b"K", identity_sig=b"S").encode() == b"\x0a\x01K\x12\x01S"


def test_payload_non_utf8_muxer_decodes_leniently() -> None:
    decoded = HandshakePayload.decode(b"\x22\x03\x12\x01\xff")
    assert decoded.stream_muxers == ("\ufffd",)


def test_message_one_payload_ignored_by_responder() -> None:
    """A peer that stuffs bytes into message 1 is tolerated; they are not trusted or used."""
    initiator = HandshakeState(initiator=True)
    responder = Libp2pNoiseHandshake(generate_ed25519(), initiator=False)
    responder.read_message(initiator.write_message(b"ignored"))
    assert responder.is_my_turn
