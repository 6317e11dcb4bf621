"""Sans-I/O Noise Protocol Framework core for ``Noise_XX_25519_ChaChaPoly_SHA256``.

This module knows nothing about sockets, trio or libp2p. It follows the object model of the
Noise specification (revision 34, sections 5.1-5.3) one to one, so each method can be checked
against the spec text:

* :class:`CipherState` -- a ChaCha20-Poly1305 key ``k`` and a 64-bit counter ``n``. The
  96-bit AEAD nonce is four zero bytes followed by ``n`` in *little-endian* order (the
  ChaChaPoly rule of the spec). ``n = 2**64 - 1`` is reserved, so using it raises
  :class:`~.errors.NonceExhausted` instead of wrapping around.
* :class:`SymmetricState` -- the chaining key ``ck`` and handshake hash ``h``. ``MixKey``
  runs HKDF (HMAC-SHA256) over ``ck``; ``MixHash`` folds every public key and ciphertext into
  ``h``, so each encrypted handshake field is authenticated together with the transcript.
  Because the protocol name ``Noise_XX_25519_ChaChaPoly_SHA256`` is exactly 32 bytes
  (= HASHLEN), the initial ``h`` is the name itself, not its hash.
* :class:`HandshakeState` -- runs pattern XX::

      -> e                  (initiator, message 1: ephemeral key in clear, payload in clear)
      <- e, ee, s, es       (responder, message 2: static key and payload encrypted)
      -> s, se              (initiator, message 3: static key and payload encrypted)

  Each party calls :meth:`HandshakeState.write_message` when it is its turn and
  :meth:`HandshakeState.read_message` otherwise; both take and return plain ``bytes``.
  After message 3, :meth:`HandshakeState.split` yields the two transport cipher states: the
  initiator sends with the first and receives with the second, the responder the reverse.

Ephemeral and static X25519 keys can be injected, which is how the cacophony test vectors
are replayed byte for byte. A DH result of all zeros (a low-order public key from the peer)
is rejected, as the X25519 implementation in ``cryptography`` refuses to return it.

Any failure while reading a handshake message leaves the handshake unusable: the transcript
hash has already absorbed part of the message, so the state cannot be resumed.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import TYPE_CHECKING

from ...exceptions import LocalUsageError
from .errors import DecryptionFailed, NoiseHandshakeError, NonceExhausted

# ``cryptography`` is imported when a cipher state is keyed or a handshake starts, not with
# the package: it is a noticeable part of ``import libp2p`` and no frame path imports anything.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = [
    "DH_LEN",
    "HASH_LEN",
    "MAX_MESSAGE_SIZE",
    "MAX_NONCE",
    "PROTOCOL_NAME",
    "TAG_LEN",
    "CipherState",
    "HandshakeState",
    "SymmetricState",
]

#: The full Noise protocol name; exactly HASHLEN bytes long, so it is used as the initial ``h``.
PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
#: Length of an X25519 public key and of a DH output (Noise spec section 12.1).
DH_LEN = 32
#: SHA-256 output length.
HASH_LEN = 32
#: Poly1305 authentication tag length.
TAG_LEN = 16
#: Largest Noise message, handshake or transport (Noise spec section 3).
MAX_MESSAGE_SIZE = 65535
#: Reserved nonce value; a cipher state must never encrypt or decrypt with it (section 5.1).
MAX_NONCE = 2**64 - 1

# 32 bits of zeros, then the 64-bit counter little-endian (Noise spec section 12.3, ChaChaPoly).
_NONCE = struct.Struct("<4xQ")
_EMPTY = b""

# Pattern XX as token lists; message i is written by the initiator when i is even.
_XX_PATTERN: tuple[tuple[str, ...], ...] = (
    ("e",),
    ("e", "ee", "s", "es"),
    ("s", "se"),
)


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hkdf2(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """Noise ``HKDF(ck, ikm, 2)`` with HMAC-SHA256 (spec section 4.3)."""
    temp_key = hmac.digest(chaining_key, input_key_material, "sha256")
    output1 = hmac.digest(temp_key, b"\x01", "sha256")
    output2 = hmac.digest(temp_key, output1 + b"\x02", "sha256")
    return output1, output2


def _invalid_tag() -> type[Exception]:
    """``cryptography``'s ``InvalidTag``; an ``except`` clause evaluates this only on failure."""
    from cryptography.exceptions import InvalidTag

    return InvalidTag


