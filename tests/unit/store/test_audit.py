"""The audit log's store: entries read newest first, by user, a page at a time; old ones
pruned in batches until none is left."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobd.domain.audit import AuditEntry, created_ids
from jobd.domain.records import now
from jobd.store import Store
from jobd.store import audit as audit_queries


def entry(user: str, days_ago: float, status: int = 201) -> AuditEntry:
    return AuditEntry(at=now() - timedelta(days=days_ago), user=user, uid=1, via="unix",
                      token_id=None, peer="unix", method="POST", path="/v1/jobs",
                      status=status, ids=("job-1",))  # fmt: skip


async def test_entries_newest_first_by_user_and_by_page(store: Store) -> None:
    for user in ("alice", "bob", "alice"):
        await store.audit([entry(user, 0)])
    every = await store.audit_entries(user=None, before_id=None, limit=10)
    assert [e.user for e in every] == ["alice", "bob", "alice"] and every[0].id == 3
    assert [e.id for e in await store.audit_entries(user="alice", before_id=None, limit=10)] == [
        3, 1]  # fmt: skip
    assert [e.id for e in await store.audit_entries(user=None, before_id=3, limit=1)] == [2]
    assert every[0].to_api()["outcome"] == "ok" and entry("x", 0, 404).outcome == "refused"


async def test_old_entries_are_pruned_in_batches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_queries, "PRUNE_BATCH", 2)
    for days in (100, 95, 91, 10, 0):
        await store.audit([entry("alice", days)])
    assert await store.prune_audit(now() - timedelta(days=90)) == 3
    left = await store.audit_entries(user=None, before_id=None, limit=10)
    assert len(left) == 2


def test_created_ids_never_take_a_secret() -> None:
    assert created_ids({"id": "job-1", "latestRunId": "run-1", "image": "x"}) == ("job-1", "run-1")
    assert created_ids({"token": {"id": "tok-1", "name": None}, "secret": "jobd_x"}) == ("tok-1",)
