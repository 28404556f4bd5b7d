"""The store's side of placement, on a real SQLite file: the queue walked in priority order,
allocations written with the assignment, queue positions, pending limits, GPU peaks."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import aiosqlite

from jobd.domain.capacity import Decision
from jobd.domain.jobs import Job, JobSpec
from jobd.domain.owners import EVERYONE, Owner
from jobd.domain.records import new_id, now
from jobd.domain.resources import DEFAULT_PLANS, Allocation, GpuGrant
from jobd.domain.runs import Run, pending_run
from jobd.domain.sharing import FairShare
from jobd.domain.states import FailureType, RunStatus
from jobd.store import Store, jobs, schedules
from jobd.store import queue as queue_queries
from jobd.store.queue import Queues, Used
from jobd.store.schema import MIGRATIONS, connect_reader

OWNER = Owner(uid=1000, user="dev", via="unix")
GRANT = GpuGrant(uuid="GPU-1", index="1", name="NVIDIA L4", factor=2.0)


async def queue(store: Store, *, priority: int = 0, max_pending: int | None = None) -> Run:
    spec = JobSpec(image="busybox", priority=priority, max_pending_seconds=max_pending)
    job = Job(id=new_id("job"), name=None, spec=spec, labels={}, owner=OWNER, created_at=now())
    run = pending_run(job.id, spec, DEFAULT_PLANS["standard"], now())
    await store.create_job(job, [run])
    return run


def take_first(count: int, seen: list[str]):  # type: ignore[no-untyped-def]
    def choose(queues: Queues, active: list[Run], spent: Used) -> Decision:
        chosen = []
        for run in itertools.chain.from_iterable(queues.values()):  # one owner: one queue
            seen.append(run.id)
            chosen.append((run, Allocation(gpus=(GRANT,), cores=(3,))))
            if len(chosen) == count:
                break
        return Decision(start=chosen, waiting={"run-x": "waiting for 1 GPU"})

    return choose


async def test_the_queue_is_walked_by_priority_then_oldest_first(store: Store) -> None:
    low = await queue(store, priority=-5)
    old = await queue(store)
    high = await queue(store, priority=10)
    young = await queue(store)
    seen: list[str] = []
    placed = await store.assign_what_fits(take_first(4, seen), share=FairShare())
    assert seen == [high.id, old.id, young.id, low.id]
    assert [r.id for r in placed.assigned] == seen
    assert placed.waiting == {"run-x": "waiting for 1 GPU"}


async def test_the_allocation_is_written_with_the_assignment(store: Store) -> None:
    run = await queue(store)
    await store.assign_what_fits(take_first(1, []), share=FairShare())
    stored = await store.get_run(run.id, reach=EVERYONE)
    assert stored.status is RunStatus.ASSIGNED
    assert stored.allocation == Allocation(gpus=(GRANT,), cores=(3,))
    events = await store.run_events(run.id)
    assert events[-1]["detail"] == "placed: GPU 1 (GPU-1), CPUs 3"
    api = stored.to_api()
    assert api["finalConfig"]["allocation"] == {
        "gpus": [GRANT.to_api()],
        "cpuSet": "3",
    }


async def test_only_what_placement_reads_is_read(store: Store) -> None:
    for _ in range(300):
        await queue(store)
    seen: list[str] = []
    await store.assign_what_fits(take_first(1, seen), share=FairShare())
    assert len(seen) == 1


async def test_the_queue_position_counts_the_runs_ahead(store: Store) -> None:
    first = await queue(store)
    second = await queue(store)
    urgent = await queue(store, priority=1)
    assert await store.queue_position(urgent) == 0
    assert await store.queue_position(first) == 1
    assert await store.queue_position(second) == 2
    assert await store.count_pending() == 3


async def test_a_run_queued_past_its_limit_fails_unschedulable_saying_why(store: Store) -> None:
    patient = await queue(store)
    limited = await queue(store, max_pending=60)
    assert limited.pending_until is not None
    assert await store.next_timer(now()) == limited.pending_until
    assert await store.expire_pending(now(), lambda run_id, uid: None) == []  # not yet
    later = limited.pending_until + timedelta(seconds=1)
    reasons = {limited.id: "waiting for 1 GPU"}
    (expired,) = await store.expire_pending(later, lambda run_id, uid: reasons.get(run_id))
    assert expired.id == limited.id and expired.status is RunStatus.FAILED
    assert expired.failure is not None and expired.failure.type is FailureType.UNSCHEDULABLE
    assert expired.failure.message.endswith("(maxPendingSeconds); waiting for 1 GPU")
    assert expired.retried_by is None  # never retried: it would only wait again
    assert (await store.get_run(patient.id, reach=EVERYONE)).status is RunStatus.PENDING


async def test_a_retry_may_wait_its_limit_from_the_end_of_its_backoff() -> None:
    spec = JobSpec(image="busybox", max_pending_seconds=30)
    moment = now()
    retry = pending_run(
        "job-x", spec, DEFAULT_PLANS["standard"], moment, not_before=moment + timedelta(hours=1)
    )
    assert retry.pending_until == moment + timedelta(hours=1, seconds=30)


async def test_the_gpu_peak_only_grows(store: Store) -> None:
    run = await queue(store)
    await store.record_gpu_peak(run.id, 5)
    await store.record_gpu_peak(run.id, 3)
    assert (await store.get_run(run.id, reach=EVERYONE)).gpu_peak_bytes == 5
    assert len(await store.run_events(run.id)) == 1  # samples are not events


# a run's plan as runs stored it before plans had GPUs, VRAM, sharing and disk
OLD_PLAN = {
    k: v
    for k, v in DEFAULT_PLANS["standard"].to_api().items()
    if k not in ("gpus", "minVramBytes", "gpuShare", "storageBytes")
}


async def test_a_database_from_before_placement_opens_and_its_queue_still_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # schema 8: the last before this change
        for number, migration in enumerate(MIGRATIONS[:8], start=1):
            db.executescript(f"{migration}; PRAGMA user_version = {number};")
        db.execute(
            "INSERT INTO jobs (id, image, command, env, plan, timeout_seconds, network, labels,"
            " owner, created_at) VALUES ('job-old', 'busybox', '[]', '{}', 'standard', 60,"
            " 'none', '{}', ?, 1)",
            ('{"uid": 0, "user": "root", "via": "unix"}',),
        )
        db.execute(
            "INSERT INTO runs (id, job_id, status, plan, timeout_seconds, created_at)"
            " VALUES ('run-old', 'job-old', 'pending', ?, 60, 1)",
            (json.dumps(OLD_PLAN),),
        )
    s = await Store.open(path)
    try:
        old = await s.get_run("run-old", reach=EVERYONE)
        assert old.priority == 0 and old.allocation is None and old.plan.gpus == 0
        assert (await s.get_job("job-old", reach=EVERYONE)).spec.resources is None
        placed = await s.assign_what_fits(take_first(1, []), share=FairShare())
        assert [r.id for r in placed.assigned] == ["run-old"]
    finally:
        await s.close()


async def vm_steps(path: Path, read: Callable[[aiosqlite.Connection], Awaitable[object]]) -> int:
    """How much work SQLite does for `read`: its virtual machine's steps, in hundreds. A
    count, not a time: the same on any machine, however busy."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    db = await connect_reader(path)
    try:
        await db.set_progress_handler(count, 100)
        await read(db)
    finally:
        await db.close()
    return steps


