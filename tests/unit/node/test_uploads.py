"""Uploads on disk: received in pieces and checksummed in the same pass (O_DIRECT where the
filesystem has it, buffered where not), kept once per content, an upload's deletion never
taking another's content, and what an interrupted upload left tidied away."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from jobd.config import Config
from jobd.domain.uploads import InputFile
from jobd.errors import JobdError
from jobd.node import uploads
from jobd.node.uploads import (
    DIRECT_BLOCK,
    DIRECT_BUFFER,
    Incoming,
    blob_path,
    input_mounts,
    keep,
    remove,
    tidy,
    upload_file,
)


@pytest.fixture(params=["direct", "buffered"])
def config(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Config:
    """A data directory written with O_DIRECT, and one as on a filesystem without it (tmpfs
    before Linux 6.6)."""
    if request.param == "buffered":
        monkeypatch.setattr(uploads, "_set_direct", lambda fd, on: False)
    return Config(data_dir=tmp_path / "data", socket=tmp_path / "jobd.sock")


def received(config: Config, pieces: list[bytes]) -> Incoming:
    incoming = Incoming(config)
    for piece in pieces:
        incoming.write(piece)
    incoming.finish()
    return incoming


@pytest.mark.parametrize(
    "sizes",
    [
        [0],
        [1],
        [DIRECT_BLOCK - 1, 2],
        [DIRECT_BUFFER],
        [DIRECT_BUFFER + 1, DIRECT_BUFFER - 1, 7],
        [3 * DIRECT_BUFFER + DIRECT_BLOCK],
    ],
)
def test_a_file_is_received_whole_and_checksummed(config: Config, sizes: list[int]) -> None:
    pieces = [os.urandom(size) for size in sizes]
    whole = b"".join(pieces)
    incoming = received(config, pieces)
    assert incoming.path.read_bytes() == whole
    assert incoming.sha256 == hashlib.sha256(whole).hexdigest()
    assert incoming.size_bytes == len(whole)
    assert incoming.path.stat().st_mode & 0o777 == 0o644, "any user a job runs as reads it"


def test_the_same_content_is_kept_once_and_outlives_either_upload(config: Config) -> None:
    first, second = (received(config, [b"scene"]) for _ in range(2))
    keep(first, "upload-a", config)
    keep(second, "upload-b", config)
    a, b = upload_file("upload-a", config), upload_file("upload-b", config)
    assert a.stat().st_ino == b.stat().st_ino == blob_path(first.sha256, config).stat().st_ino
    assert not first.path.exists() and not second.path.exists()
    remove("upload-a", first.sha256, config)
    assert b.read_bytes() == b"scene", "the other upload keeps the content"
    assert blob_path(first.sha256, config).exists()
    remove("upload-b", first.sha256, config)
    assert not blob_path(first.sha256, config).exists(), "its last upload took the content"


def test_a_discarded_upload_leaves_nothing(config: Config) -> None:
    incoming = Incoming(config)
    incoming.write(b"half a file")
    incoming.discard()
    assert list((config.uploads_dir / "incoming").iterdir()) == []


def test_what_interrupted_uploads_left_is_tidied_at_startup(config: Config) -> None:
    kept = received(config, [b"kept"])
    keep(kept, "upload-kept", config)
    orphan = received(config, [b"orphan"])
    keep(orphan, "upload-orphan", config)  # linked, then the daemon died before the record
    Incoming(config).write(b"cut short")  # never finished
    removed = tidy([("upload-kept", kept.sha256)], config)
    assert removed == 3  # the file being received, the orphan's file, then its blob
    assert upload_file("upload-kept", config).read_bytes() == b"kept"
    assert not upload_file("upload-orphan", config).exists()
    assert not blob_path(orphan.sha256, config).exists()


def test_inputs_mount_read_only_under_inputs_and_a_lost_one_is_named(config: Config) -> None:
    incoming = received(config, [b"scene"])
    keep(incoming, "upload-a", config)
    item = InputFile(slug="upload-a", name="scene.blend", sha256=incoming.sha256, size_bytes=5)
    (mount,) = input_mounts([item], config)
    assert (mount.target, mount.read_only) == ("/inputs/scene.blend", True)
    assert mount.host_path == str(upload_file("upload-a", config))
    gone = InputFile(slug="upload-b", name="gone.bin", sha256="x", size_bytes=1)
    with pytest.raises(JobdError, match=r"gone\.bin \(upload-b\) is gone"):
        input_mounts([item, gone], config)
