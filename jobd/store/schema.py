"""The database's schema: its migrations, applied in order when the store opens, and the
connections' settings."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from jobd.errors import StoreError

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
    # the grace a cancel or stop asked for (SIGTERM, then SIGKILL once it is over); NULL: the
    # configured default
    """
    ALTER TABLE runs ADD COLUMN stop_grace_seconds INTEGER;
    """,
    # a job's volumes, working directory and user; the named volumes jobd manages, and which
    # runs use each (written with the run, so a volume in use is never deleted)
    """
    ALTER TABLE jobs ADD COLUMN volumes TEXT;
    ALTER TABLE jobs ADD COLUMN working_dir TEXT;
    ALTER TABLE jobs ADD COLUMN run_as TEXT;
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        labels TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE run_volumes (
        volume TEXT NOT NULL,
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        PRIMARY KEY (volume, run_id)
    );
    CREATE INDEX run_volumes_run ON run_volumes (run_id);
    """,
    # a job's output limit and a run's outputs' summary; uploaded inputs (their blobs are
    # content-addressed files, one per sha256) and the jobs that mount each: an upload a job
    # names is never deleted under it
    """
    ALTER TABLE jobs ADD COLUMN output_limit_bytes INTEGER;
    ALTER TABLE jobs ADD COLUMN inputs TEXT;
    ALTER TABLE runs ADD COLUMN outputs TEXT;
    CREATE TABLE uploads (
        slug TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        owner TEXT NOT NULL,
        created_at REAL NOT NULL,
        used_at REAL NOT NULL
    );
    CREATE INDEX uploads_used_at ON uploads (used_at);
    CREATE INDEX uploads_sha256 ON uploads (sha256);
    CREATE TABLE job_inputs (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        slug TEXT NOT NULL REFERENCES uploads (slug),
        PRIMARY KEY (job_id, slug)
    );
    CREATE INDEX job_inputs_slug ON job_inputs (slug);
    """,
    # who owns each record, as a column the reads that reach one user's records filter on
    # (generated from the owner JSON, so every writer keeps it right)
    """
    ALTER TABLE jobs ADD COLUMN owner_uid INTEGER
        GENERATED ALWAYS AS (json_extract(owner, '$.uid')) VIRTUAL;
    CREATE INDEX jobs_owner_created ON jobs (owner_uid, created_at DESC, id DESC);
    CREATE INDEX jobs_owner_status_created
        ON jobs (owner_uid, status, created_at DESC, id DESC);
    ALTER TABLE recipes ADD COLUMN owner_uid INTEGER
        GENERATED ALWAYS AS (json_extract(owner, '$.uid')) VIRTUAL;
    CREATE INDEX recipes_owner ON recipes (owner_uid, name);
    ALTER TABLE volumes ADD COLUMN owner_uid INTEGER
        GENERATED ALWAYS AS (json_extract(owner, '$.uid')) VIRTUAL;
    CREATE INDEX volumes_owner ON volumes (owner_uid, name);
    ALTER TABLE uploads ADD COLUMN owner_uid INTEGER
        GENERATED ALWAYS AS (json_extract(owner, '$.uid')) VIRTUAL;
    CREATE INDEX uploads_owner ON uploads (owner_uid, created_at);
    """,
    # API tokens: bearer tokens (only their sha256 kept) and signing keys (nothing secret kept)
    """
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        owner_uid INTEGER GENERATED ALWAYS AS (json_extract(owner, '$.uid')) VIRTUAL,
        name TEXT,
        scope TEXT NOT NULL,
        kind TEXT NOT NULL,
        secret_hash TEXT UNIQUE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL,
        last_used_at REAL
    );
    CREATE INDEX tokens_owner ON tokens (owner_uid, created_at);
    CREATE UNIQUE INDEX tokens_owner_name ON tokens (owner_uid, name)
        WHERE revoked_at IS NULL AND name IS NOT NULL;
    """,
    # environment variables shown by name only
    """
    ALTER TABLE jobs ADD COLUMN secret_env TEXT;
    """,
    # the audit log: every state-changing request (no index but the rowid: store/audit.py)
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        user TEXT,
        uid INTEGER,
        via TEXT,
        token_id TEXT,
        peer TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        ids TEXT NOT NULL
    );
    """,
    # projects (a job's and a recipe's); each run's owner and project, copied from its job
    # when the run is written: the queue is read per owner (quotas, fair share). What ended
    # runs used, charged as each ends: CPU- and GPU-seconds by the day it ended (fair share),
    # GPU-seconds by the hour they were used in (a day's GPU-hours)
    """
    ALTER TABLE jobs ADD COLUMN project TEXT;
    CREATE INDEX jobs_project_created ON jobs (project, created_at DESC, id DESC)
        WHERE project IS NOT NULL;
    ALTER TABLE recipes ADD COLUMN project TEXT;
    ALTER TABLE runs ADD COLUMN owner_uid INTEGER;
    ALTER TABLE runs ADD COLUMN project TEXT;
    UPDATE runs SET owner_uid = (SELECT owner_uid FROM jobs WHERE jobs.id = runs.job_id);
    CREATE INDEX runs_owner_queue ON runs (owner_uid, priority DESC, created_at, id)
        WHERE status = 'pending';
    CREATE INDEX runs_project_queue ON runs (project)
        WHERE status = 'pending' AND project IS NOT NULL;
    CREATE TABLE use_days (
        day INTEGER NOT NULL,
        owner_uid INTEGER NOT NULL,
        cpu_seconds REAL NOT NULL,
        gpu_seconds REAL NOT NULL,
        PRIMARY KEY (day, owner_uid)
    ) WITHOUT ROWID;
    CREATE TABLE gpu_hours (
        hour INTEGER NOT NULL,
        owner_uid INTEGER NOT NULL,
        project TEXT NOT NULL,
        gpu_seconds REAL NOT NULL,
        PRIMARY KEY (hour, owner_uid, project)
    ) WITHOUT ROWID;
    """,
    # run metrics: samples at full resolution (resolution 0) and one-minute averages and
    # maxima (resolution 60), each metric of each run a series; what a run used, on the run
    """
    CREATE TABLE metric_points (
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        series TEXT NOT NULL,
        resolution INTEGER NOT NULL,
        at REAL NOT NULL,
        value REAL NOT NULL,
        peak REAL NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (run_id, name, resolution, series, at)
    ) WITHOUT ROWID;
    CREATE INDEX metric_points_age ON metric_points (resolution, at);
    ALTER TABLE runs ADD COLUMN usage TEXT;
    """,
    # workflows: a pending run held back (its dependencies unmet, its array at its
    # parallelism) is left out of the queue's index, so placement never reads it; what each
    # held run still waits on (a run, or an array by its first run's id); arrays' runs by
    # index, found by array and status
    """
    ALTER TABLE runs ADD COLUMN held TEXT;
    ALTER TABLE runs ADD COLUMN after TEXT;
    ALTER TABLE runs ADD COLUMN array_id TEXT;
    ALTER TABLE runs ADD COLUMN array_index INTEGER;
    ALTER TABLE jobs ADD COLUMN array TEXT;
    DROP INDEX runs_owner_queue;
    CREATE INDEX runs_owner_queue ON runs (owner_uid, priority DESC, created_at, id)
        WHERE status = 'pending' AND held IS NULL;
    CREATE INDEX runs_array ON runs (array_id, status, held) WHERE array_id IS NOT NULL;
    CREATE TABLE run_dependencies (
        run_id TEXT NOT NULL,
        on_id TEXT NOT NULL,
        condition TEXT NOT NULL,
        array INTEGER NOT NULL,
        PRIMARY KEY (run_id, on_id)
    ) WITHOUT ROWID;
    CREATE INDEX run_dependencies_on ON run_dependencies (on_id);
    """,
    # a job named where an id goes (jobctl logs train): its newest job of that name
    """
    CREATE INDEX jobs_name ON jobs (name, created_at DESC) WHERE name IS NOT NULL;
    """,
    # runs across jobs (GET /v1/runs), newest first: everyone's, one owner's, one project's;
    # each index holds the filters' columns too (status, trigger, and the kind of what the run
    # executes, written with the run: a generated column read it out of the spec's JSON at
    # every change of an indexed column, a quarter of a submission's cost), so a walk tests
    # them without reading the rows it passes over
    """
    ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'batch';
    UPDATE runs SET kind = json_extract(spec, '$.kind')
        WHERE json_extract(spec, '$.kind') IS NOT NULL;
    CREATE INDEX runs_created ON runs (created_at DESC, id DESC, status, trigger, kind);
    CREATE INDEX runs_owner_created
        ON runs (owner_uid, created_at DESC, id DESC, status, trigger, kind);
    CREATE INDEX runs_project_created
        ON runs (project, created_at DESC, id DESC, status, trigger, kind)
        WHERE project IS NOT NULL;
    """,
    # SSH into a job: the keys that may, the addresses it is reached from (NULL: loopback),
    # and where a started run's gateway listens
    """
    ALTER TABLE jobs ADD COLUMN ssh_keys TEXT;
    ALTER TABLE jobs ADD COLUMN allowed_ips TEXT;
    ALTER TABLE runs ADD COLUMN ssh TEXT;
    """,
    # what a run's marker lines said: its progress and its phases
    """
    ALTER TABLE runs ADD COLUMN progress TEXT;
    """,
)

PRAGMAS = ("PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=5000", "PRAGMA synchronous=NORMAL")


async def connect_reader(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = aiosqlite.Row
    for pragma in PRAGMAS:
        await db.execute(pragma)
    return db


def prepare(db: sqlite3.Connection) -> None:
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
