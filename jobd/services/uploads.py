"""Uploads as the edge asks for them: receive a file as it streams in (written and checksummed
in a thread, a megabyte at a time, while the next megabyte arrives), list them with the jobs
that name them, read one, delete one no job names. (Expiring them is the supervisor's:
jobd/scheduler/uploads.py.)"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from jobd.config import Config
from jobd.domain.owners import Owner, Reach
from jobd.domain.records import new_id, now
from jobd.domain.resources import MIB
from jobd.domain.uploads import SLUG_PREFIX, Upload, upload_name_problem
from jobd.errors import InvalidRequest, TooLarge
from jobd.node.uploads import Incoming, keep, remove
from jobd.store import Store

PIECE_BYTES = MIB  # what one hop to the writing thread carries


class Uploads:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    async def receive(
        self,
        chunks: AsyncIterable[bytes],
        *,
        name: str,
        length: int | None,
        owner: Owner,
        check: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Keep the file `chunks` bring as a new upload named `name`. `length`, when the
        request declared it, is refused at once if it is over the limit or the disk's room.
        `check`, given the file's sha256 once it has all arrived, may refuse it (a signed
        request whose signature does not cover this body)."""
        problem = upload_name_problem(name)
        if problem:
            raise InvalidRequest(problem)
        await self._check_room(length)
        incoming = await asyncio.to_thread(Incoming, self.config)
        slug = new_id(SLUG_PREFIX)
        try:
            await self._write(incoming, chunks)
            if check is not None:
                check(incoming.sha256)
            await asyncio.to_thread(keep, incoming, slug, self.config)
        except BaseException:
            await asyncio.to_thread(incoming.discard)
            raise
        moment = now()
        upload = Upload(
            slug=slug,
            name=name,
            size_bytes=incoming.size_bytes,
            sha256=incoming.sha256,
            owner=owner,
            created_at=moment,
            used_at=moment,
        )
        try:
            await self.store.create_upload(upload)
        except BaseException:
            await asyncio.to_thread(remove, slug, upload.sha256, self.config)
            raise
        return self._doc(upload, [])

    async def _check_room(self, length: int | None) -> None:
        limit = self.config.uploads.max_bytes
        if length is None:
            return
        if length > limit:
            raise TooLarge(f"the file is {length} bytes; uploads may be {limit} bytes at most")
        self.config.uploads_dir.mkdir(parents=True, exist_ok=True)
        free = (await asyncio.to_thread(shutil.disk_usage, self.config.uploads_dir)).free
        room = free - self.config.outputs.disk_reserve_bytes
        if length > room:
            raise TooLarge(
                f"the file is {length} bytes and the disk jobd keeps uploads on has room for"
                f" {max(0, room)} (it keeps {self.config.outputs.disk_reserve_bytes} free)"
            )

    async def _write(self, incoming: Incoming, chunks: AsyncIterable[bytes]) -> None:
        """Each piece to the thread while the next one is read; over the limit, TooLarge."""
        limit = self.config.uploads.max_bytes
        received = 0
        writing: asyncio.Future[None] | None = None
        try:
            async for piece in _pieces(chunks):
                received += len(piece)
                if received > limit:
                    raise TooLarge(f"the file is over the limit of {limit} bytes for uploads")
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(incoming.write, piece))
            if writing is not None:
                await writing
            await asyncio.to_thread(incoming.finish)  # a full disk: NoSpace (507), from Incoming
        finally:
            if writing is not None and not writing.done():
                await asyncio.gather(writing, return_exceptions=True)

    async def list_uploads(
        self, reach: Reach, *, sha256: str | None = None
    ) -> list[dict[str, Any]]:
        """Every upload, or those of one content (a client that has the file checks whether
        jobd has it already)."""
        uploads = await self.store.list_uploads(sha256=sha256, reach=reach)
        users = await self.store.upload_users([u.slug for u in uploads])
        return [self._doc(u, users.get(u.slug, [])) for u in uploads]

    async def get(self, slug: str, reach: Reach) -> dict[str, Any]:
        upload = await self.store.get_upload(slug, reach=reach)
        users = await self.store.upload_users([slug])
        return self._doc(upload, users.get(slug, []))

    async def delete(self, slug: str, reach: Reach) -> None:
        """Forget the upload and delete its file (its content too, unless another upload has
        the same); a Conflict while a job names it."""
        await self.store.get_upload(slug, reach=reach)
        upload = await self.store.delete_upload(slug)
        await asyncio.to_thread(remove, upload.slug, upload.sha256, self.config)

    def _doc(self, upload: Upload, used_by: list[str]) -> dict[str, Any]:
        return upload.to_api(expire_seconds=self.config.uploads.expire_seconds, used_by=used_by)


async def _pieces(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The chunks as they come (a few dozen kilobytes each), joined into pieces of about
    PIECE_BYTES: a thread hop per piece, not per chunk."""
    gathered: list[bytes] = []
    size = 0
    async for chunk in chunks:
        gathered.append(chunk)
        size += len(chunk)
        if size >= PIECE_BYTES:
            yield b"".join(gathered)
            gathered, size = [], 0
    if gathered:
        yield b"".join(gathered)
