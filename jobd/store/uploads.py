"""Uploads: their records; which jobs name each as an input (written with the job, in its
transaction, so an upload a job names is never deleted or expired under it); deleting one,
and expiring those no job has named for a while."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

import aiosqlite

from jobd.domain.jobs import Job
from jobd.domain.owners import Reach
from jobd.domain.uploads import Upload
from jobd.errors import Conflict, NotFound, NotHere
from jobd.store.rows import fetch_all, fetch_one, reached, to_json


def create_upload(db: sqlite3.Connection, upload: Upload) -> None:
    db.execute(
        "INSERT INTO uploads (slug, name, size_bytes, sha256, owner, created_at, used_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            upload.slug,
            upload.name,
            upload.size_bytes,
            upload.sha256,
            to_json(upload.owner.to_api()),
            upload.created_at.timestamp(),
            upload.used_at.timestamp(),
        ),
    )


def use_inputs(db: sqlite3.Connection, job: Job) -> None:
    """In the transaction that writes `job`: the uploads it names are its inputs now (those
    it named before and no longer does start their time to expiry again). NotHere naming an
    upload that was deleted or expired since the job was checked."""
    slugs = [item.slug for item in job.spec.inputs]
    before = _inputs_of(db, job.id)
    if set(before) == set(slugs):
        return
    _touch(db, [*before, *slugs])
    db.execute("DELETE FROM job_inputs WHERE job_id = ?", (job.id,))
    for slug in slugs:
        try:
            db.execute("INSERT INTO job_inputs (job_id, slug) VALUES (?, ?)", (job.id, slug))
        except sqlite3.IntegrityError:  # the foreign key: no such upload any more
            raise NotHere(f"inputs: upload {slug} has expired or was deleted") from None


def release_inputs(db: sqlite3.Connection, job_id: str) -> None:
    """Before a deleted job's rows go: its inputs start their time to expiry again."""
    _touch(db, _inputs_of(db, job_id))


def _inputs_of(db: sqlite3.Connection, job_id: str) -> list[str]:
    return [row[0] for row in db.execute("SELECT slug FROM job_inputs WHERE job_id = ?", (job_id,))]


def _touch(db: sqlite3.Connection, slugs: Iterable[str]) -> None:
    db.executemany(
        "UPDATE uploads SET used_at = ? WHERE slug = ?", [(time.time(), s) for s in set(slugs)]
    )


def delete_upload(db: sqlite3.Connection, slug: str) -> Upload:
    """Forget the upload, unless a job names it (Conflict naming them); the upload as it
    was, for its file to be deleted."""
    row = db.execute("SELECT * FROM uploads WHERE slug = ?", (slug,)).fetchone()
    if row is None:
        raise NotFound(f"upload {slug} not found")
    jobs = [r[0] for r in db.execute("SELECT job_id FROM job_inputs WHERE slug = ?", (slug,))]
    if jobs:
        shown = ", ".join(jobs[:5]) + (f" and {len(jobs) - 5} more" if len(jobs) > 5 else "")
        raise Conflict(f"upload {slug} is an input of {shown}; delete or change those first")
    db.execute("DELETE FROM uploads WHERE slug = ?", (slug,))
    return Upload.from_row(row)


def expire_uploads(db: sqlite3.Connection, used_before: float) -> list[Upload]:
    """Forget the uploads no job names that were last used before `used_before`."""
    rows = db.execute(
        "SELECT * FROM uploads u WHERE used_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM job_inputs i WHERE i.slug = u.slug)",
        (used_before,),
    ).fetchall()
    db.executemany("DELETE FROM uploads WHERE slug = ?", [(row["slug"],) for row in rows])
    return [Upload.from_row(row) for row in rows]


# -- reads ------------------------------------------------------------------------------------


async def get_uploads(
    db: aiosqlite.Connection, slugs: list[str], reach: Reach
) -> dict[str, Upload]:
    if not slugs:
        return {}
    marks = ", ".join("?" * len(slugs))
    mine, uid = reached(reach)
    rows = await fetch_all(
        db, f"SELECT * FROM uploads WHERE slug IN ({marks}){mine}", (*slugs, *uid)
    )
    return {row["slug"]: Upload.from_row(row) for row in rows}


async def get_upload(db: aiosqlite.Connection, slug: str, reach: Reach) -> Upload:
    mine, uid = reached(reach)
    row = await fetch_one(db, f"SELECT * FROM uploads WHERE slug = ?{mine}", (slug, *uid))
    if row is None:
        raise NotFound(f"upload {slug} not found")
    return Upload.from_row(row)


async def list_uploads(db: aiosqlite.Connection, sha256: str | None, reach: Reach) -> list[Upload]:
    """Every upload, oldest first; or those of this content."""
    mine, uid = reached(reach)
    content, digest = (" AND sha256 = ?", (sha256,)) if sha256 is not None else ("", ())
    rows = await fetch_all(
        db,
        f"SELECT * FROM uploads WHERE 1{content}{mine} ORDER BY created_at, slug",
        (*digest, *uid),
    )
    return [Upload.from_row(row) for row in rows]


async def upload_users(db: aiosqlite.Connection, slugs: list[str]) -> dict[str, list[str]]:
    """The jobs naming each of these uploads as an input."""
    if not slugs:
        return {}
    marks = ", ".join("?" * len(slugs))
    rows = await fetch_all(
        db,
        f"SELECT slug, job_id FROM job_inputs WHERE slug IN ({marks}) ORDER BY job_id",
        tuple(slugs),
    )
    found: dict[str, list[str]] = {slug: [] for slug in slugs}
    for row in rows:
        found[row["slug"]].append(row["job_id"])
    return found


async def upload_keys(db: aiosqlite.Connection) -> list[tuple[str, str]]:
    """Every recorded upload's (slug, sha256)."""
    rows = await fetch_all(db, "SELECT slug, sha256 FROM uploads", ())
    return [(row["slug"], row["sha256"]) for row in rows]
