"""A store full of history, for the benchmarks: N finished runs, written as jobd writes them.

Going through the daemon would mean running N containers, and jobd's own `Store` calls take
about 2.3 ms per run's life (five transactions): minutes for 100,000 runs. So one *template* job
per kind of history (succeeded, failed, timed out, killed for memory, cancelled while queued or
while running, retried twice) is written through `jobd.store.Store`, with the calls the API and
the supervisor make, in their order; then a plain sqlite3 connection clones the templates in one
transaction, with fresh ids, owners, labels and times spread over the last 30 days. Every column
of every job, run and event row comes from a row jobd wrote, so a column jobd adds later is
carried along. One job gets many runs (1% of N), for the runs endpoint's pagination.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from jobd.domain.jobs import Job, JobSpec
from jobd.domain.owners import EVERYONE, Owner
from jobd.domain.records import from_epoch, new_id, now
from jobd.domain.resources import DEFAULT_PLANS, Limits
from jobd.domain.runs import Run, outcome
from jobd.domain.states import Failure, FailureType, RunStatus, StopReason
from jobd.scheduler.launch import NOFILE
from jobd.store import Store

HISTORY = timedelta(days=30)
TEAMS = 5
BATCH = 100  # jobs per `batch` label value: a selective label
OWNERS = tuple(
    Owner(uid=1000 + i, user=name, via="unix")
    for i, name in enumerate(("alice", "bob", "carol", "dave", "erin"))
)


class Ending(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # exit code 1
    TIMEOUT = "timeout"  # stopped at its deadline
    OOM = "oom"  # killed for memory
    CANCELLED_QUEUED = "cancelled-queued"
    CANCELLED_RUNNING = "cancelled-running"


@dataclass(frozen=True, slots=True)
class Story:
    """One kind of job history: how each of its runs ended, and how common it is."""

    endings: tuple[Ending, ...]
    weight: int
    plan: str = "starter"


STORIES = (
    Story((Ending.SUCCEEDED,), 78),
    Story((Ending.FAILED,), 10, "standard"),
    Story((Ending.TIMEOUT,), 2),
    Story((Ending.OOM,), 1, "pro"),
    Story((Ending.CANCELLED_QUEUED,), 2),
    Story((Ending.CANCELLED_RUNNING,), 2, "standard"),
    Story((Ending.FAILED, Ending.FAILED, Ending.SUCCEEDED), 5),
)
MANY_RUNS = STORIES[0]  # the story each run of the many-runs job follows


@dataclass(frozen=True, slots=True, kw_only=True)
class Seeded:
    """What the benchmark needs to know about the store it queries."""

    runs: int
    jobs: int
    many_runs_job: str
    many_runs: int
    oldest: float  # epoch seconds of the first run
    newest: float


@dataclass(slots=True, kw_only=True)
class Template:
    """A job and its runs and events as jobd wrote them, as column -> value dicts."""

    job: dict[str, Any]
    runs: list[dict[str, Any]]
    events: list[list[dict[str, Any]]]  # per run, in order


@dataclass(slots=True)
class Rows:
    """Rows to insert, per table, each a dict of column -> value."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.tables.setdefault(table, []).append(row)


def seed(database: Path, n: int, *, rng_seed: int = 4) -> Seeded:
    """Fill a new database with n finished runs (the templates count among them)."""
    templates = asyncio.run(_write_templates(database))
    return _clone(database, templates, n, random.Random(rng_seed))


# -- templates: written by jobd's Store -----------------------------------------------------


async def _write_templates(database: Path) -> dict[Story, Template]:
    store = await Store.open(database)
    try:
        ids = {story: await _live_job(store, story) for story in STORIES}
    finally:
        await store.close()
    with closing(sqlite3.connect(database)) as db:
        db.row_factory = sqlite3.Row
        return {story: _read_template(db, job_id) for story, job_id in ids.items()}


