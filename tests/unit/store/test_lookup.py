"""Jobs and runs by what a request calls them, against the real store: a whole id, a unique
prefix with or without its kind, a job's name (the newest, the caller's own first); an
ambiguous prefix names its candidates; another user's records are never found."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from jobd.domain.jobs import Job, JobSpec
from jobd.domain.owners import EVERYONE, Owner, Reach
from jobd.domain.records import now
from jobd.domain.references import Reference
from jobd.domain.resources import DEFAULT_PLANS
from jobd.domain.runs import pending_run
from jobd.errors import Ambiguous, NotFound
from jobd.services.lookup import resolve
from jobd.store import Store

ALICE = Owner(uid=2001, user="alice", via="unix")
BOB = Owner(uid=2002, user="bob", via="unix")


async def add_job(store: Store, digits: str, owner: Owner, name: str | None, age: int = 0) -> str:
    spec = JobSpec(image="busybox")
    created = now() - timedelta(seconds=age)
    job = Job(id=f"job-{digits:0<32}", name=name, spec=spec, labels={}, owner=owner,
              created_at=created)  # fmt: skip
    run = pending_run(job.id, spec, DEFAULT_PLANS["standard"], created)
    await store.create_job(job, [dataclasses.replace(run, id=f"run-{digits:0<32}")])
    return job.id


def job(text: str) -> Reference:
    return Reference("job", text)


async def test_prefixes_with_or_without_the_kind_resolve_to_the_one_id(store: Store) -> None:
    first = await add_job(store, "0199aa01", ALICE, None)
    await add_job(store, "0199bb02", ALICE, None)
    alice = Reach(ALICE.uid)
    for text in ("job-0199aa", "0199aa", "0199AA0", first):
        assert await resolve(store, job(text), alice, ALICE.uid) == first
    assert await resolve(store, Reference("run", "0199aa"), alice, None) == f"run-{'0199aa01':0<32}"


async def test_an_ambiguous_prefix_names_its_candidates(store: Store) -> None:
    await add_job(store, "0199aa01", ALICE, "train")
    await add_job(store, "0199aa02", ALICE, None)
    with pytest.raises(Ambiguous) as caught:
        await resolve(store, job("0199aa"), Reach(ALICE.uid), ALICE.uid)
    assert caught.value.status == 409
    message = caught.value.message
    assert f"job-{'0199aa02':0<32}, job-{'0199aa01':0<32} (train)" in message
    assert "give more of the id" in message


async def test_candidates_are_bounded(store: Store) -> None:
    for number in range(15):
        await add_job(store, f"0199cc{number:02x}", ALICE, None)
    with pytest.raises(Ambiguous) as caught:
        await resolve(store, job("0199cc"), Reach(ALICE.uid), ALICE.uid)
    assert caught.value.message.count("job-0199cc") == 10
    assert "and more" in caught.value.message


async def test_a_name_is_the_newest_job_of_that_name_the_callers_own_first(store: Store) -> None:
    await add_job(store, "0199dd01", ALICE, "train", age=60)
    newest = await add_job(store, "0199dd02", ALICE, "train", age=30)
    bobs = await add_job(store, "0199dd03", BOB, "train")
    assert await resolve(store, job("train"), Reach(ALICE.uid), ALICE.uid) == newest
    assert await resolve(store, job("train"), EVERYONE, ALICE.uid) == newest  # an admin's own
    assert await resolve(store, job("train"), EVERYONE, None) == bobs  # jobd's: the newest


async def test_another_users_records_are_not_found(store: Store) -> None:
    await add_job(store, "0199ee01", BOB, "bobs")
    alice = Reach(ALICE.uid)
    for reference in (job("0199ee"), job("bobs"), Reference("run", "run-0199ee")):
        with pytest.raises(NotFound):
            await resolve(store, reference, alice, ALICE.uid)


async def test_a_deleted_job_is_not_found(store: Store) -> None:
    gone = await add_job(store, "0199ff01", ALICE, "old")
    await store.delete_job(gone)
    with pytest.raises(NotFound):
        await resolve(store, job("old"), Reach(ALICE.uid), ALICE.uid)


@pytest.mark.parametrize(
    ("text", "hint"),
    [("job-019", "at least 4 hex digits"), ("019", "at least 4 hex digits"), ("xyz!", "")],
)
async def test_what_names_nothing_is_not_found(store: Store, text: str, hint: str) -> None:
    await add_job(store, "01900001", ALICE, None)
    with pytest.raises(NotFound, match=f"job {text} not found") as caught:
        await resolve(store, job(text), Reach(ALICE.uid), ALICE.uid)
    assert hint in caught.value.message


async def test_a_whole_id_is_taken_as_given(store: Store) -> None:
    whole = f"run-{'7' * 32}"  # nothing read: whoever reads it says whether it is there
    assert await resolve(store, Reference("run", whole), EVERYONE, None) == whole
