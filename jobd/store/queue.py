"""The queue: a placement pass as one write (the active runs and the queue's head read, the
decision and its record in one transaction), pending limits, and where a queued run stands."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from jobd.domain.capacity import Decision
from jobd.domain.resources import Allocation
from jobd.domain.runs import Run
from jobd.domain.sharing import Ended, FairShare, QueueLimit
from jobd.domain.states import ACTIVE_STATUSES, Failure, FailureType, RunStatus
from jobd.errors import TooManyRequests
from jobd.store import use
from jobd.store.rows import fetch_all, fetch_one
from jobd.store.runs import column_changes, transition

Queues = dict[int | None, "OwnerQueue"]  # each owner's queued runs, in order
# (queues, active runs, what ended runs used) -> what starts
Choose = Callable[[Queues, list[Run], "Used"], Decision]


@dataclass(frozen=True, slots=True, kw_only=True)
class Used:
    """What ended runs used, as a pass reads it: by owner, decayed by age, over fair share's
    horizon (`fair`), and GPU-seconds in the last 24 hours by owner and project
    (`gpu_day`)."""

    fair: list[Ended]
    gpu_day: list[Ended]


FIRST_PAGE = 4  # usually the head does not fit: read little to find that out
QUEUE_PAGE = 64
Reasons = Callable[[str, int | None], str | None]  # why a queued run waits, by id and owner
QUEUE_RETRY_SECONDS = 30  # a submission over a queue quota: try again after this long


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    assigned: list[Run]  # moved to assigned by the pass, in queue order
    waiting: dict[str, str]  # why the queued runs the pass looked at wait
    truncated: bool = False  # it stopped short of the queue's end with room left
    seconds: float  # the pass's own time in the writer: its reads, decision and writes


def assign_what_fits(
    db: sqlite3.Connection, choose: Choose, moment: datetime, share: FairShare, past: use.PastUse
) -> Placement:
    began = time.perf_counter()
    marks = ", ".join("?" * len(ACTIVE_STATUSES))
    rows = db.execute(
        f"SELECT * FROM runs WHERE status IN ({marks})", [s.value for s in ACTIVE_STATUSES]
    )
    active = [Run.from_row(row) for row in rows]
    queues = _queues(db, moment)
    at = moment.timestamp()
    fair = past.used(db, at, share.horizon_seconds, share.decay)
    spent = Used(fair=fair, gpu_day=use.gpu_day(db, at))
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
    """Every run column, as the schema has them now, but the spec: NULL in its place (what a
    run executes: placement does not need it). The schema is migrated when the store opens,
    so once per connection is enough."""
    columns = (row[1] for row in db.execute("PRAGMA table_info(runs)"))
    return ", ".join("NULL AS spec" if c == "spec" else c for c in columns)


# queued, not held back (dependencies, an array's parallelism), past any retry backoff: what
# the runs_owner_queue index holds, and its condition, so the planner may use it
_QUEUED = "status = 'pending' AND held IS NULL"
_ELIGIBLE = f"{_QUEUED} AND (not_before IS NULL OR not_before <= ?)"
_ORDER = "ORDER BY priority DESC, created_at, id"


class OwnerQueue:
    """One owner's runs that may start, in their queue order (priority, then oldest first:
    the runs_owner_queue index). Where the first stands comes with the pass's first read of
    every owner's; once placement takes this owner's first run, their runs are read whole,
    a page at a time, as far as placement looks (usually the head does not fit, and a few
    rows tell)."""

    def __init__(
        self, db: sqlite3.Connection, uid: int | None, head: Key, moment: datetime
    ) -> None:
        self._db = db
        self._uid = uid
        self._moment = moment
        self._head = head  # where the first run stands, until the runs are read whole
        self._rows: deque[sqlite3.Row] = deque()
        self._cursor: sqlite3.Cursor | None = None
        self._done = False

    def next_key(self) -> tuple[int, float, str] | None:
        """The next run's place: (priority, created_at, id); None when there is none."""
        if self._cursor is None:
            return self._head
        if not self._rows and not self._done:
            self._fetch(QUEUE_PAGE)
        if not self._rows:
            return None
        row = self._rows[0]
        return row["priority"], row["created_at"], row["id"]

    def take(self) -> Run:
        """The next run, read whole."""
        if self._cursor is None:
            whose = "owner_uid IS NULL" if self._uid is None else "owner_uid = ?"
            self._cursor = self._db.execute(
                f"SELECT {_queue_columns(self._db)} FROM runs INDEXED BY runs_owner_queue"
                f" WHERE {whose} AND {_ELIGIBLE} {_ORDER}",
                (*([] if self._uid is None else [self._uid]), self._moment.timestamp()),
            )
            self._fetch(2)  # the head, and where the next one stands
        elif not self._rows:
            self._fetch(QUEUE_PAGE)
        return Run.from_row(self._rows.popleft())

    def __iter__(self) -> Iterator[Run]:
        """Every run, in order (for a placement that takes them as they come)."""
        while self.next_key() is not None:
            yield self.take()

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()  # before the pass's writes: the walk reads no row it changes

    def _fetch(self, size: int) -> None:
        assert self._cursor is not None
        rows = self._cursor.fetchmany(size)
        self._done = len(rows) < size
        self._rows.extend(rows)


