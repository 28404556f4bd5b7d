"""The log pump: follows how far conmon has written each running run's log, and wakes the
readers following it."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from jobd.config import LogLimits
from jobd.logs.run_log import SOURCE_NAME, RunLog

log = logging.getLogger(__name__)


class LogPump:
    """Copies conmon's files of all running runs into their retained logs, and wakes followers."""

    def __init__(self, root: Path, limits: LogLimits, interval: float = 0.1) -> None:
        self.root = root
        self.limits = limits
        self.interval = interval
        self._active: dict[str, RunLog] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self.bytes_taken = 0  # log bytes taken in since jobd started, all runs together

    def directory(self, run_id: str) -> Path:
        return self.root / run_id

    def prepare(self, run_id: str) -> Path:
        """Create the run's log directory (podman fails with 'broken pipe' without it) and
        return the path conmon should write to."""
        directory = self.directory(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        return directory / SOURCE_NAME

    def open(self, run_id: str) -> RunLog:
        return self._active.get(run_id) or RunLog(self.directory(run_id), self.limits)

    def track(self, run_id: str) -> None:
        if run_id not in self._active:
            self.prepare(run_id)
            self._active[run_id] = RunLog(self.directory(run_id), self.limits)

    async def finish(self, run_id: str) -> None:
        run_log = self._active.pop(run_id, None) or RunLog(self.directory(run_id), self.limits)
        if run_log.directory.exists():
            before = run_log.taken
            await asyncio.to_thread(run_log.finish)
            self.bytes_taken += run_log.taken - before
        self._notify(run_id)

    async def remove(self, run_id: str) -> None:
        """Forget the run's log and delete its directory: its job was deleted."""
        run_log = self._active.pop(run_id, None)
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
        """The pump loop: a named background task for the daemon's lifetime."""
        while True:
            await asyncio.sleep(self.interval)
            for run_id, run_log in list(self._active.items()):
                before = run_log.taken
                try:
                    got = await asyncio.to_thread(run_log.pump)
                except OSError as e:
                    log.warning("log pump for %s: %s", run_id, e)
                    continue
                self.bytes_taken += run_log.taken - before
                if got:
                    self._notify(run_id)
