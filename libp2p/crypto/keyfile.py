"""Persistent identity keys, so a node (typically a relay) keeps its peer ID across restarts.

The file holds the ``PrivateKey`` protobuf bytes (:meth:`PrivateKey.serialize`), nothing else,
readable by go's and rust's ``UnmarshalPrivateKey``/``from_protobuf_encoding`` too.

Creation is crash- and race-safe: the key is written to a temporary file (mode 0600) in the same
directory, flushed to disk, then hard-linked to the final name. Linking fails if the name already
exists, so an existing key is never overwritten, even when two processes start at once; the
loser simply loads the winner's key. A file that exists but does not decode is reported, never
replaced: losing an identity silently is worse than refusing to start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from ..exceptions import DecodeError, LocalUsageError
from .keys import KeyType, PrivateKey, deserialize_private_key, generate_key_pair

__all__ = ["KeyFileError", "load_or_create_identity"]

_log = logging.getLogger(__name__)

# Far larger than any supported private key (a 64-byte Ed25519 key encodes to 68 bytes).
_MAX_KEY_FILE_SIZE = 64 * 1024


class KeyFileError(LocalUsageError):
    """An identity key file cannot be read or decoded, or cannot be created where asked (its
    directory is missing); the message names the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"identity key file {str(path)!r}: {reason}")
        self.path = path


def load_or_create_identity(
    path: str | os.PathLike[str], key_type: KeyType = KeyType.Ed25519
) -> PrivateKey:
    """Load the private key stored at ``path``, creating it first if the file does not exist.

    On first use a new ``key_type`` key is generated and written (the file gets mode 0600).
    Its directory must exist: a mistyped path is an error, not a new directory tree. Later
    calls return the stored key whatever ``key_type`` says. Raises :class:`KeyFileError` if
    the file exists but is unreadable or corrupt (it is never overwritten), or if its
    directory does not exist.
    """
    target = Path(path)
    if not target.exists():
        _create(target, generate_key_pair(key_type))
    return _load(target)


def _load(path: Path) -> PrivateKey:
    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise KeyFileError(path, "not a regular file")
            data = f.read(_MAX_KEY_FILE_SIZE + 1)
    except OSError as exc:
        raise KeyFileError(path, f"cannot read it: {exc.strerror or exc}") from exc
    if len(data) > _MAX_KEY_FILE_SIZE:
        raise KeyFileError(path, "too large to be a libp2p private key")
    if mode & 0o077:
        _log.warning(
            "identity key file %s is accessible by other users (mode %o); consider chmod 600",
            path,
            stat.S_IMODE(mode),
        )
    try:
        return deserialize_private_key(data)
    except DecodeError as exc:
        raise KeyFileError(path, f"not a valid libp2p private key ({exc})") from exc


def _create(path: Path, key: PrivateKey) -> None:
    import tempfile  # only needed the first time a node runs

    # Creating missing directories would turn a typo (``/nonexistent/dir/k``) into a new
    # tree and a new identity nobody asked for; the user creates the directory.
    directory = path.parent
    if not directory.exists():
        raise KeyFileError(path, f"the directory {str(directory)!r} does not exist")
    if not directory.is_dir():
        raise KeyFileError(path, f"{str(directory)!r} is not a directory")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # mkstemp already uses 0600; be explicit
            f.write(key.serialize())
            f.flush()
            os.fsync(f.fileno())
        try:
            # Atomic and never overwrites: fails with FileExistsError if someone beat us.
            os.link(tmp, path)
        except FileExistsError:
            _log.info("identity key file %s appeared concurrently; using it", path)
            return
        except OSError:
            # Filesystem without hard links: fall back to a rename guarded by an existence
            # check (a narrow race remains only on such filesystems).
            if path.exists():
                return
            os.replace(tmp, path)
        _fsync_dir(path.parent)
        _log.info("created new identity key file %s", path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    """Make the new directory entry durable (POSIX); a no-op where directories can't be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        _log.debug("could not fsync directory %s", directory)
    finally:
        os.close(fd)
