"""Runs across jobs in the real store: whose they are (one user's; theirs and their projects',
two walks merged), every filter, pages that walk them all once, and a label read either way
(its jobs' runs sorted, or every run probed) with the same answer."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobd.domain.jobs import Job, JobSpec, Kind
from jobd.domain.owners import EVERYONE, Owner, Reach
from jobd.domain.records import new_id, now
from jobd.domain.resources import DEFAULT_PLANS
from jobd.domain.run_filter import RunFilter
from jobd.domain.runs import Run, pending_run
from jobd.domain.states import RunStatus, Trigger
from jobd.store import Store, run_listing

ALICE = Owner(uid=2001, user="alice", via="unix")
BOB = Owner(uid=2002, user="bob", via="unix")
START = now() - timedelta(hours=1)


class History:
    """Jobs made one after another, each run a second after the one before."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs: list[Run] = []  # oldest first

    async def job(
        self,
        owner: Owner,
        labels: dict[str, str],
        *,
        project: str | None = None,
        kind: Kind = Kind.BATCH,
        runs: int = 1,
    ) -> Job:
        spec = JobSpec(image="busybox", kind=kind)
        moment = START + timedelta(seconds=len(self.runs))
        job = Job(id=new_id("job"), name=None, spec=spec, labels=labels, owner=owner,
                  created_at=moment, project=project)  # fmt: skip
        plan, trigger = DEFAULT_PLANS["standard"], Trigger.API
        made = []
        for n in range(runs):
            at = moment + timedelta(seconds=n)
            made.append(pending_run(job.id, spec, plan, at, trigger=trigger))
            trigger = Trigger.RETRY
        await self.store.create_job(job, made[:1])
        if made[1:]:
            await self.store.add_runs(made[1:])
        self.runs += made
        return job


@pytest.fixture
async def history(store: Store) -> History:
    made = History(store)
    await made.job(ALICE, {"team": "a"}, runs=2)
    await made.job(BOB, {"team": "a"}, project="vision")
    await made.job(ALICE, {"team": "b"}, kind=Kind.PERSISTENT)
    await made.job(BOB, {"team": "b"})
    await made.job(ALICE, {"team": "a", "size": "big"}, project="vision")
    return made


async def listed(store: Store, where: RunFilter, limit: int = 100) -> list[Run]:
    """Every page, walked with its cursor."""
    found: list[Run] = []
    cursor = None
    while True:
        page = await store.runs_across(where, limit=limit, cursor=cursor)
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            return found


def newest_first(runs: list[Run]) -> list[str]:
    return [run.id for run in reversed(runs)]


async def test_whose_runs_one_users_theirs_and_their_projects_or_everyones(
    store: Store, history: History
) -> None:
    runs = history.runs
    owners = [ALICE, ALICE, BOB, ALICE, BOB, ALICE]
    alices = [r for r, o in zip(runs, owners, strict=True) if o == ALICE]
    in_reach = [r for r, o in zip(runs, owners, strict=True) if o == ALICE or r is runs[2]]
    for limit in (1, 2, 100):
        assert [r.id for r in await listed(store, RunFilter(), limit)] == newest_first(runs)
        mine = await listed(store, RunFilter(reach=Reach(ALICE.uid)), limit)
        assert [r.id for r in mine] == newest_first(alices)
        shared = RunFilter(reach=Reach(ALICE.uid, frozenset({"vision"})))
        assert [r.id for r in await listed(store, shared, limit)] == newest_first(in_reach)
    projects = RunFilter(reach=Reach(BOB.uid, frozenset({"vision"})), project="vision")
    assert [r.id for r in await listed(store, projects)] == newest_first([runs[2], runs[5]])
    assert await listed(store, RunFilter(reach=Reach(4242))) == []


async def test_each_filter(store: Store, history: History) -> None:
    runs = history.runs
    retry = await listed(store, RunFilter(trigger=Trigger.RETRY))
    assert [r.id for r in retry] == [runs[1].id]
    persistent = await listed(store, RunFilter(kind=Kind.PERSISTENT))
    assert [r.id for r in persistent] == [runs[3].id]
    assert len(await listed(store, RunFilter(kind=Kind.BATCH))) == 5
    assert len(await listed(store, RunFilter(statuses=frozenset({RunStatus.PENDING})))) == 6
    assert await listed(store, RunFilter(statuses=frozenset({RunStatus.FAILED}))) == []
    window = RunFilter(created_after=runs[2].created_at, created_before=runs[4].created_at)
    assert [r.id for r in await listed(store, window)] == [runs[3].id, runs[2].id]
    await store.delete_job(runs[0].job_id)
    assert runs[0].id not in {r.id for r in await listed(store, RunFilter())}


@pytest.mark.parametrize("few", [run_listing.LABEL_FEW, 0])
async def test_a_label_reads_the_same_either_way(
    store: Store, history: History, few: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """few=0: every label counts as common, so every run is probed for it."""
    monkeypatch.setattr(run_listing, "LABEL_FEW", few)
    runs = history.runs
    team_a = RunFilter(labels={"team": "a"})
    assert [r.id for r in await listed(store, team_a, 1)] == newest_first(
        [runs[0], runs[1], runs[2], runs[5]]
    )
    both = RunFilter(labels={"team": "a", "size": "big"}, reach=Reach(ALICE.uid))
    assert [r.id for r in await listed(store, both)] == [runs[5].id]
    shared = RunFilter(labels={"team": "a"}, reach=Reach(ALICE.uid, frozenset({"vision"})))
    assert [r.id for r in await listed(store, shared, 2)] == newest_first(
        [runs[0], runs[1], runs[2], runs[5]]
    )
    assert await listed(store, RunFilter(labels={"team": "z"}, reach=EVERYONE)) == []
