"""What a directory holds on disk: its files and their bytes; and what jobd's data directory
holds, by part. Blocks: call these in a thread."""

from __future__ import annotations

import contextlib
import os
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
    """What jobd's data directory holds, by part, in bytes."""

    database: int
    logs: int
    outputs: int
    uploads: int  # each content once, however many uploads link it
    volumes: int

    def to_api(self, path: Path) -> dict[str, Any]:
        parts = {
            "databaseBytes": self.database,
            "logsBytes": self.logs,
            "outputsBytes": self.outputs,
            "uploadsBytes": self.uploads,
            "volumesBytes": self.volumes,
        }
        return {"path": str(path), "totalBytes": sum(parts.values()), **parts}


def footprint(config: Config) -> Footprint:
    """The data directory's parts as they are now: a walk of each, so call it rarely."""
    database = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            database += os.stat(f"{config.database}{suffix}").st_size
    uploads = config.uploads_dir
    return Footprint(
        database=database,
        logs=usage(config.log_dir).size_bytes,
        outputs=usage(config.outputs_dir).size_bytes,
        uploads=usage(uploads / "blobs").size_bytes + usage(uploads / "incoming").size_bytes,
        volumes=usage(config.volumes_dir).size_bytes,
    )
