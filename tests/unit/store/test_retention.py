"""Pruning in the real store: the jobs with runs to weigh (within a reach), their finished
runs, and removing runs with their events and metric points, never a job's latest."""

from __future__ import annotations

from jobd.domain.metrics import Sample
from jobd.domain.owners import EVERYONE, Reach
from jobd.domain.records import now
from jobd.domain.retention import Retention
from jobd.domain.states import RunStatus
from jobd.errors import NotFound
from jobd.store import Store
from tests.unit.store.test_store import OWNER, make_job, new_run

KEEP_ONE = Retention(keep_last=1, max_age_seconds=0)


async def job_with_runs(store: Store, count: int) -> tuple[str, list[str]]:
    """A job with `count` cancelled runs, oldest first; the last is its latest."""
    job, run = make_job()
    await store.create_job(job, [run])
    run_ids = [run.id]
    for _ in range(count - 1):
        another = new_run(job.id)
        await store.add_runs([another])
        run_ids.append(another.id)
    for run_id in run_ids:
        assert await store.transition(run_id, RunStatus.CANCELLED, detail="done", finished_at=now())
    return job.id, run_ids


async def test_jobs_to_weigh_are_those_past_keep_last_within_reach(store: Store) -> None:
    many, _ = await job_with_runs(store, 3)
    await job_with_runs(store, 1)  # its only run is its latest: nothing to weigh
    found = await store.jobs_to_prune(KEEP_ONE, now(), reach=EVERYONE, after="", limit=10)
    assert found == [many]
    assert await store.jobs_to_prune(KEEP_ONE, now(), reach=EVERYONE, after=many, limit=10) == []
    mine = await store.jobs_to_prune(KEEP_ONE, now(), reach=Reach(OWNER.uid), after="", limit=10)
    assert mine == [many]
    theirs = await store.jobs_to_prune(KEEP_ONE, now(), reach=Reach(4242), after="", limit=10)
    assert theirs == []
    off = Retention(keep_last=0, max_age_seconds=0)
    assert await store.jobs_to_prune(off, now(), reach=EVERYONE, after="", limit=10) == []


async def test_removing_runs_takes_their_events_and_points_but_never_the_latest(
    store: Store,
) -> None:
    job_id, run_ids = await job_with_runs(store, 3)
    latest, finished = (await store.finished_runs([job_id]))[job_id]
    assert latest == run_ids[-1] and {r.run_id for r in finished} == set(run_ids)
    samples = [Sample(r, "cpu_usage", "", 1000.0 + i, 1.0) for r in run_ids for i in range(7)]
    await store.record_metrics(samples, {})
    removed = await store.remove_runs(run_ids)
    assert sorted(removed) == sorted(run_ids[:-1]), "the latest stays"
    for run_id in run_ids[:-1]:
        assert await store.run_events(run_id) == []
        try:
            await store.get_run(run_id, reach=EVERYONE)
        except NotFound:
            continue
        raise AssertionError(f"{run_id} is still there")
    assert (await store.get_run(run_ids[-1], reach=EVERYONE)).id == run_ids[-1]
    size, how = await store.metric_bytes()
    assert how == "dbstat" and size > 0, "the latest run's points stay"


async def test_an_active_run_is_never_removed(store: Store) -> None:
    job, run = make_job()
    await store.create_job(job, [run])
    await store.transition(run.id, RunStatus.ASSIGNED, detail="placed")
    other = new_run(job.id)
    await store.add_runs([other])
    assert await store.remove_runs([run.id, other.id]) == []
