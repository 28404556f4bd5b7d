"""The store's writer: one SQLite connection on a thread of its own, committing in groups.

Each write is a plain function of the connection and runs whole in the writer thread: a
transition (read the status, guarded UPDATE, event row, the job's status, read back) is one
hop from the event loop, not six. Writes handed over while a group is being written wait and
go together in the next group: one transaction, one commit (group commit). A write that
raises is rolled back alone and raises to its caller; the others commit (see _write_group).

A write handed to the writer happens even if its caller is cancelled meanwhile: it was
decided, and the caller's cancellation (a client hanging up, shutdown) does not undo it.

aiosqlite (which serves the reads) runs one statement per call; only its private API runs a
function in its thread, hence this small class.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]
Outcome = tuple[bool, Any]  # (succeeded, result or exception)


class Writer:
    def __init__(self, executor: ThreadPoolExecutor, db: sqlite3.Connection) -> None:
        self._executor = executor
        self._db = db
        self._queue: list[tuple[Write, asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False
        self.groups = 0  # transactions committed (or tried)

    @classmethod
    async def open(cls, path: Path, setup: Callable[[sqlite3.Connection], None]) -> Writer:
        """Connect in the writer thread (the connection is used from there only) and run
        `setup` (pragmas, migrations) before any write."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="jobd-store-writer")
        loop = asyncio.get_running_loop()
        try:
            db = await loop.run_in_executor(executor, _connect, path, setup)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, db)

    async def write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run `operation` in the next group; its result, or what it raised."""
        if self._closed:
            raise sqlite3.ProgrammingError("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # a cancelled caller's error is not "unretrieved"
        self._queue.append((operation, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="store-writer")
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                group, self._queue = self._queue, []
                operations = [operation for operation, _ in group]
                self.groups += 1
                try:
                    outcomes = await loop.run_in_executor(
                        self._executor, _write_group, self._db, operations
                    )
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

    async def close(self) -> None:
        """Finish what was handed over, then close the connection."""
        self._closed = True
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _connect(path: Path, setup: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        setup(db)
    except BaseException:
        db.close()
        raise
    return db


def _write_group(db: sqlite3.Connection, operations: list[Write]) -> list[Outcome]:
    """In the writer thread: the group in one transaction, one commit. Should an operation
    raise, the group is rolled back and written again with each operation in a savepoint of
    its own, so that one is rolled back alone and raises to its caller. (A savepoint around
    every operation, every time, cost a third of a job's creation.) Operations are functions
    of the connection alone, so running one twice is safe."""
    try:
        return _transaction(db, lambda: [(True, operation(db)) for operation in operations])
    except Exception:
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
        db.execute("ROLLBACK TO write")
        outcome = (False, e)
    db.execute("RELEASE write")
    return outcome
