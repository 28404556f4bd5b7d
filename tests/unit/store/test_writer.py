"""The store's writer on a real SQLite file: writes handed over together commit together, one
that fails rolls back alone, a cancelled caller's write still happens, the WAL is checkpointed,
close drains."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from jobd.store.writer import Writer


def _schema(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER)")


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    w = await Writer.open(tmp_path / "w.db", _schema)
    yield w
    await w.close()


def _insert(k: str, v: int) -> Callable[[sqlite3.Connection], int]:
    def write(db: sqlite3.Connection) -> int:
        db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, v))
        return v

    return write


def _rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT k, v FROM t").fetchall())


async def test_concurrent_writes_are_grouped_and_each_gets_its_result(
    writer: Writer, tmp_path: Path
) -> None:
    first = asyncio.create_task(writer.write(_insert("first", -1)))
    queued = [asyncio.create_task(writer.write(_insert(f"k{i}", i))) for i in range(50)]
    assert await first == -1
    assert await asyncio.gather(*queued) == list(range(50))
    assert writer.groups == 1  # all handed over before the writer's turn came: one commit
    later = await writer.write(_insert("later", 51))
    assert later == 51 and writer.groups == 2
    assert len(_rows(tmp_path / "w.db")) == 52


async def test_the_wal_is_checkpointed_into_the_database(tmp_path: Path) -> None:
    w = await Writer.open(tmp_path / "w.db", _schema)
    try:
        for i in range(3):
            await w.write(_insert(f"k{i}", i))
        wal = tmp_path / "w.db-wal"
        assert wal.stat().st_size > 0
        ticks = 0
        async with asyncio.timeout(10):  # the first commit after a second checkpoints
            while not _checkpointed(tmp_path / "w.db"):
                await asyncio.sleep(0.2)
                ticks += 1
                await w.write(_insert(f"tick{ticks}", ticks))
    finally:
        await w.close()


def _checkpointed(path: Path) -> bool:
    """Whether the database file itself holds the rows (not only the WAL)."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as db:  # ignores the WAL
        try:
            return bool(db.execute("SELECT count(*) FROM t").fetchone()[0])
        except sqlite3.OperationalError:  # not even the table yet
            return False


async def test_a_failing_write_rolls_back_alone(writer: Writer, tmp_path: Path) -> None:
    def half_then_fail(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO t (k, v) VALUES ('partial', 1)")
        raise ValueError("refused")

    outcomes = await asyncio.gather(
        writer.write(_insert("before", 1)),
        writer.write(half_then_fail),
        writer.write(_insert("after", 2)),
        return_exceptions=True,
    )
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], ValueError)
    assert _rows(tmp_path / "w.db") == {"before": 1, "after": 2}


async def test_a_constraint_error_reaches_its_caller(writer: Writer) -> None:
    await writer.write(_insert("k", 1))
    with pytest.raises(sqlite3.IntegrityError):
        await writer.write(_insert("k", 2))


async def test_a_cancelled_callers_write_still_happens(writer: Writer, tmp_path: Path) -> None:
    task = asyncio.create_task(writer.write(_insert("decided", 7)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await writer.write(_insert("next", 8))
    assert _rows(tmp_path / "w.db") == {"decided": 7, "next": 8}


async def test_close_finishes_what_was_handed_over(tmp_path: Path) -> None:
    w = await Writer.open(tmp_path / "w.db", _schema)
    pending = [asyncio.create_task(w.write(_insert(f"k{i}", i))) for i in range(20)]
    await asyncio.sleep(0)
    await w.close()
    assert [t.result() for t in pending] == list(range(20))
    assert len(_rows(tmp_path / "w.db")) == 20
    with pytest.raises(sqlite3.ProgrammingError):
        await w.write(_insert("late", 1))
