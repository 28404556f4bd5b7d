"""Runs and their events: creating runs, the guarded transition every state change goes
through (with the retry a failure may queue, in the same transaction), facts recorded about a
run, and the reads of runs and their events."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from jobd.domain.jobs import Job, Kind
from jobd.domain.outputs import OutputSummary
from jobd.domain.owners import Reach
from jobd.domain.progress import Progress
from jobd.domain.records import now
from jobd.domain.resources import Allocation, Limits
from jobd.domain.runs import Run, next_attempt
from jobd.domain.ssh import SshEndpoint
from jobd.domain.states import Failure, RunStatus, StopReason, Trigger
from jobd.errors import NotFound, StoreError
from jobd.store import use, workflows
from jobd.store.rows import (
    Page,
    decode_cursor,
    fetch_all,
    fetch_one,
    page_cursor,
    reached,
    to_json,
)
from jobd.store.volumes import use_volumes

RUN_COLUMNS = {
    "started_at",
    "finished_at",
    "deadline_at",
    "exit_code",
    "limits",
    "stop_reason",
    "container_id",
    "failure",
    "endpoints",
    "allocation",
    "gpu_peak_bytes",
    "stop_grace_seconds",
    "outputs",
    "pending_until",
    "ssh",
}


def add_runs(db: sqlite3.Connection, submission: Sequence[Run]) -> None:
    """One submission of a job: a run, or an array's runs (the first is the job's latest)."""
    job_id = submission[0].job_id
    exists = "SELECT 1 FROM jobs WHERE id = ? AND deleted_at IS NULL"
    if db.execute(exists, (job_id,)).fetchone() is None:
        raise NotFound(f"job {job_id} not found")
    for run in submission:
        insert_run(db, run)
    make_latest(db, submission[0])


def insert_run(db: sqlite3.Connection, run: Run, detail: str = "created") -> None:
    db.execute(
        "INSERT INTO runs (id, job_id, status, plan, timeout_seconds, created_at, spec,"
        " trigger, attempt, scheduled_for, not_before, priority, pending_until, held, array_id,"
        " array_index, kind, owner_uid, project)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, owner_uid, project"
        " FROM jobs WHERE id = ?",
        (
            run.id,
            run.job_id,
            run.status.value,
            to_json(run.plan.to_api()),
            run.timeout_seconds,
            run.created_at.timestamp(),
            to_json(run.spec.to_record()) if run.spec else None,
            run.trigger.value,
            run.attempt,
            run.scheduled_for.timestamp() if run.scheduled_for else None,
            run.not_before.timestamp() if run.not_before else None,
            run.priority,
            None if run.held else _maybe_timestamp(run.pending_until),
            run.held.value if run.held else None,
            run.array_id,
            run.array_index,
            run.spec.kind.value if run.spec else Kind.BATCH.value,
            run.job_id,
        ),
    )
    db.execute(
        "INSERT INTO run_events (run_id, at, from_status, to_status, detail)"
        " VALUES (?, ?, NULL, ?, ?)",
        (run.id, run.created_at.timestamp(), run.status.value, detail),
    )
    use_volumes(db, run)


def _maybe_timestamp(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment else None


def make_latest(db: sqlite3.Connection, run: Run) -> None:
    db.execute(
        "UPDATE jobs SET latest_run_id = ?, status = ? WHERE id = ?",
        (run.id, run.status.value, run.job_id),
    )


def transition(
    db: sqlite3.Connection,
    run_id: str,
    to: RunStatus,
    sources: list[str],
    assignments: str,
    values: list[Any],
    detail: str | None,
) -> Run | None:
    row = db.execute("SELECT status, job_id FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    marks = ", ".join("?" * len(sources))
    cursor = db.execute(
        f"UPDATE runs SET status = ?{assignments} WHERE id = ? AND status IN ({marks})",
        (to.value, *values, run_id, *sources),
    )
    if cursor.rowcount == 0:
        return None
    db.execute(
        "INSERT INTO run_events (run_id, at, from_status, to_status, detail)"
        " VALUES (?, ?, ?, ?, ?)",
        (run_id, time.time(), row["status"], to.value, detail),
    )
    updated = Run.from_row(db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())
    if to.is_terminal:
        use.charge(db, updated)  # with the end: a crash never loses nor repeats the charge
    if to is RunStatus.FAILED:
        updated = _retry(db, updated)
    if to.is_terminal:  # what waited on it, in the same transaction
        workflows.after_end(db, updated)
    _job_status(db, updated, to)
    return updated


def _job_status(db: sqlite3.Connection, run: Run, to: RunStatus) -> None:
    """The job shows its latest run's status; an array's, its runs' as one."""
    latest = run.array_id or run.id
    status = workflows.array_status(db, run.array_id) if run.array_id else to
    db.execute(
        "UPDATE jobs SET status = ? WHERE id = ? AND latest_run_id = ?",
        (status.value, run.job_id, latest),
    )


