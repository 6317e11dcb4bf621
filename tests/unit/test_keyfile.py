"""Identity key files: created once, reloaded afterwards, never overwritten."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from libp2p.crypto import (
    Ed25519PrivateKey,
    KeyFileError,
    KeyType,
    PrivateKey,
    Secp256k1PrivateKey,
    deserialize_private_key,
    generate_ed25519,
    generate_key_pair,
    load_or_create_identity,
)
from libp2p.exceptions import LocalUsageError
from libp2p.peer import PeerID


def test_create_then_reload_keeps_peer_id(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    first = load_or_create_identity(path)
    assert isinstance(first, Ed25519PrivateKey)
    assert path.read_bytes() == first.serialize()
    second = load_or_create_identity(str(path))
    assert second == first
    assert PeerID.from_public_key(second.public_key) == PeerID.from_public_key(first.public_key)
    # No temporary files are left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["identity.key"]


def test_missing_directory_is_an_error_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nonexistent" / "dir" / "identity.key"
    with pytest.raises(KeyFileError, match="does not exist") as caught:
        load_or_create_identity(path)
    assert str(tmp_path / "nonexistent" / "dir") in str(caught.value)
    assert isinstance(caught.value, LocalUsageError)
    assert not (tmp_path / "nonexistent").exists()


def test_a_file_in_place_of_the_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(KeyFileError, match="is not a directory"):
        load_or_create_identity(tmp_path / "plain" / "identity.key")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_file_mode_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    load_or_create_identity(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secp256k1_identity(tmp_path: Path) -> None:
    path = tmp_path / "k1.key"
    key = load_or_create_identity(path, KeyType.Secp256k1)
    assert isinstance(key, Secp256k1PrivateKey)
    assert deserialize_private_key(path.read_bytes()) == key
    # key_type only matters at creation: the stored key wins afterwards.
    assert load_or_create_identity(path, KeyType.Ed25519) == key


def test_corrupt_file_is_reported_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    path.write_bytes(b"not a key")
    with pytest.raises(KeyFileError, match=r"id\.key") as info:
        load_or_create_identity(path)
    assert isinstance(info.value, LocalUsageError)
    assert info.value.path == path
    assert path.read_bytes() == b"not a key"


def test_empty_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    path.write_bytes(b"")
    with pytest.raises(KeyFileError, match="not a valid libp2p private key"):
        load_or_create_identity(path)


def test_directory_in_place_of_file(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    path.mkdir()
    with pytest.raises(KeyFileError, match=r"id\.key"):
        load_or_create_identity(path)


def test_unsupported_stored_type_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "rsa.key"
    path.write_bytes(b"\x08\x00\x12\x03abc")  # an RSA PrivateKey envelope
    with pytest.raises(KeyFileError, match="RSA private keys are not supported"):
        load_or_create_identity(path)


def test_unsupported_type_cannot_be_created(tmp_path: Path) -> None:
    path = tmp_path / "rsa.key"
    with pytest.raises(LocalUsageError):
        load_or_create_identity(path, KeyType.RSA)
    assert not path.exists()


def test_existing_key_written_elsewhere_is_loaded(tmp_path: Path) -> None:
    # A key file produced by another tool (same protobuf format) is used as is.
    raw = bytes.fromhex(
        "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
        "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
    )
    path = tmp_path / "go.key"
    path.write_bytes(raw)
    key = load_or_create_identity(path)
    assert str(PeerID.from_public_key(key.public_key)) == (
        "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
    )


def test_concurrent_creation_never_overwrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "id.key"
    winner = generate_ed25519()

    def racing_generate(key_type: KeyType) -> PrivateKey:
        # Another process creates the file between our existence check and our link.
        path.write_bytes(winner.serialize())
        return generate_key_pair(key_type)

    monkeypatch.setattr("libp2p.crypto.keyfile.generate_key_pair", racing_generate)
    assert load_or_create_identity(path) == winner
    assert path.read_bytes() == winner.serialize()
    assert [p.name for p in tmp_path.iterdir()] == ["id.key"]


def test_filesystem_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "id.key"
    key = load_or_create_identity(path)
    assert load_or_create_identity(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["id.key"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_world_readable_key_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "id.key"
    key = load_or_create_identity(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="libp2p.crypto.keyfile"):
        assert load_or_create_identity(path) == key
    assert "chmod 600" in caplog.text
