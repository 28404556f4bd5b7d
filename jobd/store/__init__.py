"""The embedded store: jobs, runs and run events in one SQLite file (WAL mode).

Every run state change goes through `transition`: a guarded `UPDATE ... WHERE status IN (...)`
plus an event row, in one transaction. Zero rows changed means the transition was illegal
(another writer got there first), which is what makes cancel-vs-exit races and restarts safe.
Writes go to one connection, each a function of it that runs whole, committed in groups on the
event loop (jobd/writer.py says why); reads use a second connection on a thread (aiosqlite;
WAL lets them run beside a write).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiosqlite
import orjson

from jobd.errors import Conflict, InvalidRequest, NotFound, StoreError
from jobd.models import (
    ACTIVE_STATUSES,
    Allocation,
    CatchUp,
    ConcurrencyPolicy,
    Failure,
    FailureType,
    Job,
    JobSpec,
    Limits,
    Plan,
    Recipe,
    Run,
    RunStatus,
    StopReason,
    Tick,
    Trigger,
    maybe_epoch,
    next_attempt,
    now,
    pending_run,
    rfc3339,
    sources_of,
)
from jobd.placement import Decision
from jobd.writer import Writer

T = TypeVar("T")
Choose = Callable[[Iterator[Run], list[Run]], Decision]  # (queue, active runs) -> to start
PlanLookup = Callable[[JobSpec], Plan | None]  # what a job's runs get now; None: can't run
FIRST_PAGE = 4  # usually the head does not fit: read little to find that out
QUEUE_PAGE = 64
_IN_FLIGHT = tuple(s.value for s in (RunStatus.PENDING, *sorted(ACTIVE_STATUSES)))
_IN_FLIGHT_MARKS = ", ".join("?" * len(_IN_FLIGHT))

# Each entry migrates the schema from version N to N+1. Never edit a released entry: append.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        name TEXT,
        image TEXT NOT NULL,
        command TEXT NOT NULL,
        env TEXT NOT NULL,
        plan TEXT NOT NULL,
        timeout_seconds INTEGER NOT NULL,
        network TEXT NOT NULL,
        labels TEXT NOT NULL,
        owner TEXT NOT NULL,
        created_at REAL NOT NULL,
        latest_run_id TEXT,
        status TEXT
    );
    CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
    CREATE INDEX jobs_status_created ON jobs (status, created_at DESC, id DESC);
    CREATE TABLE job_labels (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (job_id, key)
    );
    CREATE INDEX job_labels_kv ON job_labels (key, value);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        status TEXT NOT NULL,
        plan TEXT NOT NULL,
        timeout_seconds INTEGER NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        deadline_at REAL,
        exit_code INTEGER,
        failure_type TEXT,
        failure_message TEXT,
        limits TEXT,
        stop_reason TEXT,
        container_id TEXT
    );
    CREATE INDEX runs_job_created ON runs (job_id, created_at DESC, id DESC);
    CREATE INDEX runs_status_created ON runs (status, created_at, id);
    CREATE TABLE run_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        at REAL NOT NULL,
        from_status TEXT,
        to_status TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX run_events_run ON run_events (run_id, id);
    """,
    # A label filter walks the matching labels newest first and stops at a page, instead of
    # walking every job newest first and probing its labels (a rare label took 200 ms).
    """
    ALTER TABLE job_labels ADD COLUMN created_at REAL NOT NULL DEFAULT 0;
    UPDATE job_labels SET created_at = (SELECT created_at FROM jobs WHERE id = job_id);
    DROP INDEX job_labels_kv;
    CREATE INDEX job_labels_kv_created
        ON job_labels (key, value, created_at DESC, job_id DESC);
    """,
    # each run keeps what it executes (JSON of JobSpec.to_record), so updating a job changes
    # only the runs created after; NULL for older runs, which run their job's spec
    """
    ALTER TABLE runs ADD COLUMN spec TEXT;
    """,
    # a deleted job is hidden at once and purged (rows, logs, containers) once none of its
    # runs is active any more
    """
    ALTER TABLE jobs ADD COLUMN deleted_at REAL;
    CREATE INDEX jobs_deleted ON jobs (deleted_at) WHERE deleted_at IS NOT NULL;
    """,
    # cron schedules and retries. A schedule's next tick and the run a tick starts are
    # written in one transaction, and a tick has at most one run (runs_job_tick): a crash
    # never fires a tick twice.
    """
    ALTER TABLE jobs ADD COLUMN retry TEXT;
    ALTER TABLE jobs ADD COLUMN schedule TEXT;
    ALTER TABLE jobs ADD COLUMN timezone TEXT;
    ALTER TABLE jobs ADD COLUMN concurrency_policy TEXT;
    ALTER TABLE jobs ADD COLUMN catch_up TEXT;
    ALTER TABLE jobs ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN next_fire_at REAL;
    ALTER TABLE jobs ADD COLUMN last_tick TEXT;
    CREATE INDEX jobs_next_fire ON jobs (next_fire_at) WHERE next_fire_at IS NOT NULL;
    CREATE INDEX jobs_scheduled ON jobs (created_at DESC, id DESC) WHERE schedule IS NOT NULL;
    ALTER TABLE runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'api';
    ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE runs ADD COLUMN scheduled_for REAL;
    ALTER TABLE runs ADD COLUMN not_before REAL;
    ALTER TABLE runs ADD COLUMN retried_by TEXT;
    CREATE UNIQUE INDEX runs_job_tick ON runs (job_id, scheduled_for)
        WHERE scheduled_for IS NOT NULL;
    CREATE INDEX runs_waiting ON runs (not_before)
        WHERE status = 'pending' AND not_before IS NOT NULL;
    """,
    # recipes; a job keeps the request that created it and, when made of a recipe, the
    # recipe's name and the image pinned to its digest
    """
    CREATE TABLE recipes (
        name TEXT PRIMARY KEY,
        description TEXT,
        config TEXT NOT NULL,
        owner TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    ALTER TABLE jobs ADD COLUMN recipe TEXT;
    ALTER TABLE jobs ADD COLUMN requested TEXT;
    ALTER TABLE jobs ADD COLUMN image_digest TEXT;
    """,
    # batch or persistent
    """
    ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'batch';
    """,
    # published ports: what a job asks for, where each run's listen
    """
    ALTER TABLE jobs ADD COLUMN ports TEXT;
    ALTER TABLE runs ADD COLUMN endpoints TEXT;
    """,
    # hardware-aware placement: explicit requirements, priorities and pending limits; what
    # each run was given (GPUs, cores) and its peak GPU memory. The queue is walked in
    # priority order, then oldest first, from its own index.
    """
    ALTER TABLE jobs ADD COLUMN resources TEXT;
    ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN max_pending_seconds INTEGER;
    ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN pending_until REAL;
    ALTER TABLE runs ADD COLUMN allocation TEXT;
    ALTER TABLE runs ADD COLUMN gpu_peak_bytes INTEGER;
    CREATE INDEX runs_queue ON runs (priority DESC, created_at, id) WHERE status = 'pending';
    CREATE INDEX runs_pending_until ON runs (pending_until)
        WHERE status = 'pending' AND pending_until IS NOT NULL;
    """,
)

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
    "pending_until",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    status: RunStatus | None = None
    scheduled: bool = False  # only jobs with a schedule
    labels: Mapping[str, str] = field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    assigned: list[Run]  # moved to assigned by the pass, in queue order
    waiting: dict[str, str]  # why the queued runs the pass looked at wait
    truncated: bool = False  # it stopped short of the queue's end with room left
    seconds: float  # the pass's own time in the writer: its reads, decision and writes


