"""The log pump: follows how far conmon has written each running run's log, wakes the readers
following it, and hands the marker lines it took in (`::jobd progress ...`, markers.py) to the
progress book. It turns in a thread of its own, ten times a second; a run whose file has
not grown since costs a turn one stat. A full disk does not stop it: a log whose state.json
has no room stays in memory (readers are handed that one) and is written once there is room
(run_log.py says what a full disk does to conmon's lines)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
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
        self._lock = threading.Lock()  # the dicts above: the loop changes, the thread reads
        self._taking = threading.Lock()  # one take at a time: the pump thread's, or a finish's
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
            with self._lock:
                self._active[run_id] = RunLog(self.directory(run_id), self.limits)

    def following(self, run_id: str) -> bool:
        return run_id in self._active

    async def finish(self, run_id: str) -> None:
        """The run's container has exited: the rest of its log taken in. Without room for
        its state.json, it is finished in memory and written later by the pump thread."""
        with self._lock:
            run_log = self._active.pop(run_id, None) or self._unsaved.get(run_id)
        run_log = run_log or RunLog(self.directory(run_id), self.limits)
        try:
            if run_log.directory.exists():
                _, found = await asyncio.to_thread(self._finish_take, run_id, run_log)
                if found and self.markers is not None:
                    self.markers.take(run_id, found)
        finally:
            if self.stream is not None:
                self.stream.forget(run_id)
            if self.markers is not None:
                self.markers.finish(run_id)
            with self._lock:
                self._scanners.pop(run_id, None)
                if run_log.unsaved:
                    self._unsaved[run_id] = run_log
            self._notify(run_id)

    async def remove(self, run_id: str) -> None:
        """Forget the run's log and delete its directory: its job was deleted."""
        with self._lock:
            run_log = self._active.pop(run_id, None)
            self._unsaved.pop(run_id, None)
        if self.stream is not None:
            self.stream.forget(run_id)
        if self.markers is not None:
            self.markers.forget(run_id)
        if run_log is not None:
            await asyncio.to_thread(self._close, run_log)
        with self._lock:  # after any take of it: one under way may have made it a scanner
            self._scanners.pop(run_id, None)
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

    def _close(self, run_log: RunLog) -> None:
        with self._taking:  # after the pump thread's take of it, if one is under way
            run_log.close()

    async def run(self) -> None:
        """The pump loop: a named background task for the daemon's lifetime. Its turns run in
        a thread of its own, which wakes once a turn; a turn through the thread pool cost
        three wakes (the pool's worker, then the loop twice), about 0.4 ms of CPU each on a
        2-core VM, ten times a second for each running run. The loop is called only for
        what it must act on: marker lines, and new lines that followers wait for."""
        loop = asyncio.get_running_loop()
        stopping = threading.Event()
        ended: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(
            target=self._turns, args=(loop, stopping, ended), name="log-pump", daemon=True
        )
        thread.start()
        try:
            await ended  # only a bug in a turn ends it
        finally:
            stopping.set()
            await asyncio.to_thread(thread.join)

    def _turns(
        self,
        loop: asyncio.AbstractEventLoop,
        stopping: threading.Event,
        ended: asyncio.Future[None],
    ) -> None:
        """The pump thread: a turn every `interval` until the daemon stops. A log it fails to
        follow (a disk error) is tried again at the next turn."""
        try:
            while not stopping.wait(self.interval):
                self._turn(loop)
        except Exception as e:  # a bug: the daemon's supervision of its tasks says so
            loop.call_soon_threadsafe(_fail, ended, e)

    def _turn(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            active = list(self._active.items())
        for run_id, run_log in active:
            if run_log.caught_up():  # one stat: a quiet run costs nothing more
                continue
            try:
                with self._taking:
                    if self._active.get(run_id) is not run_log:  # finished or removed meanwhile
                        continue
                    got, found = self._take(run_id, run_log, run_log.pump)
                    # told from within the take, so before what a finish takes next
                    if found or (got and run_id in self._changed):
                        loop.call_soon_threadsafe(self._taken, run_id, found)
            except (OSError, JobdError) as e:
                log.warning("log pump for %s: %s", run_id, e)
        self._save_unsaved()

    def _take(
        self, run_id: str, run_log: RunLog, take: Callable[[], T]
    ) -> tuple[T, list[MarkerLine]]:
        """`take` (the log's pump or finish), then the lines it took in offered to the log
        stream and searched for marker lines: (what `take` gave, the marker lines), which
        the loop hands to the progress book. In a thread, holding `_taking`: one take at a
        time, so a run's lines are searched once and in order."""
        before = run_log.taken
        result = take()
        found: list[MarkerLine] = []
        if run_log.taken > before:
            self.bytes_taken += run_log.taken - before
            if self.stream is not None:
                self.stream.take(run_id, run_log, before)
            if self.markers is not None:
                with self._lock:
                    scanner = self._scanners.setdefault(run_id, MarkerScanner())
                found = scanner.scan(run_log.source_path, before, run_log.taken)
        return result, found

    def _finish_take(self, run_id: str, run_log: RunLog) -> tuple[None, list[MarkerLine]]:
        with self._taking:  # after the pump thread's take of it, if one is under way
            return self._take(run_id, run_log, run_log.finish)

    def _taken(self, run_id: str, found: list[MarkerLine]) -> None:
        """On the loop: what the pump thread's take brought, handed over."""
        if found and self.markers is not None:
            self.markers.take(run_id, found)
        self._notify(run_id)

    def _save_unsaved(self) -> None:
        """Write the state.json that a full disk kept in memory, now that there may be room."""
        with self._lock:
            waiting = [*self._active.values(), *self._unsaved.values()]
        for run_log in waiting:
            if not run_log.unsaved:
                continue
            try:
                saved = run_log.save()
            except OSError as e:
                log.warning("log state of %s: %s", run_log.directory.name, e)
                continue
            name = run_log.directory.name
            with self._lock:  # unless a finish kept it again meanwhile
                if saved and self._unsaved.get(name) is run_log and not run_log.unsaved:
                    del self._unsaved[name]


def _fail(ended: asyncio.Future[None], error: Exception) -> None:
    if not ended.done():
        ended.set_exception(error)