def _as_private_key(key: X25519PrivateKey | bytes | None) -> X25519PrivateKey | None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    if key is None or isinstance(key, X25519PrivateKey):
        return key
    if len(key) != DH_LEN:
        raise LocalUsageError(f"an X25519 private key is {DH_LEN} bytes, got {len(key)}")
    return X25519PrivateKey.from_private_bytes(bytes(key))


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:
        # cryptography refuses low-order points, whose shared secret would be all zeros.
        raise NoiseHandshakeError(f"the remote sent an invalid X25519 public key: {exc}") from exc


class CipherState:
    """A ChaCha20-Poly1305 key and its nonce counter (Noise spec section 5.1).

    Without a key (the start of a handshake) encryption and decryption are the identity, as
    the spec requires. The AEAD object is built once per key, so per-message work is one C
    call plus a nonce pack.
    """

    __slots__ = ("_aead", "_key", "n")

    def __init__(self, key: bytes | None = None, nonce: int = 0) -> None:
        self._key: bytes | None = None
        self._aead: ChaCha20Poly1305 | None = None
        #: The next nonce to use (``n`` in the spec).
        self.n = nonce
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        """``InitializeKey(key)``: install a 32-byte key and reset the nonce to zero."""
        if len(key) != 32:
            raise LocalUsageError(f"a ChaCha20-Poly1305 key is 32 bytes, got {len(key)}")
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        self._key = bytes(key)
        self._aead = ChaCha20Poly1305(self._key)
        self.n = 0

    def has_key(self) -> bool:
        """``HasKey()``: whether a key has been installed."""
        return self._aead is not None

    def set_nonce(self, nonce: int) -> None:
        """``SetNonce(nonce)``."""
        if not 0 <= nonce <= MAX_NONCE:
            raise LocalUsageError("a Noise nonce is a 64-bit unsigned integer")
        self.n = nonce

    def _next_nonce(self) -> bytes:
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhausted("this Noise cipher state has used all 2**64 - 1 nonces")
        self.n = n + 1
        return _NONCE.pack(n)

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes | bytearray | memoryview) -> bytes:
        """``EncryptWithAd(ad, plaintext)``: ciphertext plus 16-byte tag, or the plaintext."""
        aead = self._aead
        if aead is None:
            return bytes(plaintext)
        return aead.encrypt(self._next_nonce(), plaintext, ad)

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes | bytearray | memoryview) -> bytes:
        """``DecryptWithAd(ad, ciphertext)``; :class:`~.errors.DecryptionFailed` if forged.

        On failure the nonce is *not* advanced, as the spec requires.
        """
        aead = self._aead
        if aead is None:
            return bytes(ciphertext)
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhausted("this Noise cipher state has used all 2**64 - 1 nonces")
        try:
            plaintext = aead.decrypt(_NONCE.pack(n), ciphertext, ad)
        except _invalid_tag():
            raise DecryptionFailed(f"Noise message with nonce {n} failed authentication") from None
        self.n = n + 1
        return plaintext

    # Transport fast paths: no associated data, output written into a caller's buffer.

    def encrypt_into(self, plaintext: bytes | bytearray | memoryview, out: memoryview) -> None:
        """Encrypt with empty associated data into ``out`` (exactly ``len(plaintext) + 16``)."""
        aead = self._aead
        if aead is None:
            raise LocalUsageError("encrypt_into needs a keyed cipher state")
        aead.encrypt_into(self._next_nonce(), plaintext, None, out)

    def decrypt_into(self, ciphertext: bytes | bytearray | memoryview, out: memoryview) -> None:
        """Decrypt with empty associated data into ``out`` (exactly ``len(ciphertext) - 16``)."""
        aead = self._aead
        if aead is None:
            raise LocalUsageError("decrypt_into needs a keyed cipher state")
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhausted("this Noise cipher state has used all 2**64 - 1 nonces")
        if len(ciphertext) < TAG_LEN:
            raise DecryptionFailed(
                f"Noise message of {len(ciphertext)} bytes is shorter than its tag"
            )
        try:
            aead.decrypt_into(_NONCE.pack(n), ciphertext, None, out)
        except _invalid_tag():
            raise DecryptionFailed(f"Noise message with nonce {n} failed authentication") from None
        self.n = n + 1