@dataclass(frozen=True, slots=True, kw_only=True)
class Firings:
    """What one pass over the due schedules did."""

    started: list[Run] = field(default_factory=list)  # new runs, pending
    stopping: list[Run] = field(default_factory=list)  # runs a replace moved to cancelling


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


class Store:
    def __init__(self, writer: Writer, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await Writer.open(path, _prepare)
        try:
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()

    # -- jobs and runs: creation ------------------------------------------------------------

    async def create_job(self, job: Job, run: Run | None) -> None:
        """Record a new job and its first run (none for a scheduled job: its ticks make them)."""
        await self._writer.write(lambda db: _create_job(db, job, run))

    async def add_run(self, run: Run) -> None:
        await self._writer.write(lambda db: _add_run(db, run))

    async def delete_job(self, job_id: str) -> list[Run]:
        """Mark the job deleted (it is hidden from now on) and end or cancel its runs: the
        pending ones end cancelled, the active ones become cancelling. Returns the runs that
        are cancelling, for the supervisor to stop. The rows go with purge_job."""
        return await self._writer.write(lambda db: _delete_job(db, job_id))

    async def deleted_jobs(self) -> dict[str, list[Run]]:
        """The deleted jobs not purged yet, each with its runs."""
        rows = await _all(
            self._reader,
            "SELECT r.* FROM jobs j JOIN runs r ON r.job_id = j.id WHERE j.deleted_at IS NOT NULL",
            (),
        )
        jobs = await _all(self._reader, "SELECT id FROM jobs WHERE deleted_at IS NOT NULL", ())
        found: dict[str, list[Run]] = {row["id"]: [] for row in jobs}
        for row in rows:
            found[row["job_id"]].append(Run.from_row(row))
        return found

    async def purge_job(self, job_id: str) -> bool:
        """Remove a deleted job's rows (its runs, events and labels go with it), if none of
        its runs is active. Whether it was removed."""
        return await self._writer.write(lambda db: _purge_job(db, job_id))

    async def update_job(self, job: Job, *, reschedule: bool) -> Job:
        """Replace the job's name, spec, labels and schedule with `job`'s, and with
        `reschedule` its next fire time too; the job as written."""
        return await self._writer.write(lambda db: _update_job(db, job, reschedule))

    async def fire_schedules(self, moment: datetime, plans: PlanLookup) -> Firings:
        """Fire every schedule due at `moment`: at most one run per job, whatever was missed;
        each run and its job's next fire time are written together. `plans` gives the plan
        a job's runs get now (None: it is gone from the configuration)."""
        return await self._writer.write(lambda db: _fire_schedules(db, moment, plans))

    async def next_timer(self, moment: datetime) -> datetime | None:
        """The soonest moment after `moment` when something time-driven is due: a schedule's
        tick, the end of a retry's backoff, or a queued run's pending limit."""
        row = await _one(
            self._reader,
            "SELECT MIN(t) AS t FROM ("
            " SELECT MIN(next_fire_at) AS t FROM jobs WHERE next_fire_at IS NOT NULL"
            " UNION ALL SELECT MIN(not_before) FROM runs"
            " WHERE status = 'pending' AND not_before IS NOT NULL AND not_before > ?"
            " UNION ALL SELECT MIN(pending_until) FROM runs"
            " WHERE status = 'pending' AND pending_until IS NOT NULL)",
            (moment.timestamp(),),
        )
        return maybe_epoch(row["t"]) if row else None

    async def run_counts(self, job_id: str) -> dict[str, int]:
        """How many of the job's runs are in each status."""
        rows = await _all(
            self._reader,
            "SELECT status, COUNT(*) AS n FROM runs WHERE job_id = ? GROUP BY status",
            (job_id,),
        )
        return {row["status"]: row["n"] for row in rows}

    # -- recipes --------------------------------------------------------------------------

    async def put_recipe(self, recipe: Recipe, *, replace: bool) -> tuple[Recipe, bool]:
        """Create the recipe, or with `replace` create or replace it (keeping its creation
        time and owner). A new one whose name is taken is a Conflict. The recipe as written,
        and whether it was created."""
        return await self._writer.write(lambda db: _put_recipe(db, recipe, replace))

    async def update_recipe(self, recipe: Recipe) -> Recipe:
        return await self._writer.write(lambda db: _update_recipe(db, recipe))

    async def delete_recipe(self, name: str) -> None:
        await self._writer.write(lambda db: _delete_recipe(db, name))

    async def get_recipe(self, name: str) -> Recipe:
        row = await _one(self._reader, "SELECT * FROM recipes WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"recipe {name!r} not found")
        return Recipe.from_row(row)

    async def list_recipes(self) -> list[Recipe]:
        rows = await _all(self._reader, "SELECT * FROM recipes ORDER BY name", ())
        return [Recipe.from_row(row) for row in rows]

    # -- state changes --------------------------------------------------------------------

    async def transition(
        self,
        run_id: str,
        to: RunStatus,
        *,
        expect: Iterable[RunStatus] | None = None,
        detail: str | None = None,
        **changes: Any,
    ) -> Run | None:
        """Move a run to `to` if it is now in a status the state machine allows it to leave
        for `to` and, when given, in `expect` (the status the caller decided from), setting
        `changes` (run columns; `failure` as a Failure) in the same transaction. Returns the
        updated run, or None when the run was elsewhere: someone else moved it first."""
        allowed = sources_of(to)
        if expect is not None:
            allowed = allowed & frozenset(expect)
        if not allowed:
            return None
        sources = sorted(s.value for s in allowed)
        assignments, values = _assignments(changes)
        return await self._writer.write(
            lambda db: _transition(db, run_id, to, sources, assignments, values, detail)
        )

    async def update_run(
        self,
        run_id: str,
        *,
        detail: str,
        expect: Iterable[RunStatus] | None = None,
        **changes: Any,
    ) -> bool:
        """Record facts about a run without changing its status (the container id, the stop
        reason), only while it is in `expect` when given. Returns whether it was recorded."""
        assignments, values = _assignments(changes)
        statuses = None if expect is None else [s.value for s in expect]
        return await self._writer.write(
            lambda db: _update_run(db, run_id, statuses, assignments, values, detail)
        )

    # -- reads ----------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        row = await _one(
            self._reader, "SELECT * FROM jobs WHERE id = ? AND deleted_at IS NULL", (job_id,)
        )
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return Job.from_row(row)

    async def get_run(self, run_id: str) -> Run:
        run = await _fetch_run(self._reader, run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        return run

    async def get_runs(self, run_ids: Iterable[str]) -> dict[str, Run]:
        ids = list(run_ids)
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        rows = await _all(self._reader, f"SELECT * FROM runs WHERE id IN ({marks})", ids)
        return {row["id"]: Run.from_row(row) for row in rows}

    async def assign_what_fits(self, choose: Choose) -> Placement:
        """One placement pass, as one write: read the active runs, let `choose(queue, active
        runs)` walk the queue (priority, then oldest first) and decide what starts on what,
        and move those runs to assigned with their allocations. The decision and its record
        share one transaction, so nothing changes between them; the queue is read only as far
        as `choose` walks it, so a pass costs the same with 10 or 10,000 runs queued."""
        return await self._writer.write(lambda db: _assign_what_fits(db, choose, now()))

    async def expire_pending(self, moment: datetime, reasons: Mapping[str, str]) -> list[Run]:
        """Fail the queued runs whose pending limit has passed (unschedulable), saying why
        they waited: `reasons`, from the last placement pass."""
        return await self._writer.write(lambda db: _expire_pending(db, moment, reasons))

    async def record_gpu_peak(self, run_id: str, peak: int) -> None:
        """The most GPU memory the run was seen using: a sample, not an event."""
        await self._writer.write(
            lambda db: db.execute(
                "UPDATE runs SET gpu_peak_bytes = MAX(COALESCE(gpu_peak_bytes, 0), ?) WHERE id = ?",
                (peak, run_id),
            )
        )

    async def count_pending(self) -> int:
        row = await _one(
            self._reader, "SELECT COUNT(*) AS n FROM runs WHERE status = 'pending'", ()
        )
        return int(row["n"]) if row else 0

    async def queue_position(self, run: Run) -> int:
        """How many queued runs are ahead of this pending one (0: it is next)."""
        row = await _one(
            self._reader,
            "SELECT COUNT(*) AS n FROM runs WHERE status = 'pending'"
            " AND (priority > ? OR (priority = ? AND (created_at, id) < (?, ?)))",
            (run.priority, run.priority, run.created_at.timestamp(), run.id),
        )
        return int(row["n"]) if row else 0

    async def runs_with_status(self, statuses: Iterable[RunStatus]) -> list[Run]:
        values = [s.value for s in statuses]
        marks = ", ".join("?" * len(values))
        rows = await _all(
            self._reader,
            f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY created_at, id",
            values,
        )
        return [Run.from_row(row) for row in rows]

    async def list_jobs(self, where: JobFilter, *, limit: int, cursor: str | None) -> Page[Job]:
        sql, params = _jobs_query(where, cursor)
        rows = await _all(self._reader, sql, (*params, limit + 1))
        jobs = [Job.from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items=jobs, next_cursor=_page_cursor(jobs[-1]) if more and jobs else None)

    async def list_runs(self, job_id: str, *, limit: int, cursor: str | None) -> Page[Run]:
        await self.get_job(job_id)
        params: list[Any] = [job_id]
        sql = "SELECT * FROM runs WHERE job_id = ?"
        if cursor:
            created, last_id = _decode_cursor(cursor)
            sql += " AND (created_at, id) < (?, ?)"
            params += [created, last_id]
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        rows = await _all(self._reader, sql, (*params, limit + 1))
        runs = [Run.from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items=runs, next_cursor=_page_cursor(runs[-1]) if more and runs else None)

    async def runs_in_window(
        self, job_id: str, *, since: datetime | None, until: datetime | None
    ) -> list[Run]:
        """The job's runs that may have written between `since` and `until`, oldest first."""
        sql = "SELECT * FROM runs WHERE job_id = ?"
        params: list[Any] = [job_id]
        if until is not None:
            sql += " AND created_at < ?"
            params.append(until.timestamp())
        if since is not None:
            sql += " AND (finished_at IS NULL OR finished_at >= ?)"
            params.append(since.timestamp())
        rows = await _all(self._reader, sql + " ORDER BY created_at, id", params)
        return [Run.from_row(row) for row in rows]

    async def run_events(self, run_id: str) -> list[dict[str, Any]]:
        rows = await _all(
            self._reader,
            "SELECT at, from_status, to_status, detail FROM run_events WHERE run_id = ?"
            " ORDER BY id",
            (run_id,),
        )
        return [dict(row) for row in rows]


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    for pragma in PRAGMAS:
        await db.execute(pragma)
    return db


PRAGMAS = ("PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=5000", "PRAGMA synchronous=NORMAL")


async def _all(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """Every row, in one call to the connection's thread. With execute() and fetchall() as two
    calls, another coroutine's query runs in between while the first statement is still
    active: it shares that statement's read snapshot and misses what was just committed."""
    return list(await db.execute_fetchall(sql, params))


async def _one(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> Any:
    """The first row, or None (see _all)."""
    rows = await _all(db, sql, params)
    return rows[0] if rows else None


# -- the writes: each function is one write, inside the writer's transaction -------------


def _prepare(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    for pragma in PRAGMAS:
        db.execute(pragma)
    _migrate(db)


def _migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"the database schema (version {version}) is newer than this jobd knows"
            f" ({len(MIGRATIONS)}): upgrade jobd"
        )
    for number in range(version, len(MIGRATIONS)):
        try:
            db.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1};"
                " COMMIT;"
            )
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"schema migration {number + 1} failed: {e}") from e


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
        _json(list(job.spec.command)),
        _json(dict(job.spec.env)),
        job.spec.plan,
        job.spec.timeout_seconds,
        job.spec.network,
        _json(dict(job.labels)),
        _json(job.spec.retry.to_api()) if job.spec.retry else None,
        schedule.cron if schedule else None,
        schedule.timezone if schedule else None,
        schedule.concurrency_policy.value if schedule else None,
        schedule.catch_up.value if schedule else None,
        int(schedule.suspended) if schedule else 0,
        job.spec.image_digest,
        job.spec.kind.value,
        _json(list(job.spec.ports)) if job.spec.ports else None,
        _json(dict(job.spec.resources)) if job.spec.resources else None,
        job.spec.priority,
        job.spec.max_pending_seconds,
    )


