"""The log pump: follows how far conmon has written each running run's log, wakes the readers
following it, and hands the marker lines it took in (`::jobd progress ...`, markers.py) to the
progress book. A full disk does not stop it: a log whose state.json has no room stays
in memory (readers are handed that one) and is written once there is room (run_log.py says
what a full disk does to conmon's lines)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from jobd.config.tables import LogLimits
from jobd.domain.progress import MarkerCounts, Progress
from jobd.errors import JobdError, writing
from jobd.logs.markers import MarkerLine, MarkerScanner
from jobd.logs.run_log import SOURCE_NAME, RunLog
from jobd.logs.stream import LogStream, RunFields

log = logging.getLogger(__name__)
T = TypeVar("T")


class MarkerSink(Protocol):
    """Who is told the marker lines of each followed run (the progress book)."""

    def track(self, run_id: str, progress: Progress | None) -> None: ...

    def take(self, run_id: str, lines: list[MarkerLine]) -> None: ...

    def finish(self, run_id: str) -> None: ...

    def forget(self, run_id: str) -> None: ...

    def counts(self) -> MarkerCounts: ...


class LogPump:
    """Copies conmon's files of all running runs into their retained logs, and wakes followers."""

    def __init__(
        self,
        root: Path,
        limits: LogLimits,
        interval: float = 0.1,
        stream: LogStream | None = None,
        markers: MarkerSink | None = None,
    ) -> None:
        self.root = root
        self.limits = limits
        self.interval = interval
        self.stream = stream  # [log_stream]: each line taken in is offered to it
        self.markers = markers  # told each marker line taken in
        self._active: dict[str, RunLog] = {}
        self._unsaved: dict[str, RunLog] = {}  # finished, their state.json not written yet
        self._changed: dict[str, asyncio.Event] = {}
        self._scanners: dict[str, MarkerScanner] = {}  # each followed run's marker lines
        self.bytes_taken = 0  # log bytes taken in since jobd started, all runs together

    def directory(self, run_id: str) -> Path:
        return self.root / run_id

    def prepare(self, run_id: str) -> Path:
        """Create the run's log directory (podman fails with 'broken pipe' without it) and
        return the path conmon should write to."""
        directory = self.directory(run_id)
        with writing(f"the log directory of {run_id}"):
            directory.mkdir(parents=True, exist_ok=True)
        return directory / SOURCE_NAME

    def open(self, run_id: str) -> RunLog:
        return (
            self._active.get(run_id)
            or self._unsaved.get(run_id)
            or RunLog(self.directory(run_id), self.limits)
        )

    def track(
        self, run_id: str, fields: RunFields | None = None, progress: Progress | None = None
    ) -> None:
        """Follow a running run's log; `fields` name it in the log stream, `progress` is what
        its markers said before (a restart goes on from it)."""
        if self.stream is not None:
            self.stream.track(fields or RunFields(run_id=run_id))
        if self.markers is not None:
            self.markers.track(run_id, progress)
        if run_id not in self._active:
            self.prepare(run_id)
            self._active[run_id] = RunLog(self.directory(run_id), self.limits)

    def following(self, run_id: str) -> bool:
        return run_id in self._active

    async def finish(self, run_id: str) -> None:
        """The run's container has exited: the rest of its log taken in. Without room for
        its state.json, it is finished in memory and written later by the loop."""
        run_log = (
            self._active.pop(run_id, None)
            or self._unsaved.get(run_id)
            or RunLog(self.directory(run_id), self.limits)
        )
        try:
            if run_log.directory.exists():
                before = run_log.taken
                _, found = await asyncio.to_thread(self._take, run_id, run_log, run_log.finish)
                self.bytes_taken += run_log.taken - before
                self._hand_over(run_id, found)
        finally:
            if self.stream is not None:
                self.stream.forget(run_id)
            if self.markers is not None:
                self.markers.finish(run_id)
            self._scanners.pop(run_id, None)
            if run_log.unsaved:
                self._unsaved[run_id] = run_log
            self._notify(run_id)

    async def remove(self, run_id: str) -> None:
        """Forget the run's log and delete its directory: its job was deleted."""
        run_log = self._active.pop(run_id, None)
        self._unsaved.pop(run_id, None)
        if self.stream is not None:
            self.stream.forget(run_id)
        if self.markers is not None:
            self.markers.forget(run_id)
        self._scanners.pop(run_id, None)
        if run_log is not None:
            run_log.close()
        self._notify(run_id)
        directory = self.directory(run_id)
        if directory.exists():
            await asyncio.to_thread(shutil.rmtree, directory)

    def changed(self, run_id: str) -> asyncio.Event:
        return self._changed.setdefault(run_id, asyncio.Event())

    def _notify(self, run_id: str) -> None:
        event = self._changed.pop(run_id, None)
        if event is not None:
            event.set()

    def close(self) -> None:
        for run_log in self._active.values():
            run_log.close()

    async def run(self) -> None:
        """The pump loop: a named background task for the daemon's lifetime; a log it fails
        to follow (a disk error) is tried again at the next turn."""
        while True:
            await asyncio.sleep(self.interval)
            for run_id, run_log in list(self._active.items()):
                before = run_log.taken
                try:
                    got, found = await asyncio.to_thread(self._take, run_id, run_log, run_log.pump)
                except (OSError, JobdError) as e:
                    log.warning("log pump for %s: %s", run_id, e)
                    continue
                self.bytes_taken += run_log.taken - before
                self._hand_over(run_id, found)
                if got:
                    self._notify(run_id)
            await self._save_unsaved()

    def _take(
        self, run_id: str, run_log: RunLog, take: Callable[[], T]
    ) -> tuple[T, list[MarkerLine]]:
        """`take` (the log's pump or finish), then the lines it took in offered to the log
        stream and searched for marker lines, in the same thread: (what `take` gave, the
        marker lines), the lines for the event loop to hand to the sink."""
        before = run_log.taken
        result = take()
        found: list[MarkerLine] = []
        if run_log.taken > before:
            if self.stream is not None:
                self.stream.take(run_id, run_log, before)
            if self.markers is not None:
                scanner = self._scanners.setdefault(run_id, MarkerScanner())
                found = scanner.scan(run_log.source_path, before, run_log.taken)
        return result, found

    def _hand_over(self, run_id: str, found: list[MarkerLine]) -> None:
        if found and self.markers is not None:
            self.markers.take(run_id, found)

    async def _save_unsaved(self) -> None:
        """Write the state.json that a full disk kept in memory, now that there may be room."""
        waiting = [
            log_ for log_ in (*self._active.values(), *self._unsaved.values()) if log_.unsaved
        ]
        for run_log in waiting:
            try:
                saved = await asyncio.to_thread(run_log.save)
            except OSError as e:
                log.warning("log state of %s: %s", run_log.directory.name, e)
                continue
            if saved:
                self._unsaved.pop(run_log.directory.name, None)
