"""The error middleware: a write that failed for lack of space answers 507 with jobd's JSON
error, whether a boundary translated it (NoSpace) or not (ENOSPC, SQLITE_FULL)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from jobd.api.middleware import error_middleware
from jobd.errors import NoSpace


def _full_database() -> BaseException:
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA max_page_count=2")
    db.execute("CREATE TABLE t (v BLOB)")
    try:
        db.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    except sqlite3.Error as e:
        return e
    raise AssertionError("the insert fit")


@pytest.mark.parametrize(
    "failure",
    [
        NoSpace,
        lambda: OSError(errno.ENOSPC, "No space left on device"),
        lambda: OSError(errno.EDQUOT, "Disk quota exceeded"),
        _full_database,
    ],
)
async def test_lack_of_space_is_a_507_in_json(failure: Callable[[], BaseException]) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise failure()

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/v1/jobs", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/v1/jobs")
        assert response.status == 507
        body = await response.json()
    assert body["error"]["code"] == "no_space"
    assert "no space left" in body["error"]["message"].lower()
    NoSpace.cleared()


async def test_other_os_errors_are_not_507() -> None:
    async def handler(request: web.Request) -> web.Response:
        raise OSError(errno.EIO, "Input/output error")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/")
        assert response.status == 500