Key = tuple[int, float, str]  # a queued run's priority, created_at and id


def _queues(db: sqlite3.Connection, moment: datetime) -> dict[int | None, OwnerQueue]:
    """Each owner's queue, from one read of where each one's first run stands: the owners
    found by an index seek each (a loose index scan of runs_owner_queue, however many runs
    each has queued), and each one's first run that may start by one more."""
    rows = db.execute(
        "WITH RECURSIVE owners (uid) AS ("
        f" SELECT MIN(owner_uid) FROM runs INDEXED BY runs_owner_queue WHERE {_QUEUED}"
        " UNION ALL SELECT (SELECT MIN(owner_uid) FROM runs INDEXED BY runs_owner_queue"
        f" WHERE {_QUEUED} AND owner_uid > owners.uid) FROM owners"
        " WHERE owners.uid IS NOT NULL)"
        " SELECT r.owner_uid, r.priority, r.created_at, r.id"
        " FROM owners JOIN runs r ON r.rowid = ("
        " SELECT rowid FROM runs INDEXED BY runs_owner_queue"
        f" WHERE owner_uid = owners.uid AND {_ELIGIBLE} {_ORDER} LIMIT 1)"
        " UNION ALL SELECT * FROM ("
        " SELECT owner_uid, priority, created_at, id FROM runs INDEXED BY runs_owner_queue"
        f" WHERE owner_uid IS NULL AND {_ELIGIBLE} {_ORDER} LIMIT 1)",
        (moment.timestamp(), moment.timestamp()),
    ).fetchall()
    return {row[0]: OwnerQueue(db, row[0], (row[1], row[2], row[3]), moment) for row in rows}


def _placed(allocation: Allocation) -> str:
    given = [f"GPU {g.index} ({g.uuid})" for g in allocation.gpus]
    if allocation.cpu_set:
        given.append(f"CPUs {allocation.cpu_set}")
    return "placed" + (": " + ", ".join(given) if given else "")


def expire_pending(db: sqlite3.Connection, moment: datetime, reasons: Reasons) -> list[Run]:
    rows = db.execute(
        "SELECT id, created_at, not_before, pending_until, owner_uid"
        " FROM runs INDEXED BY runs_pending_until"
        " WHERE status = 'pending' AND pending_until IS NOT NULL AND pending_until <= ?",
        (moment.timestamp(),),
    ).fetchall()
    expired = []
    for row in rows:
        waited = round(moment.timestamp() - (row["not_before"] or row["created_at"]))
        why = reasons(row["id"], row["owner_uid"]) or "the node had no room for it"
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


async def oldest_pending(db: aiosqlite.Connection) -> float | None:
    """When the longest-waiting queued run was created (unix seconds); None: none queued."""
    row = await fetch_one(db, "SELECT MIN(created_at) AS at FROM runs WHERE status = 'pending'", ())
    return float(row["at"]) if row and row["at"] is not None else None


async def queued(db: aiosqlite.Connection, owner_uid: int | None, limit: int) -> list[Run]:
    """The queue's first runs in the order placement takes them (priority, then age); only
    one owner's when `owner_uid` is given."""
    mine = " AND owner_uid = ?" if owner_uid is not None else ""
    rows = await fetch_all(
        db,
        f"SELECT * FROM runs WHERE status = 'pending'{mine}"
        " ORDER BY priority DESC, created_at, id LIMIT ?",
        (*([owner_uid] if owner_uid is not None else []), limit),
    )
    return [Run.from_row(row) for row in rows]


async def queue_position(db: aiosqlite.Connection, run: Run) -> int:
    row = await fetch_one(
        db,
        "SELECT COUNT(*) AS n FROM runs WHERE status = 'pending'"
        " AND (priority > ? OR (priority = ? AND (created_at, id) < (?, ?)))",
        (run.priority, run.priority, run.created_at.timestamp(), run.id),
    )
    return int(row["n"]) if row else 0


def check_queue_room(db: sqlite3.Connection, limits: Iterable[QueueLimit], adding: int = 1) -> None:
    """TooManyRequests when `adding` more pending runs (an array's, all of them) would break
    a max_queued quota: counted in the transaction that writes them, so concurrent
    submissions cannot both slip in."""
    for limit in limits:
        assert limit.column in ("owner_uid", "project")
        queued = db.execute(  # counted up to the limit: a submission's cost stays bounded
            "SELECT COUNT(*) FROM (SELECT 1 FROM runs"
            f" WHERE status = 'pending' AND {limit.column} = ? LIMIT ?)",
            (limit.value, limit.limit + 1),
        ).fetchone()[0]
        problem = limit.problem(queued + adding - 1)
        if problem:
            raise TooManyRequests(problem, retry_after=QUEUE_RETRY_SECONDS)