def _retry(db: sqlite3.Connection, run: Run) -> Run:
    """In the transaction that failed `run`: queue its next attempt when its retry policy
    asks for one, so that a crash never loses the retry nor makes two."""
    job_row = db.execute(
        "SELECT * FROM jobs WHERE id = ? AND deleted_at IS NULL", (run.job_id,)
    ).fetchone()
    if job_row is None:
        return run
    moment = now()
    attempt = next_attempt(run, run.spec or Job.from_row(job_row).spec, moment)
    if attempt is None:
        return run
    wait = (attempt.not_before or moment) - moment
    what = "restart" if attempt.trigger is Trigger.RESTART else "retry"
    insert_run(
        db, attempt, f"{what} of {run.id} (attempt {attempt.attempt}), after {wait.seconds}s"
    )
    if attempt.array_id is None:  # an array's latest run stays its first: the array's id
        make_latest(db, attempt)
    db.execute("UPDATE runs SET retried_by = ? WHERE id = ?", (attempt.id, run.id))
    return run.with_changes(retried_by=attempt.id)


def update_run(
    db: sqlite3.Connection,
    run_id: str,
    statuses: list[str] | None,
    assignments: str,
    values: list[Any],
    detail: str,
) -> bool:
    guard = "" if statuses is None else f" AND status IN ({', '.join('?' * len(statuses))})"
    cursor = db.execute(
        f"UPDATE runs SET id = id{assignments} WHERE id = ?{guard}",
        (*values, run_id, *(statuses or [])),
    )
    if cursor.rowcount == 0:
        return False
    db.execute(
        "INSERT INTO run_events (run_id, at, from_status, to_status, detail)"
        " SELECT id, ?, status, status, ? FROM runs WHERE id = ?",
        (time.time(), detail, run_id),
    )
    return True


async def _fetch_run(db: aiosqlite.Connection, run_id: str) -> Run | None:
    row = await fetch_one(db, "SELECT * FROM runs WHERE id = ?", (run_id,))
    return Run.from_row(row) if row else None


def column_changes(changes: Mapping[str, Any]) -> tuple[str, list[Any]]:
    unknown = set(changes) - RUN_COLUMNS
    if unknown:
        raise StoreError(f"not run columns: {sorted(unknown)}")
    parts: list[str] = []
    values: list[Any] = []
    for name, value in changes.items():
        if name == "failure":
            parts += ["failure_type = ?", "failure_message = ?"]
            values += _failure_values(value)
            continue
        parts.append(f"{name} = ?")
        values.append(_column_value(value))
    return "".join(f", {p}" for p in parts), values


def _failure_values(failure: Failure | None) -> list[Any]:
    return [failure.type.value, failure.message] if failure else [None, None]


def _column_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, Limits | Allocation):
        return to_json(value.to_api())
    if isinstance(value, OutputSummary | SshEndpoint):
        return to_json(value.to_record())
    if isinstance(value, StopReason):
        return value.value
    if isinstance(value, dict):
        return to_json({str(k): v for k, v in value.items()})
    return value