def expiry_steps(path: Path) -> int:
    """The same count for a pass over the pending limits, in a transaction rolled back."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        db.set_progress_handler(count, 100)
        db.execute("BEGIN")
        queue_queries.expire_pending(db, now(), lambda run_id, uid: None)
        db.execute("ROLLBACK")
    finally:
        db.close()
    return steps


async def test_what_every_step_reads_costs_the_same_with_10_or_2000_queued(
    store: Store, tmp_path: Path
) -> None:
    """The supervisor asks for its next timer on every step, for the deleted jobs while
    some wait, and expires pending limits when one is due: each must read its own small
    index, not walk the queue."""
    path = tmp_path / "jobd.db"
    gone = await queue(store)
    await store.delete_job(gone.job_id)
    moment = now()
    reads: dict[str, Callable[[aiosqlite.Connection], Awaitable[object]]] = {
        "next timer": lambda db: schedules.next_timer(db, moment),
        "deleted jobs": jobs.deleted_jobs,
    }
    for _ in range(10):
        await queue(store)
    short = {name: await vm_steps(path, read) for name, read in reads.items()}
    short["expiry"] = expiry_steps(path)
    for _ in range(2000):
        await queue(store)
    long = {name: await vm_steps(path, read) for name, read in reads.items()}
    long["expiry"] = expiry_steps(path)
    assert long == short