def _create_job(db: sqlite3.Connection, job: Job, run: Run | None) -> None:
    db.execute(
        _INSERT_JOB,
        (
            job.id,
            *_editable_values(job),
            _json(job.owner.to_api()),
            job.created_at.timestamp(),
            run.id if run else None,
            run.status.value if run else None,
            job.next_fire_at.timestamp() if job.next_fire_at else None,
            job.recipe,
            _json(dict(job.requested)) if job.requested is not None else None,
        ),
    )
    _insert_labels(db, job)
    if run is not None:
        _insert_run(db, run)


def _insert_labels(db: sqlite3.Connection, job: Job) -> None:
    if job.labels:
        db.executemany(
            "INSERT INTO job_labels (job_id, key, value, created_at) VALUES (?, ?, ?, ?)",
            [(job.id, k, v, job.created_at.timestamp()) for k, v in job.labels.items()],
        )


def _delete_job(db: sqlite3.Connection, job_id: str) -> list[Run]:
    cursor = db.execute(
        "UPDATE jobs SET deleted_at = ?, next_fire_at = NULL WHERE id = ? AND deleted_at IS NULL",
        (time.time(), job_id),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"job {job_id} not found")
    return _cancel_job_runs(db, job_id, "its job was deleted")


def _cancel_job_runs(db: sqlite3.Connection, job_id: str, why: str) -> list[Run]:
    """End the job's pending runs cancelled and move its assigned and running ones to
    cancelling; the latter are returned, for the supervisor to stop."""
    rows = db.execute(
        "SELECT id, status FROM runs WHERE job_id = ? AND status IN (?, ?, ?)",
        (job_id, RunStatus.PENDING.value, RunStatus.ASSIGNED.value, RunStatus.RUNNING.value),
    ).fetchall()
    stopping: list[Run] = []
    for row in rows:
        if row["status"] == RunStatus.PENDING.value:
            message = f"{why} before it started"
            failure = Failure(type=FailureType.CANCELLED, message=message)
            assignments, values = _assignments({"finished_at": now(), "failure": failure})
            pending = [RunStatus.PENDING.value]
            _transition(db, row["id"], RunStatus.CANCELLED, pending, assignments, values, message)
            continue
        run = _transition(db, row["id"], RunStatus.CANCELLING, [row["status"]], "", [], why)
        if run is not None:
            stopping.append(run)
    return stopping


