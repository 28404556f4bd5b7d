"""Uploads in the store: a job's inputs are written with the job, in its transaction; an upload
a job names is neither deleted nor expired; a job's inputs start their time to expiry again when
they stop being named."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta

import pytest

from jobd.domain.jobs import Job, JobFilter, JobSpec
from jobd.domain.owners import EVERYONE, Owner
from jobd.domain.records import new_id, now
from jobd.domain.uploads import InputFile, Upload
from jobd.errors import Conflict, NotFound, NotHere
from jobd.store import Store

OWNER = Owner(uid=1000, user="dev", via="unix")
LONG_AGO = now() - timedelta(days=30)


async def uploaded(
    store: Store, name: str = "scene.blend", *, used_at: datetime | None = None
) -> Upload:
    upload = Upload(
        slug=new_id("upload"),
        name=name,
        size_bytes=12,
        sha256="ab" * 32,
        owner=OWNER,
        created_at=used_at or now(),
        used_at=used_at or now(),
    )
    await store.create_upload(upload)
    return upload


async def job_with(store: Store, *uploads: Upload) -> Job:
    spec = JobSpec(image="busybox", inputs=tuple(InputFile.of(u) for u in uploads))
    job = Job(id=new_id("job"), name=None, spec=spec, labels={}, owner=OWNER, created_at=now())
    await store.create_job(job, [])
    return job


async def test_a_jobs_inputs_are_kept_with_it_and_hold_their_uploads(store: Store) -> None:
    scene, other = await uploaded(store), await uploaded(store, "other.blend")
    job = await job_with(store, scene)
    assert (await store.get_job(job.id, reach=EVERYONE)).spec.inputs == (InputFile.of(scene),)
    assert await store.upload_users([scene.slug, other.slug]) == {
        scene.slug: [job.id], other.slug: []
    }  # fmt: skip
    with pytest.raises(Conflict, match=job.id):
        await store.delete_upload(scene.slug)
    assert (await store.delete_upload(other.slug)).slug == other.slug
    with pytest.raises(NotFound):
        await store.get_upload(other.slug, reach=EVERYONE)


async def test_an_upload_gone_meanwhile_fails_the_jobs_creation_whole(store: Store) -> None:
    scene = await uploaded(store)
    await store.delete_upload(scene.slug)  # after the service checked it, before the write
    with pytest.raises(NotHere, match=scene.slug):
        await job_with(store, scene)
    assert (await store.list_jobs(JobFilter(), limit=10, cursor=None)).items == []
    assert await store.upload_users([scene.slug]) == {scene.slug: []}


async def test_expiry_takes_only_uploads_no_job_names_unused_for_long(store: Store) -> None:
    old = await uploaded(store, "old", used_at=LONG_AGO)
    held = await uploaded(store, "held", used_at=LONG_AGO)
    fresh = await uploaded(store, "fresh")
    await job_with(store, held)
    expired = await store.expire_uploads((now() - timedelta(days=7)).timestamp())
    assert [u.slug for u in expired] == [old.slug]
    assert {u.slug for u in await store.list_uploads(reach=EVERYONE)} == {held.slug, fresh.slug}


async def test_inputs_a_job_stops_naming_start_their_expiry_again(store: Store) -> None:
    held = await uploaded(store, "held", used_at=LONG_AGO)
    job = await job_with(store, held)
    before = time.time()
    changed = dataclasses.replace(job, spec=dataclasses.replace(job.spec, inputs=()))
    await store.update_job(changed, reschedule=False)
    upload = await store.get_upload(held.slug, reach=EVERYONE)
    assert upload.used_at.timestamp() >= before
    assert await store.upload_users([held.slug]) == {held.slug: []}


async def test_a_purged_jobs_inputs_start_their_expiry_again(store: Store) -> None:
    held = await uploaded(store, "held", used_at=LONG_AGO)
    job = await job_with(store, held)
    await store.delete_job(job.id)
    assert await store.upload_users([held.slug]) == {held.slug: [job.id]}, "until it is purged"
    before = time.time()
    assert await store.purge_job(job.id)
    assert (await store.get_upload(held.slug, reach=EVERYONE)).used_at.timestamp() >= before
    assert await store.expire_uploads((now() - timedelta(days=7)).timestamp()) == []


async def test_uploads_of_one_content_are_found_by_its_checksum(store: Store) -> None:
    a, b = await uploaded(store, "a"), await uploaded(store, "b")
    assert [u.slug for u in await store.list_uploads(sha256="ab" * 32, reach=EVERYONE)] == [
        a.slug,
        b.slug,
    ]
    assert await store.list_uploads(sha256="cd" * 32, reach=EVERYONE) == []
