"""A run's outputs: the files it wrote to /outputs, kept after its container is gone, each
with its size, checksum and time; and the summary a run carries: how many, how big, whether
they are still kept, and the newest image among them, which a render farm shows as a frame."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from jobd.domain.records import from_epoch, rfc3339

OUTPUTS_TARGET = "/outputs"  # where every run finds its output directory
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".exr")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputFile:
    path: str  # relative to /outputs, with / between parts
    size_bytes: int
    modified_at: datetime
    sha256: str | None = None  # None while the run still writes

    def to_api(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sizeBytes": self.size_bytes,
            "sha256": self.sha256,
            "modifiedAt": rfc3339(self.modified_at),
        }

    @classmethod
    def seen(cls, path: str, size_bytes: int, mtime: float, sha256: str | None) -> OutputFile:
        return cls(path=path, size_bytes=size_bytes, modified_at=from_epoch(mtime), sha256=sha256)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSummary:
    files: int
    bytes: int
    kept: bool = True  # False once they were deleted (their job was, or retention pruned them)
    preview: str | None = None  # the newest image output's path

    @classmethod
    def of(cls, files: Iterable[OutputFile]) -> OutputSummary:
        listed = list(files)
        return cls(
            files=len(listed),
            bytes=sum(f.size_bytes for f in listed),
            preview=newest_image(listed),
        )

    def to_api(self, run_id: str) -> dict[str, Any]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "kept": self.kept,
            "previewUrl": output_url(run_id, self.preview) if self.preview and self.kept else None,
        }

    def to_record(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "kept": self.kept,
            "preview": self.preview,
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> OutputSummary:
        return cls(
            files=data["files"], bytes=data["bytes"], kept=data["kept"], preview=data.get("preview")
        )


def newest_image(files: Iterable[OutputFile]) -> str | None:
    images = [f for f in files if f.path.lower().endswith(IMAGE_SUFFIXES)]
    return max(images, key=lambda f: (f.modified_at, f.path)).path if images else None


def output_url(run_id: str, path: str) -> str:
    return f"/v1/runs/{run_id}/outputs/{quote(path)}"


def output_path_problem(path: str) -> str | None:
    """Why a requested output path can't name a file of the run's: absolute, empty, with `.`
    or `..` parts, or a NUL. (Symlinks are refused where the file is opened.)"""
    parts = path.split("/")
    if not path or path.startswith("/") or "\x00" in path:
        return f"{path!r} is not a path relative to /outputs"
    if any(p in ("", ".", "..") for p in parts) or posixpath.normpath(path) != path:
        return f"{path!r} is not a clean path relative to /outputs"
    return None


def size_text(count: int) -> str:
    """Bytes as people read them: 812 B, 4.2 KiB, 1.5 GiB."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
