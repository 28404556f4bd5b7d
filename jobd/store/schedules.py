"""Schedules: firing the due ticks, each tick's run and the job's next fire time written in
one transaction, and when the next time-driven thing is due."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import aiosqlite

from jobd.domain.jobs import Job, JobSpec
from jobd.domain.records import maybe_epoch, now, rfc3339
from jobd.domain.resources import Plan
from jobd.domain.runs import Run, submission
from jobd.domain.schedules import CatchUp, ConcurrencyPolicy, Tick
from jobd.domain.states import ACTIVE_STATUSES, RunStatus, Trigger
from jobd.store.jobs import cancel_job_runs
from jobd.store.rows import fetch_one, to_json
from jobd.store.runs import insert_run, make_latest

PlanLookup = Callable[[JobSpec], Plan | None]  # what a job's runs get now; None: can't run
_IN_FLIGHT = tuple(s.value for s in (RunStatus.PENDING, *sorted(ACTIVE_STATUSES)))
_IN_FLIGHT_MARKS = ", ".join("?" * len(_IN_FLIGHT))


@dataclass(frozen=True, slots=True, kw_only=True)
class Firings:
    """What one pass over the due schedules did."""

    started: list[Run] = field(default_factory=list)  # new runs, pending
    stopping: list[Run] = field(default_factory=list)  # runs a replace moved to cancelling


def fire_schedules(db: sqlite3.Connection, moment: datetime, plans: PlanLookup) -> Firings:
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
            (job.schedule.next_after(moment).timestamp(), to_json(record.to_api()), job.id),
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
        firings.stopping.extend(cancel_job_runs(db, job.id, "replaced by the next scheduled run"))
        note = f"started, replacing {', '.join(r['id'] for r in in_flight)}"
    if tick > job.next_fire_at:
        since = rfc3339(job.next_fire_at)
        if job.schedule.catch_up is CatchUp.ONCE:
            note += f"; one run for the ticks missed since {since} (catchUp once)"
        else:
            note += f"; the ticks missed since {since} were skipped (catchUp skip)"
    runs = submission(job.id, job.spec, plan, now(), trigger=Trigger.SCHEDULE, scheduled_for=tick)
    run = runs[0]  # the tick's one run (runs_job_tick), or its array's first
    for each in [run, *(r.with_changes(scheduled_for=None) for r in runs[1:])]:
        insert_run(db, each, f"scheduled for {rfc3339(tick)}")
    make_latest(db, run)
    firings.started.extend(runs)
    return Tick(at=tick, run_id=run.id, note=note)


async def next_timer(db: aiosqlite.Connection, moment: datetime) -> datetime | None:
    # every step asks this: each part reads the first entry of its own partial index. Left
    # to itself the planner walks every queued run by status instead (10 ms with 10,000)
    row = await fetch_one(
        db,
        "SELECT MIN(t) AS t FROM ("
        " SELECT MIN(next_fire_at) AS t FROM jobs WHERE next_fire_at IS NOT NULL"
        " UNION ALL SELECT MIN(not_before) FROM runs INDEXED BY runs_waiting"
        " WHERE status = 'pending' AND not_before IS NOT NULL AND not_before > ?"
        " UNION ALL SELECT MIN(pending_until) FROM runs INDEXED BY runs_pending_until"
        " WHERE status = 'pending' AND pending_until IS NOT NULL)",
        (moment.timestamp(),),
    )
    return maybe_epoch(row["t"]) if row else None
