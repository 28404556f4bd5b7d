"""Named volumes in the store: made on a job's first use of a name, owned by its owner,
tracked by the runs that mount them, and never deleted while one of those is queued or active."""

from __future__ import annotations

import pytest

from jobd.domain.jobs import Job, JobSpec
from jobd.domain.owners import EVERYONE, Owner
from jobd.domain.records import new_id, now
from jobd.domain.resources import DEFAULT_PLANS
from jobd.domain.runs import Run, pending_run
from jobd.domain.states import RunStatus
from jobd.domain.volumes import Volume, VolumeMount
from jobd.errors import Conflict, NotFound
from jobd.store import Store

OWNER = Owner(uid=1000, user="dev", via="unix")


async def job_using(store: Store, *sources: str) -> Run:
    spec = JobSpec(
        image="busybox",
        volumes=tuple(VolumeMount(source=s, target=f"/m{i}") for i, s in enumerate(sources)),
    )
    job = Job(id=new_id("job"), name=None, spec=spec, labels={}, owner=OWNER, created_at=now())
    run = pending_run(job.id, spec, DEFAULT_PLANS["standard"], now())
    await store.create_job(job, [run])
    return run


async def test_a_jobs_first_use_of_a_name_makes_the_volume_its_owners(store: Store) -> None:
    run = await job_using(store, "cache", "/srv/host/path")
    volumes = await store.list_volumes(reach=EVERYONE)
    assert [(v.name, v.owner) for v in volumes] == [("cache", OWNER)], "host paths are not volumes"
    assert await store.volume_users(["cache", "other"]) == {"cache": [run.id], "other": []}


async def test_a_volume_used_by_a_queued_or_active_run_is_not_deleted(store: Store) -> None:
    run = await job_using(store, "cache")
    with pytest.raises(Conflict, match=f"in use by {run.id}"):
        await store.delete_volume("cache")
    await store.transition(run.id, RunStatus.CANCELLED)
    assert await store.volume_users(["cache"]) == {"cache": []}
    await store.delete_volume("cache")
    with pytest.raises(NotFound):
        await store.get_volume("cache", reach=EVERYONE)
    with pytest.raises(NotFound):
        await store.delete_volume("cache")


async def test_a_name_is_created_once(store: Store) -> None:
    volume = Volume(name="data", owner=OWNER, created_at=now(), labels={"team": "x"})
    await store.create_volume(volume)
    with pytest.raises(Conflict, match="exists"):
        await store.create_volume(volume)
    other = Owner(uid=1001, user="other", via="unix")
    await store.ensure_volume(Volume(name="data", owner=other, created_at=now()))
    assert (await store.get_volume("data", reach=EVERYONE)) == volume, (
        "a later first use changes nothing"
    )
