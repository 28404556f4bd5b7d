"""What every query module shares: reading rows, writing JSON columns, and pages with their
cursors."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiosqlite
import orjson

from jobd.domain.jobs import Job
from jobd.domain.owners import Reach
from jobd.domain.runs import Run
from jobd.errors import InvalidRequest

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


async def fetch_all(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """Every row, in one call to the connection's thread. With execute() and fetchall() as two
    calls, another coroutine's query runs in between while the first statement is still
    active: it shares that statement's read snapshot and misses what was just committed."""
    return list(await db.execute_fetchall(sql, params))


async def fetch_one(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> Any:
    """The first row, or None (see fetch_all)."""
    rows = await fetch_all(db, sql, params)
    return rows[0] if rows else None


def reached(
    reach: Reach, column: str = "owner_uid", project: str | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The clause (" AND column = ?") and its parameters that keep one user's rows and, on
    tables with a `project` column, their projects' rows; nothing for everyone's."""
    if reach.everyone:
        return "", ()
    if project is None or not reach.projects:
        return f" AND {column} = ?", (reach.uid,)
    names = sorted(reach.projects)
    marks = ", ".join("?" * len(names))
    return f" AND ({column} = ? OR {project} IN ({marks}))", (reach.uid, *names)


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def page_cursor(item: Job | Run) -> str:
    raw = orjson.dumps([item.created_at.timestamp(), item.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, last_id = orjson.loads(base64.urlsafe_b64decode(padded))
        return float(created), str(last_id)
    except (ValueError, TypeError) as e:
        raise InvalidRequest("invalid cursor") from e
