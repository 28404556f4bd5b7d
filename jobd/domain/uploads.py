"""Uploads: files handed to jobd for jobs to read (a scene to render, a dataset, a dump to
restore). Each upload has a slug that names it; its content is kept once per sha256 however
often it is uploaded; a job's inputs mount uploads read-only at /inputs/<name>. An upload no
job names expires a while after it was uploaded or last attached."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from jobd.domain.owners import Owner
from jobd.domain.records import Row, from_epoch, rfc3339

INPUTS_TARGET = "/inputs"  # where a run finds its inputs, read-only
SLUG_PREFIX = "upload"
MAX_NAME_BYTES = 255  # a file name, as Linux allows it


@dataclass(frozen=True, slots=True, kw_only=True)
class Upload:
    slug: str
    name: str  # the file name the job sees under /inputs
    size_bytes: int
    sha256: str
    owner: Owner
    created_at: datetime
    used_at: datetime  # when it was uploaded, or last named by a job (or a job naming it went)

    @classmethod
    def from_row(cls, row: Row) -> Upload:
        return cls(
            slug=row["slug"],
            name=row["name"],
            size_bytes=row["size_bytes"],
            sha256=row["sha256"],
            owner=Owner.from_api(orjson.loads(row["owner"])),
            created_at=from_epoch(row["created_at"]),
            used_at=from_epoch(row["used_at"]),
        )

    def expires_at(self, expire_seconds: float) -> datetime:
        return self.used_at + timedelta(seconds=expire_seconds)

    def to_api(self, *, expire_seconds: float, used_by: list[str]) -> dict[str, Any]:
        """`used_by`: the jobs that name it; while there are any it does not expire."""
        expires = None if used_by else self.expires_at(expire_seconds)
        return {
            "slug": self.slug,
            "name": self.name,
            "sizeBytes": self.size_bytes,
            "sha256": self.sha256,
            "owner": self.owner.to_api(),
            "createdAt": rfc3339(self.created_at),
            "expiresAt": rfc3339(expires),
            "usedBy": used_by,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class InputFile:
    """One input of a job: an upload as the job took it (its content by checksum), so its
    runs mount exactly that content at /inputs/<name>."""

    slug: str
    name: str
    sha256: str
    size_bytes: int

    @classmethod
    def of(cls, upload: Upload) -> InputFile:
        return cls(
            slug=upload.slug, name=upload.name, sha256=upload.sha256, size_bytes=upload.size_bytes
        )

    @property
    def target(self) -> str:
        return f"{INPUTS_TARGET}/{self.name}"

    def to_api(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "sha256": self.sha256,
            "sizeBytes": self.size_bytes,
            "path": self.target,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> InputFile:
        return cls(
            slug=data["slug"],
            name=data["name"],
            sha256=data["sha256"],
            size_bytes=data["sizeBytes"],
        )


def inputs_from_api(data: Iterable[Mapping[str, Any]] | None) -> tuple[InputFile, ...]:
    return tuple(InputFile.from_api(i) for i in data or ())


def upload_name_problem(name: str) -> str | None:
    """Why `name` can't be an input's file name, or None: it must be one plain file name."""
    if not name:
        return "name: give the file's name (?name=...)"
    if "/" in name or "\0" in name or name in (".", ".."):
        return f"name: {name!r} is not a plain file name (no '/', NUL, '.' or '..')"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"name: {name!r} has a control character"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"name: longer than {MAX_NAME_BYTES} bytes"
    return None


def inputs_problem(slugs: Iterable[str], found: Iterable[InputFile]) -> str | None:
    """Why these inputs can't be mounted together, or None: each slug once, each name once."""
    repeated = [slug for slug, count in Counter(slugs).items() if count > 1]
    if repeated:
        return f"inputs: {repeated[0]} is given twice"
    by_name: dict[str, list[str]] = {}
    for item in found:
        by_name.setdefault(item.name, []).append(item.slug)
    for name, slugs_named in by_name.items():
        if len(slugs_named) > 1:
            return (
                f"inputs: {' and '.join(slugs_named)} are both named {name!r}; each input is"
                f" mounted at /inputs/<name>, so upload one of them under another name"
            )
    return None