async def _live_job(store: Store, story: Story) -> str:
    """Create a job and live each of its runs through to its ending, as jobd would."""
    plan = DEFAULT_PLANS[story.plan]
    created = now()
    job = Job(
        id=new_id("job"),
        name=None,
        spec=JobSpec(image="localhost/jobd/busybox:latest", command=("sh", "-c", "make report")),
        labels={"team": "team-0", "batch": "template"},
        owner=OWNERS[0],
        created_at=created,
    )
    for index, ending in enumerate(story.endings):
        run = Run(
            id=new_id("run"),
            job_id=job.id,
            status=RunStatus.PENDING,
            plan=plan,
            created_at=now(),
            timeout_seconds=job.spec.timeout_seconds,
        )
        if index == 0:
            await store.create_job(job, [run])
        else:
            await store.add_runs([run])
        await _live_run(store, run, ending)
    return job.id


async def _live_run(store: Store, run: Run, ending: Ending) -> None:
    if ending is Ending.CANCELLED_QUEUED:
        message = "cancelled before it started"
        await store.transition(
            run.id,
            RunStatus.CANCELLED,
            expect={RunStatus.PENDING},
            detail=message,
            finished_at=now(),
            failure=Failure(type=FailureType.CANCELLED, message=message),
        )
        return
    await _start(store, run)
    if ending is Ending.TIMEOUT:
        await store.update_run(
            run.id,
            detail="deadline reached",
            expect={RunStatus.RUNNING},
            stop_reason=StopReason.TIMEOUT,
        )
    if ending is Ending.CANCELLED_RUNNING:
        await store.transition(
            run.id,
            RunStatus.CANCELLING,
            expect={RunStatus.ASSIGNED, RunStatus.RUNNING},
            detail="cancel requested",
        )
    await _exit(store, await store.get_run(run.id, reach=EVERYONE), ending)


async def _start(store: Store, run: Run) -> None:
    """What the supervisor's placement and launch write."""
    await store.transition(run.id, RunStatus.ASSIGNED, expect={RunStatus.PENDING}, detail="placed")
    limits = Limits(
        memory_bytes=run.plan.memory_bytes,
        cpus=run.plan.cpus,
        pids_limit=run.plan.pids_limit,
        nofile=NOFILE,
        nproc=run.plan.pids_limit,
        enforced=True,
    )
    await store.update_run(
        run.id,
        detail="container created",
        expect={RunStatus.ASSIGNED},
        container_id=secrets.token_hex(32),
        limits=limits,
    )
    started = now()
    await store.transition(
        run.id,
        RunStatus.RUNNING,
        expect={RunStatus.ASSIGNED},
        detail="container started",
        started_at=started,
        deadline_at=started + timedelta(seconds=run.timeout_seconds),
    )


async def _exit(store: Store, run: Run, ending: Ending) -> None:
    """What the supervisor writes when the container has exited (Endings._record_exit)."""
    exit_code = {Ending.SUCCEEDED: 0, Ending.FAILED: 1}.get(ending, 137)
    status, failure = outcome(run, exit_code=exit_code, oom_killed=ending is Ending.OOM)
    await store.transition(
        run.id,
        status,
        expect={run.status},
        detail=f"container exited ({exit_code})",
        finished_at=(run.started_at or now()) + timedelta(seconds=42),
        started_at=run.started_at,
        exit_code=exit_code,
        failure=failure,
    )


