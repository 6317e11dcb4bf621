"""Sans-I/O Noise transport phase: framing, chunking and AEAD for data after the handshake.

Wire format (libp2p noise spec, "Wire Format")::

    frame = u16 big-endian length || ciphertext        length <= 65535
    ciphertext = ChaCha20-Poly1305(plaintext) || 16-byte tag

so one frame carries at most 65519 plaintext bytes. Nonces are implicit: each direction counts
frames from zero, so frames can be neither dropped, reordered nor replayed.

Why it is shaped this way (design §8: keep the per-byte work in C):

* :meth:`NoiseTransport.encrypt` sizes one output buffer for all the frames of a write and
  lets ``cryptography`` encrypt each chunk straight into it (``encrypt_into``): no per-frame
  ``bytes`` objects and no join. The driver hands the buffer to one ``send_all``.
* :meth:`NoiseTransport.decrypt` takes whatever the socket returned (e.g. 256 KiB), finds every
  complete frame without copying (``memoryview`` slices), and decrypts them all into one
  output buffer (``decrypt_into``). Only the incomplete frame at the end is copied aside,
  and later completed from the next chunk by appending just the missing bytes, so nothing is
  copied twice and there is no quadratic re-buffering.
* A frame's length field is 16 bits, so the bytes kept aside are bounded by 65537 no matter
  what the remote sends.

If a frame fails to authenticate, the plaintext of the frames before it is still returned
(it was authentic), the error is remembered and raised by the next call: no data is dropped
silently and nothing after the bad frame is ever released.
"""

from __future__ import annotations

from ...exceptions import LocalUsageError
from .core import MAX_MESSAGE_SIZE, TAG_LEN, CipherState
from .errors import NoiseTransportError, TruncatedFrame

__all__ = ["MAX_PLAINTEXT_SIZE", "NoiseTransport"]

#: Largest plaintext carried by one transport frame (65535 minus the 16-byte tag).
MAX_PLAINTEXT_SIZE = MAX_MESSAGE_SIZE - TAG_LEN
_FRAME_OVERHEAD = 2 + TAG_LEN


class NoiseTransport:
    """Encrypts outgoing and decrypts incoming transport frames for one session.

    ``initial`` holds bytes that arrived together with the last handshake message; they are
    the first transport frames and are decrypted by the first :meth:`decrypt` call.
    """

    __slots__ = ("_error", "_partial", "_pending", "receive_cipher", "send_cipher")

    def __init__(
        self, send_cipher: CipherState, receive_cipher: CipherState, initial: bytes = b""
    ) -> None:
        if not (send_cipher.has_key() and receive_cipher.has_key()):
            raise ValueError("transport cipher states need keys (use HandshakeState.split())")
        self.send_cipher = send_cipher
        self.receive_cipher = receive_cipher
        self._partial = bytearray()
        self._pending = bytes(initial)
        self._error: NoiseTransportError | None = None

    @property
    def error(self) -> NoiseTransportError | None:
        """The error that broke the receive direction, if any; later calls re-raise it."""
        return self._error

    @property
    def has_initial_data(self) -> bool:
        """Whether ``initial`` bytes still wait for a :meth:`decrypt` call (``decrypt(b"")``)."""
        return bool(self._pending)

    @property
    def buffered(self) -> int:
        """Received bytes not yet decrypted (an incomplete frame, or the handshake leftovers)."""
        return len(self._partial) + len(self._pending)

    # -- sending -----------------------------------------------------------------------------

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytearray:
        """Frame and encrypt ``data``; the result is ready for one ``send_all``.

        Empty ``data`` produces no frame (an empty frame would carry nothing).
        """
        view = memoryview(data).cast("B")
        size = len(view)
        frames = -(-size // MAX_PLAINTEXT_SIZE)
        out = bytearray(size + frames * _FRAME_OVERHEAD)
        encrypt_into = self.send_cipher.encrypt_into
        with memoryview(out) as target:
            pos = 0
            for start in range(0, size, MAX_PLAINTEXT_SIZE):
                chunk = view[start : start + MAX_PLAINTEXT_SIZE]
                length = len(chunk) + TAG_LEN
                target[pos] = length >> 8
                target[pos + 1] = length & 0xFF
                encrypt_into(chunk, target[pos + 2 : pos + 2 + length])
                pos += 2 + length
        return out

    # -- receiving ---------------------------------------------------------------------------

    def decrypt(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        """Decrypt every complete frame in (leftovers +) ``data`` and return the plaintext.

        Returns ``b""`` when no frame completed yet. Raises
        :class:`~.errors.DecryptionFailed` (or re-raises an earlier error) once the stream
        is corrupt; the plaintext of frames before a bad frame is returned first.
        """
        if self._error is not None:
            raise self._error
        if self._pending:
            pending, self._pending = self._pending, b""
            data = pending + data if data else pending
        view = memoryview(data).cast("B")
        end = len(view)
        frames: list[memoryview] = []
        pos = 0
        partial = self._partial
        if partial:
            # Complete the frame started by the previous chunk: first its length field,
            # then exactly the missing ciphertext bytes.
            if len(partial) < 2:
                pos = min(2 - len(partial), end)
                partial += view[:pos]
                if len(partial) < 2:
                    return b""
            missing = 2 + ((partial[0] << 8) | partial[1]) - len(partial)
            take = min(missing, end - pos)
            partial += view[pos : pos + take]
            pos += take
            if take < missing:
                return b""
            frames.append(memoryview(partial)[2:])
            self._partial = bytearray()
        while end - pos >= 2:
            frame_end = pos + 2 + ((view[pos] << 8) | view[pos + 1])
            if frame_end > end:
                break
            frames.append(view[pos + 2 : frame_end])
            pos = frame_end
        if pos < end:
            self._partial = bytearray(view[pos:])
        if not frames:
            return b""
        return self._decrypt_frames(frames)

    def _decrypt_frames(self, frames: list[memoryview]) -> bytes | bytearray:
        cipher = self.receive_cipher
        if len(frames) == 1:
            try:
                return cipher.decrypt_with_ad(b"", frames[0])
            except NoiseTransportError as exc:
                self._error = exc
                raise
        total = 0
        for frame in frames:
            total += max(len(frame) - TAG_LEN, 0)
        out = bytearray(total)
        written = 0
        decrypt_into = cipher.decrypt_into
        with memoryview(out) as target:
            for frame in frames:
                size = len(frame) - TAG_LEN
                try:
                    decrypt_into(frame, target[written : written + size])
                except NoiseTransportError as exc:
                    self._error = exc
                    if not written:
                        raise
                    break
                written += size
        if written < total:
            # Copy rather than truncate: the stored exception's traceback may still hold a
            # view of ``out``, and a bytearray with live views cannot be resized.
            return out[:written]
        return out

    def end_of_input(self) -> None:
        """The remote closed its sending side: fine between frames, an error inside one."""
        if self._error is not None:
            raise self._error
        if self._pending:
            raise LocalUsageError("decrypt() must consume the initial bytes before end_of_input()")
        if self._partial:
            self._error = TruncatedFrame(
                f"the remote closed the connection inside a Noise frame "
                f"({len(self._partial)} bytes of it received)"
            )
            raise self._error
