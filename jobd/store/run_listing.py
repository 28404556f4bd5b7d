"""Runs across jobs: every run within reach, newest first, filtered, a page at a time (GET
/v1/runs). The runs of deleted jobs are gone from it, as their jobs are.

Each run carries its job's owner and project, and the listing indexes hold each run's status,
trigger and kind beside its time: a page is a walk of one index, newest first, that tests
those filters on the index itself and reads only the rows it keeps. A caller with projects
walks their own runs and their projects' runs apart, and the two walks are merged. A label
that few runs carry is read the other way round: its jobs' runs, sorted (a walk that probed
every run for a rare label would read them all)."""

from __future__ import annotations

from typing import Any

import aiosqlite

from jobd.domain.owners import Reach
from jobd.domain.run_filter import RunFilter
from jobd.domain.runs import Run
from jobd.store.rows import Page, decode_cursor, fetch_all, fetch_one, page_cursor

LABEL_FEW = 5000  # a label on at most this many runs: its jobs' runs are read and sorted
_NEWEST = " ORDER BY r.created_at DESC, r.id DESC LIMIT ?"
_LABELLED = (
    "EXISTS (SELECT 1 FROM job_labels l WHERE l.job_id = r.job_id AND l.key = ? AND l.value = ?)"
)


async def list_runs(
    db: aiosqlite.Connection, where: RunFilter, *, limit: int, cursor: str | None
) -> Page[Run]:
    by_label = bool(where.labels) and await _few_labelled(db, where)
    sql, params = runs_query(where, cursor, limit + 1, by_label=by_label)
    rows = await fetch_all(db, sql, params)
    runs = [Run.from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(items=runs, next_cursor=page_cursor(runs[-1]) if more and runs else None)


async def _few_labelled(db: aiosqlite.Connection, where: RunFilter) -> bool:
    """Whether the first label's jobs have at most LABEL_FEW runs (counted up to one more)."""
    key, value = next(iter(where.labels.items()))
    row = await fetch_one(
        db,
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM job_labels l"
        " CROSS JOIN runs r INDEXED BY runs_job_created ON r.job_id = l.job_id"
        " WHERE l.key = ? AND l.value = ? LIMIT ?)",
        (key, value, LABEL_FEW + 1),
    )
    return bool(row is not None and row["n"] <= LABEL_FEW)


def runs_query(
    where: RunFilter, cursor: str | None, limit: int, *, by_label: bool = False
) -> tuple[str, list[Any]]:
    """The first `limit` runs matching `where`, newest first, after `cursor`; `by_label`:
    read from the first label's jobs."""
    source = "runs r JOIN jobs j ON j.id = r.job_id"
    clauses, params = _narrowing(where, cursor, skip=1 if by_label else 0)
    if by_label:
        source = "job_labels l0 CROSS JOIN " + source.replace(
            "runs r", "runs r INDEXED BY runs_job_created ON r.job_id = l0.job_id", 1
        )
        key, value = next(iter(where.labels.items()))
        clauses, params = ["l0.key = ?", "l0.value = ?", *clauses], [key, value, *params]
    selects: list[str] = []
    values: list[Any] = []
    for whose, whose_params in _whose(where.reach):
        condition = " AND ".join([*whose, *clauses])
        selects.append(f"SELECT r.* FROM {source} WHERE {condition}{_NEWEST}")
        values += [*whose_params, *params, limit]
    if len(selects) == 1:
        return selects[0], values
    merged = " UNION ALL ".join(f"SELECT * FROM ({select})" for select in selects)
    return f"{merged} ORDER BY created_at DESC, id DESC LIMIT ?", [*values, limit]


def _whose(reach: Reach) -> list[tuple[list[str], list[Any]]]:
    """The walks that together cover the runs `reach` reaches: everyone's; one user's; or
    theirs and, apart, their projects' runs of other owners."""
    if reach.everyone:
        return [([], [])]
    own: tuple[list[str], list[Any]] = (["r.owner_uid = ?"], [reach.uid])
    if not reach.projects:
        return [own]
    names = sorted(reach.projects)
    shared = f"r.project IN ({', '.join('?' * len(names))})"
    return [own, ([shared, "r.owner_uid IS NOT ?"], [*names, reach.uid])]


def _narrowing(where: RunFilter, cursor: str | None, *, skip: int) -> tuple[list[str], list[Any]]:
    """The clauses of every filter but whose runs they are (and the first `skip` labels)."""
    clauses: list[str] = ["j.deleted_at IS NULL"]
    params: list[Any] = []
    if where.project is not None:
        clauses.append("r.project = ?")
        params.append(where.project)
    if where.statuses:
        clauses.append(f"r.status IN ({', '.join('?' * len(where.statuses))})")
        params += sorted(s.value for s in where.statuses)
    if where.trigger is not None:
        clauses.append("r.trigger = ?")
        params.append(where.trigger.value)
    if where.kind is not None:
        clauses.append("r.kind = ?")
        params.append(where.kind.value)
    for key, value in list(where.labels.items())[skip:]:
        clauses.append(_LABELLED)
        params += [key, value]
    if where.created_after is not None:
        clauses.append("r.created_at >= ?")
        params.append(where.created_after.timestamp())
    if where.created_before is not None:
        clauses.append("r.created_at < ?")
        params.append(where.created_before.timestamp())
    if cursor:
        clauses.append("(r.created_at, r.id) < (?, ?)")  # a row value: an index SEARCH
        params += list(decode_cursor(cursor))
    return clauses, params
