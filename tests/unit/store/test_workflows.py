"""Dependencies and arrays in the real SQLite store: held runs stay out of the queue's index,
and are let go, or failed, in the transaction that ended what they waited for."""

from __future__ import annotations

from collections.abc import Sequence

from jobd.domain.jobs import Job, JobSpec, RetryPolicy
from jobd.domain.owners import EVERYONE, Owner
from jobd.domain.records import new_id, now
from jobd.domain.resources import DEFAULT_PLANS
from jobd.domain.runs import Run, submission
from jobd.domain.sharing import FairShare
from jobd.domain.states import Failure, FailureType, RunStatus
from jobd.domain.workflows import ArraySpec, Condition, Dependency, Held
from jobd.store import Store
from tests.unit.store.test_queue import take_first

OWNER = Owner(uid=1000, user="dev", via="unix")


async def submit(
    store: Store,
    *,
    after: Sequence[Dependency] = (),
    array: ArraySpec | None = None,
    retry: RetryPolicy | None = None,
) -> list[Run]:
    spec = JobSpec(image="busybox", array=array, retry=retry)
    job = Job(id=new_id("job"), name=None, spec=spec, labels={}, owner=OWNER, created_at=now())
    runs = submission(job.id, spec, DEFAULT_PLANS["standard"], now())
    await store.create_job(job, runs, after=after)
    return runs


async def end(store: Store, run_id: str, status: RunStatus, exit_code: int = 0) -> Run:
    """Place, start and end a run as the scheduler would."""
    for step in (RunStatus.ASSIGNED, RunStatus.RUNNING):
        assert await store.transition(run_id, step) is not None
    failure = None
    if status is RunStatus.FAILED:
        failure = Failure(type=FailureType.EXIT_CODE, message=f"exited with code {exit_code}")
    if status is RunStatus.CANCELLED:
        failure = Failure(type=FailureType.CANCELLED, message="cancelled by request")
    ended = await store.transition(
        run_id, status, exit_code=exit_code, failure=failure, finished_at=now()
    )
    assert ended is not None
    return ended


async def get(store: Store, run: Run | str) -> Run:
    return await store.get_run(run if isinstance(run, str) else run.id, reach=EVERYONE)


def on(run: Run, condition: Condition = Condition.OK) -> Dependency:
    return Dependency(on=run.id, condition=condition)


async def placeable(store: Store) -> list[str]:
    """The runs a placement pass sees (and places, so call it once per test)."""
    seen: list[str] = []
    await store.assign_what_fits(take_first(10_000, seen), share=FairShare())
    return seen


async def test_a_dependent_run_is_held_out_of_the_queue_until_its_run_succeeds(
    store: Store,
) -> None:
    [first] = await submit(store)
    [second] = await submit(store, after=[on(first)])
    held = await get(store, second)
    assert held.held is Held.AFTER and held.after == (on(first),)
    assert await store.waits_on(second.id) == [on(first)]
    await end(store, first.id, RunStatus.SUCCEEDED)
    released = await get(store, second)
    assert released.status is RunStatus.PENDING and released.held is None
    assert (await store.run_events(second.id))[-1]["detail"] == "its dependencies are met"
    assert await store.waits_on(second.id) == []
    assert await placeable(store) == [second.id]


async def test_placement_never_reads_a_held_run(store: Store) -> None:
    [running] = await submit(store)
    await store.transition(running.id, RunStatus.ASSIGNED)
    waiting = [(await submit(store, after=[on(running)]))[0] for _ in range(5)]
    [free] = await submit(store)
    assert await placeable(store) == [free.id]
    assert [(await get(store, w)).held for w in waiting] == [Held.AFTER] * 5


async def test_a_failed_dependency_fails_what_waits_and_what_waits_on_that(store: Store) -> None:
    [first] = await submit(store)
    [second] = await submit(store, after=[on(first)])
    [third] = await submit(store, after=[on(second, Condition.ANY)])
    await end(store, first.id, RunStatus.FAILED, exit_code=3)
    failed = await get(store, second)
    assert failed.status is RunStatus.FAILED and failed.failure is not None
    assert failed.failure.type is FailureType.DEPENDENCY_FAILED
    assert failed.failure.message == f"dependency failed: run {first.id} did not succeed (after ok)"
    assert failed.started_at is None and failed.retried_by is None
    # any: its run ended (failed) however, so the third may start
    assert (await get(store, third)).held is None


async def test_notok_waits_for_a_failure_and_fails_on_a_success(store: Store) -> None:
    [good, bad] = [(await submit(store))[0] for _ in range(2)]
    [on_good] = await submit(store, after=[on(good, Condition.NOTOK)])
    [on_bad] = await submit(store, after=[on(bad, Condition.NOTOK)])
    await end(store, good.id, RunStatus.SUCCEEDED)
    await end(store, bad.id, RunStatus.CANCELLED, exit_code=143)
    failed = await get(store, on_good)
    assert failed.failure and failed.failure.message.endswith("succeeded (after notok)")
    assert (await get(store, on_bad)).held is None


async def test_what_already_ended_is_judged_at_submission(store: Store) -> None:
    [done] = await submit(store)
    await end(store, done.id, RunStatus.SUCCEEDED)
    [free] = await submit(store, after=[on(done)])
    assert (await get(store, free)).held is None
    [doomed] = await submit(store, after=[on(done, Condition.NOTOK)])
    assert (await get(store, doomed)).status is RunStatus.FAILED


