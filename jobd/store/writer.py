"""The store's writer: one SQLite connection, written on the event loop, committing in groups.

Each write is a plain function of the connection. Writes handed over while the loop runs other
work wait and go together: one transaction, one commit (group commit), run by a task of the
writer's at its next turn. A write that raises is rolled back alone and raises to its caller;
the others commit (see _write_group).

Why on the loop and not on a thread of its own: a write is a few statements that take tens of
microseconds (WAL, synchronous=NORMAL: a commit writes to the page cache and does not wait for
the disk). On a thread, each statement handed the GIL back and forth with the loop, and that
cost more than the write itself (a third more CPU per job submitted, and a slower loop). What
can wait for the disk is a checkpoint, copying the WAL into the database: automatic checkpoints
are off, and a checkpoint runs on a connection of its own in a thread, at most once a second.

A write handed to the writer happens even if its caller is cancelled meanwhile: it was
decided, and the caller's cancellation (a client hanging up, shutdown) does not undo it.

A full disk: the database and the runs' logs share it, and the logs fill whatever is freed. So
the writer keeps a reserve inside the database file: RESERVE_BYTES of free pages (written as a
blob, then deleted: SQLite reuses free pages before it grows the file), and a WAL at least as
big (a checkpoint that copies into pages the file has lets the next writer start the WAL over
in blocks it has). Small writes — a run's end, a few submissions — go on while the disk is
full; the reserve is topped up after a checkpoint once there is room again. A write that
finds no room all the same (SQLITE_FULL) raises NoSpace to its caller: the transaction was
rolled back whole, so the database is as it was, and the next write, once space returns,
goes through as any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from jobd.errors import NoSpace, lacks_space, no_space

log = logging.getLogger(__name__)
T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]
Outcome = tuple[bool, Any]  # (succeeded, result or exception)
CHECKPOINT_SECONDS = 1.0  # at most one checkpoint per
RESERVE_BYTES = 1024 * 1024  # free pages kept inside the database file for a full disk
TOP_UP_SPARE = 4  # the reserve is topped up only with this many times its bytes free on disk
RESERVE_TABLE = "CREATE TABLE IF NOT EXISTS jobd_reserve (b BLOB)"  # see the module's docstring


class Writer:
    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path
        self._queue: list[tuple[Write, asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._checkpoints = ThreadPoolExecutor(1, thread_name_prefix="jobd-store-checkpoint")
        self._checkpointing: asyncio.Future[None] | None = None
        self._last_checkpoint = time.monotonic()
        self._checkpoint_failing = False  # said once, until one works again
        self._closed = False
        self.groups = 0  # transactions committed (or tried)

    @classmethod
    async def open(cls, path: Path, setup: Callable[[sqlite3.Connection], None]) -> Writer:
        """Connect and run `setup` (pragmas, migrations) before any write."""
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            setup(db)
            db.execute("PRAGMA wal_autocheckpoint=0")  # see the module's docstring
            db.execute(RESERVE_TABLE)
            _top_up_reserve(db, path)
        except BaseException:
            db.close()
            raise
        return cls(db, path)

    async def write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run `operation` in the next group; its result, or what it raised."""
        if self._closed:
            raise sqlite3.ProgrammingError("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # a cancelled caller's error is not "unretrieved"
        self._queue.append((operation, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="store-writer")
        try:
            return await asyncio.shield(future)
        except sqlite3.Error as e:
            if lacks_space(e):
                raise no_space(e, "to the database") from e
            raise

    async def _flush(self) -> None:
        """Everything handed over until the task's turn, as one group."""
        try:
            # one more turn of the loop first: requests that arrived meanwhile hand over
            # their writes too, and a commit (most of a small write's cost) serves more
            await asyncio.sleep(0)
            group, self._queue = self._queue, []
            self.groups += 1
            try:
                outcomes = _write_group(self._db, [operation for operation, _ in group])
            except BaseException as e:  # the commit itself failed: nothing was written
                outcomes = [(False, e)] * len(group)
            for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        finally:
            self._flushing = None
        self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        if self._checkpointing is not None or self._closed:
            return
        if time.monotonic() - self._last_checkpoint < CHECKPOINT_SECONDS:
            return
        self._last_checkpoint = time.monotonic()
        loop = asyncio.get_running_loop()
        self._checkpointing = loop.run_in_executor(self._checkpoints, _checkpoint, self._path)
        self._checkpointing.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = None
        error = None if done.cancelled() else done.exception()
        if error is None:
            self._checkpoint_failing = False
            if not self._closed and self._flushing is None:  # between groups, on the loop
                try:
                    _top_up_reserve(self._db, self._path)
                except sqlite3.Error as e:
                    log.warning("topping up the store's reserve failed: %s", e)
            return
        if lacks_space(error):
            NoSpace.note()
        if not self._checkpoint_failing:  # the WAL grows until one works; nothing is lost
            log.warning("store checkpoint failed (said once until one works): %s", error)
        self._checkpoint_failing = True

    async def close(self) -> None:
        """Finish what was handed over, then close the connection (closing the last
        connection checkpoints the WAL into the database)."""
        self._closed = True
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        if self._checkpointing is not None:
            await asyncio.shield(self._checkpointing)
        self._checkpoints.shutdown(wait=True)
        self._db.close()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _checkpoint(path: Path) -> None:
    """In the checkpoint thread: copy what the WAL holds into the database, without waiting
    for readers or the writer (PASSIVE)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        db.close()


def _top_up_reserve(db: sqlite3.Connection, path: Path) -> None:
    """Make the database's free pages up to RESERVE_BYTES again, when under half of it: a
    blob of what is missing, committed (its pages and as much WAL get real blocks), then
    deleted (its pages become free ones). Only from room to spare (TOP_UP_SPARE times what
    it writes): topped up with the disk's last free blocks, as space first returns, the blob
    and its WAL took them from the very writes the reserve is for, which then failed for
    lack of space until the next checkpoint topped it up again. Otherwise it waits for the
    next try."""
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    missing = RESERVE_BYTES // page_size - db.execute("PRAGMA freelist_count").fetchone()[0]
    if missing < RESERVE_BYTES // page_size // 2:
        return
    if _free_bytes(path) < TOP_UP_SPARE * missing * page_size:
        return
    try:
        _transaction(db, lambda: _fill_reserve(db, missing * page_size))
    except sqlite3.Error as e:
        if not lacks_space(e):
            raise
    finally:
        with contextlib.suppress(sqlite3.Error):  # a blob left over goes at the next try
            _transaction(db, lambda: [(True, db.execute("DELETE FROM jobd_reserve"))])


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return 0


def _fill_reserve(db: sqlite3.Connection, size: int) -> list[Outcome]:
    db.execute("DELETE FROM jobd_reserve")
    db.execute("INSERT INTO jobd_reserve (b) VALUES (zeroblob(?))", (size,))
    return []


def _write_group(db: sqlite3.Connection, operations: list[Write]) -> list[Outcome]:
    """The group in one transaction, one commit. Should an operation raise, the group is
    rolled back and written again with each operation in a savepoint of its own, so that one
    is rolled back alone and raises to its caller. (A savepoint around every operation, every
    time, cost a third of a job's creation.) Operations are functions of the connection
    alone, so running one twice is safe. A group with no room (SQLITE_FULL, which may roll
    the whole transaction back by itself) fails whole: no operation could be written."""
    try:
        return _transaction(db, lambda: [(True, operation(db)) for operation in operations])
    except Exception as e:
        if lacks_space(e):
            raise
        return _transaction(db, lambda: [_in_savepoint(db, op) for op in operations])


def _transaction(db: sqlite3.Connection, body: Callable[[], list[Outcome]]) -> list[Outcome]:
    db.execute("BEGIN IMMEDIATE")
    try:
        outcomes = body()
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return outcomes


def _in_savepoint(db: sqlite3.Connection, operation: Write) -> Outcome:
    db.execute("SAVEPOINT write")
    try:
        outcome: Outcome = (True, operation(db))
    except Exception as e:
        if not db.in_transaction:  # SQLite rolled it all back (a full disk): the group fails
            raise
        db.execute("ROLLBACK TO write")
        outcome = (False, e)
    db.execute("RELEASE write")
    return outcome