def _purge_job(db: sqlite3.Connection, job_id: str) -> bool:
    marks = ", ".join("?" * len(ACTIVE_STATUSES))
    active = db.execute(
        f"SELECT 1 FROM runs WHERE job_id = ? AND status IN ({marks})",
        (job_id, *(s.value for s in ACTIVE_STATUSES)),
    ).fetchone()
    if active is not None:
        return False
    cursor = db.execute("DELETE FROM jobs WHERE id = ? AND deleted_at IS NOT NULL", (job_id,))
    return cursor.rowcount > 0


def _update_job(db: sqlite3.Connection, job: Job, reschedule: bool) -> Job:
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
    return Job.from_row(db.execute("SELECT * FROM jobs WHERE id = ?", (job.id,)).fetchone())


def _fire_schedules(db: sqlite3.Connection, moment: datetime, plans: PlanLookup) -> Firings:
    firings = Firings()
    rows = db.execute(
        "SELECT * FROM jobs WHERE next_fire_at <= ? AND deleted_at IS NULL",
        (moment.timestamp(),),
    ).fetchall()
    for row in rows:
        job = Job.from_row(row)
        assert job.schedule is not None and job.next_fire_at is not None
        tick = job.schedule.tick_to_fire(job.next_fire_at, moment)
        if tick is None:
            note = f"missed the ticks since {rfc3339(job.next_fire_at)} (catchUp skip)"
            record = Tick(at=job.next_fire_at, run_id=None, note=note)
        else:
            record = _fire(db, job, tick, plans, firings)
        db.execute(
            "UPDATE jobs SET next_fire_at = ?, last_tick = ? WHERE id = ?",
            (job.schedule.next_after(moment).timestamp(), _json(record.to_api()), job.id),
        )
    return firings


