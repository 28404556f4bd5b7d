"""A run's outputs on disk: listed (regular files only), checksummed into a manifest, a file
opened without following a symlink anywhere on its path, all of it as a tar."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from jobd.errors import InvalidRequest, NotFound
from jobd.node.outputs import open_output, scan, write_tar


@pytest.fixture
def root(tmp_path: Path) -> Path:
    outputs = tmp_path / "outputs"
    (outputs / "frames").mkdir(parents=True)
    (outputs / "frames" / "f1.png").write_bytes(b"png")
    (outputs / "report.txt").write_text("report\n")
    (outputs / "link").symlink_to("/etc/hostname")
    (outputs / "up").symlink_to(tmp_path)
    os.mkfifo(outputs / "fifo")
    (tmp_path / "secret").write_text("not an output")
    return outputs


def test_only_regular_files_are_listed_each_with_its_checksum(root: Path) -> None:
    files = scan(root, checksums=True)
    assert [(f.path, f.size_bytes) for f in files] == [("frames/f1.png", 3), ("report.txt", 7)]
    assert files[1].sha256 == hashlib.sha256(b"report\n").hexdigest()
    assert all(f.sha256 is None for f in scan(root, checksums=False))
    assert scan(root.parent / "none", checksums=True) == []


@pytest.mark.parametrize("path", ["link", "up/secret", "fifo", "frames", "missing"])
def test_nothing_but_a_regular_file_below_the_root_is_opened(root: Path, path: str) -> None:
    with pytest.raises(NotFound):
        open_output(root, path)


@pytest.mark.parametrize("path", ["../secret", "/etc/passwd", "frames/../report.txt", "a//b", ""])
def test_paths_that_are_not_clean_are_refused(root: Path, path: str) -> None:
    with pytest.raises(InvalidRequest):
        open_output(root, path)


def test_a_file_is_opened_through_its_directories(root: Path) -> None:
    fd = open_output(root, "frames/f1.png")
    try:
        assert os.read(fd, 10) == b"png"
    finally:
        os.close(fd)


def test_all_of_them_as_a_tar(root: Path) -> None:
    pieces: list[bytes] = []
    write_tar(root, pieces.append)
    with tarfile.open(fileobj=io.BytesIO(b"".join(pieces))) as tar:
        assert sorted(m.name for m in tar.getmembers()) == ["frames/f1.png", "report.txt"]
        member = tar.extractfile("report.txt")
        assert member is not None and member.read() == b"report\n"
