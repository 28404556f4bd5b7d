"""The store's side of sharing, on a real SQLite file: a run carries its job's owner and
project; each owner's queue is read on its own; a job of a project is reached by its members;
a queue quota is counted in the write that adds the run (and refuses it, writing nothing);
what a run used is charged in the transaction that ends it, and read back by a pass."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from jobd.domain.capacity import Decision
from jobd.domain.jobs import Job, JobFilter, JobSpec
from jobd.domain.owners import EVERYONE, Owner, Reach
from jobd.domain.records import new_id, now
from jobd.domain.resources import DEFAULT_PLANS, Allocation, GpuGrant
from jobd.domain.runs import Run, pending_run
from jobd.domain.sharing import FairShare, QueueLimit
from jobd.domain.states import RunStatus
from jobd.errors import NotFound, TooManyRequests
from jobd.store import Store
from jobd.store.queue import Queues, Used

ALICE = Owner(uid=1001, user="alice", via="unix")
BOB = Owner(uid=1002, user="bob", via="unix")
GRANT = GpuGrant(uuid="GPU-1", index="1", name="NVIDIA L4")


async def submit(
    store: Store, owner: Owner, project: str | None = None, limits: list[QueueLimit] | None = None
) -> Run:
    spec = JobSpec(image="busybox")
    job = Job(
        id=new_id("job"), name=None, spec=spec, labels={}, owner=owner, created_at=now(),
        project=project,
    )  # fmt: skip
    run = pending_run(job.id, spec, DEFAULT_PLANS["standard"], now())
    await store.create_job(job, [run], limits or [])
    return run


async def test_runs_carry_their_jobs_owner_and_project_and_each_owners_queue_is_read_alone(
    store: Store,
) -> None:
    a1 = await submit(store, ALICE, "vision")
    b1 = await submit(store, BOB)
    a2 = await submit(store, ALICE)
    seen: dict[int | None, list[tuple[str, str | None]]] = {}

    def choose(queues: Queues, active: list[Run], spent: Used) -> Decision:
        for uid, queue in queues.items():
            seen[uid] = [(r.id, r.project) for r in queue]
        return Decision()

    await store.assign_what_fits(choose, share=FairShare())
    assert seen == {1001: [(a1.id, "vision"), (a2.id, None)], 1002: [(b1.id, None)]}
    stored = await store.get_run(a1.id, reach=EVERYONE)
    assert (stored.owner_uid, stored.project) == (1001, "vision")


async def test_a_projects_jobs_and_runs_are_reached_by_its_members_only(store: Store) -> None:
    shared = await submit(store, ALICE, "vision")
    private = await submit(store, ALICE)
    member, outsider = Reach(1002, frozenset({"vision"})), Reach(1002)
    assert (await store.get_job(shared.job_id, reach=member)).project == "vision"
    assert (await store.get_run(shared.id, reach=member)).id == shared.id
    for reach, job_id in [(outsider, shared.job_id), (member, private.job_id)]:
        with pytest.raises(NotFound):
            await store.get_job(job_id, reach=reach)
    listed = await store.list_jobs(JobFilter(reach=member), limit=10, cursor=None)
    assert [j.id for j in listed.items] == [shared.job_id]
    only = JobFilter(reach=EVERYONE, project="vision")
    assert [j.id for j in (await store.list_jobs(only, limit=10, cursor=None)).items] == [
        shared.job_id
    ]


async def test_a_queue_quota_is_counted_in_the_write_and_refuses_writing_nothing(
    store: Store,
) -> None:
    limit = QueueLimit(whose="alice", column="owner_uid", value=1001, limit=2)
    await submit(store, ALICE, limits=[limit])
    await submit(store, ALICE, limits=[limit])
    await submit(store, BOB)  # another owner's runs are not alice's
    before = await store.list_jobs(JobFilter(), limit=10, cursor=None)
    with pytest.raises(
        TooManyRequests, match=r"alice may have 2 queued runs \(max_queued\) and has 2"
    ):
        await submit(store, ALICE, limits=[limit])
    after = await store.list_jobs(JobFilter(), limit=10, cursor=None)
    assert [j.id for j in after.items] == [j.id for j in before.items]


async def test_what_a_run_used_is_charged_as_it_ends_and_read_by_a_pass(store: Store) -> None:
    run = await submit(store, ALICE, "vision")
    started = now() - timedelta(hours=2)
    allocation = Allocation(gpus=(GRANT, dataclasses.replace(GRANT, uuid="GPU-2")))
    await store.transition(run.id, RunStatus.ASSIGNED, allocation=allocation)
    await store.transition(run.id, RunStatus.RUNNING, started_at=started)
    ended = started + timedelta(hours=1)
    await store.transition(run.id, RunStatus.SUCCEEDED, exit_code=0, finished_at=ended)
    spent: list[Used] = []

    def choose(queues: Queues, active: list[Run], used: Used) -> Decision:
        spent.append(used)
        return Decision()

    await store.assign_what_fits(choose, share=FairShare())
    fair, day = spent[0].fair, spent[0].gpu_day
    assert [u.owner_uid for u in fair] == [1001]
    # charged to the day it ended (yesterday, just after midnight), decayed by the age of
    # that day's middle
    middle = (ended.timestamp() // 86400) * 86400 + 43200
    decay = FairShare().decay(now().timestamp() - middle)
    cpu_seconds = DEFAULT_PLANS["standard"].cpus * 3600 * decay
    assert fair[0].cpu_seconds == pytest.approx(cpu_seconds, rel=0.001)
    assert fair[0].gpu_seconds == pytest.approx(2 * 3600 * decay, rel=0.001)
    assert [(u.owner_uid, u.project) for u in day] == [(1001, "vision")]
    assert day[0].gpu_seconds == pytest.approx(2 * 3600)