async def test_a_dependency_on_a_retried_run_waits_for_its_retry(store: Store) -> None:
    [flaky] = await submit(store, retry=RetryPolicy(max_attempts=2, backoff_seconds=0))
    [waits] = await submit(store, after=[on(flaky)])
    failed = await end(store, flaky.id, RunStatus.FAILED, exit_code=1)
    assert failed.retried_by is not None
    assert (await get(store, waits)).held is Held.AFTER
    retry = Dependency(on=failed.retried_by, condition=Condition.OK)
    assert await store.waits_on(waits.id) == [retry]
    await end(store, failed.retried_by, RunStatus.SUCCEEDED)
    assert (await get(store, waits)).held is None
    # given the first attempt once it was retried, a new run waits on the latest attempt
    [later] = await submit(store, after=[on(flaky)])
    assert (await get(store, later)).held is None


async def test_an_array_runs_at_most_its_parallelism_lowest_index_first(store: Store) -> None:
    runs = await submit(store, array=ArraySpec(indices="0-9", parallelism=3))
    assert [r.array_index for r in runs] == list(range(10))
    assert {r.array_id for r in runs} == {runs[0].id}
    stored = [await get(store, r) for r in runs]
    assert [r.held for r in stored] == [None] * 3 + [Held.ARRAY] * 7
    assert await placeable(store) == [r.id for r in runs[:3]]
    await store.transition(runs[0].id, RunStatus.RUNNING)
    await store.transition(runs[0].id, RunStatus.SUCCEEDED, exit_code=0, finished_at=now())
    assert [(await get(store, r)).held for r in runs[3:5]] == [None, Held.ARRAY]
    assert await store.array_counts(runs[0].id) == {"succeeded": 1, "assigned": 2, "pending": 7}
    job = await store.get_job(runs[0].job_id, reach=EVERYONE)
    assert job.latest_run_id == runs[0].id and job.status is RunStatus.RUNNING


async def test_an_array_retries_an_index_in_its_own_slot(store: Store) -> None:
    retry = RetryPolicy(max_attempts=2, backoff_seconds=0)
    runs = await submit(store, array=ArraySpec(indices="0-3", parallelism=1), retry=retry)
    failed = await end(store, runs[0].id, RunStatus.FAILED, exit_code=1)
    assert failed.retried_by is not None
    attempt = await get(store, failed.retried_by)
    assert (attempt.array_id, attempt.array_index, attempt.held) == (runs[0].id, 0, None)
    assert (await get(store, runs[1])).held is Held.ARRAY  # the retry holds the one slot
    assert await store.array_counts(runs[0].id) == {"pending": 4}
    job = await store.get_job(runs[0].job_id, reach=EVERYONE)
    assert job.latest_run_id == runs[0].id


async def test_a_dependency_on_an_array_waits_for_all_of_it(store: Store) -> None:
    array = await submit(store, array=ArraySpec(indices="0-2"))
    whole = Dependency(on=array[0].id, condition=Condition.OK, array=True)
    [after_all] = await submit(store, after=[whole])
    [after_any] = await submit(
        store, after=[Dependency(on=array[0].id, condition=Condition.NOTOK, array=True)]
    )
    for run in array[:2]:
        await end(store, run.id, RunStatus.SUCCEEDED)
    assert (await get(store, after_all)).held is Held.AFTER
    await end(store, array[2].id, RunStatus.SUCCEEDED)
    assert (await get(store, after_all)).held is None
    assert (await get(store, after_any)).status is RunStatus.FAILED
    assert (await store.get_job(array[0].job_id, reach=EVERYONE)).status is RunStatus.SUCCEEDED


async def test_an_array_that_waits_starts_its_runs_once_its_dependency_is_met(
    store: Store,
) -> None:
    [first] = await submit(store)
    array = await submit(store, array=ArraySpec(indices="0-4", parallelism=2), after=[on(first)])
    assert {(await get(store, r)).held for r in array} == {Held.AFTER}
    await end(store, first.id, RunStatus.SUCCEEDED)
    assert [(await get(store, r)).held for r in array] == [None, None] + [Held.ARRAY] * 3


async def test_an_array_whose_dependency_fails_fails_whole(store: Store) -> None:
    [first] = await submit(store)
    array = await submit(store, array=ArraySpec(indices="0-4", parallelism=2), after=[on(first)])
    await end(store, first.id, RunStatus.FAILED, exit_code=1)
    statuses = {(await get(store, r)).status for r in array}
    assert statuses == {RunStatus.FAILED}
    assert (await store.get_job(array[0].job_id, reach=EVERYONE)).status is RunStatus.FAILED


async def test_retention_keeps_a_jobs_latest_array_whole(store: Store) -> None:
    older = await submit(store, array=ArraySpec(indices="0-1"))
    for run in older:
        await end(store, run.id, RunStatus.SUCCEEDED)
    job_id = older[0].job_id
    latest = submission(
        job_id,
        JobSpec(image="busybox", array=ArraySpec(indices="0-1")),
        DEFAULT_PLANS["standard"],
        now(),
    )
    await store.add_runs(latest)
    for run in latest:
        await end(store, run.id, RunStatus.SUCCEEDED)
    head, finished = (await store.finished_runs([job_id]))[job_id]
    assert head == latest[0].id
    assert {f.run_id for f in finished} == {r.id for r in older}
