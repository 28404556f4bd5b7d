"""Run metrics as the API reads them: one run's, or a job's across its runs that ran in the
window asked about. The resolution follows the window: the samples as taken while they are
kept and the step is under a minute, the minutes' averages and maxima otherwise."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from jobd.config import Config
from jobd.domain.metrics import MINUTE, MetricsQuery, metrics_document
from jobd.domain.owners import Reach
from jobd.domain.records import from_epoch
from jobd.domain.runs import Run
from jobd.store import Store

MAX_JOB_RUNS = 50  # a job's metrics: its newest runs in the window, at most this many


class Metrics:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    async def of_run(self, run_id: str, query: MetricsQuery, reach: Reach) -> dict[str, Any]:
        run = await self.store.get_run(run_id, reach=reach)
        return {"runId": run.id, **await self._document([run], query)}

    async def of_job(self, job_id: str, query: MetricsQuery, reach: Reach) -> dict[str, Any]:
        await self.store.get_job(job_id, reach=reach)
        runs = await self.store.runs_in_window(
            job_id, since=from_epoch(query.start), until=from_epoch(query.end)
        )
        started = [r for r in runs if r.started_at is not None]
        newest = started[-MAX_JOB_RUNS:]
        return {
            "jobId": job_id,
            "runIds": [r.id for r in newest],
            "truncated": len(started) > len(newest),
            **await self._document(newest, query),
        }

    async def _document(self, runs: list[Run], query: MetricsQuery) -> dict[str, Any]:
        full_since = time.time() - self.config.metrics.full_hours * 3600
        resolution = 0 if query.step < MINUTE and query.start >= full_since else MINUTE
        if resolution == MINUTE:
            query = dataclasses.replace(query, step=math.ceil(query.step / MINUTE) * MINUTE)
        found = await self.store.metric_series([r.id for r in runs], query, resolution)
        gpu_runs = any(r.allocation and r.allocation.gpus for r in runs)
        return metrics_document(query, found, gpu_runs)
