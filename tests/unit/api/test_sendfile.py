"""SentFile serves a file by sendfile(2) from a thread: whole, by range, and again on the same
kept-alive connection, the bytes exactly the file's."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from jobd.api import sendfile
from jobd.api.sendfile import SentFile

SIZE = 5 * 1024 * 1024 + 123


@pytest.fixture
def data(tmp_path: Path) -> bytes:
    content = os.urandom(SIZE)
    (tmp_path / "big.bin").write_bytes(content)
    return content


@pytest.fixture
async def served(tmp_path: Path, data: bytes) -> AsyncIterator[Path]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return SentFile(tmp_path / "big.bin")

    async def small(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/file", handler)
    app.router.add_get("/small", small)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = tmp_path / "s.sock"
    await web.UnixSite(runner, str(sock)).start()
    yield sock
    await runner.cleanup()


async def test_whole_ranges_and_kept_alive(
    served: Path, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sends: list[int] = []
    send_all = sendfile.send_all

    def counted(sock: int, source: int, offset: int, count: int) -> None:
        sends.append(count)
        send_all(sock, source, offset, count)

    monkeypatch.setattr(sendfile, "send_all", counted)
    connector = aiohttp.UnixConnector(path=str(served), limit=1)  # one connection, reused
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get("http://x/file") as response:
            assert response.status == 200 and await response.read() == data
        async with http.get("http://x/file", headers={"Range": "bytes=100-1048675"}) as response:
            assert response.status == 206 and await response.read() == data[100:1048676]
        async with http.get("http://x/small") as response:
            assert await response.json() == {"ok": True}, "the connection goes on after a file"
        async with http.get("http://x/file") as response:
            assert await response.read() == data
    assert sends == [SIZE, 1048576, SIZE], "each went by sendfile, none by aiohttp's fallback"