def _read_template(db: sqlite3.Connection, job_id: str) -> Template:
    job = dict(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
    runs = [
        dict(r)
        for r in db.execute("SELECT * FROM runs WHERE job_id = ? ORDER BY created_at", (job_id,))
    ]
    events = [
        [
            {k: v for k, v in dict(r).items() if k != "id"}
            for r in db.execute(
                "SELECT * FROM run_events WHERE run_id = ? ORDER BY id", (run["id"],)
            )
        ]
        for run in runs
    ]
    return Template(job=job, runs=runs, events=events)


# -- clones: one transaction ----------------------------------------------------------------

TIME_COLUMNS = ("created_at", "started_at", "finished_at", "deadline_at")


def _clone(database: Path, templates: dict[Story, Template], n: int, rng: random.Random) -> Seeded:
    """Clones of the templates, n runs in all with the templates, oldest first; the many-runs
    job's runs spread evenly over the whole history."""
    many = max(1, n // 100)
    stories = list(_stories(n - many - sum(len(t.runs) for t in templates.values()), rng))
    oldest = now().timestamp() - HISTORY.total_seconds()
    slot = HISTORY.total_seconds() / max(1, sum(len(s.endings) for s in stories))
    rows = Rows()
    position = 0
    for index, story in enumerate(stories):
        times = [oldest + (position + k) * slot for k in range(len(story.endings))]
        position += len(story.endings)
        template = templates[story]
        _clone_job(
            rows,
            template,
            list(zip(template.runs, template.events, strict=True)),
            times,
            _labels(index),
            rng,
        )
    many_job = _clone_job(
        rows,
        templates[MANY_RUNS],
        [(templates[MANY_RUNS].runs[0], templates[MANY_RUNS].events[0])] * many,
        [oldest + k * HISTORY.total_seconds() / many for k in range(many)],
        {"team": "team-0", "batch": "nightly"},
        rng,
    )
    _insert(database, rows)
    return Seeded(
        runs=len(rows.tables["runs"]) + sum(len(t.runs) for t in templates.values()),
        jobs=len(rows.tables["jobs"]) + len(templates),
        many_runs_job=many_job,
        many_runs=many,
        oldest=oldest,
        newest=now().timestamp(),
    )


def _stories(runs: int, rng: random.Random) -> Iterator[Story]:
    """Stories drawn by weight until they hold `runs` runs."""
    weights = [s.weight for s in STORIES]
    left = runs
    while left > 0:
        story = rng.choices(STORIES, weights)[0]
        if len(story.endings) > left:
            story = STORIES[0]
        left -= len(story.endings)
        yield story


def _labels(index: int) -> dict[str, str]:
    return {"team": f"team-{index % TEAMS}", "batch": f"b{index // BATCH}"}


def _clone_job(
    rows: Rows,
    template: Template,
    runs: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]],
    times: Sequence[float],
    labels: dict[str, str],
    rng: random.Random,
) -> str:
    """One job like the template's, its runs created at `times`; returns the job's id."""
    job_id = new_id("job")
    clones = [
        _clone_run(run, events, job_id, at) for (run, events), at in zip(runs, times, strict=True)
    ]
    job = dict(template.job)
    first = template.runs[0]["created_at"]
    owner = rng.choice(OWNERS)
    job.update(
        id=job_id,
        created_at=_as_jobd_time(job["created_at"] - first + times[0]),
        labels=json.dumps(labels),  # as Store.create_job writes them
        owner=json.dumps(owner.to_api()),
        latest_run_id=clones[-1][0]["id"],
        status=clones[-1][0]["status"],
    )
    rows.add("jobs", job)
    for key, value in labels.items():
        rows.add(
            "job_labels",
            {"job_id": job_id, "key": key, "value": value, "created_at": job["created_at"]},
        )
    for run, events in clones:
        rows.add("runs", {**run, "owner_uid": owner.uid})  # each run carries its job's owner
        for event in events:
            rows.add("run_events", event)
    return job_id


def _clone_run(
    run: dict[str, Any], events: list[dict[str, Any]], job_id: str, created: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run and its events with a new id, every time shifted to start at `created`."""
    shift = created - run["created_at"]
    clone = dict(run, id=new_id("run"), job_id=job_id)
    for column in TIME_COLUMNS:
        if clone[column] is not None:
            clone[column] = _as_jobd_time(clone[column] + shift)
    if clone["container_id"] is not None:
        clone["container_id"] = secrets.token_hex(32)
    return clone, [dict(e, run_id=clone["id"], at=e["at"] + shift) for e in events]


def _as_jobd_time(seconds: float) -> float:
    """As jobd stores a datetime: whole microseconds. Page cursors carry a row's time through
    a datetime, so a finer one would not find its row again."""
    return from_epoch(seconds).timestamp()


def _insert(database: Path, rows: Rows) -> None:
    with closing(sqlite3.connect(database)) as db, db:  # one transaction
        for table, items in rows.tables.items():
            # a generated column (jobs.owner_uid, from the owner) is the table's to fill
            generated = {r[1] for r in db.execute(f"PRAGMA table_xinfo({table})") if r[6] in (2, 3)}
            columns = [c for c in items[0] if c not in generated]
            marks = ", ".join("?" * len(columns))
            db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                [tuple(item[c] for c in columns) for item in items],
            )
