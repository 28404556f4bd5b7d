"""Jobs and runs found by what a request calls them: ids by a prefix (a range of the primary
key), a job by its name (the jobs_name index). Each read takes the caller's reach, so another
user's records are never among what is found."""

from __future__ import annotations

import aiosqlite

from jobd.domain.owners import Reach
from jobd.store.rows import fetch_all, fetch_one, reached


async def job_named(
    db: aiosqlite.Connection, name: str, reach: Reach, uid: int | None
) -> str | None:
    """The id of the newest job called `name` within reach, the caller's own (`uid`) first."""
    mine, params = reached(reach, project="project")
    row = await fetch_one(
        db,
        f"SELECT id FROM jobs WHERE name = ? AND deleted_at IS NULL{mine}"
        " ORDER BY owner_uid IS ? DESC, created_at DESC, id DESC LIMIT 1",
        (name, *params, uid),
    )
    return None if row is None else str(row["id"])


async def jobs_in_range(
    db: aiosqlite.Connection, ids: tuple[str, str], reach: Reach, limit: int
) -> list[tuple[str, str | None]]:
    """The ids in [low, high) of jobs within reach, newest first, with their names."""
    mine, params = reached(reach, project="project")
    rows = await fetch_all(
        db,
        f"SELECT id, name FROM jobs WHERE id >= ? AND id < ? AND deleted_at IS NULL{mine}"
        " ORDER BY id DESC LIMIT ?",
        (*ids, *params, limit),
    )
    return [(str(row["id"]), row["name"]) for row in rows]


async def runs_in_range(
    db: aiosqlite.Connection, ids: tuple[str, str], reach: Reach, limit: int
) -> list[tuple[str, str | None]]:
    """The ids in [low, high) of runs whose jobs are within reach, newest first."""
    mine, params = reached(reach, "j.owner_uid", "j.project")
    join = " JOIN jobs j ON j.id = r.job_id" if mine else ""
    rows = await fetch_all(
        db,
        f"SELECT r.id FROM runs r{join} WHERE r.id >= ? AND r.id < ?{mine}"
        " ORDER BY r.id DESC LIMIT ?",
        (*ids, *params, limit),
    )
    return [(str(row["id"]), None) for row in rows]
