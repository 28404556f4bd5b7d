"""A run's outputs as the edge asks for them: the files with their sizes and checksums, one file
opened for download, all of them as a tar stream."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson

from jobd.config import Config
from jobd.domain.outputs import OutputSummary
from jobd.domain.owners import Reach
from jobd.domain.runs import Run
from jobd.node.outputs import (
    open_output,
    outputs_dir,
    read_manifest,
    scan,
    write_manifest,
    write_tar,
)
from jobd.store import Store

ARCHIVE_PIECES = 8  # megabyte pieces of a tar stream in flight between its thread and the loop


class Outputs:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    async def listing(self, run_id: str, reach: Reach) -> dict[str, Any]:
        """The run's files, each with its size and time; with its checksum once the run has
        ended (the manifest: made when it ended, or now if that was cut short). A manifest's
        files are an orjson.Fragment: its JSON, passed through whole."""
        run = await self.store.get_run(run_id, reach=reach)
        files, sealed_now = await asyncio.to_thread(self._files, run)
        summary = run.outputs
        if sealed_now is not None:
            summary = sealed_now
            await self.store.record_outputs(run.id, summary)
        return {
            "runId": run.id,
            "files": files,
            "output": summary.to_api(run.id) if summary else None,
        }

    def _files(self, run: Run) -> tuple[Any, OutputSummary | None]:
        """(the files as the API lists them, their summary if their manifest was made now)."""
        manifest = read_manifest(run.id, self.config)
        if manifest is not None:
            return orjson.Fragment(manifest), None
        if run.status.is_terminal:
            files = write_manifest(run.id, self.config)
            return [f.to_api() for f in files], OutputSummary.of(files)
        return [f.to_api() for f in scan(outputs_dir(run.id, self.config), checksums=False)], None

    async def open(self, run_id: str, path: str, reach: Reach) -> int:
        """A file descriptor of the output at `path` (the caller closes it)."""
        run = await self.store.get_run(run_id, reach=reach)
        return await asyncio.to_thread(open_output, outputs_dir(run.id, self.config), path)

    async def archive(self, run_id: str, reach: Reach) -> AsyncIterator[bytes]:
        """Every output of the run as a tar stream, in pieces of about a megabyte, written by
        a thread and read here; the thread stops when the reader goes away."""
        run = await self.store.get_run(run_id, reach=reach)
        pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=ARCHIVE_PIECES)
        stop = threading.Event()

        def put(piece: bytes) -> None:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    pieces.put(piece, timeout=0.1)
                    return
            raise _ReaderGone()

        def write() -> None:
            with contextlib.suppress(_ReaderGone):
                try:
                    write_tar(outputs_dir(run.id, self.config), put)
                finally:
                    put_end(pieces, stop)

        writer = asyncio.create_task(asyncio.to_thread(write))
        try:
            while (piece := await asyncio.to_thread(_take, pieces, stop)) is not None:
                yield piece
            await writer
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    pieces.get_nowait()  # unblock a writer waiting for room
            await asyncio.gather(writer, return_exceptions=True)


def _take(pieces: queue.Queue[bytes | None], stop: threading.Event) -> bytes | None:
    """The next piece; None at the end, or once the reader has gone (no thread waits on)."""
    while not stop.is_set():
        with contextlib.suppress(queue.Empty):
            return pieces.get(timeout=0.1)
    return None


def put_end(pieces: queue.Queue[bytes | None], stop: threading.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            pieces.put(None, timeout=0.1)
            return


class _ReaderGone(Exception):
    """The tar stream's reader went away: stop writing it."""
