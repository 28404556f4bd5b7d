"""Pruning finished runs ([retention]): a supervisor step that, every `interval`, starts a
task pruning everyone's runs in small batches, and `prune` for `jobctl prune` (a caller's own
runs, or everyone's for an admin; dry or not). One prune at a time.

Each batch: the files first (logs, outputs), then the rows (metric points a batch per write,
then the runs' rows in one short write). A crash between the two leaves the rows, so the
next prune finds the runs again and finishes; never rows gone with files left behind."""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time

from jobd.config import Config
from jobd.domain.owners import EVERYONE, Reach
from jobd.domain.records import now
from jobd.domain.retention import PruneReport, prunable
from jobd.node.disk import usage
from jobd.node.outputs import manifest_path, outputs_dir, remove_outputs
from jobd.store import Store

log = logging.getLogger(__name__)
JOBS_BATCH = 200  # jobs weighed per read
RUNS_BATCH = 100  # runs removed per write


class Pruner:
    def __init__(self, *, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self._lock = asyncio.Lock()  # one prune at a time: the background's or a caller's
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0  # monotonic, when the background last started a prune

    def step(self) -> None:
        """The supervisor's step: start a background prune when one is due and none runs."""
        if not self.config.retention.active or self._task is not None:
            return
        if self._last and time.monotonic() - self._last < self.config.retention.interval_seconds:
            return
        self._last = time.monotonic()
        self._task = asyncio.create_task(self._background(), name="retention")

    def due_in(self) -> float:
        """Seconds until the next background prune is due (infinity: never)."""
        if not self.config.retention.active:
            return math.inf
        since = time.monotonic() - self._last
        return max(0.05, self.config.retention.interval_seconds - since)

    def tasks(self) -> list[asyncio.Task[None]]:
        """What shutdown cancels: a prune under way resumes at the next start."""
        return [self._task] if self._task is not None else []

    async def _background(self) -> None:
        try:
            report = await self.prune(reach=EVERYONE, dry_run=False)
            if report.run_ids:
                log.info(
                    "pruned %d finished runs: %d bytes of logs, %d of outputs",
                    len(report.run_ids),
                    report.log_bytes,
                    report.output_bytes,
                )
        except Exception:  # the disk or the store hiccuped: the next prune tries again
            log.exception("pruning finished runs failed")
        finally:
            self._task = None

    async def prune(self, *, reach: Reach, dry_run: bool) -> PruneReport:
        """Prune (or with `dry_run` only weigh) the finished runs `reach` covers that
        [retention] does not keep; what went, and the bytes it freed."""
        async with self._lock:
            report = PruneReport(dry_run=dry_run)
            after = ""  # jobs are weighed in order of their ids, a batch at a time
            while self.config.retention.active:
                moment = now()
                jobs = await self.store.jobs_to_prune(
                    self.config.retention, moment, reach=reach, after=after, limit=JOBS_BATCH
                )
                if not jobs:
                    break
                after = jobs[-1]
                chosen = []
                for latest, finished in (await self.store.finished_runs(jobs)).values():
                    chosen += prunable(
                        finished,
                        latest=latest,
                        policy=self.config.retention,
                        moment=moment.timestamp(),
                    )
                report = await self._remove(report, chosen)
            return report

    async def _remove(self, report: PruneReport, run_ids: list[str]) -> PruneReport:
        """Measure (and unless dry, remove) these runs, a batch at a time."""
        for start in range(0, len(run_ids), RUNS_BATCH):
            batch = run_ids[start : start + RUNS_BATCH]
            log_bytes, output_bytes = await asyncio.to_thread(self._measure, batch)
            if not report.dry_run:
                await asyncio.to_thread(self._remove_files, batch)
                batch = await self.store.remove_runs(batch)
            report = PruneReport(
                dry_run=report.dry_run,
                run_ids=(*report.run_ids, *batch),
                log_bytes=report.log_bytes + log_bytes,
                output_bytes=report.output_bytes + output_bytes,
            )
        return report

    def _measure(self, run_ids: list[str]) -> tuple[int, int]:
        """In a thread: the bytes of these runs' kept logs, and of their outputs."""
        logs = sum(usage(self.config.log_dir / r).size_bytes for r in run_ids)
        outputs = 0
        for run_id in run_ids:
            outputs += usage(outputs_dir(run_id, self.config)).size_bytes
            manifest = manifest_path(run_id, self.config)
            outputs += manifest.stat().st_size if manifest.exists() else 0
        return logs, outputs

    def _remove_files(self, run_ids: list[str]) -> None:
        """In a thread: the runs' kept logs and outputs (they have ended: nothing follows
        or writes them any more)."""
        for run_id in run_ids:
            shutil.rmtree(self.config.log_dir / run_id, ignore_errors=True)
            remove_outputs(run_id, self.config)
