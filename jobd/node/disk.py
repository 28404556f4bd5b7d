"""What a directory holds on disk: its files and their bytes. Blocks: call it in a thread."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path


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
