"""Uploads on disk. Each upload is a file of its own (uploads/files/<slug>), a hard link to the
one blob kept per content (uploads/blobs/<sha256>): the same content uploaded twice takes its
space once, and deleting an upload never takes another's content, since a blob is removed only
when no upload links it any more; an upload made meanwhile holds the content by its own link.
A file is received into uploads/incoming/ and checksummed in the same pass, and made durable
before it is kept. A write that fails for lack of space raises NoSpace. Blocks: call these in
a thread."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from jobd.config import Config
from jobd.domain.uploads import InputFile
from jobd.domain.volumes import HostMount
from jobd.errors import JobdError, writing

FILE_MODE = 0o644  # whatever user a job runs as may read its inputs; nobody may write them
LINK_TRIES = 3
DIRECT_BLOCK = 4096  # O_DIRECT writes whole blocks, from memory aligned to them
DIRECT_BUFFER = 1024 * 1024


def upload_file(slug: str, config: Config) -> Path:
    return config.uploads_dir / "files" / slug


def blob_path(sha256: str, config: Config) -> Path:
    return config.uploads_dir / "blobs" / sha256


class Incoming:
    """A file being received: each piece checksummed and written as it comes.

    Written with O_DIRECT where the filesystem allows it, from a page-aligned buffer: the
    data goes to the disk as it arrives instead of through the page cache, and the fsync that
    makes it durable has little left to do. Buffered writes and an fsync cost this daemon about
    five times the CPU (the fsync's writeback runs in the caller), more than hashing does."""

    def __init__(self, config: Config) -> None:
        directory = config.uploads_dir / "incoming"
        with writing("the upload"):
            directory.mkdir(parents=True, exist_ok=True)
            self._fd, name = tempfile.mkstemp(dir=directory)
        os.fchmod(self._fd, FILE_MODE)
        self.path = Path(name)
        self._hash = hashlib.sha256()
        self.size_bytes = 0
        self._buffer = mmap.mmap(-1, DIRECT_BUFFER)  # page-aligned, as O_DIRECT needs
        self._filled = 0
        self._direct = _set_direct(self._fd, True)

    def write(self, piece: bytes) -> None:
        with writing("the upload"):
            self._write(piece)

    def _write(self, piece: bytes) -> None:
        self._hash.update(piece)  # hashlib and os.write both let go of the GIL
        self.size_bytes += len(piece)
        if not self._direct:
            _write_all(self._fd, memoryview(piece))
            return
        data = memoryview(piece)
        while data:
            taken = min(DIRECT_BUFFER - self._filled, len(data))
            self._buffer[self._filled : self._filled + taken] = data[:taken]
            self._filled += taken
            data = data[taken:]
            if self._filled == DIRECT_BUFFER:
                self._flush(DIRECT_BUFFER)

    def _flush(self, count: int) -> None:
        """Write the buffer's first `count` bytes (whole blocks) and keep the rest."""
        _write_all(self._fd, memoryview(self._buffer)[:count])
        rest = self._filled - count
        self._buffer[:rest] = self._buffer[count : self._filled]
        self._filled = rest

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """On disk for good: an upload the API has answered for survives a power cut. The
        last partial block is written without O_DIRECT, which needs whole blocks."""
        with writing("the upload"):
            if self._direct:
                self._flush(self._filled - self._filled % DIRECT_BLOCK)
                self._direct = _set_direct(self._fd, False)
                _write_all(self._fd, memoryview(self._buffer)[: self._filled])
            os.fsync(self._fd)
        self._close()

    def discard(self) -> None:
        self._close()
        self.path.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        # a view of the buffer may live on in a failed write's traceback (a full disk): the
        # mapping then goes with the last reference to it
        with contextlib.suppress(BufferError):
            self._buffer.close()


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off; whether it is on (a filesystem may not have it: tmpfs)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError:
        return False
    return on


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def keep(incoming: Incoming, slug: str, config: Config) -> None:
    """Keep the finished file as upload `slug`, linked to its content's blob (this file
    becomes the blob when it is the first of its content)."""
    with writing("the upload"):
        _link(incoming, slug, config)
    incoming.path.unlink()


def _link(incoming: Incoming, slug: str, config: Config) -> None:
    blob = blob_path(incoming.sha256, config)
    target = upload_file(slug, config)
    for directory in (blob.parent, target.parent):
        directory.mkdir(parents=True, exist_ok=True)
    for _ in range(LINK_TRIES):
        with contextlib.suppress(FileExistsError):  # the content is kept already: this copy goes
            os.link(incoming.path, blob)
        try:
            os.link(blob, target)
            break
        except FileNotFoundError:
            continue  # its last upload was deleted between the two links: make it again
    else:
        raise JobdError(f"could not keep {slug}: its content's blob kept disappearing")


def remove(slug: str, sha256: str, config: Config) -> None:
    """Delete the upload's file, and its content's blob once no other upload links it."""
    upload_file(slug, config).unlink(missing_ok=True)
    blob = blob_path(sha256, config)
    try:
        if blob.stat().st_nlink == 1:
            blob.unlink()
    except FileNotFoundError:
        pass


def tidy(known: Iterable[tuple[str, str]], config: Config) -> int:
    """At startup, before any upload is received: delete what an interrupted upload or
    deletion left behind (files being received, files no upload record names, blobs no file
    links). `known` are the (slug, sha256) of the uploads recorded. How many were deleted."""
    slugs = {slug for slug, _ in known}
    doomed = [
        *_entries(config.uploads_dir / "incoming"),
        *(p for p in _entries(config.uploads_dir / "files") if p.name not in slugs),
    ]
    for path in doomed:
        path.unlink(missing_ok=True)
    blobs = [p for p in _entries(config.uploads_dir / "blobs") if p.stat().st_nlink == 1]
    for path in blobs:
        path.unlink(missing_ok=True)
    return len(doomed) + len(blobs)


def _entries(directory: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(directory)]
    except FileNotFoundError:
        return []


def input_mounts(inputs: Iterable[InputFile], config: Config) -> tuple[HostMount, ...]:
    """The job's inputs as the runtime mounts them: each upload's file, read-only, at
    /inputs/<name>. A JobdError naming one that is gone from the data directory."""
    mounts = []
    for item in inputs:
        path = upload_file(item.slug, config)
        if not path.is_file():
            raise JobdError(
                f"input {item.name} ({item.slug}) is gone from jobd's data directory ({path})"
            )
        mounts.append(HostMount(host_path=str(path), target=item.target, read_only=True))
    return tuple(mounts)
