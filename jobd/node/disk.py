"""What a directory holds on disk: its files and their bytes; and what jobd's data directory
holds, by part. Blocks: call these in a thread."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobd.config import Config


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    size_bytes: int  # the files' sizes (what they hold, not the blocks they take)
    files: int


def usage(directory: Path) -> Usage:
    """The bytes and files below `directory`; symlinks are counted, never followed, and what
    can't be read (gone meanwhile, not ours) is passed over."""
    size = files = 0
    pending = [directory]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
                continue
            files += 1
            with contextlib.suppress(OSError):
                size += entry.stat(follow_symlinks=False).st_size
    return Usage(size_bytes=size, files=files)


@dataclass(frozen=True, slots=True, kw_only=True)
class Footprint:
    """What jobd's data directory holds, by part, in bytes, and the room left on its
    filesystem."""

    database: int  # the file, its WAL and shared memory
    logs: int
    outputs: int
    uploads: int  # each content once, however many uploads link it
    volumes: int
    free: int  # what an unprivileged writer may still take on the data directory's filesystem
    filesystem: int  # that filesystem's size
    metrics: int = 0  # the metric points' share of `database` (not counted twice)
    metrics_estimate: str = "none"  # how: "dbstat" (exact pages) or "rows" (count x size)
    measured_at: float = 0.0  # when the walk was made (seconds since the epoch)

    def to_api(self, path: Path) -> dict[str, Any]:
        parts = {
            "databaseBytes": self.database,
            "logsBytes": self.logs,
            "outputsBytes": self.outputs,
            "uploadsBytes": self.uploads,
            "volumesBytes": self.volumes,
        }
        return {
            "path": str(path),
            "totalBytes": sum(parts.values()),
            **parts,
            "metricsBytes": self.metrics,
            "metricsEstimate": self.metrics_estimate,
            "freeBytes": self.free,
            "filesystemBytes": self.filesystem,
            "measuredAt": self.measured_at,
        }


def footprint(config: Config) -> Footprint:
    """The data directory's parts as they are now: a walk of each, so call it rarely."""
    database = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            database += os.stat(f"{config.database}{suffix}").st_size
    uploads = config.uploads_dir
    room = free_space(config.data_dir)
    return Footprint(
        database=database,
        logs=usage(config.log_dir).size_bytes,
        outputs=usage(config.outputs_dir).size_bytes,
        uploads=usage(uploads / "blobs").size_bytes + usage(uploads / "incoming").size_bytes,
        volumes=usage(config.volumes_dir).size_bytes,
        free=room.free,
        filesystem=room.total,
        measured_at=time.time(),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Room:
    free: int  # bytes an unprivileged writer may still take (statvfs f_bavail)
    total: int


def free_space(path: Path) -> Room:
    """The room on the filesystem holding `path` (or the nearest existing parent); zeros
    when none can be read."""
    for candidate in (path, *path.parents):
        try:
            found = shutil.disk_usage(candidate)
        except OSError:
            continue
        return Room(free=found.free, total=found.total)
    return Room(free=0, total=0)
