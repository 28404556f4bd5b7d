"""The audit log: entries appended, read newest first (all, or one user's), and pruned by age
in small batches.

The table has no index but its rowid, on purpose: entries arrive in time order, so pruning
walks from the oldest row and a page is read back from the newest; each index cost every
submission a B-tree insert (together a sixth of its CPU). A filter by user reads back until
it has a page of that user's entries."""

from __future__ import annotations

import sqlite3

import aiosqlite

from jobd.domain.audit import AuditEntry
from jobd.store.rows import fetch_all, to_json

PRUNE_BATCH = 1000  # rows a prune deletes per write: never a long hold on the writer


def record(db: sqlite3.Connection, entries: list[AuditEntry]) -> None:
    db.executemany(
        "INSERT INTO audit (at, user, uid, via, token_id, peer, method, path, status, ids)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [_values(entry) for entry in entries],
    )


def _values(entry: AuditEntry) -> tuple[object, ...]:
    return (
        entry.at.timestamp(),
        entry.user,
        entry.uid,
        entry.via,
        entry.token_id,
        entry.peer,
        entry.method,
        entry.path,
        entry.status,
        to_json(list(entry.ids)),
    )


def prune(db: sqlite3.Connection, before: float) -> int:
    """Delete up to PRUNE_BATCH entries older than `before`; how many went."""
    return db.execute(
        "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? ORDER BY id LIMIT ?)",
        (before, PRUNE_BATCH),
    ).rowcount


async def entries(
    db: aiosqlite.Connection, *, user: str | None, before_id: int | None, limit: int
) -> list[AuditEntry]:
    """Newest first; one user's, or all; those older than entry `before_id` (a cursor)."""
    clauses: list[str] = []
    params: list[object] = []
    if user is not None:
        clauses.append("user = ?")
        params.append(user)
    if before_id is not None:
        clauses.append("id < ?")
        params.append(before_id)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = await fetch_all(
        db, f"SELECT * FROM audit{where} ORDER BY id DESC LIMIT ?", (*params, limit)
    )
    return [AuditEntry.from_row(row) for row in rows]