def _fire(
    db: sqlite3.Connection, job: Job, tick: datetime, plans: PlanLookup, firings: Firings
) -> Tick:
    """Start the run for one due tick as the job's concurrency policy says, or say why not."""
    assert job.schedule is not None and job.next_fire_at is not None
    plan = plans(job.spec)
    if plan is None:
        what = "its resources" if job.spec.resources else f"plan {job.spec.plan!r}"
        note = f"skipped: {what} is not configured or does not fit this machine"
        return Tick(at=tick, run_id=None, note=note)
    in_flight = db.execute(
        f"SELECT id FROM runs WHERE job_id = ? AND status IN ({_IN_FLIGHT_MARKS})"
        " ORDER BY created_at, id",
        (job.id, *_IN_FLIGHT),
    ).fetchall()
    policy = job.schedule.concurrency_policy
    if in_flight and policy is ConcurrencyPolicy.FORBID:
        note = f"skipped: run {in_flight[0]['id']} is still in flight (concurrencyPolicy forbid)"
        return Tick(at=tick, run_id=None, note=note)
    note = "started"
    if in_flight and policy is ConcurrencyPolicy.REPLACE:
        firings.stopping.extend(_cancel_job_runs(db, job.id, "replaced by the next scheduled run"))
        note = f"started, replacing {', '.join(r['id'] for r in in_flight)}"
    if tick > job.next_fire_at:
        since = rfc3339(job.next_fire_at)
        if job.schedule.catch_up is CatchUp.ONCE:
            note += f"; one run for the ticks missed since {since} (catchUp once)"
        else:
            note += f"; the ticks missed since {since} were skipped (catchUp skip)"
    run = pending_run(job.id, job.spec, plan, now(), trigger=Trigger.SCHEDULE, scheduled_for=tick)
    _insert_run(db, run, f"scheduled for {rfc3339(tick)}")
    _make_latest(db, run)
    firings.started.append(run)
    return Tick(at=tick, run_id=run.id, note=note)


