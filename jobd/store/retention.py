"""Pruning finished runs: the jobs that have runs to prune, their finished runs as pruning
weighs them, and the removal of a batch of runs' rows (their events and volume uses go with
them, by cascade) and metric points, each a short write. What the runs used stays charged
(use_days, gpu_hours: by day and owner, not by run). Also the metric points' share of the
database, for the data directory's footprint."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import aiosqlite

from jobd.domain.owners import Reach
from jobd.domain.retention import FinishedRun, Retention
from jobd.domain.states import TERMINAL_STATUSES
from jobd.store.rows import fetch_all, reached

POINTS_BATCH = 5000  # metric points deleted per write
METRIC_ROW_BYTES = 100  # a metric point's row and index entry, about, without dbstat
_TERMINAL = tuple(sorted(s.value for s in TERMINAL_STATUSES))
_MARKS = ", ".join("?" * len(_TERMINAL))
NO_LIMIT = 2**62
T = TypeVar("T")


def on_own_connection(path: Path, read: Callable[[sqlite3.Connection], T]) -> T:
    """`read` on a read-only connection of its own: a long read (a scan of every finished
    run, every metric page) then never holds the store's reader, which serves the API.
    Blocks: call it in a thread."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        return read(db)
    finally:
        db.close()


def jobs_to_prune(
    db: sqlite3.Connection,
    policy: Retention,
    moment: float,
    reach: Reach,
    *,
    after: str,
    limit: int,
) -> list[str]:
    """Jobs (not deleted: purging takes those whole) whose finished runs other than the
    latest are as many as keep_last, or include one finished before max_age: a superset of
    those with runs to prune. At most `limit`, by id, after `after`. A scan of the finished
    runs: call it on a connection of its own (on_own_connection)."""
    where, params = reached(reach, "r.owner_uid")
    keep = policy.keep_last or NO_LIMIT
    cutoff = moment - policy.max_age_seconds if policy.max_age_seconds else -1.0
    rows = db.execute(
        "SELECT r.job_id FROM runs r JOIN jobs j ON j.id = r.job_id"
        f" WHERE r.job_id > ? AND r.status IN ({_MARKS}) AND j.deleted_at IS NULL"
        f" AND r.id IS NOT j.latest_run_id{where}"
        " GROUP BY r.job_id HAVING COUNT(*) >= ? OR MIN(r.finished_at) < ?"
        " ORDER BY r.job_id LIMIT ?",
        (after, *_TERMINAL, *params, keep, cutoff, limit),
    ).fetchall()
    return [row[0] for row in rows]


async def finished_runs(
    db: aiosqlite.Connection, job_ids: Sequence[str]
) -> dict[str, tuple[str | None, list[FinishedRun]]]:
    """Each job's latest run and its finished runs (an array job's latest array left out:
    all of it is the job's latest run)."""
    if not job_ids:
        return {}
    marks = ", ".join("?" * len(job_ids))
    jobs = await fetch_all(
        db, f"SELECT id, latest_run_id FROM jobs WHERE id IN ({marks})", tuple(job_ids)
    )
    found: dict[str, tuple[str | None, list[FinishedRun]]] = {row[0]: (row[1], []) for row in jobs}
    rows = await fetch_all(
        db,
        "SELECT job_id, id, created_at, COALESCE(finished_at, created_at) FROM runs"
        f" WHERE job_id IN ({marks}) AND status IN ({_MARKS})"
        # the runs of a job's latest array are its latest run, as one: all kept
        " AND (array_id IS NULL"
        " OR array_id IS NOT (SELECT latest_run_id FROM jobs WHERE jobs.id = runs.job_id))",
        (*job_ids, *_TERMINAL),
    )
    for job_id, run_id, created_at, finished_at in rows:
        found[job_id][1].append(
            FinishedRun(run_id=run_id, created_at=created_at, finished_at=finished_at)
        )
    return found


def forget_points(db: sqlite3.Connection, run_ids: Sequence[str]) -> int:
    """Delete up to a batch of these runs' metric points; how many went."""
    marks = ", ".join("?" * len(run_ids))
    cursor = db.execute(
        "DELETE FROM metric_points WHERE (run_id, name, resolution, series, at) IN ("
        " SELECT run_id, name, resolution, series, at FROM metric_points"
        f" WHERE run_id IN ({marks}) LIMIT ?)",
        (*run_ids, POINTS_BATCH),
    )
    return cursor.rowcount


def remove_runs(db: sqlite3.Connection, run_ids: Sequence[str]) -> list[str]:
    """Delete these runs' rows, those still finished and not their job's latest (guarded as
    a transition is: what changed since they were chosen stays); the ids deleted."""
    marks = ", ".join("?" * len(run_ids))
    rows = db.execute(
        f"DELETE FROM runs WHERE id IN ({marks}) AND status IN ({_MARKS})"
        " AND id NOT IN (SELECT latest_run_id FROM jobs WHERE id = runs.job_id"
        " AND latest_run_id IS NOT NULL) RETURNING id",
        (*run_ids, *_TERMINAL),
    ).fetchall()
    return [row[0] for row in rows]


def metric_bytes(db: sqlite3.Connection) -> tuple[int, str]:
    """How much of the database the metric points take, and how that was reckoned: "dbstat"
    (the pages of their table and index, exactly) where SQLite has it compiled in, else
    "rows" (their count times about METRIC_ROW_BYTES). Reads every page of theirs: call it
    on a connection of its own (on_own_connection)."""
    with contextlib.suppress(sqlite3.OperationalError):
        row = db.execute(
            "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('metric_points', 'metric_points_age')"
        ).fetchone()
        return int(row[0] or 0), "dbstat"
    (count,) = db.execute("SELECT COUNT(*) FROM metric_points").fetchone()
    return int(count) * METRIC_ROW_BYTES, "rows"
