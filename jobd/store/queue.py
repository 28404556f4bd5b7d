"""The queue: a placement pass as one write (the active runs and the queue's head read, the
decision and its record in one transaction), pending limits, and where a queued run stands."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from jobd.domain.capacity import Decision
from jobd.domain.resources import Allocation
from jobd.domain.runs import Run
from jobd.domain.sharing import Ended, QueueLimit
from jobd.domain.states import ACTIVE_STATUSES, Failure, FailureType, RunStatus
from jobd.errors import TooManyRequests
from jobd.store import use
from jobd.store.rows import fetch_one
from jobd.store.runs import column_changes, transition

Queues = dict[int | None, Generator[Run, None, None]]  # each owner's queued runs, in order
# (queues, active runs, what ended runs used) -> what starts
Choose = Callable[[Queues, list[Run], "Used"], Decision]


@dataclass(frozen=True, slots=True, kw_only=True)
class Used:
    """What ended runs used, as a pass reads it: by owner and day, over fair share's horizon
    (`fair`), and GPU-seconds in the last 24 hours by owner and project (`gpu_day`)."""

    fair: list[Ended]
    gpu_day: list[Ended]


FIRST_PAGE = 4  # usually the head does not fit: read little to find that out
QUEUE_PAGE = 64
QUEUE_RETRY_SECONDS = 30  # a submission over a queue quota: try again after this long


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    assigned: list[Run]  # moved to assigned by the pass, in queue order
    waiting: dict[str, str]  # why the queued runs the pass looked at wait
    truncated: bool = False  # it stopped short of the queue's end with room left
    seconds: float  # the pass's own time in the writer: its reads, decision and writes


def assign_what_fits(
    db: sqlite3.Connection, choose: Choose, moment: datetime, horizon_seconds: float
) -> Placement:
    began = time.perf_counter()
    marks = ", ".join("?" * len(ACTIVE_STATUSES))
    rows = db.execute(
        f"SELECT * FROM runs WHERE status IN ({marks})", [s.value for s in ACTIVE_STATUSES]
    )
    active = [Run.from_row(row) for row in rows]
    queues = {uid: _queue(db, uid, moment) for uid in _owners(db)}
    at = moment.timestamp()
    spent = Used(fair=use.used(db, at, horizon_seconds), gpu_day=use.gpu_day(db, at))
    try:
        decision = choose(queues, active, spent)
    finally:
        for queue in queues.values():
            queue.close()  # before the writes: the walk reads no row it changes
    assigned: list[Run] = []
    for run, allocation in decision.start:
        assignments, values = column_changes({"allocation": allocation})
        done = transition(
            db, run.id, RunStatus.ASSIGNED, ["pending"], assignments, values, _placed(allocation)
        )
        assert done is not None, "a pending run changed inside the placing transaction"
        assigned.append(done)
    return Placement(
        assigned=assigned,
        waiting=decision.waiting,
        truncated=decision.truncated,
        seconds=time.perf_counter() - began,
    )


@functools.lru_cache(maxsize=4)
def _queue_columns(db: sqlite3.Connection) -> str:
    """Every run column, as the schema has them now, but the spec: NULL in its place. The
    schema is migrated when the store opens, so once per connection is enough."""
    columns = (row[1] for row in db.execute("PRAGMA table_info(runs)"))
    return ", ".join("NULL AS spec" if c == "spec" else c for c in columns)


def _owners(db: sqlite3.Connection) -> list[int | None]:
    """Whose runs are queued: one index seek per owner (runs_owner_queue), however many
    runs each has queued."""
    owners: list[int | None] = []
    found = db.execute(
        "SELECT 1 FROM runs INDEXED BY runs_owner_queue"
        " WHERE status = 'pending' AND owner_uid IS NULL LIMIT 1"
    ).fetchone()
    if found:
        owners.append(None)
    last = -1
    while True:
        uid = db.execute(
            "SELECT MIN(owner_uid) FROM runs INDEXED BY runs_owner_queue"
            " WHERE status = 'pending' AND owner_uid > ?",
            (last,),
        ).fetchone()[0]
        if uid is None:
            return owners
        owners.append(uid)
        last = uid


def _queue(db: sqlite3.Connection, uid: int | None, moment: datetime) -> Generator[Run, None, None]:
    """One owner's runs that may start, in their queue order (priority, then oldest first:
    the runs_owner_queue index), read only as far as placement looks: usually the head does
    not fit, and a few rows tell. Nothing is read until the first run is asked for."""
    whose = "owner_uid IS NULL" if uid is None else "owner_uid = ?"
    cursor = db.execute(
        # the planner would rather sort the owner's pending runs than walk the index; what a
        # run executes (spec) is not read: placement does not need it
        f"SELECT {_queue_columns(db)} FROM runs INDEXED BY runs_owner_queue"
        f" WHERE status = 'pending' AND {whose} AND (not_before IS NULL OR not_before <= ?)"
        " ORDER BY priority DESC, created_at, id",
        (*(() if uid is None else (uid,)), moment.timestamp()),
    )
    try:
        size = FIRST_PAGE
        while rows := cursor.fetchmany(size):
            yield from (Run.from_row(row) for row in rows)
            size = QUEUE_PAGE
    finally:
        cursor.close()


def _placed(allocation: Allocation) -> str:
    given = [f"GPU {g.index} ({g.uuid})" for g in allocation.gpus]
    if allocation.cpu_set:
        given.append(f"CPUs {allocation.cpu_set}")
    return "placed" + (": " + ", ".join(given) if given else "")


def expire_pending(
    db: sqlite3.Connection, moment: datetime, reasons: Mapping[str, str]
) -> list[Run]:
    rows = db.execute(
        "SELECT id, created_at, not_before, pending_until FROM runs INDEXED BY runs_pending_until"
        " WHERE status = 'pending' AND pending_until IS NOT NULL AND pending_until <= ?",
        (moment.timestamp(),),
    ).fetchall()
    expired = []
    for row in rows:
        waited = round(moment.timestamp() - (row["not_before"] or row["created_at"]))
        why = reasons.get(row["id"], "the node had no room for it")
        message = f"unschedulable: still queued after {waited}s (maxPendingSeconds); {why}"
        failure = Failure(type=FailureType.UNSCHEDULABLE, message=message)
        assignments, values = column_changes({"finished_at": moment, "failure": failure})
        run = transition(db, row["id"], RunStatus.FAILED, ["pending"], assignments, values, message)
        if run is not None:
            expired.append(run)
    return expired


async def count_pending(db: aiosqlite.Connection) -> int:
    row = await fetch_one(db, "SELECT COUNT(*) AS n FROM runs WHERE status = 'pending'", ())
    return int(row["n"]) if row else 0


async def queue_position(db: aiosqlite.Connection, run: Run) -> int:
    row = await fetch_one(
        db,
        "SELECT COUNT(*) AS n FROM runs WHERE status = 'pending'"
        " AND (priority > ? OR (priority = ? AND (created_at, id) < (?, ?)))",
        (run.priority, run.priority, run.created_at.timestamp(), run.id),
    )
    return int(row["n"]) if row else 0


def check_queue_room(db: sqlite3.Connection, limits: Iterable[QueueLimit]) -> None:
    """TooManyRequests when one more pending run would break a max_queued quota: counted in
    the transaction that writes the run, so concurrent submissions cannot both slip in."""
    for limit in limits:
        assert limit.column in ("owner_uid", "project")
        queued = db.execute(
            f"SELECT COUNT(*) FROM runs WHERE status = 'pending' AND {limit.column} = ?",
            (limit.value,),
        ).fetchone()[0]
        problem = limit.problem(queued)
        if problem:
            raise TooManyRequests(problem, retry_after=QUEUE_RETRY_SECONDS)
