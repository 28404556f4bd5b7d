"""Jobs: creating, updating, deleting and purging them, and the reads of jobs and their labels."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import aiosqlite

from jobd.domain.jobs import Job, JobFilter
from jobd.domain.owners import Reach
from jobd.domain.records import now
from jobd.domain.runs import Run
from jobd.domain.states import ACTIVE_STATUSES, Failure, FailureType, RunStatus
from jobd.errors import NotFound
from jobd.store.metrics import forget_job
from jobd.store.rows import Page, decode_cursor, fetch_all, fetch_one, page_cursor, reached, to_json
from jobd.store.runs import column_changes, insert_run, transition
from jobd.store.uploads import release_inputs, use_inputs

# the job's columns that an update may change, in this order (see _editable_values)
_EDITABLE = (
    "name",
    "image",
    "command",
    "env",
    "plan",
    "timeout_seconds",
    "network",
    "labels",
    "retry",
    "schedule",
    "timezone",
    "concurrency_policy",
    "catch_up",
    "suspended",
    "image_digest",
    "kind",
    "ports",
    "resources",
    "priority",
    "max_pending_seconds",
    "volumes",
    "working_dir",
    "run_as",
    "output_limit_bytes",
    "inputs",
    "secret_env",
    "array",
    "ssh_keys",
    "allowed_ips",
)
_JOB_COLUMNS = (
    "id",
    *_EDITABLE,
    "owner",
    "created_at",
    "latest_run_id",
    "status",
    "next_fire_at",
    "recipe",
    "requested",
    "project",
)
_INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))})"
)
_UPDATE_JOB = (
    f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in _EDITABLE)}"
    " WHERE id = ? AND deleted_at IS NULL"
)


def _editable_values(job: Job) -> tuple[Any, ...]:
    schedule = job.schedule
    return (
        job.name,
        job.spec.image,
        to_json(list(job.spec.command)),
        to_json(dict(job.spec.env)),
        job.spec.plan,
        job.spec.timeout_seconds,
        job.spec.network,
        to_json(dict(job.labels)),
        to_json(job.spec.retry.to_api()) if job.spec.retry else None,
        schedule.cron if schedule else None,
        schedule.timezone if schedule else None,
        schedule.concurrency_policy.value if schedule else None,
        schedule.catch_up.value if schedule else None,
        int(schedule.suspended) if schedule else 0,
        job.spec.image_digest,
        job.spec.kind.value,
        to_json(list(job.spec.ports)) if job.spec.ports else None,
        to_json(dict(job.spec.resources)) if job.spec.resources else None,
        job.spec.priority,
        job.spec.max_pending_seconds,
        to_json([v.to_api() for v in job.spec.volumes]) if job.spec.volumes else None,
        job.spec.working_dir,
        job.spec.user,
        job.spec.output_limit_bytes,
        to_json([i.to_api() for i in job.spec.inputs]) if job.spec.inputs else None,
        to_json(dict(job.spec.secret_env)) if job.spec.secret_env else None,
        to_json(job.spec.array.to_api()) if job.spec.array else None,
        to_json(list(job.spec.ssh_keys)) if job.spec.ssh_keys else None,
        to_json(list(job.spec.allowed_ips)) if job.spec.allowed_ips is not None else None,
    )


def create_job(db: sqlite3.Connection, job: Job, runs: Sequence[Run]) -> None:
    db.execute(
        _INSERT_JOB,
        (
            job.id,
            *_editable_values(job),
            to_json(job.owner.to_api()),
            job.created_at.timestamp(),
            runs[0].id if runs else None,
            runs[0].status.value if runs else None,
            job.next_fire_at.timestamp() if job.next_fire_at else None,
            job.recipe,
            to_json(dict(job.requested)) if job.requested is not None else None,
            job.project,
        ),
    )
    _insert_labels(db, job)
    use_inputs(db, job)
    for run in runs:
        insert_run(db, run)


def _insert_labels(db: sqlite3.Connection, job: Job) -> None:
    if job.labels:
        db.executemany(
            "INSERT INTO job_labels (job_id, key, value, created_at) VALUES (?, ?, ?, ?)",
            [(job.id, k, v, job.created_at.timestamp()) for k, v in job.labels.items()],
        )


def delete_job(db: sqlite3.Connection, job_id: str) -> list[Run]:
    cursor = db.execute(
        "UPDATE jobs SET deleted_at = ?, next_fire_at = NULL WHERE id = ? AND deleted_at IS NULL",
        (time.time(), job_id),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"job {job_id} not found")
    return cancel_job_runs(db, job_id, "its job was deleted")


def cancel_job(db: sqlite3.Connection, job_id: str, grace: int | None) -> list[str]:
    """Cancel the job's pending, assigned and running runs (cancel_job_runs), each stop with
    `grace` when it is given; the ids of the runs it cancelled."""
    if db.execute(_LIVE_JOB, (job_id,)).fetchone() is None:
        raise NotFound(f"job {job_id} not found")
    ids = [row["id"] for row in _cancellable(db, job_id)]
    cancel_job_runs(db, job_id, "its job was cancelled", grace)
    return ids


_LIVE_JOB = "SELECT 1 FROM jobs WHERE id = ? AND deleted_at IS NULL"


def _cancellable(db: sqlite3.Connection, job_id: str) -> list[sqlite3.Row]:
    return db.execute(
        "SELECT id, status FROM runs WHERE job_id = ? AND status IN (?, ?, ?)",
        (job_id, RunStatus.PENDING.value, RunStatus.ASSIGNED.value, RunStatus.RUNNING.value),
    ).fetchall()


def cancel_job_runs(
    db: sqlite3.Connection, job_id: str, why: str, grace: int | None = None
) -> list[Run]:
    """End the job's pending runs cancelled and move its assigned and running ones to
    cancelling (with `grace` as their stop's, when given); the latter are returned, for the
    supervisor to stop."""
    rows = _cancellable(db, job_id)
    stopping: list[Run] = []
    grace_set, grace_values = column_changes({} if grace is None else {"stop_grace_seconds": grace})
    for row in rows:
        if row["status"] == RunStatus.PENDING.value:
            message = f"{why} before it started"
            failure = Failure(type=FailureType.CANCELLED, message=message)
            assignments, values = column_changes({"finished_at": now(), "failure": failure})
            pending = [RunStatus.PENDING.value]
            transition(db, row["id"], RunStatus.CANCELLED, pending, assignments, values, message)
            continue
        run = transition(
            db, row["id"], RunStatus.CANCELLING, [row["status"]], grace_set, grace_values, why
        )
        if run is not None:
            stopping.append(run)
    return stopping


def purge_job(db: sqlite3.Connection, job_id: str) -> bool:
    marks = ", ".join("?" * len(ACTIVE_STATUSES))
    active = db.execute(
        f"SELECT 1 FROM runs WHERE job_id = ? AND status IN ({marks})",
        (job_id, *(s.value for s in ACTIVE_STATUSES)),
    ).fetchone()
    if active is not None:
        return False
    release_inputs(db, job_id)
    forget_job(db, job_id)
    cursor = db.execute("DELETE FROM jobs WHERE id = ? AND deleted_at IS NOT NULL", (job_id,))
    return cursor.rowcount > 0


def update_job(db: sqlite3.Connection, job: Job, reschedule: bool) -> Job:
    """Write the job's name, spec, labels and schedule as given (its id, owner and runs
    stay); its next fire time only with `reschedule`, so that an update racing a tick does
    not take the tick back."""
    cursor = db.execute(_UPDATE_JOB, (*_editable_values(job), job.id))
    if cursor.rowcount == 0:
        raise NotFound(f"job {job.id} not found")
    if reschedule:
        next_fire = job.next_fire_at.timestamp() if job.next_fire_at else None
        db.execute("UPDATE jobs SET next_fire_at = ? WHERE id = ?", (next_fire, job.id))
    db.execute("DELETE FROM job_labels WHERE job_id = ?", (job.id,))
    _insert_labels(db, job)
    use_inputs(db, job)
    return Job.from_row(db.execute("SELECT * FROM jobs WHERE id = ?", (job.id,)).fetchone())


def jobs_query(where: JobFilter, cursor: str | None) -> tuple[str, list[Any]]:
    """The jobs matching `where`, newest first, after `cursor`. With a label filter the walk
    starts from the first label's rows (job_labels carries each job's creation time), so a
    rare label reads its own few rows, not every job."""
    labels = list(where.labels.items())
    if labels:
        source = "job_labels l JOIN jobs j ON j.id = l.job_id"
        created, key = "l.created_at", "l.job_id"
        (first_key, first_value), labels = labels[0], labels[1:]
        clauses = ["l.key = ?", "l.value = ?"]
        params: list[Any] = [first_key, first_value]
    else:
        source, created, key = "jobs j", "j.created_at", "j.id"
        clauses, params = [], []
    clauses.append("j.deleted_at IS NULL")
    _whose(where, clauses, params)
    if where.scheduled:
        clauses.append("j.schedule IS NOT NULL")
    if where.status is not None:
        clauses.append("j.status = ?")
        params.append(where.status.value)
    for label_key, value in labels:
        clauses.append(
            "EXISTS (SELECT 1 FROM job_labels o"
            " WHERE o.job_id = j.id AND o.key = ? AND o.value = ?)"
        )
        params += [label_key, value]
    _matching(where, clauses, params)
    if where.created_after is not None:
        clauses.append(f"{created} >= ?")
        params.append(where.created_after.timestamp())
    if where.created_before is not None:
        clauses.append(f"{created} < ?")
        params.append(where.created_before.timestamp())
    if cursor:
        clauses.append(f"({created}, {key}) < (?, ?)")  # a row value: an index SEARCH
        params += list(decode_cursor(cursor))
    sql = f"SELECT j.* FROM {source}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return sql + f" ORDER BY {created} DESC, {key} DESC LIMIT ?", params


def _matching(where: JobFilter, clauses: list[str], params: list[Any]) -> None:
    """Add the clauses of a name, an owner and a search (a walk newest first that stops at
    a page: no index serves a substring)."""
    if where.name is not None:
        clauses.append("j.name = ?")
        params.append(where.name)
    if where.owner_uid is not None:
        clauses.append("j.owner_uid = ?")
        params.append(where.owner_uid)
    if where.search:
        escaped = where.search.translate({ord(c): "\\" + c for c in "\\%_"})
        pattern = f"%{escaped}%"
        clauses.append(
            "(j.id LIKE ? ESCAPE '\\' OR j.name LIKE ? ESCAPE '\\' OR j.image LIKE ? ESCAPE '\\')"
        )
        params += [pattern] * 3


def _whose(where: JobFilter, clauses: list[str], params: list[Any]) -> None:
    """Add the clauses that keep the jobs `where` reaches, of its project if it names one."""
    mine, uid = reached(where.reach, "j.owner_uid", "j.project")
    if mine:
        clauses.append(mine.removeprefix(" AND "))
        params += uid
    if where.project is not None:
        clauses.append("j.project = ?")
        params.append(where.project)


# -- reads ------------------------------------------------------------------------------------


async def get_job(db: aiosqlite.Connection, job_id: str, reach: Reach) -> Job:
    mine, uid = reached(reach, project="project")
    row = await fetch_one(
        db, f"SELECT * FROM jobs WHERE id = ? AND deleted_at IS NULL{mine}", (job_id, *uid)
    )
    if row is None:
        raise NotFound(f"job {job_id} not found")
    return Job.from_row(row)


async def list_jobs(
    db: aiosqlite.Connection, where: JobFilter, *, limit: int, cursor: str | None
) -> Page[Job]:
    sql, params = jobs_query(where, cursor)
    rows = await fetch_all(db, sql, (*params, limit + 1))
    jobs = [Job.from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(items=jobs, next_cursor=page_cursor(jobs[-1]) if more and jobs else None)


async def deleted_jobs(db: aiosqlite.Connection) -> dict[str, list[Run]]:
    # the few deleted jobs first, then their runs: the planner would scan every run instead
    rows = await fetch_all(
        db,
        "SELECT r.* FROM jobs j INDEXED BY jobs_deleted CROSS JOIN runs r ON r.job_id = j.id"
        " WHERE j.deleted_at IS NOT NULL",
        (),
    )
    jobs = await fetch_all(db, "SELECT id FROM jobs WHERE deleted_at IS NOT NULL", ())
    found: dict[str, list[Run]] = {row["id"]: [] for row in jobs}
    for row in rows:
        found[row["job_id"]].append(Run.from_row(row))
    return found


async def run_counts(db: aiosqlite.Connection, job_id: str) -> dict[str, int]:
    rows = await fetch_all(
        db, "SELECT status, COUNT(*) AS n FROM runs WHERE job_id = ? GROUP BY status", (job_id,)
    )
    return {row["status"]: row["n"] for row in rows}
