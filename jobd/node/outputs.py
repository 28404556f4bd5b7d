"""Each run's /outputs on this machine: a directory under jobd's data directory, made when the
run is launched and kept after its container is gone; listed with sizes and checksums (a
manifest written once the run has ended), a file opened for download, all of it as a tar.

A running container may replace any file there with a symlink at any moment, so nothing here
follows one: every path is walked a directory at a time with O_NOFOLLOW, and what is opened is
the file found, never what a link points at. Symlinks are not listed. Blocks: call these in a
thread."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from jobd.config import Config
from jobd.domain.outputs import OutputFile, output_path_problem
from jobd.errors import InvalidRequest, NoSpace, NotFound, writing

log = logging.getLogger(__name__)

OUTPUTS_MODE = 0o777  # any user a job runs as may write its outputs (the data dir is private)
READ_CHUNK = 1024 * 1024
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not block us


def outputs_dir(run_id: str, config: Config) -> Path:
    return config.outputs_dir / run_id


def manifest_path(run_id: str, config: Config) -> Path:
    return config.outputs_dir / f"{run_id}.manifest.json"


def make_outputs_dir(run_id: str, config: Config) -> Path:
    """The run's /outputs, made (NoSpace when the disk is full: the launch fails)."""
    directory = outputs_dir(run_id, config)
    with writing(f"the outputs directory of {run_id}"):
        directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, OUTPUTS_MODE)
    return directory


def remove_outputs(run_id: str, config: Config) -> None:
    manifest_path(run_id, config).unlink(missing_ok=True)
    shutil.rmtree(outputs_dir(run_id, config), ignore_errors=True)


# -- listing ------------------------------------------------------------------------------


def scan(root: Path, *, checksums: bool) -> list[OutputFile]:
    """Every regular file below `root`, by path; with `checksums`, each one's sha256."""
    try:
        top = os.open(root, DIRECTORY)
    except FileNotFoundError:
        return []
    found: list[OutputFile] = []
    try:
        _scan(top, "", checksums, found)
    finally:
        os.close(top)
    return sorted(found, key=lambda f: f.path)


def _scan(directory: int, prefix: str, checksums: bool, found: list[OutputFile]) -> None:
    for entry in os.scandir(directory):
        path = f"{prefix}{entry.name}"
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile
        if stat.S_ISDIR(info.st_mode):
            _in_subdirectory(directory, entry.name, path, checksums, found)
        elif stat.S_ISREG(info.st_mode):
            digest = _sha256_at(directory, entry.name) if checksums else None
            found.append(OutputFile.seen(path, info.st_size, info.st_mtime, digest))


def _in_subdirectory(
    parent: int, name: str, path: str, checksums: bool, found: list[OutputFile]
) -> None:
    try:
        child = os.open(name, DIRECTORY, dir_fd=parent)
    except OSError:  # replaced by something else meanwhile
        return
    try:
        _scan(child, f"{path}/", checksums, found)
    finally:
        os.close(child)


def _sha256_at(directory: int, name: str) -> str | None:
    try:
        fd = os.open(name, FILE, dir_fd=directory)
    except OSError:
        return None
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, READ_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def write_manifest(run_id: str, config: Config) -> list[OutputFile]:
    """The ended run's outputs with their checksums, written beside them once: they no longer
    change, and listing 10,000 files must not read them all again. Without space for the
    manifest they are returned all the same (reads keep working on a full disk)."""
    files = scan(outputs_dir(run_id, config), checksums=True)
    path = manifest_path(run_id, config)
    temporary = path.with_suffix(".tmp")
    try:
        with writing(f"the outputs manifest of {run_id}"):
            temporary.write_bytes(orjson.dumps([f.to_api() for f in files]))
    except NoSpace as e:  # the listing still answers; the next one tries to write it again
        temporary.unlink(missing_ok=True)
        log.warning("%s", e)
        return files
    temporary.replace(path)
    return files


def read_manifest(run_id: str, config: Config) -> bytes | None:
    """The manifest as written: the files' JSON array, as the API lists them (served as it is:
    10,000 files are 1.5 MB, not worth parsing only to write them again)."""
    try:
        return manifest_path(run_id, config).read_bytes()
    except OSError:
        return None


# -- one file, or all of them -------------------------------------------------------------


def open_output(root: Path, path: str) -> int:
    """A file descriptor of the regular file at `path` below `root`, no symlink followed on
    the way; NotFound when there is none (a directory, a link, nothing)."""
    problem = output_path_problem(path)
    if problem:
        raise InvalidRequest(f"path: {problem}")
    *parents, name = path.split("/")
    try:
        directory = os.open(root, DIRECTORY)
    except FileNotFoundError:
        raise NotFound(f"no output {path!r}") from None
    try:
        for part in parents:
            child = os.open(part, DIRECTORY, dir_fd=directory)
            os.close(directory)
            directory = child
        fd = os.open(name, FILE, dir_fd=directory)
    except OSError:  # missing, a symlink (ELOOP), not a directory on the way
        raise NotFound(f"no output {path!r}") from None
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotFound(f"no output {path!r}: not a regular file")
    os.set_blocking(fd, True)
    return fd


def write_tar(root: Path, sink: Callable[[bytes], None]) -> None:
    """Every regular file below `root` (and the directories holding them), as a tar stream
    written to `sink` a piece at a time; nothing is buffered whole."""
    # a stream ("w|") only ever writes to its file object, which typeshed does not know
    stream: Any = tarfile.open
    buffered = _Sink(sink)
    with stream(mode="w|", fileobj=buffered, format=tarfile.PAX_FORMAT) as archive:
        for output in scan(root, checksums=False):
            try:
                fd = open_output(root, output.path)
            except (NotFound, InvalidRequest):
                continue  # gone meanwhile
            with os.fdopen(fd, "rb") as f:
                info = tarfile.TarInfo(output.path)
                current = os.fstat(f.fileno())
                info.size, info.mtime, info.mode = current.st_size, int(current.st_mtime), 0o644
                archive.addfile(info, _Exactly(f, current.st_size))
    buffered.flush()


class _Sink:
    """A write-only file that hands what is written to a callable, a megabyte at a time (tar
    writes in pieces of 10 KiB)."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink
        self._pieces: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> int:
        self._pieces.append(bytes(data))
        self._size += len(data)
        if self._size >= READ_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._pieces:
            self._sink(b"".join(self._pieces))
            self._pieces, self._size = [], 0


class _Exactly:
    """A file read as if it held `size` bytes: one still being written is cut at the size
    the tar header gave, and one that shrank is padded, so the stream stays valid."""

    def __init__(self, file: object, size: int) -> None:
        self._file = file
        self._left = size

    def read(self, count: int = -1) -> bytes:
        want = self._left if count < 0 else min(count, self._left)
        data: bytes = self._file.read(want)  # type: ignore[attr-defined]
        data += b"\0" * (want - len(data))
        self._left -= want
        return data
