"""Workflows in the store: runs held back by their dependencies or their array's parallelism,
and let go in the very transaction that ended what they waited for, so a crash or a restart
never loses a release nor makes two. A held run is pending with `held` set, which keeps it out
of the queue's index: placement never reads it. A dependency waits on a run, or on an array
(by its first run's id); an array's runs wait on theirs together, as one (`run_id` in
run_dependencies is then the array's id)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import aiosqlite
import orjson

from jobd.domain.runs import Run
from jobd.domain.states import Failure, FailureType, RunStatus
from jobd.domain.workflows import (
    ARRAY_STATUS_ORDER,
    Dependency,
    Ended,
    Verdict,
    never_reason,
    verdict,
)
from jobd.store import runs as run_rows
from jobd.store.rows import fetch_all, to_json

_IN_ACTIVE = "status IN ('assigned', 'running', 'cancelling')"
_UNENDED = "status IN ('pending', 'assigned', 'running', 'cancelling')"
_HELD_AFTER = "status = 'pending' AND held = 'after'"  # the array still waits on `after`
_RELEASED_PENDING = "status = 'pending' AND held IS NULL"  # in flight too: it takes a slot
_RELEASED = (  # held no more: its maxPendingSeconds counts from now
    "held = NULL, pending_until = ? + json_extract(spec, '$.maxPendingSeconds')"
)


def hold(db: sqlite3.Connection, runs: Sequence[Run], after: Sequence[Dependency]) -> None:
    """In the write that adds one submission's `runs`: each dependency judged as things
    stand now (what it names may have ended, or been retried, since the request was read).
    One that can never be met fails the runs at once; those still to wait hold them."""
    key = runs[0].array_id or runs[0].id
    current = [_latest_attempt(db, d) for d in after]
    db.execute(
        "UPDATE runs SET after = ? WHERE id = ? OR array_id = ?",
        (to_json([d.to_api() for d in current]), key, key),
    )
    waits = []
    for dependency in current:
        found = verdict(dependency.condition, _ended(db, dependency))
        if found is Verdict.NEVER:
            _fail_waiting(db, [r.id for r in runs], never_reason(dependency))
            return
        if found is Verdict.WAIT:
            waits.append(dependency)
    if not waits:
        return
    db.executemany(
        "INSERT INTO run_dependencies (run_id, on_id, condition, array) VALUES (?, ?, ?, ?)",
        [(key, d.on, d.condition.value, int(d.array)) for d in waits],
    )
    db.execute(
        "UPDATE runs SET held = 'after', pending_until = NULL WHERE id = ? OR array_id = ?",
        (key, key),
    )


def after_end(db: sqlite3.Connection, run: Run) -> None:
    """In the transaction that ended `run` (after the retry it may have got): what waited on
    it learns how it ended, and a slot of its array frees. A retried run has not ended for
    those who wait on it: they wait on its retry."""
    if run.array_id is None:
        db.execute("DELETE FROM run_dependencies WHERE run_id = ?", (run.id,))
        if run.retried_by is not None:
            db.execute(
                "UPDATE run_dependencies SET on_id = ? WHERE on_id = ?", (run.retried_by, run.id)
            )
            return
        _judge(db, run.id, Ended(done=True, bad=run.status is not RunStatus.SUCCEEDED))
        return
    if not _exists(db, run.array_id, _HELD_AFTER):
        db.execute("DELETE FROM run_dependencies WHERE run_id = ?", (run.array_id,))
    if run.retried_by is None:
        fill_array(db, run.array_id, run.job_id)
        _judge(db, run.array_id, array_ended(db, run.array_id))


def fill_array(db: sqlite3.Connection, array_id: str, job_id: str) -> None:
    """Let go of as many of the array's held runs, lowest index first, as its parallelism
    has room for (none while its dependencies hold it)."""
    if _exists(db, array_id, _HELD_AFTER):
        return
    row = db.execute("SELECT array FROM jobs WHERE id = ?", (job_id,)).fetchone()
    spec = orjson.loads(row["array"]) if row and row["array"] else {}
    bound = spec.get("parallelism")
    room = -1
    if bound:
        in_flight = _count(db, array_id, _IN_ACTIVE) + _count(db, array_id, _RELEASED_PENDING)
        room = bound - in_flight
        if room <= 0:
            return
    ids = [
        r["id"]
        for r in db.execute(
            "SELECT id FROM runs WHERE array_id = ? AND status = 'pending' AND held = 'array'"
            " ORDER BY array_index LIMIT ?",
            (array_id, room),
        )
    ]
    _release(db, ids, f"its array has room (parallelism {bound})" if bound else "released")


def array_ended(db: sqlite3.Connection, array_id: str) -> Ended:
    """Whether all of the array's runs have ended, and whether one did not succeed (a
    retried attempt does not count: its retry does)."""
    bad = _exists(db, array_id, "status IN ('failed', 'cancelled') AND retried_by IS NULL")
    return Ended(done=not _exists(db, array_id, _UNENDED), bad=bad)


def array_status(db: sqlite3.Connection, array_id: str) -> RunStatus:
    """An array as one status (domain.workflows.ARRAY_STATUS_ORDER), by index seeks."""
    for status, shown_by in ARRAY_STATUS_ORDER:
        marks = ", ".join(f"'{s.value}'" for s in shown_by)
        if _exists(db, array_id, f"status IN ({marks}) AND retried_by IS NULL"):
            return status
    return RunStatus.SUCCEEDED


def _judge(db: sqlite3.Connection, on_id: str, ended: Ended) -> None:
    """What waits on `on_id`, now that it stands as `ended`: each dependency met is
    crossed off (a run with none left is let go), one never to be met fails its runs."""
    rows = db.execute(
        "SELECT run_id, on_id, condition, array FROM run_dependencies WHERE on_id = ?", (on_id,)
    ).fetchall()
    for row in rows:
        dependency = Dependency.from_api(
            {"id": row["on_id"], "condition": row["condition"], "array": row["array"]}
        )
        found = verdict(dependency.condition, ended)
        if found is Verdict.WAIT:
            continue
        waiting = _waiting(db, row["run_id"])
        if found is Verdict.NEVER:
            db.execute("DELETE FROM run_dependencies WHERE run_id = ?", (row["run_id"],))
            _fail_waiting(db, waiting, never_reason(dependency))
            continue
        db.execute(
            "DELETE FROM run_dependencies WHERE run_id = ? AND on_id = ?", (row["run_id"], on_id)
        )
        left = db.execute(
            "SELECT 1 FROM run_dependencies WHERE run_id = ? LIMIT 1", (row["run_id"],)
        ).fetchone()
        if left is None:
            _let_go(db, row["run_id"], waiting)


def _let_go(db: sqlite3.Connection, key: str, waiting: list[str]) -> None:
    """Every dependency of `key` (a run, or an array) is met: a run may be placed; an
    array's runs go back to waiting for its parallelism."""
    head = db.execute("SELECT array_id, job_id FROM runs WHERE id = ?", (key,)).fetchone()
    if head is None or head["array_id"] is None:
        _release(db, waiting, "its dependencies are met")
        return
    db.execute(
        "UPDATE runs SET held = 'array' WHERE array_id = ? AND status = 'pending'"
        " AND held = 'after'",
        (key,),
    )
    fill_array(db, key, head["job_id"])