def _put_recipe(db: sqlite3.Connection, recipe: Recipe, replace: bool) -> tuple[Recipe, bool]:
    row = db.execute("SELECT * FROM recipes WHERE name = ?", (recipe.name,)).fetchone()
    if row is not None and not replace:
        raise Conflict(f"recipe {recipe.name!r} exists; update it, or apply to replace it")
    if row is not None:
        kept = Recipe.from_row(row)
        replaced = dataclasses.replace(recipe, owner=kept.owner, created_at=kept.created_at)
        return _update_recipe(db, replaced), False
    db.execute(
        "INSERT INTO recipes (name, description, config, owner, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            recipe.name,
            recipe.description,
            _json(dict(recipe.config)),
            _json(recipe.owner.to_api()),
            recipe.created_at.timestamp(),
            recipe.updated_at.timestamp(),
        ),
    )
    return recipe, True


def _update_recipe(db: sqlite3.Connection, recipe: Recipe) -> Recipe:
    cursor = db.execute(
        "UPDATE recipes SET description = ?, config = ?, updated_at = ? WHERE name = ?",
        (
            recipe.description,
            _json(dict(recipe.config)),
            recipe.updated_at.timestamp(),
            recipe.name,
        ),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"recipe {recipe.name!r} not found")
    return recipe