class SymmetricState:
    """The chaining key ``ck``, handshake hash ``h`` and a :class:`CipherState` (section 5.2)."""

    __slots__ = ("cipher", "ck", "h")

    def __init__(self, protocol_name: bytes = PROTOCOL_NAME) -> None:
        # InitializeSymmetric: names up to HASHLEN bytes are zero-padded, longer ones hashed.
        if len(protocol_name) <= HASH_LEN:
            h = protocol_name.ljust(HASH_LEN, b"\x00")
        else:
            h = _hash(protocol_name)
        #: Handshake hash: a digest of everything sent and received so far.
        self.h = h
        #: Chaining key: accumulates every DH result.
        self.ck = h
        self.cipher = CipherState()

    def mix_key(self, input_key_material: bytes) -> None:
        """``MixKey``: derive a new chaining key and cipher key from a DH output."""
        self.ck, temp_key = _hkdf2(self.ck, input_key_material)
        self.cipher.initialize_key(temp_key)

    def mix_hash(self, data: bytes) -> None:
        """``MixHash``: ``h = SHA256(h || data)``."""
        self.h = _hash(self.h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """``EncryptAndHash``: encrypt with ``h`` as associated data, then mix the ciphertext."""
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """``DecryptAndHash``: the inverse of :meth:`encrypt_and_hash`."""
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """``Split()``: ``(c1, c2)``; the initiator sends with ``c1``, the responder with ``c2``."""
        key1, key2 = _hkdf2(self.ck, _EMPTY)
        return CipherState(key1), CipherState(key2)


class HandshakeState:
    """One party of a ``Noise_XX_25519_ChaChaPoly_SHA256`` handshake (section 5.3).

    ``static_key`` defaults to a fresh X25519 key (libp2p never persists Noise static keys);
    ``ephemeral_key`` defaults to a fresh key generated when the ``e`` token is written. Both
    accept either a ``cryptography`` key object or 32 raw private-key bytes.
    """

    __slots__ = (
        "_e",
        "_failed",
        "_index",
        "_s",
        "_ss",
        "initiator",
        "remote_ephemeral",
        "remote_static",
    )

    def __init__(
        self,
        *,
        initiator: bool,
        prologue: bytes = b"",
        static_key: X25519PrivateKey | bytes | None = None,
        ephemeral_key: X25519PrivateKey | bytes | None = None,
    ) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        #: True for the party that sends message 1.
        self.initiator = initiator
        static = _as_private_key(static_key)
        self._s = static if static is not None else X25519PrivateKey.generate()
        self._e = _as_private_key(ephemeral_key)
        #: The remote's static public key once received (message 2 or 3), else None.
        self.remote_static: bytes | None = None
        #: The remote's ephemeral public key once received, else None.
        self.remote_ephemeral: bytes | None = None
        self._ss = SymmetricState(PROTOCOL_NAME)
        self._ss.mix_hash(bytes(prologue))
        self._index = 0
        self._failed = False

    # -- state -----------------------------------------------------------------------------

    @property
    def local_static_public(self) -> bytes:
        """Our 32-byte X25519 static public key (what the libp2p payload signs)."""
        return _public_bytes(self._s)

    @property
    def handshake_hash(self) -> bytes:
        """The current ``h``; after completion, a unique channel-binding value."""
        return self._ss.h

    @property
    def complete(self) -> bool:
        """Whether all three messages have been processed."""
        return self._index == len(_XX_PATTERN)

    @property
    def message_index(self) -> int:
        """How many handshake messages have been written or read (0 to 3)."""
        return self._index

    @property
    def is_my_turn(self) -> bool:
        """Whether the next step is :meth:`write_message` (else :meth:`read_message`)."""
        return not self.complete and (self._index % 2 == 0) == self.initiator

    def _check_usable(self, writing: bool) -> None:
        if self._failed:
            raise LocalUsageError("this Noise handshake already failed and cannot continue")
        if self.complete:
            raise LocalUsageError("the Noise handshake is already complete")
        if writing != self.is_my_turn:
            action = "write" if writing else "read"
            raise LocalUsageError(
                f"cannot {action} Noise handshake message {self._index + 1} as "
                f"{'initiator' if self.initiator else 'responder'}"
            )

    def _mix_dh(self, token: str) -> None:
        # "ee" pairs both ephemerals. In "es" the initiator's ephemeral meets the responder's
        # static key, in "se" the initiator's static key meets the responder's ephemeral; each
        # side uses its own half of the pair and the remote's other half.
        if token == "ee":
            private, public = self._e, self.remote_ephemeral
        elif (token == "es") == self.initiator:
            private, public = self._e, self.remote_static
        else:
            private, public = self._s, self.remote_ephemeral
        if private is None or public is None:  # impossible in XX's token order
            raise LocalUsageError(f"Noise token {token!r} is missing a key")
        self._ss.mix_key(_dh(private, public))

    # -- messages ----------------------------------------------------------------------------

    def write_message(self, payload: bytes = b"") -> bytes:
        """Produce the next handshake message carrying ``payload``."""
        self._check_usable(writing=True)
        # As in read_message: a failure half-way (e.g. a low-order remote key in the DH) has
        # already changed the symmetric state, so the handshake is dead unless we finish.
        self._failed = True
        out: list[bytes] = []
        ss = self._ss
        for token in _XX_PATTERN[self._index]:
            if token == "e":
                if self._e is None:
                    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

                    self._e = X25519PrivateKey.generate()
                public = _public_bytes(self._e)
                out.append(public)
                ss.mix_hash(public)
            elif token == "s":
                out.append(ss.encrypt_and_hash(_public_bytes(self._s)))
            else:
                self._mix_dh(token)
        out.append(ss.encrypt_and_hash(bytes(payload)))
        message = b"".join(out)
        if len(message) > MAX_MESSAGE_SIZE:
            raise LocalUsageError(
                f"Noise handshake message of {len(message)} bytes exceeds {MAX_MESSAGE_SIZE}"
            )
        self._failed = False
        self._index += 1
        return message

    def read_message(self, message: bytes | bytearray | memoryview) -> bytes:
        """Consume the remote's next handshake message and return its decrypted payload.

        Raises :class:`~.errors.NoiseHandshakeError` when the message is too short, too long,
        carries an invalid public key or fails authentication.
        """
        self._check_usable(writing=False)
        data = bytes(message)
        number = self._index + 1
        # Assume failure until the whole message has been processed: a partial read has
        # already changed h and ck, so the state can never be resumed.
        self._failed = True
        if len(data) > MAX_MESSAGE_SIZE:
            raise NoiseHandshakeError(
                f"Noise handshake message {number} is {len(data)} bytes, over {MAX_MESSAGE_SIZE}"
            )
        ss = self._ss
        pos = 0
        try:
            for token in _XX_PATTERN[self._index]:
                if token in ("e", "s"):
                    size = DH_LEN + (TAG_LEN if token == "s" and ss.cipher.has_key() else 0)
                    if len(data) - pos < size:
                        raise NoiseHandshakeError(
                            f"Noise handshake message {number} is too short "
                            f"({len(data)} bytes) for its {token!r} key"
                        )
                    field = data[pos : pos + size]
                    pos += size
                    if token == "e":
                        self.remote_ephemeral = field
                        ss.mix_hash(field)
                    else:
                        self.remote_static = ss.decrypt_and_hash(field)
                else:
                    self._mix_dh(token)
            rest = data[pos:]
            if ss.cipher.has_key() and len(rest) < TAG_LEN:
                raise NoiseHandshakeError(
                    f"Noise handshake message {number} is too short for its payload tag"
                )
            payload = ss.decrypt_and_hash(rest)
        except DecryptionFailed as exc:
            raise NoiseHandshakeError(
                f"Noise handshake message {number} failed authentication "
                "(wrong keys or tampered bytes)"
            ) from exc
        self._failed = False
        self._index += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """The transport cipher states ordered for this party: ``(send, receive)``.

        The Noise ``Split()`` returns ``(c1, c2)`` where the initiator sends with ``c1``; this
        method applies that rule so callers never have to.
        """
        if not self.complete or self._failed:
            raise LocalUsageError("split() needs a completed Noise handshake")
        c1, c2 = self._ss.split()
        return (c1, c2) if self.initiator else (c2, c1)