def _release(db: sqlite3.Connection, run_ids: list[str], why: str) -> None:
    moment = time.time()
    for run_id in run_ids:
        db.execute(f"UPDATE runs SET {_RELEASED} WHERE id = ?", (moment, run_id))
        db.execute(
            "INSERT INTO run_events (run_id, at, from_status, to_status, detail)"
            " VALUES (?, ?, 'pending', 'pending', ?)",
            (run_id, moment, why),
        )


def _fail_waiting(db: sqlite3.Connection, run_ids: Sequence[str], message: str) -> None:
    """These held runs end failed, never started nor retried (dependency_failed); what waits
    on them learns it in turn."""
    failure = Failure(type=FailureType.DEPENDENCY_FAILED, message=message)
    assignments, values = run_rows.column_changes({"finished_at": time.time(), "failure": failure})
    for run_id in run_ids:
        run_rows.transition(db, run_id, RunStatus.FAILED, ["pending"], assignments, values, message)


def _waiting(db: sqlite3.Connection, key: str) -> list[str]:
    """The runs held by `key`'s dependencies: the run, or the array's runs."""
    rows = db.execute(
        "SELECT id FROM runs WHERE (id = ? OR array_id = ?) AND status = 'pending'"
        " AND held = 'after' ORDER BY array_index",
        (key, key),
    )
    return [r["id"] for r in rows]


def _latest_attempt(db: sqlite3.Connection, dependency: Dependency) -> Dependency:
    """A run that was retried stands for its retry, to the latest attempt."""
    if dependency.array:
        return dependency
    on = dependency.on
    for _ in range(1000):
        row = db.execute("SELECT retried_by FROM runs WHERE id = ?", (on,)).fetchone()
        if row is None or row["retried_by"] is None:
            break
        on = row["retried_by"]
    return Dependency(on=on, condition=dependency.condition)


def _ended(db: sqlite3.Connection, dependency: Dependency) -> Ended:
    if dependency.array:
        return array_ended(db, dependency.on)
    row = db.execute("SELECT status FROM runs WHERE id = ?", (dependency.on,)).fetchone()
    status = RunStatus(row["status"]) if row else RunStatus.CANCELLED
    return Ended(done=status.is_terminal, bad=status in (RunStatus.FAILED, RunStatus.CANCELLED))


def _exists(db: sqlite3.Connection, array_id: str, where: str) -> bool:
    sql = f"SELECT 1 FROM runs INDEXED BY runs_array WHERE array_id = ? AND {where} LIMIT 1"
    return db.execute(sql, (array_id,)).fetchone() is not None


def _count(db: sqlite3.Connection, array_id: str, where: str) -> int:
    sql = f"SELECT COUNT(*) FROM runs INDEXED BY runs_array WHERE array_id = ? AND {where}"
    return int(db.execute(sql, (array_id,)).fetchone()[0])


# -- reads ------------------------------------------------------------------------------------


async def waits_on(db: aiosqlite.Connection, key: str) -> list[Dependency]:
    """What a held run (or array, by its id) still waits on."""
    rows = await fetch_all(
        db, "SELECT on_id, condition, array FROM run_dependencies WHERE run_id = ?", (key,)
    )
    return [
        Dependency.from_api({"id": r["on_id"], "condition": r["condition"], "array": r["array"]})
        for r in rows
    ]


async def array_counts(db: aiosqlite.Connection, array_id: str) -> dict[str, int]:
    """How many of the array's runs are in each status (an index's latest attempt only)."""
    rows = await fetch_all(
        db,
        "SELECT status, COUNT(*) AS n FROM runs WHERE array_id = ? AND retried_by IS NULL"
        " GROUP BY status",
        (array_id,),
    )
    return {row["status"]: int(row["n"]) for row in rows}