def _delete_recipe(db: sqlite3.Connection, name: str) -> None:
    if db.execute("DELETE FROM recipes WHERE name = ?", (name,)).rowcount == 0:
        raise NotFound(f"recipe {name!r} not found")


def _add_run(db: sqlite3.Connection, run: Run) -> None:
    exists = "SELECT 1 FROM jobs WHERE id = ? AND deleted_at IS NULL"
    if db.execute(exists, (run.job_id,)).fetchone() is None:
        raise NotFound(f"job {run.job_id} not found")
    _insert_run(db, run)
    _make_latest(db, run)


def _insert_run(db: sqlite3.Connection, run: Run, detail: str = "created") -> None:
    db.execute(
        "INSERT INTO runs (id, job_id, status, plan, timeout_seconds, created_at, spec,"
        " trigger, attempt, scheduled_for, not_before, priority, pending_until)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run.id,
            run.job_id,
            run.status.value,
            _json(run.plan.to_api()),
            run.timeout_seconds,
            run.created_at.timestamp(),
            _json(run.spec.to_record()) if run.spec else None,
            run.trigger.value,
            run.attempt,
            run.scheduled_for.timestamp() if run.scheduled_for else None,
            run.not_before.timestamp() if run.not_before else None,
            run.priority,
            run.pending_until.timestamp() if run.pending_until else None,
        ),
    )
    db.execute(
        "INSERT INTO run_events (run_id, at, from_status, to_status, detail)"
        " VALUES (?, ?, NULL, ?, ?)",
        (run.id, run.created_at.timestamp(), run.status.value, detail),
    )


def _make_latest(db: sqlite3.Connection, run: Run) -> None:
    db.execute(
        "UPDATE jobs SET latest_run_id = ?, status = ? WHERE id = ?",
        (run.id, run.status.value, run.job_id),
    )


