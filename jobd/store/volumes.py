"""Named volumes: their records, created on a job's first use or by request; which runs use
each (written with each run, in its transaction); and deleting one that no active run uses."""

from __future__ import annotations

import sqlite3
import time
from typing import Literal

import aiosqlite

from jobd.domain.owners import Reach
from jobd.domain.runs import Run
from jobd.domain.states import ACTIVE_STATUSES, RunStatus
from jobd.domain.volumes import Volume
from jobd.errors import Conflict, NotFound
from jobd.store.rows import fetch_all, fetch_one, reached, to_json

# the runs that hold a volume: queued (it will mount it) or active
_HOLDING = tuple(s.value for s in (RunStatus.PENDING, *sorted(ACTIVE_STATUSES)))
_HOLDING_MARKS = ", ".join("?" * len(_HOLDING))


def use_volumes(db: sqlite3.Connection, run: Run) -> None:
    """In the transaction that creates `run`: note the named volumes it mounts, creating the
    records of those that do not exist yet, owned by the run's job's owner."""
    names = sorted({v.source for v in run.spec.volumes if not v.host_path} if run.spec else ())
    for name in names:
        db.execute(
            "INSERT OR IGNORE INTO volumes (name, owner, labels, created_at)"
            " SELECT ?, owner, '{}', ? FROM jobs WHERE id = ?",
            (name, time.time(), run.job_id),
        )
        db.execute("INSERT INTO run_volumes (volume, run_id) VALUES (?, ?)", (name, run.id))


def create_volume(db: sqlite3.Connection, volume: Volume) -> None:
    try:
        _insert(db, volume, "INSERT")
    except sqlite3.IntegrityError:
        raise Conflict(f"volume {volume.name!r} exists") from None


def ensure_volume(db: sqlite3.Connection, volume: Volume) -> None:
    """Create the record unless it exists: a job names a volume for the first time."""
    _insert(db, volume, "INSERT OR IGNORE")


def _insert(
    db: sqlite3.Connection, volume: Volume, verb: Literal["INSERT", "INSERT OR IGNORE"]
) -> None:
    db.execute(
        f"{verb} INTO volumes (name, owner, labels, created_at) VALUES (?, ?, ?, ?)",
        (
            volume.name,
            to_json(volume.owner.to_api()),
            to_json(dict(volume.labels)),
            volume.created_at.timestamp(),
        ),
    )


def delete_volume(db: sqlite3.Connection, name: str) -> None:
    """Forget the volume, unless a queued or active run uses it (Conflict naming them)."""
    using = _users(db, name)
    if using:
        shown = ", ".join(using[:5]) + (f" and {len(using) - 5} more" if len(using) > 5 else "")
        raise Conflict(f"volume {name!r} is in use by {shown}")
    if db.execute("DELETE FROM volumes WHERE name = ?", (name,)).rowcount == 0:
        raise NotFound(f"volume {name!r} not found")
    db.execute("DELETE FROM run_volumes WHERE volume = ?", (name,))


def _users(db: sqlite3.Connection, name: str) -> list[str]:
    rows = db.execute(
        "SELECT r.id FROM run_volumes v JOIN runs r ON r.id = v.run_id"
        f" WHERE v.volume = ? AND r.status IN ({_HOLDING_MARKS}) ORDER BY r.created_at",
        (name, *_HOLDING),
    ).fetchall()
    return [row["id"] for row in rows]


# -- reads ------------------------------------------------------------------------------------


async def get_volume(db: aiosqlite.Connection, name: str, reach: Reach) -> Volume:
    mine, uid = reached(reach)
    row = await fetch_one(db, f"SELECT * FROM volumes WHERE name = ?{mine}", (name, *uid))
    if row is None:
        raise NotFound(f"volume {name!r} not found")
    return Volume.from_row(row)


async def list_volumes(db: aiosqlite.Connection, reach: Reach) -> list[Volume]:
    mine, uid = reached(reach)
    rows = await fetch_all(db, f"SELECT * FROM volumes WHERE 1{mine} ORDER BY name", uid)
    return [Volume.from_row(row) for row in rows]


async def volume_users(db: aiosqlite.Connection, names: list[str]) -> dict[str, list[str]]:
    """The queued and active runs using each of these volumes, oldest first."""
    if not names:
        return {}
    marks = ", ".join("?" * len(names))
    rows = await fetch_all(
        db,
        "SELECT v.volume, r.id FROM run_volumes v JOIN runs r ON r.id = v.run_id"
        f" WHERE v.volume IN ({marks}) AND r.status IN ({_HOLDING_MARKS})"
        " ORDER BY r.created_at, r.id",
        (*names, *_HOLDING),
    )
    found: dict[str, list[str]] = {name: [] for name in names}
    for row in rows:
        found[row["volume"]].append(row["id"])
    return found