def record_outputs(db: sqlite3.Connection, run_id: str, summary: OutputSummary) -> None:
    db.execute("UPDATE runs SET outputs = ? WHERE id = ?", (to_json(summary.to_record()), run_id))


def record_progress(db: sqlite3.Connection, progress: Mapping[str, Progress]) -> None:
    db.executemany(
        "UPDATE runs SET progress = ? WHERE id = ?",
        [(to_json(p.to_record()), run_id) for run_id, p in progress.items()],
    )


def record_gpu_peak(db: sqlite3.Connection, run_id: str, peak: int) -> None:
    db.execute(
        "UPDATE runs SET gpu_peak_bytes = MAX(COALESCE(gpu_peak_bytes, 0), ?) WHERE id = ?",
        (peak, run_id),
    )


# -- reads ------------------------------------------------------------------------------------


async def get_run(db: aiosqlite.Connection, run_id: str, reach: Reach) -> Run:
    if reach.everyone:
        run = await _fetch_run(db, run_id)
    else:  # the run's job is the caller's, or one of the caller's projects'
        mine, uid = reached(reach, "j.owner_uid", "j.project")
        row = await fetch_one(
            db,
            f"SELECT r.* FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = ?{mine}",
            (run_id, *uid),
        )
        run = Run.from_row(row) if row is not None else None
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


async def get_runs(db: aiosqlite.Connection, run_ids: Iterable[str]) -> dict[str, Run]:
    ids = list(run_ids)
    if not ids:
        return {}
    marks = ", ".join("?" * len(ids))
    rows = await fetch_all(db, f"SELECT * FROM runs WHERE id IN ({marks})", ids)
    return {row["id"]: Run.from_row(row) for row in rows}


async def runs_with_status(db: aiosqlite.Connection, statuses: Iterable[RunStatus]) -> list[Run]:
    values = [s.value for s in statuses]
    marks = ", ".join("?" * len(values))
    rows = await fetch_all(
        db, f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY created_at, id", values
    )
    return [Run.from_row(row) for row in rows]


async def list_runs(
    db: aiosqlite.Connection, job_id: str, *, limit: int, cursor: str | None
) -> Page[Run]:
    params: list[Any] = [job_id]
    sql = "SELECT * FROM runs WHERE job_id = ?"
    if cursor:
        created, last_id = decode_cursor(cursor)
        sql += " AND (created_at, id) < (?, ?)"
        params += [created, last_id]
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    rows = await fetch_all(db, sql, (*params, limit + 1))
    runs = [Run.from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(items=runs, next_cursor=page_cursor(runs[-1]) if more and runs else None)


async def runs_in_window(
    db: aiosqlite.Connection, job_id: str, *, since: datetime | None, until: datetime | None
) -> list[Run]:
    sql = "SELECT * FROM runs WHERE job_id = ?"
    params: list[Any] = [job_id]
    if until is not None:
        sql += " AND created_at < ?"
        params.append(until.timestamp())
    if since is not None:
        sql += " AND (finished_at IS NULL OR finished_at >= ?)"
        params.append(since.timestamp())
    rows = await fetch_all(db, sql + " ORDER BY created_at, id", params)
    return [Run.from_row(row) for row in rows]


async def count_by_status(db: aiosqlite.Connection) -> dict[str, int]:
    """How many runs are in each status (a walk of the status index)."""
    rows = await fetch_all(db, "SELECT status, COUNT(*) FROM runs GROUP BY status", ())
    return {status: count for status, count in rows}


async def run_events(db: aiosqlite.Connection, run_id: str) -> list[dict[str, Any]]:
    rows = await fetch_all(
        db,
        "SELECT at, from_status, to_status, detail FROM run_events WHERE run_id = ? ORDER BY id",
        (run_id,),
    )
    return [dict(row) for row in rows]
