"""The real SQLite store on a temporary file: guarded transitions, events, lists, migrations."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from jobd.domain.jobs import Job, JobFilter, JobSpec
from jobd.domain.owners import EVERYONE, Owner
from jobd.domain.records import new_id, now
from jobd.domain.resources import DEFAULT_PLANS
from jobd.domain.runs import Run
from jobd.domain.states import Failure, FailureType, RunStatus
from jobd.errors import InvalidRequest, NotFound, StoreError
from jobd.store import Store
from jobd.store.schema import MIGRATIONS

OWNER = Owner(uid=1000, user="dev", via="unix")


def make_job(**labels: str) -> tuple[Job, Run]:
    job = Job(
        id=new_id("job"),
        name="n",
        spec=JobSpec(image="busybox", command=("true",)),
        labels=labels,
        owner=OWNER,
        created_at=now(),
    )
    return job, new_run(job.id)


def new_run(job_id: str) -> Run:
    return Run(
        id=new_id("run"),
        job_id=job_id,
        status=RunStatus.PENDING,
        plan=DEFAULT_PLANS["standard"],
        created_at=now(),
        timeout_seconds=60,
    )


async def test_a_legal_transition_changes_the_run_and_writes_an_event(store: Store) -> None:
    job, run = make_job()
    await store.create_job(job, [run])
    assigned = await store.transition(run.id, RunStatus.ASSIGNED, detail="placed")
    assert assigned is not None and assigned.status is RunStatus.ASSIGNED
    assert (await store.get_job(job.id, reach=EVERYONE)).status is RunStatus.ASSIGNED
    events = await store.run_events(run.id)
    assert [(e["from_status"], e["to_status"]) for e in events] == [
        (None, "pending"),
        ("pending", "assigned"),
    ]


async def test_an_illegal_transition_changes_nothing(store: Store) -> None:
    job, run = make_job()
    await store.create_job(job, [run])
    assert await store.transition(run.id, RunStatus.SUCCEEDED) is None
    assert (await store.get_run(run.id, reach=EVERYONE)).status is RunStatus.PENDING
    assert len(await store.run_events(run.id)) == 1
    assert await store.transition("run-missing", RunStatus.ASSIGNED) is None


async def test_racing_terminal_transitions_let_exactly_one_win(store: Store) -> None:
    job, run = make_job()
    await store.create_job(job, [run])
    await store.transition(run.id, RunStatus.ASSIGNED)
    await store.transition(run.id, RunStatus.RUNNING, started_at=now())
    results = await asyncio.gather(
        store.transition(run.id, RunStatus.CANCELLING),
        store.transition(run.id, RunStatus.SUCCEEDED, exit_code=0, finished_at=now()),
        store.transition(
            run.id,
            RunStatus.FAILED,
            exit_code=1,
            finished_at=now(),
            failure=Failure(type=FailureType.EXIT_CODE, message="1"),
        ),
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1, "whichever lands first makes the others illegal"
    final = await store.get_run(run.id, reach=EVERYONE)
    assert final.status is winners[0].status
    changes = [e["to_status"] for e in await store.run_events(run.id)][3:]
    assert changes == [final.status.value]


async def test_expect_refuses_a_transition_decided_from_a_stale_status(store: Store) -> None:
    job, run = make_job()
    await store.create_job(job, [run])
    await store.transition(run.id, RunStatus.ASSIGNED)
    assert await store.transition(run.id, RunStatus.CANCELLED, expect={RunStatus.PENDING}) is None
    assert not await store.update_run(
        run.id, detail="x", expect={RunStatus.RUNNING}, container_id="c"
    )
    assert (await store.get_run(run.id, reach=EVERYONE)).container_id is None


async def test_fields_round_trip(store: Store) -> None:
    job, run = make_job(team="a")
    await store.create_job(job, [run])
    started = now()
    await store.transition(run.id, RunStatus.ASSIGNED)
    await store.transition(
        run.id, RunStatus.RUNNING, started_at=started, deadline_at=started + timedelta(seconds=60)
    )
    failure = Failure(type=FailureType.OOM_KILLED, message="oom")
    done = await store.transition(
        run.id,
        RunStatus.FAILED,
        exit_code=137,
        failure=failure,
        finished_at=started + timedelta(seconds=2),
    )
    assert done is not None
    assert done.failure == failure and done.exit_code == 137
    assert done.running_seconds == pytest.approx(2.0, abs=0.01)
    loaded = await store.get_job(job.id, reach=EVERYONE)
    assert loaded.labels == {"team": "a"} and loaded.owner == OWNER
    assert loaded.spec == job.spec


async def test_list_jobs_filters_and_pages(store: Store) -> None:
    created = []
    for i in range(7):
        job, run = make_job(parity="odd" if i % 2 else "even")
        await store.create_job(job, [run])
        created.append(job.id)
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_jobs(JobFilter(), limit=3, cursor=cursor)
        seen += [j.id for j in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(created))
    odd = await store.list_jobs(JobFilter(labels={"parity": "odd"}), limit=50, cursor=None)
    assert {j.id for j in odd.items} == set(created[1::2])
    pending = await store.list_jobs(JobFilter(status=RunStatus.PENDING), limit=50, cursor=None)
    assert len(pending.items) == 7
    with pytest.raises(InvalidRequest):
        await store.list_jobs(JobFilter(), limit=3, cursor="garbage!")


async def _walk(store: Store, where: JobFilter, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_jobs(where, limit=limit, cursor=cursor)
        seen += [j.id for j in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


async def test_label_filters_page_newest_first_with_every_other_filter(store: Store) -> None:
    jobs = []
    for i in range(9):
        job, run = make_job(team="a" if i % 3 else "b", tier=str(i % 2))
        await store.create_job(job, [run])
        if i == 4:
            await store.transition(run.id, RunStatus.CANCELLED)
        jobs.append(job)
    newest_first = list(reversed(jobs))
    team_a = [j.id for j in newest_first if j.labels["team"] == "a"]
    assert await _walk(store, JobFilter(labels={"team": "a"}), 2) == team_a
    both = JobFilter(labels={"team": "a", "tier": "1"})
    assert await _walk(store, both, 1) == [
        j.id for j in newest_first if j.labels == {"team": "a", "tier": "1"}
    ]
    cancelled = JobFilter(labels={"team": "a"}, status=RunStatus.CANCELLED)
    assert await _walk(store, cancelled, 5) == [jobs[4].id]
    window = JobFilter(
        labels={"team": "a"},
        created_after=jobs[2].created_at,
        created_before=jobs[7].created_at,
    )
    assert await _walk(store, window, 2) == [
        j.id for j in newest_first if j.labels["team"] == "a" and 2 <= jobs.index(j) < 7
    ]


async def test_an_update_replaces_the_spec_and_the_labels_the_filters_see(store: Store) -> None:
    job, run = make_job(team="a")
    await store.create_job(job, [run])
    changed = dataclasses.replace(
        job, name="renamed", spec=dataclasses.replace(job.spec, image="other"), labels={"t": "b"}
    )
    written = await store.update_job(changed, reschedule=False)
    assert written.name == "renamed" and written.spec.image == "other"
    assert written.latest_run_id == run.id and written.created_at == job.created_at
    assert (await store.get_job(job.id, reach=EVERYONE)).labels == {"t": "b"}
    old = await store.list_jobs(JobFilter(labels={"team": "a"}), limit=5, cursor=None)
    new = await store.list_jobs(JobFilter(labels={"t": "b"}), limit=5, cursor=None)
    assert old.items == [] and [j.id for j in new.items] == [job.id]
    with pytest.raises(NotFound):
        await store.update_job(dataclasses.replace(changed, id="job-missing"), reschedule=False)


async def test_a_version_1_database_keeps_its_labels_filterable(tmp_path: Path) -> None:
    path = tmp_path / "jobd.db"
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
        for name, created in (("old", 100.0), ("new", 200.0)):
            db.execute(
                "INSERT INTO jobs (id, name, image, command, env, plan, timeout_seconds,"
                " network, labels, owner, created_at) VALUES (?, ?, 'busybox', '[]', '{}',"
                " 'standard', 60, 'none', '{\"team\": \"a\"}', ?, ?)",
                (f"job-{name}", name, '{"uid": 1000, "user": "dev", "via": "unix"}', created),
            )
            db.execute("INSERT INTO job_labels VALUES (?, 'team', 'a')", (f"job-{name}",))
    store = await Store.open(path)
    try:
        assert await _walk(store, JobFilter(labels={"team": "a"}), 1) == ["job-new", "job-old"]
    finally:
        await store.close()


async def test_reruns_list_newest_first_and_move_the_job_status(store: Store) -> None:
    job, run = make_job()
    await store.create_job(job, [run])
    await store.transition(run.id, RunStatus.CANCELLED)
    second = new_run(job.id)
    await store.add_runs([second])
    assert (await store.get_job(job.id, reach=EVERYONE)).status is RunStatus.PENDING
    page = await store.list_runs(job.id, limit=10, cursor=None, reach=EVERYONE)
    assert [r.id for r in page.items] == [second.id, run.id]
    with pytest.raises(NotFound):
        await store.add_runs([new_run("job-missing")])


async def test_migrations_are_versioned_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobd.db"
    store = await Store.open(path)
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer"):
        await Store.open(path)


async def test_a_write_is_visible_to_the_next_read_under_concurrency(store: Store) -> None:
    """A half-read statement pins its WAL snapshot; every read must see the latest commit."""

    async def create_then_read() -> None:
        job, run = make_job()
        await store.create_job(job, [run])
        assert (await store.get_job(job.id, reach=EVERYONE)).id == job.id
        assert (await store.get_run(run.id, reach=EVERYONE)).id == run.id

    async def list_pending() -> None:  # the supervisor's reads, interleaved on one connection
        for _ in range(20):
            await store.runs_with_status([RunStatus.PENDING])

    await asyncio.gather(
        *(create_then_read() for _ in range(200)), *(list_pending() for _ in range(10))
    )
