"""A database with no room (SQLite's SQLITE_FULL, here from max_page_count: the same error a
full disk gives): writes go on into the writer's reserve of free pages while it lasts, then
raise NoSpace with nothing of them written, and go on once there is room."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from jobd.errors import NoSpace, lacks_space, no_space, writing
from jobd.store.writer import Writer


def _schema(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")


def _insert(k: int) -> Callable[[sqlite3.Connection], object]:
    return lambda db: db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, b"x" * 3000))


async def test_a_full_database_raises_no_space_and_writes_go_on_after(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    writer = await Writer.open(path, _schema)
    try:
        # the file may not grow: what is written goes into the reserve of free pages
        await writer.write(
            lambda db: db.execute(
                f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}"
            )
        )
        acknowledged = []
        with pytest.raises(NoSpace) as raised:
            for k in range(1000):
                await writer.write(_insert(k))
                acknowledged.append(k)
        assert len(acknowledged) > 100  # a megabyte of free pages kept them
        assert raised.value.status == 507 and raised.value.code == "no_space"
        assert "no space left" in raised.value.message
        assert isinstance(raised.value.__cause__, sqlite3.Error)
        await writer.write(lambda db: db.execute("PRAGMA max_page_count=100000"))  # room again
        await writer.write(_insert(1000))
    finally:
        await writer.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = [k for (k,) in db.execute("SELECT k FROM t ORDER BY k")]
    assert kept == [*acknowledged, 1000]  # every acknowledged write, nothing of the failed one


def test_what_counts_as_lack_of_space() -> None:
    assert lacks_space(OSError(errno.ENOSPC, "No space left on device"))
    assert lacks_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not lacks_space(OSError(errno.EACCES, "Permission denied"))
    assert not lacks_space(sqlite3.OperationalError("no such table: t"))
    shm = sqlite3.OperationalError("disk I/O error")  # growing the -shm file on a full disk
    shm.sqlite_errorcode = 4874  # type: ignore[attr-defined]  # SQLITE_IOERR_SHMSIZE
    assert lacks_space(shm)
    other = sqlite3.OperationalError("disk I/O error")
    other.sqlite_errorcode = 10  # type: ignore[attr-defined]  # SQLITE_IOERR, anything else
    assert not lacks_space(other)
    assert not lacks_space(ValueError("no"))
    assert lacks_space(NoSpace())


def test_writing_translates_lack_of_space_only() -> None:
    with pytest.raises(NoSpace, match="could not write the upload"), writing("the upload"):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PermissionError), writing("the upload"):
        raise PermissionError(errno.EACCES, "Permission denied")
    full = NoSpace("already jobd's")
    assert no_space(full, "anything") is full
    NoSpace.cleared()
