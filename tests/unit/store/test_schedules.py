"""Schedules and retries in the real store: a tick fires at most once, even when asked twice
or after a crash; concurrency policies; catch-up after downtime; retries written with the
failure that causes them and waiting out their backoff in the queue."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime, timedelta

import pytest

from jobd.domain.capacity import Decision
from jobd.domain.jobs import Job, JobSpec, RetryPolicy
from jobd.domain.owners import EVERYONE
from jobd.domain.records import new_id, now
from jobd.domain.resources import DEFAULT_PLANS, Allocation, Plan
from jobd.domain.runs import Run
from jobd.domain.schedules import CatchUp, ConcurrencyPolicy, Schedule
from jobd.domain.sharing import FairShare
from jobd.domain.states import Failure, FailureType, RunStatus, Trigger
from jobd.store import Store
from jobd.store.queue import Queues, Used
from tests.unit.store.test_store import OWNER, new_run


def plans(spec: JobSpec) -> Plan | None:
    return DEFAULT_PLANS.get(spec.plan)


def hourly(due: datetime, **schedule: object) -> Job:
    return Job(
        id=new_id("job"),
        name=None,
        spec=JobSpec(image="busybox", command=("true",)),
        labels={},
        owner=OWNER,
        created_at=now(),
        schedule=Schedule(cron="0 * * * *", **schedule),  # type: ignore[arg-type]
        next_fire_at=due,
    )


def top_of_the_hour(hours_ago: int = 0) -> datetime:
    return now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)


async def runs_of(store: Store, job_id: str) -> list[Run]:
    return (await store.list_runs(job_id, limit=100, cursor=None, reach=EVERYONE)).items


async def test_a_due_tick_starts_one_run_and_moves_the_next_fire_time(store: Store) -> None:
    due = top_of_the_hour()
    job = hourly(due)
    await store.create_job(job, [])
    moment = due + timedelta(seconds=2)
    fired = await store.fire_schedules(moment, plans)
    again = await store.fire_schedules(moment, plans)  # a second pass finds nothing due
    assert len(fired.started) == 1 and again.started == []
    run = fired.started[0]
    assert run.trigger is Trigger.SCHEDULE and run.scheduled_for == due
    assert [r.id for r in await runs_of(store, job.id)] == [run.id]
    written = await store.get_job(job.id, reach=EVERYONE)
    assert written.next_fire_at == due + timedelta(hours=1)
    assert written.latest_run_id == run.id and written.status is RunStatus.PENDING
    assert written.last_tick is not None and written.last_tick.run_id == run.id


async def test_a_tick_never_has_two_runs_even_written_behind_the_schedules_back(
    store: Store,
) -> None:
    due = top_of_the_hour()
    job = hourly(due)
    await store.create_job(job, [])
    fired = await store.fire_schedules(due, plans)
    duplicate = dataclasses.replace(fired.started[0], id=new_id("run"))
    with pytest.raises(sqlite3.IntegrityError):
        await store.add_runs([duplicate])
    assert len(await runs_of(store, job.id)) == 1


async def test_forbid_skips_a_tick_while_a_run_is_in_flight(store: Store) -> None:
    due = top_of_the_hour()
    job = hourly(due)
    await store.create_job(job, [])
    await store.add_runs([new_run(job.id)])
    fired = await store.fire_schedules(due, plans)
    assert fired.started == []
    written = await store.get_job(job.id, reach=EVERYONE)
    assert written.last_tick is not None and written.last_tick.run_id is None
    assert "forbid" in written.last_tick.note
    assert written.next_fire_at == due + timedelta(hours=1)


async def test_allow_starts_a_run_beside_the_one_in_flight(store: Store) -> None:
    due = top_of_the_hour()
    job = hourly(due, concurrency_policy=ConcurrencyPolicy.ALLOW)
    await store.create_job(job, [])
    await store.add_runs([new_run(job.id)])
    assert len((await store.fire_schedules(due, plans)).started) == 1
    assert len(await runs_of(store, job.id)) == 2


async def test_replace_cancels_the_runs_in_flight_and_starts_a_new_one(store: Store) -> None:
    due = top_of_the_hour()
    job = hourly(due, concurrency_policy=ConcurrencyPolicy.REPLACE)
    await store.create_job(job, [])
    queued, running = new_run(job.id), new_run(job.id)
    await store.add_runs([queued])
    await store.add_runs([running])
    await store.transition(running.id, RunStatus.ASSIGNED)
    await store.transition(running.id, RunStatus.RUNNING, started_at=now())
    fired = await store.fire_schedules(due, plans)
    assert [r.id for r in fired.stopping] == [running.id]
    assert (await store.get_run(running.id, reach=EVERYONE)).status is RunStatus.CANCELLING
    assert (await store.get_run(queued.id, reach=EVERYONE)).status is RunStatus.CANCELLED
    assert fired.started[0].status is RunStatus.PENDING
    note = (await store.get_job(job.id, reach=EVERYONE)).last_tick
    assert note is not None and running.id in note.note


async def test_after_downtime_skip_fires_nothing_and_once_fires_one_run(store: Store) -> None:
    due = top_of_the_hour(hours_ago=5)
    skip, once = hourly(due), hourly(due, catch_up=CatchUp.ONCE)
    await store.create_job(skip, [])
    await store.create_job(once, [])
    moment = top_of_the_hour() + timedelta(minutes=20)
    fired = await store.fire_schedules(moment, plans)
    assert [r.job_id for r in fired.started] == [once.id]
    assert fired.started[0].scheduled_for == top_of_the_hour()  # the latest tick missed
    for job in (skip, once):
        written = await store.get_job(job.id, reach=EVERYONE)
        assert written.next_fire_at == top_of_the_hour() + timedelta(hours=1)
    skipped = (await store.get_job(skip.id, reach=EVERYONE)).last_tick
    assert skipped is not None and skipped.run_id is None and "catchUp skip" in skipped.note


async def test_a_suspended_or_deleted_schedule_does_not_fire(store: Store) -> None:
    due = top_of_the_hour()
    suspended = dataclasses.replace(
        hourly(due, suspended=True), next_fire_at=None
    )  # as Jobs writes it
    deleted = hourly(due)
    await store.create_job(suspended, [])
    await store.create_job(deleted, [])
    await store.delete_job(deleted.id)
    assert (await store.fire_schedules(due, plans)).started == []
    assert await store.next_timer(due - timedelta(hours=1)) is None


async def test_a_plan_gone_from_the_configuration_skips_the_tick(store: Store) -> None:
    due = top_of_the_hour()
    job = hourly(due)
    await store.create_job(job, [])
    assert (await store.fire_schedules(due, lambda spec: None)).started == []
    tick = (await store.get_job(job.id, reach=EVERYONE)).last_tick
    assert tick is not None and "plan" in tick.note


async def _fail(store: Store, run_id: str, failure: FailureType, code: int | None = 1) -> Run:
    await store.transition(run_id, RunStatus.ASSIGNED)
    await store.transition(run_id, RunStatus.RUNNING, started_at=now())
    ended = await store.transition(
        run_id,
        RunStatus.FAILED,
        exit_code=code,
        finished_at=now(),
        failure=Failure(type=failure, message="x"),
    )
    assert ended is not None
    return ended


def retrying_job(**policy: object) -> tuple[Job, Run]:
    spec = JobSpec(image="busybox", retry=RetryPolicy(**policy))  # type: ignore[arg-type]
    job = Job(id=new_id("job"), name=None, spec=spec, labels={}, owner=OWNER, created_at=now())
    run = dataclasses.replace(new_run(job.id), spec=spec)
    return dataclasses.replace(job, latest_run_id=run.id, status=run.status), run


async def test_a_failure_queues_its_retry_in_the_same_write(store: Store) -> None:
    job, run = retrying_job(max_attempts=2, backoff_seconds=30)
    await store.create_job(job, [run])
    failed = await _fail(store, run.id, FailureType.EXIT_CODE)
    assert failed.retried_by is not None
    retry = await store.get_run(failed.retried_by, reach=EVERYONE)
    assert retry.trigger is Trigger.RETRY and retry.attempt == 2
    assert retry.not_before is not None
    assert retry.not_before - retry.created_at == timedelta(seconds=30)
    assert (await store.get_job(job.id, reach=EVERYONE)).latest_run_id == retry.id
    # the retry waits out its backoff: the queue does not offer it, the timer names its end
    placed = await store.assign_what_fits(start_all, share=FairShare())
    assert placed.assigned == []
    assert await store.next_timer(now()) == retry.not_before
    # the last attempt is not retried
    last = await _fail(store, retry.id, FailureType.EXIT_CODE)
    assert last.retried_by is None
    assert len(await runs_of(store, job.id)) == 2


def start_all(queues: Queues, active: list[Run], spent: Used) -> Decision:
    return Decision(start=[(run, Allocation()) for q in queues.values() for run in q])


async def test_a_due_retry_takes_its_place_in_the_queue(store: Store) -> None:
    job, run = retrying_job(max_attempts=3, backoff_seconds=0)
    await store.create_job(job, [run])
    failed = await _fail(store, run.id, FailureType.LOST, None)
    placed = await store.assign_what_fits(start_all, share=FairShare())
    assert [r.id for r in placed.assigned] == [failed.retried_by]


async def test_cancelled_timed_out_or_deleted_runs_are_not_retried(store: Store) -> None:
    job, run = retrying_job(max_attempts=5, backoff_seconds=0)
    await store.create_job(job, [run])
    timed_out = await _fail(store, run.id, FailureType.TIMEOUT, None)
    assert timed_out.retried_by is None
    second = dataclasses.replace(new_run(job.id), spec=job.spec)
    await store.add_runs([second])
    await store.transition(second.id, RunStatus.ASSIGNED)
    await store.transition(second.id, RunStatus.RUNNING, started_at=now())
    await store.delete_job(job.id)  # the run is cancelling; say its container failed anyway
    assert await store.transition(second.id, RunStatus.FAILED) is None
    runs = await store.deleted_jobs()
    assert {r.id for r in runs[job.id]} == {run.id, second.id}
