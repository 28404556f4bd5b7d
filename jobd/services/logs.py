"""Run logs as the edge reads them: one run's log, the logs of a job's runs in a time window,
and when a followed log has news or has ended."""

from __future__ import annotations

import asyncio
from datetime import datetime

from jobd.domain.jobs import Job
from jobd.domain.owners import EVERYONE, Reach
from jobd.logs.lines import LogLine
from jobd.logs.newest import newest_lines
from jobd.logs.pump import LogPump
from jobd.logs.run_log import RunLog
from jobd.store import Store


class Logs:
    def __init__(self, store: Store, pump: LogPump) -> None:
        self.store = store
        self.pump = pump

    def open(self, run_id: str) -> RunLog:
        return self.pump.open(run_id)

    async def newest(self, run_id: str, budget: int) -> tuple[list[LogLine], bool]:
        """The run's newest log lines whose texts add up to at most `budget` bytes, oldest
        first, and whether older ones were left out (read in a thread, from the log's end)."""
        return await asyncio.to_thread(newest_lines, self.pump.open(run_id), budget)

    def changed(self, run_id: str) -> asyncio.Event:
        """Set when the run's log grows or ends."""
        return self.pump.changed(run_id)

    async def ended(self, run_id: str) -> bool:
        """Whether the run has ended. Every path that ends a run finishes its log first: once
        the run is terminal, one more read gets everything."""
        return (await self.store.get_run(run_id, reach=EVERYONE)).status.is_terminal

    async def of_job(
        self, job_id: str, reach: Reach, *, since: datetime | None, until: datetime | None
    ) -> tuple[Job, list[tuple[str, RunLog]]]:
        """The job, and the logs of its runs that may have written between `since` and
        `until`, oldest run first."""
        job = await self.store.get_job(job_id, reach=reach)
        runs = await self.store.runs_in_window(job.id, since=since, until=until)
        return job, [(run.id, self.pump.open(run.id)) for run in runs]
