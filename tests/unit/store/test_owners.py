"""Every read of owned rows takes a reach: a user's reaches their own jobs, runs, recipes,
volumes and uploads, and another user's are simply not there; everyone's reaches all."""

from __future__ import annotations

import pytest

from jobd.domain.jobs import Job, JobFilter, JobSpec
from jobd.domain.owners import EVERYONE, Caller, Owner, Reach
from jobd.domain.recipes import Recipe
from jobd.domain.records import new_id, now
from jobd.domain.resources import DEFAULT_PLANS
from jobd.domain.runs import Run, pending_run
from jobd.domain.uploads import Upload
from jobd.domain.volumes import Volume
from jobd.errors import Conflict, Forbidden, NotFound
from jobd.store import Store

ALICE = Owner(uid=2001, user="alice", via="unix")
BOB = Owner(uid=2002, user="bob", via="unix")


async def job_of(store: Store, owner: Owner) -> tuple[Job, Run]:
    spec = JobSpec(image="busybox")
    job = Job(id=new_id("job"), name=None, spec=spec, labels={"t": "x"}, owner=owner,
              created_at=now())  # fmt: skip
    run = pending_run(job.id, spec, DEFAULT_PLANS["standard"], now())
    await store.create_job(job, [run])
    return job, run


def mine(owner: Owner) -> Reach:
    return Reach(owner.uid)


async def test_jobs_and_runs_are_their_owners_alone(store: Store) -> None:
    alices, alices_run = await job_of(store, ALICE)
    bobs, bobs_run = await job_of(store, BOB)
    assert (await store.get_job(alices.id, reach=mine(ALICE))).id == alices.id
    assert (await store.get_run(alices_run.id, reach=mine(ALICE))).id == alices_run.id
    with pytest.raises(NotFound, match=bobs.id):
        await store.get_job(bobs.id, reach=mine(ALICE))
    with pytest.raises(NotFound, match=bobs_run.id):
        await store.get_run(bobs_run.id, reach=mine(ALICE))
    with pytest.raises(NotFound):
        await store.list_runs(bobs.id, limit=10, cursor=None, reach=mine(ALICE))
    assert (await store.get_run(bobs_run.id, reach=EVERYONE)).id == bobs_run.id


async def test_a_listing_shows_one_users_jobs_with_every_other_filter(store: Store) -> None:
    for owner in (ALICE, BOB, ALICE, BOB, ALICE):
        await job_of(store, owner)

    async def listed(where: JobFilter) -> list[Owner]:
        page = await store.list_jobs(where, limit=50, cursor=None)
        return [j.owner for j in page.items]

    assert await listed(JobFilter(reach=mine(ALICE))) == [ALICE] * 3
    assert await listed(JobFilter(reach=mine(BOB), labels={"t": "x"})) == [BOB] * 2
    assert len(await listed(JobFilter(reach=EVERYONE))) == 5
    first = await store.list_jobs(JobFilter(reach=mine(ALICE)), limit=2, cursor=None)
    rest = await store.list_jobs(JobFilter(reach=mine(ALICE)), limit=2, cursor=first.next_cursor)
    assert [j.owner for j in first.items + rest.items] == [ALICE] * 3


async def test_recipes_volumes_and_uploads_are_their_owners_alone(store: Store) -> None:
    moment = now()
    recipe = Recipe(name="train", description=None, config={"image": "busybox"}, owner=BOB,
                    created_at=moment, updated_at=moment)  # fmt: skip
    await store.put_recipe(recipe, replace=False, reach=mine(BOB))
    await store.create_volume(Volume(name="cache", owner=BOB, created_at=moment))
    upload = Upload(slug=new_id("upload"), name="a.bin", size_bytes=1, sha256="ab" * 32,
                    owner=BOB, created_at=moment, used_at=moment)  # fmt: skip
    await store.create_upload(upload)

    with pytest.raises(NotFound):
        await store.get_recipe("train", reach=mine(ALICE))
    with pytest.raises(NotFound):
        await store.get_volume("cache", reach=mine(ALICE))
    with pytest.raises(NotFound):
        await store.get_upload(upload.slug, reach=mine(ALICE))
    assert await store.get_uploads([upload.slug], reach=mine(ALICE)) == {}
    assert await store.list_recipes(reach=mine(ALICE)) == []
    assert await store.list_volumes(reach=mine(ALICE)) == []
    assert await store.list_uploads(reach=mine(ALICE)) == []
    assert await store.list_uploads(sha256="ab" * 32, reach=mine(ALICE)) == []

    assert [r.name for r in await store.list_recipes(reach=mine(BOB))] == ["train"]
    assert [v.name for v in await store.list_volumes(reach=EVERYONE)] == ["cache"]
    assert [u.slug for u in await store.list_uploads(reach=mine(BOB))] == [upload.slug]


async def test_a_recipe_name_another_user_holds_is_not_replaced(store: Store) -> None:
    moment = now()
    bobs = Recipe(name="train", description=None, config={"image": "busybox"}, owner=BOB,
                  created_at=moment, updated_at=moment)  # fmt: skip
    await store.put_recipe(bobs, replace=False, reach=mine(BOB))
    alices = Recipe(name="train", description="mine", config={"image": "alpine"}, owner=ALICE,
                    created_at=moment, updated_at=moment)  # fmt: skip
    with pytest.raises(Conflict, match="another user's recipe"):
        await store.put_recipe(alices, replace=True, reach=mine(ALICE))
    kept = await store.get_recipe("train", reach=EVERYONE)
    assert kept.owner == BOB and kept.config == {"image": "busybox"}
    replaced, created = await store.put_recipe(alices, replace=True, reach=EVERYONE)
    assert not created and replaced.owner == BOB, "an admin's replace keeps the owner"


def test_a_caller_reaches_their_own_and_an_admin_everyones() -> None:
    user = Caller(owner=ALICE, admin=False)
    admin = Caller(owner=BOB, admin=True)
    assert user.reach == Reach(ALICE.uid) and user.listing(False) == Reach(ALICE.uid)
    assert admin.reach == EVERYONE and admin.listing(True) == EVERYONE
    assert admin.listing(False) == Reach(BOB.uid), "an admin lists their own unless asked"
    with pytest.raises(Forbidden, match="alice is not an admin"):
        user.listing(True)
    assert Reach(ALICE.uid).includes(ALICE) and not Reach(ALICE.uid).includes(BOB)