def _transition(
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
    db.execute(
        "UPDATE jobs SET status = ? WHERE id = ? AND latest_run_id = ?",
        (to.value, row["job_id"], run_id),
    )
    updated = Run.from_row(db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())
    if to is RunStatus.FAILED:
        return _retry(db, updated)
    return updated


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
    _insert_run(
        db, attempt, f"{what} of {run.id} (attempt {attempt.attempt}), after {wait.seconds}s"
    )
    _make_latest(db, attempt)
    db.execute("UPDATE runs SET retried_by = ? WHERE id = ?", (attempt.id, run.id))
    return run.with_changes(retried_by=attempt.id)


def _assign_what_fits(db: sqlite3.Connection, choose: Choose, moment: datetime) -> Placement:
    began = time.perf_counter()
    marks = ", ".join("?" * len(ACTIVE_STATUSES))
    rows = db.execute(
        f"SELECT * FROM runs WHERE status IN ({marks})", [s.value for s in ACTIVE_STATUSES]
    )
    active = [Run.from_row(row) for row in rows]
    cursor = db.execute(
        # the planner would rather sort every pending run by priority than walk runs_queue;
        # what a run executes (spec) is not read: placement does not need it
        f"SELECT {_queue_columns(db)} FROM runs INDEXED BY runs_queue"
        " WHERE status = 'pending' AND (not_before IS NULL OR not_before <= ?)"
        " ORDER BY priority DESC, created_at, id",
        (moment.timestamp(),),
    )
    try:
        decision = choose(_queue(cursor), active)
    finally:
        cursor.close()  # before the writes: the walk reads no row it changes
    assigned: list[Run] = []
    for run, allocation in decision.start:
        assignments, values = _assignments({"allocation": allocation})
        done = _transition(
            db, run.id, RunStatus.ASSIGNED, ["pending"], assignments, values, _placed(allocation)
        )
        assert done is not None, "a pending run changed inside the placing transaction"
        assigned.append(done)
    return Placement(
        assigned=assigned,
        waiting=decision.waiting,
        truncated=decision.truncated,
        seconds=time.perf_counter() - began,
    )


@functools.lru_cache(maxsize=4)
def _queue_columns(db: sqlite3.Connection) -> str:
    """Every run column, as the schema has them now, but the spec: NULL in its place. The
    schema is migrated when the store opens, so once per connection is enough."""
    columns = (row[1] for row in db.execute("PRAGMA table_info(runs)"))
    return ", ".join("NULL AS spec" if c == "spec" else c for c in columns)


def _queue(cursor: sqlite3.Cursor) -> Iterator[Run]:
    """The runs that may start, in queue order (the runs_queue index), read as far as
    placement looks: usually the head does not fit, and a few rows tell."""
    size = FIRST_PAGE
    while rows := cursor.fetchmany(size):
        yield from (Run.from_row(row) for row in rows)
        size = QUEUE_PAGE


def _placed(allocation: Allocation) -> str:
    given = [f"GPU {g.index} ({g.uuid})" for g in allocation.gpus]
    if allocation.cpu_set:
        given.append(f"CPUs {allocation.cpu_set}")
    return "placed" + (": " + ", ".join(given) if given else "")


def _expire_pending(
    db: sqlite3.Connection, moment: datetime, reasons: Mapping[str, str]
) -> list[Run]:
    rows = db.execute(
        "SELECT id, created_at, not_before, pending_until FROM runs"
        " WHERE status = 'pending' AND pending_until IS NOT NULL AND pending_until <= ?",
        (moment.timestamp(),),
    ).fetchall()
    expired = []
    for row in rows:
        waited = round(moment.timestamp() - (row["not_before"] or row["created_at"]))
        why = reasons.get(row["id"], "the node had no room for it")
        message = f"unschedulable: still queued after {waited}s (maxPendingSeconds); {why}"
        failure = Failure(type=FailureType.UNSCHEDULABLE, message=message)
        assignments, values = _assignments({"finished_at": moment, "failure": failure})
        run = _transition(
            db, row["id"], RunStatus.FAILED, ["pending"], assignments, values, message
        )
        if run is not None:
            expired.append(run)
    return expired


def _update_run(
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
    row = await _one(db, "SELECT * FROM runs WHERE id = ?", (run_id,))
    return Run.from_row(row) if row else None


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _assignments(changes: Mapping[str, Any]) -> tuple[str, list[Any]]:
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
        return _json(value.to_api())
    if isinstance(value, StopReason):
        return value.value
    if isinstance(value, dict):
        return _json({str(k): v for k, v in value.items()})
    return value


def _jobs_query(where: JobFilter, cursor: str | None) -> tuple[str, list[Any]]:
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
    if where.created_after is not None:
        clauses.append(f"{created} >= ?")
        params.append(where.created_after.timestamp())
    if where.created_before is not None:
        clauses.append(f"{created} < ?")
        params.append(where.created_before.timestamp())
    if cursor:
        clauses.append(f"({created}, {key}) < (?, ?)")  # a row value: an index SEARCH
        params += list(_decode_cursor(cursor))
    sql = f"SELECT j.* FROM {source}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return sql + f" ORDER BY {created} DESC, {key} DESC LIMIT ?", params


def _page_cursor(item: Job | Run) -> str:
    raw = orjson.dumps([item.created_at.timestamp(), item.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, last_id = orjson.loads(base64.urlsafe_b64decode(padded))
        return float(created), str(last_id)
    except (ValueError, TypeError) as e:
        raise InvalidRequest("invalid cursor") from e
