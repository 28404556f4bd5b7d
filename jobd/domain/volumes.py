"""Volumes: data a job keeps. A run mounts named volumes jobd manages (created on first use,
kept across runs and jobs) and host paths the configuration allows, each at a path inside the
container, read-only or not."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from jobd.domain.owners import Owner
from jobd.domain.records import Row, from_epoch, rfc3339

VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# where jobd itself mounts a run's inputs and outputs: no volume may go there or above
RESERVED_TARGETS = ("/inputs", "/outputs")


@dataclass(frozen=True, slots=True, kw_only=True)
class VolumeMount:
    """One volume of a job: `source` is a named volume jobd manages, or an absolute host path
    (a bind mount); `target` is where the container sees it."""

    source: str
    target: str
    read_only: bool = False

    @property
    def host_path(self) -> bool:
        return self.source.startswith("/")

    def to_api(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "readOnly": self.read_only}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> VolumeMount:
        return cls(
            source=data["source"],
            target=data["target"],
            read_only=bool(data.get("readOnly", False)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HostMount:
    """A volume as the runtime mounts it: a directory (or file) of the host, at `target`."""

    host_path: str
    target: str
    read_only: bool = False


def mounts_from_api(data: Iterable[Mapping[str, Any]] | None) -> tuple[VolumeMount, ...]:
    return tuple(VolumeMount.from_api(v) for v in data or ())


def mount_problem(mounts: Iterable[VolumeMount]) -> str | None:
    """What is wrong with a job's volumes as written (the host's side is checked where the
    host is known): a source that is neither a volume name nor a clean absolute path, a
    target that is not one, a target jobd reserves, or the same target twice."""
    seen: set[str] = set()
    for index, mount in enumerate(mounts):
        where = f"volumes/{index}"
        if mount.host_path and not clean_path(mount.source):
            return f"{where}/source: {mount.source!r} is not a clean absolute path (no .., no //)"
        if not mount.host_path and not VOLUME_NAME.fullmatch(mount.source):
            return f"{where}/source: {mount.source!r} is neither a volume name nor a host path"
        if not clean_path(mount.target) or mount.target == "/":
            return f"{where}/target: {mount.target!r} is not a clean absolute path below /"
        reserved = next((r for r in RESERVED_TARGETS if _overlaps(mount.target, r)), None)
        if reserved:
            return f"{where}/target: {mount.target} overlaps {reserved}, where jobd mounts its own"
        if mount.target in seen:
            return f"{where}/target: {mount.target} is mounted twice"
        seen.add(mount.target)
    return None


def clean_path(path: str) -> bool:
    """An absolute path with no `.` or `..` parts, no empty parts and no NUL."""
    return (
        path.startswith("/")
        and "\x00" not in path
        and (path == "/" or posixpath.normpath(path) == path.rstrip("/"))
        and "//" not in path
    )


def _overlaps(path: str, other: str) -> bool:
    return path == other or path.startswith(other + "/") or other.startswith(path + "/")


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume:
    """A named volume jobd manages: a directory kept under its data directory."""

    name: str
    owner: Owner
    created_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Row) -> Volume:
        return cls(
            name=row["name"],
            owner=Owner.from_api(orjson.loads(row["owner"])),
            created_at=from_epoch(row["created_at"]),
            labels=orjson.loads(row["labels"]),
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner.to_api(),
            "createdAt": rfc3339(self.created_at),
            "labels": dict(self.labels),
        }
