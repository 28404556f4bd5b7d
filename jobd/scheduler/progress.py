"""The progress book: what each running run's marker lines say (the log pump finds them,
logs/markers.py; domain/progress.py reads them), kept in memory and written to the run's record
at most once a second per run, however fast a job prints them: a job printing 10,000 progress
lines a second costs one small write a second. A run's last word is written within a second
of its log's end and kept with the run.

A daemon that stops loses at most the last second's markers: the log's next markers carry
on from what was written (the pump never reads a log twice)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from jobd.domain.progress import MarkerCounts, Progress, ProgressMark, parse_marker
from jobd.errors import JobdError
from jobd.logs.markers import MarkerLine
from jobd.store import Store

log = logging.getLogger(__name__)
WRITE_SECONDS = 1.0  # a run's record is written at most this often


class ProgressBook:
    def __init__(self, store: Store, interval: float = WRITE_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self._progress: dict[str, Progress] = {}  # each followed run's, as its markers say
        self._changed: set[str] = set()  # not written since they changed
        self._ended: set[str] = set()  # their log has ended: forgotten once written
        self._told: set[str] = set()  # runs whose first ignored marker has been logged
        self.ignored = 0  # marker lines that said nothing understood, all runs together
        self.writes = 0  # progress records written, all runs together

    def counts(self) -> MarkerCounts:
        return MarkerCounts(ignored=self.ignored, writes=self.writes)

    def track(self, run_id: str, progress: Progress | None) -> None:
        """Follow a running run's markers, from what its record has (a restart goes on)."""
        self._progress.setdefault(run_id, progress or Progress())
        self._ended.discard(run_id)

    def take(self, run_id: str, lines: Iterable[MarkerLine]) -> None:
        """Marker lines the pump found in a followed run's log, in the order they were
        printed. Of progress marks in a row only the last is taken in (the rate needs no more
        than the pump's tenth of a second), phases each."""
        progress = self._progress.get(run_id)
        if progress is None:  # not followed (or forgotten): its record stays as it is
            return
        last: tuple[ProgressMark, MarkerLine] | None = None
        for line in lines:
            mark = parse_marker(line.text)
            if mark is None:
                self._ignore(run_id, line)
                continue
            if isinstance(mark, ProgressMark):
                last = (mark, line)  # its time is read only if it stays the last
                continue
            if last is not None:
                progress, last = progress.apply(last[0], last[1].at), None
            progress = progress.apply(mark, line.at)
        if last is not None:
            progress = progress.apply(last[0], last[1].at)
        if progress is not self._progress[run_id]:
            self._progress[run_id] = progress
            self._changed.add(run_id)

    def finish(self, run_id: str) -> None:
        """The run's log has ended: its progress is written once more if it changed, then
        forgotten."""
        self._ended.add(run_id)

    def forget(self, run_id: str) -> None:
        """The run is gone (its job deleted): nothing more is written."""
        self._progress.pop(run_id, None)
        self._changed.discard(run_id)
        self._ended.discard(run_id)
        self._told.discard(run_id)

    async def run(self) -> None:
        """The writing loop: a named background task for the daemon's lifetime."""
        while True:
            await asyncio.sleep(self.interval)
            await self.write()

    async def write(self) -> None:
        """One write of every run whose progress changed since the last."""
        changed = {run_id: self._progress[run_id] for run_id in self._changed}
        if changed:
            try:
                await self.store.record_progress(changed)
            except (JobdError, OSError) as e:  # a full disk: tried again next time
                log.warning("writing runs' progress: %s", e)
                return
            self.writes += len(changed)
            for run_id, written in changed.items():  # unless it changed again meanwhile
                if self._progress.get(run_id) is written:
                    self._changed.discard(run_id)
        for run_id in self._ended - self._changed:
            self.forget(run_id)

    def _ignore(self, run_id: str, line: MarkerLine) -> None:
        self.ignored += 1
        if run_id not in self._told:  # once a run: a job printing garbage fills no journal
            self._told.add(run_id)
            log.info("run %s: ignored a marker it printed: %.200r", run_id, line.text)
